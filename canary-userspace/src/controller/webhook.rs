//! Rollout events POSTed as JSON to the plan's `webhook`: a few tries with
//! a timeout each, on a blocking thread of their own, after the decision
//! was carried out, so a failing receiver never holds up a rollback.

use std::{thread, time::Duration};

use serde::{Deserialize, Serialize};

use super::policy::{Phase, Record};

const TIMEOUT: Duration = Duration::from_secs(3);
const TRIES: u32 = 3;

/// What a receiver gets (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub service: String,
    pub phase: Phase,
    pub decision: Record,
}

/// Sends the event in the background; failures are logged, never retried
/// past `TRIES`.
pub fn post_later(url: String, service: String, phase: Phase, decision: Record) {
    let event = Event {
        service,
        phase,
        decision,
    };
    thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        for attempt in 1..=TRIES {
            match agent.post(&url).send_json(&event) {
                Ok(_) => return,
                Err(e) if attempt == TRIES => {
                    log::warn!("webhook {url}: giving up after {TRIES} tries: {e}")
                }
                Err(_) => thread::sleep(Duration::from_millis(500 * u64::from(attempt))),
            }
        }
    });
}
