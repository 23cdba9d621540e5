//! The fleet's cumulative reading, from the readings its hosts publish.
//!
//! A rollout's evidence is the difference of two cumulative readings
//! (`RolloutRun::evidence`), so the fleet's reading must only ever grow.
//! A plain sum of the live hosts' counters does not: a host that goes
//! takes its counts with it, one that reboots starts again from zero. The
//! ledger keeps, per host, the reading it had when the ledger first saw it
//! (its base) and the last one; the fleet's reading is what every host
//! added since its base, plus what hosts that went (or were reset) had
//! added before. A host that joins counts from then; one that goes keeps
//! what it had counted and adds nothing more. Histograms add bucket by
//! bucket, so the fleet's quantiles are those of all its requests.
//!
//! The ledger lives in the leader's memory only: a new leader starts one
//! from the reading the last look stored (`RolloutRun::last`), with every
//! live host's base at its reading then, so the evidence goes on from
//! where the stored rollout stands (what hosts counted between the last
//! look and the takeover is not counted); its first look comes one
//! interval after the takeover (`fleet::leader`).

use std::collections::BTreeMap;

use super::run::Reading;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    /// What hosts no longer counted here had added.
    departed: Reading,
    /// Per host: (base, last).
    hosts: BTreeMap<String, (Reading, Reading)>,
}

fn plus(a: &Reading, b: &Reading) -> Reading {
    [a[0].plus(&b[0]), a[1].plus(&b[1])]
}

fn since(now: &Reading, base: &Reading) -> Reading {
    [now[0].since(&base[0]), now[1].since(&base[1])]
}

impl Ledger {
    /// A ledger whose fleet reading starts at `so_far`.
    pub fn starting_at(so_far: Reading) -> Ledger {
        Ledger {
            departed: so_far,
            hosts: BTreeMap::new(),
        }
    }

    /// Hosts counted now.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    /// Takes the live hosts' readings now and returns the fleet's reading.
    pub fn update(&mut self, live: &BTreeMap<String, Reading>) -> Reading {
        let gone: Vec<String> = self
            .hosts
            .keys()
            .filter(|h| !live.contains_key(*h))
            .cloned()
            .collect();
        for host in gone {
            if let Some((base, last)) = self.hosts.remove(&host) {
                self.departed = plus(&self.departed, &since(&last, &base));
            }
        }
        for (host, now) in live {
            match self.hosts.get_mut(host) {
                None => {
                    self.hosts.insert(host.clone(), (now.clone(), now.clone()));
                }
                Some((base, last)) => {
                    let reset = now[0].went_back_from(&last[0]) || now[1].went_back_from(&last[1]);
                    if reset {
                        // Keep what it had added; count it again from zero.
                        self.departed = plus(&self.departed, &since(last, base));
                        *base = Reading::default();
                    }
                    *last = now.clone();
                }
            }
        }
        self.total()
    }

    /// The fleet's reading as of the last update.
    pub fn total(&self) -> Reading {
        self.hosts
            .values()
            .fold(self.departed.clone(), |sum, (base, last)| {
                plus(&sum, &since(last, base))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::signals::{Histogram, VersionSignals};

    /// A reading of `requests` per version, each with a response at
    /// bucket 3 of the latency histogram.
    fn reading(stable: u64, canary: u64) -> Reading {
        let one = |n: u64| {
            let mut latency = Histogram::latency();
            latency.counts[3] = n;
            VersionSignals {
                requests: n,
                responses: n,
                http: vec![0; canary_common::signals::HTTP_CLASSES],
                latency,
                ..Default::default()
            }
        };
        [one(stable), one(canary)]
    }

    fn live(hosts: &[(&str, Reading)]) -> BTreeMap<String, Reading> {
        hosts
            .iter()
            .map(|(h, r)| (h.to_string(), r.clone()))
            .collect()
    }

    #[test]
    fn the_fleet_reading_adds_what_each_host_did_since_it_was_first_seen() {
        let mut l = Ledger::starting_at(reading(0, 0));
        let t = l.update(&live(&[("a", reading(100, 10)), ("b", reading(50, 5))]));
        assert_eq!(
            t,
            reading(0, 0),
            "hosts count from when they are first seen"
        );
        let t = l.update(&live(&[("a", reading(130, 13)), ("b", reading(70, 7))]));
        assert_eq!(t, reading(50, 5));
        assert_eq!(t[1].latency.counts[3], 5, "histograms add bucket by bucket");
    }

    #[test]
    fn a_host_that_goes_keeps_its_counts_and_the_reading_never_goes_back() {
        let mut l = Ledger::starting_at(reading(7, 1));
        l.update(&live(&[("a", reading(100, 10)), ("b", reading(50, 5))]));
        let before = l.update(&live(&[("a", reading(110, 11)), ("b", reading(60, 6))]));
        assert_eq!(before, reading(27, 3));
        let after = l.update(&live(&[("a", reading(120, 12))]));
        assert_eq!(after, reading(37, 4), "b's 10 and 1 stay counted");
        // b comes back with its counters where they were: counts afresh.
        let back = l.update(&live(&[("a", reading(120, 12)), ("b", reading(65, 7))]));
        assert_eq!(back, reading(37, 4));
        assert_eq!(l.hosts().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_host_whose_counters_were_reset_counts_again_from_zero() {
        let mut l = Ledger::starting_at(reading(0, 0));
        l.update(&live(&[("a", reading(100, 10))]));
        l.update(&live(&[("a", reading(150, 15))]));
        let t = l.update(&live(&[("a", reading(4, 1))]));
        assert_eq!(t, reading(54, 6), "50 + 5 before the reboot, 4 + 1 after");
    }
}
