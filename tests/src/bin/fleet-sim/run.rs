//! One simulated fleet: etcd, the real leader, `hosts` fake hosts, one
//! rollout started as `canaryctl rollout start` would start it, watched
//! until it is promoted (or the run's time is up).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use canary_userspace::{
    config::FleetConfig,
    controller::{plan::RolloutPlan, run::RolloutRun, webhook::Webhooks},
    daemon::unix_ms,
    fleet::{
        records::{FleetRollout, Rebase},
        store::{Store, StoreError, json, parse},
    },
    model::{rollout::Phase, weight::Weight},
};
use etcd_client::EventType;
use tokio::sync::mpsc;

use crate::{
    etcd::{Counters, ENDPOINT, Etcd},
    host::{Applied, Shared},
    hosts::Hosts,
    leader::LeaderThread,
    logs::LEADER_LOG,
    observe::{Generation, Observer},
};

const FLEET: &str = "sim";
const SERVICE: &str = "model";
/// The leader's host name; records it writes carry it in `by`.
const LEADER: &str = "leader";
/// Who writes the start record, as an operator's command would.
const STARTER: &str = "fleet-sim";
/// Longest the hosts may take to publish their first records.
const JOIN: Duration = Duration::from_secs(60);
/// Tries of each of the run's own setup calls, and the pause between.
const TRIES: u32 = 5;
const RETRY: Duration = Duration::from_millis(500);
/// How often progress is printed.
const PROGRESS: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Options {
    pub hosts: usize,
    pub steps: u16,
    pub interval: Duration,
    pub publish: Duration,
    pub requests: u64,
    pub timeout: Duration,
    pub host_threads: usize,
    pub verbose: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub hosts: usize,
    pub phase: Phase,
    /// From the start record to the end of the run.
    pub elapsed: Duration,
    pub looks: u32,
    /// Records the leader wrote: baselines and every look.
    pub leader_writes: u64,
    pub generations: Vec<Generation>,
    pub waits: u64,
    pub tick_errors: u64,
    pub last_tick_error: Option<String>,
    /// Failed etcd calls of the hosts before the rollout started (joining)
    /// and while it ran.
    pub join_errors: u64,
    pub host_errors: u64,
    pub before: Counters,
    pub after: Counters,
    pub leader_cpu: Duration,
    pub hosts_cpu: Duration,
    /// One host's record as etcd keeps it, in bytes.
    pub record_bytes: usize,
    /// What hosts watch of the rollout at the end (`weight/`), in bytes:
    /// every host's watch gets it at every leader write.
    pub rollout_bytes: usize,
    /// The whole rollout record (`run/`) at the end, in bytes: the leader
    /// and `rollout status` read it, no host watches it.
    pub run_bytes: usize,
    pub interval: Duration,
}

pub fn run(opts: &Options, webhooks: Webhooks) -> Result<Outcome> {
    let etcd = Etcd::start()?;
    let ns = etcd.ns.path();
    let mut config = FleetConfig::new(vec![ENDPOINT.into()], FLEET, LEADER);
    config.publish = opts.publish;
    LEADER_LOG.reset();
    let leader = LeaderThread::start(&ns, config.clone(), webhooks)?;
    let (applied, reports) = mpsc::unbounded_channel();
    let errors = Arc::new(AtomicU64::new(0));
    let shared = Shared {
        service: SERVICE.into(),
        requests_per_publish: opts.requests,
        applied,
        errors: errors.clone(),
        verbose: opts.verbose,
    };
    let hosts = Hosts::start(&ns, &config, opts.hosts, opts.host_threads, shared)?;
    let watched = etcd.ns.enter(|| -> Result<Outcome> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let run = Run {
            etcd: &etcd,
            leader: &leader,
            hosts: &hosts,
            errors: &errors,
            config: &config,
            opts,
        };
        rt.block_on(run.watch(reports))
    });
    hosts.stop();
    let stopped = leader.stop();
    let outcome = watched??;
    stopped?;
    Ok(outcome)
}

struct Run<'a> {
    etcd: &'a Etcd,
    leader: &'a LeaderThread,
    hosts: &'a Hosts,
    errors: &'a AtomicU64,
    config: &'a FleetConfig,
    opts: &'a Options,
}

impl Run<'_> {
    async fn watch(self, mut reports: mpsc::UnboundedReceiver<Applied>) -> Result<Outcome> {
        let opts = self.opts;
        let store = Store::connect(self.config).await?;
        let renewing = tokio::spawn(renew(store.clone(), self.leader.lease, opts.publish));
        let record_bytes = self.wait_for_fleet(&store).await?;

        let (revision, _) = patiently("reading the rollouts", || store.rollouts()).await?;
        let mut watch =
            patiently("watching the rollouts", || store.watch_runs(revision + 1)).await?;
        let before = self.etcd.counters()?;
        let errors_before = self.errors.load(Ordering::Relaxed);
        let (leader_cpu, hosts_cpu) = (self.leader.clock.now(), self.hosts.cpu());
        let started = Instant::now();
        let start = start_record(plan(opts));
        if !store.write_rollout(SERVICE, &start, 0, None).await? {
            bail!("the rollout record was there before the run wrote it");
        }

        let mut seen = Observer::new(LEADER, opts.hosts, start, revision);
        let mut progress = Instant::now();
        while started.elapsed() < opts.timeout {
            tokio::select! {
                message = watch.message() => match message {
                    Ok(Some(answer)) => {
                        for event in answer.events() {
                            let (EventType::Put, Some(kv)) = (event.event_type(), event.kv()) else {
                                continue;
                            };
                            let key = String::from_utf8_lossy(kv.key()).into_owned();
                            seen.record(parse(&key, kv.value())?, kv.mod_revision());
                        }
                    }
                    // A connection lost under load: watch again from the
                    // last record seen (etcd keeps every revision: no
                    // compaction in a run).
                    broken => {
                        eprintln!("  the run's watch broke ({broken:?}); watching again");
                        watch = patiently("watching the rollouts", || {
                            store.watch_runs(seen.revision + 1)
                        })
                        .await?;
                    }
                },
                Some(a) = reports.recv() => seen.applied(a),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let caught_up = seen.caught_up();
            let latest = &seen.latest;
            let phase = latest.run.state.phase;
            if phase.is_over() && caught_up == opts.hosts {
                break;
            }
            if progress.elapsed() >= PROGRESS {
                progress = Instant::now();
                eprintln!(
                    "  {:>5.1}s: {}, look {}, generation {} at {:.2}, applied by {caught_up}/{} hosts",
                    started.elapsed().as_secs_f64(),
                    phase.name(),
                    latest.run.state.looks,
                    latest.generation,
                    latest.weight,
                    opts.hosts
                );
            }
        }
        let elapsed = started.elapsed();
        let after = self.etcd.counters()?;
        let host_errors = self.errors.load(Ordering::Relaxed) - errors_before;
        let leader_cpu = self.leader.clock.now() - leader_cpu;
        let hosts_cpu = self.hosts.cpu() - hosts_cpu;
        renewing.abort();

        let latest = &seen.latest;
        Ok(Outcome {
            hosts: opts.hosts,
            phase: latest.run.state.phase,
            elapsed,
            looks: latest.run.state.looks,
            leader_writes: seen.leader_writes,
            generations: seen.generations(),
            waits: LEADER_LOG.waits.load(Ordering::Relaxed),
            tick_errors: LEADER_LOG.tick_errors.load(Ordering::Relaxed),
            last_tick_error: LEADER_LOG.last_error.lock().ok().and_then(|e| e.clone()),
            join_errors: errors_before,
            host_errors,
            before,
            after,
            leader_cpu,
            hosts_cpu,
            record_bytes,
            rollout_bytes: json(&latest.weight_record()).len(),
            run_bytes: json(latest).len(),
            interval: opts.interval,
        })
    }

    /// Waits (bounded) until the leader leads and every host has published;
    /// returns the size of one host's record.
    async fn wait_for_fleet(&self, store: &Store) -> Result<usize> {
        let deadline = Instant::now() + JOIN;
        let mut progress = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Under load etcd may not answer in time: ask again.
            let (leads, live) = match (store.leader().await, store.hosts().await) {
                (Ok(leader), Ok(live)) => (leader.is_some_and(|(h, _)| h == LEADER), live),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("  reading the fleet: {e}");
                    continue;
                }
            };
            if leads && live.len() == self.opts.hosts {
                let one = live.values().next().context("no host")?;
                return Ok(json(one).len());
            }
            if Instant::now() > deadline {
                let missing: Vec<String> = (0..self.opts.hosts)
                    .map(|i| format!("host-{i:04}"))
                    .filter(|h| !live.contains_key(h))
                    .take(10)
                    .collect();
                bail!(
                    "within {JOIN:?}: leader {}, {} of {} hosts published (missing: {} ...), \
                     {} failed etcd calls",
                    if leads { "leads" } else { "does not lead" },
                    live.len(),
                    self.opts.hosts,
                    missing.join(", "),
                    self.errors.load(Ordering::Relaxed)
                );
            }
            if progress.elapsed() >= PROGRESS {
                progress = Instant::now();
                eprintln!("  {} of {} hosts published", live.len(), self.opts.hosts);
            }
        }
    }
}

/// Tries `call` up to `TRIES` times, `RETRY` apart: the run's own setup
/// calls, which a loaded etcd may not answer in time.
async fn patiently<T, F: Future<Output = Result<T, StoreError>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> Result<T> {
    for _ in 1..TRIES {
        match call().await {
            Ok(done) => return Ok(done),
            Err(e) => eprintln!("  {what}: {e}; trying again"),
        }
        tokio::time::sleep(RETRY).await;
    }
    call().await.with_context(|| what.to_owned())
}

/// Keeps the leader's lease, once per `every`, until aborted.
async fn renew(store: Store, lease: i64, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = store.renew(lease).await {
            eprintln!("  renewing the leader's lease: {e}");
        }
    }
}

/// `steps` equal steps to 100 %, checks a healthy canary passes (no
/// errors, every response in `traffic::LATENCY`'s bucket).
fn plan(opts: &Options) -> RolloutPlan {
    let steps = opts.steps.max(1);
    let mut p = RolloutPlan {
        steps: (1..=steps)
            .map(|i| Weight::from_bp((u32::from(i) * 10_000 / u32::from(steps)) as u16))
            .map(|w| w.expect("at most 100 %"))
            .collect(),
        interval: opts.interval,
        min_requests: 100,
        ..Default::default()
    };
    p.checks.max_error_rate = Some(0.02);
    p.checks.max_p99_ms = Some(50.0);
    p
}

/// The record `fleet::commands::start` writes: generation 1 at the first
/// step, the baselines left to the leader.
fn start_record(plan: RolloutPlan) -> FleetRollout {
    let weight = plan.step_weight(0);
    let mut run = RolloutRun::start(plan, Default::default(), unix_ms());
    run.state.generation = 1;
    FleetRollout {
        generation: 1,
        weight,
        reset_canary: false,
        rebase: Some(Rebase::Start),
        run,
        by: STARTER.into(),
        why: "start".into(),
    }
}
