//! canaryctl and canaryd as an SRE meets them: the real binaries, a real
//! daemon in a test namespace. Status of one service and of an unknown
//! one, the 100-column table, `--version`, completions, reload output
//! old -> new, the runtime-weight marker across a restart, JSON logs, a
//! closed pipe, and an older canaryctl's percent request.

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
};

use canary_userspace::model::weight::Weight;
use canary_userspace::{api::WeightSource, cli::status::WIDTH, config::Config};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use tests::bp;
use tests::kit::{DaemonUnderTest, host_addr as at, tcp_service, text};
use xtask::canaryd::Binaries;

/// `name` on `port` of the host address; its stable backend at port +
/// 8000, its canary at port + 8100.
fn service(name: &str, port: u16, weight_bp: u16) -> canary_userspace::ServiceSpec {
    tcp_service(name, at(port), at(port + 8000), at(port + 8100), weight_bp)
}

/// Backends for "model" (on :80); "other" (on :81) has none.
fn setup() -> DaemonUnderTest {
    DaemonUnderTest::builder("cli")
        .backend_ports(8080, 8180)
        .build()
}

/// "model" on :80 at `weight_bp`, "other" on :81 at 0.
fn config(s: &DaemonUnderTest, weight_bp: u16) -> Config {
    s.config_with(vec![
        service("model", 80, weight_bp),
        service("other", 81, 0),
    ])
}

/// `--version` needs neither root nor a daemon.
#[test]
fn version_names_each_binary() {
    let bins = Binaries::next_to_test().unwrap();
    let want = env!("CARGO_PKG_VERSION");
    for (bin, name) in [(&bins.canaryd, "canaryd"), (&bins.canaryctl, "canaryctl")] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success());
        assert_eq!(text(&out.stdout).trim(), format!("{name} {want}"));
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_know_the_subcommands() {
    let bins = Binaries::next_to_test().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(&bins.canaryctl)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for sub in ["status", "set-weight", "reload", "rollout", "watch"] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
}

#[test]
fn status_of_one_service_fits_100_columns_and_an_unknown_one_is_refused() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, 500));
    let d = s.start(&[]);

    let out = d.ctl(&["status"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout);
    assert!(all.contains("model") && all.contains("other"), "{all}");
    for line in all.lines() {
        assert!(line.chars().count() <= WIDTH, "{line}");
    }

    let out = d.ctl(&["status", "model"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let one = text(&out.stdout);
    assert!(
        one.contains("model  198.18.0.1:80/tcp  affinity flow  canary weight 5.00% (config)"),
        "{one}"
    );
    assert!(!one.contains("other"), "{one}");

    let out = d.ctl(&["status", "model", "-o", "wide"]).unwrap();
    let wide = text(&out.stdout);
    // Shown with --nocapture: the README's examples come from here.
    eprintln!("$ canaryctl status\n{all}\n$ canaryctl status model -o wide\n{wide}");
    assert!(
        wide.contains("REHASH") && wide.contains("BYTES OUT"),
        "{wide}"
    );

    let out = d.ctl(&["--json", "status", "model"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = v["data"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{v}");
    assert_eq!(services[0]["weight_source"], "config");
    assert_eq!(services[0]["weight_bp"], 500, "{v}");
    assert_eq!(services[0]["config_weight_bp"], 500, "{v}");
    // Deprecated, for older clients, until the next release.
    assert_eq!(services[0]["weight_percent"], 5.0, "{v}");
    assert_eq!(services[0]["config_weight_percent"], 5.0, "{v}");
    assert!(v["data"]["daemon"]["pid"].is_number(), "same shape: {v}");

    let out = d.ctl(&["status", "nope"]).unwrap();
    assert_eq!(out.status.code(), Some(4), "the unknown-service exit code");
    assert_eq!(
        text(&out.stderr).trim(),
        "canaryctl: canaryd refused: unknown service \"nope\"; this daemon has: model, other"
    );
    assert!(out.stdout.is_empty());
    let out = d.ctl(&["--json", "status", "nope"]).unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "unknown_service", "{v}");
}

/// A set-weight is marked as a runtime weight, still after a restart; a
/// reload that replaces it with an edited config weight says both, in
/// canaryctl's output and in canaryd's log.
#[test]
fn runtime_weights_are_marked_and_reload_says_old_to_new() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, 0));
    let mut d = s.start(&[]);
    let out = d.ctl(&["set-weight", "model", "25"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let marked = "weight 25.00% (runtime; config 0.00%)";
    let out = d.ctl(&["status", "model"]).unwrap();
    eprintln!("$ canaryctl status model\n{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(marked), "{}", text(&out.stdout));

    d.signal(libc::SIGTERM).unwrap();
    let mut d = s.start(&[]);
    let st = d.status().unwrap();
    assert_eq!(st.services[0].weight_source, WeightSource::Runtime);
    assert_eq!(st.services[0].weight, bp(2500));
    assert_eq!(st.services[0].config_weight, Some(Weight::ZERO));
    let out = d.ctl(&["status", "model"]).unwrap();
    assert!(text(&out.stdout).contains(marked), "{}", text(&out.stdout));
    assert!(
        d.log_text()
            .contains("service model: 198.18.0.1:80/tcp, affinity flow, stable 198.18.0.1:8080, canary 198.18.0.1:8180, weight 25.00% (runtime)"),
        "start-up logs each service:\n{}",
        d.log_text()
    );

    // The config's weight is edited: the config wins, and says so. A
    // backend added to "other" is listed too.
    let mut edited = config(&s, 1000);
    edited.services[1].canary.push(at(8182));
    s.write_config(&edited);
    let out = d.ctl(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    eprintln!("$ canaryctl reload\n{said}");
    assert_eq!(
        said,
        "reloaded: 0 added, 2 updated, 0 removed, 0 unchanged\n\
         \x20 ~ model: weight 25.00% (runtime) -> 10.00% (config)\n\
         \x20 ~ other: canary 198.18.0.1:8181 -> 198.18.0.1:8181 198.18.0.1:8182\n"
    );
    let log = d.log_text();
    eprintln!("canaryd's log:\n{log}");
    assert!(
        log.contains("reload: ~ model: weight 25.00% (runtime) -> 10.00% (config)"),
        "{log}"
    );
    assert!(
        !log.contains("ServiceSpec {") && !log.contains("Endpoint {"),
        "{log}"
    );
    let st = d.status().unwrap();
    assert_eq!(st.services[0].weight_source, WeightSource::Config);
    assert_eq!(st.services[0].weight, bp(1000));
    d.check_running().unwrap();
}

#[test]
fn json_log_lines_parse_one_object_each() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, 500));
    let mut d = s.start(&["--log-format", "json"]);
    d.signal(libc::SIGTERM).unwrap();
    let log = d.log_text();
    eprintln!("canaryd --log-format json:\n{log}");
    let mut services = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(v[key].is_string(), "{key} in {line}");
        }
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("service ") && m.contains("weight"))
        {
            services += 1;
        }
    }
    assert_eq!(services, 2, "one start-up line per service:\n{log}");
}

/// `canaryctl status | head -1`: the reader goes away before canaryctl
/// writes; canaryctl ends quietly (SIGPIPE, as any Unix tool), no panic.
#[test]
fn status_into_a_closed_pipe_is_quiet() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, 500));
    let d = s.start(&[]);
    for _ in 0..3 {
        let mut child = d
            .ctl_command(&["status", "-o", "wide"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{:?}",
            out.status
        );
    }
    let sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} status | head -1",
            d.canaryctl().display(),
            d.socket.display()
        ))
        .output()
        .unwrap();
    assert!(sh.status.success());
    assert!(
        text(&sh.stdout).starts_with("canaryd "),
        "{}",
        text(&sh.stdout)
    );
    assert!(sh.stderr.is_empty(), "{}", text(&sh.stderr));
}

/// One request line as a client of any version writes it, and the answer.
fn ask(socket: &Path, line: &str) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// For one release an older canaryctl's `percent` request is served, and
/// every answer keeps the percent fields it reads beside the basis
/// points; both weights or a weight out of range are refused.
#[test]
fn an_older_clients_percent_request_is_answered_with_both_fields() {
    let _serial = tests::root_scenario();
    let s = setup();
    s.write_config(&config(&s, 500));
    let mut d = s.start(&[]);
    let socket = s.dirs.socket();

    let v = ask(
        &socket,
        r#"{"command":"set-weight","service":"model","percent":12.5}"#,
    );
    assert_eq!(v["ok"], true, "{v}");
    let w = &v["data"];
    assert_eq!(
        (w["percent"].clone(), w["previous_percent"].clone()),
        (12.5.into(), 5.0.into()),
        "{v}"
    );
    assert_eq!(
        (w["weight_bp"].clone(), w["previous_weight_bp"].clone()),
        (1250.into(), 500.into()),
        "{v}"
    );
    let v = ask(&socket, r#"{"command":"status"}"#);
    let svc = &v["data"]["services"][0];
    assert_eq!(svc["weight_bp"], 1250, "{v}");
    assert_eq!(svc["weight_percent"], 12.5, "{v}");
    assert_eq!(svc["config_weight_bp"], 500, "{v}");
    assert_eq!(svc["config_weight_percent"], 5.0, "{v}");

    for (line, code, says) in [
        (
            r#"{"command":"set-weight","service":"model","percent":20,"weight_bp":2000}"#,
            "bad_request",
            "this request has both",
        ),
        (
            r#"{"command":"set-weight","service":"model"}"#,
            "bad_request",
            "set-weight needs weight_bp",
        ),
        (
            r#"{"command":"set-weight","service":"model","weight_bp":10001}"#,
            "invalid_weight",
            "weight_bp: a weight is 0 to 10000 basis points; found 10001",
        ),
        (
            r#"{"command":"set-weight","service":"model","percent":150}"#,
            "invalid_weight",
            "percent 150: weight must be a percent from 0 to 100",
        ),
    ] {
        let v = ask(&socket, line);
        assert_eq!(
            (v["ok"].clone(), v["code"].clone()),
            (false.into(), code.into()),
            "{line}: {v}"
        );
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{line}: {v}");
    }
    assert_eq!(d.status().unwrap().services[0].weight, bp(1250));
    d.check_running().unwrap();
}
