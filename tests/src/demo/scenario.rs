//! The demo's scenarios: what is wrong with the canary, and how the rollout
//! that judges it is set up.

use std::time::Duration;

use canary_userspace::{
    controller::plan::{Gate, RolloutPlan},
    model::rollout::Phase,
};

use super::{model::Recipe, model_server::Fault};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A retrained model of the same quality: promoted.
    Healthy,
    /// A canary whose input validation rejects one input in five with a
    /// 500: rolled back on the error rate.
    Errors,
    /// A canary 60 ms slower per prediction: rolled back on the p99.
    Latency,
    /// A canary that answers fast and without errors but is less accurate
    /// (a one-split tree): rolled back by the PromQL accuracy gate.
    Accuracy,
    /// The iris models served over gRPC (h2c), the canary with the
    /// errors scenario's input validation: about one call in five fails
    /// with UNAVAILABLE under `:status 200`; rolled back on the error rate
    /// canary computes from grpc-status.
    Grpc,
    /// No rollout: the weight stepped by hand over plain connections,
    /// showing each step's share and a rollback that keeps established
    /// connections (the first demo).
    Split,
}

/// Extra time the slower canary takes per prediction.
pub const SLOWER_BY: Duration = Duration::from_millis(60);
/// The p99 threshold: a bucket bound (16 µs × 2^11), above the healthy
/// versions' p99 on a busy 2-core machine, below the slow canary's.
pub const MAX_P99_MS: f64 = 32.768;
pub const MIN_ACCURACY: f64 = 0.85;
/// The accuracy gate: the share of the canary's labelled predictions that
/// were right over the last 15 s, from the labelling client's counters.
pub const ACCURACY_QUERY: &str = r#"sum(increase(demo_predictions_correct_total{version="canary"}[15s])) / sum(increase(demo_predictions_total{version="canary"}[15s]))"#;

impl Scenario {
    /// How the canary's model is trained, and what is wrong with its server.
    pub fn canary(self) -> (Recipe, Fault) {
        match self {
            Scenario::Healthy | Scenario::Split => (Recipe::Entropy, Fault::None),
            Scenario::Errors | Scenario::Grpc => (Recipe::Entropy, Fault::RejectsInputs),
            Scenario::Latency => (Recipe::Entropy, Fault::Slower(SLOWER_BY)),
            Scenario::Accuracy => (Recipe::Stump, Fault::None),
        }
    }

    /// How the rollout must end.
    pub fn expected(self) -> Phase {
        match self {
            Scenario::Healthy => Phase::Promoted,
            _ => Phase::RolledBack,
        }
    }

    pub fn story(self) -> &'static str {
        match self {
            Scenario::Healthy => "the canary is a retrained model of the same quality",
            Scenario::Errors => {
                "the canary's input validation rejects about one input in five (HTTP 500)"
            }
            Scenario::Latency => "the canary's model is 60 ms slower per prediction",
            Scenario::Accuracy => {
                "the canary answers fast and without errors, but is a less accurate model"
            }
            Scenario::Grpc => {
                "over gRPC (h2c), the canary's input validation fails about one call in five \
                 with UNAVAILABLE, every answer :status 200"
            }
            Scenario::Split => "no rollout: the weight stepped by hand",
        }
    }

    /// Whether the versions are served over gRPC rather than HTTP/1.1.
    pub fn over_grpc(self) -> bool {
        self == Scenario::Grpc
    }

    /// Labelled requests per second when `--rate` is not given: the
    /// Python gRPC client opens a channel every few calls and shares the
    /// 2 cores with everything else, so it is paced lower.
    pub fn default_rate(self) -> u32 {
        if self.over_grpc() {
            GRPC_RATE
        } else {
            HTTP_RATE
        }
    }
}

pub const HTTP_RATE: u32 = 1500;
pub const GRPC_RATE: u32 = 600;

/// The rollout every scenario runs: short intervals for a demo (a real
/// one takes minutes per interval), the three kinds of check.
pub fn plan(prometheus: &str, webhook: &str) -> RolloutPlan {
    let mut p = RolloutPlan {
        steps: [500, 2500, 5000, 10000].map(crate::bp).to_vec(),
        interval: Duration::from_secs(3),
        min_requests: 50,
        max_inconclusive: 8,
        gates: vec![Gate {
            name: "accuracy".into(),
            query: ACCURACY_QUERY.into(),
            min: Some(MIN_ACCURACY),
            max: None,
        }],
        prometheus: Some(prometheus.into()),
        webhook: Some(webhook.into()),
        ..Default::default()
    };
    p.checks.max_error_rate = Some(0.02);
    p.checks.max_p99_ms = Some(MAX_P99_MS);
    p
}
