//! One rollout as canaryd keeps it: the plan it follows, the policy's
//! state, and the readings the evidence is measured from. Persisted in the
//! state file after every decision, so a restart resumes at the same step
//! with the same baselines (the counters live in pinned maps and carry on).
//!
//! Pure bookkeeping: readings in, evidence and new baselines out.

use serde::{Deserialize, Serialize};

use super::{
    plan::RolloutPlan,
    policy::{Evidence, GateReading, RolloutState},
};
use crate::model::{rollout::Action, signals::VersionSignals, weight::Weight};

/// Stable's and canary's cumulative signals at one moment.
pub type Reading = [VersionSignals; 2];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutRun {
    pub plan: RolloutPlan,
    pub state: RolloutState,
    /// The reading when the current step began: the checks judge what
    /// happened since.
    pub step_start: Reading,
    /// The reading at the last evaluation: the interval's minimum applies
    /// to what happened since.
    pub last: Reading,
    /// Stable's evidence from the last step where it still got new flows,
    /// judged against at a 100 % step.
    pub stable_before: Option<VersionSignals>,
    /// Unix ms of the next evaluation.
    pub next_at_unix_ms: u64,
}

impl RolloutRun {
    /// A rollout starting now at its first step, from the current reading.
    pub fn start(plan: RolloutPlan, reading: Reading, now_unix_ms: u64) -> RolloutRun {
        let next_at_unix_ms = now_unix_ms + plan.interval.as_millis() as u64;
        RolloutRun {
            plan,
            state: RolloutState::start(now_unix_ms),
            step_start: reading.clone(),
            last: reading,
            stable_before: None,
            next_at_unix_ms,
        }
    }

    /// Readings an older canaryd wrote (pin layout v5: 23 log2 latency
    /// buckets) in today's buckets, as the upgrade converts the SIGNALS
    /// map itself, so a resumed rollout's baselines match its counters.
    pub fn carry_v5_histograms(&mut self) {
        let readings = self
            .step_start
            .iter_mut()
            .chain(self.last.iter_mut())
            .chain(self.stable_before.iter_mut());
        for r in readings {
            r.latency = std::mem::take(&mut r.latency).from_v5_latency();
        }
    }

    /// The canary weight the current step asks for.
    pub fn weight(&self) -> Weight {
        self.plan.step_weight(self.state.step)
    }

    /// What both versions did since the step began (and in the last
    /// interval), from `now`, the current reading.
    pub fn evidence(&self, now: &Reading, gates: Vec<GateReading>) -> Evidence {
        let since_step = |i: usize| now[i].since(&self.step_start[i]);
        let interval = |i: usize| {
            let d = now[i].since(&self.last[i]);
            d.requests + d.connections_refused
        };
        let stable = match (&self.stable_before, self.weight()) {
            (Some(before), Weight::FULL) => before.clone(),
            _ => since_step(0),
        };
        Evidence {
            stable,
            canary: since_step(1),
            interval_attempts: [interval(0), interval(1)],
            gates,
        }
    }

    /// Moves the baselines on after a decision taken on `now`: a new step
    /// starts its evidence afresh (keeping stable's for a 100 % step).
    pub fn advance(&mut self, action: Action, now: Reading, now_unix_ms: u64) {
        if let Action::StepUp { step } = action
            && self.plan.steps.get(step) == Some(&Weight::FULL)
        {
            self.stable_before = Some(now[0].since(&self.step_start[0]));
        }
        if let Action::StepUp { .. } = action {
            self.step_start = now.clone();
        }
        self.last = now;
        self.next_at_unix_ms = now_unix_ms + self.plan.interval.as_millis() as u64;
    }
}
