//! The fleet's leader: one canaryd of the fleet at a time judges its
//! rollouts on the whole fleet's numbers and writes each decision.
//!
//! Leadership is the `leader` key, created only where there is none and
//! held under the leader's lease: it goes when the leader is silent for
//! `lease_ttl`, and any other host takes it at its next tick. The key's
//! create revision is the leader's fencing token; every write of a
//! decision is a transaction that checks both that token and the revision
//! of the record the decision was taken on, so a leader that was paused or
//! cut off and comes back can never overwrite a newer decision, and an
//! operator's command taken meanwhile is never undone by a look begun
//! before it.
//!
//! A look: the live hosts' readings, summed by the `Ledger` into one
//! cumulative fleet reading; the gates, as on a single host; the same pure
//! policy. A step up (or promotion) waits until every live host serving the
//! service has applied the current generation; any other decision,
//! rollback first, waits for no host.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Fleet,
    records::{FleetRollout, HostRecord, Rebase},
    store::{StoreError, Versioned},
};
use crate::controller::prometheus::QUERY_TIMEOUT;
use crate::{
    controller::{ledger::Ledger, policy::evaluate, run::Reading, webhook::Webhooks},
    daemon::{driver::read_gates, unix_ms},
    model::rollout::{Action, Phase},
};

/// How often the leader (or a host that might lead) looks.
const TICK: Duration = Duration::from_millis(250);

/// How often a leader whose looks keep failing says so.
const FAILING_SAID: Duration = Duration::from_secs(10);

/// Runs until the runtime stops.
pub async fn run(fleet: Arc<Fleet>, webhooks: Webhooks) {
    let mut leader = Leader {
        fleet: fleet.clone(),
        webhooks,
        fence: None,
        ledgers: HashMap::new(),
        waiting: HashMap::new(),
    };
    // A leader whose looks fail says so (at most every FAILING_SAID): no
    // decision is taken meanwhile. A host that does not lead and cannot
    // reach etcd is already said by the agent.
    let mut failing: Option<(Option<Instant>, u32)> = None;
    loop {
        tokio::time::sleep(TICK).await;
        match leader.tick().await {
            Ok(()) => {
                if let Some((_, n)) = failing.take() {
                    log::warn!(
                        "fleet {}: the leader's looks go on ({n} ticks failed)",
                        fleet.config.name
                    );
                }
            }
            Err(e) if leader.fence.is_some() => {
                let (said, n) = failing.get_or_insert((None, 0));
                *n += 1;
                if said.is_none_or(|at| at.elapsed() >= FAILING_SAID) {
                    *said = Some(Instant::now());
                    log::warn!(
                        "fleet {}: leader: {e}; no decision is taken until etcd answers \
                         ({n} ticks failed)",
                        fleet.config.name
                    );
                }
            }
            Err(e) => log::debug!("fleet {}: leader: {e}", fleet.config.name),
        }
    }
}

struct Leader {
    fleet: Arc<Fleet>,
    webhooks: Webhooks,
    /// This host's fencing token while it leads.
    fence: Option<i64>,
    /// The fleet's reading per service, while this host leads.
    ledgers: HashMap<String, Ledger>,
    /// The generation a step up waits on per service, so it is logged once.
    waiting: HashMap<String, u64>,
}

impl Leader {
    async fn tick(&mut self) -> Result<(), StoreError> {
        let fleet = self.fleet.clone();
        let Some(lease) = fleet.lease() else {
            self.step_down("this host has no lease");
            return Ok(());
        };
        match self.fence {
            None => {
                if let Some(token) = fleet.store.campaign(fleet.host(), lease).await? {
                    self.fence = Some(token);
                    self.ledgers.clear();
                    fleet.set_leading(true);
                    log::warn!(
                        "fleet {}: {} leads the fleet now (token {token})",
                        fleet.config.name,
                        fleet.host()
                    );
                } else {
                    return Ok(());
                }
            }
            Some(token) => match fleet.store.leader().await? {
                Some((_, t)) if t == token => {}
                other => {
                    let now = other.map_or("no host".to_owned(), |(h, _)| h);
                    self.step_down(&format!("{now} leads now"));
                    return Ok(());
                }
            },
        }
        let (_, rollouts) = fleet.store.rollouts().await?;
        let mut hosts: Option<BTreeMap<String, HostRecord>> = None;
        let now = unix_ms();
        for (service, record) in rollouts {
            let run = &record.value.run;
            let running = run.state.phase == Phase::Running;
            let due = running && run.next_at_unix_ms <= now;
            let rebase = record.value.rebase.is_some() && !run.state.phase.is_over();
            // A leader new to a running rollout has no ledger for it: the
            // live hosts' readings now are its bases, so a look now would
            // see an interval with no requests. It takes them as the
            // interval's start and looks one interval later.
            let fresh = running && !self.ledgers.contains_key(&service);
            if !(due || rebase || fresh) {
                continue;
            }
            if hosts.is_none() {
                let live = fleet.store.hosts().await?;
                fleet.metrics.hosts.set(live.len() as i64);
                hosts = Some(live);
            }
            let live = hosts.as_ref().expect("read above");
            if rebase || fresh {
                self.rebase(&service, record, live).await?;
            } else {
                self.look(&service, record, live).await?;
            }
        }
        Ok(())
    }

    fn step_down(&mut self, why: &str) {
        if self.fence.take().is_some() {
            log::warn!(
                "fleet {}: {} no longer leads ({why})",
                self.fleet.config.name,
                self.fleet.host()
            );
        }
        self.fleet.set_leading(false);
        self.ledgers.clear();
    }

    /// The fleet's reading of `service` now.
    fn reading(
        &mut self,
        service: &str,
        record: &FleetRollout,
        live: &BTreeMap<String, HostRecord>,
    ) -> Reading {
        let readings: BTreeMap<String, Reading> = live
            .iter()
            .filter_map(|(h, r)| Some((h.clone(), r.services.get(service)?.reading.clone())))
            .collect();
        self.ledgers
            .entry(service.to_owned())
            .or_insert_with(|| Ledger::starting_at(record.run.last.clone()))
            .update(&readings)
    }

    /// A rollout started or resumed by a host, or new to this leader: its
    /// baselines from the fleet's reading, its next look an interval from
    /// now. No look is taken, so no check's count moves.
    async fn rebase(
        &mut self,
        service: &str,
        record: Versioned<FleetRollout>,
        live: &BTreeMap<String, HostRecord>,
    ) -> Result<(), StoreError> {
        let mut next = record.value.clone();
        let reading = self.reading(service, &next, live);
        if next.rebase == Some(Rebase::Start) {
            next.run.step_start = reading.clone();
            next.run.stable_before = None;
        }
        next.run.last = reading;
        next.run.next_at_unix_ms = unix_ms() + next.run.plan.interval.as_millis() as u64;
        next.rebase = None;
        next.by = self.fleet.host().to_owned();
        next.why = if record.value.rebase.is_some() {
            "baselines".into()
        } else {
            "baselines of a new leader".into()
        };
        self.write(service, &next, record.mod_revision).await?;
        Ok(())
    }

    async fn look(
        &mut self,
        service: &str,
        record: Versioned<FleetRollout>,
        live: &BTreeMap<String, HostRecord>,
    ) -> Result<(), StoreError> {
        let current = &record.value;
        let reading = self.reading(service, current, live);
        let gates = read_gates(&current.run.plan, QUERY_TIMEOUT).await;
        let now = unix_ms();
        let run = &current.run;
        let decision = evaluate(&run.plan, &run.state, &run.evidence(&reading, gates), now);
        let behind: Vec<&str> = live
            .iter()
            .filter(|(_, h)| {
                h.services
                    .get(service)
                    .is_some_and(|s| s.applied < current.generation)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        let moves_up = matches!(decision.action, Action::StepUp { .. } | Action::Promote);
        if moves_up && !behind.is_empty() {
            if self.waiting.insert(service.to_owned(), current.generation)
                != Some(current.generation)
            {
                log::warn!(
                    "fleet {}: service {service}: the next step waits until {} applied \
                     generation {}",
                    self.fleet.config.name,
                    behind.join(", "),
                    current.generation
                );
            }
            return Ok(());
        }
        self.waiting.remove(service);
        let mut next = current.clone();
        let action = decision.action;
        let effect = decision.effect;
        next.run.state = decision.next;
        next.run.advance(action, reading, now);
        if effect.weight.is_some() || effect.reset_canary {
            next.generation += 1;
            next.weight = effect.weight.unwrap_or(current.weight);
            next.reset_canary = effect.reset_canary;
        }
        next.by = self.fleet.host().to_owned();
        next.why = "look".into();
        if !self.write(service, &next, record.mod_revision).await? {
            return Ok(());
        }
        let last = next.run.state.history.last().cloned();
        log::log!(
            if matches!(action, Action::Hold) {
                log::Level::Info
            } else {
                log::Level::Warn
            },
            "fleet {}: service {service}: look {} on {} hosts: {}",
            self.fleet.config.name,
            next.run.state.looks,
            live.len(),
            decision.reason
        );
        if let (Some(url), Some(last)) = (&next.run.plan.webhook, last) {
            self.webhooks
                .post(url.clone(), service.to_owned(), next.run.state.phase, last);
        }
        Ok(())
    }

    /// Writes a decision, fenced; false (and this host steps down if it
    /// lost the lead) when the store refused it.
    async fn write(
        &mut self,
        service: &str,
        next: &FleetRollout,
        read_at: i64,
    ) -> Result<bool, StoreError> {
        let Some(token) = self.fence else {
            return Ok(false);
        };
        let store = &self.fleet.store;
        if store
            .write_rollout(service, next, read_at, Some(token))
            .await?
        {
            return Ok(true);
        }
        match store.leader().await? {
            Some((_, t)) if t == token => log::info!(
                "fleet {}: service {service}: the rollout changed while this look was taken \
                 (an operator's command); its decision is dropped",
                self.fleet.config.name
            ),
            _ => self.step_down("a write was refused: another host leads"),
        }
        Ok(false)
    }
}
