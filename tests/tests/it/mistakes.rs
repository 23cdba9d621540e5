//! Operator mistakes (issue 12) with the real canaryd in a test namespace:
//! each is refused or contained with a message that says what happened,
//! and the VIP keeps answering real connections through it.

use std::{path::Path, process::Command};

use canary_common::names::INGRESS_PROGRAM;
use canary_userspace::kernel::attachment::{self, XDP_DRIVER_PIN};
use tests::{
    harness::{CANARY, STABLE},
    kit::{DaemonUnderTest, ONE_SHOT, run_bounded, spawn_piped, text, wait_bounded},
};
use xtask::topology::{HOST_IF, Netns};

/// "model" at 50 %, written; nothing started.
fn setup() -> DaemonUnderTest {
    DaemonUnderTest::builder("safety").config(5000).build()
}

/// New connections to the VIP: how many of `n` were answered.
fn answered(s: &DaemonUnderTest, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            s.request(s.vip)
                .is_ok_and(|got| got == STABLE || got == CANARY)
        })
        .count()
}

/// The id of canary's XDP program on the host interface, if attached.
fn xdp_program(s: &DaemonUnderTest) -> Option<u64> {
    s.topo
        .host
        .enter(|| attachment::xdp_program_on(HOST_IF))
        .unwrap()
        .unwrap()
        .filter(|p| p.name == INGRESS_PROGRAM)
        .map(|p| p.id)
}

/// A `--detach-all` run `when`: it succeeded and said `want`; what it said.
fn detach_all_said(out: &std::process::Output, when: &str, want: &str) -> String {
    let said = text(&out.stdout);
    println!("--detach-all {when}: {said}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains(want), "{said}");
    said
}

/// The VIP is checked with this many new connections at each step.
const PROBES: usize = 20;

#[test]
fn interface_flag_typo_is_caught_by_check_and_start_before_anything_is_detached() {
    let _serial = tests::root_scenario();
    let s = setup();
    let mut d = s.start(&[]);
    d.signal(libc::SIGTERM).unwrap();
    let program = xdp_program(&s);
    assert!(program.is_some(), "not attached after the first run");
    assert_eq!(answered(&s, PROBES), PROBES, "VIP down after SIGTERM");

    let typo = "eht0";
    let want = format!("command line: --interface: no interface named \"{typo}\" on this host");
    let check = s.one_shot(&["--interface", typo, "--check"]);
    let start = s.one_shot(&["--interface", typo]);
    let vip = answered(&s, PROBES);
    println!(
        "--interface {typo}: --check exit {:?}, start exit {:?}; VIP answered {vip}/{PROBES}\n\
         --check stderr: {}start stderr: {}",
        check.status.code(),
        start.status.code(),
        text(&check.stderr),
        text(&start.stderr)
    );
    for (what, out) in [("--check", &check), ("start", &start)] {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(&want), "{what}: {err}");
        assert!(
            err.contains("canaryd: 1 error(s) on the command line; nothing was started"),
            "{what}: {err}"
        );
    }
    assert_eq!(vip, PROBES, "the VIP stopped serving");
    assert_eq!(xdp_program(&s), program, "the programs changed");
    assert!(
        s.dirs
            .pins()
            .interface(HOST_IF)
            .join(XDP_DRIVER_PIN)
            .exists(),
        "{HOST_IF}'s link pin went"
    );
}

#[test]
fn a_failed_attach_at_start_detaches_nothing_and_says_what_serves() {
    let _serial = tests::root_scenario();
    let s = setup();
    let mut d = s.start(&[]);
    d.signal(libc::SIGTERM).unwrap();
    assert_eq!(answered(&s, PROBES), PROBES, "VIP down after SIGTERM");
    // Stands for any attach failure no check can foresee (a driver that
    // refuses, a foreign XDP program): `lo`'s record in the pin directory
    // is a dangling symlink (bpffs allows them), so creating it fails.
    let record = s.dirs.pins().interface("lo");
    std::os::unix::fs::symlink("/nonexistent/canary-test", &record).unwrap();

    // --move-interfaces: past the check that would refuse leaving the
    // VIP's interface, to the attach that fails.
    let out = s.one_shot(&["--interface", "lo", "--move-interfaces"]);
    let vip = answered(&s, PROBES);
    let err = text(&out.stderr);
    println!(
        "--interface lo with an attach that fails: exit {:?}; VIP answered {vip}/{PROBES}\nstderr: {err}",
        out.status.code()
    );
    std::fs::remove_file(&record).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("canaryd: starting the data path: attaching lo failed: "),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "nothing was detached: {HOST_IF} keeps serving from its pinned programs"
        )),
        "{err}"
    );
    assert_eq!(vip, PROBES, "the VIP stopped serving");
    assert!(xdp_program(&s).is_some(), "{HOST_IF} was detached");
    // And a start with the right flags carries on from there.
    let d = s.start(&[]);
    assert!(d.status().unwrap().daemon.interfaces[0].attached);
    assert_eq!(answered(&s, PROBES), PROBES);
}

#[test]
fn a_second_canaryd_and_detach_all_are_refused_while_one_runs() {
    let _serial = tests::root_scenario();
    let s = setup();
    let mut d = s.start(&[]);
    let program = xdp_program(&s);
    let other_socket = s.dirs.root.join("other.sock");
    let other_socket = other_socket.to_str().unwrap();
    let held = format!(
        "canaryd pid {} is running on the pins in {} (it holds that directory locked); \
         stop it first (systemctl stop canaryd, or kill {}); nothing was changed",
        d.pid,
        s.dirs.bpffs.display(),
        d.pid
    );

    let second = s.one_shot(&["--socket", other_socket, "--metrics-listen", "127.0.0.1:0"]);
    let after_second = answered(&s, PROBES);
    let detach = s.one_shot(&["--detach-all"]);
    let after_detach = answered(&s, PROBES);
    let reset = s.one_shot(&[
        "--socket",
        other_socket,
        "--metrics-listen",
        "127.0.0.1:0",
        "--reset",
    ]);
    let after_reset = answered(&s, PROBES);
    for (what, out) in [
        ("second", &second),
        ("--detach-all", &detach),
        ("--reset", &reset),
    ] {
        println!(
            "{what} while canaryd {} runs: exit {:?}, stderr: {}",
            d.pid,
            out.status.code(),
            text(&out.stderr)
        );
    }
    println!("VIP answered {after_second}, {after_detach}, {after_reset} of {PROBES} after each");
    let second_err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{second_err}");
    assert!(
        second_err.contains(&format!("canaryd: not started: {held}")),
        "{second_err}"
    );
    let detach_err = text(&detach.stderr);
    assert_eq!(detach.status.code(), Some(1), "{detach_err}");
    assert!(
        detach_err.contains(&format!("canaryd: --detach-all: {held}")),
        "{detach_err}"
    );
    assert_eq!(reset.status.code(), Some(1), "{}", text(&reset.stderr));
    assert!(text(&reset.stderr).contains(&held));
    assert_eq!(
        (after_second, after_detach, after_reset),
        (PROBES, PROBES, PROBES),
        "the VIP stopped serving"
    );
    assert_eq!(xdp_program(&s), program, "the programs were replaced");
    assert!(
        !Path::new(other_socket).exists(),
        "the second bound its socket"
    );
    d.check_running().unwrap();
    let status = d.status().unwrap();
    assert!(status.daemon.interfaces[0].attached);
    assert!(
        s.dirs
            .pins()
            .interface(HOST_IF)
            .join(XDP_DRIVER_PIN)
            .exists(),
        "pins removed"
    );

    // Stopped, the lock is free: --detach-all does its job and says where.
    d.signal(libc::SIGTERM).unwrap();
    let out = s.one_shot(&["--detach-all"]);
    detach_all_said(
        &out,
        "after SIGTERM",
        &format!(
            "removed the pins under {}; the programs are detached from {HOST_IF}",
            s.dirs.bpffs.display()
        ),
    );
    assert_eq!(xdp_program(&s), None);
}

/// canaryd under `ip netns exec NS`, which gives it a mount namespace and a
/// /sys of its own, so it mounts a bpffs of its own at /sys/fs/bpf.
fn netns_exec(s: &DaemonUnderTest, ns: &Netns, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(&s.bins.canaryd)
        .arg("--config")
        .arg(s.dirs.config())
        .args(args);
    cmd
}

#[test]
fn a_bpffs_canaryd_mounts_under_ip_netns_exec_is_called_out_and_detach_all_finds_nothing() {
    let _serial = tests::root_scenario();
    let s = setup();
    let child = spawn_piped(netns_exec(&s, &s.topo.host, &[])).unwrap();
    // Up once it answers on its socket; the VIP is checked either way.
    let up = tests::eventually(ONE_SHOT, || s.client().version().is_ok());
    let serving = answered(&s, PROBES);
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_bounded(child);
    let log = text(&out.stderr);
    println!(
        "canaryd under ip netns exec: answered on its socket {up}, VIP answered {serving}/{PROBES}; log:\n{log}"
    );
    assert_eq!(serving, PROBES, "{log}");
    assert!(
        log.contains(
            "mounted a BPF filesystem at /sys/fs/bpf in canaryd's own mount namespace \
             (as under `ip netns exec`): the pins, and the data path with them, vanish \
             when that namespace ends; to keep them, mount a bpffs outside it"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "stopped; the pins are on the bpffs canaryd mounted in its own mount namespace"
        ),
        "{log}"
    );
    assert!(!log.contains("keeps running from its pins"), "{log}");

    let out = run_bounded(netns_exec(&s, &s.topo.host, &["--detach-all"]));
    let said = detach_all_said(
        &out,
        "under ip netns exec",
        &format!(
            "found no canary pins under {}: nothing was detached",
            s.dirs.bpffs.display()
        ),
    );
    assert!(!said.contains("the programs are detached"), "{said}");
}

/// `--fleet-host` is checked like `[fleet] host`, naming the flag, and
/// replaces it.
#[test]
fn a_fleet_host_flag_that_is_no_name_is_refused_naming_the_flag() {
    let _serial = tests::root_scenario();
    let s = setup();
    let mut config = s.config(5000);
    config.fleet = Some(canary_userspace::config::FleetConfig::new(
        vec!["http://198.18.200.1:2379".into()],
        "iris",
        "host-a",
    ));
    s.write_config(&config);
    let bad = s.one_shot(&["--fleet-host", "node/7", "--check"]);
    let err = text(&bad.stderr);
    println!(
        "--fleet-host node/7 --check: exit {:?}: {err}",
        bad.status.code()
    );
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("command line: --fleet-host: \"node/7\" is not a name"),
        "{err}"
    );
    let good = s.one_shot(&["--fleet-host", "node-7", "--check"]);
    assert!(good.status.success(), "{}", text(&good.stderr));
}
