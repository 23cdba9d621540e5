//! What the run sees of its fleet: every rollout record written (from its
//! own watch) and every host's first publish of each generation (from the
//! hosts), turned into per-generation times at the end.

use std::collections::BTreeMap;

use canary_userspace::{fleet::records::FleetRollout, model::weight::Weight};

use crate::host::{Applied, unix_us};

/// A generation the leader wrote, and when each host published it.
#[derive(Clone, Debug)]
pub struct Generation {
    pub number: u64,
    pub weight: Weight,
    /// Unix ms when the leader decided (the look's clock reading).
    pub decision_ms: u64,
    /// Unix µs when the run's own watch saw the record.
    pub seen_us: u64,
    /// Per host: unix µs of its first publish of this generation or a
    /// later one; None if it never did within the run.
    pub applied_us: Vec<Option<u64>>,
}

/// The first record of a generation, as the watch saw it.
struct Seen {
    decision_ms: u64,
    seen_us: u64,
    weight: Weight,
    by_leader: bool,
}

pub struct Observer {
    leader: String,
    pub latest: FleetRollout,
    /// The store revision of the latest record: a new watch goes on after it.
    pub revision: i64,
    /// Records the leader wrote: baselines and every look.
    pub leader_writes: u64,
    seen: BTreeMap<u64, Seen>,
    /// Per host: (generation, unix µs) as each published a new one.
    applied: Vec<Vec<(u64, u64)>>,
}

impl Observer {
    /// Watching a fleet of `hosts` whose leader is `leader`, from the
    /// record the run wrote at `revision`.
    pub fn new(leader: &str, hosts: usize, start: FleetRollout, revision: i64) -> Observer {
        Observer {
            leader: leader.to_owned(),
            latest: start,
            revision,
            leader_writes: 0,
            seen: BTreeMap::new(),
            applied: vec![vec![]; hosts],
        }
    }

    pub fn record(&mut self, record: FleetRollout, mod_revision: i64) {
        if mod_revision <= self.revision {
            return; // Seen before a watch was started again.
        }
        self.revision = mod_revision;
        let by_leader = record.by == self.leader;
        self.leader_writes += u64::from(by_leader);
        // `RolloutRun::advance` set the next look one interval after the
        // decision's clock reading.
        let interval_ms = record.run.plan.interval.as_millis() as u64;
        let decision_ms = record.run.next_at_unix_ms.saturating_sub(interval_ms);
        self.seen.entry(record.generation).or_insert(Seen {
            decision_ms,
            seen_us: unix_us(),
            weight: record.weight,
            by_leader,
        });
        self.latest = record;
    }

    pub fn applied(&mut self, a: Applied) {
        if let Some(host) = self.applied.get_mut(a.host) {
            host.push((a.generation, a.at_unix_us));
        }
    }

    /// Hosts that have published the latest record's generation.
    pub fn caught_up(&self) -> usize {
        let current = self.latest.generation;
        self.applied
            .iter()
            .filter(|h| h.last().is_some_and(|(g, _)| *g >= current))
            .count()
    }

    /// The generations the leader wrote, each with every host's time.
    pub fn generations(&self) -> Vec<Generation> {
        self.seen
            .iter()
            .filter(|(_, s)| s.by_leader)
            .map(|(&number, s)| Generation {
                number,
                weight: s.weight,
                decision_ms: s.decision_ms,
                seen_us: s.seen_us,
                applied_us: self
                    .applied
                    .iter()
                    .map(|h| h.iter().find(|(g, _)| *g >= number).map(|(_, at)| *at))
                    .collect(),
            })
            .collect()
    }
}
