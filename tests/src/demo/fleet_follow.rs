//! The fleet demo's live part, from the rollout's start to its end: every
//! host's status sampled at the same moments, each decision printed with
//! the leader that took it, a line a second; half way, the leader killed
//! (`kill -9`) and the takeover timed; then the rollout followed on the
//! hosts that remain until it ends and every one of them uses its weight.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use canary_userspace::{
    api::{RolloutReport, fleet::FleetStatus},
    model::rollout::{Phase, Verdict},
};
use xtask::canaryd::Canaryd;

use super::{
    fleet_timeline::{FleetSample, FleetTimeline},
    run::{ROLLOUT_LIMIT, SAMPLE_EVERY, SAMPLES_PER_POINT, SERVICE, ms, pct, unix_ms},
    timeline::{Mark, MarkKind, Point, Sample, describe},
};
use crate::fleet::{FleetUnderTest, LEASE_TTL};

/// How often the leader is looked up between the kill and the takeover:
/// the resolution of the takeover time.
const TAKEOVER_POLL: Duration = Duration::from_millis(50);
/// A takeover slower than this is a failure: the lease (2 s) has long
/// expired and every host ticks every 250 ms.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(15);

/// The fleet's hosts as the demo reads them: which still have a canaryd.
pub struct Hosts<'a> {
    pub f: &'a FleetUnderTest,
    pub alive: Vec<bool>,
}

impl Hosts<'_> {
    pub fn name(i: usize) -> String {
        format!("host-{i}")
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.alive.len()).filter(|i| self.alive[*i])
    }

    /// Every live host's status now.
    pub fn sample(&self) -> Result<FleetSample> {
        let at_unix_ms = unix_ms();
        let hosts = (0..self.alive.len())
            .map(|i| {
                if !self.alive[i] {
                    return Ok(None);
                }
                let status = self
                    .f
                    .client(i)
                    .status()
                    .with_context(|| format!("status of {}", Hosts::name(i)))?;
                let svc = status
                    .services
                    .iter()
                    .find(|s| s.name == SERVICE)
                    .with_context(|| format!("{} no longer reports {SERVICE}", Hosts::name(i)))?;
                Ok(Some(Sample::of(at_unix_ms, svc)))
            })
            .collect::<Result<_>>()?;
        Ok(FleetSample { at_unix_ms, hosts })
    }

    /// The fleet's rollout, as the first live host reports it.
    pub fn report(&self) -> Result<RolloutReport> {
        let i = self.live().next().context("no host of the fleet is left")?;
        self.f
            .client(i)
            .rollout_status(SERVICE)
            .with_context(|| format!("rollout status from {}", Hosts::name(i)))
    }

    /// `canaryctl fleet status` on the first live host.
    pub fn fleet_status(&self) -> Result<FleetStatus> {
        let i = self.live().next().context("no host of the fleet is left")?;
        self.f
            .client(i)
            .fleet_status()
            .with_context(|| format!("fleet status from {}", Hosts::name(i)))
    }
}

/// The leader killed, and the host that took its place.
#[derive(Clone, Debug)]
pub struct Takeover {
    pub killed: String,
    pub killed_index: usize,
    /// Where the rollout stood: its step (index) and looks so far.
    pub at_step: usize,
    pub at_looks: u32,
    pub killed_unix_ms: u64,
    /// Answers from each host's VIP up to the kill (the labeller's count).
    pub answered_at_kill: Vec<u64>,
    pub new_leader: String,
    /// From the kill (the process reaped) to the first fleet status that
    /// names another leader, polled every `TAKEOVER_POLL`.
    pub took: Duration,
}

/// A kill done, its takeover not seen yet.
struct Killed {
    name: String,
    index: usize,
    at: Instant,
    at_unix_ms: u64,
    at_step: usize,
    at_looks: u32,
    answered: Vec<u64>,
}

/// Half way: at the plan's middle step, or right after a look that failed
/// (a failing canary is rolled back at a later look, which the new leader
/// must then take).
pub fn half_way(report: &RolloutReport) -> bool {
    report.phase == Phase::Running
        && (report.step >= report.steps.len() / 2
            || report.history.iter().any(|r| r.verdict == Verdict::Fail))
}

/// Follows the rollout started at `timeline.start_unix_ms` to its end,
/// killing the leader half way; `answered` reads the clients' answers per
/// host. The last report and the takeover.
pub fn follow(
    hosts: &mut Hosts,
    daemons: &mut [Canaryd],
    timeline: &mut FleetTimeline,
    answered: &dyn Fn() -> Vec<u64>,
) -> Result<(RolloutReport, Takeover)> {
    let deadline = Instant::now() + ROLLOUT_LIMIT;
    let mut next_sample = Instant::now();
    let mut printed = 0;
    let mut leader: Option<String> = None;
    let mut killed: Option<Killed> = None;
    let mut takeover: Option<Takeover> = None;
    loop {
        if let (Some(k), None) = (&killed, &takeover) {
            takeover = look_for_takeover(hosts, k, timeline)?;
            if let Some(t) = &takeover {
                leader = Some(t.new_leader.clone());
            }
        }
        if Instant::now() < next_sample {
            thread::sleep(TAKEOVER_POLL);
            continue;
        }
        // A slow round does not make the next ones come in a burst.
        next_sample = (next_sample + SAMPLE_EVERY).max(Instant::now());
        timeline.samples.push(hosts.sample()?);
        if killed.is_none() {
            leader = hosts.fleet_status()?.leader;
        }
        let report = hosts.report()?;
        for r in &report.history[printed.min(report.history.len())..] {
            let by = match (&killed, &takeover) {
                (Some(k), Some(t)) if r.at_unix_ms >= k.at_unix_ms => t.new_leader.as_str(),
                (Some(k), None) if r.at_unix_ms >= k.at_unix_ms => "the new leader",
                (Some(k), _) => k.name.as_str(),
                (None, _) => leader.as_deref().unwrap_or("no leader"),
            };
            println!(
                "  {:>5.1}s  decision by {by}: {}",
                timeline.t(r.at_unix_ms),
                describe(r)
            );
        }
        printed = report.history.len();
        timeline.decisions = report.history.clone();
        // A line when the newest sample ends a window, so that its weights
        // and its evidence are of the same moment.
        let windows_end = (timeline.samples.len() - 1).is_multiple_of(SAMPLES_PER_POINT);
        if windows_end && let Some(p) = timeline.evidence(SAMPLES_PER_POINT).last() {
            // Until its lease runs out etcd still names the killed leader.
            let shown = match (&killed, &takeover) {
                (Some(k), None) => format!("{} (killed)", k.name),
                _ => leader.clone().unwrap_or_else(|| "-".into()),
            };
            print_live(p, timeline, &shown);
        }
        if killed.is_none() && half_way(&report) {
            killed = Some(kill_leader(hosts, daemons, &report, timeline, answered)?);
        }
        if report.phase.is_over() {
            let Some(takeover) = &takeover else {
                bail!(
                    "the rollout ended {} before {}: {}",
                    report.phase.name(),
                    if killed.is_some() {
                        "a new leader took over"
                    } else {
                        "it was half way, so no leader was killed"
                    },
                    report.reason
                );
            };
            let last = timeline.samples.last().expect("sampled above");
            let applied = last
                .hosts
                .iter()
                .flatten()
                .all(|s| s.weight == report.weight);
            if applied {
                return Ok((report, takeover.clone()));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the rollout still runs after {ROLLOUT_LIMIT:?} (step {}, {}): {}",
                report.step + 1,
                report.phase.name(),
                report.reason
            );
        }
    }
}

/// Kills the fleet's leader with SIGKILL: its canaryd ends at once, its
/// lease stays until etcd expires it.
fn kill_leader(
    hosts: &mut Hosts,
    daemons: &mut [Canaryd],
    report: &RolloutReport,
    timeline: &mut FleetTimeline,
    answered: &dyn Fn() -> Vec<u64>,
) -> Result<Killed> {
    let name = hosts
        .fleet_status()?
        .leader
        .context("half way, the fleet has no leader to kill")?;
    let index = (0..daemons.len())
        .find(|i| Hosts::name(*i) == name)
        .with_context(|| format!("the leader {name} is none of the demo's hosts"))?;
    let pid = daemons[index].pid;
    let answered = answered();
    daemons[index]
        .signal(libc::SIGKILL)
        .with_context(|| format!("kill -9 of {name}'s canaryd (pid {pid})"))?;
    let (at, at_unix_ms) = (Instant::now(), unix_ms());
    hosts.alive[index] = false;
    let weight = report.steps.get(report.step).copied().unwrap_or_default();
    println!(
        "  {:>5.1}s  KILL -9 canaryd of {name}, the leader (pid {pid}), at step {} ({weight}) after look {}; \
         its data path serves on from its pins",
        timeline.t(at_unix_ms),
        report.step + 1,
        report.looks
    );
    timeline.events.push(Mark {
        t: timeline.t(at_unix_ms),
        label: format!("{name} killed"),
        kind: MarkKind::Fleet,
    });
    Ok(Killed {
        name,
        index,
        at,
        at_unix_ms,
        at_step: report.step,
        at_looks: report.looks,
        answered,
    })
}

/// Whether another host leads now; an error once `TAKEOVER_LIMIT` has
/// passed without one.
fn look_for_takeover(
    hosts: &Hosts,
    k: &Killed,
    timeline: &mut FleetTimeline,
) -> Result<Option<Takeover>> {
    let leader = hosts.fleet_status()?.leader;
    let Some(new) = leader.filter(|l| *l != k.name) else {
        if k.at.elapsed() > TAKEOVER_LIMIT {
            bail!(
                "no host took the lead within {TAKEOVER_LIMIT:?} of {}'s kill (lease_ttl {LEASE_TTL:?})",
                k.name
            );
        }
        return Ok(None);
    };
    let took = k.at.elapsed();
    let now = unix_ms();
    println!(
        "  {:>5.1}s  TAKEOVER: {new} leads now, {:.2} s after {} was killed (lease_ttl {} s)",
        timeline.t(now),
        took.as_secs_f64(),
        k.name,
        LEASE_TTL.as_secs()
    );
    timeline.events.push(Mark {
        t: timeline.t(now),
        label: format!("{new} leads"),
        kind: MarkKind::Fleet,
    });
    Ok(Some(Takeover {
        killed: k.name.clone(),
        killed_index: k.index,
        at_step: k.at_step,
        at_looks: k.at_looks,
        killed_unix_ms: k.at_unix_ms,
        answered_at_kill: k.answered.clone(),
        new_leader: new,
        took,
    }))
}

/// One live line: each host's weight (a killed host: "dead"), the
/// leader, and the last second's fleet evidence.
pub fn print_live(p: &Point, timeline: &FleetTimeline, leader: &str) {
    let weights: Vec<String> = timeline
        .samples
        .last()
        .map(|s| {
            s.hosts
                .iter()
                .map(|h| match h {
                    Some(h) => format!("{:.1}", h.weight.percent()),
                    None => "dead".into(),
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "  {:>5.1}s  weights % [{}] leader {}  fleet: stable {:>5.0} req/s err {} p99 {}  canary {:>5.0} req/s err {} p99 {}",
        p.t,
        weights.join(" "),
        leader,
        p.requests_per_s[0],
        pct(p.error_rate[0]),
        ms(p.p99_ms[0]),
        p.requests_per_s[1],
        pct(p.error_rate[1]),
        ms(p.p99_ms[1]),
    );
}
