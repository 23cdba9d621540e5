//! What the demo saw over time: canaryd's status (weight, each version's
//! kernel signals) sampled at a fixed pace, and the rollout's decisions;
//! and from them, per window, each version's requests/s, error rate and
//! p99 (the same `VersionSignals` arithmetic canaryctl and the controller
//! use).

use canary_userspace::{
    api::ServiceStatus,
    model::rollout::{Action, Record},
    model::signals::VersionSignals,
    model::weight::Weight,
};
use serde::Serialize;

/// One reading of canaryd's status.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at_unix_ms: u64,
    pub weight: Weight,
    /// Cumulative, [stable, canary].
    pub signals: [VersionSignals; 2],
}

impl Sample {
    pub fn of(at_unix_ms: u64, svc: &ServiceStatus) -> Sample {
        Sample {
            at_unix_ms,
            weight: svc.weight,
            signals: [svc.stable.signals.clone(), svc.canary.signals.clone()],
        }
    }
}

/// One window of the chart, from the samples at its ends.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// End of the window, seconds since the rollout started.
    pub t: f64,
    /// The chart's weight axis is in percent.
    pub weight_percent: f64,
    pub requests_per_s: [f64; 2],
    pub error_rate: [Option<f64>; 2],
    pub p99_ms: [Option<f64>; 2],
}

/// Something that happened, placed on the time axis.
#[derive(Clone, Debug, Serialize)]
pub struct Mark {
    pub t: f64,
    pub label: String,
    pub kind: MarkKind,
}

/// What a mark is, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MarkKind {
    /// A decision that changed something (a step, a promotion, a pause).
    Decision,
    Rollback,
    /// Something done to the fleet or that it did on its own (a leader
    /// killed, another taking over).
    Fleet,
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// When the rollout started; the time axis' zero.
    pub start_unix_ms: u64,
    pub samples: Vec<Sample>,
    pub decisions: Vec<Record>,
}

/// Seconds from `start_unix_ms` to `unix_ms`: the chart's time axis.
pub fn seconds_since(start_unix_ms: u64, unix_ms: u64) -> f64 {
    (unix_ms as f64 - start_unix_ms as f64) / 1000.0
}

/// The traffic between two samples `a` and `b` (`b` later), placed at
/// `b`'s time since `start_unix_ms`.
pub fn window(start_unix_ms: u64, a: &Sample, b: &Sample) -> Point {
    let secs = (b.at_unix_ms.saturating_sub(a.at_unix_ms)) as f64 / 1000.0;
    let delta = [0, 1].map(|v| b.signals[v].since(&a.signals[v]));
    Point {
        t: seconds_since(start_unix_ms, b.at_unix_ms),
        weight_percent: b.weight.percent(),
        requests_per_s: [0, 1].map(|v| {
            if secs > 0.0 {
                delta[v].requests as f64 / secs
            } else {
                0.0
            }
        }),
        error_rate: [0, 1].map(|v| delta[v].error_rate()),
        p99_ms: [0, 1].map(|v| {
            delta[v]
                .latency
                .quantile(0.99)
                .map(|d| d.as_secs_f64() * 1000.0)
        }),
    }
}

/// The decisions that changed something (step, rollback, promotion,
/// pause), as chart marks; `steps` names the plan's steps.
pub fn decision_marks(start_unix_ms: u64, decisions: &[Record], steps: &[Weight]) -> Vec<Mark> {
    decisions
        .iter()
        .filter_map(|r| {
            let label = match r.action {
                Action::Hold => return None,
                Action::StepUp { step } => match steps.get(step) {
                    Some(weight) => format!("step {weight}"),
                    None => format!("step {}", step + 1),
                },
                Action::Rollback => "rollback".to_owned(),
                Action::Promote => "promoted".to_owned(),
                Action::Pause => "paused".to_owned(),
            };
            let kind = if r.action == Action::Rollback {
                MarkKind::Rollback
            } else {
                MarkKind::Decision
            };
            Some(Mark {
                t: seconds_since(start_unix_ms, r.at_unix_ms),
                label,
                kind,
            })
        })
        .collect()
}

impl Timeline {
    /// One point per `every` samples: the traffic between a sample and the
    /// one `every` before it.
    pub fn points(&self, every: usize) -> Vec<Point> {
        let every = every.max(1);
        (every..self.samples.len())
            .step_by(every)
            .map(|i| {
                window(
                    self.start_unix_ms,
                    &self.samples[i - every],
                    &self.samples[i],
                )
            })
            .collect()
    }

    /// `decision_marks` of this timeline's decisions.
    pub fn marks(&self, steps: &[Weight]) -> Vec<Mark> {
        decision_marks(self.start_unix_ms, &self.decisions, steps)
    }
}

/// A short description of a decision, for the live log.
pub fn describe(r: &Record) -> String {
    let action = match r.action {
        Action::Hold => "hold".to_owned(),
        Action::StepUp { step } => format!("step up to step {}", step + 1),
        Action::Rollback => "ROLLBACK".to_owned(),
        Action::Promote => "PROMOTE".to_owned(),
        Action::Pause => "pause".to_owned(),
    };
    let checks: Vec<String> = r
        .checks
        .iter()
        .map(|c| {
            let value = c
                .value
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "no data".into());
            format!("{} {} {:?}", c.name, value, c.verdict).to_lowercase()
        })
        .collect();
    format!(
        "look {} at {:.2}: {} -> {action}; requests {}/{}; {}; {}",
        r.look,
        r.weight,
        format!("{:?}", r.verdict).to_lowercase(),
        r.interval_attempts[0],
        r.interval_attempts[1],
        checks.join(", "),
        r.reason
    )
}

/// A sample at `weight_bp` with `requests` per version, `errors` of them
/// 5xx: the timelines' tests build theirs with it.
#[cfg(test)]
pub(crate) fn test_sample(
    at_unix_ms: u64,
    weight_bp: u16,
    requests: [u64; 2],
    errors: [u64; 2],
) -> Sample {
    let version = |v: usize| {
        let mut s = VersionSignals {
            requests: requests[v],
            http: vec![0; 6],
            ..VersionSignals::default()
        };
        s.http[4] = errors[v];
        s
    };
    Sample {
        at_unix_ms,
        weight: Weight::from_bp(weight_bp).unwrap(),
        signals: [version(0), version(1)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_userspace::model::rollout::Verdict;

    fn sample(at_unix_ms: u64, requests: [u64; 2], errors: [u64; 2]) -> Sample {
        test_sample(at_unix_ms, 500, requests, errors)
    }

    #[test]
    fn points_are_rates_over_each_window() {
        let tl = Timeline {
            start_unix_ms: 1_000,
            samples: vec![
                sample(1_000, [0, 0], [0, 0]),
                sample(1_500, [500, 20], [0, 2]),
                sample(2_000, [1_000, 50], [0, 5]),
            ],
            decisions: vec![],
        };
        let p = tl.points(2);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].t, 1.0);
        assert_eq!(p[0].requests_per_s, [1_000.0, 50.0]);
        assert_eq!(p[0].error_rate, [Some(0.0), Some(0.1)]);
        assert_eq!(p[0].p99_ms, [None, None]);
    }

    #[test]
    fn only_decisions_that_change_something_are_marked() {
        let record = |at, action| Record {
            at_unix_ms: at,
            look: 1,
            step: 0,
            weight: Weight::from_bp(500).unwrap(),
            interval_attempts: [100, 5],
            verdict: Verdict::Fail,
            action,
            checks: vec![],
            reason: String::new(),
            dry_run: false,
        };
        let tl = Timeline {
            start_unix_ms: 0,
            samples: vec![],
            decisions: vec![
                record(3_000, Action::Hold),
                record(4_500, Action::StepUp { step: 1 }),
                record(6_000, Action::Rollback),
            ],
        };
        let marks = tl.marks(&[
            Weight::from_bp(500).unwrap(),
            Weight::from_bp(2500).unwrap(),
        ]);
        assert_eq!(marks.len(), 2);
        assert_eq!((marks[0].t, marks[0].label.as_str()), (4.5, "step 25%"));
        assert_eq!((marks[1].t, marks[1].kind), (6.0, MarkKind::Rollback));
    }
}
