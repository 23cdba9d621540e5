//! The statistics behind the rollout checks: anytime-valid bounds on a
//! proportion, the error budget split over steps and checks, and quantile
//! bounds from the data path's log-linear histograms.
//!
//! Every check turns into statements about a proportion: "more than 1 % of
//! the canary's responses took longer than T" is "P(latency > T) > 0.01",
//! "the canary's error rate is above 2 %" is "P(error) > 0.02". For each,
//! the controller keeps a confidence sequence: bounds that hold at every
//! look at once, however often the data is looked at (a beta-binomial
//! mixture martingale and Ville's inequality: the chance that the bounds
//! ever exclude the true proportion is at most the level). A check fails
//! only when even the lower bound crosses its threshold, passes only when
//! even the upper bound stays below it, and is inconclusive otherwise.
//! Kayenta instead runs a fixed 98 % test at every interval, whose errors
//! add up with every look.

use statrs::function::beta::ln_beta;

use crate::model::signals::Histogram;

/// A level: the probability that a confidence sequence is ever wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level(pub f64);

/// The budget `alpha` split evenly over the rollout's steps (each step's
/// evidence starts afresh, so each is a sequence of its own) and over the
/// bounds one look computes: the chance that any of them is ever wrong
/// stays within `alpha` (a union bound).
pub fn level(alpha: f64, steps: usize, bounds: u32) -> Level {
    Level(alpha / steps.max(1) as f64 / f64::from(bounds.max(1)))
}

/// The mixing prior: Beta(1/2, 1/2) puts weight near 0, where error rates
/// and tail shares live.
const PRIOR: (f64, f64) = (0.5, 0.5);

/// Log of the mixture martingale against `p0` after `x` of `n`. `x` may
/// be fractional: observations in [0, 1] rather than 0 or 1 (a bucket's
/// observations counted at the share of it above a threshold). The
/// martingale holds for those too: `y -> a^y` is convex, so each
/// observation's factor has expectation at most 1 when their mean is `p0`;
/// the bounds are then on that mean.
fn log_evidence(x: f64, n: f64, p0: f64) -> f64 {
    ln_beta(x + PRIOR.0, n - x + PRIOR.1)
        - ln_beta(PRIOR.0, PRIOR.1)
        - x * p0.ln()
        - (n - x) * (1.0 - p0).ln()
}

/// The edge of the confidence sequence between `inside` (a proportion it
/// holds) and `outside`: where the evidence against crosses `threshold`.
fn edge(x: f64, n: f64, threshold: f64, mut inside: f64, mut outside: f64) -> f64 {
    if log_evidence(x, n, outside) < threshold {
        return outside;
    }
    for _ in 0..48 {
        let mid = (inside + outside) / 2.0;
        if log_evidence(x, n, mid) < threshold {
            inside = mid;
        } else {
            outside = mid;
        }
    }
    inside
}

/// Smallest proportion still consistent with `x` of `n` at `level`.
pub fn lower(x: u64, n: u64, level: Level) -> f64 {
    if n == 0 || x == 0 {
        return 0.0;
    }
    let (x, n) = (x.min(n) as f64, n as f64);
    edge(x, n, (1.0 / level.0).ln(), x / n, 1e-12)
}

/// Largest proportion still consistent with `x` of `n` at `level`; `x`
/// may be fractional (see `log_evidence`).
pub fn upper(x: f64, n: u64, level: Level) -> f64 {
    let n = n as f64;
    if x >= n {
        return 1.0;
    }
    edge(x, n, (1.0 / level.0).ln(), x / n, 1.0 - 1e-12)
}

/// `lower(x, n, level) > t`, without searching for the bound: the
/// evidence against `t` crosses the threshold, and `t` is below the
/// estimate (the evidence is convex in the proportion, so the set it
/// does not exclude is an interval around the estimate).
pub fn lower_above(x: u64, n: u64, t: f64, level: Level) -> bool {
    if t < 0.0 {
        return true;
    }
    if n == 0 || x == 0 {
        return false;
    }
    let (x, n) = (x.min(n) as f64, n as f64);
    t < x / n && log_evidence(x, n, t) >= (1.0 / level.0).ln()
}

/// `upper(x, n, level) <= t`, without searching for the bound.
pub fn upper_at_most(x: f64, n: u64, t: f64, level: Level) -> bool {
    let n = n as f64;
    if t >= 1.0 {
        return true;
    }
    if x >= n {
        return false;
    }
    t > x / n && log_evidence(x, n, t) >= (1.0 / level.0).ln()
}

/// Most observations `needed` considers: past it (70 years of 30 req/s)
/// a check is as good as never settled.
const MAX_NEEDED: u64 = 1 << 36;

/// The least evidence, more than `got`, at which `settled` (judging `n`
/// observations with the estimates where they are now) turns true, to
/// about 5 %: the "needs ~N" of a check that `got` did not settle. None
/// when not even `MAX_NEEDED` would: estimates that no amount of data
/// carries past a bound (a true value within a bucket of it, or on it).
pub fn needed(got: u64, settled: impl Fn(u64) -> bool) -> Option<u64> {
    if !settled(MAX_NEEDED) {
        return None;
    }
    let (mut lo, mut hi) = (got, (got * 2).max(1));
    while !settled(hi) {
        if hi >= MAX_NEEDED {
            return Some(MAX_NEEDED);
        }
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 + hi / 20 {
        let mid = lo + (hi - lo) / 2;
        if settled(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Observations of `h` above `t_us`: surely (in buckets whose lower bound
/// is at or above it), and counting the bucket that holds it at the share
/// of its width above `t_us`, as if its observations were spread evenly.
///
/// The first is what a check may fail on. The second is what a latency
/// check passes on: in a tail, where the density falls with latency, the
/// even spread overstates the share above `t_us`, so a pass stays sound;
/// counting the whole bucket instead would cost a bucket's width (12.5 %)
/// of resolution on top of stable's. Where the density rises across that
/// one bucket (a second mode just above the limit), a canary within a
/// bucket of the limit could pass.
pub fn above(h: &Histogram, t_us: f64) -> (u64, f64) {
    if t_us <= 0.0 {
        let n = h.total();
        return (n, n as f64);
    }
    // To the nanosecond, as the kernel measures: a threshold given on a
    // bucket bound (268.435456 ms) is on it, whatever the float rounding.
    let t_ns = (t_us * 1e3).round();
    let bound_below = |i: usize| h.upper_ns(i).is_some_and(|u| (u as f64) < t_ns);
    // The bucket holding `t_us`: the first whose upper bound is not below
    // it (bounds increase; the last is unbounded).
    let (mut lo, mut hi) = (0, h.counts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if bound_below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let from = |i: usize| h.counts.get(i..).map_or(0, |c| c.iter().sum::<u64>());
    let surely = from(lo + 1);
    let holding = h.counts.get(lo).copied().unwrap_or(0) as f64;
    let share_above = match h.upper_ns(lo) {
        _ if !t_us.is_finite() => 0.0,
        // The unbounded bucket: no width to spread over.
        None => 1.0,
        Some(upper) => {
            let lower = h.lower_ns(lo) as f64;
            ((upper as f64 - t_ns) / (upper as f64 - lower)).clamp(0.0, 1.0)
        }
    };
    (surely, surely as f64 + share_above * holding)
}

/// Bounds on the `q` quantile of what `h` sampled, in microseconds: the
/// true quantile is above `.0` and at or below `.1`, each wrong with
/// probability at most `level`. `.0` is 0 and `.1` infinite when the data
/// cannot say more.
pub fn quantile_bounds(h: &Histogram, q: f64, level: Level) -> (f64, f64) {
    let n = h.total();
    let tail = 1.0 - q;
    // How many observations exceed each bucket's upper bound: those in
    // later buckets (surely and maybe are one at a bucket bound).
    let mut left = n;
    let exceeding: Vec<u64> = h
        .counts
        .iter()
        .map(|count| {
            left -= count;
            left
        })
        .collect();
    let edge_us = |i: usize| h.upper_ns(i).map(|u| u as f64 / 1e3);
    // Both tests are monotone in the edge (fewer observations exceed a
    // higher one), so a binary search finds where each flips.
    // Highest edge the quantile is surely above: more than `tail` of the
    // observations exceed it.
    let surely_below = exceeding.partition_point(|x| lower_above(*x, n, tail, level));
    let low = surely_below.checked_sub(1).and_then(edge_us).unwrap_or(0.0);
    // Lowest edge the quantile is surely at or below: at most `tail`
    // exceed it.
    let maybe_above = exceeding.partition_point(|x| !upper_at_most(*x as f64, n, tail, level));
    let high = edge_us(maybe_above).unwrap_or(f64::INFINITY);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_over_steps_and_bounds() {
        assert_eq!(level(0.05, 5, 4).0, 0.05 / 20.0);
        assert_eq!(level(0.05, 0, 0).0, 0.05);
    }

    /// Looked at every 20 of 400 draws, the bounds of 600 sequences
    /// exclude the true proportion in no more than `level` of the
    /// sequences: valid however often they are looked at.
    #[test]
    fn bounds_hold_at_every_look() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let (p, lvl) = (0.05, Level(0.05));
        let mut wrong = 0;
        for _ in 0..600 {
            let mut x = 0;
            for n in 1..=400u64 {
                x += u64::from(rng.random::<f64>() < p);
                // Looking at every 20th keeps the test fast; the bound
                // holds at all of them.
                if n % 20 == 0 && (lower(x, n, lvl) > p || upper(x as f64, n, lvl) < p) {
                    wrong += 1;
                    break;
                }
            }
        }
        assert!(wrong <= 30, "{wrong} of 600 sequences went wrong");
    }

    /// The shortcuts say what comparing the searched bounds says.
    #[test]
    fn comparisons_agree_with_the_bounds() {
        let l = Level(0.002);
        for n in [0u64, 1, 10, 200, 5000] {
            for x in [0, 1, 3, n / 100, n / 10, n / 2, n.saturating_sub(1), n] {
                for t in [-0.1, 0.0, 0.001, 0.01, 0.05, 0.3, 0.7, 0.999, 1.0] {
                    assert_eq!(
                        lower_above(x, n, t, l),
                        lower(x, n, l) > t,
                        "lower {x}/{n} vs {t}"
                    );
                    assert_eq!(
                        upper_at_most(x as f64, n, t, l),
                        upper(x as f64, n, l) <= t,
                        "upper {x}/{n} vs {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn bounds_bracket_the_estimate_and_tighten_with_data() {
        let l = Level(0.01);
        let (l1, u1) = (lower(10, 100, l), upper(10.0, 100, l));
        let (l2, u2) = (lower(100, 1000, l), upper(100.0, 1000, l));
        assert!(l1 < 0.1 && 0.1 < u1, "{l1} {u1}");
        assert!(l1 < l2 && u2 < u1, "{l1} {u1} {l2} {u2}");
        assert_eq!((lower(0, 0, l), upper(0.0, 0, l)), (0.0, 1.0));
        assert_eq!(lower(0, 50, l), 0.0);
        assert_eq!(upper(50.0, 50, l), 1.0);
        // 0 of 1,000: the upper bound is small but not 0.
        let u = upper(0.0, 1000, l);
        assert!(u > 0.0 && u < 0.01, "{u}");
    }

    #[test]
    fn quantile_bounds_bracket_the_bucket_of_the_quantile() {
        use canary_common::signals::{LATENCY_SUB_BITS, bucket_of_ns};
        let mut h = Histogram::latency();
        // 10,000 observations in the bucket of 1.5 ms, 50 in that of 12 ms.
        let (fast, slow) = (
            bucket_of_ns(1_500_000, LATENCY_SUB_BITS),
            bucket_of_ns(12_000_000, LATENCY_SUB_BITS),
        );
        h.counts[fast] = 10_000;
        h.counts[slow] = 50;
        let us = |ns: u64| ns as f64 / 1e3;
        let (lo, hi) = quantile_bounds(&h, 0.99, Level(0.001));
        assert_eq!(
            (lo, hi),
            (us(h.lower_ns(fast)), us(h.upper_ns(fast).unwrap()))
        );
        let fast_top = us(h.upper_ns(fast).unwrap());
        assert_eq!(above(&h, fast_top), (50, 50.0));
        // 1.5 ms in (1.441792, 1.572864] ms: 72,864 of 131,072 ns above.
        let share = (1_572_864.0 - 1_500_000.0) / 131_072.0;
        assert_eq!(above(&h, 1500.0), (50, 50.0 + share * 10_000.0));
        assert_eq!(above(&h, 0.0), (10_050, 10_050.0));
        assert_eq!(above(&h, f64::INFINITY), (0, 0.0));
        assert_eq!(
            quantile_bounds(&Histogram::latency(), 0.99, Level(0.01)),
            (0.0, f64::INFINITY)
        );
    }
}
