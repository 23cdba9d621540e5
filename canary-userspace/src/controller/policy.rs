//! The rollout policy as a pure function: plan, state and what both
//! versions did since the step began → a decision with its reasons, its
//! effect on the data path (`effect`) and the next state. The driver
//! gathers the evidence and the daemon carries the effect out; nothing
//! here reads a clock, a map or the network.
//!
//! Judgement, per interval:
//! - No new attempts (requests plus refused connections) from the canary,
//!   or from stable below 100 %, this interval: inconclusive, nothing new
//!   to judge.
//! - Fewer than `min_requests` attempts from either version since the step
//!   began: inconclusive, whatever the checks say.
//! - Each check is pass, fail or inconclusive (see `stats`); a gate with no
//!   data or a failed query is inconclusive, never a pass.
//! - The interval fails if any check fails, else is inconclusive if any
//!   is, else passes.
//!
//! Counting: a failed interval adds to `failed` (rollback at
//! `failed_checks_limit`) and to a run (rollback at `consecutive_failures`
//! when set); `min_passes` passing intervals at a step step it up, and at
//! the last step promote. An inconclusive interval holds; it counts toward
//! the pause streak (`max_inconclusive` in a row pause) only when more
//! canary traffic would not settle it: no new attempts this interval, a
//! gate that did not answer, or a check whose estimates no amount of data
//! would carry past its bounds. A step whose evidence still grows toward a
//! verdict holds (low traffic just takes longer) until
//! `max_step_duration`, when one is set.

use serde::{Deserialize, Serialize};

use super::{
    effect::{Act, Effect, effect},
    plan::{Checks, Mode, RolloutPlan},
    stats::{
        Level, above, level, lower, lower_above, needed, quantile_bounds, upper, upper_at_most,
    },
};
use crate::model::{
    grpc_code::GrpcCodes,
    rollout::{Action, CheckResult, MAX_HISTORY, Need, Phase, Record, Verdict},
    signals::{Histogram, VersionSignals},
    weight::Weight,
};

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
    /// Looks at the current step since it began or was resumed: with the
    /// interval, how long it has been judged (`max_step_duration`).
    #[serde(default)]
    pub step_looks: u32,
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
            step_looks: 0,
            started_unix_ms: now_unix_ms,
            generation: 0,
            history: vec![],
        }
    }
}

/// A decision: the action, why, what it changes in the data path, and the
/// state after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// What carrying the action out writes and resets (nothing in dry-run).
    pub effect: Effect,
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
    next.step_looks += 1;
    let [stable_new, canary_new] = evidence.interval_attempts;
    let (stable_n, canary_n) = (attempts(&evidence.stable), attempts(&evidence.canary));
    // At 100 % stable gets no new flows: its minimum does not apply, and
    // the driver hands in stable's evidence from the step before.
    let weight = plan.step_weight(state.step);
    let stable_expected = weight < Weight::FULL;
    let checks = judge(plan, evidence, stable_expected);
    // `settling`: inconclusive, but the step's evidence grew and more of
    // it is expected to settle every open check.
    let (verdict, why, settling) = if canary_new == 0 || (stable_expected && stable_new == 0) {
        (
            Verdict::Inconclusive,
            format!("no new requests this interval: stable {stable_new}, canary {canary_new}"),
            false,
        )
    } else if canary_n < plan.min_requests || (stable_expected && stable_n < plan.min_requests) {
        (
            Verdict::Inconclusive,
            format!(
                "too few requests since the step began: stable {stable_n}, canary {canary_n} (min_requests {})",
                plan.min_requests
            ),
            true,
        )
    } else if let Some(c) = checks.iter().find(|c| c.verdict == Verdict::Fail) {
        (
            Verdict::Fail,
            format!("{} failed: {}", c.name, c.detail),
            false,
        )
    } else if let Some(c) = open_check(&checks) {
        let why = match c.needs {
            Some(Need { needed, got }) => format!(
                "{} inconclusive: needs ~{needed} canary {} at this step; got {got} ({})",
                c.name,
                evidence_noun(&c.name),
                c.detail
            ),
            None => format!(
                "{} inconclusive, and more canary traffic would not settle it: {}",
                c.name, c.detail
            ),
        };
        (Verdict::Inconclusive, why, c.needs.is_some())
    } else {
        (Verdict::Pass, "every check passed".to_owned(), false)
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
            if !settling {
                next.inconclusive_streak += 1;
            }
            let judged_for = plan.interval * next.step_looks;
            if next.inconclusive_streak >= plan.max_inconclusive
                || plan.max_step_duration.is_some_and(|max| judged_for >= max)
            {
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
        Action::Pause if next.inconclusive_streak >= plan.max_inconclusive => format!(
            "paused: {} inconclusive intervals in a row that more canary traffic would not settle \
             (max_inconclusive {}); last: {why}",
            next.inconclusive_streak, plan.max_inconclusive
        ),
        Action::Pause => format!(
            "paused: the step at {weight:.2} is still inconclusive after {} looks ({} s; max_step_duration {} s); last: {why}",
            next.step_looks,
            (plan.interval * next.step_looks).as_secs_f64(),
            plan.max_step_duration.unwrap_or_default().as_secs_f64(),
        ),
        Action::Promote => format!("promote: the last step held ({why})"),
        Action::StepUp { step } => format!("step up to {:.2}: {why}", plan.steps[step]),
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
            next.step_looks = 0;
        }
        Action::Hold => {}
    }
    next.history.push(Record {
        at_unix_ms: now_unix_ms,
        look: next.looks,
        step: state.step,
        weight,
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
        effect: effect(Some(plan), state.step, Act::Look(action)),
        verdict,
        checks,
        reason,
        next,
    }
}

/// Every enabled check, at its share of the error budget. An inconclusive
/// kernel check also says how much canary evidence it needs: the least at
/// which it would be settled, the estimates staying where they are (both
/// versions' evidence scaled up together; stable's only while it grows).
fn judge(plan: &RolloutPlan, ev: &Evidence, stable_grows: bool) -> Vec<CheckResult> {
    let lvl = level(plan.alpha, plan.steps.len(), plan.checks.bounds());
    let mut out: Vec<CheckResult> = KernelCheck::enabled(&plan.checks, plan.grpc_error_codes)
        .into_iter()
        .map(|check| {
            let mut result = check.result(&ev.stable, &ev.canary, lvl);
            let got = check.evidence(&ev.canary);
            if result.verdict == Verdict::Inconclusive && got > 0 {
                let settled = |n: u64| {
                    let f = n as f64 / got as f64;
                    let stable = if stable_grows {
                        scaled(&ev.stable, f)
                    } else {
                        ev.stable.clone()
                    };
                    check.verdict(&stable, &scaled(&ev.canary, f), lvl) != Verdict::Inconclusive
                };
                result.needs = needed(got, settled).map(|needed| Need { needed, got });
            }
            result
        })
        .collect();
    for g in &ev.gates {
        out.push(gate(plan, g));
    }
    out
}

/// `v`'s evidence `f` times over, in the same proportions.
fn scaled(v: &VersionSignals, f: f64) -> VersionSignals {
    let times = |x: u64| (x as f64 * f).round() as u64;
    VersionSignals {
        requests: times(v.requests),
        responses: times(v.responses),
        http: v.http.iter().map(|x| times(*x)).collect(),
        backend_resets: times(v.backend_resets),
        connections_refused: times(v.connections_refused),
        latency: Histogram {
            counts: v.latency.counts.iter().map(|x| times(*x)).collect(),
            sum_ns: v.latency.sum_ns,
        },
        ..v.clone()
    }
}

/// The inconclusive check the reason names: one that more evidence would
/// not settle if there is one (it decides the pause streak), else the one
/// that needs the most.
fn open_check(checks: &[CheckResult]) -> Option<&CheckResult> {
    let open = || checks.iter().filter(|c| c.verdict == Verdict::Inconclusive);
    open()
        .find(|c| c.needs.is_none())
        .or_else(|| open().max_by_key(|c| c.needs.map(|n| n.needed)))
}

fn evidence_noun(check: &str) -> &'static str {
    if check.starts_with("p99") {
        "responses"
    } else {
        "requests"
    }
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

/// A check on the kernel's signals, judged on what both versions did since
/// the step began.
#[derive(Clone, Copy)]
enum KernelCheck {
    /// `codes`: the grpc-status codes that count as errors.
    ErrorRate {
        max: f64,
        codes: GrpcCodes,
    },
    ErrorRatio {
        ratio: f64,
        margin: f64,
        codes: GrpcCodes,
    },
    P99Ms {
        max_ms: f64,
    },
    P99Ratio {
        ratio: f64,
        margin_ms: f64,
    },
}

/// The share of responses slower than the p99 allows.
const P99_TAIL: f64 = 0.01;

impl KernelCheck {
    fn enabled(c: &Checks, codes: GrpcCodes) -> Vec<KernelCheck> {
        [
            c.max_error_rate
                .map(|max| KernelCheck::ErrorRate { max, codes }),
            c.max_error_ratio.map(|ratio| KernelCheck::ErrorRatio {
                ratio,
                margin: c.error_margin,
                codes,
            }),
            c.max_p99_ms.map(|max_ms| KernelCheck::P99Ms { max_ms }),
            c.max_p99_ratio.map(|ratio| KernelCheck::P99Ratio {
                ratio,
                margin_ms: c.p99_margin_ms,
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The canary's evidence it judges: attempts for errors, responses for
    /// latency.
    fn evidence(self, canary: &VersionSignals) -> u64 {
        match self {
            KernelCheck::ErrorRate { .. } | KernelCheck::ErrorRatio { .. } => attempts(canary),
            KernelCheck::P99Ms { .. } | KernelCheck::P99Ratio { .. } => canary.latency.total(),
        }
    }

    /// The verdict alone (finding what a check needs judges it many times):
    /// it fails only when even the lower bound is past the threshold, and
    /// passes only when even the upper bound is within it.
    fn verdict(self, stable: &VersionSignals, canary: &VersionSignals, lvl: Level) -> Verdict {
        let ((x_fail, x_pass), n, (fail_at, pass_at)) = match self {
            KernelCheck::ErrorRate { max, codes } => {
                let x = canary.errors_with(codes);
                ((x, x as f64), attempts(canary), (max, max))
            }
            KernelCheck::ErrorRatio {
                ratio,
                margin,
                codes,
            } => {
                let x = canary.errors_with(codes);
                let (s_lo, s_hi) = error_rate_bounds(stable, lvl, codes);
                let limits = (ratio * s_hi + margin, ratio * s_lo + margin);
                ((x, x as f64), attempts(canary), limits)
            }
            KernelCheck::P99Ms { max_ms } => {
                let h = &canary.latency;
                (above(h, max_ms * 1000.0), h.total(), (P99_TAIL, P99_TAIL))
            }
            KernelCheck::P99Ratio { ratio, margin_ms } => {
                let h = &canary.latency;
                let counts = p99_ratio_tails(stable, h, ratio, margin_ms, lvl).0;
                (counts, h.total(), (P99_TAIL, P99_TAIL))
            }
        };
        three_way(
            lower_above(x_fail, n, fail_at, lvl),
            upper_at_most(x_pass, n, pass_at, lvl),
        )
    }

    /// The verdict with its value and the bounds behind it, for the history.
    fn result(self, stable: &VersionSignals, canary: &VersionSignals, lvl: Level) -> CheckResult {
        let verdict = self.verdict(stable, canary, lvl);
        let (name, value, detail) = match self {
            KernelCheck::ErrorRate { max, codes } => {
                let (x, n) = (canary.errors_with(codes), attempts(canary));
                let (lo, hi) = (lower(x, n, lvl), upper(x as f64, n, lvl));
                (
                    "error_rate",
                    canary.error_rate_with(codes),
                    format!(
                        "canary {x} errors in {n} attempts, rate in [{lo:.4}, {hi:.4}] (level {:.2e}), max {max}",
                        lvl.0
                    ),
                )
            }
            KernelCheck::ErrorRatio {
                ratio,
                margin,
                codes,
            } => {
                let (c_lo, c_hi) = error_rate_bounds(canary, lvl, codes);
                let (s_lo, s_hi) = error_rate_bounds(stable, lvl, codes);
                let value = match (canary.error_rate_with(codes), stable.error_rate_with(codes)) {
                    (Some(c), Some(s)) if s > 0.0 => Some(c / s),
                    _ => None,
                };
                (
                    "error_ratio",
                    value,
                    format!(
                        "canary rate in [{c_lo:.4}, {c_hi:.4}], stable in [{s_lo:.4}, {s_hi:.4}]; harm above {ratio} x stable + {margin}"
                    ),
                )
            }
            KernelCheck::P99Ms { max_ms } => {
                let h = &canary.latency;
                let n = h.total();
                let (surely, spread) = above(h, max_ms * 1000.0);
                let (lo, hi) = (lower(surely, n, lvl), upper(spread, n, lvl));
                (
                    "p99_ms",
                    h.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
                    format!(
                        "share of {n} canary responses slower than {max_ms} ms in [{lo:.4}, {hi:.4}]; harm above {P99_TAIL}"
                    ),
                )
            }
            KernelCheck::P99Ratio { ratio, margin_ms } => {
                let h = &canary.latency;
                let (s_lo, s_hi) = p99_ratio_tails(stable, h, ratio, margin_ms, lvl).1;
                let value = match (h.quantile(0.99), stable.latency.quantile(0.99)) {
                    (Some(c), Some(s)) if !s.is_zero() => Some(c.as_secs_f64() / s.as_secs_f64()),
                    _ => None,
                };
                (
                    "p99_ratio",
                    value,
                    format!(
                        "stable p99 in ({:.3}, {:.3}] ms; harm above {ratio} x stable + {margin_ms} ms",
                        s_lo / 1e3,
                        s_hi / 1e3
                    ),
                )
            }
        };
        CheckResult {
            name: name.into(),
            value,
            verdict,
            detail,
            needs: None,
        }
    }
}

/// Bounds on a version's error rate.
fn error_rate_bounds(v: &VersionSignals, lvl: Level, codes: GrpcCodes) -> (f64, f64) {
    let (x, n) = (v.errors_with(codes), attempts(v));
    (lower(x, n, lvl), upper(x as f64, n, lvl))
}

/// The canary's responses slower than the ratio's limit: surely, with the
/// limit at stable's upper bound (what it may fail on), and spread evenly
/// in the bucket holding the limit at stable's lower bound (what it may
/// pass on; see `stats::above`); and stable's p99 bounds in microseconds.
fn p99_ratio_tails(
    stable: &VersionSignals,
    canary: &Histogram,
    ratio: f64,
    margin_ms: f64,
    lvl: Level,
) -> ((u64, f64), (f64, f64)) {
    let (s_lo, s_hi) = quantile_bounds(&stable.latency, 0.99, lvl);
    let margin_us = margin_ms * 1000.0;
    let (fail_at, pass_at) = (ratio * s_hi + margin_us, ratio * s_lo + margin_us);
    let surely = if fail_at.is_finite() {
        above(canary, fail_at).0
    } else {
        0
    };
    ((surely, above(canary, pass_at).1), (s_lo, s_hi))
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
        needs: None,
    }
}
