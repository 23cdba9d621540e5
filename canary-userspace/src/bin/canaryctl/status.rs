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
        .map(|i| format!("{} (xdp {})", i.name, i.xdp))
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
        println!(
            "  {:<8} {:>10} {:>10} {:>8} {:>12} {:>12} {:>14} {:>14}  BACKENDS",
            "VERSION",
            "NEW FLOWS",
            "ACTIVE",
            "REHASH",
            "PKTS IN",
            "PKTS OUT",
            "BYTES IN",
            "BYTES OUT"
        );
        for (name, v) in [("stable", &svc.stable), ("canary", &svc.canary)] {
            row(name, v);
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
        println!("\nodd packets (ingress): {}", odd.join("  "));
    }
}

fn row(name: &str, v: &VersionStatus) {
    println!(
        "  {:<8} {:>10} {:>10} {:>8} {:>12} {:>12} {:>14} {:>14}  {}",
        name,
        v.new_flows,
        v.active_flows,
        v.rehashes,
        v.packets_in,
        v.packets_out,
        v.bytes_in,
        v.bytes_out,
        v.backends.join(" ")
    );
}
