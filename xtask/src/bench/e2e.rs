//! End to end: the same wrk load through every path, in interleaved rounds,
//! medians per path; and the data path's own run time under that load
//! (BPF stats), measured in a separate run so the stats' clock reads never
//! slow the timed rounds; and the health signals canary counted, with and
//! without them switched on.

use anyhow::{Context, Result, ensure};
use aya::{
    programs::ProgramInfo,
    sys::{Stats, enable_stats},
};
use canary_common::{
    names::{EGRESS_PROGRAM, INGRESS_PROGRAM},
    signals::Signals,
};

use super::{
    Mode,
    paths::{Kind, PathEnv},
    proc::TempDir,
    profile,
    wrk::{self, Load, Measured},
};

/// The loads of one round, per path.
pub struct Plan {
    pub rounds: usize,
    /// Many keep-alive connections: requests/s, loaded latency, CPU.
    pub keepalive: Load,
    /// `Connection: close`: new connections/s.
    pub close: Load,
    /// One connection, one request at a time: latency without queueing.
    pub latency: Load,
    /// A short keep-alive run per path before the first round.
    pub warmup: Load,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        let (rounds, seconds, latency_seconds) = match mode {
            Mode::Full => (5, 5, 3),
            Mode::Quick => (1, 2, 1),
        };
        let many = |seconds, close| Load {
            threads: 2,
            connections: 32,
            seconds,
            close,
        };
        Plan {
            rounds,
            keepalive: many(seconds, false),
            close: many(seconds, true),
            latency: Load {
                threads: 1,
                connections: 1,
                seconds: latency_seconds,
                close: false,
            },
            warmup: many(1, false),
        }
    }
}

/// Every run of one path.
pub struct PathRuns {
    pub kind: Kind,
    pub keepalive: Vec<Measured>,
    pub close: Vec<Measured>,
    pub latency: Vec<Measured>,
}

/// Medians of one path's runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub rps: f64,
    pub loaded_p50_us: f64,
    pub loaded_p99_us: f64,
    pub cpu_us_per_req: f64,
    pub conns_per_s: f64,
    pub cpu_us_per_conn: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
}

impl PathRuns {
    pub fn summary(&self) -> Summary {
        let m = |runs: &[Measured], f: fn(&Measured) -> f64| {
            xtask::stats::median(&runs.iter().map(f).collect::<Vec<_>>())
        };
        Summary {
            rps: m(&self.keepalive, |r| r.rps),
            loaded_p50_us: m(&self.keepalive, |r| r.p50_us),
            loaded_p99_us: m(&self.keepalive, |r| r.p99_us),
            cpu_us_per_req: m(&self.keepalive, |r| r.cpu_us_per_req),
            conns_per_s: m(&self.close, |r| r.rps),
            cpu_us_per_conn: m(&self.close, |r| r.cpu_us_per_req),
            p50_us: m(&self.latency, |r| r.p50_us),
            p99_us: m(&self.latency, |r| r.p99_us),
            errors: self
                .keepalive
                .iter()
                .chain(&self.close)
                .chain(&self.latency)
                .map(|r| r.errors)
                .sum(),
        }
    }
}

/// Runs the rounds. Round r starts at path r (mod the number of paths), so
/// no path always runs first.
pub fn run(envs: &mut [PathEnv], plan: &Plan) -> Result<Vec<PathRuns>> {
    for env in envs.iter_mut() {
        println!("e2e: warm-up {} (1 s)", env.kind.label());
        wrk::run(&env.topo.client, &plan.warmup, &env.kind.url())
            .with_context(|| format!("warming up {}", env.kind.label()))?;
    }
    let mut all: Vec<PathRuns> = envs
        .iter()
        .map(|e| PathRuns {
            kind: e.kind,
            keepalive: vec![],
            close: vec![],
            latency: vec![],
        })
        .collect();
    let n = envs.len();
    let width = Kind::ALL.iter().map(|k| k.label().len()).max().unwrap_or(0);
    for round in 0..plan.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let env = &mut envs[i];
            let label = env.kind.label();
            let url = env.kind.url();
            let ka = wrk::run(&env.topo.client, &plan.keepalive, &url)
                .with_context(|| format!("{label}: keep-alive run"))?;
            let close = wrk::run(&env.topo.client, &plan.close, &url)
                .with_context(|| format!("{label}: Connection: close run"))?;
            let lat = wrk::run(&env.topo.client, &plan.latency, &url)
                .with_context(|| format!("{label}: one-connection run"))?;
            env.check_running()?;
            println!(
                "e2e: round {}/{} {label:<width$} keep-alive {:>8.0} req/s ({:.2} µs CPU/req) | close {:>7.0} conn/s | 1 conn p50 {:>5.0} µs p99 {:>5.0} µs{}",
                round + 1,
                plan.rounds,
                ka.rps,
                ka.cpu_us_per_req,
                close.rps,
                lat.p50_us,
                lat.p99_us,
                match ka.errors + close.errors + lat.errors {
                    0 => String::new(),
                    e => format!(" ({e} errors)"),
                }
            );
            all[i].keepalive.push(ka);
            all[i].close.push(close);
            all[i].latency.push(lat);
        }
    }
    Ok(all)
}

/// Slot of 2xx in `Signals::http` (see `HTTP_CLASS_NAMES`).
pub const HTTP_2XX: usize = 1;

/// Health signals the two canary paths' data paths counted over the
/// rounds: proof that one measured them and the other did not.
pub struct SignalsSeen {
    pub on: Signals,
    pub off: Signals,
}

/// Reads both canary paths' signals; fails unless the path with signals
/// counted requests and responses and the path without counted nothing.
pub fn signals_seen(envs: &[PathEnv]) -> Result<SignalsSeen> {
    let read = |kind: Kind| -> Result<Signals> {
        envs.iter()
            .find(|e| e.kind == kind)
            .with_context(|| format!("no {} path", kind.label()))?
            .canaryd()?
            .signals()
            .with_context(|| format!("reading {}'s signals", kind.label()))
    };
    let seen = SignalsSeen {
        on: read(Kind::Canary)?,
        off: read(Kind::CanaryNoSignals)?,
    };
    ensure!(
        seen.on.requests > 0 && seen.on.responses > 0,
        "{} counted no requests or responses: {:?}",
        Kind::Canary.label(),
        seen.on
    );
    ensure!(
        seen.off == Signals::default(),
        "{} counted signals: {:?}",
        Kind::CanaryNoSignals.label(),
        seen.off
    );
    println!(
        "e2e: signals over the rounds: {} counted {} requests, {} responses ({} 2xx); {} counted none",
        Kind::Canary.label(),
        seen.on.requests,
        seen.on.responses,
        seen.on.http[HTTP_2XX],
        Kind::CanaryNoSignals.label()
    );
    Ok(seen)
}

/// BPF stats of one program over one load.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub runs: u64,
    pub ns_per_run: f64,
}

/// canary's programs' own time under keep-alive and `Connection: close` load.
pub struct InPlace {
    pub keepalive: (ProgStats, ProgStats),
    pub close: (ProgStats, ProgStats),
    pub keepalive_rps: f64,
    pub close_cps: f64,
}

/// Enables BPF run-time stats (kernel.bpf_stats_enabled, held by an fd:
/// back off when it closes), runs each load once through the canary path
/// and reads run_time_ns / run_cnt of the pinned programs around it.
pub fn in_place(env: &PathEnv, plan: &Plan) -> Result<InPlace> {
    let read = || program_totals(env);
    let delta = |a: [(u64, u64); 2], b: [(u64, u64); 2]| {
        let one = |i: usize| {
            let runs = b[i].0 - a[i].0;
            ProgStats {
                runs,
                ns_per_run: if runs == 0 {
                    0.0
                } else {
                    (b[i].1 - a[i].1) as f64 / runs as f64
                },
            }
        };
        (one(0), one(1))
    };
    let _stats = enable_stats(Stats::RunTime).context("enabling BPF run-time stats")?;
    let url = env.kind.url();
    let before = read()?;
    let ka = wrk::run(&env.topo.client, &plan.keepalive, &url)?;
    let mid = read()?;
    let close = wrk::run(&env.topo.client, &plan.close, &url)?;
    let after = read()?;
    let r = InPlace {
        keepalive: delta(before, mid),
        close: delta(mid, after),
        keepalive_rps: ka.rps,
        close_cps: close.rps,
    };
    for (load, (ingress, egress)) in [("keep-alive", r.keepalive), ("close", r.close)] {
        println!(
            "e2e: in place (BPF stats on): {load:<10} canary_ingress {:.0} ns/run over {} runs, canary_egress {:.0} ns/run over {} runs",
            ingress.ns_per_run, ingress.runs, egress.ns_per_run, egress.runs
        );
    }
    Ok(r)
}

/// (runs, run-time ns) so far of the canary path's XDP ingress and tc
/// egress programs, read from their pins (counted while BPF run-time stats
/// are on).
pub fn program_totals(env: &PathEnv) -> Result<[(u64, u64); 2]> {
    let d = env.canaryd()?;
    let mut out = [(0, 0); 2];
    for (o, name) in out.iter_mut().zip([INGRESS_PROGRAM, EGRESS_PROGRAM]) {
        let pin = d.dirs.pins().program(name);
        let info =
            ProgramInfo::from_pin(&pin).with_context(|| format!("reading {}", pin.display()))?;
        *o = (info.run_count(), info.run_time().as_nanos() as u64);
    }
    Ok(out)
}

/// Samples every CPU with perf while one keep-alive load runs through the
/// canary path (after `in_place`, BPF stats off again): where the host's
/// time goes in place, the programs' share beside the stack's.
pub fn profile_under_load(env: &PathEnv, plan: &Plan) -> Result<profile::Profile> {
    let dir = TempDir::new("load-profile")?;
    let data = dir.path().join("keepalive.data");
    let seconds = plan.keepalive.seconds;
    let child = profile::start_system_wide(&data, seconds)?;
    let ka = wrk::run(&env.topo.client, &plan.keepalive, &env.kind.url());
    let p = profile::finish_system_wide(
        "keep-alive load through canary, all CPUs",
        child,
        &data,
        seconds,
    )?;
    let ka = ka?;
    println!(
        "e2e: profiled the keep-alive load ({} req/s): the data path (canary's programs and what they call) {:.1} % of all CPU samples",
        ka.rps.round(),
        p.data_path.of_all_percent
    );
    Ok(p)
}
