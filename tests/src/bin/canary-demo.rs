//! `cargo xtask demo`: the split on real connections, in throwaway network
//! namespaces. Ramps the canary weight, shows the share each step gets, then
//! rolls back and shows that established canary connections are still
//! served while every new one goes to stable.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use canary_userspace::Affinity;
use clap::Parser;
use tests::harness::{CANARY, Family, Harness};
use xtask::topology::BackendKind;

#[derive(Parser)]
#[command(
    about = "Splits real TCP connections between a stable and a canary backend in network namespaces",
    long_about = "Builds a client, a host and two backend namespaces (198.18.0.0/15, removed on exit), \
attaches the XDP/TC programs to the host's veth, and opens real connections to the service \
address 198.18.0.1:80 at each weight of a ramp. Needs root.\n\n\
Example: cargo xtask demo -- --connections 500 --steps 5,25,50"
)]
struct Args {
    /// New connections opened at each weight step.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// Canary weights to step through, in percent.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50")]
    steps: Vec<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if unsafe { libc::geteuid() } != 0 {
        bail!("canary-demo must run as root: it loads BPF programs and creates network namespaces");
    }
    for s in &args.steps {
        if !(0.0..=100.0).contains(s) {
            bail!("--steps: {s} is not a percentage between 0 and 100");
        }
    }
    println!("demo: building namespaces and attaching the data path ...");
    let mut h = Harness::new(BackendKind::Namespace, Family::V4, Affinity::Flow, 0)?;
    println!(
        "demo: service {} -> stable {} / canary {}\n",
        h.vip, h.backends[0].addr, h.backends[1].addr
    );
    println!(
        "{:>8}  {:>11}  {:>8}  {:>12}",
        "weight", "connections", "canary", "canary share"
    );

    let mut kept = vec![];
    for pct in &args.steps {
        h.set_weight((pct * 100.0).round() as u16)?;
        let started = Instant::now();
        let mut canary = 0;
        for i in 0..args.connections {
            let mut c = h.connect(None)?;
            if c.request()
                .with_context(|| format!("connection {i} at {pct}%"))?
                == CANARY
            {
                canary += 1;
                // Keep a few canary connections open to show rollback below.
                if kept.len() < 10 {
                    kept.push(c);
                }
            }
        }
        let share = canary as f64 * 100.0 / args.connections as f64;
        println!(
            "{:>7.2}%  {:>11}  {:>8}  {:>11.2}%   ({:.1}s)",
            pct,
            args.connections,
            canary,
            share,
            started.elapsed().as_secs_f64()
        );
    }

    println!("\ndemo: rollback: weight 0 (one map write)");
    h.set_weight(0)?;
    let mut new_on_canary = 0;
    for _ in 0..args.connections.min(200) {
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
    println!("\nkernel counters (service {}):", tests::harness::SERVICE);
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
