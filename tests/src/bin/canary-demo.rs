//! `cargo xtask demo`: a canary rollout of a model server, in throwaway
//! network namespaces, with the real canaryd, a real Prometheus and model
//! servers that really predict. See `tests::demo`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use canary_userspace::model::weight::Weight;
use clap::Parser;
use tests::demo::{
    fleet_run::{self, FleetOptions, MAX_HOSTS, MIN_HOSTS},
    run::{self, Options},
    scenario::Scenario,
    split,
};
use xtask::canaryd::Binaries;

#[derive(Parser)]
#[command(
    about = "A canary rollout of a model server, end to end, in throwaway network namespaces",
    long_about = "Trains two iris classifiers (linfa-trees), serves them as the stable and the \
canary version behind canary's XDP data path, sends labelled requests from 200 client addresses, \
and runs a rollout with canaryd (steps 5/25/50/100 %, 3 s intervals) judged on the kernel's error \
rate and p99 and on a PromQL accuracy gate read from a real Prometheus. Prints every decision \
live, then the outcome, and writes a timeline chart (SVG), the report (JSON) and the config \
under target/demo/. Namespaces use 198.18.0.0/15 only and are removed on exit. Needs root.\n\n\
With --fleet N, the same rollout runs on N hosts in one fleet: each host a namespace with both \
model servers behind its own VIP and its own canaryd with [fleet], coordinated through a real \
etcd; the labelling clients spread their connections over every host's VIP; the rollout is \
started from one host, and half way (at the middle step, or after a failing look) the fleet's \
leader is killed with kill -9. Prints who leads next and how long the takeover took, the \
outcome and the connections broken, and writes fleet-rollout-SCENARIO.svg (each host's weight, \
the fleet's summed evidence) and fleet-report.json.\n\n\
With --scenario grpc, the same models are served over gRPC without TLS (Python grpcio servers \
evaluating the exported trees), the service is app_protocol = \"h2c\", and the clients send \
Predict calls over short-lived channels; the canary fails about one call in five with \
UNAVAILABLE under :status 200, and the rollout is judged on the error rate canary computes from \
grpc-status. Prints the clients' calls and UNAVAILABLE by version beside canary's counts.\n\n\
Exit status: 0 when the rollout ended as the scenario expects (healthy: promoted; others: rolled \
back), 1 otherwise.",
    after_help = "Examples:\n  cargo xtask demo\n  cargo xtask demo -- --scenario healthy\n  cargo xtask demo -- --scenario grpc\n  cargo xtask demo -- --fleet 3\n  cargo xtask demo -- --fleet 5 --scenario healthy\n  cargo xtask demo -- --scenario split --connections 500 --steps 5,25,50"
)]
struct Args {
    /// What is wrong with the canary.
    #[arg(long, value_enum, default_value_t = Scenario::Errors)]
    scenario: Scenario,
    /// Labelled requests per second over all clients (rollout scenarios;
    /// default 1500, grpc 600).
    #[arg(long, value_parser = clap::value_parser!(u32).range(200..=20_000))]
    rate: Option<u32>,
    /// Where the chart, report and config go (default: target/demo).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run the rollout on N hosts in one fleet (etcd), killing its leader
    /// half way (2 to 8 hosts; rollout scenarios only).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(MIN_HOSTS as i64..=MAX_HOSTS as i64))]
    fleet: Option<u8>,
    /// split: new connections opened at each weight step.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// split: canary weights to step through, in percent (0 to 100, at
    /// most two decimals).
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50")]
    steps: Vec<Weight>,
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("canary-demo must run as root: it loads BPF programs and creates network namespaces");
    }
    if args.scenario == Scenario::Split {
        if args.fleet.is_some() {
            bail!(
                "--fleet runs a rollout; the split scenario has none (pick healthy, errors, latency or accuracy)"
            );
        }
        split::run(args.connections, &args.steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rate = args.rate.unwrap_or(args.scenario.default_rate());
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the demo binary has no directory")?;
    let out = match args.out {
        Some(out) => out,
        None => run::default_out(&exe).context("no target directory above the demo binary")?,
    };
    let binaries = Binaries::in_dir(dir)?;
    let (report, wall) = match args.fleet {
        Some(hosts) => {
            let o = fleet_run::run(&FleetOptions {
                scenario: args.scenario,
                hosts: hosts.into(),
                out,
                binaries,
                rate,
            })?;
            (o.report, o.wall)
        }
        None => {
            let o = run::run(&Options {
                scenario: args.scenario,
                out,
                binaries,
                rate,
            })?;
            (o.report, o.wall)
        }
    };
    let expected = args.scenario.expected();
    println!(
        "demo: done in {:.1} s; everything the demo created is removed",
        wall.as_secs_f64()
    );
    if report.phase != expected {
        eprintln!(
            "demo: expected the rollout to end {expected:?}, it ended {:?}: {}",
            report.phase, report.reason
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
