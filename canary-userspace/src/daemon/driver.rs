//! The rollout driver: a task on the async runtime that, for every running
//! rollout whose interval is up, reads both versions' signals (from the
//! counters, not the owner), queries the gates (off the runtime's thread,
//! each with a timeout), runs the pure policy and sends the owner one
//! command with the decision. Each evaluation runs on a task of its own, so
//! a slow Prometheus delays only its own rollout, never another's, a
//! status, a scrape or a manual rollback.

use crate::model::rollout::Phase;
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{observe::Observer, owner::Handle, unix_ms};
use crate::{
    controller::{
        policy::{GateReading, evaluate},
        prometheus::{self, QUERY_TIMEOUT},
        run::{Reading, RolloutRun},
        webhook::Webhooks,
    },
    model::signals::VersionSignals,
};

/// Longest the driver sleeps before looking for due rollouts again (a
/// rollout started meanwhile is noticed within it).
const TICK: Duration = Duration::from_millis(250);

/// Runs until the runtime stops; every decision's event goes to `webhooks`.
pub async fn run(owner: Handle, observer: Observer, webhooks: Webhooks) {
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let snap = observer.snapshot.borrow().clone();
        let now = unix_ms();
        for (service, run) in &snap.rollouts {
            if run.state.phase != Phase::Running || run.next_at_unix_ms > now {
                continue;
            }
            let Some(reg) = snap.services.iter().find(|r| &r.spec.name == service) else {
                continue;
            };
            // One evaluation per rollout at a time.
            if !busy
                .lock()
                .map(|mut b| b.insert(service.clone()))
                .unwrap_or(false)
            {
                continue;
            }
            let (owner, observer, busy) = (owner.clone(), observer.clone(), busy.clone());
            let (service, run, id, webhooks) =
                (service.clone(), run.clone(), reg.id, webhooks.clone());
            tokio::spawn(async move {
                evaluate_one(&owner, &observer, &webhooks, &service, run, id).await;
                if let Ok(mut b) = busy.lock() {
                    b.remove(&service);
                }
            });
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn evaluate_one(
    owner: &Handle,
    observer: &Observer,
    webhooks: &Webhooks,
    service: &str,
    run: RolloutRun,
    id: u32,
) {
    let reading: Reading = match observer.counters.version_signals(id) {
        Ok([s, c]) => [VersionSignals::from(&s), VersionSignals::from(&c)],
        Err(e) => {
            log::error!("service {service}: reading signals for the rollout failed: {e}");
            return;
        }
    };
    let gates = read_gates(&run).await;
    let now = unix_ms();
    let decision = evaluate(&run.plan, &run.state, &run.evidence(&reading, gates), now);
    let record = decision.next.history.last().cloned();
    let looks = run.state.looks;
    let service_owned = service.to_owned();
    let applied = owner
        .call(format!("rollout decision {service}"), move |d| {
            d.apply_decision(&service_owned, looks, decision, reading, now)
        })
        .await;
    match applied {
        Ok(after) => {
            if let (Some(url), Some(record)) = (&run.plan.webhook, record) {
                webhooks.post(url.clone(), service.to_owned(), after.state.phase, record);
            }
        }
        Err(e) => log::warn!("service {service}: rollout decision not applied: {e}"),
    }
}

/// Every gate of the plan, queried in parallel off the runtime's thread.
async fn read_gates(run: &RolloutRun) -> Vec<GateReading> {
    let Some(base) = run.plan.prometheus.clone() else {
        return vec![];
    };
    let queries = run.plan.gates.iter().map(|g| {
        let (base, query, name) = (base.clone(), g.query.clone(), g.name.clone());
        async move {
            let value = tokio::task::spawn_blocking(move || {
                prometheus::query(&base, &query, QUERY_TIMEOUT).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the query's task failed: {e}")));
            GateReading { name, value }
        }
    });
    let mut out = vec![];
    for q in queries {
        out.push(q.await);
    }
    out
}
