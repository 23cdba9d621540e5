//! Rollout events POSTed as JSON to the plan's `webhook`, after the
//! decision was carried out, so a failing receiver never holds up a
//! rollback.
//!
//! One delivery thread takes the events from one bounded queue, in order:
//! however many rollouts post and however long a receiver hangs, webhooks
//! cost one thread and one socket, inside the descriptor reserve
//! (`fds::RESERVE`), never a descriptor that a decision, a set-weight or a
//! reload needs (issue 23: a thread and a socket per event took them all).
//! A full queue drops the oldest `hold` event (else the oldest event),
//! logged and counted in `canary_webhook_events_total{outcome="dropped"}`.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Condvar, Mutex},
    thread,
    time::Duration,
};

use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::model::redact::redact;
use crate::model::rollout::{Action, Phase, Record};

/// One try's limit, connection included.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Tries of an event whose receiver refused or failed it (a timed-out
/// receiver is not asked again: it may have the event, and it would hold
/// every later event up).
const TRIES: u32 = 3;
/// Events waiting at most: with one try every 3 s at worst, a minute's
/// worth of a hanging receiver's backlog.
pub const QUEUE: usize = 64;

/// What a receiver gets (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub service: String,
    pub phase: Phase,
    pub decision: Record,
}

/// The queue's sending side; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<VecDeque<(String, Event)>>,
    ready: Condvar,
    /// By outcome: delivered, failed (given up), dropped (queue full).
    events: IntCounterVec,
}

impl Webhooks {
    /// Starts the delivery thread; the counters go into `registry`.
    pub fn start(registry: &Registry) -> Result<Webhooks, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "canary_webhook_events_total",
                "Rollout events for webhooks, by outcome: delivered, failed (given up after its \
                 tries or a timeout) or dropped (the queue was full).",
            ),
            &["outcome"],
        )?;
        // Every outcome from the start, at 0: a rate() needs the series.
        for outcome in ["delivered", "failed", "dropped"] {
            events.with_label_values(&[outcome]);
        }
        registry.register(Box::new(events.clone()))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(QUEUE)),
            ready: Condvar::new(),
            events,
        });
        let worker = shared.clone();
        thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || worker.deliver_forever())
            .map_err(|e| prometheus::Error::Msg(format!("starting the webhook thread: {e}")))?;
        Ok(Webhooks { shared })
    }

    /// Queues the event; never blocks.
    pub fn post(&self, url: String, service: String, phase: Phase, decision: Record) {
        let event = Event {
            service,
            phase,
            decision,
        };
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dropped) = make_room(&mut q) {
            self.shared.events.with_label_values(&["dropped"]).inc();
            log::warn!(
                "webhook {}: {QUEUE} events waiting, dropped the {:?} event of service {} look {}",
                redact(&dropped.0),
                dropped.1.decision.action,
                dropped.1.service,
                dropped.1.decision.look
            );
        }
        q.push_back((url, event));
        self.shared.ready.notify_one();
    }
}

/// Takes one event out of a full queue: the oldest `hold` (the most
/// frequent and least telling), else the oldest.
fn make_room(q: &mut VecDeque<(String, Event)>) -> Option<(String, Event)> {
    if q.len() < QUEUE {
        return None;
    }
    let at = q
        .iter()
        .position(|(_, e)| e.decision.action == Action::Hold)
        .unwrap_or(0);
    q.remove(at)
}

impl Shared {
    fn deliver_forever(&self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        loop {
            let (url, event) = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(next) = q.pop_front() {
                        break next;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let outcome = deliver(&agent, &url, &event);
            self.events.with_label_values(&[outcome]).inc();
        }
    }
}

/// One event, up to `TRIES` tries; "delivered" or "failed".
fn deliver(agent: &ureq::Agent, url: &str, event: &Event) -> &'static str {
    for attempt in 1..=TRIES {
        match agent.post(url).send_json(event) {
            Ok(_) => return "delivered",
            Err(e) if attempt == TRIES || timed_out(&e) => {
                log::warn!(
                    "webhook {}: giving up on service {} look {} after {attempt} tries: {}",
                    redact(url),
                    event.service,
                    event.decision.look,
                    e
                );
                return "failed";
            }
            Err(_) => thread::sleep(Duration::from_millis(500 * u64::from(attempt))),
        }
    }
    "failed"
}

fn timed_out(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rollout::Verdict;

    fn event(look: u32, action: Action) -> (String, Event) {
        (
            "http://127.0.0.1:1/".into(),
            Event {
                service: "m".into(),
                phase: Phase::Running,
                decision: Record {
                    at_unix_ms: 0,
                    look,
                    step: 0,
                    weight: crate::model::weight::Weight::ZERO,
                    interval_attempts: [0, 0],
                    verdict: Verdict::Pass,
                    action,
                    checks: vec![],
                    reason: String::new(),
                    dry_run: false,
                },
            },
        )
    }

    #[test]
    fn a_full_queue_drops_the_oldest_hold_and_keeps_the_rest() {
        let mut q = VecDeque::new();
        q.push_back(event(0, Action::Rollback));
        for look in 1..QUEUE as u32 {
            q.push_back(event(look, Action::Hold));
        }
        assert_eq!(q.len(), QUEUE);
        let dropped = make_room(&mut q).unwrap();
        assert_eq!(dropped.1.decision.look, 1);
        assert_eq!(q.len(), QUEUE - 1);
        assert_eq!(q[0].1.decision.action, Action::Rollback);
        assert!(make_room(&mut q).is_none(), "room for one more");
        // Nothing but decisive events: the oldest goes.
        let mut q: VecDeque<_> = (0..QUEUE as u32)
            .map(|l| event(l, Action::StepUp { step: 1 }))
            .collect();
        assert_eq!(make_room(&mut q).unwrap().1.decision.look, 0);
    }
}
