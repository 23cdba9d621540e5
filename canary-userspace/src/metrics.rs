//! Prometheus exposition: the data path's counters, read from the kernel at
//! scrape time (they live in pinned maps, so they keep counting across
//! daemon restarts), plus the standard process metrics.

use prometheus::{
    Encoder, Registry, TextEncoder,
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

use crate::api::{Status, VersionStatus};

/// Registry of the metrics the prometheus crate keeps itself (process).
pub fn process_registry() -> Registry {
    let registry = Registry::new();
    // Only fails on a duplicate registration, which this fresh registry cannot have.
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    registry
}

/// The whole `/metrics` body.
pub fn render(status: &Status, registry: &Registry) -> Result<String, prometheus::Error> {
    let mut families = families(status);
    families.extend(registry.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One family per metric name, one sample per label set.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: MetricType, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: vec![],
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn build(self) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(self.name.into());
        mf.set_help(self.help.into());
        mf.set_field_type(self.kind);
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, value)| {
                let mut m = Metric::default();
                m.set_label(
                    labels
                        .into_iter()
                        .map(|(k, v)| {
                            let mut l = LabelPair::default();
                            l.set_name(k.into());
                            l.set_value(v);
                            l
                        })
                        .collect(),
                );
                match self.kind {
                    MetricType::COUNTER => {
                        let mut c = Counter::default();
                        c.set_value(value);
                        m.set_counter(c);
                    }
                    _ => {
                        let mut g = Gauge::default();
                        g.set_value(value);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect();
        mf.set_metric(metrics);
        mf
    }
}

/// The data path's metric families from one status snapshot.
pub fn families(status: &Status) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let mut packets = Family::new(
        "canary_packets_total",
        COUNTER,
        "Packets of the service's flows by version and direction (in: client to backend, out: replies).",
    );
    let mut bytes = Family::new(
        "canary_bytes_total",
        COUNTER,
        "Bytes (whole frames) of the service's flows by version and direction.",
    );
    let mut new_flows = Family::new(
        "canary_new_flows_total",
        COUNTER,
        "Flows decided for this version on their first packet (rehashes are counted apart).",
    );
    let mut closed_flows = Family::new(
        "canary_closed_flows_total",
        COUNTER,
        "TCP flows whose closing handshake or reset went through and whose entry was released.",
    );
    let mut active_flows = Family::new(
        "canary_active_flows",
        GAUGE,
        "New minus closed flows: open TCP connections (UDP flows and flows evicted from a full table stay counted).",
    );
    let mut rehashes = Family::new(
        "canary_rehashes_total",
        COUNTER,
        "Mid-stream packets with no flow entry (evicted or never seen) that were decided again.",
    );
    let mut weight = Family::new(
        "canary_weight_ratio",
        GAUGE,
        "Share of new flows (or clients) each version gets now, 0 to 1.",
    );
    let mut backends = Family::new(
        "canary_backends",
        GAUGE,
        "Backends configured for each version.",
    );
    for s in &status.services {
        let canary_share = s.weight_percent / 100.0;
        for (version, v, share) in [
            ("stable", &s.stable, 1.0 - canary_share),
            ("canary", &s.canary, canary_share),
        ] {
            let labels = || vec![("service", s.name.clone()), ("version", version.to_owned())];
            let with_dir = |dir: &str| {
                let mut l = labels();
                l.push(("direction", dir.to_owned()));
                l
            };
            let VersionStatus {
                packets_in,
                bytes_in,
                packets_out,
                bytes_out,
                ..
            } = *v;
            packets.add(with_dir("in"), packets_in as f64);
            packets.add(with_dir("out"), packets_out as f64);
            bytes.add(with_dir("in"), bytes_in as f64);
            bytes.add(with_dir("out"), bytes_out as f64);
            new_flows.add(labels(), v.new_flows as f64);
            closed_flows.add(labels(), v.closed_flows as f64);
            active_flows.add(labels(), v.active_flows as f64);
            rehashes.add(labels(), v.rehashes as f64);
            weight.add(labels(), share);
            backends.add(labels(), v.backends.len() as f64);
        }
    }
    let mut verdicts = Family::new(
        "canary_verdicts_total",
        COUNTER,
        "Packets by the verdict each program gave them (see README, odd-packet verdicts).",
    );
    for (program, counts) in [
        ("ingress", &status.verdicts.ingress),
        ("egress", &status.verdicts.egress),
    ] {
        for (name, count) in counts {
            verdicts.add(
                vec![("program", program.to_owned()), ("verdict", name.clone())],
                *count as f64,
            );
        }
    }
    let mut info = Family::new(
        "canary_build_info",
        GAUGE,
        "Always 1; the labels say which canaryd is running.",
    );
    // Not `version`: that label means stable/canary everywhere else.
    info.add(vec![("release", status.daemon.version.clone())], 1.0);
    [
        packets,
        bytes,
        new_flows,
        closed_flows,
        active_flows,
        rehashes,
        weight,
        backends,
        verdicts,
        info,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .map(Family::build)
    .collect()
}
