//! canaryd and canaryctl end to end: the real binaries in a test namespace,
//! real TCP clients and backends, effects checked in the kernel (which
//! version new connections reach), not only in the replies.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType};
use canary_common::names::{EGRESS_PROGRAM, INGRESS_PROGRAM};
use canary_userspace::{
    Affinity, ServiceSpec,
    api::{ErrorCode, Response, Status, WeightSet},
    daemon::{TEST_HOLD_ENV, TEST_HOLD_STARTED},
    kernel::attachment::{self, TC_EGRESS_PIN, XDP_DRIVER_PIN, XDP_GENERIC_PIN},
    model::weight::Weight,
};
use tests::bp;
use tests::{
    harness::{CANARY, STABLE},
    kit::{DaemonUnderTest, WAIT, accepted_on, host_addr, tcp_service, text, wait_until},
    servers::{Backend, Client},
};
use xtask::{
    canaryd::{Canaryd, canaryctl},
    topology::HOST_IF,
};

/// The service "model" on HOST_V4:80 with a stable and a canary backend
/// on the host, nothing started.
fn setup() -> DaemonUnderTest {
    DaemonUnderTest::new("test")
}

/// Opens `n` short connections to `to`; returns how many the canary
/// answered. Every connection must be answered.
fn canary_answers(s: &DaemonUnderTest, to: SocketAddr, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let mut c = s
                .connect(to)
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
            let got = c
                .request()
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
            assert!(got == STABLE || got == CANARY, "answer {got:?}");
            got == CANARY
        })
        .count()
}

/// Long-lived connections that send requests until stopped, each checking
/// every answer comes from the version it started on.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    workers: Vec<thread::JoinHandle<Result<(), String>>>,
}

impl Load {
    fn start(s: &DaemonUnderTest, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let workers = (0..connections)
            .map(|i| {
                let mut c = s.connect(s.vip).unwrap();
                let first = c.request().unwrap();
                let (stop, requests) = (stop.clone(), requests.clone());
                thread::spawn(move || {
                    // Bounded: stops when told, or after this many requests.
                    for n in 1..1_000_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let got = c
                            .request()
                            .map_err(|e| format!("connection {i} request {n}: {e:#}"))?;
                        if got != first {
                            return Err(format!("connection {i} moved {first} -> {got}"));
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                        // A steady stream, not a busy loop that starves the rest.
                        thread::sleep(Duration::from_millis(2));
                    }
                    Ok(())
                })
            })
            .collect();
        Load {
            stop,
            requests,
            workers,
        }
    }

    /// Stops every connection; returns (requests answered, failures).
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .workers
            .into_iter()
            .filter_map(|w| w.join().unwrap().err())
            .collect();
        (self.requests.load(Ordering::Relaxed), failures)
    }
}

fn new_flows(d: &Canaryd) -> u64 {
    let s = d.status().unwrap();
    s.services[0].stable.new_flows + s.services[0].canary.new_flows
}

#[test]
fn kill_minus_nine_moves_no_flow_and_keeps_weights_and_counters() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&s.config(5000));
    let mut d = s.start(&[]);
    let out = d.ctl(&["set-weight", "model", "30"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let load = Load::start(&s, 100);
    // Scenario timing, not ordering: a second of requests on the
    // long-lived connections before the snapshot and the kill.
    thread::sleep(Duration::from_secs(1));
    let before = d.status().unwrap();
    let flows_before = new_flows(&d);
    assert_eq!(flows_before, 100, "{before:?}");

    let killed = d.signal(libc::SIGKILL).unwrap();
    assert!(!killed.success());
    // While the daemon is down: the pinned programs keep deciding new
    // connections at the weight it left.
    let down_connections = 200;
    let down_canary = canary_answers(&s, s.vip, down_connections);
    // Scenario timing: the long-lived connections go on a while with no
    // daemon at all.
    thread::sleep(Duration::from_millis(500));

    let d = s.start(&[]);
    let after = d.status().unwrap();
    let (requests, failures) = load.finish();
    let svc = &after.services[0];
    println!(
        "kill -9: {requests} requests on 100 long-lived connections, {} failed; \
         {down_connections} new connections served while down ({down_canary} by canary); \
         after restart weight {:.2}, new flows {} (was {flows_before})",
        failures.len(),
        svc.weight,
        svc.stable.new_flows + svc.canary.new_flows
    );
    assert!(failures.is_empty(), "{failures:?}\n{}", d.log_text());
    assert!(requests > 1000, "only {requests} requests");
    assert_eq!(svc.weight, bp(3000));
    assert_eq!(
        svc.stable.new_flows + svc.canary.new_flows,
        flows_before + down_connections as u64,
        "counters kept counting across the restart"
    );
    assert!(svc.stable.packets_in > before.services[0].stable.packets_in);
    assert_eq!(svc.stable.rehashes + svc.canary.rehashes, 0);
    // The health signals live in pinned maps too: what the canary answered
    // while canaryd was down (one request each) is on top of what it had.
    let grew = svc.canary.signals.since(&before.services[0].canary.signals);
    assert!(
        grew.requests >= down_canary as u64 && grew.latency.total() >= down_canary as u64,
        "canary signals across the restart: {grew:?}, {down_canary} answered while down"
    );
    // 30% of 200 new connections went to the canary while down.
    assert!(
        (30..=90).contains(&down_canary),
        "{down_canary} of 200 on canary at weight 30%"
    );
    // The restart loads new programs (new ids) that use the same pinned maps.
    let seen = |s: &Status| -> Vec<_> {
        s.daemon
            .interfaces
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.xdp,
                    i.attached,
                    i.ifindex,
                    i.map_ids.clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        seen(&after),
        seen(&before),
        "the restart attached the same interfaces in the same XDP mode, with the same maps"
    );
}

#[test]
fn sigterm_leaves_the_data_path_and_detach_all_removes_it() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&s.config(10000));
    let mut d = s.start(&[]);
    let status = d.signal(libc::SIGTERM).unwrap();
    assert!(status.success(), "SIGTERM exit {status}");
    assert!(!s.dirs.socket().exists(), "socket file left behind");
    assert_eq!(
        canary_answers(&s, s.vip, 20),
        20,
        "data path gone after SIGTERM"
    );

    // A stopped daemon: canaryctl says so and exits 3.
    let out = s.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("is canaryd running?"));

    // Started on another interface, the daemon takes its programs off the
    // one the config no longer names. Attached = our XDP program per `ip
    // -json` and our tcx egress program per the kernel's tcx query, both
    // held by links pinned in the interface's record directory.
    let has_program = |iface: &str| {
        let xdp = s
            .topo
            .host
            .enter(|| attachment::xdp_program_on(iface))
            .unwrap()
            .unwrap()
            .is_some_and(|p| p.name == INGRESS_PROGRAM);
        let (_, tcx) = s
            .topo
            .host
            .enter(|| SchedClassifier::query_tcx(iface, TcAttachType::Egress))
            .unwrap()
            .unwrap();
        let tc = tcx.iter().any(|p| p.name_as_str() == Some(EGRESS_PROGRAM));
        assert_eq!(xdp, tc, "{iface}: XDP attached {xdp}, TC egress {tc}");
        xdp
    };
    let record = |iface: &str| s.dirs.pins().interface(iface);
    assert!(has_program(HOST_IF));
    // veth: native XDP; lo: generic only.
    for pin in [XDP_DRIVER_PIN, TC_EGRESS_PIN] {
        assert!(record(HOST_IF).join(pin).exists(), "{pin} not pinned");
    }
    // Leaving the VIP's interface on purpose: without the flag it is
    // refused (operator_safety's wrong-interface test).
    let mut d = s.start(&["--interface", "lo", "--move-interfaces"]);
    assert!(!has_program(HOST_IF), "{HOST_IF} still attached");
    assert!(!record(HOST_IF).exists(), "{HOST_IF} still recorded");
    assert!(has_program("lo"));
    for pin in [XDP_GENERIC_PIN, TC_EGRESS_PIN] {
        assert!(record("lo").join(pin).exists(), "lo: {pin} not pinned");
    }
    assert!(
        d.log_text()
            .contains("lo: XDP in generic mode, through pinned bpf_links"),
        "{}",
        d.log_text()
    );
    assert!(
        s.connect(s.vip).is_err(),
        "VIP still translated on {HOST_IF}"
    );
    d.signal(libc::SIGTERM).unwrap();

    let out = s.one_shot(&["--detach-all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !s.dirs.bpffs.exists(),
        "pins or their directory left behind"
    );
    assert!(
        !has_program("lo") && !has_program(HOST_IF),
        "programs left attached"
    );
    // Nothing listens on the VIP's port itself: without the data path a
    // connection is refused.
    assert!(
        s.connect(s.vip).is_err(),
        "VIP still translated after --detach-all"
    );
}

#[test]
fn reload_applies_a_valid_config_and_an_invalid_one_changes_nothing() {
    let _serial = tests::root_scenario();
    let s = setup();
    let (other_vip, other_stable, other_canary) = (host_addr(81), host_addr(8083), host_addr(8084));
    let _other = [
        Backend::spawn(&s.topo.host, other_stable, STABLE).unwrap(),
        Backend::spawn(&s.topo.host, other_canary, CANARY).unwrap(),
    ];
    s.write_config(&s.config(0));
    // A flag overriding a restart-only key stays in force across reloads.
    let mut d = s.start(&["--metrics-listen", "127.0.0.1:9470"]);
    assert_eq!(canary_answers(&s, s.vip, 10), 0);
    assert!(s.connect(other_vip).is_err(), "port 81 has no service yet");

    // Valid: model to 100%, a second service added.
    let mut two = s.config(10000);
    two.services.push(ServiceSpec {
        affinity: Affinity::Client,
        ..tcp_service("other", other_vip, other_stable, other_canary, 0)
    });
    s.write_config(&two);
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("reloaded: 1 added, 1 updated, 0 removed, 0 unchanged\n")
            && said.contains("~ model: weight 0.00% (config) -> 100.00% (config)")
            && said.contains("+ other: 198.18.0.1:81/tcp, affinity client"),
        "{said}"
    );
    assert_eq!(canary_answers(&s, s.vip, 10), 10);
    assert_eq!(canary_answers(&s, other_vip, 10), 0);

    // Invalid: two defects, both reported, nothing changes.
    // No `Weight` is 150 %: the file is edited as a person would.
    let bad = two
        .to_toml()
        .replacen("weight = 100.0", "weight = 150.0", 1)
        .replace(
            "affinity = \"client\"",
            "affinity = \"client\"\ncolour = \"blue\"",
        );
    assert!(
        bad.contains("colour") && bad.contains("weight = 150.0"),
        "{bad}"
    );
    s.dirs.write_config_text(&bad).unwrap();
    let out = d.ctl(&["reload"]).unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("service[0].weight"), "{err}");
    assert!(
        err.contains("service[1]") && err.contains("colour"),
        "{err}"
    );
    assert_eq!(
        canary_answers(&s, s.vip, 10),
        10,
        "old config must keep serving"
    );
    assert_eq!(canary_answers(&s, other_vip, 10), 0);

    // A setting only a restart can change is refused the same way.
    let mut restart_only = two.clone();
    restart_only.daemon.udp_idle_timeout = Duration::from_secs(5);
    s.write_config(&restart_only);
    let out = d.ctl(&["reload"]).unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stderr).contains("daemon.udp_idle_timeout"));

    // SIGHUP reloads too: model back to 0%, other removed.
    s.write_config(&s.config(0));
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(d.pid as i32, libc::SIGHUP) };
    wait_until(
        WAIT,
        "SIGHUP's reload removes \"other\"",
        || d.log_text(),
        || d.status().unwrap().services.len() == 1,
    );
    let st = d.status().unwrap();
    assert_eq!(st.services.len(), 1, "{st:?}");
    assert_eq!(st.services[0].weight, Weight::ZERO);
    assert_eq!(canary_answers(&s, s.vip, 10), 0);
    assert!(
        s.connect(other_vip).is_err(),
        "removed service still translated"
    );
    let _ = d.signal(libc::SIGTERM);
}

#[test]
fn cli_commands_act_on_the_kernel_and_errors_are_one_line() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&s.config(0));
    let d = s.start(&[]);

    let out = d.ctl(&["version"]).unwrap();
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("canaryd   0."),
        "{}",
        text(&out.stdout)
    );

    let out = d.ctl(&["status"]).unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("model  198.18.0.1:80/tcp") && table.contains("canary weight 0.00%"),
        "{table}"
    );
    assert!(table.contains("198.18.0.1:8082"), "{table}");

    // set-weight takes effect in the kernel: new connections follow it.
    let out = d.ctl(&["set-weight", "model", "100"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0.00% -> 100.00%"));
    assert_eq!(canary_answers(&s, s.vip, 10), 10);
    let out = d.ctl(&["--json", "set-weight", "model", "12.34"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["data"]["weight_bp"], 1234);
    assert_eq!(v["data"]["previous_weight_bp"], 10000);
    // Deprecated, for older clients, until the next release.
    assert_eq!(v["data"]["percent"], 12.34);
    assert_eq!(v["data"]["previous_percent"], 100.0);
    let st = d.status().unwrap();
    assert_eq!(st.services[0].weight, bp(1234));
    assert_eq!(st.services[0].canary.new_flows, 10);
    assert_eq!(st.services[0].stable.new_flows, 0);
    let out = d.ctl(&["set-weight", "model", "0"]).unwrap();
    assert!(out.status.success());
    assert_eq!(canary_answers(&s, s.vip, 10), 0);

    // Error paths: one line each, with what to do, and the documented code.
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["set-weight", "nosuch", "5"],
            4,
            "unknown service \"nosuch\"",
        ),
        (&["set-weight", "model", "150"], 2, "0 to 100"),
        (&["set-weight", "model", "12.345"], 2, "two decimals"),
        (
            &["set-weight", "model", "abc"],
            2,
            "\"abc\" is not a percent",
        ),
        (&["frobnicate"], 2, "unrecognized subcommand"),
        (&[], 2, "Usage"),
    ];
    for (args, code, says) in cases {
        let out = d.ctl(args).unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A rejection carries a machine-readable code, and --json keeps the exit code.
    let out = d.ctl(&["--json", "set-weight", "nosuch", "5"]).unwrap();
    assert_eq!(out.status.code(), Some(4));
    let r: Response<WeightSet> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r.ok, r.code), (false, Some(ErrorCode::UnknownService)));

    // A state file that cannot be written: the kernel goes back to the old
    // weight, and the answer says the change was undone (exit 5).
    let state_dir = s.dirs.state_dir();
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::write(&state_dir, "not a directory").unwrap();
    let before = d.status().unwrap().services[0].weight;
    let out = d.ctl(&["set-weight", "model", "42"]).unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("undone") && err.contains("state file"),
        "{err}"
    );
    assert_eq!(d.status().unwrap().services[0].weight, before);
    assert_eq!(
        canary_answers(&s, s.vip, 10),
        0,
        "the kernel kept the old weight"
    );
    std::fs::remove_file(&state_dir).unwrap();
    let out = canaryctl(
        &s.bins,
        std::path::Path::new("/nonexistent/canary.sock"),
        &["status"],
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--socket"), "{err}");

    // Least privilege and the socket's mode.
    let proc_status = d.proc_status().unwrap();
    let caps = |key: &str| {
        let line = proc_status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in /proc status"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    let kept = canary_userspace::host::caps::kept_mask();
    for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps(key), kept, "{key} {:x}", caps(key));
    }
    assert_eq!(caps("CapInh:"), 0);
    assert_eq!(caps("CapAmb:"), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dirs.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {:o}", mode & 0o777);
}

#[test]
fn concurrent_set_weight_calls_leave_one_consistent_state() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&s.config(0));
    let mut d = s.start(&[]);
    const CLIENTS: usize = 6;
    const CALLS: usize = 15;
    let socket = s.dirs.socket();
    let bins = &s.bins;
    // Distinct values 0.5 .. 45.0, so every reply names exactly one call.
    let replies: Vec<(Weight, Weight)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let socket = socket.clone();
                scope.spawn(move || {
                    let ctl = |args: &[&str]| canaryctl(bins, &socket, args);
                    (0..CALLS)
                        .map(|i| {
                            let percent = format!("{:.1}", ((t * CALLS + i + 1) as f64) / 2.0);
                            let out = ctl(&["--json", "set-weight", "model", &percent]).unwrap();
                            assert!(out.status.success(), "{}", text(&out.stderr));
                            let r: Response<WeightSet> =
                                serde_json::from_slice(&out.stdout).unwrap();
                            let w = r.data.unwrap();
                            (w.previous, w.weight)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // The calls were applied one after another: following "previous ->
    // new" from the initial 0% visits every call once and ends at the
    // weight the kernel has.
    let mut at = Weight::ZERO;
    for _ in 0..replies.len() {
        let next = replies
            .iter()
            .filter(|(prev, _)| *prev == at)
            .map(|(_, new)| *new)
            .collect::<Vec<_>>();
        assert_eq!(next.len(), 1, "from {at}: {next:?} (replies {replies:?})");
        at = next[0];
    }
    let final_weight = d.status().unwrap().services[0].weight;
    assert_eq!(final_weight, at);
    // And the state file agrees: a restart keeps it.
    d.signal(libc::SIGTERM).unwrap();
    let d = s.start(&[]);
    assert_eq!(d.status().unwrap().services[0].weight, at);
}

#[test]
fn prometheus_server_scrapes_per_version_counters() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&s.config(5000));
    let d = s.start(&[]);

    // The exposition itself passes promtool's lint.
    let body = s.metrics().unwrap();
    let lint = tests::prometheus::promtool_check_metrics(&body).unwrap();
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    let prom = s.prometheus();
    const CONNECTIONS: usize = 200;
    let canary = canary_answers(&s, s.vip, CONNECTIONS) as f64;
    let stable = CONNECTIONS as f64 - canary;
    let query = |version: &str| {
        prom.query(&format!(
            "canary_new_flows_total{{service=\"model\",version=\"{version}\"}}"
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut got_canary, mut got_stable) = (None, None);
    while Instant::now() < deadline {
        got_canary = query(CANARY).ok().flatten();
        got_stable = query(STABLE).ok().flatten();
        if got_canary == Some(canary) && got_stable == Some(stable) {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    println!(
        "prometheus: canary {got_canary:?} stable {got_stable:?}; clients saw canary {canary} stable {stable}"
    );
    assert_eq!(got_canary, Some(canary), "{}", d.log_text());
    assert_eq!(got_stable, Some(stable));
    let packets = prom
        .query("sum(canary_packets_total{service=\"model\",direction=\"in\"})")
        .unwrap()
        .unwrap();
    assert!(packets >= CONNECTIONS as f64 * 3.0, "{packets} packets in");
    let weight = prom
        .query("canary_weight_ratio{service=\"model\",version=\"canary\"}")
        .unwrap();
    assert_eq!(weight, Some(0.5));
}

/// The daemon's state has one owner; status and metrics are answered
/// without it. Every reload is held 5 s inside the owner (a test hook),
/// and meanwhile `canaryctl status` and `GET /metrics` must each answer
/// within 100 ms, while a set-weight sent during the hold waits its turn
/// behind the reload and then applies.
#[test]
fn status_and_metrics_answer_while_an_operation_holds_the_owner() {
    let _serial = tests::root_scenario();
    const HOLD: Duration = Duration::from_secs(5);
    let hold_ms = HOLD.as_millis().to_string();
    let s = DaemonUnderTest::builder("test")
        .env(TEST_HOLD_ENV, &hold_ms)
        .config(0)
        .build();
    let d = s.start(&[]);
    assert!(
        d.log_text().contains(TEST_HOLD_ENV),
        "canaryd was built without its test hooks (feature test-hooks); \
         build the workspace with `cargo build --all-targets` (as `cargo xtask test` does) \
         so target/debug/canaryd has them:\n{}",
        d.log_text()
    );
    let timed = |f: &dyn Fn() -> bool| {
        let t = Instant::now();
        let ok = f();
        (ok, t.elapsed())
    };

    thread::scope(|scope| {
        let reload = scope.spawn(|| timed(&|| d.ctl(&["reload"]).unwrap().status.success()));
        wait_until(
            WAIT,
            "the reload holds the owner",
            || d.log_text(),
            || d.log_text().contains(TEST_HOLD_STARTED),
        );
        let set_weight = scope.spawn(|| {
            timed(&|| {
                d.ctl(&["set-weight", "model", "50"])
                    .unwrap()
                    .status
                    .success()
            })
        });
        // Queued behind the reload once canaryd has accepted its
        // connection (the held reload's is the other one).
        wait_until(
            WAIT,
            "canaryd accepts set-weight's connection",
            || d.log_text(),
            || accepted_on(d.pid, &d.socket) == 2,
        );

        let mut worst_status = Duration::ZERO;
        let mut worst_metrics = Duration::ZERO;
        for _ in 0..10 {
            let (ok, took) = timed(&|| {
                let out = d.ctl(&["status"]).unwrap();
                out.status.success() && text(&out.stdout).contains("canary weight 0.00%")
            });
            assert!(ok, "status failed or showed a weight not yet set");
            worst_status = worst_status.max(took);
            let (ok, took) = timed(&|| {
                s.metrics()
                    .is_ok_and(|body| body.contains("canary_new_flows_total"))
            });
            assert!(ok, "/metrics failed");
            worst_metrics = worst_metrics.max(took);
            // Spreads the 10 reads over the hold (scenario timing, not
            // ordering).
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !reload.is_finished(),
            "the reload must still be held while status and metrics were read"
        );
        println!(
            "owner held {HOLD:?} by a reload: slowest of 10 `canaryctl status` {:.1} ms, slowest of 10 GET /metrics {:.1} ms",
            worst_status.as_secs_f64() * 1e3,
            worst_metrics.as_secs_f64() * 1e3
        );
        assert!(
            worst_status < Duration::from_millis(100),
            "{worst_status:?}"
        );
        assert!(
            worst_metrics < Duration::from_millis(100),
            "{worst_metrics:?}"
        );

        let (reloaded, reload_took) = reload.join().unwrap();
        assert!(reloaded && reload_took >= HOLD, "reload {reload_took:?}");
        let (set, set_took) = set_weight.join().unwrap();
        assert!(set, "set-weight failed");
        assert!(
            set_took >= HOLD - Duration::from_millis(600),
            "set-weight must wait behind the held reload: {set_took:?}"
        );
    });
    assert_eq!(d.status().unwrap().services[0].weight, bp(5000));
}

/// Pinned maps of another layout where canary's would be (a plain hash
/// instead of the LRU flow table; an LRU table with a 36-byte key): start-up
/// refuses them, naming the map and both layouts, and attaches nothing.
/// Main used to reuse them silently (issue 11: with the plain hash, 34 of 50
/// new connections timed out).
#[test]
fn pinned_maps_of_a_wrong_layout_refuse_start() {
    let _serial = tests::root_scenario();
    for (kind, key, why) in [
        ("hash", "40", "type 1 (hash)"),
        ("lru_hash", "36", "key 36 B"),
    ] {
        let s = setup();
        s.write_config(&s.config(500));
        let maps = s.dirs.pins().maps();
        std::fs::create_dir_all(&maps).unwrap();
        let out = std::process::Command::new("bpftool")
            .args(["map", "create"])
            .arg(maps.join("FLOWS"))
            .args([
                "type", kind, "key", key, "value", "64", "entries", "1024", "name", "FLOWS",
            ])
            .output()
            .expect("bpftool (cargo xtask setup installs it)");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = s
            .try_start(&[])
            .err()
            .expect("canaryd started on a foreign FLOWS map");
        let msg = format!("{err:#}");
        println!(
            "{kind} key {key}: {}",
            msg.lines().find(|l| l.contains("FLOWS")).unwrap_or(&msg)
        );
        assert!(msg.contains("pinned map FLOWS has"), "{msg}");
        assert!(msg.contains(why), "{msg}");
        assert!(
            msg.contains("type 9 (LRU hash), key 40 B, value 64 B"),
            "{msg}"
        );
        // Nothing was attached: the VIP does not answer through canary.
        assert!(s.connect(s.vip).is_err());
    }
}

/// canaryd restarts on its own pins at every flow-table size a user may
/// set: a stop and start, a kill -9 and start, each with long-lived
/// connections that must stay on their version. Main refused every size
/// but 65,536 on the second start (issue 23: the half-open table, sized
/// from `flow_table_size`, was checked against the object's default).
#[test]
fn restarts_on_its_own_pins_at_every_flow_table_size() {
    let _serial = tests::root_scenario();
    for size in [1_024u32, 4_096, 65_536, 131_072, 1 << 20] {
        let s = setup();
        let mut config = s.config(5000);
        config.daemon.flow_table_size = size;
        s.write_config(&config);
        let mut d = s.start(&[]);
        let mut held: Vec<(Client, String)> = (0..8)
            .map(|_| {
                let mut c = s.connect(s.vip).unwrap();
                let label = c.request().unwrap();
                (c, label)
            })
            .collect();
        let mut ask = |when: &str| {
            for (i, (c, label)) in held.iter_mut().enumerate() {
                let got = c
                    .request()
                    .unwrap_or_else(|e| panic!("size {size}, {when}: connection {i}: {e:#}"));
                assert_eq!(&got, label, "size {size}, {when}: connection {i} moved");
            }
        };
        for (how, signal) in [("stop", libc::SIGTERM), ("kill -9", libc::SIGKILL)] {
            d.signal(signal).unwrap();
            d = s
                .try_start(&[])
                .unwrap_or_else(|e| panic!("size {size}: start after {how}: {e:#}"));
            ask(&format!("after {how} and start"));
        }
        let layout = |name: &str| {
            canary_userspace::kernel::pin_check::pinned(&s.dirs.pins().map(name))
                .unwrap()
                .max_entries
        };
        let (flows, half_open) = (layout("FLOWS"), layout("HALF_OPEN"));
        println!(
            "flow_table_size {size}: two restarts (stop, kill -9), 8 connections kept; \
             pinned FLOWS {flows}, HALF_OPEN {half_open} entries"
        );
        assert_eq!(flows, size);
        assert_eq!(half_open, canary_common::half_open_size(size));
        drop(d);
    }
}
