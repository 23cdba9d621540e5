//! The control plane's cost as services grow: `canaryctl status` (process
//! start to exit) and a `/metrics` scrape (GET to the end of the body),
//! each against a canaryd serving 1 service and one serving 256, both in a
//! topology of the bench's own and nothing else running. No traffic goes to
//! the services: their VIPs are ports of the host namespace's address, their
//! backends ports of the backend namespaces', all in 198.18.0.0/15.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use canary_common::MAX_SERVICES;
use canary_userspace::{
    Affinity, Protocol, ServiceSpec,
    config::{Config, DaemonConfig},
    model::weight::Weight,
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs},
    stats::median,
    topology::{BACKEND_V4, BackendKind, HOST_IF, HOST_V4, Topology},
};

use super::Mode;

/// Services of the two daemons compared.
pub const SERVICES: [u32; 2] = [1, MAX_SERVICES];
/// Where canaryd serves /metrics: the host namespace's own address, not
/// loopback, so all the bench's traffic stays in 198.18.0.0/15.
const METRICS_PORT: u16 = 9464;
/// Bound on one scrape (connect, send, read to the end).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on all of one daemon's samples.
const DAEMON_BUDGET: Duration = Duration::from_secs(60);

pub struct Plan {
    /// Samples of each measure per daemon (after one warm-up of each).
    pub runs: usize,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        Plan {
            runs: match mode {
                Mode::Full => 21,
                Mode::Quick => 7,
            },
        }
    }
}

/// What one daemon's samples showed.
pub struct Sample {
    pub services: u32,
    /// `canaryctl status`, process start to exit, each run.
    pub status_ms: Vec<f64>,
    /// Bytes canaryctl printed (the last run).
    pub status_bytes: usize,
    /// GET /metrics, connect to the end of the body, each run.
    pub metrics_ms: Vec<f64>,
    /// The body's bytes and sample lines (not `#` comments), last run.
    pub metrics_bytes: usize,
    pub metrics_samples: usize,
    /// canaryd's resident set size after the samples.
    pub rss_kib: u64,
}

impl Sample {
    pub fn status_median_ms(&self) -> f64 {
        median(&self.status_ms)
    }
    pub fn metrics_median_ms(&self) -> f64 {
        median(&self.metrics_ms)
    }
}

pub struct Results {
    pub runs: usize,
    pub samples: Vec<Sample>,
}

impl Results {
    pub fn with(&self, services: u32) -> Option<&Sample> {
        self.samples.iter().find(|s| s.services == services)
    }
}

pub fn run(bins: &Binaries, plan: &Plan) -> Result<Results> {
    let topo = Topology::new(BackendKind::Namespace).context("the control-scale topology")?;
    let mut samples = vec![];
    for n in SERVICES {
        let dirs = DaemonDirs::new("bench-ctl")?;
        let metrics = SocketAddr::new(HOST_V4.into(), METRICS_PORT);
        dirs.write_config(&Config {
            daemon: DaemonConfig {
                metrics_listen: metrics,
                ..dirs.daemon_config(HOST_IF)
            },
            services: (0..n).map(service).collect(),
            rollouts: Default::default(),
            fleet: None,
        })?;
        let t = Instant::now();
        let daemon = Canaryd::start(&topo.host, bins, &dirs, &[])?;
        println!(
            "control: canaryd with {n} service(s) answering after {:.1}s; {} samples each of canaryctl status and GET /metrics",
            t.elapsed().as_secs_f64(),
            plan.runs
        );
        let shown = daemon.status()?.services.len();
        ensure!(
            shown == n as usize,
            "canaryd reports {shown} services, want {n}"
        );
        let s = measure(&daemon, &topo, metrics, n, plan.runs)?;
        println!(
            "control: {n} service(s): canaryctl status {:.2} ms ({} bytes), /metrics {:.2} ms ({} bytes, {} samples) (medians)",
            s.status_median_ms(),
            s.status_bytes,
            s.metrics_median_ms(),
            s.metrics_bytes,
            s.metrics_samples
        );
        samples.push(s);
    }
    Ok(Results {
        runs: plan.runs,
        samples,
    })
}

/// The i-th service: VIP = the host's address port 10000 + i, backends the
/// two backend namespaces' addresses port 20000 + i.
fn service(i: u32) -> ServiceSpec {
    let at = |ip: std::net::Ipv4Addr, port: u32| SocketAddr::new(ip.into(), port as u16);
    ServiceSpec {
        name: format!("svc-{i}"),
        vip: at(HOST_V4, 10_000 + i),
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: vec![at(BACKEND_V4[0], 20_000 + i)],
        canary: vec![at(BACKEND_V4[1], 20_000 + i)],
        weight: Weight::from_bp(1000).expect("10 % is a weight"),
    }
}

fn measure(
    d: &Canaryd,
    topo: &Topology,
    metrics: SocketAddr,
    services: u32,
    runs: usize,
) -> Result<Sample> {
    let mut s = Sample {
        services,
        status_ms: vec![],
        status_bytes: 0,
        metrics_ms: vec![],
        metrics_bytes: 0,
        metrics_samples: 0,
        rss_kib: 0,
    };
    let deadline = Instant::now() + DAEMON_BUDGET;
    // Run 0 warms the page cache and the daemon's paths; not recorded.
    for run in 0..=runs {
        ensure!(
            Instant::now() < deadline,
            "control samples took over {DAEMON_BUDGET:?}"
        );
        let t = Instant::now();
        let out = d
            .ctl_command(&["status"])
            .output()
            .context("running canaryctl status")?;
        let status = t.elapsed();
        ensure!(
            out.status.success(),
            "canaryctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = Instant::now();
        let body = xtask::http::get(&topo.host, metrics, "/metrics", SCRAPE_TIMEOUT)?;
        let scrape = t.elapsed();
        if run > 0 {
            s.status_ms.push(status.as_secs_f64() * 1e3);
            s.metrics_ms.push(scrape.as_secs_f64() * 1e3);
        }
        s.status_bytes = out.stdout.len();
        s.metrics_bytes = body.len();
        s.metrics_samples = sample_lines(&body);
    }
    s.rss_kib = super::proc::rss_kib(d.pid)?;
    Ok(s)
}

/// Lines of a Prometheus text body that are samples (not comments or blank).
pub fn sample_lines(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_lines_that_are_not_comments() {
        let body = "# HELP canary_x x\n# TYPE canary_x counter\ncanary_x{service=\"a\"} 1\n\ncanary_x{service=\"b\"} 2\n";
        assert_eq!(sample_lines(body), 2);
    }

    #[test]
    fn every_service_checks_and_none_share_a_backend() {
        let all: Vec<ServiceSpec> = (0..MAX_SERVICES).map(service).collect();
        let mut seen = std::collections::HashSet::new();
        for s in &all {
            s.check().unwrap();
            assert!(seen.insert(s.vip));
            for b in s.stable.iter().chain(&s.canary) {
                assert!(seen.insert(*b), "{b} used twice");
            }
        }
    }
}
