//! The rollout driver: a task on the async runtime that, for every running
//! rollout whose interval is up, reads both versions' signals (from the
//! counters, not the owner), queries the gates (all at once, off the
//! runtime's thread, one deadline for the look), runs the pure policy and
//! sends the owner one command with the decision. Each evaluation runs on a task of its own, so
//! a slow Prometheus delays only its own rollout, never another's, a
//! status, a scrape or a manual rollback.

use crate::model::rollout::Phase;
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{observe::Observer, owner::Handle, unix_ms};
use crate::controller::{
    plan::RolloutPlan,
    policy::{GateReading, evaluate},
    prometheus::{self, QUERY_TIMEOUT},
    run::{Reading, RolloutRun},
    webhook::Webhooks,
};

/// How much longer than the look's deadline a gate's query may run on its
/// thread (see `read_gates`).
const CLIENT_GRACE: Duration = Duration::from_millis(500);

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
    let reading: Reading = match observer.counters.version_reading(id) {
        Ok(reading) => reading,
        Err(e) => {
            log::error!("service {service}: reading signals for the rollout failed: {e}");
            return;
        }
    };
    let gates = read_gates(&run.plan, QUERY_TIMEOUT).await;
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

/// Every gate of the plan, all queried at once off the runtime's thread,
/// with one deadline for the look: a gate without an answer by then is
/// inconclusive ("no answer within 5s"), as a query that timed out. The
/// look waits at most `within`, not `within` once per gate.
pub async fn read_gates(plan: &RolloutPlan, within: Duration) -> Vec<GateReading> {
    let Some(base) = plan.prometheus.clone() else {
        return vec![];
    };
    let deadline = tokio::time::Instant::now() + within;
    // The client's own timeout a little later than the look's: the look's
    // deadline is what a slow gate meets, and the query's thread still
    // ends soon after it.
    let client_timeout = within + CLIENT_GRACE;
    let queries: Vec<_> = plan
        .gates
        .iter()
        .map(|g| {
            let (base, query) = (base.clone(), g.query.clone());
            let task = tokio::task::spawn_blocking(move || {
                prometheus::query(&base, &query, client_timeout).map_err(|e| e.to_string())
            });
            (g.name.clone(), task)
        })
        .collect();
    let mut out = Vec::with_capacity(queries.len());
    for (name, task) in queries {
        let value = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => Err(format!("the query's task failed: {e}")),
            Err(_) => Err(format!("no answer within {}s", within.as_secs_f64())),
        };
        out.push(GateReading { name, value });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, time::Instant};

    use super::*;
    use crate::controller::plan::Gate;

    /// Four gates on a Prometheus that takes every connection and never
    /// answers: the look is over in one deadline, not four.
    #[tokio::test]
    async fn a_look_waits_one_deadline_for_all_its_gates() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut plan = crate::controller::tests::plan();
        plan.prometheus = Some(format!("http://{}", silent.local_addr().unwrap()));
        plan.gates = (0..4)
            .map(|i| Gate {
                name: format!("hangs_{i}"),
                query: "1".into(),
                min: Some(0.5),
                max: None,
            })
            .collect();
        let within = Duration::from_secs(1);
        let started = Instant::now();
        let readings = read_gates(&plan, within).await;
        let took = started.elapsed();
        println!(
            "4 hanging gates, {within:?} deadline: the look took {took:?} (one at a time: {:?})",
            within * 4
        );
        assert!(took < within * 3 / 2, "took {took:?}");
        let names: Vec<_> = readings.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["hangs_0", "hangs_1", "hangs_2", "hangs_3"]);
        for r in &readings {
            assert_eq!(r.value, Err("no answer within 1s".to_owned()), "{r:?}");
        }
    }
}
