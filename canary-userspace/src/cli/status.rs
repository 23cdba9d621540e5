//! `canaryctl status` as text: by default a table that fits `WIDTH`
//! columns (a terminal split in two, a ticket, a chat message), with
//! `wide` every counter and every backend. Fields a newer daemon adds are
//! ignored here and shown by `--json`.

use std::fmt::Write;

use crate::api::{RolloutLine, ServiceStatus, Status, VersionStatus, WeightSource};

/// Columns the default table fits in.
pub const WIDTH: usize = 100;

/// Verdicts of ordinary traffic; the others are worth a look when nonzero.
const NORMAL: [&str; 5] = [
    "pass_not_ip",
    "pass_not_service",
    "translated",
    "translated_ipv4_options",
    "translated_vlan",
];

/// A service the daemon does not have; the message lists the ones it has.
#[derive(Debug, thiserror::Error)]
#[error("unknown service {name:?}; this daemon has: {}", if known.is_empty() { "no services".to_owned() } else { known.join(", ") })]
pub struct UnknownService {
    pub name: String,
    pub known: Vec<String>,
}

/// `status` with only the service `name`.
pub fn only(mut s: Status, name: &str) -> Result<Status, UnknownService> {
    if !s.services.iter().any(|v| v.name == name) {
        return Err(UnknownService {
            name: name.to_owned(),
            known: s.services.iter().map(|v| v.name.clone()).collect(),
        });
    }
    s.services.retain(|v| v.name == name);
    Ok(s)
}

pub fn render(s: &Status, wide: bool) -> String {
    let mut out = String::new();
    let ifaces: Vec<String> = s
        .daemon
        .interfaces
        .iter()
        .map(|i| {
            let mut t = match (&i.problem, i.reattached) {
                (Some(problem), _) if !i.attached => {
                    format!("{} (NOT ATTACHED: {problem})", i.name)
                }
                (Some(problem), _) => {
                    format!("{} ({}, PROBLEM: {problem})", i.name, i.ingress())
                }
                (_, 0) => format!("{} ({})", i.name, i.ingress()),
                (_, n) => format!("{} ({}, re-attached {n}x)", i.name, i.ingress()),
            };
            if wide && i.ifindex != 0 {
                t.push_str(&format!(" ifindex {}", i.ifindex));
            }
            t
        })
        .collect();
    let _ = writeln!(
        out,
        "canaryd {}  pid {}  api {}",
        s.daemon.version, s.daemon.pid, s.daemon.api_version
    );
    out.push_str(&wrap("interfaces ", &ifaces, ", ", WIDTH));
    let _ = writeln!(out, "config {}", s.daemon.config);
    if s.services.is_empty() {
        out.push_str("\nno services configured\n");
    }
    for svc in &s.services {
        service(&mut out, svc, wide);
    }
    if !s.services.is_empty() {
        out.push_str(
            "\nSince the counters started. ERRORS: (5xx + backend resets + refused) / (requests + refused);\n\
             HTTP/2: each stream a request, its resets and failing grpc-status errors too.\n\
             P50/P99: time to first byte, interpolated within buckets 12.5 % wide.\n",
        );
        if !wide {
            out.push_str("Packets, bytes, closed flows, rehashes, every backend: -o wide, --json or /metrics.\n");
        }
    }
    let odd: Vec<String> = s
        .verdicts
        .ingress
        .iter()
        .filter(|(n, c)| **c > 0 && !NORMAL.contains(&n.as_str()))
        .map(|(n, c)| format!("{n}={c}"))
        .collect();
    if !odd.is_empty() {
        out.push('\n');
        out.push_str(&wrap("odd packets (ingress): ", &odd, "  ", WIDTH));
    }
    out
}

/// `canary weight 25.00% (runtime; config 5.00%)` or `canary weight 5.00% (config)`.
pub fn weight(svc: &ServiceStatus) -> String {
    match (svc.weight_source, svc.config_weight) {
        (WeightSource::Runtime, Some(c)) => {
            format!("canary weight {:.2} (runtime; config {c:.2})", svc.weight)
        }
        (source, _) => format!("canary weight {:.2} ({source})", svc.weight),
    }
}

/// `  rollout running  step 2/5  look 7  <the last decision's reason>`.
pub fn rollout_line(r: &RolloutLine) -> String {
    let mut line = format!(
        "  rollout {}  step {}/{}  look {}",
        r.phase.name(),
        r.step + 1,
        r.steps,
        r.looks
    );
    if !r.reason.is_empty() {
        line.push_str("  ");
        line.push_str(&r.reason);
    }
    line
}

/// `line` in at most `width` characters, the cut marked with `...`.
fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let kept: String = line.chars().take(width.saturating_sub(3)).collect();
    format!("{kept}...")
}

fn service(out: &mut String, svc: &ServiceStatus, wide: bool) {
    let _ = writeln!(
        out,
        "\n{}  {}/{}  affinity {}  {}",
        svc.name,
        svc.listen,
        svc.protocol,
        svc.affinity,
        weight(svc)
    );
    if let Some(problem) = &svc.problem {
        let _ = writeln!(out, "  PROBLEM: {problem}");
    }
    if let Some(r) = &svc.rollout {
        let line = rollout_line(r);
        let _ = writeln!(out, "{}", if wide { line } else { cut(&line, WIDTH) });
    }
    if wide {
        let _ = writeln!(
            out,
            "  {:<7}  {:>9}  {:>7}  {:>8}  {:>8}  {:>9}  {:>9}  {:>7}  {:>7}  {:>10}  {:>12}  {:>10}  {:>12}  BACKENDS",
            "VERSION",
            "REQUESTS",
            "ERRORS",
            "P50",
            "P99",
            "NEW FLOWS",
            "CLOSED",
            "ACTIVE",
            "REHASH",
            "PKTS IN",
            "BYTES IN",
            "PKTS OUT",
            "BYTES OUT"
        );
    } else {
        let _ = writeln!(
            out,
            "  {:<7}  {:>8}  {:>7}  {:>7}  {:>7}  {:>9}  {:>6}  BACKENDS",
            "VERSION", "REQUESTS", "ERRORS", "P50", "P99", "NEW FLOWS", "ACTIVE"
        );
    }
    for (name, v) in [("stable", &svc.stable), ("canary", &svc.canary)] {
        row(out, name, v, wide);
    }
}

fn row(out: &mut String, name: &str, v: &VersionStatus, wide: bool) {
    let sig = &v.signals;
    let rate = sig
        .error_rate()
        .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    let quantile = |q| sig.latency.quantile(q).map_or("-".to_owned(), duration);
    if wide {
        let _ = writeln!(
            out,
            "  {:<7}  {:>9}  {:>7}  {:>8}  {:>8}  {:>9}  {:>9}  {:>7}  {:>7}  {:>10}  {:>12}  {:>10}  {:>12}  {}",
            name,
            sig.requests,
            rate,
            quantile(0.5),
            quantile(0.99),
            v.new_flows,
            v.closed_flows,
            v.active_flows,
            v.rehashes,
            v.packets_in,
            v.bytes_in,
            v.packets_out,
            v.bytes_out,
            v.backends.join(" ")
        );
        return;
    }
    let start = format!(
        "  {:<7}  {:>8}  {:>7}  {:>7}  {:>7}  {:>9}  {:>6}  ",
        name,
        sig.requests,
        rate,
        quantile(0.5),
        quantile(0.99),
        v.new_flows,
        v.active_flows,
    );
    // The first backend and how many more: the rest is in -o wide.
    let backends = match v.backends.as_slice() {
        [] => "-".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    let room = WIDTH.saturating_sub(start.chars().count()).max(8);
    let _ = writeln!(out, "{start}{}", truncate(&backends, room));
}

/// `s` cut to `max` characters, the cut marked with `…`.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `prefix` then `items` joined by `sep`, on as many lines of at most
/// `width` characters as it takes (an item longer than a line gets its own).
fn wrap(prefix: &str, items: &[String], sep: &str, width: usize) -> String {
    let indent = " ".repeat(2);
    let mut out = String::new();
    let mut line = prefix.to_owned();
    let mut fresh = true;
    for item in items {
        let add = if fresh {
            item.clone()
        } else {
            format!("{sep}{item}")
        };
        if !fresh && line.chars().count() + add.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{indent}{item}");
        } else {
            line.push_str(&add);
        }
        fresh = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// A latency in the unit that keeps it short: µs, ms or s.
fn duration(d: std::time::Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{DaemonStatus, InterfaceStatus, VerdictCounts},
        model::kinds::{Affinity, Hook, Protocol, XdpMode},
    };

    fn version(backends: &[&str], n: u64) -> VersionStatus {
        VersionStatus {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            packets_in: n * 10,
            bytes_in: n * 1500,
            packets_out: n * 9,
            bytes_out: n * 4000,
            new_flows: n,
            closed_flows: n - 3,
            active_flows: 3,
            rehashes: 1,
            signals: Default::default(),
        }
    }

    fn svc(name: &str, source: WeightSource) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            listen: "198.18.0.1:80".into(),
            protocol: Protocol::Tcp,
            affinity: Affinity::Client,
            weight: "12.5".parse().unwrap(),
            weight_source: source,
            config_weight: Some("5".parse().unwrap()),
            stable: version(&["198.18.0.1:8081", "198.18.0.1:8091"], 123_456_789),
            canary: version(&["[2001:db8:1234:5678::1]:8082"], 4_567_890),
            problem: None,
            rollout: None,
        }
    }

    /// A typical host: a long config path, two services, a busy counter.
    fn status() -> Status {
        let mut ingress = std::collections::BTreeMap::new();
        ingress.insert("translated".to_owned(), 5);
        ingress.insert("drop_fragment".to_owned(), 2);
        Status {
            daemon: DaemonStatus {
                version: "0.1.0".into(),
                api_version: 1,
                pid: 4242,
                config: "/etc/canary/canary.toml".into(),
                interfaces: vec![InterfaceStatus::new(
                    "eth0",
                    Hook::Xdp,
                    Some(XdpMode::Driver),
                    2,
                )],
            },
            services: vec![
                svc("sentiment", WeightSource::Runtime),
                svc("ranker", WeightSource::Config),
            ],
            verdicts: VerdictCounts {
                ingress,
                egress: Default::default(),
            },
        }
    }

    #[test]
    fn the_default_table_fits_100_columns() {
        let text = render(&status(), false);
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{} wide: {line}", line.len());
        }
        assert!(text.contains("198.18.0.1:8081 +1"), "{text}");
        assert!(!text.contains("198.18.0.1:8091"), "{text}");
        assert!(
            text.contains("odd packets (ingress): drop_fragment=2"),
            "{text}"
        );
    }

    #[test]
    fn wide_shows_every_counter_and_backend() {
        let text = render(&status(), true);
        for want in [
            "REHASH",
            "BYTES OUT",
            "198.18.0.1:8081 198.18.0.1:8091",
            "[2001:db8:1234:5678::1]:8082",
            &(123_456_789u64 * 4000).to_string(),
            "ifindex 2",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    #[test]
    fn each_interface_says_its_hook() {
        let mut s = status();
        s.daemon
            .interfaces
            .push(InterfaceStatus::new("veth0", Hook::Tc, None, 3));
        let text = render(&s, false);
        assert!(
            text.contains("interfaces eth0 (xdp driver), veth0 (tc)"),
            "{text}"
        );
    }

    #[test]
    fn the_weight_says_where_it_comes_from() {
        let text = render(&status(), false);
        assert!(
            text.contains("sentiment  198.18.0.1:80/tcp  affinity client  canary weight 12.50% (runtime; config 5.00%)"),
            "{text}"
        );
        assert!(text.contains("weight 12.50% (config)"), "{text}");
    }

    #[test]
    fn a_rollout_is_one_line_cut_to_the_width_and_whole_in_json() {
        let mut s = status();
        s.services[0].rollout = Some(RolloutLine {
            phase: crate::model::rollout::Phase::RolledBack,
            step: 1,
            steps: 4,
            looks: 7,
            reason: "error_rate: canary 4.1 % (lower bound 2.9 %) is above the limit of 1 % \
                     at 99 % confidence; 3 of 3 failed checks"
                .into(),
        });
        let text = render(&s, false);
        let line = text
            .lines()
            .find(|l| l.starts_with("  rollout "))
            .unwrap_or_else(|| panic!("no rollout line: {text}"));
        assert!(
            line.starts_with("  rollout rolled back  step 2/4  look 7  error_rate: canary 4.1 %"),
            "{line}"
        );
        assert_eq!(line.chars().count(), WIDTH, "{line}");
        assert!(line.ends_with("..."), "{line}");
        assert!(render(&s, true).contains("3 of 3 failed checks"));
        // Only the service that has one shows a line.
        assert_eq!(text.matches("  rollout ").count(), 1, "{text}");
        let json = serde_json::to_value(&s.services[0]).unwrap();
        assert_eq!(
            json["rollout"],
            serde_json::json!({"phase": "rolled_back", "step": 1, "steps": 4, "looks": 7,
                               "reason": s.services[0].rollout.as_ref().unwrap().reason})
        );
        assert_eq!(
            serde_json::to_value(&s.services[1]).unwrap()["rollout"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn one_service_or_a_clear_error() {
        let one = only(status(), "ranker").unwrap();
        assert_eq!(one.services.len(), 1);
        let text = render(&one, false);
        assert!(
            text.contains("ranker") && !text.contains("sentiment"),
            "{text}"
        );
        let e = only(status(), "nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown service \"nope\"; this daemon has: sentiment, ranker"
        );
    }

    #[test]
    fn long_lists_wrap_within_the_width() {
        let items: Vec<String> = (0..40).map(|i| format!("veth{i} (xdp driver)")).collect();
        let text = wrap("interfaces ", &items, ", ", WIDTH);
        assert!(text.lines().count() > 1);
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
