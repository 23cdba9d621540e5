//! What `canaryctl fleet status` and `rollout status` show of a fleet:
//! its hosts, which leads, what each applied and saw.

use serde::{Deserialize, Serialize};

use super::weight;
use crate::model::weight::Weight;

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
