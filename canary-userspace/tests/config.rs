//! The config file: valid fixtures parse, each invalid fixture fails with the
//! error its header names, and all errors of a file come back at once.
//!
//! Invalid fixtures start with `# expect: <field path>` and optionally
//! `# message: <substring>`; add a file to add a case.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use canary_userspace::{
    Affinity, Hook, Protocol,
    config::{
        self, Config, ConfigError, ConfigErrors, DEFAULT_BPFFS, DEFAULT_METRICS_LISTEN,
        DEFAULT_SOCKET, DEFAULT_STATE_DIR, FleetConfig, Weight, parse_duration,
    },
    controller::plan::{Mode, OnRollback, RolloutPlan},
    model::{grpc_code::GrpcCodes, kinds::AppProtocol},
};

/// The host the fixtures are written for: only these interfaces exist.
fn test_interfaces(name: &str) -> bool {
    name == "eth0" || name == "veth-test"
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn parse_fixture(path: &Path) -> Result<Config, ConfigErrors> {
    let text = fs::read_to_string(path).unwrap();
    config::parse(&text, &path.display().to_string(), &test_interfaces)
}

fn valid(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs/valid")
        .join(name);
    parse_fixture(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Weights as basis points, to compare with literals.
fn bp(weights: &[Weight]) -> Vec<u16> {
    weights.iter().map(|w| w.bp()).collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn every_valid_fixture_parses() {
    let files = fixtures("valid");
    assert!(files.len() >= 3, "only {} valid fixtures", files.len());
    for path in files {
        if let Err(e) = parse_fixture(&path) {
            panic!("{} should parse:\n{e}", path.display());
        }
    }
}

#[test]
fn an_interface_table_sets_its_hook_and_a_name_keeps_xdp() {
    let config = valid("interface_hooks.toml");
    assert_eq!(config.daemon.interfaces, ["eth0", "veth-test"]);
    assert_eq!(config.daemon.hook("eth0"), Hook::Xdp);
    assert_eq!(config.daemon.hook("veth-test"), Hook::Tc);
    // Only interfaces off the default are listed.
    assert_eq!(config.daemon.hooks.len(), 1);
    assert_eq!(valid("ipv4_tcp.toml").daemon.hooks.len(), 0);
}

#[test]
fn ipv4_tcp_fixture_has_its_values() {
    let config = valid("ipv4_tcp.toml");
    assert_eq!(config.daemon.interfaces, ["eth0", "veth-test"]);
    assert_eq!(config.daemon.log_level, log::LevelFilter::Debug);
    assert_eq!(config.daemon.flow_table_size, 131_072);
    assert_eq!(config.daemon.udp_idle_timeout, Duration::from_secs(120));
    assert_eq!(config.services.len(), 2);
    let sentiment = &config.services[0];
    assert_eq!(sentiment.name, "sentiment");
    assert_eq!(sentiment.vip, addr("198.18.0.1:80"));
    assert_eq!(sentiment.protocol, Protocol::Tcp);
    assert_eq!(sentiment.affinity, Affinity::Client);
    assert_eq!(
        sentiment.stable,
        [addr("198.18.0.1:8081"), addr("198.18.0.2:8081")]
    );
    assert_eq!(sentiment.canary, [addr("198.18.0.1:8082")]);
    assert_eq!(sentiment.weight.bp(), 1234);
    // An integer weight is a percent too.
    assert_eq!(config.services[1].weight.bp(), 500);
    assert_eq!(config.services[1].affinity, Affinity::Flow);
}

#[test]
fn ipv6_udp_fixture_has_its_values() {
    let config = valid("ipv6_udp_client.toml");
    assert_eq!(config.daemon.metrics_listen, addr("[::1]:9464"));
    assert_eq!(config.daemon.udp_idle_timeout, Duration::from_millis(500));
    let dns = &config.services[0];
    assert_eq!(dns.vip, addr("[2001:db8::1]:53"));
    assert_eq!(dns.protocol, Protocol::Udp);
    assert_eq!(dns.affinity, Affinity::Client);
    assert_eq!(dns.stable.len(), 2);
    assert_eq!(dns.canary, [addr("[2001:db8::20]:5353")]);
    assert_eq!(dns.weight.bp(), 1);
}

#[test]
fn minimal_fixture_takes_defaults() {
    let config = valid("minimal.toml");
    let daemon = &config.daemon;
    assert_eq!(daemon.socket, Path::new(DEFAULT_SOCKET));
    assert_eq!(daemon.metrics_listen, addr(DEFAULT_METRICS_LISTEN));
    assert_eq!(daemon.bpffs, Path::new(DEFAULT_BPFFS));
    assert_eq!(daemon.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert_eq!(daemon.log_level, log::LevelFilter::Info);
    assert_eq!(
        daemon.flow_table_size,
        canary_common::DEFAULT_FLOW_TABLE_SIZE
    );
    assert_eq!(
        daemon.udp_idle_timeout,
        Duration::from_nanos(canary_common::DEFAULT_UDP_IDLE_TIMEOUT_NS)
    );
    let api = &config.services[0];
    assert_eq!(api.protocol, Protocol::Tcp);
    assert_eq!(api.affinity, Affinity::Flow);
    assert_eq!(api.app_protocol, AppProtocol::Auto);
    assert_eq!(api.weight.bp(), 0);
    assert_eq!(config.fleet, None, "no [fleet]: a single host");
}

/// Every word reads as itself on TCP; UDP takes `auto` and `none` (the
/// invalid fixtures refuse `http` and `h2c` there).
#[test]
fn app_protocol_reads_each_word_and_defaults_to_auto() {
    let service = |protocol: &str, app: Option<&str>| {
        let app = app.map_or(String::new(), |a| format!("app_protocol = {a:?}"));
        let text = format!(
            r#"
[daemon]
interfaces = ["eth0"]

[[service]]
name = "model"
listen = "198.18.0.1:80"
protocol = "{protocol}"
{app}
stable = ["198.18.0.1:8081"]
canary = ["198.18.0.1:8082"]
"#
        );
        config::parse(&text, "app.toml", &test_interfaces).map(|c| c.services[0].app_protocol)
    };
    for (word, want) in [
        ("auto", AppProtocol::Auto),
        ("http", AppProtocol::Http),
        ("h2c", AppProtocol::H2c),
        ("none", AppProtocol::None),
    ] {
        assert_eq!(service("tcp", Some(word)).unwrap(), want, "{word}");
    }
    assert_eq!(service("tcp", None).unwrap(), AppProtocol::Auto);
    assert_eq!(service("udp", None).unwrap(), AppProtocol::Auto);
    assert_eq!(service("udp", Some("auto")).unwrap(), AppProtocol::Auto);
    assert_eq!(service("udp", Some("none")).unwrap(), AppProtocol::None);
    // The words are lower case, as every other word in the file.
    let e = service("tcp", Some("H2C")).unwrap_err().to_string();
    assert!(
        e.contains("app.toml: service[0].app_protocol: \"H2C\" is not a valid app_protocol"),
        "{e}"
    );
}

#[test]
fn zero_services_is_allowed() {
    assert!(valid("no_services.toml").services.is_empty());
}

/// The `# expect:` field and optional `# message:` substring of a fixture.
fn expectation(path: &Path, text: &str) -> (String, Option<String>) {
    let mut lines = text.lines();
    let field = lines
        .next()
        .and_then(|line| line.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: <field>`", path.display()));
    let message = lines
        .next()
        .and_then(|line| line.strip_prefix("# message:"))
        .map(|m| m.trim().to_owned());
    (field.trim().to_owned(), message)
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_error() {
    let files = fixtures("invalid");
    assert!(files.len() >= 24, "only {} invalid fixtures", files.len());
    // Every fixture is checked before failing, so one run shows all misses.
    let mut misses = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let (field, message) = expectation(&path, &text);
        let file = path.display().to_string();
        let errors = match config::parse(&text, &file, &test_interfaces) {
            Ok(config) => {
                misses.push(format!("{file} should fail, but parsed:\n{config:#?}"));
                continue;
            }
            Err(errors) => errors,
        };
        let found = errors
            .0
            .iter()
            .any(|e| e.field == field && message.as_deref().is_none_or(|m| e.message.contains(m)));
        // One defect per fixture, so exactly one error: a second one would
        // mean the fixture, or the checks, say more than intended.
        if !found || errors.0.len() != 1 {
            misses.push(format!(
                "{file}: expected one error at {field:?} containing {message:?}; got:\n{errors}"
            ));
        }
        for error in &errors.0 {
            if !error.to_string().starts_with(&format!("{file}: ")) {
                misses.push(format!("does not start with the file name: {error}"));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n\n"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = r#"
[daemon]
interfaces = ["eth0", "eth9"]

[[service]]
name = "sentiment"
listen = "198.18.0.1:80"
protocol = "tcp"
stable = ["198.18.0.1:8081"]
canary = ["198.18.0.1:8082"]
weight = 150

[[service]]
name = "search"
listen = "198.18.0.2:80"
stable = ["198.18.0.2:8081"]
canary = ["198.18.0.300:8082"]
"#;
    let errors = config::parse(text, "canary.toml", &test_interfaces).unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "daemon.interfaces[1]",
            "service[0].weight",
            "service[1].canary[0]"
        ],
        "{errors}"
    );
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(
        shown.contains(
            r#"canary.toml: service[1].canary[0]: "198.18.0.300:8082" is not an address: "#
        ),
        "{shown}"
    );
}

#[test]
fn durations_parse() {
    for (text, duration) in [
        ("500ms", Duration::from_millis(500)),
        ("30s", Duration::from_secs(30)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("0s", Duration::ZERO),
    ] {
        assert_eq!(parse_duration(text), Ok(duration), "{text}");
    }
}

#[test]
fn durations_reject_other_forms() {
    for (text, why) in [
        ("", "does not start with an integer"),
        ("s", "does not start with an integer"),
        ("30", "the unit is missing"),
        ("1.5s", r#"".5s" is not a unit"#),
        ("30 s", r#"" s" is not a unit"#),
        ("-1s", "does not start with an integer"),
        ("1m30s", r#""m30s" is not a unit"#),
        ("10d", r#""d" is not a unit"#),
        ("99999999999999999999s", "too large"),
        ("9999999999999999h", "too large"),
    ] {
        let error = parse_duration(text).unwrap_err().to_string();
        assert!(error.contains(why), "{text:?}: {error}");
        assert!(error.contains(r#"e.g. "500ms", "30s", "2m""#), "{error}");
    }
}

#[test]
fn packaged_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/canary.toml");
    let text = fs::read_to_string(&path).unwrap();
    let config =
        config::parse(&text, "packaging/canary.toml", &|_| true).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.services.is_empty());
}

/// The commented `grpc_error_codes` line of packaging/canary.toml, written
/// in, reads as the default it claims to be.
#[test]
fn the_packaged_grpc_error_codes_line_is_the_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/canary.toml");
    let text = fs::read_to_string(&path).unwrap();
    let commented = "# grpc_error_codes = ";
    assert_eq!(text.matches(commented).count(), 1);
    let text = text.replace(commented, "grpc_error_codes = ");
    let config = config::parse(&text, "packaging/canary.toml", &|_| true).unwrap();
    assert_eq!(
        config.rollouts["sentiment"].grpc_error_codes,
        RolloutPlan::default().grpc_error_codes
    );
}

#[test]
fn load_reports_an_unreadable_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/no-such-file.toml");
    let errors = config::load(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let shown = errors.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read", path.display())),
        "{shown}"
    );
}

#[test]
fn load_checks_interfaces_on_this_host() {
    let path = std::env::temp_dir().join(format!("canary-config-test-{}.toml", std::process::id()));
    fs::write(&path, "[daemon]\ninterfaces = [\"canary-none0\"]\n").unwrap();
    let result = config::load(&path);
    fs::remove_file(&path).unwrap();
    let errors = result.unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].field, "daemon.interfaces[0]");
}

#[test]
fn interface_lookup_cannot_escape_sys_class_net() {
    // "/sys/class/net/.." exists; the name check must stop it first.
    assert!(!config::interface_exists(".."));
    assert!(!config::interface_exists("../net"));
    assert!(!config::interface_exists(""));
}

#[test]
fn rollout_fixture_has_its_values_and_defaults() {
    let c = valid("rollout.toml");
    let s = &c.rollouts["sentiment"];
    assert_eq!(bp(&s.steps), [500, 1000, 2500, 5000, 10000]);
    assert_eq!(s.interval, Duration::from_secs(30));
    assert_eq!(
        (
            s.min_requests,
            s.failed_checks_limit,
            s.min_passes,
            s.max_inconclusive
        ),
        (200, 2, 1, 5)
    );
    assert_eq!(s.max_step_duration, Some(Duration::from_secs(600)));
    assert_eq!(s.checks.max_error_rate, Some(0.01));
    assert_eq!(s.checks.max_p99_ms, Some(250.0));
    assert_eq!(s.checks.error_margin, 0.005);
    assert_eq!(s.prometheus.as_deref(), Some("http://127.0.0.1:9090"));
    assert_eq!(
        s.grpc_error_codes.names(),
        ["RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE"],
        "names in any case, and numbers"
    );
    assert_eq!(s.gates[0].name, "accuracy");
    assert_eq!((s.gates[0].min, s.gates[0].max), (Some(0.92), None));
    let r = &c.rollouts["ranker"];
    assert_eq!(
        bp(&r.steps),
        [2000, 4000, 6000, 8000, 10000],
        "step = 20, max = 100"
    );
    assert_eq!(r.mode, canary_userspace::model::kinds::Mode::DryRun);
    assert_eq!(
        r.on_rollback,
        canary_userspace::model::kinds::OnRollback::Reset
    );
    assert_eq!(
        (r.interval, r.min_requests, r.alpha, r.checks.error_margin),
        (Duration::from_secs(30), 200, 0.05, 0.01),
        "defaults"
    );
    assert_eq!(r.max_step_duration, None, "no limit unless given");
    assert_eq!(r.grpc_error_codes, GrpcCodes::DEFAULT);
    // Written back, it reads the same.
    let again = config::parse(&c.to_toml(), "rendered.toml", &test_interfaces).unwrap();
    assert_eq!(again, c);
}

/// A rollout with only its steps and one check: every other key takes
/// `RolloutPlan::default()`, and that is what packaging/canary.toml
/// documents.
#[test]
fn a_rollout_without_optional_keys_takes_the_plans_defaults() {
    let text = r#"
[daemon]
interfaces = ["eth0"]

[[service]]
name = "model"
listen = "198.18.0.1:80"
stable = ["198.18.0.1:8081"]
canary = ["198.18.0.1:8082"]

[service.rollout]
steps = [5, 100]
max_error_rate = 0.01
"#;
    let c = config::parse(text, "minimal.toml", &test_interfaces).unwrap();
    let mut want = RolloutPlan {
        steps: vec![Weight::from_bp(500).unwrap(), Weight::FULL],
        ..RolloutPlan::default()
    };
    want.checks.max_error_rate = Some(0.01);
    assert_eq!(c.rollouts["model"], want);
    let d = RolloutPlan::default();
    assert_eq!(
        (
            d.interval,
            d.min_requests,
            d.failed_checks_limit,
            d.consecutive_failures,
            d.min_passes,
            d.max_inconclusive,
            d.max_step_duration,
        ),
        (Duration::from_secs(30), 200, 2, 0, 1, 5, None)
    );
    assert_eq!((d.mode, d.on_rollback), (Mode::Enforce, OnRollback::Drain));
    assert_eq!(
        (d.checks.error_margin, d.checks.p99_margin_ms, d.alpha),
        (0.01, 5.0, 0.05)
    );
    assert_eq!(
        d.grpc_error_codes.names(),
        [
            "UNKNOWN",
            "DEADLINE_EXCEEDED",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS"
        ]
    );
}

/// An empty list is a choice: only `:status` 5xx and stream resets count.
#[test]
fn an_empty_grpc_error_codes_counts_no_grpc_status() {
    let text = r#"
[daemon]
interfaces = ["eth0"]

[[service]]
name = "model"
listen = "198.18.0.1:80"
stable = ["198.18.0.1:8081"]
canary = ["198.18.0.1:8082"]

[service.rollout]
steps = [5, 100]
max_error_rate = 0.01
grpc_error_codes = []
"#;
    let c = config::parse(text, "empty.toml", &test_interfaces).unwrap();
    assert_eq!(c.rollouts["model"].grpc_error_codes, GrpcCodes::EMPTY);
    let again = config::parse(&c.to_toml(), "rendered.toml", &test_interfaces).unwrap();
    assert_eq!(again, c);
}

/// `weight = "5%"` is 5 %, as `canaryctl set-weight S 5%` is.
#[test]
fn a_weight_with_a_percent_sign_reads_as_that_percent() {
    assert_eq!(
        valid("weight_percent_sign.toml").services[0].weight.bp(),
        500
    );
}

/// A VIP that is not an address of the host and a weight below 1 % are
/// valid, but each gets a warning naming the file and field.
#[test]
fn warnings_name_a_vip_that_is_not_local_and_a_weight_below_one_percent() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/warnings.toml");
    let file = path.display().to_string();
    let config = parse_fixture(&path).unwrap();
    let remote = |_| false;
    let lines: Vec<String> = config::warnings(&config, &file, &remote)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}: service[0].listen: 198.18.0.1 is not an address of this host: clients \
                 cannot reach it until it is added (e.g. `ip addr add 198.18.0.1/32 dev lo`, or \
                 by keepalived); canaryd serves it once it is"
            ),
            format!(
                "{file}: service[0].weight: 0.05% (1 in 2000 new flows); did you mean 5? \
                 The weight is a percent"
            ),
        ]
    );
    let local = |_| true;
    assert_eq!(config::warnings(&config, &file, &local).len(), 1);
}

#[test]
fn fleet_fixture_has_its_values() {
    let c = valid("fleet.toml");
    assert_eq!(
        c.fleet,
        Some(FleetConfig {
            etcd: vec![
                "http://198.18.200.1:2379".into(),
                "http://etcd-2.example:2379".into()
            ],
            name: "iris-prod".into(),
            host: "node-7.rack_2".into(),
            lease_ttl: Duration::from_secs(10),
            grace: Duration::from_secs(60),
            publish: Duration::from_millis(500),
        })
    );
    // Written back, it reads the same.
    let again = config::parse(&c.to_toml(), "rendered.toml", &test_interfaces).unwrap();
    assert_eq!(again, c);
}

/// This machine's name from uname(2): the kernel value behind
/// /proc/sys/kernel/hostname, which the default reads, read another way.
fn uname_nodename() -> String {
    // SAFETY: utsname is plain C arrays; all zeros is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) fills the struct we own.
    assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
    // SAFETY: the kernel NUL-terminates nodename within the array.
    let name = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) };
    name.to_str().unwrap().to_owned()
}

#[test]
fn a_fleet_with_only_etcd_and_name_takes_the_defaults() {
    let text = r#"
[daemon]
interfaces = ["eth0"]

[fleet]
etcd = ["http://198.18.200.1:2379"]
name = "iris"
"#;
    let c = config::parse(text, "fleet.toml", &test_interfaces).unwrap();
    assert_eq!(
        c.fleet,
        Some(FleetConfig {
            etcd: vec!["http://198.18.200.1:2379".into()],
            name: "iris".into(),
            host: uname_nodename(),
            lease_ttl: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            publish: Duration::from_secs(1),
        })
    );
}

/// Each `fleet_*` invalid fixture fails with one error, at its field, with
/// the whole message of its header: the texts a user reads are pinned
/// here, not just a part of them.
#[test]
fn fleet_errors_name_their_field_and_say_exactly_why() {
    let files: Vec<PathBuf> = fixtures("invalid")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("fleet_")
        })
        .collect();
    assert!(files.len() >= 13, "only {} fleet fixtures", files.len());
    let mut misses = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let (field, message) = expectation(&path, &text);
        let message = message.unwrap_or_else(|| panic!("{}: no # message:", path.display()));
        let file = path.display().to_string();
        let want = [ConfigError {
            file: file.clone(),
            field,
            message,
        }];
        match config::parse(&text, &file, &test_interfaces) {
            Err(errors) if errors.0 == want => {}
            Err(errors) => misses.push(format!("{file}: want\n{want:?}\ngot\n{:?}", errors.0)),
            Ok(_) => misses.push(format!("{file}: parsed")),
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n\n"));
}

/// A wrong lease_ttl is reported once; publish still has its own floor.
#[test]
fn a_wrong_lease_ttl_leaves_publish_its_floor() {
    let text = r#"
[daemon]
interfaces = ["eth0"]

[fleet]
etcd = ["http://198.18.200.1:2379"]
name = "iris"
lease_ttl = "1s"
publish = "50ms"
"#;
    let errors = config::parse(text, "fleet.toml", &test_interfaces).unwrap_err();
    let found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "fleet.lease_ttl",
                "1s is not a whole number of seconds of at least 2s (etcd's leases are whole \
                 seconds, and it grants none shorter)"
            ),
            ("fleet.publish", "50ms must be at least 100ms"),
        ]
    );
}
