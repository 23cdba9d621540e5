//! Status and metrics without the daemon's owner: the owner publishes a
//! snapshot of what it registered after every change, and the counters are
//! read straight from the data path's per-CPU maps (each read is one
//! non-blocking bpf() call per map slot). A slow set-weight or reload never
//! delays a scrape.

use std::sync::Arc;

use canary_common::{VersionStats, signals::Signals, verdict};
use tokio::sync::watch;

use crate::{
    api::{
        self, DaemonStatus, InterfaceStatus, ServiceStatus, Status, VerdictCounts, VersionStatus,
    },
    dataplane::Registered,
    error::Error,
    maps::Counters,
};

/// What the owner last registered.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub config_path: String,
    pub interfaces: Vec<InterfaceStatus>,
    pub services: Vec<Registered>,
}

/// Answers status from the latest snapshot and live counters.
#[derive(Clone)]
pub struct Observer {
    pub counters: Arc<Counters>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl Observer {
    pub fn status(&self) -> Result<Status, Error> {
        let snap = self.snapshot.borrow().clone();
        status(&snap, &self.counters)
    }
}

/// The status of `snap`'s services with counters read now.
pub fn status(snap: &Snapshot, counters: &Counters) -> Result<Status, Error> {
    let mut services = vec![];
    for r in &snap.services {
        let [stable, canary] = counters.version_stats(r.id)?;
        let [stable_signals, canary_signals] = counters.version_signals(r.id)?;
        let spec = &r.spec;
        services.push(ServiceStatus {
            name: spec.name.clone(),
            listen: spec.vip.to_string(),
            protocol: spec.protocol,
            affinity: spec.affinity,
            weight_percent: api::bp_to_percent(spec.weight_bp),
            stable: version_status(&spec.stable, &stable, &stable_signals),
            canary: version_status(&spec.canary, &canary, &canary_signals),
        });
    }
    let v = counters.verdicts()?;
    let named = |counts: &[u64]| {
        verdict::NAMES
            .iter()
            .zip(counts)
            .map(|(n, c)| (n.to_string(), *c))
            .collect()
    };
    Ok(Status {
        daemon: DaemonStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: api::API_VERSION,
            pid: std::process::id(),
            config: snap.config_path.clone(),
            interfaces: snap.interfaces.clone(),
        },
        services,
        verdicts: VerdictCounts {
            ingress: named(&v.ingress),
            egress: named(&v.egress),
        },
    })
}

fn version_status(
    backends: &[std::net::SocketAddr],
    s: &VersionStats,
    signals: &Signals,
) -> VersionStatus {
    VersionStatus {
        backends: backends.iter().map(|b| b.to_string()).collect(),
        packets_in: s.packets_in,
        bytes_in: s.bytes_in,
        packets_out: s.packets_out,
        bytes_out: s.bytes_out,
        new_flows: s.new_flows,
        closed_flows: s.closed_flows,
        active_flows: s.new_flows.saturating_sub(s.closed_flows),
        rehashes: s.rehashes,
        signals: signals.into(),
    }
}
