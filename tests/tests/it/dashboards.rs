//! packaging/'s Grafana dashboard and Prometheus alert rules: promtool
//! checks and unit-tests the rules, and every dashboard query runs against a
//! real Prometheus scraping the real canaryd, which splits real HTTP
//! connections and runs a rollout that rolls back.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use canary_userspace::{
    api::RolloutAction, config::Config, controller::plan::RolloutPlan, model::rollout::Phase,
};
use serde_json::Value;
use tests::{
    harness::SERVICE,
    kit::DaemonUnderTest,
    prometheus::Server,
    servers::{Behaviour, Http, HttpClient},
};
use xtask::canaryd::Canaryd;
/// What `$__rate_interval` becomes: Prometheus scrapes every second here.
const RATE_INTERVAL: &str = "30s";

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn dashboard() -> Value {
    let path = packaging().join("grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// (panel title, expr) of every target of every panel, rows included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                out.push((title.clone(), expr.to_owned()));
            }
            walk(p["panels"].as_array().map_or(&[], |v| v), out);
        }
    }
    let mut out = vec![];
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// A panel's query as Grafana would send it for `service`.
fn expand(expr: &str, service: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("${service}", service)
        .replace("$service", service)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(packaging())
        .output()
        .expect("running promtool (cargo xtask setup installs the prometheus package)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

/// The rules load, and each alert fires and stays silent in its unit test.
#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert of the rules has a unit test.
    let rules = std::fs::read_to_string(packaging().join("alerts.yml")).unwrap();
    let unit = std::fs::read_to_string(packaging().join("alerts_test.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                unit.contains(&format!("alertname: {name}")),
                "{name} has no test in alerts_test.yml"
            );
        }
    }
}

/// The dashboard's shape: the datasource and service variables, every
/// panel on `${DS_PROMETHEUS}`, every per-service query filtered by
/// `$service`.
#[test]
fn dashboard_uses_the_datasource_and_service_variables() {
    let d = dashboard();
    let vars: Vec<(&str, &str)> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["type"].as_str().unwrap()))
        .collect();
    assert!(vars.contains(&("DS_PROMETHEUS", "datasource")), "{vars:?}");
    assert!(vars.contains(&("service", "query")), "{vars:?}");
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        }
    }
    let queries = panel_queries(&d);
    assert!(queries.len() >= 15, "{} queries", queries.len());
    for (title, expr) in &queries {
        let per_host = ["canary_verdicts_total", "canary_interface_", "up{"]
            .iter()
            .any(|m| expr.contains(m));
        assert!(
            per_host || expr.contains("service=\"$service\""),
            "panel {title:?}: {expr} is not filtered by $service"
        );
    }
}

/// A quick plan (steps in basis points: 20 %, 50 %) that rolls back: the
/// canary answers 500 to every 4th request, the check allows 2 %.
fn plan() -> RolloutPlan {
    let mut p = RolloutPlan {
        steps: [2000, 5000].map(tests::bp).to_vec(),
        interval: Duration::from_millis(1500),
        min_requests: 20,
        failed_checks_limit: 1,
        max_inconclusive: 10,
        ..Default::default()
    };
    p.checks.max_error_rate = Some(0.02);
    p
}

/// Every panel query of the dashboard answers with at least one series
/// from a real Prometheus scraping canaryd, after real HTTP connections
/// through the VIP and a rollout that rolled back (so the rollout panels
/// have data too).
#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let _serial = tests::root_scenario();
    let started = Instant::now();
    let queries = panel_queries(&dashboard());

    let s = DaemonUnderTest::builder("dashboards")
        .behaviour([
            Behaviour::Http(Http::new(0, Duration::ZERO)),
            Behaviour::Http(Http::new(4, Duration::ZERO)),
        ])
        .build();
    let (topo, vip) = (&s.topo, s.vip);
    s.write_config(&Config {
        rollouts: [(SERVICE.to_owned(), plan())].into(),
        fleet: None,
        ..s.config(0)
    });
    let d = s.start(&[]);
    let prom = s.prometheus();

    // Two clients, a new connection every 10 requests, until told to stop
    // (bounded in time).
    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let answers = thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(mut c) = HttpClient::connect(&topo.client, vip) else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    for _ in 0..10 {
                        if c.get().is_err() {
                            break;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            });
        }
        let answers = scrape_rollback_and_query(&d, &prom, &queries);
        stop.store(true, Ordering::Relaxed);
        answers
    });
    let mut empty = vec![];
    for (title, promql, series) in &answers {
        match series {
            Ok(s) => {
                let shown: Vec<String> = s
                    .iter()
                    .map(|s| format!("{:?}={}", s.metric, s.value.1))
                    .take(3)
                    .collect();
                println!("{title}: {} series {shown:?}\n    {promql}", s.len());
                if s.is_empty() {
                    empty.push(format!("{title}: {promql}"));
                }
            }
            Err(e) => empty.push(format!("{title}: {e:#}")),
        }
    }
    println!(
        "{} answers through the VIP, {} queries, {:?} in all",
        answered.load(Ordering::Relaxed),
        answers.len(),
        started.elapsed()
    );
    assert!(
        empty.is_empty(),
        "queries without series:\n{}\n{}",
        empty.join("\n"),
        d.log_text()
    );
    // The rollback reached Prometheus, as the CanaryRolledBack alert needs.
    let rollbacks = prom
        .query_series("increase(canary_rollbacks_total{service=\"model\"}[10m]) > 0")
        .unwrap();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
}

type Answer<'q> = (
    &'q str,
    String,
    anyhow::Result<Vec<tests::prometheus::Series>>,
);

/// Waits until Prometheus has the service's series, runs a rollout to its
/// rollback, then runs every query until each answers with series and the
/// rollback is scraped (bounded); the last answers.
fn scrape_rollback_and_query<'q>(
    d: &Canaryd,
    prom: &Server,
    queries: &'q [(String, String)],
) -> Vec<Answer<'q>> {
    // Prometheus has scraped the rollout's series at 0 rollbacks before the
    // rollout starts; then the rollout runs and rolls back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom
        .query_series("canary_new_flows_total{service=\"model\"}")
        .map_or(true, |s| s.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "never scraped:\n{}",
            d.log_text()
        );
        thread::sleep(Duration::from_millis(250));
    }
    let client = d.client();
    client.rollout(SERVICE, RolloutAction::Start).unwrap();
    let report = client
        .wait_for_rollout(
            SERVICE,
            Duration::from_millis(200),
            Duration::from_secs(25),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    assert_eq!(report.phase, Phase::RolledBack, "{report:?}");

    // Every query answers with series once Prometheus has scraped the
    // rollback (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answers: Vec<_> = queries
            .iter()
            .map(|(title, expr)| {
                let promql = expand(expr, SERVICE);
                assert!(!promql.contains('$'), "{title}: {promql} keeps a variable");
                let series = prom.query_series(&promql);
                (title.as_str(), promql, series)
            })
            .collect();
        let all = answers
            .iter()
            .all(|(_, _, s)| s.as_ref().is_ok_and(|s| !s.is_empty()));
        let rolled_back = prom
            .query_series("canary_rollbacks_total{service=\"model\"} >= 1")
            .is_ok_and(|s| !s.is_empty());
        if (all && rolled_back) || Instant::now() > deadline {
            break answers;
        }
        thread::sleep(Duration::from_millis(500));
    }
}
