//! One fake host: what a canaryd's fleet agent (`fleet::agent`) does to
//! etcd, with synthetic signals in place of a data path. It holds its own
//! lease on its own connection (as every canaryd does), renews it and
//! publishes its `HostRecord` every publish interval, watches the fleet's
//! rollout records and, like the agent, publishes again at once after
//! every record written (with `applied` raised when the record carries a
//! new generation). Its lease handling is the agent's, failures
//! included: a renewal that fails is retried with the same lease. Not
//! simulated: `members/` (written once at join), the grace cut-off, and a
//! data path's state file.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use canary_userspace::{
    config::FleetConfig,
    daemon::unix_ms,
    fleet::{
        records::{FleetWeight, HostRecord, HostService},
        store::{Store, StoreError, parse},
    },
    model::weight::Weight,
};
use etcd_client::EventType;
use tokio::sync::{mpsc, watch};

use crate::traffic::Traffic;

/// A host published a new generation: when its put returned.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub host: usize,
    pub generation: u64,
    pub at_unix_us: u64,
}

/// What every fake host of a run shares.
#[derive(Clone)]
pub struct Shared {
    pub service: String,
    /// Requests each host serves per publish interval.
    pub requests_per_publish: u64,
    pub applied: mpsc::UnboundedSender<Applied>,
    /// Failed etcd calls of all hosts (a host that fails goes on).
    pub errors: Arc<AtomicU64>,
    /// Print every failed call, not only the first few.
    pub verbose: bool,
}

/// How long to wait before trying etcd again after a failure (the
/// agent's `RETRY`).
const RETRY: Duration = Duration::from_millis(500);

/// Why a session ended (as the agent's `Ended`).
enum Ended {
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for Ended {
    fn from(e: StoreError) -> Ended {
        Ended::Store(e)
    }
}

/// Runs host `index` (named in `config.host`) until `stop`, after waiting
/// `delay` so that hosts join one after another and publish at different
/// moments of the interval, as real hosts do.
pub async fn run(
    index: usize,
    config: FleetConfig,
    delay: Duration,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => return,
    }
    let mut host = FakeHost {
        index,
        config,
        shared,
        traffic: Traffic::new(),
        applied: 0,
        reported: 0,
        weight: Weight::ZERO,
    };
    tokio::select! {
        never = host.live() => match never {},
        _ = stop.changed() => {}
    }
}

struct FakeHost {
    index: usize,
    config: FleetConfig,
    shared: Shared,
    traffic: Traffic,
    /// The last generation applied, and its weight.
    applied: u64,
    weight: Weight,
    /// The last generation told to the run (`Applied`).
    reported: u64,
}

impl FakeHost {
    /// The agent's outer loop: a lease, sessions on it, a new lease when
    /// etcd let it expire, a pause after every failure.
    async fn live(&mut self) -> std::convert::Infallible {
        let store = loop {
            match Store::connect(&self.config).await {
                Ok(store) => break store,
                Err(e) => self.failed(&e),
            }
            tokio::time::sleep(RETRY).await;
        };
        let mut lease = None;
        loop {
            let id = match lease {
                Some(id) => id,
                None => match store.grant(self.config.lease_ttl).await {
                    Ok(id) => id,
                    Err(e) => {
                        self.failed(&e);
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            lease = Some(id);
            match self.session(&store, id).await {
                Ended::LeaseLost => lease = None,
                Ended::Store(e) => {
                    self.failed(&e);
                    tokio::time::sleep(RETRY).await;
                    if let Ok(false) = store.renew(id).await {
                        lease = None;
                    }
                }
            }
        }
    }

    /// The agent's session: read the records, watch, publish.
    async fn session(&mut self, store: &Store, lease: i64) -> Ended {
        match self.session_inner(store, lease).await {
            Ok(never) => match never {},
            Err(ended) => ended,
        }
    }

    async fn session_inner(
        &mut self,
        store: &Store,
        lease: i64,
    ) -> Result<std::convert::Infallible, Ended> {
        let (revision, records) = store.weights().await?;
        for (_, record) in records {
            self.apply(&record);
        }
        let mut watch = store.watch_weights(revision + 1).await?;
        self.publish(store, lease).await?;
        let mut tick = tokio::time::interval(self.config.publish);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // The first tick is immediate: published above.
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match store.renew(lease).await {
                        Ok(true) => {}
                        Ok(false) => return Err(Ended::LeaseLost),
                        Err(e) => {
                            self.failed(&e);
                            continue;
                        }
                    }
                    self.traffic.serve(self.shared.requests_per_publish, self.weight);
                    if let Err(e) = self.publish(store, lease).await {
                        self.failed(&e);
                    }
                }
                message = watch.message() => {
                    let answer = message.map_err(StoreError::from)?.ok_or_else(|| {
                        StoreError::Etcd(etcd_client::Error::WatchError("the watch ended".into()))
                    })?;
                    let mut new = false;
                    for event in answer.events() {
                        let (EventType::Put, Some(kv)) = (event.event_type(), event.kv()) else {
                            continue;
                        };
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        match parse::<FleetWeight>(&key, kv.value()) {
                            Ok(record) => new |= self.apply(&record),
                            Err(e) => self.failed(&e),
                        }
                    }
                    // As the agent: a new generation is answered at once.
                    if new && let Err(e) = self.publish(store, lease).await {
                        self.failed(&e);
                    }
                }
            }
        }
    }

    /// Whether `record` was a generation this host had not applied.
    fn apply(&mut self, record: &FleetWeight) -> bool {
        let new = record.generation > self.applied;
        if new {
            self.applied = record.generation;
            self.weight = record.weight;
        }
        new
    }

    async fn publish(&mut self, store: &Store, lease: i64) -> Result<(), StoreError> {
        let service = HostService {
            reading: self.traffic.reading.clone(),
            applied: self.applied,
            weight: self.weight,
        };
        let record = HostRecord {
            host: self.config.host.clone(),
            at_unix_ms: unix_ms(),
            services: BTreeMap::from([(self.shared.service.clone(), service)]),
        };
        store.put_host(lease, &record).await?;
        if self.applied > self.reported {
            self.reported = self.applied;
            // The run may be over and its receiver gone: nothing to tell.
            let _ = self.shared.applied.send(Applied {
                host: self.index,
                generation: self.applied,
                at_unix_us: unix_us(),
            });
        }
        Ok(())
    }

    fn failed(&self, e: &StoreError) {
        // The first few say what went wrong; the count says how often.
        if self.shared.errors.fetch_add(1, Ordering::Relaxed) < 5 || self.shared.verbose {
            eprintln!("  {}: {e}", self.config.host);
        }
    }
}

pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
