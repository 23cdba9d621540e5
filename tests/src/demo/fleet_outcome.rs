//! What the fleet demo prints at its end: the outcome, the takeover, what
//! the clients saw (connections broken, the killed host's VIP still
//! answering), the fleet's status, and which host posted each webhook.

use canary_userspace::{api::RolloutReport, controller::webhook::Event};

use super::{
    fleet_follow::Takeover,
    labeller::Seen,
    run::{AFTERMATH, action_name},
};
use crate::fleet::LEASE_TTL;

/// What `print_outcome` prints.
pub struct Summary<'a> {
    pub report: &'a RolloutReport,
    pub takeover: &'a Takeover,
    pub rollout_secs: f64,
    /// Seconds from the kill to the new leader's first decision.
    pub first_after: Option<f64>,
    pub seen: &'a Seen,
    pub answered_after_kill: u64,
    /// Requests of each version on the live hosts in the aftermath.
    pub after: [u64; 2],
    pub events: &'a [(Event, Option<String>)],
}

pub fn print_outcome(s: &Summary) {
    let (r, t, seen) = (s.report, s.takeover, s.seen);
    println!(
        "       {} after {} decisions in {:.1} s: {}",
        r.phase.name().to_uppercase(),
        r.history.len(),
        s.rollout_secs,
        r.reason
    );
    println!(
        "       leader {} killed at step {} after look {}; {} took over {:.2} s later (lease_ttl {} s){}",
        t.killed,
        t.at_step + 1,
        t.at_looks,
        t.new_leader,
        t.took.as_secs_f64(),
        LEASE_TTL.as_secs(),
        s.first_after
            .map(|a| format!(", its first decision {a:.1} s after the kill"))
            .unwrap_or_default()
    );
    let accuracy = |v: usize| {
        seen.accuracy(v)
            .map(|a| format!("{a:.3}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "       clients saw: stable {} answers ({} errors, accuracy {}), canary {} answers ({} errors, accuracy {}); \
         {} connections broken (requests without an answer)",
        seen.answered[0],
        seen.errors[0],
        accuracy(0),
        seen.answered[1],
        seen.errors[1],
        accuracy(1),
        seen.failed
    );
    println!(
        "       {}'s VIP after its canaryd was killed: {} answers (its data path ran on from its pins)",
        t.killed, s.answered_after_kill
    );
    if let Some(hosts) = &r.hosts {
        let listed: Vec<String> = hosts
            .iter()
            .map(|h| {
                let state = match (h.alive, h.leader) {
                    (false, _) => "gone",
                    (true, true) => "leader",
                    (true, false) => "alive",
                };
                let weight = h
                    .services
                    .first()
                    .map(|s| format!(" at {}", s.weight))
                    .unwrap_or_default();
                format!("{} {state}{weight}", h.name)
            })
            .collect();
        println!("       fleet status: {}", listed.join(", "));
    }
    println!(
        "       in the {} s after, on the live hosts: requests stable {}, canary {} (connections opened before the end finish where they are)",
        AFTERMATH.as_secs(),
        s.after[0],
        s.after[1]
    );
    println!(
        "       webhook received {} events: {}",
        s.events.len(),
        s.events
            .iter()
            .map(|(e, from)| format!(
                "{}/{} from {}",
                e.phase.name(),
                action_name(&e.decision.action),
                from.as_deref().unwrap_or("?")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
