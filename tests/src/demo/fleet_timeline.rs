//! What the fleet demo saw over time: every host's status sampled at the
//! same moments, the fleet rollout's decisions, and what was done to the
//! fleet. From them: each host's weight over time (a killed host's stops),
//! and the fleet's evidence per window, each version's signals summed over
//! the hosts that answered at both ends of it. That is what the leader's
//! ledger sums: a host that is gone adds nothing more (its data path may
//! still serve its VIP from its pins, but no one reads its counters).

use canary_userspace::model::{rollout::Record, signals::VersionSignals, weight::Weight};

use super::timeline::{Mark, Point, Sample, decision_marks, seconds_since, window};

/// Every host's status at one moment.
#[derive(Clone, Debug)]
pub struct FleetSample {
    pub at_unix_ms: u64,
    /// By host index; None where the host did not answer (killed).
    pub hosts: Vec<Option<Sample>>,
}

#[derive(Debug, Default)]
pub struct FleetTimeline {
    /// When the rollout started; the time axis' zero.
    pub start_unix_ms: u64,
    pub samples: Vec<FleetSample>,
    pub decisions: Vec<Record>,
    /// What was done to the fleet, or what it did on its own (a leader
    /// killed, another taking the lead), in order.
    pub events: Vec<Mark>,
}

impl FleetTimeline {
    pub fn t(&self, unix_ms: u64) -> f64 {
        seconds_since(self.start_unix_ms, unix_ms)
    }

    /// Host `i`'s weight in percent at each sample; None where it did not
    /// answer.
    pub fn weights(&self, i: usize) -> Vec<(f64, Option<f64>)> {
        self.samples
            .iter()
            .map(|s| {
                let w = s.hosts.get(i).and_then(Option::as_ref);
                (self.t(s.at_unix_ms), w.map(|w| w.weight.percent()))
            })
            .collect()
    }

    /// The fleet's evidence, one point per `every` samples: each version's
    /// traffic summed over the hosts that answered at both ends of the
    /// window. Its weight is the highest any of them used at the end (they
    /// agree but for the moment a new generation is being applied).
    pub fn evidence(&self, every: usize) -> Vec<Point> {
        let every = every.max(1);
        (every..self.samples.len())
            .step_by(every)
            .map(|i| {
                let (a, b) = (&self.samples[i - every], &self.samples[i]);
                let both: Vec<(&Sample, &Sample)> = a
                    .hosts
                    .iter()
                    .zip(&b.hosts)
                    .filter_map(|(a, b)| Some((a.as_ref()?, b.as_ref()?)))
                    .collect();
                window(
                    self.start_unix_ms,
                    &sum(a.at_unix_ms, both.iter().map(|p| p.0)),
                    &sum(b.at_unix_ms, both.iter().map(|p| p.1)),
                )
            })
            .collect()
    }

    /// The decisions that changed something and the fleet's events, as
    /// chart marks.
    pub fn marks(&self, steps: &[Weight]) -> Vec<Mark> {
        let mut marks = decision_marks(self.start_unix_ms, &self.decisions, steps);
        marks.extend(self.events.iter().cloned());
        marks.sort_by(|a, b| a.t.total_cmp(&b.t));
        marks
    }
}

/// Several hosts' samples as one: each version's signals added, the
/// highest weight.
fn sum<'s>(at_unix_ms: u64, hosts: impl Iterator<Item = &'s Sample> + Clone) -> Sample {
    Sample {
        at_unix_ms,
        weight: hosts
            .clone()
            .map(|h| h.weight)
            .max()
            .unwrap_or(Weight::ZERO),
        signals: [0, 1].map(|v| {
            hosts
                .clone()
                .fold(VersionSignals::default(), |acc, h| acc.plus(&h.signals[v]))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_unix_ms: u64, requests: [u64; 2], errors: [u64; 2]) -> Sample {
        crate::demo::timeline::test_sample(at_unix_ms, 2500, requests, errors)
    }

    #[test]
    fn evidence_sums_the_hosts_that_answered_at_both_ends() {
        let tl = FleetTimeline {
            start_unix_ms: 0,
            samples: vec![
                FleetSample {
                    at_unix_ms: 0,
                    hosts: vec![
                        Some(sample(0, [100, 10], [0, 0])),
                        Some(sample(0, [5_000, 500], [0, 0])),
                    ],
                },
                FleetSample {
                    at_unix_ms: 1_000,
                    hosts: vec![
                        Some(sample(1_000, [400, 110], [0, 10])),
                        Some(sample(1_000, [5_300, 600], [0, 0])),
                    ],
                },
                // Host 1 killed: its counters are no longer read.
                FleetSample {
                    at_unix_ms: 2_000,
                    hosts: vec![Some(sample(2_000, [700, 210], [0, 20])), None],
                },
            ],
            decisions: vec![],
            events: vec![],
        };
        let p = tl.evidence(1);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].requests_per_s, [600.0, 200.0]);
        assert_eq!(p[0].error_rate, [Some(0.0), Some(0.05)]);
        // Only host 0 at both ends of the second window: no host's
        // cumulative counts drop out as a negative rate.
        assert_eq!(p[1].requests_per_s, [300.0, 100.0]);
        assert_eq!(p[1].error_rate[1], Some(0.1));
        assert_eq!(
            tl.weights(1),
            [(0.0, Some(25.0)), (1.0, Some(25.0)), (2.0, None)]
        );
    }
}
