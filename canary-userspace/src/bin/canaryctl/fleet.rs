//! `canaryctl fleet status`, and the hosts table `rollout status` shows in
//! a fleet.

use canary_userspace::api::fleet::{FleetHost, FleetStatus};

pub fn print(f: FleetStatus) {
    println!(
        "fleet {}: {} of {} hosts alive, leader {} (asked {})",
        f.fleet,
        f.hosts.iter().filter(|h| h.alive).count(),
        f.hosts.len(),
        f.leader.as_deref().unwrap_or("none"),
        f.host
    );
    print_hosts(&f.hosts);
}

/// One line per host and service.
pub fn print_hosts(hosts: &[FleetHost]) {
    println!(
        "  {:<16} {:<6} {:<6} {:<12} {:>5} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "HOST",
        "ALIVE",
        "LEADS",
        "SERVICE",
        "GEN",
        "WEIGHT",
        "STABLE REQ",
        "CANARY REQ",
        "STB ERR",
        "CAN ERR"
    );
    let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    for h in hosts {
        let (alive, leads) = (yes(h.alive), yes(h.leader));
        if h.services.is_empty() {
            println!("  {:<16} {alive:<6} {leads:<6}", h.name);
        }
        for s in &h.services {
            println!(
                "  {:<16} {alive:<6} {leads:<6} {:<12} {:>5} {:>8.2} {:>10} {:>10} {:>8} {:>8}",
                h.name,
                s.service,
                s.applied_generation,
                s.weight,
                s.requests[0],
                s.requests[1],
                rate(s.error_rate[0]),
                rate(s.error_rate[1])
            );
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
