//! An operator's rollout commands in a fleet, from any of its hosts: each
//! reads the fleet's record of the rollout, moves it by the same rules as
//! on a single host (`controller::operate`, `controller::effect`) and
//! writes it back only if no one wrote it meanwhile (compare-and-swap on
//! its revision). Every host then applies it from its watch; the answer
//! does not wait for them. No leader is needed: a rollback goes through
//! with the leader gone. A start or resume leaves its baselines to the
//! leader (`records::Rebase`), which alone sums the fleet's signals.

use std::collections::BTreeMap;

use super::{
    Fleet,
    records::{FleetRollout, HostRecord, Rebase},
    store::StoreError,
};
use crate::{
    api::{
        ErrorCode, RolloutReport,
        fleet::{FleetHost, FleetHostService, FleetStatus},
    },
    controller::{
        effect::{Act, Control, effect},
        operate::operate,
        run::RolloutRun,
    },
    daemon::{DaemonError, observe, owner::Handle, unix_ms},
    model::{rollout::Phase, weight::Weight},
};

/// Why a fleet command failed: the answer's code and message.
#[derive(Debug)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        Refused {
            code: ErrorCode::StoreUnavailable,
            message: format!(
                "the fleet's store (etcd) did not answer ({e}): nothing was read or changed"
            ),
        }
    }
}

impl From<DaemonError> for Refused {
    fn from(e: DaemonError) -> Refused {
        Refused {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

fn conflict(service: &str, why: impl std::fmt::Display) -> Refused {
    Refused {
        code: ErrorCode::RolloutConflict,
        message: format!("service {service}: {why}"),
    }
}

/// Starts `service`'s configured rollout across the fleet at its first
/// step.
pub async fn start(fleet: &Fleet, owner: &Handle, service: &str) -> Result<RolloutReport, Refused> {
    let name = service.to_owned();
    let plan = owner
        .call(format!("fleet plan {service}"), move |d| {
            d.rollout_plan(&name)
        })
        .await?;
    let current = fleet.store.rollout(service).await?;
    if let Some(c) = &current
        && !c.value.run.state.phase.is_over()
    {
        return Err(conflict(
            service,
            format!("a fleet rollout is already {:?}", c.value.run.state.phase),
        ));
    }
    let now = unix_ms();
    // Baselines come from the leader's sum of the fleet (`rebase`).
    let mut run = RolloutRun::start(plan, Default::default(), now);
    let done = effect(Some(&run.plan), 0, Act::Start);
    let (generation, weight) = current
        .as_ref()
        .map_or((0, Weight::ZERO), |c| (c.value.generation, c.value.weight));
    run.state.generation = generation + 1;
    let record = FleetRollout {
        generation: generation + 1,
        weight: done.weight.unwrap_or(weight),
        reset_canary: done.reset_canary,
        rebase: Some(Rebase::Start),
        run,
        by: fleet.host().to_owned(),
        why: "start".into(),
    };
    let read_at = current.map_or(0, |c| c.mod_revision);
    write(fleet, service, &record, read_at).await?;
    log::info!(
        "fleet {}: service {service}: rollout started at {:.2} from {}",
        fleet.config.name,
        record.weight,
        fleet.host()
    );
    report(fleet, service, &record).await
}

/// Pause, resume, promote, abort or roll back the fleet's rollout.
pub async fn control(
    fleet: &Fleet,
    service: &str,
    control: Control,
) -> Result<RolloutReport, Refused> {
    let Some(current) = fleet.store.rollout(service).await? else {
        return Err(conflict(service, "no fleet rollout has been started"));
    };
    let mut next = current.value.clone();
    let done = operate(&mut next.run, control).map_err(|e| conflict(service, e))?;
    if control == Control::Resume {
        next.rebase = Some(Rebase::Interval);
    }
    if done.weight.is_some() || done.reset_canary {
        next.generation += 1;
        next.weight = done.weight.unwrap_or(current.value.weight);
        next.reset_canary = done.reset_canary;
    }
    next.run.state.generation += 1;
    next.by = fleet.host().to_owned();
    next.why = format!("{control:?}").to_lowercase();
    write(fleet, service, &next, current.mod_revision).await?;
    log::warn!(
        "fleet {}: service {service}: rollout {control:?} from {}",
        fleet.config.name,
        fleet.host()
    );
    report(fleet, service, &next).await
}

/// Whether `service` has a fleet rollout in progress (running or paused).
pub async fn in_progress(fleet: &Fleet, service: &str) -> Result<bool, Refused> {
    Ok(fleet
        .store
        .rollout(service)
        .await?
        .is_some_and(|c| !c.value.run.state.phase.is_over()))
}

async fn write(
    fleet: &Fleet,
    service: &str,
    record: &FleetRollout,
    read_at: i64,
) -> Result<(), Refused> {
    if fleet
        .store
        .write_rollout(service, record, read_at, None)
        .await?
    {
        Ok(())
    } else {
        Err(conflict(
            service,
            "the fleet's rollout changed while this command was carried out (a look or \
             another host's command); nothing was changed, try again",
        ))
    }
}

/// The fleet's rollout of `service` as `rollout status` shows it.
pub async fn status(fleet: &Fleet, service: &str) -> Result<RolloutReport, Refused> {
    let Some(current) = fleet.store.rollout(service).await? else {
        return Err(conflict(service, "no fleet rollout has been started"));
    };
    report(fleet, service, &current.value).await
}

async fn report(
    fleet: &Fleet,
    service: &str,
    record: &FleetRollout,
) -> Result<RolloutReport, Refused> {
    let run = &record.run;
    let rollbacks = u64::from(run.state.phase == Phase::RolledBack);
    let mut report = observe::report(service, run, record.weight, &run.last, rollbacks);
    // The canary's share of the last look's interval, over the fleet.
    report.observed_canary_share = run.state.history.last().and_then(|r| {
        let [s, c] = r.interval_attempts;
        (s + c > 0).then(|| c as f64 / (s + c) as f64)
    });
    let status = fleet_status(fleet).await?;
    report.hosts = Some(
        status
            .hosts
            .into_iter()
            .map(|mut h| {
                h.services.retain(|s| s.service == service);
                h
            })
            .collect(),
    );
    Ok(report)
}

/// Every host that joined, live ones with what they last published.
pub async fn fleet_status(fleet: &Fleet) -> Result<FleetStatus, Refused> {
    let store = &fleet.store;
    let live = store.hosts().await?;
    let members = store.members().await?;
    let leader = store.leader().await?.map(|(h, _)| h);
    fleet.metrics.hosts.set(live.len() as i64);
    Ok(FleetStatus {
        fleet: fleet.config.name.clone(),
        host: fleet.host().to_owned(),
        hosts: hosts(&live, members.keys(), leader.as_deref()),
        leader,
    })
}

/// Live hosts first, then those gone, each by name.
fn hosts<'m>(
    live: &BTreeMap<String, HostRecord>,
    members: impl Iterator<Item = &'m String>,
    leader: Option<&str>,
) -> Vec<FleetHost> {
    let mut out: Vec<FleetHost> = live
        .iter()
        .map(|(name, record)| FleetHost {
            name: name.clone(),
            alive: true,
            leader: leader == Some(name.as_str()),
            published_unix_ms: record.at_unix_ms,
            services: record
                .services
                .iter()
                .map(|(service, s)| FleetHostService {
                    service: service.clone(),
                    applied_generation: s.applied,
                    weight: s.weight,
                    requests: [s.reading[0].requests, s.reading[1].requests],
                    error_rate: [s.reading[0].error_rate(), s.reading[1].error_rate()],
                })
                .collect(),
        })
        .collect();
    for name in members.filter(|m| !live.contains_key(*m)) {
        out.push(FleetHost {
            name: name.clone(),
            alive: false,
            leader: false,
            published_unix_ms: 0,
            services: vec![],
        });
    }
    out
}
