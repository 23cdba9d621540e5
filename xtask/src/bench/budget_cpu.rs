//! Issue 9's signals budget, end to end, by CPU accounting: what the
//! signals add to the CPU time of a request, and the change in req/s that
//! this implies for a CPU-bound machine.
//!
//! The triplets (`budget`) measure the ratio to direct itself, but on this
//! machine two 3-second wrk runs of one path differ by about 10 %, so the
//! median of 9 triplets' differences has a standard error near 0.04: twice
//! the budget's 0.02. The signals' share of a request's CPU time is far
//! smaller and can be measured precisely: with BPF run-time stats on, the
//! canary path's two programs report their own time, so each run gives
//! their nanoseconds per request, with signals and without, beside the
//! whole machine's busy CPU time per request. With the machine saturated
//! (its busy share is reported), req/s is inversely proportional to CPU
//! time per request, so signals that add Δ ns to a request costing C ns
//! change canary's ratio to direct by a factor C / (C + Δ).

use std::time::Instant;

use anyhow::{Context, Result};
use aya::sys::{Stats, enable_stats};

use super::{
    e2e::{self, program_totals},
    paths::{Kind, PathEnv, cores},
    wrk::{self, Load},
};

pub struct Plan {
    /// Alternating rounds: with signals, then without, each load.
    pub rounds: usize,
    pub keepalive: Load,
    pub close: Load,
}

impl Plan {
    /// The main rounds' loads, 3 s each: 3 rounds of 2 paths × 2 loads.
    pub fn new(mode: super::Mode, rounds: &e2e::Plan) -> Plan {
        let (n, seconds) = match mode {
            super::Mode::Full => (3, 3),
            super::Mode::Quick => (1, rounds.keepalive.seconds),
        };
        Plan {
            rounds: n,
            keepalive: rounds.keepalive.lasting(seconds),
            close: rounds.close.lasting(seconds),
        }
    }
}

/// One wrk run's accounting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// canary_ingress + canary_egress run time per request, ns.
    pub program_ns: f64,
    /// The whole machine's busy CPU time per request, ns.
    pub cpu_ns: f64,
    /// Busy CPU time over all CPUs' time during wrk's run.
    pub busy_share: f64,
}

/// One load's runs, with signals (`on`) and without (`off`).
#[derive(Clone, Debug, Default)]
pub struct Accounted {
    pub on: Vec<Run>,
    pub off: Vec<Run>,
}

impl Accounted {
    fn median(runs: &[Run], f: fn(&Run) -> f64) -> f64 {
        xtask::stats::median(&runs.iter().map(f).collect::<Vec<_>>())
    }

    /// Median program ns per request with and without signals.
    pub fn program_ns(&self) -> (f64, f64) {
        (
            Self::median(&self.on, |r| r.program_ns),
            Self::median(&self.off, |r| r.program_ns),
        )
    }

    /// What the signals add to a request's CPU time, ns.
    pub fn added_ns(&self) -> f64 {
        let (on, off) = self.program_ns();
        on - off
    }

    /// Median busy CPU time per request without signals, ns.
    pub fn cpu_ns(&self) -> f64 {
        Self::median(&self.off, |r| r.cpu_ns)
    }

    /// Lowest busy share of any run: how saturated the machine was.
    pub fn min_busy_share(&self) -> f64 {
        self.on
            .iter()
            .chain(&self.off)
            .map(|r| r.busy_share)
            .fold(f64::NAN, f64::min)
    }

    /// The change in canary's ratio to direct that the added CPU time
    /// implies, given its ratio without signals (`off_ratio`).
    pub fn implied_difference(&self, off_ratio: f64) -> f64 {
        let c = self.cpu_ns();
        off_ratio * (c / (c + self.added_ns()) - 1.0)
    }
}

pub struct Results {
    pub keepalive: Accounted,
    pub close: Accounted,
}

/// Runs the rounds with BPF run-time stats on (they add the same clock
/// reads to both paths' programs).
pub fn run(envs: &mut [PathEnv], plan: &Plan) -> Result<Results> {
    let _stats = enable_stats(Stats::RunTime).context("enabling BPF run-time stats")?;
    let mut out = Results {
        keepalive: Accounted::default(),
        close: Accounted::default(),
    };
    for round in 0..plan.rounds {
        for (load, name) in [(&plan.keepalive, "keep-alive"), (&plan.close, "close")] {
            for kind in [Kind::Canary, Kind::CanaryNoSignals] {
                let env = envs
                    .iter_mut()
                    .find(|e| e.kind == kind)
                    .with_context(|| format!("no {} path", kind.label()))?;
                let before = program_totals(env)?;
                let started = Instant::now();
                let m = wrk::run(&env.topo.client, load, &kind.url())
                    .with_context(|| format!("{}: CPU accounting {name} run", kind.label()))?;
                // wrk::run counts CPU time from start to exit of wrk, a
                // little longer than its load: the share is of that time.
                let wall = started.elapsed().as_secs_f64();
                let after = program_totals(env)?;
                env.check_running()?;
                let program: u64 = (0..2).map(|i| after[i].1 - before[i].1).sum();
                let r = Run {
                    program_ns: program as f64 / m.requests as f64,
                    cpu_ns: m.cpu_us_per_req * 1000.0,
                    busy_share: m.cpu_us_per_req * m.requests as f64
                        / (cores() as f64 * wall * 1e6),
                };
                println!(
                    "budget: CPU accounting round {}/{} {name:<10} {:<22} programs {:.0} ns/request, machine {:.1} µs/request, busy {:.0} %",
                    round + 1,
                    plan.rounds,
                    kind.label(),
                    r.program_ns,
                    r.cpu_ns / 1000.0,
                    r.busy_share * 100.0
                );
                let a = if load.close {
                    &mut out.close
                } else {
                    &mut out.keepalive
                };
                if kind == Kind::Canary {
                    a.on.push(r);
                } else {
                    a.off.push(r);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program_ns: f64, cpu_ns: f64) -> Run {
        Run {
            program_ns,
            cpu_ns,
            busy_share: 1.0,
        }
    }

    #[test]
    fn added_time_lowers_the_ratio_in_proportion() {
        let a = Accounted {
            on: vec![
                run(300.0, 20_000.0),
                run(310.0, 21_000.0),
                run(9_999.0, 0.0),
            ],
            off: vec![
                run(200.0, 20_000.0),
                run(205.0, 19_000.0),
                run(210.0, 20_000.0),
            ],
        };
        assert_eq!(a.program_ns(), (310.0, 205.0));
        assert_eq!(a.added_ns(), 105.0);
        assert_eq!(a.cpu_ns(), 20_000.0);
        // 105 ns more on 20 µs: rps × 20000/20105; at 0.9× direct.
        let d = a.implied_difference(0.9);
        assert!((d - 0.9 * (20_000.0 / 20_105.0 - 1.0)).abs() < 1e-12, "{d}");
        assert!(d < 0.0 && d > -0.005);
    }
}
