//! The fleet demo (`canary-demo --fleet N`) from start to end: N hosts,
//! each a namespace with the two model servers behind its own VIP and its
//! own canaryd, all in one fleet through etcd (`tests::fleet`); Prometheus
//! and the webhook receiver on the client side, where every host reaches
//! them (the leader queries and posts from whichever host it is); the
//! labelling clients spread over every host's VIP; one rollout started
//! from one host, its leader killed half way (`fleet_follow`); the outcome
//! and the chart. Everything is removed on return, on success or error
//! (RAII guards, dropped in reverse order of creation).

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use canary_userspace::{
    api::{RolloutAction, RolloutReport},
    controller::webhook::Event,
    model::weight::Weight,
};
use xtask::canaryd::{Binaries, Canaryd};

use super::{
    chart::Limits,
    fleet_chart::{self, HostLine},
    fleet_follow::{Hosts, Takeover, follow},
    fleet_outcome::{Summary, print_outcome},
    fleet_timeline::FleetTimeline,
    labeller::{Labeller, Seen},
    model_server::{self, Fault},
    run::{
        AFTERMATH, CLIENT_ADDRESSES, LABELLER_METRICS, SAMPLE_EVERY, SAMPLES_PER_POINT, SERVICE,
        Versions, WARM_UP, load_plan, shown, train_versions, unix_ms,
    },
    scenario::{self, Scenario},
    timeline::{Mark, MarkKind},
};
use crate::{
    fleet::{FleetUnderTest, LEASE_TTL, SHARED_CLIENT, host_v4},
    prometheus, webhook,
};

/// Hosts the demo runs at least and at most (`--fleet`): two to have a
/// leader to kill and one to take over; eight keep a 2-core machine able
/// to serve every host's model servers.
pub const MIN_HOSTS: usize = 2;
pub const MAX_HOSTS: usize = 8;
/// Ports on the client side's shared address (198.18.50.1).
const PROMETHEUS_PORT: u16 = 9090;
const WEBHOOK_PORT: u16 = 9101;
/// How long every host may take to join the fleet with one leading.
const JOIN_LIMIT: Duration = Duration::from_secs(20);

pub struct FleetOptions {
    pub scenario: Scenario,
    /// How many hosts (`MIN_HOSTS` to `MAX_HOSTS`).
    pub hosts: usize,
    pub out: PathBuf,
    pub binaries: Binaries,
    pub rate: u32,
}

/// What the fleet demo measured, for the summary, the test and the exit
/// code.
pub struct FleetOutcome {
    pub report: RolloutReport,
    pub takeover: Takeover,
    pub hosts: usize,
    pub wall: Duration,
    /// Seconds from the rollout's start to its last decision.
    pub rollout_secs: f64,
    pub chart: PathBuf,
    /// What the labelling clients saw, over every host.
    pub seen: Seen,
    /// The webhook events in order of arrival, each with the host that
    /// posted it (None: an address that is no host's).
    pub events: Vec<(Event, Option<String>)>,
    /// Answers from the killed host's VIP after its canaryd was killed.
    pub answered_after_kill: u64,
}

/// A directory of the demo's own under /tmp (Prometheus' config and
/// data), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("canary-demo-fleet-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn run(opts: &FleetOptions) -> Result<FleetOutcome> {
    let started = Instant::now();
    let (sc, n) = (opts.scenario, opts.hosts);
    ensure!(
        sc != Scenario::Split,
        "--fleet runs a rollout; the split scenario has none (pick healthy, errors, latency or accuracy)"
    );
    ensure!(
        !sc.over_grpc(),
        "--fleet serves the models over HTTP; the grpc scenario runs on one host (drop --fleet)"
    );
    ensure!(
        (MIN_HOSTS..=MAX_HOSTS).contains(&n),
        "--fleet {n}: {MIN_HOSTS} to {MAX_HOSTS} hosts"
    );
    println!(
        "demo: a fleet of {n} hosts, scenario {sc:?}: {}",
        sc.story()
    );

    println!("demo: [1/7] training the models on iris (linfa-trees, held-out every third sample)");
    let Versions {
        data,
        stable,
        canary,
        fault,
    } = train_versions(sc)?;
    let (stable, canary) = (Arc::new(stable), Arc::new(canary));

    println!(
        "demo: [2/7] namespaces: {n} hosts, a client, etcd (198.18.0.0/15); both model servers on every host"
    );
    let f = FleetUnderTest::builder("demo-fleet")
        .hosts(n)
        .caller_backends()
        .binaries(opts.binaries.clone())
        .try_build()?;
    // Held to the end: the model servers serve until the demo returns.
    let mut servers = vec![];
    for (i, h) in f.hosts.iter().enumerate() {
        let ns = &f.net.hosts[i];
        servers.push(model_server::start(
            ns,
            h.stable,
            "stable",
            stable.clone(),
            Fault::None,
        )?);
        servers.push(model_server::start(
            ns,
            h.canary,
            "canary",
            canary.clone(),
            fault,
        )?);
    }
    println!(
        "       host-i: VIP 198.18.(10+i).1:80, stable :{}, canary :{}; etcd at 198.18.(200+i).1:2379",
        f.hosts[0].stable.port(),
        f.hosts[0].canary.port()
    );

    println!(
        "demo: [3/7] a webhook receiver and Prometheus on the client side ({SHARED_CLIENT}), where every host reaches them"
    );
    let scratch = Scratch::new()?;
    let receiver = webhook::Receiver::start(
        &f.net.client,
        SocketAddr::new(SHARED_CLIENT.into(), WEBHOOK_PORT),
        webhook::Answer::Accept,
    )?;
    let labeller_metrics = SocketAddr::new(SHARED_CLIENT.into(), LABELLER_METRICS);
    let prometheus_at = SocketAddr::new(SHARED_CLIENT.into(), PROMETHEUS_PORT);
    let _prom = prometheus::Server::start_scraping_at(
        &f.net.client,
        &scratch.0,
        prometheus_at,
        &[("labeller", labeller_metrics)],
    )?;
    let plan = scenario::plan(&format!("http://{prometheus_at}"), &receiver.url);

    println!(
        "demo: [4/7] canaryd with [fleet] on every host (lease_ttl {} s); waiting until all joined and one leads",
        LEASE_TTL.as_secs()
    );
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    for i in 0..n {
        let config = f.config(i, 0, Some(plan.clone()));
        f.hosts[i].dirs.write_config(&config)?;
        if i == 0 {
            fs::write(opts.out.join("fleet-canary.toml"), config.to_toml())?;
        }
    }
    let mut daemons = (0..n)
        .map(|i| {
            f.try_start(i, &[])
                .with_context(|| format!("starting canaryd on {}", Hosts::name(i)))
        })
        .collect::<Result<Vec<_>>>()?;
    let leader = wait_for_fleet(&f, &daemons)?;
    println!(
        "       config: {} (host-0's; the others differ in their addresses and [fleet] host)",
        shown(&opts.out.join("fleet-canary.toml")).display()
    );

    println!(
        "demo: [5/7] labelled requests from {CLIENT_ADDRESSES} client addresses to the {n} hosts' VIPs \
         (each new connection to the next host), {} req/s",
        opts.rate
    );
    let sources: Vec<IpAddr> = f
        .net
        .shared_clients(CLIENT_ADDRESSES as u8)?
        .into_iter()
        .map(IpAddr::from)
        .collect();
    let mut load = Labeller::start(
        &f.net.client,
        labeller_metrics,
        (0..n).map(|i| f.vip(i)).collect(),
        sources,
        data.held_out.clone(),
        &load_plan(opts.rate),
    )?;
    thread::sleep(WARM_UP);

    let from = (leader + 1) % n;
    let steps: Vec<String> = plan.steps.iter().map(Weight::to_string).collect();
    println!(
        "demo: [6/7] rollout started from {} ({} leads): steps {}, every {} s; checks: error rate <= {}%, \
         p99 <= {} ms, PromQL accuracy >= {}; the leader is killed half way (at the middle step, or after a failing look)",
        Hosts::name(from),
        Hosts::name(leader),
        steps.join(" "),
        plan.interval.as_secs_f64(),
        plan.checks.max_error_rate.unwrap_or(1.0) * 100.0,
        scenario::MAX_P99_MS,
        scenario::MIN_ACCURACY
    );
    let mut timeline = FleetTimeline::default();
    f.client(from)
        .rollout(SERVICE, RolloutAction::Start)
        .with_context(|| format!("starting the rollout from {}", Hosts::name(from)))?;
    timeline.start_unix_ms = unix_ms();
    timeline.events.push(Mark {
        t: 0.0,
        label: format!(
            "start {} from {}",
            plan.steps.first().copied().unwrap_or_default(),
            Hosts::name(from)
        ),
        kind: MarkKind::Decision,
    });
    let mut hosts = Hosts {
        f: &f,
        alive: vec![true; n],
    };
    let (report, takeover) = follow(&mut hosts, &mut daemons, &mut timeline, &|| {
        load.answered_by_service()
    })?;
    let ended = Instant::now();
    let at_end = timeline.samples.len() - 1;
    while ended.elapsed() < AFTERMATH {
        thread::sleep(SAMPLE_EVERY);
        timeline.samples.push(hosts.sample()?);
    }
    load.stop();
    let seen = load.seen();
    let answered = load.answered_by_service();

    println!("demo: [7/7] outcome");
    let k = takeover.killed_index;
    let answered_after_kill = answered[k].saturating_sub(takeover.answered_at_kill[k]);
    let chart_path = opts.out.join(format!(
        "fleet-rollout-{}.svg",
        format!("{sc:?}").to_lowercase()
    ));
    let lines: Vec<HostLine> = (0..n)
        .map(|i| HostLine {
            name: Hosts::name(i),
            ended: (i == k).then(|| "killed".to_owned()),
        })
        .collect();
    let svg = fleet_chart::svg(
        &format!(
            "canary fleet rollout on {n} hosts, scenario {}: {}, leader killed at step {}",
            format!("{sc:?}").to_lowercase(),
            report.phase.name(),
            takeover.at_step + 1
        ),
        &timeline,
        &lines,
        &timeline.evidence(SAMPLES_PER_POINT),
        &timeline.marks(&report.steps),
        Limits {
            max_error_rate: plan.checks.max_error_rate,
            max_p99_ms: plan.checks.max_p99_ms,
        },
    );
    fs::write(&chart_path, svg).with_context(|| format!("writing {}", chart_path.display()))?;
    let report_path = opts.out.join("fleet-report.json");
    fs::write(&report_path, serde_json::to_string_pretty(&report)?)?;
    let events: Vec<(Event, Option<String>)> = receiver
        .events_from()
        .into_iter()
        .map(|(e, from)| {
            let host = (0..n).find(|i| from == Some(IpAddr::from(host_v4(*i))));
            (e, host.map(Hosts::name))
        })
        .collect();
    let rollout_secs = report
        .history
        .last()
        .map(|r| timeline.t(r.at_unix_ms))
        .unwrap_or(0.0);
    let first_after = report
        .history
        .iter()
        .find(|r| r.at_unix_ms >= takeover.killed_unix_ms)
        .map(|r| (r.at_unix_ms - takeover.killed_unix_ms) as f64 / 1000.0);
    let (first, last) = (
        &timeline.samples[at_end],
        &timeline.samples[timeline.samples.len() - 1],
    );
    let after: [u64; 2] = [0, 1].map(|v| {
        first
            .hosts
            .iter()
            .zip(&last.hosts)
            .filter_map(|(a, b)| {
                Some(
                    b.as_ref()?.signals[v]
                        .since(&a.as_ref()?.signals[v])
                        .requests,
                )
            })
            .sum()
    });
    print_outcome(&Summary {
        report: &report,
        takeover: &takeover,
        rollout_secs,
        first_after,
        seen: &seen,
        answered_after_kill,
        after,
        events: &events,
    });
    println!("       chart:  {}", shown(&chart_path).display());
    println!(
        "       report: {} (as canaryctl rollout status --json prints it, with every host)",
        shown(&report_path).display()
    );

    drop(daemons);
    Ok(FleetOutcome {
        report,
        takeover,
        hosts: n,
        wall: started.elapsed(),
        rollout_secs,
        chart: chart_path,
        seen,
        events,
        answered_after_kill,
    })
}

/// Waits (bounded) until every host is in the fleet and one leads; the
/// leader's index. The error names what was missing and shows each host's
/// last log lines.
fn wait_for_fleet(f: &FleetUnderTest, daemons: &[Canaryd]) -> Result<usize> {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < JOIN_LIMIT {
        if let Ok(s) = f.client(0).fleet_status() {
            let alive = s.hosts.iter().filter(|h| h.alive).count();
            if alive == f.host_count()
                && let Some(l) = &s.leader
                && let Some(i) = (0..f.host_count()).find(|i| Hosts::name(*i) == *l)
            {
                println!(
                    "       {alive} hosts joined fleet {} in {:.1} s; {l} leads",
                    s.fleet,
                    started.elapsed().as_secs_f64()
                );
                return Ok(i);
            }
            last = Some(s);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let logs: String = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let log = d.log_text();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "--- {} (last lines) ---\n{}\n",
                Hosts::name(i),
                tail.join("\n")
            )
        })
        .collect();
    bail!(
        "the fleet did not form within {JOIN_LIMIT:?} (every host alive, one leading); last fleet status: {last:?}\n{logs}"
    )
}
