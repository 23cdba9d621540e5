//! Rollouts end to end: the real canaryd and canaryctl in a test namespace,
//! HTTP backends whose canary can be made to fail or slow down, and client
//! threads sending keep-alive requests (reconnecting every few requests,
//! so a weight change reaches new connections). Each scenario checks what
//! the rollout decided and what the kernel then did.

use std::{
    net::SocketAddr,
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
    controller::plan::{Checks, Gate, Mode, OnRollback, RolloutPlan},
    model::rollout::{Action, Phase, Verdict},
    model::weight::Weight,
};
use tests::bp;
use tests::{
    harness::SERVICE,
    kit::{
        DaemonUnderTest, WAIT, describe_history, run_rollout_to_end, sockets_to, text, wait_until,
    },
    servers::{Behaviour, Http, HttpClient},
};
use xtask::canaryd::Canaryd;

/// A plan with quick intervals, `steps` in basis points; each test
/// changes what it tests.
pub(crate) fn plan(steps: &[u16]) -> RolloutPlan {
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

/// A gate on `query` that fails below `min`.
fn gate(name: &str, query: &str, min: f64) -> Gate {
    Gate {
        name: name.into(),
        query: query.into(),
        min: Some(min),
        max: None,
    }
}

/// HTTP backends: stable always 200 after `stable_delay`; the canary
/// answers 500 to every `canary_error_every`-th request, after
/// `canary_delay`.
pub(crate) fn setup(
    canary_error_every: u64,
    stable_delay: Duration,
    canary_delay: Duration,
) -> Arc<DaemonUnderTest> {
    setup_with(
        Http::new(0, stable_delay),
        Http::new(canary_error_every, canary_delay),
    )
}

/// Both versions answer every request at once.
pub(crate) fn healthy() -> Arc<DaemonUnderTest> {
    setup(0, Duration::ZERO, Duration::ZERO)
}

/// HTTP backends that answer as `stable` and `canary` say.
fn setup_with(stable: Arc<Http>, canary: Arc<Http>) -> Arc<DaemonUnderTest> {
    Arc::new(
        DaemonUnderTest::builder("rollout")
            .behaviour([Behaviour::Http(stable), Behaviour::Http(canary)])
            .build(),
    )
}

/// "model" at `weight_bp` with the rollout `plan`.
pub(crate) fn config(s: &DaemonUnderTest, plan: RolloutPlan, weight_bp: u16) -> Config {
    Config {
        rollouts: [(SERVICE.to_owned(), plan)].into(),
        fleet: None,
        ..s.config(weight_bp)
    }
}

/// canaryd with `plan`, the canary weight at 0.
pub(crate) fn start(s: &DaemonUnderTest, plan: RolloutPlan) -> Canaryd {
    start_at(s, plan, 0)
}

/// `start`, with the config's canary weight at `weight_bp`.
fn start_at(s: &DaemonUnderTest, plan: RolloutPlan, weight_bp: u16) -> Canaryd {
    s.write_config(&config(s, plan, weight_bp));
    s.start(&[])
}

/// Client threads sending requests until stopped (bounded in time and
/// count), counting what each version answered.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<[AtomicU64; 2]>,
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(s: &Arc<DaemonUnderTest>, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                let s = s.clone();
                thread::spawn(move || {
                    let (ns, vip) = (&s.topo.client, s.vip);
                    let deadline = Instant::now() + Duration::from_secs(120);
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                        && sent < 2_000_000
                    {
                        let Ok(mut c) = HttpClient::connect(ns, vip) else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        // A new connection every 10 requests: weights apply
                        // to new connections.
                        for _ in 0..10 {
                            sent += 1;
                            match c.get() {
                                Ok(a) => {
                                    let i = usize::from(a.version == "canary");
                                    answered[i].fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failed,
            threads,
        }
    }

    pub(crate) fn finish(mut self) -> ([u64; 2], u64) {
        self.stop_threads();
        (
            [
                self.answered[0].load(Ordering::Relaxed),
                self.answered[1].load(Ordering::Relaxed),
            ],
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Also on a failed assertion: the threads hold the setup, whose drop
/// removes the test's namespaces and pins.
impl Drop for Load {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

#[test]
fn a_canary_failing_one_request_in_ten_is_rolled_back_in_time() {
    let _serial = tests::root_scenario();
    let canary_http = Http::new(10, Duration::ZERO);
    let s = setup_with(Http::new(0, Duration::ZERO), canary_http.clone());
    let p = plan(&[500, 2500, 5000, 10000]);
    let limit = p.interval * (p.failed_checks_limit + 1);
    let d = start(&s, p);
    let load = Load::start(&s, 6);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    let (answered, _) = load.finish();
    println!(
        "5xx on 10% at a 5% step: {:?} after {:.1} s ({} intervals; limit interval x (failed_checks_limit + 1) = {:.1} s); clients got stable {} / canary {} answers\n{}",
        r.phase,
        took.as_secs_f64(),
        r.looks,
        limit.as_secs_f64(),
        answered[0],
        answered[1],
        describe_history(&r)
    );
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert_eq!(r.weight, Weight::ZERO);
    assert!(took <= limit + Duration::from_millis(500), "took {took:?}");
    // Status says why the weight is 0: the rollout in one line, in the
    // table and in the JSON.
    let table = String::from_utf8_lossy(&d.ctl(&["status"]).unwrap().stdout).into_owned();
    let line = table
        .lines()
        .find(|l| l.starts_with("  rollout rolled back  step 1/4"))
        .unwrap_or_else(|| panic!("no rollout line:\n{table}"));
    println!("{line}");
    assert!(
        line.contains(&r.reason[..r.reason.len().min(20)]),
        "{line}\n{}",
        r.reason
    );
    let status = d.status().unwrap();
    let rollout = status.services[0].rollout.as_ref().unwrap();
    assert_eq!(
        (rollout.phase, rollout.step, rollout.looks, &rollout.reason),
        (Phase::RolledBack, 0, r.looks, &r.reason)
    );
    // After the rollback new connections reach stable only.
    let served = canary_http.served();
    let after = Load::start(&s, 2);
    // Scenario timing: half a second of new connections to look at.
    thread::sleep(Duration::from_millis(500));
    let (answered, failed) = after.finish();
    assert!(answered[0] > 0 && failed == 0);
    assert!(
        canary_http.served() - served <= 20,
        "canary still got new connections after the rollback"
    );
}

/// A webhook receiver that takes each event and then never answers (past
/// canaryd's 3 s timeout, every try): the rollback is as quick as without
/// a webhook, and the receiver still got the events, rollback included.
#[test]
fn a_stuck_webhook_receiver_never_delays_a_rollback() {
    let _serial = tests::root_scenario();
    let s = setup(10, Duration::ZERO, Duration::ZERO);
    let receiver = tests::webhook::Receiver::start(
        &s.topo.host,
        "127.0.0.1:9102".parse().unwrap(),
        tests::webhook::Answer::Stall(Duration::from_secs(4)),
    )
    .unwrap();
    let mut p = plan(&[500, 2500, 5000, 10000]);
    p.webhook = Some(receiver.url.clone());
    let limit = p.interval * (p.failed_checks_limit + 1);
    let d = start(&s, p);
    let load = Load::start(&s, 6);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    // The posts run in the background: give the last one a moment (the
    // count is checked below, with the events).
    tests::eventually(Duration::from_secs(5), || {
        receiver.events().len() >= r.history.len()
    });
    let events = receiver.events();
    println!(
        "stuck webhook: {:?} after {:.1} s (limit {:.1} s); receiver got {} events for {} decisions",
        r.phase,
        took.as_secs_f64(),
        limit.as_secs_f64(),
        events.len(),
        r.history.len()
    );
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert!(took <= limit + Duration::from_millis(500), "took {took:?}");
    assert!(
        receiver.malformed().is_empty(),
        "{:?}",
        receiver.malformed()
    );
    assert!(
        events
            .iter()
            .any(|e| e.decision.action == Action::Rollback && e.phase == Phase::RolledBack),
        "{events:?}"
    );
}

#[test]
fn healthy_canaries_are_promoted() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let d = start(&s, plan(&[500, 5000, 10000]));
    let load = Load::start(&s, 6);
    for run in 1..=3 {
        if run > 1 {
            // Back to stable for the next rollout.
            d.client().rollback(SERVICE).unwrap();
        }
        let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
        println!(
            "healthy rollout {run}: {:?} after {:.1} s, {} intervals, no failed interval: {}",
            r.phase,
            took.as_secs_f64(),
            r.looks,
            r.failed == 0
        );
        assert_eq!(r.phase, Phase::Promoted, "{}", describe_history(&r));
        assert_eq!(r.failed, 0, "{}", describe_history(&r));
        assert_eq!(r.weight, Weight::FULL);
    }
    let (_, failed) = load.finish();
    assert_eq!(failed, 0, "requests failed during the rollouts");
}

#[test]
fn a_canary_three_times_slower_is_rolled_back_on_latency() {
    let _serial = tests::root_scenario();
    let s = setup(0, Duration::from_millis(1), Duration::from_millis(3));
    let mut p = plan(&[1000, 5000, 10000]);
    p.checks = Checks {
        // On a bucket bound: 16 µs x 2^7. The stable answers in about 1 ms.
        max_p99_ms: Some(2.048),
        ..p.checks
    };
    let d = start(&s, p);
    let load = Load::start(&s, 6);
    let (r, took) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    let last = r.history.last().unwrap();
    println!(
        "3x slower canary: {:?} after {:.1} s: {}",
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

#[test]
fn dry_run_reports_the_rollback_and_changes_no_weight() {
    let _serial = tests::root_scenario();
    let s = setup(10, Duration::ZERO, Duration::ZERO);
    let mut p = plan(&[500, 5000, 10000]);
    p.mode = Mode::DryRun;
    // A dry run changes no weight: the canary gets the config's 5 %.
    let d = start_at(&s, p, 500);
    let load = Load::start(&s, 6);
    let (r, _) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    println!("dry-run: {:?}, weight {}: {}", r.phase, r.weight, r.reason);
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert!(r.history.iter().all(|h| h.dry_run));
    assert_eq!(r.history.last().unwrap().action, Action::Rollback);
    assert_eq!(r.weight, bp(500), "the config's weight, untouched");
    assert_eq!(d.status().unwrap().services[0].weight, bp(500));
}

/// Connections that reached the canary, held open (keep-alive).
fn canary_connections(s: &DaemonUnderTest, n: usize) -> Vec<HttpClient> {
    let mut held = vec![];
    for _ in 0..n * 20 {
        let mut c = HttpClient::connect(&s.topo.client, s.vip).unwrap();
        if c.get().unwrap().version == "canary" {
            held.push(c);
            if held.len() == n {
                return held;
            }
        }
    }
    panic!("only {} of {n} connections reached the canary", held.len());
}

/// How many of `held` the canary still answers.
fn still_on_the_canary(held: &mut [HttpClient]) -> usize {
    held.iter_mut()
        .filter_map(|c| c.get().ok())
        .filter(|a| a.version == "canary")
        .count()
}

/// Dry-run with `on_rollback = "reset"`: the rollout's own rollback changes
/// nothing (no weight, no flow reset); an operator's rollback is the
/// emergency button and applies in dry-run too: canary weight 0 and the
/// canary's established connections reset (issue 18). Before, it reset the
/// connections and left the weight.
#[test]
fn in_dry_run_the_controllers_rollback_changes_nothing_and_an_operators_applies() {
    let _serial = tests::root_scenario();
    let s = setup(10, Duration::ZERO, Duration::ZERO);
    let mut p = plan(&[500, 5000, 10000]);
    p.mode = Mode::DryRun;
    p.on_rollback = OnRollback::Reset;
    let d = start_at(&s, p, 5000);
    let mut held = canary_connections(&s, 10);

    // The controller's own rollback: logged, not carried out.
    let load = Load::start(&s, 6);
    let (r, _) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    let kept = still_on_the_canary(&mut held);
    println!(
        "dry-run, the controller's rollback: {:?}, weight {}, {kept} of 10 held canary connections still on the canary",
        r.phase, r.weight
    );
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert_eq!(r.history.last().unwrap().action, Action::Rollback);
    assert!(r.history.iter().all(|h| h.dry_run));
    assert_eq!(d.status().unwrap().services[0].weight, bp(5000));
    assert_eq!(kept, 10, "a dry-run decision reset canary connections");

    // An operator's rollback of a dry-run rollout in progress: applied.
    d.client().rollout(SERVICE, RolloutAction::Start).unwrap();
    let out = s.ctl(&["rollback", SERVICE]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = d.client().rollout_status(SERVICE).unwrap();
    let kept = still_on_the_canary(&mut held);
    let weight = d.status().unwrap().services[0].weight;
    println!(
        "dry-run, an operator's rollback: {:?} ({}), weight {weight}, {kept} of 10 held canary connections still on the canary",
        r.phase, r.reason
    );
    assert_eq!(r.phase, Phase::RolledBack);
    assert_eq!(r.reason, "rolled back by an operator");
    assert_eq!(weight, Weight::ZERO);
    assert_eq!(kept, 0, "on_rollback = \"reset\" did not reset them");
    for _ in 0..10 {
        let mut fresh = HttpClient::connect(&s.topo.client, s.vip).unwrap();
        assert_eq!(fresh.get().unwrap().version, "stable");
    }
}

/// Drain keeps established canary connections on the canary after a
/// rollback; reset ends them at their next packet.
#[test]
fn drain_keeps_and_reset_ends_established_canary_connections() {
    let _serial = tests::root_scenario();
    for (on_rollback, expect_served) in [(OnRollback::Drain, true), (OnRollback::Reset, false)] {
        let s = healthy();
        let mut p = plan(&[10000]);
        p.on_rollback = on_rollback;
        p.interval = Duration::from_secs(60);
        let d = start(&s, p);
        d.client().rollout(SERVICE, RolloutAction::Start).unwrap();
        let mut conns: Vec<HttpClient> = (0..10)
            .map(|_| {
                let mut c = HttpClient::connect(&s.topo.client, s.vip).unwrap();
                assert_eq!(c.get().unwrap().version, "canary");
                c
            })
            .collect();
        let out = s.ctl(&["rollback", SERVICE]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let still = conns
            .iter_mut()
            .map(|c| c.get().is_ok_and(|a| a.version == "canary"))
            .filter(|served| *served)
            .count();
        println!(
            "on_rollback {on_rollback}: {still} of 10 canary connections still answered by the canary"
        );
        if expect_served {
            assert_eq!(still, 10);
        } else {
            assert_eq!(still, 0);
        }
        // New connections go to stable either way.
        let mut fresh = HttpClient::connect(&s.topo.client, s.vip).unwrap();
        assert_eq!(fresh.get().unwrap().version, "stable");
    }
}

#[test]
fn kill_minus_nine_mid_rollout_resumes_at_the_same_step() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let d = start(&s, plan(&[500, 1000, 2500, 5000, 10000]));
    let load = Load::start(&s, 6);
    // A pipeline's wait, started with the rollout, outlasts the restart.
    let waiter = d
        .ctl_command(&["rollout", "start", SERVICE, "--wait", "--timeout", "90s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = d.client();
    let mut before = None;
    wait_until(
        Duration::from_secs(30),
        "the rollout steps up",
        || d.log_text(),
        || {
            // Until the waiter has started it, there is none.
            let Ok(r) = client.rollout_status(SERVICE) else {
                return false;
            };
            let up = r.step >= 1;
            before = Some(r);
            up
        },
    );
    let before = before.unwrap();
    let mut d = d;
    d.signal(libc::SIGKILL).unwrap();
    // Down for three of the waiter's polls (every 0.5 s).
    thread::sleep(Duration::from_millis(1500));
    let d = s.start(&[]);
    let after = d.client().rollout_status(SERVICE).unwrap();
    println!(
        "kill -9 at step {} after {} looks: restarted at step {} after {} looks, weight {}",
        before.step, before.looks, after.step, after.looks, after.weight
    );
    assert!(after.step >= before.step && after.looks >= before.looks);
    assert_eq!(after.history[..before.history.len()], before.history[..]);
    let end = d
        .client()
        .wait_for_rollout(
            SERVICE,
            Duration::from_millis(100),
            Duration::from_secs(60),
            |_| {},
        )
        .unwrap();
    load.finish();
    assert_eq!(end.phase, Phase::Promoted, "{}", describe_history(&end));
    let waited = tests::kit::wait_within(waiter, Duration::from_secs(30)).unwrap();
    println!("the wait across the restart: {:?}", waited.status.code());
    assert_eq!(
        waited.status.code(),
        Some(0),
        "canaryctl --wait: {}",
        text(&waited.stderr)
    );
}

#[test]
fn wait_exits_by_outcome_with_a_json_report() {
    let _serial = tests::root_scenario();
    for (error_every, code, phase) in [(0, 0, "promoted"), (10, 10, "rolled_back")] {
        let s = setup(error_every, Duration::ZERO, Duration::ZERO);
        let d = start(&s, plan(&[500, 5000, 10000]));
        let load = Load::start(&s, 6);
        let out = d
            .ctl(&[
                "--json",
                "rollout",
                "start",
                SERVICE,
                "--wait",
                "--timeout",
                "60s",
            ])
            .unwrap();
        load.finish();
        let report: RolloutReport = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        println!(
            "--wait: exit {:?}, phase {:?}, {} decisions in the report",
            out.status.code(),
            report.phase,
            report.history.len()
        );
        assert_eq!(out.status.code(), Some(code));
        assert_eq!(serde_json::to_value(report.phase).unwrap(), phase);
        assert!(!report.history.is_empty());
    }
    // Aborted by an operator while another canaryctl waits.
    let s = healthy();
    let mut p = plan(&[500, 5000, 10000]);
    p.interval = Duration::from_secs(60);
    let d = start(&s, p);
    let waiter = {
        let s = s.clone();
        thread::spawn(move || s.ctl(&["rollout", "start", SERVICE, "--wait", "--timeout", "60s"]))
    };
    let client = s.client();
    wait_until(
        WAIT,
        "the waiting canaryctl starts the rollout",
        || d.log_text(),
        || client.rollout_status(SERVICE).is_ok(),
    );
    client.rollout(SERVICE, RolloutAction::Abort).unwrap();
    let out = waiter.join().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    drop(d);
}

/// A PromQL gate against a real Prometheus that scrapes canaryd: a gate
/// the canary cannot meet rolls it back; with Prometheus unreachable the
/// gate is inconclusive and the rollout pauses, never promotes; and a
/// Prometheus that never answers delays neither status nor metrics.
#[test]
fn gates_judge_on_prometheus_and_no_answer_is_never_a_pass() {
    let _serial = tests::root_scenario();
    // A gate on the canary's own request count, with a minimum no canary
    // reaches: the query works, the value fails.
    let s = healthy();
    let prom = s.prometheus();
    let mut p = plan(&[500, 5000, 10000]);
    p.prometheus = Some(format!("http://{}", prom.listen));
    p.gates = vec![gate(
        "canary_requests",
        r#"sum(canary_requests_total{version="canary"})"#,
        1e12,
    )];
    let d = start(&s, p.clone());
    let load = Load::start(&s, 4);
    let (r, _) = run_rollout_to_end(&d, Duration::from_secs(60));
    load.finish();
    println!("gate below its minimum: {:?}: {}", r.phase, r.reason);
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert!(
        r.reason.contains("gate:canary_requests failed"),
        "{}",
        describe_history(&r)
    );
    drop(d);
    drop(prom);

    // Prometheus stands in as a listener that never answers: every query
    // times out, inconclusive; the rollout pauses.
    let s = healthy();
    let silent = s
        .topo
        .host
        .enter(|| std::net::TcpListener::bind("127.0.0.1:9091"))
        .unwrap()
        .unwrap();
    p.prometheus = Some("http://127.0.0.1:9091".into());
    p.max_inconclusive = 2;
    p.interval = Duration::from_millis(500);
    let d = start(&s, p);
    let load = Load::start(&s, 4);
    let client = d.client();
    client.rollout(SERVICE, RolloutAction::Start).unwrap();
    // While a query hangs (canaryd holds a connection to the silent
    // listener), status answers at once.
    wait_until(
        WAIT,
        "a gate query hangs on the silent Prometheus",
        || d.log_text(),
        || sockets_to(d.pid, 9091) > 0,
    );
    let t = Instant::now();
    d.status().unwrap();
    let status_took = t.elapsed();
    let r = client
        .wait_for_rollout(
            SERVICE,
            Duration::from_millis(100),
            Duration::from_secs(60),
            |_| {},
        )
        .unwrap();
    load.finish();
    drop(silent);
    println!(
        "Prometheus never answering: {:?} after {} looks ({}); canaryctl status took {:.1} ms meanwhile",
        r.phase,
        r.looks,
        r.reason,
        status_took.as_secs_f64() * 1e3
    );
    assert_eq!(r.phase, Phase::Paused, "{}", describe_history(&r));
    assert!(
        r.history
            .iter()
            .all(|h| h.action != Action::StepUp { step: 1 })
    );
    assert!(status_took < Duration::from_millis(100));
}

/// The failsafe: with canaryd gone longer than `failsafe_timeout`, new
/// flows go to stable (counted), established ones stay; a restart resumes
/// the rollout at its step and the split comes back.
#[test]
fn failsafe_sends_new_flows_to_stable_while_canaryd_is_gone() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let mut p = plan(&[5000, 10000]);
    p.interval = Duration::from_secs(60);
    let mut config = config(&s, p, 0);
    config.daemon.failsafe_timeout = Duration::from_secs(1);
    s.write_config(&config);
    let mut d = s.start(&[]);
    d.client().rollout(SERVICE, RolloutAction::Start).unwrap();
    let versions = |n: usize| -> [usize; 2] {
        let mut seen = [0; 2];
        for _ in 0..n {
            let mut c = HttpClient::connect(&s.topo.client, s.vip).unwrap();
            seen[usize::from(c.get().unwrap().version == "canary")] += 1;
        }
        seen
    };
    let before = versions(40);
    let mut held = HttpClient::connect(&s.topo.client, s.vip).unwrap();
    let held_version = held.get().unwrap().version;
    d.signal(libc::SIGKILL).unwrap();
    // Scenario timing: the failsafe acts once canaryd's heartbeat is older
    // than failsafe_timeout (1 s), which only time passing can show.
    thread::sleep(Duration::from_millis(1500));
    let down = versions(40);
    assert_eq!(
        held.get().unwrap().version,
        held_version,
        "an established flow moved"
    );
    let d = s.start(&[]);
    let status = d.status().unwrap();
    let failsafe = status.services[0].stable.signals.failsafe_flows;
    let report = d.client().rollout_status(SERVICE).unwrap();
    let after = versions(40);
    println!(
        "failsafe: at 50% before {before:?} (stable, canary), canaryd gone 1.5 s {down:?} ({failsafe} counted), restarted {after:?}; rollout {:?} at step {}",
        report.phase, report.step
    );
    assert!(before[1] > 0 && after[1] > 0, "the split before and after");
    assert_eq!(
        down,
        [40, 0],
        "all new flows to stable while canaryd is gone"
    );
    // Of the 40, those the weight would have sent to the canary (about
    // half) are the failsafe's.
    assert!(failsafe > 0 && failsafe < 40, "{failsafe}");
    assert_eq!((report.phase, report.step), (Phase::Running, 0));
}

/// A stand-in Prometheus for the gates: answers the first query with the
/// scalar 1 after `first_after`, and holds every later query until the
/// test ends (past canaryd's 5 s query timeout: inconclusive).
struct SlowPrometheus<'a> {
    url: String,
    /// Queries received so far.
    queries: Arc<AtomicU64>,
    release: Arc<AtomicBool>,
    _server: tests::ns_http::NsHttpServer<'a>,
}

impl<'a> SlowPrometheus<'a> {
    fn start(ns: &'a xtask::topology::Netns, addr: SocketAddr, first_after: Duration) -> Self {
        let release = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let (held, seen) = (release.clone(), queries.clone());
        let server = tests::ns_http::NsHttpServer::start(ns, addr, 4, move |request| {
            let hold = if seen.fetch_add(1, Ordering::Relaxed) == 0 {
                first_after
            } else {
                Duration::from_secs(6)
            };
            let until = Instant::now() + hold;
            while Instant::now() < until && !held.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
            let body = r#"{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}"#;
            let _ = request.respond(tiny_http::Response::from_string(body));
        })
        .unwrap();
        SlowPrometheus {
            url: format!("http://{addr}"),
            queries,
            release,
            _server: server,
        }
    }
}

impl Drop for SlowPrometheus<'_> {
    fn drop(&mut self) {
        self.release.store(true, Ordering::Relaxed);
    }
}

/// A decision belongs to the rollout generation it was taken on (issue
/// 23): a look begun before `abort` + `start`, or before `pause` +
/// `resume`, is refused when it lands, so the new run neither takes the
/// old look's step nor counts it. The gate's Prometheus answers the first
/// query (the stale look's: a pass, so a step up) after 2 s and holds every
/// later one past the query timeout, so no other decision can land in the
/// test's window. Main applied the stale step up 3/3 times.
#[test]
fn a_look_begun_before_a_restart_or_resume_is_not_applied_after_it() {
    let _serial = tests::root_scenario();
    for restart in ["abort + start", "pause + resume"] {
        let s = healthy();
        let prom = SlowPrometheus::start(
            &s.topo.host,
            "127.0.0.1:9092".parse().unwrap(),
            Duration::from_secs(2),
        );
        let mut p = plan(&[1000, 5000, 10000]);
        p.interval = Duration::from_millis(500);
        p.min_requests = 1;
        p.checks.max_error_rate = None;
        p.prometheus = Some(prom.url.clone());
        p.gates = vec![gate("always_one", "1", 0.5)];
        let d = start(&s, p);
        let load = Load::start(&s, 2);
        let client = d.client();
        client.rollout(SERVICE, RolloutAction::Start).unwrap();
        // The first look starts within 0.75 s (interval + the driver's
        // tick) and waits 2 s for its gate: it is under way once its query
        // has arrived.
        wait_until(
            WAIT,
            "the first look queries its gate",
            || d.log_text(),
            || prom.queries.load(Ordering::Relaxed) > 0,
        );
        let (first, second) = if restart == "abort + start" {
            (RolloutAction::Abort, RolloutAction::Start)
        } else {
            (RolloutAction::Pause, RolloutAction::Resume)
        };
        client.rollout(SERVICE, first).unwrap();
        client.rollout(SERVICE, second).unwrap();
        // The stale decision lands about 2.75 s after the first start, and
        // is refused.
        wait_until(
            WAIT,
            "the stale decision lands and is refused",
            || d.log_text(),
            || d.log_text().contains("was taken on look 0 of generation 1"),
        );
        let r = client.rollout_status(SERVICE).unwrap();
        load.finish();
        let log = d.log_text();
        println!(
            "{restart} while a look waited for its gate: {:?} at step {} ({}), {} looks; \
             refused in the log: {}",
            r.phase,
            r.step,
            r.weight,
            r.looks,
            log.contains("was taken on look 0 of generation 1")
        );
        assert_eq!(
            (r.phase, r.step, r.looks),
            (Phase::Running, 0, 0),
            "{restart}: {}\n{log}",
            describe_history(&r)
        );
        assert_eq!(r.weight, bp(1000), "{restart}");
        assert!(
            log.contains("was taken on look 0 of generation 1"),
            "{restart}: the stale decision was not seen refused\n{log}"
        );
        drop(d);
        drop(prom);
    }
}

/// A gate whose query answers +Inf (a ratio over a zero count) or NaN,
/// as a vector or a scalar, is inconclusive, never a pass (issue 23: main
/// promoted on `+Inf` above a `min` in 3 looks). The rollout pauses.
#[test]
fn a_gate_at_infinity_or_nan_never_passes() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let prom = s.prometheus();
    for (query, what) in [
        ("vector(1) / 0", "+Inf vector"),
        ("1 / 0", "+Inf scalar"),
        ("vector(0) / 0", "NaN vector"),
    ] {
        let mut p = plan(&[5000, 10000]);
        p.interval = Duration::from_millis(500);
        p.min_requests = 1;
        p.max_inconclusive = 3;
        p.checks.max_error_rate = None;
        p.prometheus = Some(format!("http://{}", prom.listen));
        p.gates = vec![gate("accuracy", query, 0.9)];
        s.write_config(&config(&s, p, 0));
        let d = s.start(&[]);
        let load = Load::start(&s, 2);
        let (r, _) = run_rollout_to_end(&d, Duration::from_secs(30));
        load.finish();
        let gate_verdicts: Vec<_> = r
            .history
            .iter()
            .flat_map(|h| h.checks.iter().map(|c| (c.verdict, c.detail.clone())))
            .collect();
        println!(
            "gate {query} ({what}): {:?} after {} looks; {:?}",
            r.phase,
            r.looks,
            gate_verdicts.last()
        );
        assert_eq!(r.phase, Phase::Paused, "{what}: {}", describe_history(&r));
        assert!(
            gate_verdicts
                .iter()
                .all(|(v, detail)| *v == Verdict::Inconclusive
                    && detail.contains("not a finite number")),
            "{what}: {gate_verdicts:?}"
        );
        drop(d);
        let _ = std::fs::remove_file(s.dirs.state_dir().join("state.json"));
    }
}

/// `set-weight` during a rollout (issue 23: main took `set-weight model 0`
/// silently and the next step undid it): 0 ends the rollout as a rollback,
/// any other weight is refused with the commands that do what was meant,
/// and after the rollout has ended set-weight is the operator's again.
#[test]
fn set_weight_during_a_rollout_is_a_rollback_at_zero_and_refused_otherwise() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let mut p = plan(&[1000, 5000, 10000]);
    p.interval = Duration::from_millis(500);
    p.min_requests = 1;
    let d = start(&s, p);
    let load = Load::start(&s, 2);
    let client = d.client();
    client.rollout(SERVICE, RolloutAction::Start).unwrap();
    let refused = s.ctl(&["set-weight", SERVICE, "30"]);
    let refused_text = text(&refused.stderr);
    let zero = s.ctl(&["set-weight", SERVICE, "0"]);
    let zero_text = format!("{}{}", text(&zero.stdout), text(&zero.stderr));
    // Three intervals: a rollout still running would have stepped up. This
    // sleep stays: a step that does not happen can only be seen by letting
    // the intervals pass.
    thread::sleep(Duration::from_millis(1600));
    let r = client.rollout_status(SERVICE).unwrap();
    let weight = d.status().unwrap().services[0].weight;
    let after = s.ctl(&["set-weight", SERVICE, "20"]);
    load.finish();
    println!(
        "set-weight 30 during the rollout: exit {:?}: {}\nset-weight 0: exit {:?}: {}\
         rollout then {:?} ({}), weight {weight} 1.6 s later; set-weight 20 after it: exit {:?}",
        refused.status.code(),
        refused_text.trim(),
        zero.status.code(),
        zero_text,
        r.phase,
        r.reason,
        after.status.code()
    );
    assert!(!refused.status.success(), "{refused_text}");
    assert!(
        refused_text.contains("canaryctl rollout pause model")
            && refused_text.contains("canaryctl rollback model"),
        "{refused_text}"
    );
    assert!(zero.status.success(), "{}", text(&zero.stderr));
    assert!(zero_text.contains("rolled back"), "{zero_text}");
    assert_eq!(r.phase, Phase::RolledBack, "{}", describe_history(&r));
    assert_eq!(weight, Weight::ZERO);
    assert!(after.status.success(), "{}", text(&after.stderr));
}

/// Credentials in the gates' Prometheus URL and the webhook URL never
/// reach what an operator or a log collector sees (issue 23: main copied
/// them into the rollout history, `rollout status` and the log, and kept
/// them in a world-readable state file): the state file is 0600 and
/// everything else says `***`.
#[test]
fn credentials_in_urls_stay_out_of_status_logs_and_history() {
    let _serial = tests::root_scenario();
    const SECRET: &str = "s3cret-token";
    let s = healthy();
    let mut p = plan(&[1000, 10000]);
    p.interval = Duration::from_millis(500);
    p.max_inconclusive = 3;
    // Nothing listens on either: the query fails, the post is refused,
    // and both errors name their URL.
    p.prometheus = Some(format!("http://reader:{SECRET}@127.0.0.1:9093"));
    p.webhook = Some(format!("http://hook:{SECRET}@127.0.0.1:9104/events"));
    p.gates = vec![gate("accuracy", "model_accuracy", 0.9)];
    let d = start(&s, p);
    let load = Load::start(&s, 2);
    let (r, _) = run_rollout_to_end(&d, Duration::from_secs(30));
    load.finish();
    // The last webhook post gives up after its tries (0.5 + 1 s apart): one
    // "giving up" line per decision once the last has.
    wait_until(
        WAIT,
        "every webhook post gives up",
        || d.log_text(),
        || d.log_text().matches("giving up on service model").count() >= r.history.len(),
    );
    let ctl = |args: &[&str]| {
        let out = s.ctl(args);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let status = ctl(&["rollout", "status", SERVICE]);
    let status_json = ctl(&["--json", "rollout", "status", SERVICE]);
    let log = d.log_text();
    let state = s.dirs.state_dir().join("state.json");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777
    };
    let gate_detail = r
        .history
        .last()
        .and_then(|h| h.checks.iter().find(|c| c.name == "gate:accuracy"))
        .map(|c| c.detail.clone())
        .unwrap_or_default();
    println!(
        "{:?} after {} looks; gate: {gate_detail}; state file mode {mode:o}; secret in status {}, \
         in --json {}, in the log {}",
        r.phase,
        r.looks,
        status.contains(SECRET),
        status_json.contains(SECRET),
        log.contains(SECRET)
    );
    assert_eq!(r.phase, Phase::Paused, "{}", describe_history(&r));
    assert!(
        gate_detail.contains("http://***@127.0.0.1:9093"),
        "{gate_detail}"
    );
    assert!(
        log.contains("webhook http://***@127.0.0.1:9104/events"),
        "{log}"
    );
    for (what, text) in [
        ("rollout status", &status),
        ("rollout status --json", &status_json),
        ("the log", &log),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
    assert_eq!(mode, 0o600, "state file mode {mode:o}");
}
