//! The rollout policy as a pure function: plan, state and what both
//! versions did since the step began → a decision with its reasons and the
//! next state. The driver gathers the evidence and carries the decision
//! out; nothing here reads a clock, a map or the network.
//!
//! Judgement, per interval:
//! - Too few attempts (requests plus refused connections) from either
//!   version this interval: inconclusive, whatever the checks say.
//! - Each check is pass, fail or inconclusive (see `stats`); a gate with no
//!   data or a failed query is inconclusive, never a pass.
//! - The interval fails if any check fails, else is inconclusive if any
//!   is, else passes.
//!
//! Counting: a failed interval adds to `failed` (rollback at
//! `failed_checks_limit`) and to a run (rollback at `consecutive_failures`
//! when set); `max_inconclusive` inconclusive intervals in a row pause the
//! rollout; `min_passes` passing intervals at a step step it up, and at the
//! last step promote.

use canary_common::WEIGHT_SCALE;
use serde::{Deserialize, Serialize};

use super::{
    plan::{Mode, RolloutPlan},
    stats::{Level, above, level, lower, quantile_bounds, upper},
};
use crate::signals::VersionSignals;

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Running,
    /// Stopped judging: too many inconclusive intervals, or an operator.
    Paused,
    RolledBack,
    Promoted,
    Aborted,
}

impl Phase {
    pub fn is_over(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Promoted | Phase::Aborted)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// What the driver is to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Stay at this step and evaluate again after the next interval.
    Hold,
    /// Move to `step` (an index into the plan's steps).
    StepUp { step: usize },
    /// Canary weight 0.
    Rollback,
    /// The last step held: the canary is the new stable.
    Promote,
    /// Stop judging until resumed.
    Pause,
}

/// One check's result in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `error_rate`, `error_ratio`, `p99_ms`, `p99_ratio` or `gate:NAME`.
    pub name: String,
    /// The point estimate (rate, ratio, milliseconds, gate value); None
    /// without data.
    pub value: Option<f64>,
    pub verdict: Verdict,
    /// The bounds and threshold behind the verdict, for the history.
    pub detail: String,
}

/// A gate's reading this interval: its value, no data (empty result), or
/// why the query failed.
#[derive(Clone, Debug, PartialEq)]
pub struct GateReading {
    pub name: String,
    pub value: Result<Option<f64>, String>,
}

/// What both versions did: since the current step began (the checks judge
/// all of it) and in this interval alone (the minimum applies to that). At
/// a 100 % step, where stable gets no new flows, `stable` is what it did at
/// the step before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub stable: VersionSignals,
    pub canary: VersionSignals,
    pub interval_attempts: [u64; 2],
    pub gates: Vec<GateReading>,
}

/// Decisions a rollout's history keeps: the latest, older ones go (the
/// state's counts still cover every look).
pub const MAX_HISTORY: usize = 100;

/// One decision as the history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at_unix_ms: u64,
    /// Look number in the rollout.
    pub look: u32,
    pub step: usize,
    pub weight_bp: u16,
    pub interval_attempts: [u64; 2],
    pub verdict: Verdict,
    pub action: Action,
    pub checks: Vec<CheckResult>,
    pub reason: String,
    /// Dry-run: the action was logged, not carried out.
    pub dry_run: bool,
}

/// A rollout's state: persisted after every decision, so a restart
/// resumes at the same step with the same counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub phase: Phase,
    /// Why it is paused or over.
    pub reason: String,
    pub step: usize,
    pub looks: u32,
    pub failed: u32,
    pub consecutive_failed: u32,
    pub inconclusive_streak: u32,
    pub passes_at_step: u32,
    pub started_unix_ms: u64,
    /// Which run of the rollout this is: canaryd hands out a new one at
    /// every start and every operator control (pause, resume, ...). A
    /// decision carries the generation it was taken on (in its `next`
    /// state) and is refused once the rollout has another: a look begun
    /// before an abort and a new start must not step the new rollout.
    #[serde(default)]
    pub generation: u64,
    pub history: Vec<Record>,
}

impl RolloutState {
    pub fn start(now_unix_ms: u64) -> RolloutState {
        RolloutState {
            phase: Phase::Running,
            reason: String::new(),
            step: 0,
            looks: 0,
            failed: 0,
            consecutive_failed: 0,
            inconclusive_streak: 0,
            passes_at_step: 0,
            started_unix_ms: now_unix_ms,
            generation: 0,
            history: vec![],
        }
    }
}

/// A decision: the action, why, and the state after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub verdict: Verdict,
    pub checks: Vec<CheckResult>,
    pub reason: String,
    pub next: RolloutState,
}

/// Judges one interval of a running rollout.
pub fn evaluate(
    plan: &RolloutPlan,
    state: &RolloutState,
    evidence: &Evidence,
    now_unix_ms: u64,
) -> Decision {
    let mut next = state.clone();
    next.looks += 1;
    let checks = judge(plan, evidence);
    let [stable_n, canary_n] = evidence.interval_attempts;
    // At 100 % stable gets no new flows: its minimum does not apply, and
    // the driver hands in stable's evidence from the step before.
    let stable_expected = plan
        .steps
        .get(state.step)
        .is_some_and(|w| u32::from(*w) < WEIGHT_SCALE);
    let too_few = canary_n < plan.min_requests || (stable_expected && stable_n < plan.min_requests);
    let (verdict, why) = if too_few {
        (
            Verdict::Inconclusive,
            format!(
                "too few requests this interval: stable {stable_n}, canary {canary_n} (min_requests {})",
                plan.min_requests
            ),
        )
    } else if let Some(c) = checks.iter().find(|c| c.verdict == Verdict::Fail) {
        (Verdict::Fail, format!("{} failed: {}", c.name, c.detail))
    } else if let Some(c) = checks.iter().find(|c| c.verdict == Verdict::Inconclusive) {
        (
            Verdict::Inconclusive,
            format!("{} inconclusive: {}", c.name, c.detail),
        )
    } else {
        (Verdict::Pass, "every check passed".to_owned())
    };

    let last = plan.steps.len().saturating_sub(1);
    let action = match verdict {
        Verdict::Fail => {
            next.failed += 1;
            next.consecutive_failed += 1;
            next.inconclusive_streak = 0;
            next.passes_at_step = 0;
            let in_all = next.failed >= plan.failed_checks_limit;
            let in_a_row = plan.consecutive_failures > 0
                && next.consecutive_failed >= plan.consecutive_failures;
            if in_all || in_a_row {
                Action::Rollback
            } else {
                Action::Hold
            }
        }
        Verdict::Inconclusive => {
            next.consecutive_failed = 0;
            next.inconclusive_streak += 1;
            if next.inconclusive_streak >= plan.max_inconclusive {
                Action::Pause
            } else {
                Action::Hold
            }
        }
        Verdict::Pass => {
            next.consecutive_failed = 0;
            next.inconclusive_streak = 0;
            next.passes_at_step += 1;
            if next.passes_at_step < plan.min_passes {
                Action::Hold
            } else if next.step >= last {
                Action::Promote
            } else {
                Action::StepUp {
                    step: next.step + 1,
                }
            }
        }
    };
    let reason = match action {
        Action::Rollback => format!(
            "rollback: {why} ({} failed intervals of {} allowed, {} in a row)",
            next.failed, plan.failed_checks_limit, next.consecutive_failed
        ),
        Action::Pause => format!(
            "paused: {} inconclusive intervals in a row (max_inconclusive {}); last: {why}",
            next.inconclusive_streak, plan.max_inconclusive
        ),
        Action::Promote => format!("promote: the last step held ({why})"),
        Action::StepUp { step } => format!(
            "step up to {:.2}%: {why}",
            f64::from(plan.steps[step]) / 100.0
        ),
        Action::Hold => format!("hold: {why}"),
    };
    match action {
        Action::Rollback => {
            next.phase = Phase::RolledBack;
            next.reason = reason.clone();
        }
        Action::Pause => {
            next.phase = Phase::Paused;
            next.reason = reason.clone();
        }
        Action::Promote => {
            next.phase = Phase::Promoted;
            next.reason = reason.clone();
        }
        Action::StepUp { step } => {
            next.step = step;
            next.passes_at_step = 0;
        }
        Action::Hold => {}
    }
    next.history.push(Record {
        at_unix_ms: now_unix_ms,
        look: next.looks,
        step: state.step,
        weight_bp: plan.steps.get(state.step).copied().unwrap_or(0),
        interval_attempts: evidence.interval_attempts,
        verdict,
        action,
        checks: checks.clone(),
        reason: reason.clone(),
        dry_run: plan.mode == Mode::DryRun,
    });
    // The state file and every status answer carry the history: a rollout
    // that holds for days must not grow them without bound. The counts
    // (looks, failed, ...) still cover every look.
    let excess = next.history.len().saturating_sub(MAX_HISTORY);
    next.history.drain(..excess);
    Decision {
        action,
        verdict,
        checks,
        reason,
        next,
    }
}

/// Every enabled check, at its share of the error budget.
fn judge(plan: &RolloutPlan, ev: &Evidence) -> Vec<CheckResult> {
    let c = &plan.checks;
    let lvl = level(plan.alpha, plan.steps.len(), c.bounds());
    let (stable, canary) = (&ev.stable, &ev.canary);
    let mut out = vec![];
    if let Some(t) = c.max_error_rate {
        out.push(error_rate(canary, t, lvl));
    }
    if let Some(r) = c.max_error_ratio {
        out.push(error_ratio(stable, canary, r, c.error_margin, lvl));
    }
    if let Some(t) = c.max_p99_ms {
        out.push(p99_ms(canary, t, lvl));
    }
    if let Some(r) = c.max_p99_ratio {
        out.push(p99_ratio(stable, canary, r, c.p99_margin_ms, lvl));
    }
    for g in &ev.gates {
        out.push(gate(plan, g));
    }
    out
}

fn attempts(v: &VersionSignals) -> u64 {
    v.requests + v.connections_refused
}

fn three_way(fail: bool, pass: bool) -> Verdict {
    if fail {
        Verdict::Fail
    } else if pass {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    }
}

fn error_rate(canary: &VersionSignals, max: f64, lvl: Level) -> CheckResult {
    let (x, n) = (canary.errors(), attempts(canary));
    let (lo, hi) = (lower(x, n, lvl), upper(x, n, lvl));
    CheckResult {
        name: "error_rate".into(),
        value: canary.error_rate(),
        verdict: three_way(lo > max, hi <= max),
        detail: format!(
            "canary {x} errors in {n} attempts, rate in [{lo:.4}, {hi:.4}] (level {:.2e}), max {max}",
            lvl.0
        ),
    }
}

fn error_ratio(
    stable: &VersionSignals,
    canary: &VersionSignals,
    ratio: f64,
    margin: f64,
    lvl: Level,
) -> CheckResult {
    let (xc, nc) = (canary.errors(), attempts(canary));
    let (xs, ns) = (stable.errors(), attempts(stable));
    let (c_lo, c_hi) = (lower(xc, nc, lvl), upper(xc, nc, lvl));
    let (s_lo, s_hi) = (lower(xs, ns, lvl), upper(xs, ns, lvl));
    let value = match (canary.error_rate(), stable.error_rate()) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    CheckResult {
        name: "error_ratio".into(),
        value,
        verdict: three_way(c_lo > ratio * s_hi + margin, c_hi <= ratio * s_lo + margin),
        detail: format!(
            "canary rate in [{c_lo:.4}, {c_hi:.4}], stable in [{s_lo:.4}, {s_hi:.4}]; harm above {ratio} x stable + {margin}"
        ),
    }
}

/// The share of responses slower than the p99 allows.
const P99_TAIL: f64 = 0.01;

fn p99_ms(canary: &VersionSignals, max_ms: f64, lvl: Level) -> CheckResult {
    let h = &canary.latency;
    let n = h.total();
    let (surely, maybe) = above(h, max_ms * 1000.0);
    let (lo, hi) = (lower(surely, n, lvl), upper(maybe, n, lvl));
    CheckResult {
        name: "p99_ms".into(),
        value: h.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
        verdict: three_way(lo > P99_TAIL, hi <= P99_TAIL),
        detail: format!(
            "share of {n} canary responses slower than {max_ms} ms in [{lo:.4}, {hi:.4}]; harm above {P99_TAIL}"
        ),
    }
}

fn p99_ratio(
    stable: &VersionSignals,
    canary: &VersionSignals,
    ratio: f64,
    margin_ms: f64,
    lvl: Level,
) -> CheckResult {
    let (s_lo, s_hi) = quantile_bounds(&stable.latency, 0.99, lvl);
    let h = &canary.latency;
    let n = h.total();
    let margin_us = margin_ms * 1000.0;
    let fail_at = ratio * s_hi + margin_us;
    let pass_at = ratio * s_lo + margin_us;
    let fail = fail_at.is_finite() && lower(above(h, fail_at).0, n, lvl) > P99_TAIL;
    let pass = upper(above(h, pass_at).1, n, lvl) <= P99_TAIL;
    let value = match (h.quantile(0.99), stable.latency.quantile(0.99)) {
        (Some(c), Some(s)) if !s.is_zero() => Some(c.as_secs_f64() / s.as_secs_f64()),
        _ => None,
    };
    CheckResult {
        name: "p99_ratio".into(),
        value,
        verdict: three_way(fail, pass),
        detail: format!(
            "stable p99 in ({:.3}, {:.3}] ms; harm above {ratio} x stable + {margin_ms} ms",
            s_lo / 1e3,
            s_hi / 1e3
        ),
    }
}

fn gate(plan: &RolloutPlan, g: &GateReading) -> CheckResult {
    let spec = plan.gates.iter().find(|s| s.name == g.name);
    let (min, max) = spec.map_or((None, None), |s| (s.min, s.max));
    let bounds = format!(
        "min {}, max {}",
        min.map_or("-".into(), |v| v.to_string()),
        max.map_or("-".into(), |v| v.to_string())
    );
    let (value, verdict, detail) = match &g.value {
        Err(e) => (None, Verdict::Inconclusive, format!("query failed: {e}")),
        Ok(None) => (None, Verdict::Inconclusive, "no data".to_owned()),
        // +Inf is above every min and NaN compares false with every bound:
        // neither may pass a gate (the query client refuses both too).
        Ok(Some(v)) if !v.is_finite() => (
            None,
            Verdict::Inconclusive,
            format!("value {v} is not a finite number ({bounds})"),
        ),
        Ok(Some(v)) => {
            let low = min.is_some_and(|m| *v < m);
            let high = max.is_some_and(|m| *v > m);
            let verdict = if low || high {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            (Some(*v), verdict, format!("value {v} ({bounds})"))
        }
    };
    CheckResult {
        name: format!("gate:{}", g.name),
        value,
        verdict,
        detail,
    }
}
