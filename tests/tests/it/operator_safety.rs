//! Issue 12, operator safety: status tells the kernel's truth, and config
//! and CLI mistakes are caught. The real binaries in a test namespace, as
//! in `daemon_host.rs`.
//!
//! - The programs detached, or replaced by another program, behind the
//!   running daemon's back: status, `canaryctl status`, /metrics and
//!   set-weight say so within seconds; a reload attaches them again.
//! - A VIP that is not an address of the host: a warning from `--check`,
//!   at start and in status, gone once the address is added.
//! - `set-weight S 5%` is 5 %; `set-weight S 0.05` says what it means.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{Dataplane, Hook, LoadOptions, config::Config, kernel::attachment};
use tests::bp;
use tests::{
    harness::CANARY,
    kit::{DaemonUnderTest, WAIT, host_interface, sample, text, wait_until},
};
use xtask::{
    canaryd::Canaryd,
    topology::{CLIENT_V4, HOST_IF, HOST_V4},
};

/// On the client link's subnet, but not an address of the host.
const FOREIGN_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);

fn setup() -> DaemonUnderTest {
    DaemonUnderTest::new("safety")
}

/// "model" on `vip`:80 at `weight_bp`.
fn config(s: &DaemonUnderTest, vip: IpAddr, weight_bp: u16) -> Config {
    let mut config = s.config(weight_bp);
    config.services[0].vip = SocketAddr::new(vip, s.vip.port());
    config
}

/// canaryd started on a config whose service at the host address sends
/// every new flow to the canary, and the VIP answering from it.
fn serving_all_canary(s: &DaemonUnderTest) -> (IpAddr, Canaryd) {
    let vip = IpAddr::V4(HOST_V4);
    s.write_config(&config(s, vip, 10_000));
    let d = s.start(&[]);
    assert_eq!(request(s, vip).unwrap(), CANARY);
    (vip, d)
}

/// Detaches canary's programs from the host interface the way an
/// operator's tool would, without telling canaryd.
fn detach_behind_canaryds_back(s: &DaemonUnderTest) {
    let record = s.dirs.pins().interface(HOST_IF);
    s.topo
        .host
        .enter(|| attachment::detach(HOST_IF, &record))
        .unwrap()
        .unwrap();
}

fn metrics(s: &DaemonUnderTest) -> String {
    s.metrics().unwrap()
}

/// One new connection to `vip`:80 and one request; the answer.
fn request(s: &DaemonUnderTest, vip: IpAddr) -> anyhow::Result<String> {
    s.request(SocketAddr::new(vip, s.vip.port()))
}

/// Polls (at most `WAIT`) until `done` holds; how long it took. A failure
/// shows canaryd's log.
#[track_caller]
fn wait(d: &Canaryd, what: &str, done: impl FnMut() -> bool) -> Duration {
    wait_until(WAIT, what, || d.log_text(), done)
}

fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

/// Someone with root detaches canary's links behind the running daemon's
/// back (BPF_LINK_DETACH and the pins removed, as `--detach-all` did on
/// main): status, the table, /metrics and set-weight say so within
/// seconds and count it once; `canaryctl reload` attaches the programs
/// again and the VIP serves.
#[test]
fn a_detach_behind_the_daemons_back_is_reported_and_a_reload_repairs_it() {
    let _serial = tests::root_scenario();
    let s = setup();
    let (vip, d) = serving_all_canary(&s);

    // Healthy: what the kernel runs is canary's, with canary's maps.
    let before = host_interface(&d.status().unwrap());
    assert!(before.attached && before.problem.is_none(), "{before:?}");
    let [ingress, egress] = before.canary_program_ids[..] else {
        panic!("{before:?}")
    };
    assert_eq!(before.xdp_program_id, Some(ingress), "{before:?}");
    assert!(before.egress_program_ids.contains(&egress), "{before:?}");
    assert_eq!(before.map_ids.len(), canary_common::names::MAPS.len());
    assert_eq!(before.mismatches, 0);

    // Behind its back.
    detach_behind_canaryds_back(&s);
    let want = format!(
        "canary's XDP program (id {ingress}) is not attached: the kernel runs no XDP program here; \
         canary's tc egress program (id {egress}) is not attached (tcx egress runs [])"
    );
    let noticed = wait(&d, "status reports the detach", || {
        let i = host_interface(&d.status().unwrap());
        !i.attached && i.problem.as_deref() == Some(want.as_str())
    });
    let out = d.ctl(&["--json", "status"]).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let iface = &json["data"]["daemon"]["interfaces"][0];
    assert_eq!(iface["attached"], serde_json::json!(false), "{json}");
    assert_eq!(iface["problem"], serde_json::json!(want), "{json}");
    assert!(iface.get("xdp_program_id").is_none(), "{json}");
    let table = stdout(&d.ctl(&["status"]).unwrap());
    assert!(
        table.contains(&format!("eth0 (NOT ATTACHED: {want})")),
        "{table}"
    );
    // /metrics once the owner's check (every second) has counted it.
    let counted = wait(&d, "/metrics counts the mismatch", || {
        sample(
            &metrics(&s),
            "canary_interface_mismatches_total{interface=\"eth0\"}",
        ) == Some(1.0)
    });
    let body = metrics(&s);
    for (name, value) in [
        ("canary_interface_attached", 0.0),
        ("canary_interface_problem", 1.0),
    ] {
        assert_eq!(
            sample(&body, &format!("{name}{{interface=\"eth0\"}}")),
            Some(value),
            "{name}\n{body}"
        );
    }
    let lint = tests::prometheus::promtool_check_metrics(&body).unwrap();
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");
    // Warned once, naming what it found then: the detach takes the XDP
    // link, then the tc one, and the owner's once-a-second check may run
    // between the two (one CI run saw it name the XDP program only).
    let log = d.log_text();
    let warned = format!(
        "eth0: the kernel does not run what canaryd set up: canary's XDP program (id {ingress}) is \
         not attached: the kernel runs no XDP program here"
    );
    let until = "; canary does not split new connections here until `canaryctl reload` (or SIGHUP) \
                 or a restart attaches its programs again";
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(&warned)).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].ends_with(until), "{log}");
    // set-weight still stores the weight, and says it splits nothing.
    let out = d.ctl(&["set-weight", "model", "50"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "canaryctl: warning: eth0: {want}; the weight is stored, but canary splits no traffic there"
        )
    );
    // Not re-attached on its own: counted once, still reported. This sleep
    // stays: that nothing happens can only be seen by letting two of the
    // owner's once-a-second checks pass.
    thread::sleep(Duration::from_millis(2500));
    let still = host_interface(&d.status().unwrap());
    assert!(!still.attached && still.mismatches == 1, "{still:?}");

    // A reload attaches the programs again; the VIP serves.
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(after.attached && after.problem.is_none(), "{after:?}");
    assert_eq!(after.xdp_program_id, Some(ingress));
    wait(&d, "the VIP serves after the reload", || {
        request(&s, vip).is_ok()
    });
    println!(
        "detached behind canaryd's back: status said so after {:.0} ms, /metrics counted it after {:.0} ms",
        noticed.as_secs_f64() * 1e3,
        counted.as_secs_f64() * 1e3
    );
}

/// A reload right after a detach behind canaryd's back, before its
/// once-a-second check has seen it, repairs it too: the reload's own check
/// finds the detach and attaches again.
#[test]
fn a_reload_repairs_a_detach_its_periodic_check_has_not_seen_yet() {
    let _serial = tests::root_scenario();
    let s = setup();
    let (vip, d) = serving_all_canary(&s);
    let before = host_interface(&d.status().unwrap());
    let ingress = before.canary_program_ids[0];

    detach_behind_canaryds_back(&s);
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(after.attached && after.problem.is_none(), "{after:?}");
    assert_eq!(after.xdp_program_id, Some(ingress), "{after:?}");
    wait(&d, "the VIP serves after the reload", || {
        request(&s, vip).is_ok()
    });
}

/// Another XDP program (a second data path with its own maps, as a second
/// canaryd would load) takes the hook: status names its id and never
/// shows the interface as attached.
#[test]
fn an_xdp_program_replaced_behind_the_daemons_back_is_reported() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, IpAddr::V4(HOST_V4), 10_000));
    let d = s.start(&[]);
    let before = host_interface(&d.status().unwrap());
    let [ingress, _] = before.canary_program_ids[..] else {
        panic!("{before:?}")
    };
    let record = s.dirs.pins().interface(HOST_IF);
    let other = s
        .topo
        .host
        .enter(|| {
            attachment::detach(HOST_IF, &record)?;
            let mut dp = Dataplane::load(&LoadOptions::default())?;
            dp.attach(HOST_IF, Hook::Xdp)?;
            anyhow::Ok(dp)
        })
        .unwrap()
        .unwrap();
    let mut seen = None;
    wait(&d, "status reports the replacement", || {
        let i = host_interface(&d.status().unwrap());
        let replaced = i.xdp_program_id.is_some_and(|id| id != ingress);
        if replaced {
            seen = Some(i.clone());
        }
        replaced
    });
    let i = seen.unwrap();
    let other_id = i.xdp_program_id.unwrap();
    assert!(!i.attached, "{i:?}");
    let problem = i.problem.clone().unwrap();
    assert!(
        problem.starts_with(&format!(
            "XDP runs program id {other_id}, not canary's (id {ingress}): it was replaced behind canaryd's back; \
             canary's tc egress program (id "
        )),
        "{problem}"
    );
    let table = stdout(&d.ctl(&["status"]).unwrap());
    assert!(
        table.contains("eth0 (NOT ATTACHED: XDP runs program id"),
        "{table}"
    );
    wait(&d, "/metrics says not attached", || {
        sample(
            &metrics(&s),
            "canary_interface_attached{interface=\"eth0\"}",
        ) == Some(0.0)
    });
    drop(other);
}

/// A VIP that is not an address of the host is valid (keepalived may add
/// it later) but `--check`, the start-up log and status warn about it; it
/// is served once the address is added, and the warning goes.
#[test]
fn a_vip_that_is_not_local_is_a_warning_until_it_is_added() {
    let _serial = tests::root_scenario();
    let s = setup();
    let vip = IpAddr::V4(FOREIGN_VIP);
    s.write_config(&config(&s, vip, 10_000));
    let file = s.dirs.config().display().to_string();
    let message = "198.18.0.99 is not an address of this host: clients cannot reach it until it \
                   is added (e.g. `ip addr add 198.18.0.99/32 dev lo`, or by keepalived); canaryd \
                   serves it once it is";
    let warning = format!("{file}: service[0].listen: {message}");

    let out = s.one_shot(&["--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end(), format!("warning: {warning}"));
    assert_eq!(
        stdout(&out).trim_end(),
        format!("{file}: ok (1 services, 1 warnings)")
    );

    let d = s.start(&[]);
    assert!(d.log_text().contains(&warning), "{}", d.log_text());
    let status = d.status().unwrap();
    assert_eq!(status.services[0].problem.as_deref(), Some(message));
    let table = stdout(&d.ctl(&["status"]).unwrap());
    assert!(table.contains(&format!("  PROBLEM: {message}")), "{table}");
    assert!(
        request(&s, vip).is_err(),
        "the VIP answered before it was local"
    );

    s.topo
        .host
        .ip(&["addr", "add", "198.18.0.99/32", "dev", "lo"])
        .unwrap();
    assert_eq!(d.status().unwrap().services[0].problem, None);
    wait(&d, "the VIP serves once local", || {
        request(&s, vip).is_ok_and(|got| got == CANARY)
    });
}

/// `set-weight S 5%` is 5 %; `0.05` is set but explained; junk gets the
/// same `canaryctl: ...` message format as every other error.
#[test]
fn set_weight_takes_a_percent_sign_and_explains_weights_below_one_percent() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, IpAddr::V4(HOST_V4), 0));
    let d = s.start(&[]);

    let out = d.ctl(&["set-weight", "model", "5%"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(d.status().unwrap().services[0].weight, bp(500));

    let out = d.ctl(&["set-weight", "model", "0.05"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "canaryctl: note: model: 0.05% (1 in 2000 new flows); did you mean 5? The weight is a percent"
    );
    assert_eq!(d.status().unwrap().services[0].weight, bp(5));

    let out = d.ctl(&["set-weight", "model", "5x"]).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim_end(),
        "canaryctl: percent: \"5x\" is not a percent; write a number from 0 to 100 with at most two decimals, e.g. 12.5 or 12.5%"
    );
    assert_eq!(d.status().unwrap().services[0].weight, bp(5));
}

/// An interface with `hook = "tc"`: canaryd runs canary_ingress_tc at tcx
/// ingress (no XDP program), status says so from the kernel; detached
/// behind its back it is reported not attached, a reload repairs it, and
/// `--detach-all` takes it off.
#[test]
fn the_tc_hook_is_shown_checked_repaired_and_detached() {
    let _serial = tests::root_scenario();
    let s = setup();
    let vip = IpAddr::V4(HOST_V4);
    let mut tc = config(&s, vip, 10_000);
    tc.daemon.hooks.insert(HOST_IF.into(), Hook::Tc);
    s.write_config(&tc);
    assert!(
        std::fs::read_to_string(s.dirs.config())
            .unwrap()
            .contains(r#"hook = "tc""#)
    );
    let mut d = s.start(&[]);
    assert_eq!(request(&s, vip).unwrap(), CANARY);

    let before = host_interface(&d.status().unwrap());
    assert!(before.attached && before.problem.is_none(), "{before:?}");
    assert_eq!((before.hook, before.xdp), (Hook::Tc, None), "{before:?}");
    assert_eq!(before.xdp_program_id, None, "no XDP program: {before:?}");
    let [ingress, egress] = before.canary_program_ids[..] else {
        panic!("{before:?}")
    };
    assert_eq!(before.ingress_program_ids, [ingress], "{before:?}");
    assert!(before.egress_program_ids.contains(&egress), "{before:?}");
    let table = stdout(&d.ctl(&["status"]).unwrap());
    assert!(table.contains("interfaces eth0 (tc)"), "{table}");
    assert!(
        d.log_text()
            .contains("eth0: tc ingress (tcx), through pinned bpf_links")
    );

    // Behind its back: the tc ingress link alone goes.
    let pin = s
        .dirs
        .pins()
        .interface(HOST_IF)
        .join(attachment::TC_INGRESS_PIN);
    let out = Command::new("bpftool")
        .args(["link", "detach", "pinned"])
        .arg(&pin)
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool: {}", stderr(&out));
    let want =
        format!("canary's tc ingress program (id {ingress}) is not attached (tcx ingress runs [])");
    wait(&d, "status reports the tc ingress detach", || {
        let i = host_interface(&d.status().unwrap());
        !i.attached && i.problem.as_deref() == Some(want.as_str())
    });

    // Once the owner's check (every second) has counted it, a reload
    // attaches it again (the dead link's pin is replaced).
    wait(&d, "the owner counts the mismatch", || {
        host_interface(&d.status().unwrap()).mismatches == 1
    });
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(
        after.attached && after.problem.is_none(),
        "{after:?}\n{}",
        d.log_text()
    );
    assert_eq!(after.ingress_program_ids, [ingress], "{after:?}");
    wait(&d, "the VIP serves after the reload", || {
        request(&s, vip).is_ok_and(|a| a == CANARY)
    });

    d.signal(libc::SIGTERM).unwrap();
    let out = s.one_shot(&["--detach-all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, left) = s
        .topo
        .host
        .enter(|| {
            aya::programs::SchedClassifier::query_tcx(HOST_IF, aya::programs::TcAttachType::Ingress)
        })
        .unwrap()
        .unwrap();
    assert!(
        left.is_empty(),
        "tcx ingress programs left after --detach-all"
    );
}

/// New connections to `vip`:80 from the client namespace, one request each,
/// every 10 ms on a thread until stopped (at most 6,000 or 90 s): how many
/// failed, read at any time.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(s: &DaemonUnderTest, vip: IpAddr) -> Traffic {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        };
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let client = s.topo.client.path();
        let (t_stop, t_failed, t_sent) = (stop.clone(), failed.clone(), sent.clone());
        let thread = thread::spawn(move || {
            // This thread only: into the client namespace for good.
            xtask::topology::enter_for_good(&client).unwrap();
            let started = Instant::now();
            for _ in 0..6_000 {
                if t_stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(90) {
                    break;
                }
                let ok = one_request(SocketAddr::new(vip, 80)).is_ok();
                t_sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    t_failed.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Traffic {
            stop,
            failed,
            sent,
            thread: Some(thread),
        }
    }

    /// (requests sent, failed) so far.
    fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Waits until `n` more requests were sent than now.
    fn wait_for(&self, n: u64) {
        let from = self.counts().0;
        let started = Instant::now();
        while self.counts().0 < from + n {
            assert!(started.elapsed() < WAIT, "the traffic stalled");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One new connection to `to` and one request line, answered.
fn one_request(to: SocketAddr) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"req\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::other("closed before a reply"));
    }
    Ok(())
}

/// Issue 22. An operator tries a change on a serving host (VIP on eth0,
/// weight 50 %, traffic flowing): stop canaryd, start it with
/// `--interface lo`, an interface that exists but is not where clients
/// come in. Refused, naming the VIP, the interface and the flag, nothing
/// changed: a client counting failures through it sees none, and an
/// established connection keeps its version. A reload that drops the
/// VIP's interface is refused the same way. `--move-interfaces` moves the
/// data path, says so, and status flags the service.
#[test]
fn an_existing_but_wrong_interface_does_not_move_the_data_path_off_the_vips_interface() {
    let _serial = tests::root_scenario();
    let s = setup();
    let vip = IpAddr::V4(HOST_V4);
    s.write_config(&config(&s, vip, 5_000));
    let mut d = s.start(&[]);
    let mut held = s.connect(SocketAddr::new(vip, 80)).unwrap();
    let version = held.request().unwrap();
    let traffic = Traffic::start(&s, vip);
    traffic.wait_for(20);

    // Stop, then start on lo.
    d.signal(libc::SIGTERM).unwrap();
    traffic.wait_for(20);
    let attempt = s.try_start(&["--interface", "lo"]);
    traffic.wait_for(50);
    let (sent, failed) = traffic.counts();
    println!("start on lo: {sent} requests through the attempt, {failed} failed");
    let refusal = format!(
        "refusing to move the data path off {HOST_IF}: service model's VIP {vip} is an address of {HOST_IF}"
    );
    let refused = attempt
        .err()
        .expect("a start on lo was not refused")
        .to_string();
    assert!(refused.contains(&refusal), "{refused}");
    assert!(
        refused.contains("or start with --move-interfaces to move anyway"),
        "{refused}"
    );
    assert_eq!(failed, 0, "requests failed while the start was refused");
    assert_eq!(
        held.request().unwrap(),
        version,
        "the held connection moved"
    );

    // Started again as it was: a reload whose config drops the VIP's
    // interface is refused, naming the same.
    let mut d = s.start(&[]);

    let mut moved = config(&s, vip, 5_000);
    moved.daemon.interfaces = vec!["lo".into()];
    s.write_config(&moved);
    let out = d.ctl(&["reload"]).unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("daemon.interfaces: a restart with these interfaces would be refused too"),
        "{err}"
    );
    assert!(
        err.contains(&refusal) && err.contains("--move-interfaces"),
        "{err}"
    );
    s.write_config(&config(&s, vip, 5_000));

    d.signal(libc::SIGTERM).unwrap();

    // The override moves it, says so, and status flags the service.
    assert_eq!(traffic.counts().1, 0, "requests failed before the move");
    let d = s.start(&["--interface", "lo", "--move-interfaces"]);
    assert!(
        d.log_text().contains(&format!(
            "--move-interfaces: moving the data path off {HOST_IF} as asked, although service model's VIP {vip} is an address of {HOST_IF}"
        )),
        "{}",
        d.log_text()
    );
    let problem = d.status().unwrap().services[0]
        .problem
        .clone()
        .unwrap_or_default();
    assert!(
        problem.contains(&format!(
            "none of the interfaces its clients come in on ({HOST_IF}) is attached"
        )),
        "{problem}"
    );
    let table = text(&d.ctl(&["status"]).unwrap().stdout);
    assert!(
        table.contains("none of the interfaces its clients come in on"),
        "{table}"
    );
    let before_move = failed;
    traffic.wait_for(20);
    let (sent, failed) = traffic.counts();
    println!(
        "after --move-interfaces: {sent} requests in all, {} failed since the move",
        failed - before_move
    );
    assert!(
        failed > before_move,
        "the VIP kept serving off its interface?"
    );
}

/// Issue 22, the flow half: a VIP on lo says nothing by its address about
/// where clients come in, so the established flows do: a held connection
/// from the client namespace is routed through the host interface, and a
/// start that would leave it is refused naming that client; the held
/// connection keeps its version.
#[test]
fn established_clients_keep_their_interface_when_the_vip_is_on_lo() {
    let _serial = tests::root_scenario();
    let s = setup();
    let vip = IpAddr::V4(FOREIGN_VIP);
    s.topo
        .host
        .ip(&["addr", "add", "198.18.0.99/32", "dev", "lo"])
        .unwrap();
    s.write_config(&config(&s, vip, 10_000));
    let mut d = s.start(&[]);
    let mut held = s.connect(SocketAddr::new(vip, 80)).unwrap();
    assert_eq!(held.request().unwrap(), CANARY);
    d.signal(libc::SIGTERM).unwrap();

    let refused = s
        .try_start(&["--interface", "lo"])
        .err()
        .expect("a start on lo was not refused")
        .to_string();
    println!("{refused}");
    assert!(
        refused.contains(&format!(
            "1 client(s) of service model with established flows (e.g. {CLIENT_V4}) are routed through {HOST_IF}"
        )),
        "{refused}"
    );
    assert!(!refused.contains("is an address of"), "{refused}");
    assert_eq!(held.request().unwrap(), CANARY, "the held connection moved");
}
