//! This host in its fleet: its lease, what it publishes, the rollouts it
//! applies, and what it does when etcd is out of reach.
//!
//! A session holds one lease: it reads every rollout record, applies them,
//! then watches for changes from the revision it read at; every `publish`
//! it renews the lease and publishes this host's record. A watch that
//! breaks (etcd restarted, or compacted past it) starts the reading over
//! with the same lease; a lease etcd let expire (this host was silent for
//! `lease_ttl`) starts a new session. Whenever etcd has not answered for
//! `grace`, the services whose fleet rollout is in progress send new flows
//! to stable; the next session that reads the records puts their weights
//! back.

use std::{sync::Arc, time::Duration};

use etcd_client::EventType;

use super::{
    Fleet,
    records::{FleetWeight, HostRecord, HostService, Member},
    store::{StoreError, parse},
};
use crate::daemon::{fleet::Generation, owner::Handle, unix_ms};

/// How long to wait before trying etcd again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// Why a session ended.
enum Ended {
    /// etcd let the lease expire: a new one is needed.
    LeaseLost,
    /// etcd failed or the watch broke: read again, same lease if it lives.
    Store(StoreError),
    /// etcd answers again after a cut-off: read every record again and put
    /// the fleet's weights back.
    BackInTouch,
}

impl From<StoreError> for Ended {
    fn from(e: StoreError) -> Ended {
        if e.lease_lost() {
            Ended::LeaseLost
        } else {
            Ended::Store(e)
        }
    }
}

/// Runs until the runtime stops.
pub async fn run(fleet: Arc<Fleet>, owner: Handle) {
    let mut cut_off = false;
    let mut lease: Option<i64> = None;
    loop {
        let id = match lease {
            Some(id) => id,
            None => match fleet.store.grant(fleet.config.lease_ttl).await {
                Ok(id) => {
                    fleet.contact();
                    log::info!(
                        "fleet {}: joined as {} (lease {id:x}, ttl {:?})",
                        fleet.config.name,
                        fleet.host(),
                        fleet.config.lease_ttl
                    );
                    id
                }
                Err(e) => {
                    log::debug!("fleet {}: no lease: {e}", fleet.config.name);
                    check_grace(&fleet, &owner, &mut cut_off).await;
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        lease = Some(id);
        fleet.set_lease(lease);
        match session(&fleet, &owner, id, &mut cut_off).await {
            Ended::LeaseLost => {
                log::warn!(
                    "fleet {}: etcd let this host's lease expire; joining again",
                    fleet.config.name
                );
                lease = None;
                fleet.set_lease(None);
            }
            Ended::BackInTouch => {}
            Ended::Store(e) => {
                log::warn!(
                    "fleet {}: {e}; reading the rollouts again",
                    fleet.config.name
                );
                tokio::time::sleep(RETRY).await;
                // The lease may have lapsed meanwhile.
                match fleet.store.renew(id).await {
                    Ok(true) => fleet.contact(),
                    Ok(false) => {
                        fleet.contact();
                        lease = None;
                        fleet.set_lease(None);
                    }
                    Err(e) => {
                        log::debug!("fleet {}: renewing the lease: {e}", fleet.config.name);
                        check_grace(&fleet, &owner, &mut cut_off).await;
                    }
                }
            }
        }
    }
}

async fn session(fleet: &Fleet, owner: &Handle, lease: i64, cut_off: &mut bool) -> Ended {
    match session_inner(fleet, owner, lease, cut_off).await {
        Ok(never) => match never {},
        Err(ended) => ended,
    }
}

async fn session_inner(
    fleet: &Fleet,
    owner: &Handle,
    lease: i64,
    cut_off: &mut bool,
) -> Result<std::convert::Infallible, Ended> {
    let store = &fleet.store;
    let member = Member {
        host: fleet.host().to_owned(),
        joined_unix_ms: unix_ms(),
    };
    store.join(&member).await?;
    let (revision, records) = store.weights().await?;
    fleet.contact();
    let restore = *cut_off;
    for (service, record) in records {
        apply(fleet, owner, &service, record, restore).await;
    }
    if restore {
        *cut_off = false;
        fleet.metrics.cut_off.set(0);
        log::warn!(
            "fleet {}: etcd answers again; the fleet's weights are back",
            fleet.config.name
        );
    }
    let mut watch = store.watch_weights(revision + 1).await?;
    publish(fleet, owner, lease).await?;
    let mut tick = tokio::time::interval(fleet.config.publish);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // etcd first, then the grace: a host that was itself
                // stopped (kill -STOP) and resumes must not take its own
                // silence for etcd's.
                let renewed = store.renew(lease).await;
                if renewed.is_ok() {
                    fleet.contact();
                }
                check_grace(fleet, owner, cut_off).await;
                match renewed {
                    // Back in touch after a cut-off: the weights must come
                    // from a fresh read of the records, so start over.
                    Ok(_) if *cut_off => return Err(Ended::BackInTouch),
                    Ok(true) => {}
                    Ok(false) => return Err(Ended::LeaseLost),
                    Err(e) => {
                        log::debug!("fleet {}: renewing the lease: {e}", fleet.config.name);
                        continue;
                    }
                }
                if let Err(e) = publish(fleet, owner, lease).await {
                    log::debug!("fleet {}: publishing: {e}", fleet.config.name);
                }
            }
            message = watch.message() => {
                let answer = match message {
                    Ok(Some(answer)) => answer,
                    Ok(None) => return Err(Ended::Store(StoreError::Etcd(
                        etcd_client::Error::WatchError("the watch ended".into()),
                    ))),
                    Err(e) => return Err(Ended::Store(e.into())),
                };
                if answer.compact_revision() > 0 || answer.canceled() {
                    return Err(Ended::Store(StoreError::Etcd(etcd_client::Error::WatchError(
                        format!(
                            "the watch fell behind etcd's compaction (revision {})",
                            answer.compact_revision()
                        ),
                    ))));
                }
                fleet.contact();
                let mut new_generation = false;
                for event in answer.events() {
                    let (EventType::Put, Some(kv)) = (event.event_type(), event.kv()) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let Some(service) = store.keys.name_in(&store.keys.weights(), &key) else {
                        continue;
                    };
                    match parse::<FleetWeight>(&key, kv.value()) {
                        Ok(record) => {
                            new_generation |= apply(fleet, owner, service, record, false).await;
                        }
                        Err(e) => log::error!("fleet {}: {e}", fleet.config.name),
                    }
                }
                // The leader waits for this host's report of a new
                // generation before a step up; a look that changed no
                // weight needs no report.
                if new_generation && !*cut_off {
                    publish(fleet, owner, lease).await?;
                }
            }
        }
    }
}

/// Applies one record through the owner; whether it was a generation this
/// host had not applied. A record of a service this host does not serve
/// is logged and skipped.
async fn apply(
    fleet: &Fleet,
    owner: &Handle,
    service: &str,
    record: FleetWeight,
    restore: bool,
) -> bool {
    let generation = Generation {
        number: record.generation,
        weight: record.weight,
        reset_canary: record.reset_canary,
    };
    let name = service.to_owned();
    let line = record.line;
    let done = owner
        .call(format!("fleet apply {service}"), move |d| {
            d.fleet_apply(&name, line, generation, restore)
        })
        .await;
    match done {
        Ok(applied) => {
            fleet
                .metrics
                .generation_applied
                .with_label_values(&[service])
                .set(applied.generation as i64);
            applied.new
        }
        Err(e) => {
            log::warn!(
                "fleet {}: rollout of {service} not applied on this host: {e}",
                fleet.config.name
            );
            false
        }
    }
}

/// Publishes this host's record under its lease.
async fn publish(fleet: &Fleet, owner: &Handle, lease: i64) -> Result<(), StoreError> {
    let published = match owner
        .call("fleet publish", |d| Ok(d.fleet_published()))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            log::warn!(
                "fleet {}: reading this host's signals: {e}",
                fleet.config.name
            );
            return Ok(());
        }
    };
    let record = HostRecord {
        host: fleet.host().to_owned(),
        at_unix_ms: unix_ms(),
        services: published
            .into_iter()
            .map(|(service, p)| {
                let entry = HostService {
                    reading: p.reading,
                    applied: p.applied,
                    weight: p.weight,
                };
                (service, entry)
            })
            .collect(),
    };
    fleet.store.put_host(lease, &record).await?;
    fleet.contact();
    Ok(())
}

/// Cut off longer than `grace`: new flows of fleet rollouts in progress go
/// to stable, once.
async fn check_grace(fleet: &Fleet, owner: &Handle, cut_off: &mut bool) {
    if *cut_off || fleet.silence() <= fleet.config.grace {
        return;
    }
    *cut_off = true;
    fleet.metrics.cut_off.set(1);
    fleet.set_leading(false);
    let changed = owner
        .call("fleet cut off", |d| Ok(d.fleet_cut_off()))
        .await
        .unwrap_or_default();
    log::warn!(
        "fleet {}: etcd has not answered for {:?} (grace {:?}): new flows of {} go to stable; \
         established connections stay where they are",
        fleet.config.name,
        fleet.silence(),
        fleet.config.grace,
        if changed.is_empty() {
            "no service (none had canary weight in a fleet rollout)".to_owned()
        } else {
            changed.join(", ")
        }
    );
}
