//! Prometheus exposition: the data path's counters, read from the kernel at
//! scrape time (they live in pinned maps, so they keep counting across
//! daemon restarts), plus the standard process metrics.

use prometheus::{
    Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

use crate::{
    api::{RolloutReport, Status, VersionStatus},
    model::grpc::grpc_slot_name,
    model::rollout::{Phase, Verdict},
    model::signals::{GRPC_SLOTS, Histogram},
};

/// Registry of the metrics the prometheus crate keeps itself (process).
pub fn process_registry() -> Registry {
    let registry = Registry::new();
    // Only fails on a duplicate registration, which this fresh registry cannot have.
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    registry
}

/// canaryd's own listeners (the metrics listener and the control socket):
/// how many connections each may hold, holds now, turned away, and accept
/// failures. Kept by the prometheus crate in the process registry.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub limit: IntGaugeVec,
    pub open: IntGaugeVec,
    pub rejected: IntCounterVec,
    pub accept_errors: IntCounterVec,
}

impl ListenerMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<ListenerMetrics, prometheus::Error> {
        let by_listener = |name: &str, help: &str| Opts::new(name, help);
        let m = ListenerMetrics {
            limit: IntGaugeVec::new(
                by_listener(
                    "canary_listener_connections_limit",
                    "Connections the listener may hold at once (from RLIMIT_NOFILE less a reserve; see docs/OPERATIONS.md, Descriptors).",
                ),
                &["listener"],
            )?,
            open: IntGaugeVec::new(
                by_listener(
                    "canary_listener_connections",
                    "Connections the listener holds now.",
                ),
                &["listener"],
            )?,
            rejected: IntCounterVec::new(
                by_listener(
                    "canary_listener_rejected_total",
                    "Connections closed at once: the listener held its limit, or no descriptor was left to accept them (EMFILE).",
                ),
                &["listener"],
            )?,
            accept_errors: IntCounterVec::new(
                by_listener(
                    "canary_listener_accept_errors_total",
                    "Failed accepts (EMFILE and the like); the listener backs off briefly after each.",
                ),
                &["listener"],
            )?,
        };
        registry.register(Box::new(m.limit.clone()))?;
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.accept_errors.clone()))?;
        Ok(m)
    }
}

/// The whole `/metrics` body.
pub fn render(
    status: &Status,
    rollouts: &[RolloutReport],
    registry: &Registry,
) -> Result<String, prometheus::Error> {
    let mut families = families(status);
    families.extend(rollout_families(rollouts));
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
                m.set_label(label_pairs(labels));
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
        let canary_share = s.weight.ratio();
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
    let mut signal_families = signal_families(status);
    let mut verdicts = Family::new(
        "canary_verdicts_total",
        COUNTER,
        "Packets by the verdict each program gave them (see docs/DATAPATH.md, odd input).",
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
    let mut attached = Family::new(
        "canary_interface_attached",
        GAUGE,
        "1 while the kernel runs canary's ingress (XDP or tc, by the interface's hook) and tc egress programs on the configured interface (read from the kernel), 0 while it is gone, they were detached or replaced, or a re-attach failed.",
    );
    let mut problem = Family::new(
        "canary_interface_problem",
        GAUGE,
        "1 while status reports a problem on the interface (not attached, another program at a hook, pinned maps that are not the programs' maps), else 0.",
    );
    let mut mismatches = Family::new(
        "canary_interface_mismatches_total",
        COUNTER,
        "Times canaryd found the kernel running something else than what it set up on the interface (detached, replaced, maps unpinned), since it started.",
    );
    let mut reattached = Family::new(
        "canary_interface_reattached_total",
        COUNTER,
        "Times canaryd attached the programs again after the interface came back (deleted and created again), since it started.",
    );
    for i in &status.daemon.interfaces {
        let labels = || vec![("interface", i.name.clone())];
        attached.add(labels(), f64::from(u8::from(i.attached)));
        reattached.add(labels(), i.reattached as f64);
        problem.add(labels(), f64::from(u8::from(i.problem.is_some())));
        mismatches.add(labels(), i.mismatches as f64);
    }
    let mut info = Family::new(
        "canary_build_info",
        GAUGE,
        "Always 1; the labels say which canaryd is running.",
    );
    // Not `version`: that label means stable/canary everywhere else.
    info.add(vec![("release", status.daemon.version.clone())], 1.0);
    let mut out: Vec<MetricFamily> = [
        packets,
        bytes,
        new_flows,
        closed_flows,
        active_flows,
        rehashes,
        weight,
        backends,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .map(Family::build)
    .collect();
    out.append(&mut signal_families);
    out.extend(
        [verdicts, attached, reattached, problem, mismatches, info]
            .into_iter()
            .filter(|f| !f.samples.is_empty())
            .map(Family::build),
    );
    out
}

/// The health signals' families: counters per (service, version), status
/// classes, and the two duration histograms in seconds.
fn signal_families(status: &Status) -> Vec<MetricFamily> {
    use MetricType::COUNTER;
    let mut requests = Family::new(
        "canary_requests_total",
        COUNTER,
        "Requests: TCP client payloads that start after the backend's last reply; UDP client datagrams.",
    );
    let mut responses = Family::new(
        "canary_responses_total",
        COUNTER,
        "Responses: TCP first reply payloads after a request; UDP backend datagrams.",
    );
    let mut http = Family::new(
        "canary_http_responses_total",
        COUNTER,
        "TCP responses by the class of their HTTP/1.x status line; other: no status line in the first reply packet.",
    );
    let mut resets = Family::new(
        "canary_backend_resets_total",
        COUNTER,
        "RSTs from the backend on connections whose handshake it had answered.",
    );
    let mut refused = Family::new(
        "canary_connections_refused_total",
        COUNTER,
        "RSTs from the backend answering a SYN: nothing listens at the backend.",
    );
    let mut retransmits = Family::new(
        "canary_syn_retransmits_total",
        COUNTER,
        "Client SYNs sent again before the backend answered the first.",
    );
    let mut failsafe = Family::new(
        "canary_failsafe_flows_total",
        COUNTER,
        "New flows the failsafe sent to stable while canaryd's heartbeat was stale (counted on stable).",
    );
    let mut grpc = Family::new(
        "canary_grpc_responses_total",
        COUNTER,
        "HTTP/2 responses by grpc-status (code), decoded by canaryd from the servers' header blocks; other: a value that is no gRPC code.",
    );
    let mut h2_connections = Family::new(
        "canary_h2_connections_total",
        COUNTER,
        "HTTP/2 (h2c) connections followed frame by frame from their preface.",
    );
    let mut h2_untracked = Family::new(
        "canary_h2_untracked_connections_total",
        COUNTER,
        "HTTP/2 connections whose frame boundaries were lost (a sequence gap, a header out of sync, no preface on an h2c service): their later streams are not counted.",
    );
    let mut h2_undecodable = Family::new(
        "canary_h2_undecodable_connections_total",
        COUNTER,
        "HTTP/2 connections whose header blocks canaryd could not decode (a lost piece, a table out of sync): their streams count with no status and no grpc-status.",
    );
    let mut stream_resets = Family::new(
        "canary_h2_stream_resets_total",
        COUNTER,
        "RST_STREAM frames from the backend with an error code: streams it abandoned.",
    );
    let mut latency = vec![];
    let mut connect = vec![];
    for s in &status.services {
        for (version, v) in [("stable", &s.stable), ("canary", &s.canary)] {
            let labels = || vec![("service", s.name.clone()), ("version", version.to_owned())];
            let sig = &v.signals;
            requests.add(labels(), sig.requests as f64);
            responses.add(labels(), sig.responses as f64);
            for (class, n) in sig.classes() {
                let mut l = labels();
                l.push(("class", class.to_owned()));
                http.add(l, n as f64);
            }
            resets.add(labels(), sig.backend_resets as f64);
            refused.add(labels(), sig.connections_refused as f64);
            retransmits.add(labels(), sig.syn_retransmits as f64);
            failsafe.add(labels(), sig.failsafe_flows as f64);
            latency.push((labels(), &sig.latency));
            connect.push((labels(), &sig.connect));
            // HTTP/2's families only for services that speak it: every
            // code, so a rate over any of them starts from 0.
            if sig.h2_connections + sig.h2_untracked > 0 {
                for slot in 0..GRPC_SLOTS {
                    let mut l = labels();
                    l.push(("code", grpc_slot_name(slot).to_owned()));
                    grpc.add(l, sig.grpc_code(slot) as f64);
                }
                h2_connections.add(labels(), sig.h2_connections as f64);
                h2_untracked.add(labels(), sig.h2_untracked as f64);
                h2_undecodable.add(labels(), sig.h2_undecodable as f64);
                stream_resets.add(labels(), sig.stream_resets as f64);
            }
        }
    }
    let mut out: Vec<MetricFamily> = [
        requests,
        responses,
        http,
        resets,
        refused,
        retransmits,
        failsafe,
        grpc,
        h2_connections,
        h2_untracked,
        h2_undecodable,
        stream_resets,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .map(Family::build)
    .collect();
    if !latency.is_empty() {
        out.push(histogram_family(
            "canary_request_duration_seconds",
            "Time to first byte: from a request's first client payload to the backend's first reply payload.",
            latency,
        ));
        out.push(histogram_family(
            "canary_connect_duration_seconds",
            "Connect time: from the client's first SYN to the backend's SYN-ACK.",
            connect,
        ));
    }
    out
}

/// Rollouts: phase, step, rollbacks, and each check's last value and
/// failures.
fn rollout_families(rollouts: &[RolloutReport]) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let mut phase = Family::new(
        "canary_rollout_phase",
        GAUGE,
        "1 for the rollout's current phase (running, paused, rolled_back, promoted, aborted), 0 for the others.",
    );
    let mut step = Family::new(
        "canary_rollout_step_percent",
        GAUGE,
        "Canary weight of the rollout's current step, percent.",
    );
    let mut rollbacks = Family::new(
        "canary_rollbacks_total",
        COUNTER,
        "Rollouts of the service that ended rolled back (by a check or an operator).",
    );
    let mut check_value = Family::new(
        "canary_check_value",
        GAUGE,
        "Each check's value at the rollout's last look (rate, ratio, milliseconds or gate value).",
    );
    let mut check_failed = Family::new(
        "canary_check_failed_total",
        COUNTER,
        "Intervals of the current rollout in which the check failed.",
    );
    for r in rollouts {
        let svc = || vec![("service", r.service.clone())];
        for p in [
            Phase::Running,
            Phase::Paused,
            Phase::RolledBack,
            Phase::Promoted,
            Phase::Aborted,
        ] {
            let mut l = svc();
            let name = serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            l.push(("phase", name));
            phase.add(l, f64::from(u8::from(p == r.phase)));
        }
        let at = r.steps.get(r.step).copied().unwrap_or_default();
        step.add(svc(), at.percent());
        rollbacks.add(svc(), r.rollbacks as f64);
        if let Some(last) = r.history.last() {
            for c in &last.checks {
                if let Some(v) = c.value {
                    let mut l = svc();
                    l.push(("check", c.name.clone()));
                    check_value.add(l, v);
                }
            }
            for c in &last.checks {
                let failed = r
                    .history
                    .iter()
                    .flat_map(|h| &h.checks)
                    .filter(|h| h.name == c.name && h.verdict == Verdict::Fail)
                    .count();
                let mut l = svc();
                l.push(("check", c.name.clone()));
                check_failed.add(l, failed as f64);
            }
        }
    }
    [phase, step, rollbacks, check_value, check_failed]
        .into_iter()
        .filter(|f| !f.samples.is_empty())
        .map(Family::build)
        .collect()
}

/// A histogram family: cumulative buckets with `le` in seconds, `+Inf`
/// implied by the sample count, and the sum of observations.
fn histogram_family(
    name: &str,
    help: &str,
    samples: Vec<(Vec<(&'static str, String)>, &Histogram)>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.into());
    mf.set_help(help.into());
    mf.set_field_type(MetricType::HISTOGRAM);
    let metrics = samples
        .into_iter()
        .map(|(labels, h)| {
            let mut m = Metric::default();
            m.set_label(label_pairs(labels));
            let mut ph = prometheus::proto::Histogram::default();
            let mut cumulative = 0u64;
            let mut buckets = vec![];
            for (i, n) in h.counts.iter().enumerate() {
                cumulative += n;
                // The last, unbounded bucket is the `+Inf` line, written
                // from the sample count.
                if let Some(upper_ns) = h.upper_ns(i) {
                    let mut b = prometheus::proto::Bucket::default();
                    b.set_upper_bound(upper_ns as f64 / 1e9);
                    b.set_cumulative_count(cumulative);
                    buckets.push(b);
                }
            }
            ph.set_bucket(buckets);
            ph.set_sample_count(cumulative);
            ph.set_sample_sum(h.sum_ns as f64 / 1e9);
            m.set_histogram(ph);
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

fn label_pairs(labels: Vec<(&'static str, String)>) -> Vec<LabelPair> {
    labels
        .into_iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.into());
            l.set_value(v);
            l
        })
        .collect()
}
