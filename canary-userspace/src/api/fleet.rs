//! What `canaryctl fleet status` and `rollout status` show of a fleet:
//! its hosts, which leads, what each applied and saw.

use serde::{Deserialize, Serialize};

use super::weight;
use crate::model::{rollout::Phase, weight::Weight};

/// `{"command":"fleet-status"}`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet's name (`[fleet] name`).
    pub fleet: String,
    /// The host that answered.
    pub host: String,
    pub leader: Option<String>,
    /// Every host that ever joined, live ones first, by name.
    pub hosts: Vec<FleetHost>,
}

/// One host of a fleet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetHost {
    pub name: String,
    /// Its lease is live: it publishes, and its evidence counts.
    pub alive: bool,
    pub leader: bool,
    /// When it last published (Unix ms); 0 for a host that is gone.
    pub published_unix_ms: u64,
    pub services: Vec<FleetHostService>,
}

/// One service on one host, as the host last published it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetHostService {
    pub service: String,
    /// The fleet generation the host applied.
    pub applied_generation: u64,
    /// The canary weight its data path uses: `weight_bp`, and for one
    /// release `weight_percent`.
    #[serde(flatten, with = "weight::weight")]
    pub weight: Weight,
    /// Requests of stable and canary, cumulative on that host.
    pub requests: [u64; 2],
    /// Error rate of stable and canary, cumulative; None without requests.
    pub error_rate: [Option<f64>; 2],
}

/// A fleet rollout as every host keeps it: the part of the fleet's record
/// that hosts watch (`fleet::records::FleetWeight`), small so that a write
/// reaches every host cheaply. The full record (plan, readings, history)
/// stays in etcd for the leader and `rollout status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetLine {
    pub phase: Phase,
    /// Index into `steps`.
    pub step: usize,
    /// The plan's steps (basis points).
    #[serde(rename = "steps_bp")]
    pub steps: Vec<Weight>,
    pub looks: u32,
    /// Why it is paused or over; else the last decision's reason.
    pub reason: String,
}

impl FleetLine {
    /// The one line `status` shows.
    pub fn status_line(&self) -> super::RolloutLine {
        super::RolloutLine {
            phase: self.phase,
            step: self.step,
            steps: self.steps.len(),
            looks: self.looks,
            reason: self.reason.clone(),
        }
    }
}
