//! The `split` scenario (the first demo): no rollout, no daemon; the weight
//! stepped by hand over real TCP connections, each step's canary share, and
//! a rollback that keeps established canary connections on the canary while
//! every new one goes to stable.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use canary_userspace::{Affinity, model::weight::Weight};
use xtask::topology::BackendKind;

use crate::harness::{CANARY, Family, Harness};

/// `connections` new connections at each of `steps`.
pub fn run(connections: u32, steps: &[Weight]) -> Result<()> {
    println!("demo: building namespaces and attaching the data path ...");
    let mut h = Harness::new(
        BackendKind::Namespace,
        Family::V4,
        Affinity::Flow,
        Weight::ZERO,
    )?;
    println!(
        "demo: service {} -> stable {} / canary {}\n",
        h.vip, h.backends[0].addr, h.backends[1].addr
    );
    println!(
        "{:>8}  {:>11}  {:>8}  {:>12}",
        "weight", "connections", "canary", "canary share"
    );

    let mut kept = vec![];
    for weight in steps {
        h.set_weight(*weight)?;
        let started = Instant::now();
        let mut canary = 0;
        for i in 0..connections {
            let mut c = h.connect(None)?;
            if c.request()
                .with_context(|| format!("connection {i} at {weight}"))?
                == CANARY
            {
                canary += 1;
                // Keep a few canary connections open to show rollback below.
                if kept.len() < 10 {
                    kept.push(c);
                }
            }
        }
        let share = canary as f64 * 100.0 / connections as f64;
        println!(
            "{:>8.2}  {:>11}  {:>8}  {:>11.2}%   ({:.1}s)",
            weight,
            connections,
            canary,
            share,
            started.elapsed().as_secs_f64()
        );
    }

    println!("\ndemo: rollback: weight 0 (one map write)");
    h.set_weight(Weight::ZERO)?;
    let mut new_on_canary = 0;
    for _ in 0..connections.min(200) {
        if h.connect(None)?.request()? == CANARY {
            new_on_canary += 1;
        }
    }
    let mut still_canary = 0;
    for c in &mut kept {
        if c.request()? == CANARY {
            still_canary += 1;
        }
    }
    println!("demo: new connections on canary after rollback: {new_on_canary}");
    println!(
        "demo: established canary connections still served by canary: {still_canary}/{}",
        kept.len()
    );
    let s = h.stats()?;
    println!("\nkernel counters (service {}):", crate::harness::SERVICE);
    for (name, v) in [("stable", s[0]), ("canary", s[1])] {
        println!(
            "  {name:>6}: new flows {:>6}  packets in {:>7}  out {:>7}  closed {:>6}  rehashes {}",
            v.new_flows, v.packets_in, v.packets_out, v.closed_flows, v.rehashes
        );
    }
    if new_on_canary != 0 || still_canary != kept.len() {
        bail!("rollback did not behave: see the figures above");
    }
    Ok(())
}
