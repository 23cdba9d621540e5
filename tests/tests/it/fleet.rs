//! Fleet rollouts end to end: three hosts, each a namespace with its own
//! canaryd, bpffs directory, VIP and stable and canary backends, one etcd
//! in a namespace of its own, one client namespace reaching every host
//! (`tests::fleet`). Each scenario drives the fleet's rollout from one host
//! and checks what every host's data path then did; the faults are real
//! (kill -9, a link down, etcd stopped).

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{
    api::{RolloutAction, RolloutReport, fleet::FleetStatus},
    controller::plan::RolloutPlan,
    model::{rollout::Phase, weight::Weight},
};
use tests::{
    bp,
    fleet::{FleetUnderTest, GRACE, LEASE_TTL, SHARED_CLIENT, healthy},
    harness::SERVICE,
    kit::wait_until,
    servers::{Behaviour, Http},
};
use xtask::canaryd::Canaryd;

/// Looks every second; four steps, so a leader can be killed at step 2
/// (50 %) with steps before and after it.
const INTERVAL: Duration = Duration::from_secs(1);
const STEPS: [u16; 4] = [1000, 2500, 5000, 10000];

fn plan() -> RolloutPlan {
    let mut p = RolloutPlan {
        steps: STEPS.iter().map(|&s| bp(s)).collect(),
        interval: INTERVAL,
        min_requests: 20,
        max_inconclusive: 20,
        ..Default::default()
    };
    p.checks.max_error_rate = Some(0.02);
    p
}

/// Writes every host's config (weight 0, `plan`, `grace`) and starts
/// canaryd on each; waits until all of them are in the fleet with a
/// leader.
fn start_fleet(f: &FleetUnderTest, plan: &RolloutPlan, grace: Duration) -> Vec<Canaryd> {
    for i in 0..f.host_count() {
        let mut config = f.config(i, 0, Some(plan.clone()));
        if let Some(fleet) = &mut config.fleet {
            fleet.grace = grace;
        }
        f.write_config(i, &config);
    }
    let daemons: Vec<Canaryd> = (0..f.host_count()).map(|i| f.start(i, &[])).collect();
    wait_until(
        Duration::from_secs(20),
        "every host joined and one leads",
        || logs(&daemons),
        || {
            fleet_status(f, 0).is_some_and(|s| {
                s.hosts.iter().filter(|h| h.alive).count() == f.host_count() && s.leader.is_some()
            })
        },
    );
    daemons
}

/// Starts the fleet's rollout from host `from` and waits until it is at
/// `step` or beyond.
fn start_and_reach(f: &FleetUnderTest, daemons: &[Canaryd], from: usize, step: usize) {
    f.client(from)
        .rollout(SERVICE, RolloutAction::Start)
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        &format!("the rollout at step {step}"),
        || logs(daemons),
        || report(f, from).is_some_and(|r| r.step >= step),
    );
}

/// The leading host's name and index, as host `asked` sees it.
fn leader(f: &FleetUnderTest, asked: usize) -> (String, usize) {
    let name = fleet_status(f, asked).and_then(|s| s.leader).unwrap();
    let i = name.trim_start_matches("host-").parse().unwrap();
    (name, i)
}

fn logs(daemons: &[Canaryd]) -> String {
    daemons
        .iter()
        .enumerate()
        .map(|(i, d)| format!("--- host {i} ---\n{}", d.log_text()))
        .collect()
}

fn fleet_status(f: &FleetUnderTest, i: usize) -> Option<FleetStatus> {
    f.client(i).fleet_status().ok()
}

fn report(f: &FleetUnderTest, i: usize) -> Option<RolloutReport> {
    f.client(i).rollout_status(SERVICE).ok()
}

/// The weight host i's data path uses now (its own status).
fn weight(f: &FleetUnderTest, i: usize) -> Option<Weight> {
    let status = f.client(i).status().ok()?;
    Some(status.services.first()?.weight)
}

/// Client threads sending requests to every host in turn, a new connection
/// each (weights apply to new connections), until stopped; bounded in time
/// and count.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<[AtomicU64; 2]>,
    /// Requests that got no answer (a connection refused, reset or timed
    /// out): none may, whatever happens to canaryd or etcd.
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(f: &Arc<FleetUnderTest>, threads: usize, hosts: Vec<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, answered, failed, f, hosts) = (
                    stop.clone(),
                    answered.clone(),
                    failed.clone(),
                    f.clone(),
                    hosts.clone(),
                );
                thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(150);
                    for n in 0..1_000_000usize {
                        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                            return;
                        }
                        let host = hosts[(n + t) % hosts.len()];
                        match f.get(host) {
                            Ok(a) => {
                                let v = usize::from(a.version == "canary");
                                answered[v].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                thread::sleep(Duration::from_millis(5));
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

    /// Stops the clients and waits for them.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }

    /// Stops the clients; what each version answered. Panics if any
    /// request got no answer.
    fn stop(mut self) -> [u64; 2] {
        self.halt();
        let answered = [0, 1].map(|i| self.answered[i].load(Ordering::Relaxed));
        let failed = self.failed.load(Ordering::Relaxed);
        println!("requests answered [stable, canary] {answered:?}, failed {failed}");
        assert_eq!(failed, 0, "requests without an answer");
        answered
    }
}

/// A test that fails with clients running stops them, so that its fixture
/// (which they hold) is dropped and its namespaces removed.
impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Polls every host's weight until the fleet's rollout ends (bounded);
/// returns, per host, when (since `t0`) it first used each weight, and the
/// last report.
fn follow(
    f: &FleetUnderTest,
    hosts: &[usize],
    t0: Instant,
    limit: Duration,
) -> (Vec<Vec<(Weight, Duration)>>, RolloutReport) {
    let mut seen: Vec<Vec<(Weight, Duration)>> = vec![vec![]; f.host_count()];
    let deadline = Instant::now() + limit;
    loop {
        for &i in hosts {
            if let Some(w) = weight(f, i)
                && seen[i].last().map(|(l, _)| *l) != Some(w)
            {
                seen[i].push((w, t0.elapsed()));
            }
        }
        let r = hosts.iter().find_map(|&i| report(f, i));
        if let Some(r) = &r
            && r.phase.is_over()
            && hosts.iter().all(|&i| weight(f, i) == Some(r.weight))
        {
            return (seen, r.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the fleet rollout did not end within {limit:?}: {r:#?}\nweights seen: {seen:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_healthy_canary_is_promoted_with_every_host_at_each_step_together() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-healthy"));
    let daemons = start_fleet(&f, &plan(), GRACE);
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    let t0 = Instant::now();
    // From a host that need not lead: commands act on the fleet's record.
    let started = f.client(1).rollout(SERVICE, RolloutAction::Start);
    assert!(started.is_ok(), "{started:?}\n{}", logs(&daemons));
    let (seen, r) = follow(&f, &[0, 1, 2], t0, Duration::from_secs(60));
    let answered = load.stop();
    println!("weights per host (weight, time since start): {seen:?}");
    println!("answered [stable, canary]: {answered:?}");
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
    for step in STEPS.map(bp) {
        let at: Vec<Duration> = (0..3)
            .map(|i| {
                seen[i]
                    .iter()
                    .find(|(w, _)| *w == step)
                    .map(|(_, t)| *t)
                    .unwrap_or_else(|| panic!("host {i} never used {step}: {seen:?}"))
            })
            .collect();
        let spread = *at.iter().max().unwrap() - *at.iter().min().unwrap();
        println!("step {step}: hosts at {at:?}, spread {spread:?}");
        assert!(spread <= INTERVAL, "step {step}: {at:?}");
    }
    let hosts = r.hosts.clone().expect("a fleet's report lists its hosts");
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert_eq!(hosts.iter().filter(|h| h.leader).count(), 1, "{hosts:?}");
    assert!(answered[1] > 0, "{answered:?}");
    shows_the_fleet(&f, &r);
}

/// What an operator sees of a promoted fleet rollout: `rollout status
/// --json` with the single host's fields and `hosts`, `fleet status` as a
/// table, and the `canary_fleet_*` metrics of every host.
fn shows_the_fleet(f: &FleetUnderTest, r: &RolloutReport) {
    let json = f.ctl(0, &["--json", "rollout", "status", SERVICE]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for field in ["phase", "step", "steps_bp", "weight_bp", "looks", "history"] {
        assert!(v["data"].get(field).is_some(), "{field} in {v}");
    }
    assert_eq!(v["data"]["phase"], "promoted");
    assert_eq!(v["data"]["hosts"].as_array().map(Vec::len), Some(3), "{v}");
    let table = f.ctl(1, &["fleet", "status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    println!("canaryctl fleet status:\n{text}");
    assert!(table.status.success(), "{table:?}");
    assert!(text.contains("3 of 3 hosts alive"), "{text}");
    for i in 0..3 {
        assert!(text.contains(&format!("host-{i}")), "{text}");
    }
    let mut leaders = 0;
    let mut generations = vec![];
    for i in 0..3 {
        let m = f.metrics(i).unwrap();
        let leads = tests::kit::sample(&m, "canary_fleet_leader").unwrap();
        leaders += leads as u32;
        let applied = tests::kit::sample(
            &m,
            &format!("canary_fleet_generation_applied{{service=\"{SERVICE}\"}}"),
        )
        .unwrap();
        // One generation per weight the rollout set: its first step and
        // every step up.
        assert!(
            applied >= STEPS.len() as f64,
            "host {i}: generation {applied}"
        );
        generations.push(applied);
        assert_eq!(tests::kit::sample(&m, "canary_fleet_cut_off"), Some(0.0));
        if leads == 1.0 {
            assert_eq!(
                tests::kit::sample(&m, "canary_fleet_hosts"),
                Some(3.0),
                "{m}"
            );
        }
    }
    assert_eq!(leaders, 1, "exactly one host says it leads");
    assert!(
        generations.iter().all(|g| *g == generations[0]),
        "{generations:?}"
    );
    assert!(r.looks >= 1);
}

#[test]
fn webhooks_fire_once_per_decision_from_the_leader() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-webhook"));
    // The receiver in etcd's namespace, on an address every host routes to
    // through its own link to etcd: whichever host leads reaches it.
    let at = "198.18.60.1";
    f.net
        .etcd
        .ip(&["addr", "add", &format!("{at}/32"), "dev", "lo"])
        .unwrap();
    for i in 0..3 {
        let via = tests::fleet::etcd_v4(i).to_string();
        f.net.hosts[i]
            .ip(&["route", "add", &format!("{at}/32"), "via", &via])
            .unwrap();
    }
    let receiver = tests::webhook::Receiver::start(
        &f.net.etcd,
        format!("{at}:9101").parse().unwrap(),
        tests::webhook::Answer::Accept,
    )
    .unwrap();
    let mut p = plan();
    p.webhook = Some(receiver.url.clone());
    let daemons = start_fleet(&f, &p, GRACE);
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    f.client(2).rollout(SERVICE, RolloutAction::Start).unwrap();
    let (_, r) = follow(&f, &[0, 1, 2], Instant::now(), Duration::from_secs(60));
    load.stop();
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
    wait_until(
        Duration::from_secs(5),
        "an event for every look",
        || format!("{:#?}", receiver.events()),
        || receiver.events().len() >= r.looks as usize,
    );
    thread::sleep(Duration::from_millis(500));
    let looks: Vec<u32> = receiver.events().iter().map(|e| e.decision.look).collect();
    println!("{} looks, webhook events for looks {looks:?}", r.looks);
    assert_eq!(
        looks,
        (1..=r.looks).collect::<Vec<_>>(),
        "each decision once"
    );
    assert!(receiver.malformed().is_empty());
}

#[test]
fn a_canary_failing_on_every_host_is_rolled_back_on_every_host() {
    let _one = tests::root_scenario();
    let f = Arc::new(
        FleetUnderTest::builder("fleet-failing")
            // One request in ten answered 500 by every canary.
            .behaviour(|_| [healthy(), Behaviour::Http(Http::new(10, Duration::ZERO))])
            .build(),
    );
    let plan = plan();
    let daemons = start_fleet(&f, &plan, GRACE);
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    let t0 = Instant::now();
    f.client(2).rollout(SERVICE, RolloutAction::Start).unwrap();
    let (seen, r) = follow(&f, &[0, 1, 2], t0, Duration::from_secs(30));
    load.stop();
    let took = t0.elapsed();
    println!("weights per host: {seen:?}\nrolled back on every host {took:?} after the start");
    assert_eq!(r.phase, Phase::RolledBack, "{r:#?}\n{}", logs(&daemons));
    for i in 0..3 {
        assert_eq!(weight(&f, i), Some(Weight::ZERO), "host {i}");
        let m = f.metrics(i).unwrap();
        let rollbacks = format!("canary_rollbacks_total{{service=\"{SERVICE}\"}}");
        assert_eq!(tests::kit::sample(&m, &rollbacks), Some(1.0), "host {i}");
    }
    let bound = INTERVAL * plan.failed_checks_limit + LEASE_TTL;
    assert!(took <= bound, "took {took:?}, bound {bound:?}: {r:#?}");
}

#[test]
fn the_leader_killed_at_step_2_is_replaced_and_the_rollout_finishes() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-leader"));
    let mut daemons = start_fleet(&f, &plan(), GRACE);
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    start_and_reach(&f, &daemons, 0, 2);
    let (old, dead) = leader(&f, 0);
    let at_kill = report(&f, (dead + 1) % 3).unwrap();
    daemons[dead].signal(libc::SIGKILL).unwrap();
    let killed = Instant::now();
    let live: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    let mut new = None;
    while killed.elapsed() < Duration::from_secs(15) {
        if let Some(l) = fleet_status(&f, live[0]).and_then(|s| s.leader)
            && l != old
        {
            new = Some((l, killed.elapsed()));
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let (new, took) = new.unwrap_or_else(|| panic!("no new leader:\n{}", logs(&daemons)));
    println!(
        "leader {old} killed at step {}; {new} leads {took:?} later",
        at_kill.step
    );
    assert!(took <= LEASE_TTL + Duration::from_secs(1), "{took:?}");
    let (seen, r) = follow(&f, &live, Instant::now(), Duration::from_secs(60));
    load.stop();
    println!("weights after the kill: {seen:?}");
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
    assert!(
        r.looks > at_kill.looks,
        "the new leader went on from the stored looks"
    );
    // Its first look judged the interval after it took the lead, which had
    // requests: not an empty one from bases taken at that very moment.
    let after: Vec<_> = r
        .history
        .iter()
        .filter(|h| h.look > at_kill.looks)
        .collect();
    println!(
        "looks of the new leader, [stable, canary] attempts: {:?}",
        after
            .iter()
            .map(|h| h.interval_attempts)
            .collect::<Vec<_>>()
    );
    assert!(
        after.iter().all(|h| h.interval_attempts != [0, 0]),
        "a look of the new leader saw no requests: {after:#?}"
    );
    let dead_host = r
        .hosts
        .unwrap()
        .into_iter()
        .find(|h| h.name == old)
        .unwrap();
    assert!(!dead_host.alive, "{dead_host:?}");
}

#[test]
fn a_killed_host_leaves_the_fleet_and_the_rollout_goes_on() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-hostkill"));
    let mut daemons = start_fleet(&f, &plan(), GRACE);
    let leader = fleet_status(&f, 0).and_then(|s| s.leader).unwrap();
    let victim = (0..3).find(|i| format!("host-{i}") != leader).unwrap();
    let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let load = Load::start(&f, 2, live.clone());
    f.client(live[0])
        .rollout(SERVICE, RolloutAction::Start)
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the rollout at step 1",
        || logs(&daemons),
        || report(&f, live[0]).is_some_and(|r| r.step >= 1),
    );
    daemons[victim].signal(libc::SIGKILL).unwrap();
    let killed = Instant::now();
    let name = format!("host-{victim}");
    wait_until(
        LEASE_TTL + Duration::from_secs(2),
        "the killed host is listed as gone",
        || logs(&daemons),
        || {
            fleet_status(&f, live[0])
                .is_some_and(|s| s.hosts.iter().any(|h| h.name == name && !h.alive))
        },
    );
    println!(
        "host {name} gone from the fleet {:?} after kill -9",
        killed.elapsed()
    );
    let (_, r) = follow(&f, &live, Instant::now(), Duration::from_secs(60));
    load.stop();
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
}

#[test]
fn a_host_cut_off_from_etcd_sends_new_flows_to_stable_after_grace() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-partition"));
    let mut p = plan();
    p.steps = vec![bp(5000), Weight::FULL];
    let daemons = start_fleet(&f, &p, GRACE);
    f.client(0).rollout(SERVICE, RolloutAction::Start).unwrap();
    f.client(0).rollout(SERVICE, RolloutAction::Pause).unwrap();
    let cut = 2;
    wait_until(
        Duration::from_secs(10),
        "every host at 50 %",
        || logs(&daemons),
        || (0..3).all(|i| weight(&f, i) == Some(bp(5000))),
    );
    // A connection on the canary before the cut: it must stay there.
    let mut held = (0..200)
        .map(|_| f.connect(cut).unwrap())
        .find_map(|mut c| (c.get().ok()?.version == "canary").then_some(c))
        .expect("one of 200 connections at 50 % on the canary");
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    f.partition(cut);
    let t0 = Instant::now();
    thread::sleep(GRACE / 2);
    assert_eq!(
        weight(&f, cut),
        Some(bp(5000)),
        "the weight holds within grace"
    );
    let mut stable_at = None;
    while t0.elapsed() < GRACE + Duration::from_secs(5) {
        if weight(&f, cut) == Some(Weight::ZERO) {
            stable_at = Some(t0.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let stable_at = stable_at.unwrap_or_else(|| panic!("still split:\n{}", logs(&daemons)));
    println!(
        "cut off: new flows to stable {stable_at:?} after the link went down (grace {GRACE:?})"
    );
    assert!(stable_at >= GRACE, "{stable_at:?}");
    assert!(
        stable_at <= GRACE + Duration::from_millis(1500),
        "{stable_at:?}"
    );
    let versions: Vec<String> = (0..20).map(|_| f.request(cut).unwrap()).collect();
    assert!(versions.iter().all(|v| v == "stable"), "{versions:?}");
    assert_eq!(
        held.get().unwrap().version,
        "canary",
        "nothing established moves"
    );
    for i in [0, 1] {
        assert_eq!(weight(&f, i), Some(bp(5000)), "host {i} goes on");
    }
    let gone = format!("host-{cut}");
    wait_until(
        LEASE_TTL + Duration::from_secs(2),
        "the cut host is listed as gone",
        || logs(&daemons),
        || fleet_status(&f, 0).is_some_and(|s| s.hosts.iter().any(|h| h.name == gone && !h.alive)),
    );
    // Meanwhile the fleet goes on without it (resumed, promoted), and etcd
    // compacts away the history the cut host missed: back, it must read
    // the state again, not replay a watch from where it was cut.
    f.client(0).rollout(SERVICE, RolloutAction::Resume).unwrap();
    wait_until(
        Duration::from_secs(30),
        "the other hosts promote",
        || logs(&daemons),
        || report(&f, 0).is_some_and(|r| r.phase == Phase::Promoted),
    );
    let compacted = f.etcd.compact().unwrap();
    f.heal(cut);
    let healed = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the cut host takes the fleet's weight as it is now",
        || logs(&daemons),
        || weight(&f, cut) == Some(Weight::FULL),
    );
    println!(
        "healed after the fleet promoted and etcd compacted to revision {compacted}: the \
         fleet's 100 % on the cut host {:?} later",
        healed.elapsed()
    );
    let line = f.client(cut).status().unwrap().services[0].rollout.clone();
    assert_eq!(line.map(|l| l.phase), Some(Phase::Promoted));
    assert_eq!(held.get().unwrap().version, "canary");
    load.stop();
}

#[test]
fn with_etcd_stopped_no_decision_is_taken_and_the_rollout_resumes() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-etcdstop"));
    // A stop shorter than grace: every host keeps its weight.
    let daemons = start_fleet(&f, &plan(), Duration::from_secs(30));
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    start_and_reach(&f, &daemons, 0, 1);
    f.etcd.stop();
    let stopped = Instant::now();
    let stopped_ms = canary_userspace::daemon::unix_ms();
    thread::sleep(Duration::from_millis(300));
    let held: Vec<Option<Weight>> = (0..3).map(|i| weight(&f, i)).collect();
    while stopped.elapsed() < Duration::from_secs(10) {
        let now: Vec<Option<Weight>> = (0..3).map(|i| weight(&f, i)).collect();
        assert_eq!(now, held, "weights held while etcd is stopped");
        thread::sleep(Duration::from_millis(200));
    }
    f.etcd.cont();
    let resumed_ms = canary_userspace::daemon::unix_ms();
    let resumed = Instant::now();
    wait_until(
        LEASE_TTL + Duration::from_secs(5),
        "every host back in the fleet with a leader",
        || logs(&daemons),
        || {
            fleet_status(&f, 0).is_some_and(|s| {
                s.hosts.iter().filter(|h| h.alive).count() == 3 && s.leader.is_some()
            })
        },
    );
    println!(
        "etcd continued: every host back {:?} later",
        resumed.elapsed()
    );
    let (_, r) = follow(&f, &[0, 1, 2], Instant::now(), Duration::from_secs(60));
    load.stop();
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
    let during: Vec<_> = r
        .history
        .iter()
        .filter(|h| h.at_unix_ms > stopped_ms + 300 && h.at_unix_ms < resumed_ms)
        .collect();
    assert!(
        during.is_empty(),
        "decisions while etcd was stopped: {during:#?}"
    );
    println!(
        "etcd stopped 10 s at weights {held:?}: no decision, the rollout resumed and was promoted after {} looks",
        r.looks
    );
}

#[test]
fn a_client_address_gets_the_same_version_on_every_host() {
    let _one = tests::root_scenario();
    let f = Arc::new(
        FleetUnderTest::builder("fleet-affinity")
            .affinity(canary_userspace::Affinity::Client)
            .build(),
    );
    let mut p = plan();
    p.steps = vec![bp(5000), Weight::FULL];
    let daemons = start_fleet(&f, &p, GRACE);
    f.client(1).rollout(SERVICE, RolloutAction::Start).unwrap();
    f.client(1).rollout(SERVICE, RolloutAction::Pause).unwrap();
    wait_until(
        Duration::from_secs(10),
        "every host at 50 %",
        || logs(&daemons),
        || (0..3).all(|i| weight(&f, i) == Some(bp(5000))),
    );
    // More client addresses every host routes back (198.18.50.0/24).
    let clients: Vec<IpAddr> = (1..=24u8).map(|k| IpAddr::from([198, 18, 50, k])).collect();
    for c in clients
        .iter()
        .filter(|c| **c != IpAddr::from(SHARED_CLIENT))
    {
        f.net
            .client
            .ip(&["addr", "add", &format!("{c}/32"), "dev", "lo"])
            .unwrap();
    }
    let mut versions = [0u32; 2];
    for c in &clients {
        let seen: Vec<String> = (0..3).map(|i| f.request_from(i, *c).unwrap()).collect();
        assert!(seen.iter().all(|v| *v == seen[0]), "client {c}: {seen:?}");
        versions[usize::from(seen[0] == "canary")] += 1;
    }
    println!(
        "24 client addresses at 50 %: [stable, canary] = {versions:?}, each the same on all 3 hosts"
    );
    assert!(versions[0] > 0 && versions[1] > 0, "{versions:?}");
}

#[test]
fn a_paused_leader_comes_back_as_a_follower_and_writes_nothing() {
    let _one = tests::root_scenario();
    let f = Arc::new(FleetUnderTest::new("fleet-paused"));
    let daemons = start_fleet(&f, &plan(), GRACE);
    let load = Load::start(&f, 2, vec![0, 1, 2]);
    start_and_reach(&f, &daemons, 0, 1);
    let (old, paused) = leader(&f, 0);
    let other = (paused + 1) % 3;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemons[paused].pid as i32, libc::SIGSTOP) };
    let stopped = Instant::now();
    wait_until(
        LEASE_TTL + Duration::from_secs(2),
        "another host leads while the leader is stopped",
        || logs(&daemons),
        || {
            fleet_status(&f, other)
                .and_then(|s| s.leader)
                .is_some_and(|l| l != old)
        },
    );
    let took = stopped.elapsed();
    thread::sleep(Duration::from_secs(1));
    let before = daemons[paused].log_text().len();
    // SAFETY: as above.
    unsafe { libc::kill(daemons[paused].pid as i32, libc::SIGCONT) };
    let (_, r) = follow(&f, &[0, 1, 2], Instant::now(), Duration::from_secs(60));
    load.stop();
    assert_eq!(r.phase, Phase::Promoted, "{r:#?}\n{}", logs(&daemons));
    let after = daemons[paused].log_text()[before..].to_owned();
    println!("leader {old} stopped; another led {took:?} later; after SIGCONT it logged:\n{after}");
    assert!(after.contains("no longer leads"), "{after}");
    assert!(
        !after.contains(": look "),
        "a stopped ex-leader wrote a look:\n{after}"
    );
    assert!(
        !after.contains("cut off"),
        "its own pause is not etcd's silence:\n{after}"
    );
    assert_eq!(
        weight(&f, paused),
        Some(Weight::FULL),
        "it applies the fleet's weight"
    );
}

/// Fencing at the store: a leader whose lease lapsed and whose place
/// another host took cannot write with its old token, whatever it read; a
/// write taken on a record that changed since is refused too.
#[test]
fn a_decision_fenced_by_a_lost_leadership_is_refused() {
    use canary_userspace::{
        controller::run::RolloutRun,
        fleet::{records::FleetRollout, store::Store},
    };
    let _one = tests::root_scenario();
    let f = FleetUnderTest::new("fleet-fence");
    let config = f.fleet_config(0);
    let record = FleetRollout {
        generation: 1,
        weight: bp(1000),
        reset_canary: false,
        rebase: None,
        run: RolloutRun::start(plan(), Default::default(), 0),
        by: "test".into(),
        why: "test".into(),
    };
    let ttl = Duration::from_secs(2);
    let outcome = f.net.hosts[0].enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::connect(&config).await.unwrap();
            let a = store.grant(ttl).await.unwrap();
            let token_a = store.campaign("host-a", a).await.unwrap().expect("a leads");
            let b = store.grant(ttl).await.unwrap();
            assert_eq!(
                store.campaign("host-b", b).await.unwrap(),
                None,
                "one leader"
            );
            // a goes silent; b keeps its lease and takes the lead.
            let silent = Instant::now();
            let token_b = loop {
                assert!(store.renew(b).await.unwrap());
                if let Some(t) = store.campaign("host-b", b).await.unwrap() {
                    break t;
                }
                assert!(silent.elapsed() < ttl * 3, "a's lease never lapsed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let stale = store
                .write_rollout(SERVICE, &record, 0, Some(token_a))
                .await
                .unwrap();
            let fresh = store
                .write_rollout(SERVICE, &record, 0, Some(token_b))
                .await
                .unwrap();
            let again = store
                .write_rollout(SERVICE, &record, 0, Some(token_b))
                .await
                .unwrap();
            (token_a, token_b, stale, fresh, again)
        })
    });
    let (token_a, token_b, stale, fresh, again) = outcome.unwrap();
    println!(
        "tokens a {token_a}, b {token_b}: a's write {stale}, b's {fresh}, b's on a stale read {again}"
    );
    assert!(!stale, "the ex-leader's write went through");
    assert!(fresh, "the leader's write was refused");
    assert!(
        !again,
        "a write taken on a record that changed since went through"
    );
}
