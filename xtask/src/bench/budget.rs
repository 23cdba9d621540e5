//! Issue 9's signals budget, end to end: does canary with signals keep its
//! ratio to direct within 0.02 of canary without them?
//!
//! The main rounds answer this poorly: there each path runs 13 s after the
//! one before, a round spans a minute and a half, and this machine's load
//! moves more than 0.02 in that time. So, after the rounds, the three paths
//! that matter (direct, canary, canary with signals off) run again in short
//! "triplets": each triplet's runs of one load are back to back, seconds
//! apart, and yield one difference of ratios measured side by side. The
//! budget's figure is the median of those differences over the triplets.

use anyhow::{Context, Result};

use super::{
    Mode, e2e,
    paths::{Kind, PathEnv},
    wrk::{self, Load},
};

/// The three paths of a triplet, in the order the first triplet runs them.
pub const PATHS: [Kind; 3] = [Kind::Direct, Kind::Canary, Kind::CanaryNoSignals];

pub struct Plan {
    pub triplets: usize,
    pub keepalive: Load,
    pub close: Load,
}

impl Plan {
    /// The main rounds' wrk settings, shorter: a triplet's runs should be
    /// close in time, and 9 triplets of 3 paths × 2 loads × 3 s add under
    /// 3 minutes to a full run. An odd count gives a median that is one
    /// triplet's figure.
    pub fn new(mode: Mode, rounds: &e2e::Plan) -> Plan {
        let (triplets, seconds) = match mode {
            Mode::Full => (9, 3),
            Mode::Quick => (1, rounds.keepalive.seconds),
        };
        Plan {
            triplets,
            keepalive: rounds.keepalive.lasting(seconds),
            close: rounds.close.lasting(seconds),
        }
    }

    /// wrk time of the whole phase, in seconds.
    pub fn seconds(&self) -> u32 {
        self.triplets as u32 * PATHS.len() as u32 * (self.keepalive.seconds + self.close.seconds)
    }
}

/// One load's rate (req/s or conn/s) on each path of a triplet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub direct: f64,
    pub on: f64,
    pub off: f64,
}

impl Rates {
    pub fn on_ratio(&self) -> f64 {
        self.on / self.direct
    }

    pub fn off_ratio(&self) -> f64 {
        self.off / self.direct
    }

    /// What the budget bounds: canary's ratio to direct minus signals off's.
    pub fn difference(&self) -> f64 {
        self.on_ratio() - self.off_ratio()
    }

    fn set(&mut self, kind: Kind, rate: f64) {
        match kind {
            Kind::Direct => self.direct = rate,
            Kind::Canary => self.on = rate,
            _ => self.off = rate,
        }
    }
}

pub struct Triplet {
    pub order: [Kind; 3],
    /// Keep-alive requests/s.
    pub keepalive: Rates,
    /// `Connection: close` requests/s, i.e. new connections/s.
    pub close: Rates,
    /// wrk's socket errors and non-2xx answers over the triplet's six runs.
    pub errors: u64,
}

/// One budget line over the triplets.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    /// Median of the triplets' differences: the budget's figure.
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Medians of each path's ratio to direct, for context (their
    /// difference need not equal `median`).
    pub on: f64,
    pub off: f64,
}

pub fn line(triplets: &[Triplet], load: fn(&Triplet) -> &Rates) -> Line {
    let of = |f: fn(&Rates) -> f64| -> Vec<f64> { triplets.iter().map(|t| f(load(t))).collect() };
    let d = of(Rates::difference);
    Line {
        median: xtask::stats::median(&d),
        min: d.iter().copied().fold(f64::NAN, f64::min),
        max: d.iter().copied().fold(f64::NAN, f64::max),
        on: xtask::stats::median(&of(Rates::on_ratio)),
        off: xtask::stats::median(&of(Rates::off_ratio)),
    }
}

/// Standard error of `line`'s median difference: 1.2533 × the sample
/// standard deviation / √n (the median's asymptotic error for a normal
/// spread); infinite with fewer than 2 triplets.
pub fn median_standard_error(triplets: &[Triplet], load: fn(&Triplet) -> &Rates) -> f64 {
    let d: Vec<f64> = triplets.iter().map(|t| load(t).difference()).collect();
    let n = d.len() as f64;
    if d.len() < 2 {
        return f64::INFINITY;
    }
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    1.2533 * var.sqrt() / n.sqrt()
}

/// Triplet t runs the paths from `PATHS[t % 3]` on, so over 3 triplets
/// each path is once first, once in the middle and once last.
pub fn order(t: usize) -> [Kind; 3] {
    std::array::from_fn(|i| PATHS[(t + i) % PATHS.len()])
}

/// Runs the triplets. Within one, the three keep-alive runs go back to
/// back, then the three `Connection: close` runs in the same order, so the
/// runs each difference compares are seconds apart.
pub fn run(envs: &mut [PathEnv], plan: &Plan) -> Result<Vec<Triplet>> {
    let mut out = vec![];
    for t in 0..plan.triplets {
        let order = order(t);
        let mut triplet = Triplet {
            order,
            keepalive: Rates::default(),
            close: Rates::default(),
            errors: 0,
        };
        for (load, name) in [(&plan.keepalive, "keep-alive"), (&plan.close, "close")] {
            for kind in order {
                let env = envs
                    .iter_mut()
                    .find(|e| e.kind == kind)
                    .with_context(|| format!("no {} path", kind.label()))?;
                let m = wrk::run(&env.topo.client, load, &kind.url())
                    .with_context(|| format!("{}: budget {name} run", kind.label()))?;
                env.check_running()?;
                triplet.errors += m.errors;
                let rates = if load.close {
                    &mut triplet.close
                } else {
                    &mut triplet.keepalive
                };
                rates.set(kind, m.rps);
            }
        }
        println!(
            "budget: triplet {}/{} ({}) keep-alive × direct: on {:.3}, off {:.3}, diff {:+.3} | new conn/s × direct: on {:.3}, off {:.3}, diff {:+.3}{}",
            t + 1,
            plan.triplets,
            order_text(&order),
            triplet.keepalive.on_ratio(),
            triplet.keepalive.off_ratio(),
            triplet.keepalive.difference(),
            triplet.close.on_ratio(),
            triplet.close.off_ratio(),
            triplet.close.difference(),
            match triplet.errors {
                0 => String::new(),
                e => format!(" ({e} errors)"),
            }
        );
        out.push(triplet);
    }
    Ok(out)
}

/// "direct → canary (XDP) → canary, signals off".
pub fn order_text(order: &[Kind; 3]) -> String {
    order.map(Kind::label).join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rotates() {
        for i in 0..3 {
            let firsts: Vec<Kind> = (0..3).map(|t| order(t)[i]).collect();
            for k in PATHS {
                assert!(firsts.contains(&k), "position {i}: {firsts:?}");
            }
        }
    }

    #[test]
    fn line_is_median_of_differences() {
        let t = |on: f64, off: f64| Triplet {
            order: order(0),
            keepalive: Rates {
                direct: 100.0,
                on,
                off,
            },
            close: Rates::default(),
            errors: 0,
        };
        let l = line(&[t(90.0, 95.0), t(80.0, 70.0), t(91.0, 92.0)], |t| {
            &t.keepalive
        });
        assert!((l.median - -0.01).abs() < 1e-9);
        assert!((l.min - -0.05).abs() < 1e-9);
        assert!((l.max - 0.10).abs() < 1e-9);
        assert!((l.on - 0.90).abs() < 1e-9);
        assert!((l.off - 0.92).abs() < 1e-9);
    }
}
