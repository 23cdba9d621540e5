//! What a fleet keeps in etcd, as JSON: the rollout (a small part every
//! host watches and applies, and the whole run the leader judges) and what
//! each host publishes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    api::fleet::FleetLine,
    controller::run::{Reading, RolloutRun},
    daemon::observe::rollout_line,
    model::weight::Weight,
};

/// The fleet's rollout of one service, as the leader and the commands read
/// and write it: `run/<service>`, written together with the small
/// `FleetWeight` every host watches (`weight/<service>`, `store`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetRollout {
    /// Bumped by every write that changes what hosts apply (the weight, a
    /// flow reset): hosts report the generation they applied, and a step
    /// up waits until every live host has applied the current one.
    pub generation: u64,
    /// The canary weight every host applies.
    #[serde(rename = "weight_bp")]
    pub weight: Weight,
    /// This generation resets the canary's flows (`on_rollback = "reset"`).
    pub reset_canary: bool,
    /// Baselines the leader has still to take from the fleet's reading: a
    /// host that starts or resumes a rollout has only its own.
    #[serde(default)]
    pub rebase: Option<Rebase>,
    /// The plan, the policy's state, the fleet's readings at the step's
    /// start and at the last look.
    pub run: RolloutRun,
    /// The host that wrote this, and why (`look`, `start`, `pause`, ...).
    pub by: String,
    pub why: String,
}

impl FleetRollout {
    /// The part every host watches: `weight/<service>`.
    pub fn weight_record(&self) -> FleetWeight {
        let line = rollout_line(&self.run);
        FleetWeight {
            generation: self.generation,
            weight: self.weight,
            reset_canary: self.reset_canary,
            line: FleetLine {
                phase: line.phase,
                step: line.step,
                steps: self.run.plan.steps.clone(),
                looks: line.looks,
                reason: line.reason,
            },
        }
    }
}

/// What every host watches and applies: `weight/<service>`, a few hundred
/// bytes whatever the rollout's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetWeight {
    pub generation: u64,
    #[serde(rename = "weight_bp")]
    pub weight: Weight,
    pub reset_canary: bool,
    /// Phase, step, looks and reason, for each host's status and metrics.
    pub line: FleetLine,
}

/// Which baselines a new leader look must take before judging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rebase {
    /// A start: the step's and the interval's.
    Start,
    /// A resume: the interval's.
    Interval,
}

/// What a live host publishes, under its lease: `hosts/<host>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub at_unix_ms: u64,
    /// By service name.
    pub services: BTreeMap<String, HostService>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostService {
    /// Stable's and canary's cumulative signals on this host.
    pub reading: Reading,
    /// The last fleet generation this host applied (0: none yet).
    pub applied: u64,
    /// The canary weight this host's data path uses.
    #[serde(rename = "weight_bp")]
    pub weight: Weight,
}

/// `members/<host>`: a host that joined the fleet, kept after it goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub host: String,
    pub joined_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::grpc_code::GrpcCodes;

    fn rollout(codes: GrpcCodes) -> FleetRollout {
        let mut plan = crate::controller::tests::plan();
        plan.grpc_error_codes = codes;
        FleetRollout {
            generation: 1,
            weight: Weight::ZERO,
            reset_canary: false,
            rebase: None,
            run: RolloutRun::start(plan, Default::default(), 0),
            by: "host-a".into(),
            why: "start".into(),
        }
    }

    /// The leader judges from the plan in `run/<service>`: its gRPC error
    /// codes go with it, and a record a release before them wrote reads as
    /// the default.
    #[test]
    fn grpc_error_codes_ride_in_the_run_and_older_records_read_the_default() {
        let set = GrpcCodes::from_codes([8, 14]).unwrap();
        let json = serde_json::to_value(rollout(set)).unwrap();
        assert_eq!(
            json["run"]["plan"]["grpc_error_codes"],
            serde_json::json!(["RESOURCE_EXHAUSTED", "UNAVAILABLE"])
        );
        let back: FleetRollout = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, rollout(set));
        let mut older = json;
        older["run"]["plan"]
            .as_object_mut()
            .unwrap()
            .remove("grpc_error_codes");
        let back: FleetRollout = serde_json::from_value(older).unwrap();
        assert_eq!(back.run.plan.grpc_error_codes, GrpcCodes::DEFAULT);
        // The default is not written, so those releases read new records.
        let default = serde_json::to_value(rollout(GrpcCodes::DEFAULT)).unwrap();
        assert!(default["run"]["plan"].get("grpc_error_codes").is_none());
    }
}
