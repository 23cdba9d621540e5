//! Healthy canaries get promoted, slow ones rolled back (issue 24), end to
//! end: model-server-shaped latency (both versions draw each answer's
//! delay from one lognormal: 30 ms median, p99 about 68 ms), ~300 requests
//! a second per service over connections that are reopened every 10
//! requests, steps 10/50/100 %, a 3 s interval and `max_p99_ratio = 1.5`,
//! the check whose log2 buckets could never pass such a canary.
//!
//! Ten services run side by side in one canaryd (ten runs at once: the
//! same evidence as ten runs one after the other, in a tenth of the time).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{
    api::{RolloutAction, RolloutReport},
    config::Config,
    controller::plan::RolloutPlan,
    model::rollout::Phase,
};
use tests::{
    kit::{host_addr as at, tcp_service},
    servers::{Backend, Behaviour, Http, HttpClient},
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs},
    topology::{BackendKind, HOST_IF, Topology},
};

const RUNS: u16 = 10;
const MEDIAN: Duration = Duration::from_millis(30);
/// p99 = 30 ms × e^(2.326 × 0.352) ≈ 68 ms, the MLServer shape of the issue.
const SIGMA: f64 = 0.352;
/// Client threads per service: each waits for its answer (~30 ms), so ten
/// make about 300 requests a second.
const CLIENTS: usize = 10;
/// No rollout of this test may take longer (each phase stops by then).
const LIMIT: Duration = Duration::from_secs(180);

fn plan() -> RolloutPlan {
    let mut p = RolloutPlan {
        steps: [1000, 5000, 10000].map(tests::bp).to_vec(),
        interval: Duration::from_secs(3),
        min_requests: 10,
        ..Default::default()
    };
    p.checks.max_p99_ratio = Some(1.5);
    // The default 5 ms is 7 % of this p99 on top of the ratio: with 1 ms a
    // SLOW canary is further from the limit than the two buckets (stable's
    // and the canary's) the check cannot see into.
    p.checks.p99_margin_ms = 1.0;
    p
}

/// `RUNS` services, each with a stable and a canary backend drawing their
/// delays from the lognormal (the canary's median × `slowdown`), under
/// load, each with a rollout started at once; returns every rollout's end
/// and the time it took.
fn rollouts(slowdown: f64) -> Vec<(RolloutReport, Duration)> {
    let topo = Topology::new(BackendKind::LocalProcess).unwrap();
    let mut backends = vec![];
    let mut services = vec![];
    let canary_median = MEDIAN.mul_f64(slowdown);
    for i in 0..RUNS {
        for (port, label, median) in [
            (8100 + i, "stable", MEDIAN),
            (8200 + i, "canary", canary_median),
        ] {
            let http = Behaviour::Http(Http::lognormal(median, SIGMA));
            backends.push(Backend::spawn_with(&topo.host, at(port), label, http).unwrap());
        }
        let name = format!("model{i}");
        services.push(tcp_service(
            &name,
            at(81 + i),
            at(8100 + i),
            at(8200 + i),
            0,
        ));
    }
    let dirs = DaemonDirs::new("power").unwrap();
    let config = Config {
        daemon: dirs.daemon_config(HOST_IF),
        rollouts: services.iter().map(|s| (s.name.clone(), plan())).collect(),
        fleet: None,
        services: services.clone(),
    };
    dirs.write_config(&config).unwrap();
    let bins = Binaries::next_to_test().unwrap();
    let d = Canaryd::start(&topo.host, &bins, &dirs, &[]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let topo = Arc::new(topo);
    let clients: Vec<_> = services
        .iter()
        .flat_map(|s| (0..CLIENTS).map(move |_| s.vip))
        .map(|vip| {
            let (stop, answered, topo) = (stop.clone(), answered.clone(), topo.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + LIMIT + Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(mut c) = HttpClient::connect(&topo.client, vip) else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    // A new connection every 10 requests: weights apply to
                    // new connections.
                    for _ in 0..10 {
                        if c.get().is_err() {
                            break;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // A second of traffic first: both versions' histograms have data.
    thread::sleep(Duration::from_secs(1));
    let client = d.client();
    let started = Instant::now();
    for s in &services {
        client.rollout(&s.name, RolloutAction::Start).unwrap();
    }
    let mut ended: Vec<Option<(RolloutReport, Duration)>> = vec![None; services.len()];
    while ended.iter().any(Option::is_none) && started.elapsed() < LIMIT {
        for (s, end) in services.iter().zip(ended.iter_mut()) {
            if end.is_some() {
                continue;
            }
            let r = client.rollout_status(&s.name).unwrap();
            if r.phase != Phase::Running {
                *end = Some((r, started.elapsed()));
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    let rate = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    println!(
        "canary median x{slowdown}: {:.0} requests/s per service over {:.1} s",
        rate / f64::from(RUNS),
        started.elapsed().as_secs_f64()
    );
    let out: Vec<_> = services
        .iter()
        .zip(ended)
        .map(|(s, end)| {
            end.unwrap_or_else(|| {
                let r = client.rollout_status(&s.name).unwrap();
                (r, started.elapsed())
            })
        })
        .collect();
    drop(d);
    drop(backends);
    out
}

fn describe(r: &RolloutReport) -> String {
    r.history
        .iter()
        .map(|h| format!("  look {} {:?}: {}", h.look, h.verdict, h.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn seconds(runs: &[(RolloutReport, Duration)]) -> Vec<String> {
    runs.iter()
        .map(|(r, took)| format!("{:?} {:.1}s/{}", r.phase, took.as_secs_f64(), r.looks))
        .collect()
}

/// How much slower the slow canary is: 2.1 x, p99 ~143 ms against ~68.
/// At 2 x its p99 (136 ms) sits 1.3 % above a bucket bound (134.2 ms,
/// 2^27 ns), so its measured p99 falls on either side of the bound, and
/// on the lower side its bucket holds the limit (1.5 x stable's upper
/// bound 83.9 ms + 1 ms = 126.8 ms): no amount of traffic settles it and
/// the rollout pauses instead (1 service of 10 in one CI run). At 2.1 x
/// the p99 is mid-bucket, (134.2, 151.0] ms, above the limit either way.
const SLOW: f64 = 2.1;

/// The same lognormal for both versions: promoted in 10 of 10 runs. Then
/// the canary `SLOW` times as slow: rolled back in 10 of 10.
#[test]
fn healthy_canaries_are_promoted_and_twice_slower_ones_rolled_back() {
    let _serial = tests::root_scenario();
    let healthy = rollouts(1.0);
    println!("same latency: {:?}", seconds(&healthy));
    for (r, _) in &healthy {
        assert_eq!(r.phase, Phase::Promoted, "{}\n{}", r.service, describe(r));
    }
    let slow = rollouts(SLOW);
    println!("canary {SLOW}x slower: {:?}", seconds(&slow));
    for (r, _) in &slow {
        assert_eq!(r.phase, Phase::RolledBack, "{}\n{}", r.service, describe(r));
    }
}
