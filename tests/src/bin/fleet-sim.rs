//! `fleet-sim`: the fleet leader at scale. One etcd (in a network
//! namespace of its own), the real leader (`fleet::leader::run`), and 10,
//! 100, 1,000 fake hosts that publish, watch and acknowledge as canaryd's
//! fleet agent does; one healthy rollout from its first step to promotion.
//! Measures, per fleet size: decision → every host applied (p50/p99), etcd
//! writes per interval, the leader's CPU per look, and the step-ups that
//! waited for hosts' acks. docs/BENCHMARKS.md ("Fleet: one leader, many
//! hosts") has the figures and the command.
//!
//! Example: `cargo run --release -p tests --bin fleet-sim -- --hosts 10,100,1000`

#[path = "fleet-sim/cpu.rs"]
mod cpu;
#[path = "fleet-sim/etcd.rs"]
mod etcd;
#[path = "fleet-sim/host.rs"]
mod host;
#[path = "fleet-sim/hosts.rs"]
mod hosts;
#[path = "fleet-sim/leader.rs"]
mod leader;
#[path = "fleet-sim/logs.rs"]
mod logs;
#[path = "fleet-sim/observe.rs"]
mod observe;
#[path = "fleet-sim/report.rs"]
mod report;
#[path = "fleet-sim/run.rs"]
mod run;
#[path = "fleet-sim/traffic.rs"]
mod traffic;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use canary_userspace::controller::webhook::Webhooks;
use clap::Parser;

use report::Figures;

/// One fleet leader against simulated hosts on one etcd (Debian's
/// etcd-server, /usr/bin/etcd), each fleet size in turn. Needs root
/// (network namespaces). Prints a markdown table; exits 1 when a rollout
/// was not promoted or a generation did not reach every host.
///
/// Example: fleet-sim --hosts 10,100,1000
#[derive(Parser)]
struct Args {
    /// Fleet sizes, run one after another, each with a fresh etcd.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    hosts: Vec<usize>,
    /// Rollout steps, equal up to 100 %.
    #[arg(long, default_value_t = 10)]
    steps: u16,
    /// The rollout's interval between looks, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// How often each host publishes its record, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    publish_ms: u64,
    /// Requests each host serves per publish interval.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Longest one fleet size's rollout may run, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Threads that carry the fake hosts.
    #[arg(long, default_value_t = 2)]
    host_threads: usize,
    /// Print every failed etcd call of the hosts, not only the first five.
    #[arg(long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tests::assert_root();
    logs::install();
    let webhooks = Webhooks::start(&prometheus::Registry::new())?;
    let mut runs = vec![];
    for &hosts in &args.hosts {
        let opts = run::Options {
            hosts,
            steps: args.steps,
            interval: Duration::from_millis(args.interval_ms),
            publish: Duration::from_millis(args.publish_ms),
            requests: args.requests,
            timeout: Duration::from_secs(args.timeout_s),
            host_threads: args.host_threads.max(1),
            verbose: args.verbose,
        };
        eprintln!("== {hosts} hosts");
        let began = Instant::now();
        let outcome = run::run(&opts, webhooks.clone())?;
        let figures = Figures::of(&outcome);
        eprint!("{}", figures.details());
        eprintln!(
            "  whole run (etcd, joins, rollout, teardown): {:.1} s",
            began.elapsed().as_secs_f64()
        );
        runs.push(figures);
    }
    print!("{}", report::table(&runs));
    if let Some(f) = runs.iter().find(|f| !f.clean()) {
        bail!(
            "{} hosts: {}, {} generations incomplete, {} leader tick errors (details above)",
            f.hosts,
            f.phase.name(),
            f.incomplete,
            f.tick_errors
        );
    }
    Ok(())
}
