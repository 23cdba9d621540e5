//! `canaryctl status`: one block per service, one row per version.

use canary_userspace::api::{Status, VersionStatus};

/// Verdicts of ordinary traffic; the others are worth a look when nonzero.
const NORMAL: [&str; 5] = [
    "pass_not_ip",
    "pass_not_service",
    "translated",
    "translated_ipv4_options",
    "translated_vlan",
];

pub fn print(s: Status) {
    let ifaces: Vec<String> = s
        .daemon
        .interfaces
        .iter()
        .map(|i| match (&i.problem, i.reattached) {
            (Some(problem), _) if !i.attached => {
                format!("{} (NOT ATTACHED: {problem})", i.name)
            }
            (Some(problem), _) => format!("{} (xdp {}, PROBLEM: {problem})", i.name, i.xdp),
            (_, 0) => format!("{} (xdp {})", i.name, i.xdp),
            (_, n) => format!("{} (xdp {}, re-attached {n}x)", i.name, i.xdp),
        })
        .collect();
    println!(
        "canaryd {} pid {}  config {}  interfaces {}",
        s.daemon.version,
        s.daemon.pid,
        s.daemon.config,
        ifaces.join(", ")
    );
    if s.services.is_empty() {
        println!("\nno services configured");
    }
    for svc in &s.services {
        println!(
            "\n{}  {}/{}  affinity {}  canary weight {:.2}%",
            svc.name, svc.listen, svc.protocol, svc.affinity, svc.weight_percent
        );
        if let Some(problem) = &svc.problem {
            println!("  PROBLEM: {problem}");
        }
        println!(
            "  {:<8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7} {:>6}  BACKENDS",
            "VERSION", "REQUESTS", "ERRORS", "P50", "P99", "NEW FLOWS", "ACTIVE", "REHASH"
        );
        for (name, v) in [("stable", &svc.stable), ("canary", &svc.canary)] {
            row(name, v);
        }
    }
    if !s.services.is_empty() {
        println!(
            "\nSince the counters started. ERRORS: (5xx + backend resets + refused) / (requests + refused).\n\
             P50/P99: time to first byte, interpolated within log2 buckets. Packets and bytes: --json or /metrics."
        );
    }
    let odd: Vec<String> = s
        .verdicts
        .ingress
        .iter()
        .filter(|(n, c)| **c > 0 && !NORMAL.contains(&n.as_str()))
        .map(|(n, c)| format!("{n}={c}"))
        .collect();
    if !odd.is_empty() {
        println!("\nodd packets (ingress): {}", odd.join("  "));
    }
}

fn row(name: &str, v: &VersionStatus) {
    let sig = &v.signals;
    let rate = sig
        .error_rate()
        .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    let quantile = |q| sig.latency.quantile(q).map_or("-".to_owned(), duration);
    println!(
        "  {:<8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7} {:>6}  {}",
        name,
        sig.requests,
        rate,
        quantile(0.5),
        quantile(0.99),
        v.new_flows,
        v.active_flows,
        v.rehashes,
        v.backends.join(" ")
    );
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
