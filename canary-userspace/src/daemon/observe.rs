//! Status and metrics without the daemon's owner: the owner publishes a
//! snapshot of what it registered after every change, and the counters are
//! read straight from the data path's per-CPU maps (each read is one
//! non-blocking bpf() call per map slot). A slow set-weight or reload never
//! delays a scrape.

use std::sync::Arc;

use canary_common::{VersionStats, verdict};
use tokio::sync::watch;

use crate::{
    api::{
        self, DaemonStatus, InterfaceStatus, RolloutReport, ServiceStatus, Status, VerdictCounts,
        VersionStatus, WeightSource,
    },
    controller::run::{Reading, RolloutRun},
    error::Error,
    kernel::dataplane::Registered,
    kernel::maps::Counters,
    model::{signals::VersionSignals, weight::Weight},
};

/// What the owner last registered.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub config_path: String,
    pub interfaces: Vec<InterfaceStatus>,
    /// What the kernel should run (`inspect`), and the interfaces whose
    /// egress is a tcx link.
    pub expected: Arc<crate::kernel::inspect::Expected>,
    pub tcx: std::collections::BTreeSet<String>,
    pub services: Vec<Registered>,
    /// Rollouts by service name, as last persisted.
    pub rollouts: std::collections::BTreeMap<String, crate::controller::run::RolloutRun>,
    /// In a fleet: each service's fleet rollout as this host keeps it.
    pub fleet_lines: std::collections::BTreeMap<String, crate::api::fleet::FleetLine>,
    /// Services with a `[service.rollout]` plan: `rollout-status` tells
    /// one that has none from one whose rollout was never started.
    pub planned: std::collections::BTreeSet<String>,
    /// Rollouts that ended rolled back, by service name.
    pub rollbacks: std::collections::BTreeMap<String, u64>,
    /// Where each service's weight comes from, and its config weight.
    pub weights: std::collections::BTreeMap<String, (WeightSource, Weight)>,
    /// Where each service's clients come in (`reach`), found at start.
    pub client_paths: super::reach::ClientPaths,
}

/// Answers status from the latest snapshot and live counters.
#[derive(Clone)]
pub struct Observer {
    pub counters: Arc<Counters>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl Observer {
    /// Status with each interface's hooks read from the kernel now: a
    /// detach the owner's next check (within a second) has not seen yet
    /// is shown already. Logging and counting it is the owner's job.
    pub fn status(&self) -> Result<Status, Error> {
        let snap = self.snapshot.borrow().clone();
        let mut status = status(&snap, &self.counters)?;
        // A snapshot from before the data path was loaded: nothing to compare.
        if snap.expected.ingress_id == 0 {
            return Ok(status);
        }
        let maps_problem = crate::kernel::inspect::maps_problem(&snap.expected);
        for iface in &mut status.daemon.interfaces {
            if iface.ifindex == 0 {
                continue;
            }
            // A read error is left to the owner, which reports it.
            let Ok(hooks) = crate::kernel::inspect::hooks(iface.ifindex) else {
                continue;
            };
            let hook_problem = crate::kernel::inspect::hook_problem(
                &snap.expected,
                &hooks,
                iface.hook,
                snap.tcx.contains(&iface.name),
            );
            iface.xdp_program_id = hooks.xdp.map(|(id, _)| id);
            iface.ingress_program_ids = hooks.tcx_ingress;
            iface.egress_program_ids = hooks.tcx_egress;
            if hook_problem.is_some() {
                iface.attached = false;
            }
            let live = [hook_problem.as_deref(), maps_problem.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            if !live.is_empty() {
                iface.problem = Some(live);
            } else if iface.attached {
                iface.problem = None;
            }
        }
        Ok(status)
    }

    /// `service`'s rollout as last persisted, with the weight and the
    /// observed share now; None when it never had one.
    pub fn rollout(&self, service: &str) -> Result<Option<RolloutReport>, Error> {
        let snap = self.snapshot.borrow().clone();
        let Some(reg) = snap.services.iter().find(|r| r.spec.name == service) else {
            return Err(Error::UnknownService(service.into()));
        };
        let Some(run) = snap.rollouts.get(service) else {
            return Ok(None);
        };
        let now = self.counters.version_reading(reg.id)?;
        Ok(Some(report(
            service,
            run,
            reg.spec.weight,
            &now,
            snap.rollbacks.get(service).copied().unwrap_or(0),
        )))
    }

    /// Whether `service` has a `[service.rollout]` plan.
    pub fn planned(&self, service: &str) -> bool {
        self.snapshot.borrow().planned.contains(service)
    }

    /// Every service's rollout, for the metrics. A fleet rollout as this
    /// host keeps it: phase, step and rollbacks (its checks are in the
    /// fleet's record: `rollout status`).
    pub fn rollouts(&self) -> Vec<RolloutReport> {
        let snap = self.snapshot.borrow().clone();
        let names: Vec<String> = snap.rollouts.keys().cloned().collect();
        let fleet = snap.fleet_lines.iter().map(|(service, line)| {
            let rollbacks = snap.rollbacks.get(service).copied().unwrap_or(0);
            fleet_report(service, line, rollbacks)
        });
        names
            .iter()
            .filter(|n| !snap.fleet_lines.contains_key(*n))
            .filter_map(|n| self.rollout(n).ok().flatten())
            .chain(fleet)
            .collect()
    }
}

/// A fleet rollout's report for the metrics, from what a host keeps of it:
/// phase, step, looks, rollbacks; no history, and mode and on_rollback
/// are not kept (the metrics use neither).
fn fleet_report(
    service: &str,
    line: &crate::api::fleet::FleetLine,
    rollbacks: u64,
) -> RolloutReport {
    RolloutReport {
        service: service.to_owned(),
        phase: line.phase,
        reason: line.reason.clone(),
        mode: crate::model::kinds::Mode::Enforce,
        on_rollback: crate::model::kinds::OnRollback::Drain,
        step: line.step,
        steps: line.steps.clone(),
        weight: line.steps.get(line.step).copied().unwrap_or_default(),
        observed_canary_share: None,
        interval_ms: 0,
        looks: line.looks,
        failed: 0,
        failed_checks_limit: 0,
        inconclusive_streak: 0,
        max_inconclusive: 0,
        started_unix_ms: 0,
        next_at_unix_ms: 0,
        history: vec![],
        rollbacks,
        hosts: None,
    }
}

/// A rollout in one line for status: why it is where it is.
pub fn rollout_line(run: &RolloutRun) -> api::RolloutLine {
    let reason = if run.state.phase == crate::model::rollout::Phase::Running
        || run.state.reason.is_empty()
    {
        run.state
            .history
            .last()
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    } else {
        run.state.reason.clone()
    };
    api::RolloutLine {
        phase: run.state.phase,
        step: run.state.step,
        steps: run.plan.steps.len(),
        looks: run.state.looks,
        reason,
    }
}

/// A rollout's report from its persisted run, the kernel's weight and a
/// reading taken now.
pub fn report(
    service: &str,
    run: &RolloutRun,
    weight: Weight,
    now: &Reading,
    rollbacks: u64,
) -> RolloutReport {
    let since = |i: usize| now[i].since(&run.last[i]).requests;
    let (s, c) = (since(0), since(1));
    RolloutReport {
        service: service.to_owned(),
        phase: run.state.phase,
        reason: run.state.reason.clone(),
        mode: run.plan.mode,
        on_rollback: run.plan.on_rollback,
        step: run.state.step,
        steps: run.plan.steps.clone(),
        weight,
        observed_canary_share: (s + c > 0).then(|| c as f64 / (s + c) as f64),
        interval_ms: run.plan.interval.as_millis() as u64,
        looks: run.state.looks,
        failed: run.state.failed,
        failed_checks_limit: run.plan.failed_checks_limit,
        inconclusive_streak: run.state.inconclusive_streak,
        max_inconclusive: run.plan.max_inconclusive,
        started_unix_ms: run.state.started_unix_ms,
        next_at_unix_ms: run.next_at_unix_ms,
        history: run.state.history.clone(),
        rollbacks,
        hosts: None,
    }
}

/// Why clients may not reach `spec`'s service: a VIP that is not an
/// address of this host (`local`, read now), and interfaces that its
/// clients come in on none of which is attached (`reach`).
fn service_problem(
    snap: &Snapshot,
    spec: &crate::model::service::ServiceSpec,
    local: Option<&std::collections::BTreeSet<std::net::IpAddr>>,
) -> Option<String> {
    let attached: std::collections::BTreeSet<String> = snap
        .interfaces
        .iter()
        .filter(|i| i.attached)
        .map(|i| i.name.clone())
        .collect();
    let problems: Vec<String> = [
        local
            .is_some_and(|l| !l.contains(&spec.vip.ip()))
            .then(|| crate::config::vip_not_local(spec.vip.ip())),
        snap.client_paths
            .get(&spec.name)
            .and_then(|p| super::reach::unreached(p, &attached)),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The status of `snap`'s services with counters read now.
pub fn status(snap: &Snapshot, counters: &Counters) -> Result<Status, Error> {
    let mut services = vec![];
    // Read per status: keepalived may add or remove a VIP at any time. When
    // the addresses cannot be read, no VIP is reported.
    let local = crate::host::addresses::local().ok();
    for r in &snap.services {
        let [stable, canary] = counters.version_stats(r.id)?;
        let [stable_signals, canary_signals] = counters.version_reading(r.id)?;
        let spec = &r.spec;
        let (weight_source, config_weight) = snap
            .weights
            .get(&spec.name)
            .copied()
            .unwrap_or((WeightSource::Config, spec.weight));
        services.push(ServiceStatus {
            name: spec.name.clone(),
            listen: spec.vip.to_string(),
            protocol: spec.protocol,
            affinity: spec.affinity,
            weight: spec.weight,
            weight_source,
            config_weight: Some(config_weight),
            stable: version_status(&spec.stable, &stable, &stable_signals),
            canary: version_status(&spec.canary, &canary, &canary_signals),
            problem: service_problem(snap, spec, local.as_ref()),
            rollout: match snap.fleet_lines.get(&spec.name) {
                Some(line) => Some(line.status_line()),
                None => snap.rollouts.get(&spec.name).map(rollout_line),
            },
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
    signals: &VersionSignals,
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
        signals: signals.clone(),
    }
}
