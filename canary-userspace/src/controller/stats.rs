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

use crate::signals::Histogram;

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

/// Log of the mixture martingale against `p0` after `x` of `n`.
fn log_evidence(x: u64, n: u64, p0: f64) -> f64 {
    let (x, n) = (x as f64, n as f64);
    ln_beta(x + PRIOR.0, n - x + PRIOR.1)
        - ln_beta(PRIOR.0, PRIOR.1)
        - x * p0.ln()
        - (n - x) * (1.0 - p0).ln()
}

/// The edge of the confidence sequence between `inside` (a proportion it
/// holds) and `outside`: where the evidence against crosses `threshold`.
fn edge(x: u64, n: u64, threshold: f64, mut inside: f64, mut outside: f64) -> f64 {
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
    let x = x.min(n);
    let estimate = x as f64 / n as f64;
    edge(x, n, (1.0 / level.0).ln(), estimate, 1e-12)
}

/// Largest proportion still consistent with `x` of `n` at `level`.
pub fn upper(x: u64, n: u64, level: Level) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let x = x.min(n);
    if x == n {
        return 1.0;
    }
    let estimate = x as f64 / n as f64;
    edge(x, n, (1.0 / level.0).ln(), estimate, 1.0 - 1e-12)
}

/// Observations of `h` that are surely above `t_us` (in buckets whose
/// lower bound is at or above it) and that may be (in buckets whose upper
/// bound is above it): the histogram cannot tell inside a bucket.
pub fn above(h: &Histogram, t_us: f64) -> (u64, u64) {
    let mut surely = 0;
    let mut maybe = 0;
    for (i, n) in h.counts.iter().enumerate() {
        let lower_us = h.lower_ns(i) as f64 / 1e3;
        let upper_us = h.upper_ns(i).map_or(f64::INFINITY, |u| u as f64 / 1e3);
        if lower_us >= t_us {
            surely += n;
        }
        if upper_us > t_us {
            maybe += n;
        }
    }
    (surely, maybe)
}

/// Bounds on the `q` quantile of what `h` sampled, in microseconds: the
/// true quantile is above `.0` and at or below `.1`, each wrong with
/// probability at most `level`. `.0` is 0 and `.1` infinite when the data
/// cannot say more.
pub fn quantile_bounds(h: &Histogram, q: f64, level: Level) -> (f64, f64) {
    let n = h.total();
    let tail = 1.0 - q;
    let edges: Vec<f64> = (0..h.counts.len())
        .map_while(|i| h.upper_ns(i))
        .map(|u| u as f64 / 1e3)
        .collect();
    // Both tests are monotone in the edge (fewer observations exceed a
    // higher one), so a binary search finds where each flips.
    // Highest edge the quantile is surely above: more than `tail` of the
    // observations surely exceed it.
    let surely_below = edges.partition_point(|t| lower(above(h, *t).0, n, level) > tail);
    let low = if surely_below == 0 {
        0.0
    } else {
        edges[surely_below - 1]
    };
    // Lowest edge the quantile is surely at or below: at most `tail` may
    // exceed it.
    let maybe_above = edges.partition_point(|t| upper(above(h, *t).1, n, level) > tail);
    let high = edges.get(maybe_above).copied().unwrap_or(f64::INFINITY);
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
                if n % 20 == 0 && (lower(x, n, lvl) > p || upper(x, n, lvl) < p) {
                    wrong += 1;
                    break;
                }
            }
        }
        assert!(wrong <= 30, "{wrong} of 600 sequences went wrong");
    }

    #[test]
    fn bounds_bracket_the_estimate_and_tighten_with_data() {
        let l = Level(0.01);
        let (l1, u1) = (lower(10, 100, l), upper(10, 100, l));
        let (l2, u2) = (lower(100, 1000, l), upper(100, 1000, l));
        assert!(l1 < 0.1 && 0.1 < u1, "{l1} {u1}");
        assert!(l1 < l2 && u2 < u1, "{l1} {u1} {l2} {u2}");
        assert_eq!((lower(0, 0, l), upper(0, 0, l)), (0.0, 1.0));
        assert_eq!(lower(0, 50, l), 0.0);
        assert_eq!(upper(50, 50, l), 1.0);
        // 0 of 1,000: the upper bound is small but not 0.
        let u = upper(0, 1000, l);
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
        assert_eq!(above(&h, fast_top), (50, 50));
        assert_eq!(above(&h, 1500.0), (50, 10_050));
        assert_eq!(
            quantile_bounds(&Histogram::latency(), 0.99, Level(0.01)),
            (0.0, f64::INFINITY)
        );
    }
}
