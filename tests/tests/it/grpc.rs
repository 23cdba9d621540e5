//! gRPC (HTTP/2 without TLS) end to end: the real canaryd and canaryctl in
//! test namespaces, Python gRPC servers as stable and canary
//! (`tests::grpc`, each naming itself in its answers), the load client in
//! the client namespace. What the kernel counted per stream and canaryd
//! decoded per header block must equal what the clients saw, call for
//! call; rollouts judge on it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{
    AppProtocol,
    api::RolloutAction,
    config::Config,
    controller::plan::{Checks, RolloutPlan},
    model::{rollout::Phase, signals::VersionSignals, weight::Weight},
};
use tests::{
    bp,
    grpc::{Code, GrpcLoad, GrpcOutcome, GrpcServer, ServerOptions},
    harness::SERVICE,
    kit::{
        DaemonUnderTest, describe_history, host_addr, run_rollout_to_end, tcp_service, wait_until,
    },
};
use xtask::canaryd::Canaryd;

const STABLE_PORT: u16 = 50051;
const CANARY_PORT: u16 = 50052;
/// gRPC's slot of UNAVAILABLE in `VersionSignals::grpc`.
const UNAVAILABLE: usize = 14;

/// canaryd's fixture (its line backends on ports nothing calls) with gRPC
/// servers as the service's stable and canary.
struct Grpc {
    s: Arc<DaemonUnderTest>,
    stable: GrpcServer,
    canary: GrpcServer,
}

impl Grpc {
    fn new(stable: ServerOptions, canary: ServerOptions) -> Grpc {
        let s = Arc::new(
            DaemonUnderTest::builder("grpc")
                .backend_ports(9181, 9182)
                .build(),
        );
        let start = |port, name, options: &ServerOptions| {
            GrpcServer::start(&s.topo.host, host_addr(port), name, options).unwrap()
        };
        let stable = start(STABLE_PORT, "stable", &stable);
        let canary = start(CANARY_PORT, "canary", &canary);
        Grpc { s, stable, canary }
    }

    /// "model", h2c, on the VIP, at `weight_bp`, with `plan` if any.
    fn config(&self, weight_bp: u16, plan: Option<RolloutPlan>) -> Config {
        let spec = tcp_service(
            SERVICE,
            self.s.vip,
            self.stable.addr,
            self.canary.addr,
            weight_bp,
        );
        let spec = canary_userspace::ServiceSpec {
            app_protocol: AppProtocol::H2c,
            ..spec
        };
        Config {
            rollouts: plan
                .map(|p| [(SERVICE.to_owned(), p)].into())
                .unwrap_or_default(),
            ..self.s.config_with(vec![spec])
        }
    }

    fn start(&self, weight_bp: u16, plan: Option<RolloutPlan>) -> Canaryd {
        self.s.write_config(&self.config(weight_bp, plan));
        self.s.start(&[])
    }

    /// `calls` unary calls over `channels` connections from the client
    /// namespace to the VIP.
    fn load(&self, calls: u32, channels: u32) -> GrpcOutcome {
        GrpcLoad {
            channels,
            concurrency: channels.min(10),
            ..GrpcLoad::calls(calls)
        }
        .run(&self.s.topo.client, self.s.vip)
        .unwrap()
    }
}

/// canaryd's [stable, canary] readings now.
fn reading(d: &Canaryd) -> [VersionSignals; 2] {
    let status = d.status().unwrap();
    let svc = &status.services[0];
    [svc.stable.signals.clone(), svc.canary.signals.clone()]
}

fn calls_from(o: &GrpcOutcome, server: &str) -> u64 {
    o.by_server.get(server).map_or(0, |s| s.calls)
}

#[test]
fn streams_and_grpc_status_are_counted_exactly_per_version() {
    let _serial = tests::root_scenario();
    let g = Grpc::new(
        ServerOptions::default(),
        ServerOptions {
            fail_every: 10,
            ..Default::default()
        },
    );
    let d = g.start(5000, None);
    let o = g.load(400, 20);
    let stable_calls = calls_from(&o, "stable");
    let canary_calls = calls_from(&o, "canary");
    let canary_unavailable = o.count_from("canary", Code::Unavailable);
    println!(
        "clients: {} calls, stable {stable_calls}, canary {canary_calls} ({canary_unavailable} UNAVAILABLE), {:?}",
        o.calls, o.by_code
    );
    assert_eq!(stable_calls + canary_calls, 400, "{o:?}");
    assert!(stable_calls > 0 && canary_calls > 0, "both versions served");
    assert_eq!(o.count_from("stable", Code::Unavailable), 0);
    let want = |r: &[VersionSignals; 2]| {
        (r[0].requests, r[1].requests) == (stable_calls, canary_calls)
            && (r[0].grpc_code(0), r[1].grpc_code(0))
                == (stable_calls, canary_calls - canary_unavailable)
            && r[1].grpc_code(UNAVAILABLE) == canary_unavailable
    };
    let took = wait_until(
        Duration::from_secs(5),
        "canaryd's counts equal the clients'",
        || format!("{:#?}", reading(&d)),
        || want(&reading(&d)),
    );
    let r = reading(&d);
    println!(
        "canaryd (within {took:?}): stable {} streams {} OK; canary {} streams {} OK {} UNAVAILABLE; \
         responses {}/{}; untracked {}/{}, undecodable {}/{}; connections {}/{}",
        r[0].requests,
        r[0].grpc_code(0),
        r[1].requests,
        r[1].grpc_code(0),
        r[1].grpc_code(UNAVAILABLE),
        r[0].responses,
        r[1].responses,
        r[0].h2_untracked,
        r[1].h2_untracked,
        r[0].h2_undecodable,
        r[1].h2_undecodable,
        r[0].h2_connections,
        r[1].h2_connections,
    );
    for v in &r {
        assert_eq!((v.h2_untracked, v.h2_undecodable), (0, 0));
        assert_eq!(v.responses, v.requests, "every stream answered");
        // Timed up to the sampler's floor rate, then a sample of them.
        let timed = v.latency.total();
        assert!(timed > 0 && timed <= v.requests, "{timed} timed");
        assert_eq!(v.class(1), v.requests, "every response :status 200");
    }
    assert_eq!(r[0].h2_connections + r[1].h2_connections, 20);
    // The error rate counts UNAVAILABLE (a default code), per stream.
    assert_eq!(r[1].errors(), canary_unavailable);
    // The metrics say the same.
    let body = g.s.metrics().unwrap();
    let sample = |name: &str| tests::kit::sample(&body, name);
    assert_eq!(
        sample(
            r#"canary_grpc_responses_total{service="model",version="canary",code="UNAVAILABLE"}"#
        ),
        Some(canary_unavailable as f64),
        "{body}"
    );
    assert_eq!(
        sample(r#"canary_h2_untracked_connections_total{service="model",version="stable"}"#),
        Some(0.0)
    );
    // canaryctl status shows requests, error rate and p99 for the service.
    let table = String::from_utf8_lossy(&d.ctl(&["status"]).unwrap().stdout).into_owned();
    println!("{table}");
    let canary_line = table
        .lines()
        .find(|l| l.starts_with("  canary "))
        .unwrap_or_else(|| panic!("no canary line:\n{table}"));
    let columns: Vec<&str> = canary_line.split_whitespace().collect();
    assert_eq!(columns[1], canary_calls.to_string(), "{canary_line}");
    let rate = 100.0 * canary_unavailable as f64 / canary_calls as f64;
    assert_eq!(columns[2], format!("{rate:.2}%"), "{canary_line}");
}

#[test]
fn time_to_first_byte_per_stream_follows_the_server() {
    let _serial = tests::root_scenario();
    let g = Grpc::new(
        ServerOptions {
            delay: Duration::from_millis(1),
            ..Default::default()
        },
        ServerOptions::default(),
    );
    let d = g.start(0, None);
    let before = reading(&d);
    g.load(200, 4);
    let fast = reading(&d);
    g.stable.set_delay(Duration::from_millis(50)).unwrap();
    g.load(100, 10);
    let slow = reading(&d);
    let p50 = |a: &VersionSignals, b: &VersionSignals| {
        b.since(a).latency.quantile(0.5).unwrap().as_secs_f64() * 1000.0
    };
    let (fast_p50, slow_p50) = (p50(&before[0], &fast[0]), p50(&fast[0], &slow[0]));
    println!("stable p50: {fast_p50:.2} ms at a 1 ms delay, {slow_p50:.2} ms at 50 ms");
    assert!((1.0..10.0).contains(&fast_p50), "{fast_p50}");
    assert!((50.0..60.0).contains(&slow_p50), "{slow_p50}");
}

/// A plan with quick intervals, like the HTTP rollouts'.
fn plan(steps: &[u16]) -> RolloutPlan {
    let mut p = RolloutPlan {
        steps: steps.iter().map(|&s| bp(s)).collect(),
        interval: Duration::from_millis(1500),
        min_requests: 20,
        max_inconclusive: 10,
        ..Default::default()
    };
    p.checks.max_error_rate = Some(0.02);
    p
}

/// Two clients' runs back to back until stopped, each run bounded (300
/// calls over 30 new connections, so a weight change reaches them: a
/// gRPC channel holds its connection, see docs/DATAPATH.md).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Vec<GrpcOutcome>>>,
}

impl Load {
    fn start(g: &Grpc) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let (s, flag) = (g.s.clone(), stop.clone());
                thread::spawn(move || {
                    let started = Instant::now();
                    let mut outcomes = vec![];
                    // Bounded: stopped by the test, or after two minutes.
                    while !flag.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(120)
                    {
                        let load = GrpcLoad {
                            channels: 30,
                            concurrency: 10,
                            ..GrpcLoad::calls(300)
                        };
                        outcomes.push(load.run(&s.topo.client, s.vip).unwrap());
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(mut self) -> Vec<GrpcOutcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

/// A test that panics mid-rollout still stops its clients, whose threads
/// hold the fixture: it must drop, namespaces and all.
impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn a_grpc_canary_failing_one_call_in_ten_is_rolled_back_in_time() {
    let _serial = tests::root_scenario();
    let g = Grpc::new(
        ServerOptions::default(),
        ServerOptions {
            fail_every: 10,
            ..Default::default()
        },
    );
    let p = plan(&[2000, 5000, 10000]);
    // The issue's bound: interval x failed_checks_limit + one interval.
    let limit = p.interval * (p.failed_checks_limit + 1);
    let d = g.start(0, Some(p));
    let load = Load::start(&g);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    let outcomes = load.finish();
    let unavailable: u64 = outcomes.iter().map(|o| o.count(Code::Unavailable)).sum();
    println!(
        "UNAVAILABLE on 10 % of the canary's calls: {:?} after {:.1} s ({} intervals; bound {:.1} s); clients saw {unavailable} UNAVAILABLE\n{}",
        r.phase,
        took.as_secs_f64(),
        r.looks,
        limit.as_secs_f64(),
        describe_history(&r)
    );
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert_eq!(r.weight, Weight::ZERO);
    assert!(took <= limit + Duration::from_millis(500), "took {took:?}");
    assert!(r.reason.contains("error_rate failed"), "{}", r.reason);
}

#[test]
fn a_healthy_grpc_canary_is_promoted() {
    let _serial = tests::root_scenario();
    let g = Grpc::new(ServerOptions::default(), ServerOptions::default());
    let d = g.start(0, Some(plan(&[2000, 5000, 10000])));
    let load = Load::start(&g);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    let outcomes = load.finish();
    let failed: u64 = outcomes.iter().map(|o| o.calls - o.count(Code::Ok)).sum();
    println!(
        "healthy gRPC canary: {:?} after {:.1} s, {} intervals; {failed} calls failed",
        r.phase,
        took.as_secs_f64(),
        r.looks
    );
    assert_eq!(r.phase, Phase::Promoted, "{}", describe_history(&r));
    assert_eq!(r.failed, 0, "{}", describe_history(&r));
    assert_eq!(failed, 0);
}

#[test]
fn a_grpc_canary_three_times_slower_is_rolled_back_on_latency() {
    let _serial = tests::root_scenario();
    let g = Grpc::new(
        ServerOptions {
            delay: Duration::from_millis(5),
            ..Default::default()
        },
        ServerOptions {
            delay: Duration::from_millis(15),
            ..Default::default()
        },
    );
    let mut p = plan(&[2000, 5000, 10000]);
    p.checks = Checks {
        // On a bucket bound (16.384 µs x 2^9 x 1.25), between the stable's
        // p99 (5 ms and the Python server's own time) and the canary's.
        max_p99_ms: Some(10.48576),
        ..p.checks
    };
    let d = g.start(0, Some(p));
    let load = Load::start(&g);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    let last = r.history.last().unwrap();
    println!(
        "3x slower gRPC canary: {:?} after {:.1} s: {}",
        r.phase,
        took.as_secs_f64(),
        last.reason
    );
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert!(
        last.reason.contains("p99_ms failed"),
        "{}",
        describe_history(&r)
    );
}

/// gRPC channels opened before a step stay where they are: `rollout
/// status` says the observed share (of streams) lags the weight. With a
/// maximum connection age on the servers, the channels reconnect and the
/// share follows the weight.
#[test]
fn long_lived_channels_lag_the_weight_until_the_servers_age_them() {
    let _serial = tests::root_scenario();
    for age in [None, Some(Duration::from_millis(500))] {
        let options = ServerOptions {
            max_connection_age: age,
            ..Default::default()
        };
        let g = Grpc::new(options.clone(), options);
        // One step held for the whole test: nothing fails, nothing is
        // judged past its first looks.
        let mut p = plan(&[5000, 10000]);
        p.interval = Duration::from_secs(60);
        let d = g.start(0, Some(p));
        // 20 channels, opened at weight 0, calling for about 4 s.
        let (s, load) = (
            g.s.clone(),
            thread::spawn({
                let s = g.s.clone();
                move || {
                    GrpcLoad {
                        channels: 20,
                        concurrency: 20,
                        deadline: Duration::from_secs(30),
                        ..GrpcLoad::calls(4000)
                    }
                    .run(&s.topo.client, s.vip)
                    .unwrap()
                }
            }),
        );
        wait_until(
            Duration::from_secs(10),
            "the channels are open",
            String::new,
            || reading(&d)[0].requests > 200,
        );
        d.client().rollout(SERVICE, RolloutAction::Start).unwrap();
        // Scenario timing: streams after the step, long enough for aged
        // connections to have reconnected (4 ages).
        thread::sleep(Duration::from_secs(2));
        let out = d.ctl(&["rollout", "status", SERVICE]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report = d.client().rollout_status(SERVICE).unwrap();
        let share = report.observed_canary_share.unwrap_or(0.0);
        let outcome = load.join().unwrap();
        drop(s);
        println!(
            "connection age {age:?}: observed canary share {:.1} % at a weight of {}; clients: {} calls, {:?}",
            share * 100.0,
            report.weight,
            outcome.calls,
            outcome
                .by_server
                .iter()
                .map(|(k, v)| (k.clone(), v.calls))
                .collect::<Vec<_>>()
        );
        let lags = text.contains("the observed share lags the weight");
        match age {
            None => {
                assert!(share < 0.05, "channels stayed on stable: {share}");
                assert!(lags, "{text}");
            }
            Some(_) => {
                assert!(share > 0.2, "aged channels reconnected: {share}");
                assert_eq!(outcome.count(Code::Ok), outcome.calls, "no call failed");
            }
        }
    }
}
