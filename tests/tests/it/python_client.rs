//! The Python client (canary-userspace/python) against a real canaryd: the
//! Rust side builds the scenario (namespaces, backends, load, kill -9) and
//! runs pytest on the scenario's file in the test's host namespace (where
//! the backends are; the control socket is a file path either way), with
//! the socket, canaryctl and the scenario in its environment. pytest's
//! output is printed; its exit status is the verdict.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::Arc,
    time::Duration,
};

use tests::{
    harness::{CANARY, SERVICE, STABLE},
    kit::{DaemonUnderTest, host_addr, spawn_piped, tcp_service, text, wait_until, wait_within},
    servers::{Backend, Behaviour},
};

use crate::rollout::{Load, config, healthy, plan, setup, start};

/// Debian's python3, which has python3-pytest (`cargo xtask setup`).
const PYTHON: &str = "/usr/bin/python3";

/// Longest a pytest run may take before it is killed and fails.
const PYTEST_LIMIT: Duration = Duration::from_secs(180);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../canary-userspace/python")
}

/// `python3 -m pytest tests/FILE -q` with `env`, not started.
fn pytest(file: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.current_dir(python_dir())
        .args(["-m", "pytest", &format!("tests/{file}"), "-q", "-rs", "-s"])
        // Nothing written into the source tree.
        .args(["-p", "no:cacheprovider"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied());
    cmd
}

/// pytest on `file` for `scenario` against `s`'s canaryd, started in the
/// host namespace.
fn spawn(s: &DaemonUnderTest, file: &str, scenario: &str, env: &[(&str, &str)]) -> Child {
    let socket = s.dirs.socket();
    let ctl = s.bins.canaryctl.display().to_string();
    let mut all = vec![
        ("CANARY_SOCKET", socket.to_str().unwrap()),
        ("CANARYCTL", ctl.as_str()),
        ("CANARY_SCENARIO", scenario),
    ];
    all.extend_from_slice(env);
    let cmd = pytest(file, &all);
    s.topo
        .host
        .enter(|| spawn_piped(cmd))
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("starting pytest ({PYTHON}; cargo xtask setup installs python3-pytest): {e}")
        })
}

/// Prints pytest's output and fails the test unless it passed with
/// `passed` tests and none skipped.
#[track_caller]
fn passed(out: Output, passed: usize) {
    let stdout = text(&out.stdout);
    println!("{stdout}{}", text(&out.stderr));
    assert!(out.status.success(), "pytest failed: {:?}", out.status);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        summary.starts_with(&format!("{passed} passed")) && !summary.contains("skipped"),
        "expected {passed} passed, none skipped: {summary}"
    );
}

/// The client's own tests, against a fake daemon on a unix socket (no
/// root, no network): framing, every error code, reconnects, setup checks.
#[test]
fn unit_tests_pass_against_a_fake_daemon() {
    let out = wait_within(
        spawn_piped(pytest("unit", &[]))
            .expect("starting pytest (cargo xtask setup installs python3-pytest)"),
        PYTEST_LIMIT,
    )
    .unwrap();
    let stdout = text(&out.stdout);
    println!("{stdout}{}", text(&out.stderr));
    assert!(out.status.success(), "pytest failed: {:?}", out.status);
}

/// `pip install canary-userspace/python` into a fresh venv, offline (no
/// index): the package imports from the venv with its data files.
#[test]
fn the_package_installs_into_a_venv_offline() {
    let dir = std::env::temp_dir().join(format!("canary-venv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |cmd: &mut Command| {
        let out = wait_within(
            spawn_piped(std::mem::replace(cmd, Command::new("true"))).unwrap(),
            PYTEST_LIMIT,
        )
        .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    };
    run(Command::new(PYTHON).args(["-m", "venv"]).arg(&dir));
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--no-index", "--disable-pip-version-check", "-q"])
        .arg(python_dir()));
    let out = run(Command::new(dir.join("bin/python")).current_dir("/").args([
        "-c",
        "import canary, importlib.resources as r; \
         print(canary.__file__, all(r.files('canary').joinpath(f).is_file() for f in ('py.typed', 'protocol.json')))",
    ]));
    let said = text(&out.stdout);
    println!("{said}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        said.contains("site-packages/canary/__init__.py True"),
        "{said}"
    );
}

#[test]
fn setup_names_each_failing_check() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let mut p = plan(&[500, 5000, 10000]);
    // Started by the test to see the running check; never judged.
    p.interval = Duration::from_secs(60);
    // A backend serves one service: "noplan" and "downcanary" get their
    // own, on 8083 to 8085; nothing listens on 8099.
    let extra: Vec<Backend> = [(8083, STABLE), (8084, CANARY), (8085, STABLE)]
        .into_iter()
        .map(|(port, label)| {
            Backend::spawn_with(&s.topo.host, host_addr(port), label, Behaviour::Line).unwrap()
        })
        .collect();
    let services = vec![
        s.service(0),
        tcp_service("noplan", host_addr(81), host_addr(8083), host_addr(8084), 0),
        tcp_service(
            "downcanary",
            host_addr(82),
            host_addr(8085),
            host_addr(8099),
            0,
        ),
    ];
    let c = tests_config(&s, services, &[(SERVICE, &p), ("downcanary", &p)]);
    s.write_config(&c);
    let d = s.start(&[]);
    let out = wait_within(
        spawn(&s, "daemon/test_setup_checks.py", "setup", &[]),
        PYTEST_LIMIT,
    )
    .unwrap();
    if !out.status.success() {
        println!("{}", d.log_text());
    }
    passed(out, 7);
    drop(extra);
}

/// `config_with(services)` with these rollout plans.
fn tests_config(
    s: &DaemonUnderTest,
    services: Vec<canary_userspace::ServiceSpec>,
    plans: &[(&str, &canary_userspace::controller::plan::RolloutPlan)],
) -> canary_userspace::config::Config {
    canary_userspace::config::Config {
        rollouts: plans
            .iter()
            .map(|(n, p)| (n.to_string(), (*p).clone()))
            .collect(),
        ..s.config_with(services)
    }
}

#[test]
fn execute_returns_the_outcome_with_the_decisions_canaryctl_shows() {
    let _serial = tests::root_scenario();
    for (error_every, expect) in [(0, "promoted"), (10, "rolled_back")] {
        let s: Arc<DaemonUnderTest> = setup(error_every, Duration::ZERO, Duration::ZERO);
        let d = start(&s, plan(&[500, 5000, 10000]));
        let load = Load::start(&s, 6);
        let out = wait_within(
            spawn(
                &s,
                "daemon/test_execute.py",
                "execute",
                &[("CANARY_EXPECT", expect)],
            ),
            PYTEST_LIMIT,
        )
        .unwrap();
        load.finish();
        println!("canary failing 1 in {error_every} (0: never): expecting {expect}");
        if !out.status.success() {
            println!("{}", d.log_text());
        }
        passed(out, 1);
    }
}

#[test]
fn execute_survives_a_kill_minus_nine_of_canaryd() {
    let _serial = tests::root_scenario();
    let s = healthy();
    let p = plan(&[500, 1000, 2500, 5000, 10000]);
    s.write_config(&config(&s, p, 0));
    let mut d = s.start(&[]);
    let load = Load::start(&s, 6);
    let mark = s.dirs.root.join("first-decision");
    let child = spawn(
        &s,
        "daemon/test_restart.py",
        "restart",
        &[("CANARY_MARK", mark.to_str().unwrap())],
    );
    wait_until(
        Duration::from_secs(60),
        "pytest sees the rollout's first decision",
        || d.log_text(),
        || mark.exists(),
    );
    d.signal(libc::SIGKILL).unwrap();
    // Scenario timing: canaryd stays gone over several of the client's polls.
    std::thread::sleep(Duration::from_secs(1));
    let d = s.start(&[]);
    let out = wait_within(child, PYTEST_LIMIT).unwrap();
    load.finish();
    if !out.status.success() {
        println!("{}", d.log_text());
    }
    passed(out, 1);
}
