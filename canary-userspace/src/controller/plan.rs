//! A service's rollout plan, as `[service.rollout]` describes it: the steps,
//! the pace, the checks and how to judge them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::model::kinds::{Mode, OnRollback};
use crate::model::{grpc_code::GrpcCodes, weight::Weight};

/// A PromQL gate on something the kernel cannot see (model accuracy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub name: String,
    pub query: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The kernel-measured checks; each is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    /// Harm: the canary's error rate above this.
    pub max_error_rate: Option<f64>,
    /// Harm: the canary's error rate above this times stable's, plus
    /// `error_margin`.
    pub max_error_ratio: Option<f64>,
    /// Harm: the canary's p99 time to first byte above this.
    pub max_p99_ms: Option<f64>,
    /// Harm: the canary's p99 above this times stable's, plus `p99_margin_ms`.
    pub max_p99_ratio: Option<f64>,
    /// Absolute slack of the error-ratio check (a fraction, e.g. 0.005 =
    /// half a percentage point), so near-zero error rates can be judged.
    pub error_margin: f64,
    /// Absolute slack of the p99-ratio check, in milliseconds.
    pub p99_margin_ms: f64,
}

impl Checks {
    /// How many bounds the enabled checks compute per look (each relative
    /// check bounds both versions).
    pub fn bounds(&self) -> u32 {
        u32::from(self.max_error_rate.is_some())
            + 2 * u32::from(self.max_error_ratio.is_some())
            + u32::from(self.max_p99_ms.is_some())
            + 2 * u32::from(self.max_p99_ratio.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    /// Canary weights, increasing; the last is usually 100 %. Basis points
    /// in the state file.
    pub steps: Vec<Weight>,
    /// Time between evaluations.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Requests per version per interval before an interval is judged.
    pub min_requests: u64,
    /// Failed intervals (in all) before rolling back.
    pub failed_checks_limit: u32,
    /// Failed intervals in a row before rolling back; 0: off.
    pub consecutive_failures: u32,
    /// Passing intervals at a step before stepping up.
    pub min_passes: u32,
    /// Inconclusive intervals in a row that more canary traffic would not
    /// settle (see `policy`) before the rollout pauses.
    pub max_inconclusive: u32,
    /// How long a step may stay inconclusive while its evidence grows
    /// (counted in looks times `interval`) before the rollout pauses; None:
    /// as long as it grows.
    #[serde(default, with = "optional_millis")]
    pub max_step_duration: Option<Duration>,
    pub mode: Mode,
    pub on_rollback: OnRollback,
    pub checks: Checks,
    pub gates: Vec<Gate>,
    /// Prometheus' base URL for the gates.
    pub prometheus: Option<String>,
    /// Where events are POSTed as JSON.
    pub webhook: Option<String>,
    /// Error budget of the statistical checks: the chance that a rollout
    /// whose canary is as good as stable is rolled back (and, on the other
    /// side, that a harmful canary's checks pass; for latency, one more
    /// than a bucket past its limit, see `stats::above`) stays within it
    /// however many intervals the rollout runs.
    pub alpha: f64,
    /// The `grpc-status` codes that count as errors of an h2c service.
    /// Absent in older state files and fleet records, which read as the
    /// default; the default is not written, so those releases read it too.
    #[serde(default, skip_serializing_if = "GrpcCodes::is_default")]
    pub grpc_error_codes: GrpcCodes,
}

impl RolloutPlan {
    /// The canary weight of `step`; 0 past the last (the config refuses
    /// a plan without steps).
    pub fn step_weight(&self, step: usize) -> Weight {
        self.steps.get(step).copied().unwrap_or(Weight::ZERO)
    }
}

/// The defaults of `[service.rollout]` (packaging/canary.toml lists them),
/// the one place the config reader takes them from. `steps` has none (the
/// config requires it) and no check is on: set both.
impl Default for RolloutPlan {
    fn default() -> RolloutPlan {
        RolloutPlan {
            steps: vec![],
            interval: Duration::from_secs(30),
            min_requests: 200,
            failed_checks_limit: 2,
            consecutive_failures: 0,
            min_passes: 1,
            max_inconclusive: 5,
            max_step_duration: None,
            mode: Mode::Enforce,
            on_rollback: OnRollback::Drain,
            checks: Checks {
                error_margin: 0.01,
                p99_margin_ms: 5.0,
                ..Checks::default()
            },
            gates: vec![],
            prometheus: None,
            webhook: None,
            alpha: 0.05,
            grpc_error_codes: GrpcCodes::DEFAULT,
        }
    }
}

/// Durations as integer milliseconds in the rollout state file.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Optional durations, the same way; absent in older state files.
mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
