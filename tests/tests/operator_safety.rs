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
    process::Command,
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{
    Affinity, Dataplane, Hook, LoadOptions, Protocol, ServiceSpec,
    api::{InterfaceStatus, Status},
    config::Config,
    kernel::attachment,
    model::weight::Weight,
};
use tests::{
    HTTP_TIMEOUT, bp, one_at_a_time, require_root,
    servers::{Backend, Client},
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs},
    topology::{BackendKind, HOST_IF, HOST_V4, Topology},
};

const STABLE: &str = "stable";
const CANARY: &str = "canary";
/// On the client link's subnet, but not an address of the host.
const FOREIGN_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
/// How long a test waits for status to change; the daemon checks every
/// second, status on demand.
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    stable: SocketAddr,
    canary: SocketAddr,
    _backends: Vec<Backend>,
    dirs: DaemonDirs,
    bins: Binaries,
    // Dropped last: namespaces outlive the sockets in them.
    topo: Topology,
}

impl Setup {
    /// canaryd started on a config whose service at the host address sends
    /// every new flow to the canary, and the VIP answering from it.
    fn serving_all_canary(&self) -> (IpAddr, Canaryd) {
        let vip = IpAddr::V4(HOST_V4);
        self.dirs
            .write_config(&self.config(vip, Weight::FULL))
            .unwrap();
        let d = Canaryd::start(&self.topo.host, &self.bins, &self.dirs, &[]).unwrap();
        assert_eq!(self.request(vip).unwrap(), CANARY);
        (vip, d)
    }

    /// Detaches canary's programs from the host interface the way an
    /// operator's tool would, without telling canaryd.
    fn detach_behind_canaryds_back(&self) {
        let record = self.dirs.pins().interface(HOST_IF);
        self.topo
            .host
            .enter(|| attachment::detach(HOST_IF, &record))
            .unwrap()
            .unwrap();
    }

    fn new() -> Setup {
        let topo = Topology::new(BackendKind::LocalProcess).unwrap();
        let at = |port| SocketAddr::new(HOST_V4.into(), port);
        let (stable, canary) = (at(8081), at(8082));
        let backends = vec![
            Backend::spawn(&topo.host, stable, STABLE).unwrap(),
            Backend::spawn(&topo.host, canary, CANARY).unwrap(),
        ];
        Setup {
            stable,
            canary,
            _backends: backends,
            dirs: DaemonDirs::new("safety").unwrap(),
            bins: Binaries::next_to_test().unwrap(),
            topo,
        }
    }

    fn config(&self, vip: IpAddr, weight: Weight) -> Config {
        Config {
            daemon: self.dirs.daemon_config(HOST_IF),
            services: vec![ServiceSpec {
                name: "model".into(),
                vip: SocketAddr::new(vip, 80),
                protocol: Protocol::Tcp,
                affinity: Affinity::Flow,
                stable: vec![self.stable],
                canary: vec![self.canary],
                weight,
            }],
            rollouts: Default::default(),
        }
    }

    fn metrics(&self) -> String {
        let addr = self.dirs.daemon_config(HOST_IF).metrics_listen;
        xtask::http::get(&self.topo.host, addr, "/metrics", HTTP_TIMEOUT).unwrap()
    }

    /// One new connection to `vip`:80 and one request; the answer.
    fn request(&self, vip: IpAddr) -> anyhow::Result<String> {
        Client::connect(&self.topo.client, None, SocketAddr::new(vip, 80))?.request()
    }
}

/// The value of the sample `name{labels}` in a /metrics body.
fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

fn host_interface(status: &Status) -> InterfaceStatus {
    status
        .daemon
        .interfaces
        .iter()
        .find(|i| i.name == HOST_IF)
        .cloned()
        .unwrap()
}

/// Polls (every 50 ms, at most `WAIT`) until `done` holds; how long it took.
fn wait_until(what: &str, log: impl Fn() -> String, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < WAIT,
            "{what}: not within {WAIT:?}\n{}",
            log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Someone with root detaches canary's links behind the running daemon's
/// back (BPF_LINK_DETACH and the pins removed, as `--detach-all` did on
/// main): status, the table, /metrics and set-weight say so within
/// seconds and count it once; `canaryctl reload` attaches the programs
/// again and the VIP serves.
#[test]
fn a_detach_behind_the_daemons_back_is_reported_and_a_reload_repairs_it() {
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    let (vip, d) = s.serving_all_canary();

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
    s.detach_behind_canaryds_back();
    let want = format!(
        "canary's XDP program (id {ingress}) is not attached: the kernel runs no XDP program here; \
         canary's tc egress program (id {egress}) is not attached (tcx egress runs [])"
    );
    let noticed = wait_until(
        "status reports the detach",
        || d.log_text(),
        || {
            let i = host_interface(&d.status().unwrap());
            !i.attached && i.problem.as_deref() == Some(want.as_str())
        },
    );
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
    let counted = wait_until(
        "/metrics counts the mismatch",
        || d.log_text(),
        || {
            sample(
                &s.metrics(),
                "canary_interface_mismatches_total{interface=\"eth0\"}",
            ) == Some(1.0)
        },
    );
    let body = s.metrics();
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
    let log = d.log_text();
    let warned = format!(
        "eth0: the kernel does not run what canaryd set up: {want}; canary does not split new \
         connections here until `canaryctl reload` (or SIGHUP) or a restart attaches its programs again"
    );
    assert_eq!(log.matches(&warned).count(), 1, "{log}");
    // set-weight still stores the weight, and says it splits nothing.
    let out = d.ctl(&["set-weight", "model", "50"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "canaryctl: warning: eth0: {want}; the weight is stored, but canary splits no traffic there"
        )
    );
    // Not re-attached on its own: counted once, still reported.
    thread::sleep(Duration::from_millis(2500));
    let still = host_interface(&d.status().unwrap());
    assert!(!still.attached && still.mismatches == 1, "{still:?}");

    // A reload attaches the programs again; the VIP serves.
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(after.attached && after.problem.is_none(), "{after:?}");
    assert_eq!(after.xdp_program_id, Some(ingress));
    wait_until(
        "the VIP serves after the reload",
        || d.log_text(),
        || s.request(vip).is_ok(),
    );
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
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    let (vip, d) = s.serving_all_canary();
    let before = host_interface(&d.status().unwrap());
    let ingress = before.canary_program_ids[0];

    s.detach_behind_canaryds_back();
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(after.attached && after.problem.is_none(), "{after:?}");
    assert_eq!(after.xdp_program_id, Some(ingress), "{after:?}");
    wait_until(
        "the VIP serves after the reload",
        || d.log_text(),
        || s.request(vip).is_ok(),
    );
}

/// Another XDP program (a second data path with its own maps, as a second
/// canaryd would load) takes the hook: status names its id and never
/// shows the interface as attached.
#[test]
fn an_xdp_program_replaced_behind_the_daemons_back_is_reported() {
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    s.dirs
        .write_config(&s.config(IpAddr::V4(HOST_V4), Weight::FULL))
        .unwrap();
    let d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();
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
    wait_until(
        "status reports the replacement",
        || d.log_text(),
        || {
            let i = host_interface(&d.status().unwrap());
            let replaced = i.xdp_program_id.is_some_and(|id| id != ingress);
            if replaced {
                seen = Some(i.clone());
            }
            replaced
        },
    );
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
    wait_until(
        "/metrics says not attached",
        || d.log_text(),
        || {
            sample(
                &s.metrics(),
                "canary_interface_attached{interface=\"eth0\"}",
            ) == Some(0.0)
        },
    );
    drop(other);
}

/// A VIP that is not an address of the host is valid (keepalived may add
/// it later) but `--check`, the start-up log and status warn about it; it
/// is served once the address is added, and the warning goes.
#[test]
fn a_vip_that_is_not_local_is_a_warning_until_it_is_added() {
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    let vip = IpAddr::V4(FOREIGN_VIP);
    s.dirs.write_config(&s.config(vip, Weight::FULL)).unwrap();
    let file = s.dirs.config().display().to_string();
    let message = "198.18.0.99 is not an address of this host: clients cannot reach it until it \
                   is added (e.g. `ip addr add 198.18.0.99/32 dev lo`, or by keepalived); canaryd \
                   serves it once it is";
    let warning = format!("{file}: service[0].listen: {message}");

    let mut check = Command::new(&s.bins.canaryd);
    check.arg("--config").arg(s.dirs.config()).arg("--check");
    let out = s.topo.host.enter(|| check.output()).unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end(), format!("warning: {warning}"));
    assert_eq!(
        stdout(&out).trim_end(),
        format!("{file}: ok (1 services, 1 warnings)")
    );

    let d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();
    assert!(d.log_text().contains(&warning), "{}", d.log_text());
    let status = d.status().unwrap();
    assert_eq!(status.services[0].problem.as_deref(), Some(message));
    let table = stdout(&d.ctl(&["status"]).unwrap());
    assert!(table.contains(&format!("  PROBLEM: {message}")), "{table}");
    assert!(
        s.request(vip).is_err(),
        "the VIP answered before it was local"
    );

    s.topo
        .host
        .ip(&["addr", "add", "198.18.0.99/32", "dev", "lo"])
        .unwrap();
    assert_eq!(d.status().unwrap().services[0].problem, None);
    wait_until(
        "the VIP serves once local",
        || d.log_text(),
        || s.request(vip).is_ok_and(|got| got == CANARY),
    );
}

/// `set-weight S 5%` is 5 %; `0.05` is set but explained; junk gets the
/// same `canaryctl: ...` message format as every other error.
#[test]
fn set_weight_takes_a_percent_sign_and_explains_weights_below_one_percent() {
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    s.dirs
        .write_config(&s.config(IpAddr::V4(HOST_V4), Weight::ZERO))
        .unwrap();
    let d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();

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
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    let vip = IpAddr::V4(HOST_V4);
    let mut config = s.config(vip, Weight::FULL);
    config.daemon.hooks.insert(HOST_IF.into(), Hook::Tc);
    s.dirs.write_config(&config).unwrap();
    assert!(
        std::fs::read_to_string(s.dirs.config())
            .unwrap()
            .contains(r#"hook = "tc""#)
    );
    let mut d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();
    assert_eq!(s.request(vip).unwrap(), CANARY);

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
    wait_until(
        "status reports the tc ingress detach",
        || d.log_text(),
        || {
            let i = host_interface(&d.status().unwrap());
            !i.attached && i.problem.as_deref() == Some(want.as_str())
        },
    );

    // Once the owner's check (every second) has counted it, a reload
    // attaches it again (the dead link's pin is replaced).
    wait_until(
        "the owner counts the mismatch",
        || d.log_text(),
        || host_interface(&d.status().unwrap()).mismatches == 1,
    );
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = host_interface(&d.status().unwrap());
    assert!(
        after.attached && after.problem.is_none(),
        "{after:?}\n{}",
        d.log_text()
    );
    assert_eq!(after.ingress_program_ids, [ingress], "{after:?}");
    wait_until(
        "the VIP serves after the reload",
        || d.log_text(),
        || s.request(vip).is_ok_and(|a| a == CANARY),
    );

    d.signal(libc::SIGTERM).unwrap();
    let out = s
        .topo
        .host
        .enter(|| {
            Command::new(&s.bins.canaryd)
                .arg("--config")
                .arg(s.dirs.config())
                .arg("--detach-all")
                .output()
        })
        .unwrap()
        .unwrap();
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
    fn start(s: &Setup, vip: IpAddr) -> Traffic {
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

/// Half the new flows to the canary.
const HALF: Weight = match Weight::from_bp(5_000) {
    Some(w) => w,
    None => panic!("5000 bp is a weight"),
};

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
    require_root!();
    let _serial = one_at_a_time();
    let s = Setup::new();
    let vip = IpAddr::V4(HOST_V4);
    s.dirs.write_config(&s.config(vip, HALF)).unwrap();
    let mut d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();
    let mut held = Client::connect(&s.topo.client, None, SocketAddr::new(vip, 80)).unwrap();
    let version = held.request().unwrap();
    let traffic = Traffic::start(&s, vip);
    traffic.wait_for(20);

    // Stop, then start on lo.
    d.signal(libc::SIGTERM).unwrap();
    traffic.wait_for(20);
    let attempt = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &["--interface", "lo"]);
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
    let mut d = Canaryd::start(&s.topo.host, &s.bins, &s.dirs, &[]).unwrap();

    let mut moved = s.config(vip, HALF);
    moved.daemon.interfaces = vec!["lo".into()];
    s.dirs.write_config(&moved).unwrap();
    let out = d.ctl(&["reload"]).unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("daemon.interfaces: a restart with these interfaces would be refused too"),
        "{err}"
    );
    assert!(
        err.contains(&refusal) && err.contains("--move-interfaces"),
        "{err}"
    );
    s.dirs.write_config(&s.config(vip, HALF)).unwrap();

    d.signal(libc::SIGTERM).unwrap();

    // The override moves it, says so, and status flags the service.
    assert_eq!(traffic.counts().1, 0, "requests failed before the move");
    let d = Canaryd::start(
        &s.topo.host,
        &s.bins,
        &s.dirs,
        &["--interface", "lo", "--move-interfaces"],
    )
    .unwrap();
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
    let table = stdout(&d.ctl(&["status"]).unwrap());
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
