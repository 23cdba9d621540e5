//! A rollout's phase and the records of its decisions: what the policy
//! writes, the state file keeps and the control API shows.

use serde::{Deserialize, Serialize};

use crate::model::weight::Weight;

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
    /// As people read it: `running`, `paused`, `rolled back`, `promoted`,
    /// `aborted`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::RolledBack => "rolled back",
            Phase::Promoted => "promoted",
            Phase::Aborted => "aborted",
        }
    }

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
    /// An inconclusive check that more canary evidence would settle, its
    /// estimates staying where they are: how much it needs at this step.
    #[serde(default)]
    pub needs: Option<Need>,
}

/// Canary evidence (attempts for error checks, responses for latency
/// checks) a check needs since its step began, and what it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub needed: u64,
    pub got: u64,
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
    /// The step's weight (basis points on the wire and in the state file).
    #[serde(rename = "weight_bp")]
    pub weight: Weight,
    pub interval_attempts: [u64; 2],
    pub verdict: Verdict,
    pub action: Action,
    pub checks: Vec<CheckResult>,
    pub reason: String,
    /// Dry-run: the action was logged, not carried out.
    pub dry_run: bool,
}
