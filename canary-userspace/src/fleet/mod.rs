//! Fleet rollouts: one rollout across many hosts, coordinated through etcd
//! (docs/FLEET.md). Each canaryd of a fleet runs two tasks beside its
//! owner:
//!
//! - `agent`: holds this host's lease, publishes its signals (`hosts/`),
//!   watches the fleet's rollouts and applies each new generation to the
//!   data path (through the owner), reports what it applied, and sends new
//!   flows to stable when cut off from etcd longer than `grace`.
//! - `leader`: takes the lead when no host has it; the leader sums the
//!   live hosts' signals (`controller::ledger`), runs the same pure policy
//!   as a single host and writes each decision fenced by its leadership.
//!
//! `commands` carries out an operator's rollout commands from any host;
//! `store` is the etcd client, `keys` the layout, `records` the values.
//! Without `[fleet]` none of this runs: the rollouts live in the state
//! file and the single-host driver (`daemon::driver`) judges them.

pub mod agent;
pub mod commands;
pub mod keys;
pub mod leader;
pub mod records;
pub mod store;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Instant,
};

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::FleetConfig;
use store::Store;

/// What the fleet's tasks and the control socket share.
pub struct Fleet {
    pub config: FleetConfig,
    pub store: Store,
    /// This host's lease; 0 while it has none.
    lease: AtomicI64,
    leading: AtomicBool,
    /// When etcd last answered this host.
    contact: Mutex<Instant>,
    pub metrics: FleetMetrics,
}

impl Fleet {
    pub async fn connect(config: FleetConfig, registry: &Registry) -> anyhow::Result<Arc<Fleet>> {
        let store = Store::connect(&config).await?;
        Ok(Arc::new(Fleet {
            config,
            store,
            lease: AtomicI64::new(0),
            leading: AtomicBool::new(false),
            contact: Mutex::new(Instant::now()),
            metrics: FleetMetrics::register(registry)?,
        }))
    }

    pub fn host(&self) -> &str {
        &self.config.host
    }

    pub fn lease(&self) -> Option<i64> {
        Some(self.lease.load(Ordering::Relaxed)).filter(|l| *l != 0)
    }

    /// Holds `lease` as this host's, for tools that run a leader without
    /// an agent (the fleet simulation); the tool keeps it renewed.
    pub fn hold_lease(&self, lease: i64) {
        self.set_lease(Some(lease));
    }

    fn set_lease(&self, lease: Option<i64>) {
        self.lease.store(lease.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
        self.metrics.leader.set(leading.into());
    }

    /// etcd answered just now.
    fn contact(&self) {
        if let Ok(mut at) = self.contact.lock() {
            *at = Instant::now();
        }
    }

    /// How long since etcd last answered.
    fn silence(&self) -> std::time::Duration {
        self.contact
            .lock()
            .map_or(Default::default(), |at| at.elapsed())
    }
}

/// `canary_fleet_*`: what this host sees of its fleet.
pub struct FleetMetrics {
    pub hosts: IntGauge,
    pub leader: IntGauge,
    pub generation_applied: IntGaugeVec,
    pub cut_off: IntGauge,
}

impl FleetMetrics {
    fn register(registry: &Registry) -> prometheus::Result<FleetMetrics> {
        let m = FleetMetrics {
            hosts: IntGauge::new(
                "canary_fleet_hosts",
                "Live hosts of the fleet, as this host last read them (the leader reads at \
                 every look; others at their status requests).",
            )?,
            leader: IntGauge::new("canary_fleet_leader", "1 while this host leads its fleet.")?,
            generation_applied: IntGaugeVec::new(
                Opts::new(
                    "canary_fleet_generation_applied",
                    "The fleet rollout generation this host has applied, by service.",
                ),
                &["service"],
            )?,
            cut_off: IntGauge::new(
                "canary_fleet_cut_off",
                "1 while this host has been cut off from etcd longer than its grace and sends \
                 new flows of its fleet rollouts to stable.",
            )?,
        };
        registry.register(Box::new(m.hosts.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        registry.register(Box::new(m.generation_applied.clone()))?;
        registry.register(Box::new(m.cut_off.clone()))?;
        Ok(m)
    }
}
