//! One rollout demo from start to end: the namespaces, two model servers
//! (HTTP, or gRPC for `--scenario grpc`), canaryd, a real Prometheus, the
//! labelling clients, the webhook receiver;
//! a rollout shown live; the outcome, the report and the timeline chart.
//! Everything is removed on return, on success or error (RAII guards,
//! dropped in reverse order of creation).

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use canary_userspace::{
    AppProtocol,
    api::{Client, RolloutAction, RolloutReport},
    config::Config,
    controller::webhook::Event,
    model::{rollout::Phase, signals::VersionSignals, weight::Weight},
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs},
    topology::{BACKEND_V4, BackendKind, CLIENT_V4, HOST_IF, HOST_V4, Topology},
};

use super::{
    chart,
    grpc_labeller::{GrpcLabeller, GrpcSeen},
    grpc_serving::{self, GRPC_PORT},
    labeller::{Labeller, LoadPlan, Seen},
    model::{Data, Model, Recipe},
    model_server::{self, Fault},
    scenario::{self, Scenario},
    timeline::{Mark, MarkKind, Point, Sample, Timeline, describe},
};
use crate::{grpc::Code, prometheus, webhook};

pub(super) const SERVICE: &str = "model";
const MODEL_PORT: u16 = 8080;
pub(super) const LABELLER_METRICS: u16 = 9100;
const WEBHOOK: &str = "127.0.0.1:9101";
const CANARYD_METRICS: &str = "127.0.0.1:9464";
/// How often the demo reads canaryd's status for the timeline.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Samples per chart point and per live line (1 s).
pub(super) const SAMPLES_PER_POINT: usize = 2;
/// Traffic before the rollout starts: stable's baseline, Prometheus' first
/// scrapes.
pub(super) const WARM_UP: Duration = Duration::from_secs(3);
/// Traffic after the rollout ends, to show where new requests go then.
pub(super) const AFTERMATH: Duration = Duration::from_secs(3);
/// Longest a rollout may take before the demo gives up on it.
pub(super) const ROLLOUT_LIMIT: Duration = Duration::from_secs(90);
pub(super) const CLIENT_ADDRESSES: u32 = 200;
/// gRPC calls on one channel (connection) before the client opens the
/// next: a weight moves new connections only.
pub(super) const GRPC_CALLS_PER_CHANNEL: u32 = 5;
/// Longest the demo waits for canaryd's counts to take the last answers.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);
/// grpc-status codes, as `VersionSignals::grpc` slots them.
const GRPC_OK: usize = 0;
const GRPC_UNAVAILABLE: usize = 14;

/// The labelling clients' plan: `rate` requests a second, bounded in time
/// (the longest rollout and then some) and in count.
pub(super) fn load_plan(rate: u32) -> LoadPlan {
    LoadPlan {
        threads: 8,
        rate,
        per_connection: 20,
        max_duration: ROLLOUT_LIMIT + WARM_UP + AFTERMATH + Duration::from_secs(30),
        max_requests: u64::from(rate) * 200,
    }
}

pub struct Options {
    pub scenario: Scenario,
    pub out: PathBuf,
    pub binaries: Binaries,
    pub rate: u32,
}

/// What the demo measured, for the summary and the exit code.
pub struct Outcome {
    pub report: RolloutReport,
    pub wall: Duration,
    pub chart: PathBuf,
    /// What the labelling clients saw.
    pub seen: Seen,
    /// The webhook events canaryd posted, in order of arrival.
    pub events: Vec<Event>,
    /// Seconds from the rollout's start to its last decision.
    pub rollout_secs: f64,
    /// gRPC scenario: the clients' calls by status code and version.
    pub grpc: Option<GrpcSeen>,
    /// What canaryd counted for [stable, canary] from its start to after
    /// the load stopped.
    pub measured: [VersionSignals; 2],
}

/// The labelling clients of either protocol.
enum Clients<'a> {
    Http(Labeller<'a>),
    Grpc(GrpcLabeller<'a>),
}

impl Clients<'_> {
    fn stop(&mut self) -> Result<()> {
        match self {
            Clients::Http(l) => {
                l.stop();
                Ok(())
            }
            Clients::Grpc(l) => l.stop(),
        }
    }

    fn seen(&self) -> (Seen, Option<GrpcSeen>) {
        match self {
            Clients::Http(l) => (l.seen(), None),
            Clients::Grpc(l) => {
                let g = l.seen();
                (g.seen, Some(g))
            }
        }
    }
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The two versions a scenario rolls out, trained.
pub(super) struct Versions {
    pub data: Data,
    pub stable: Model,
    pub canary: Model,
    /// What is wrong with the canary's server.
    pub fault: Fault,
}

/// Trains the stable and the canary model of `sc` and prints what they
/// are.
pub(super) fn train_versions(sc: Scenario) -> Result<Versions> {
    let data = Data::load();
    let (canary_recipe, fault) = sc.canary();
    let stable = Model::train(&data, Recipe::Gini)?;
    let canary = Model::train(&data, canary_recipe)?;
    println!(
        "       stable: {:?} tree, held-out accuracy {:.3}; canary: {:?} tree, held-out accuracy {:.3}{}",
        Recipe::Gini,
        stable.held_out_accuracy,
        canary_recipe,
        canary.held_out_accuracy,
        match fault {
            Fault::None => String::new(),
            Fault::RejectsInputs => format!(
                "; rejects sepal width > {} cm",
                model_server::REJECT_SEPAL_WIDTH_ABOVE
            ),
            Fault::Slower(d) => format!("; {} ms slower", d.as_millis()),
        }
    );
    Ok(Versions {
        data,
        stable,
        canary,
        fault,
    })
}

pub fn run(opts: &Options) -> Result<Outcome> {
    let started = Instant::now();
    let sc = opts.scenario;
    println!("demo: scenario {sc:?}: {}", sc.story());

    println!("demo: [1/6] training the models on iris (linfa-trees, held-out every third sample)");
    let Versions {
        data,
        stable: stable_model,
        canary: canary_model,
        fault,
    } = train_versions(sc)?;

    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    println!("demo: [2/6] namespaces: client, host, stable and canary backends (198.18.0.0/15)");
    let topo = Topology::new(BackendKind::Namespace)?;
    let (sources, _) = topo.add_client_addresses(CLIENT_ADDRESSES)?;
    let port = if sc.over_grpc() {
        GRPC_PORT
    } else {
        MODEL_PORT
    };
    let at = |i: usize| SocketAddr::new(BACKEND_V4[i].into(), port);
    // Kept until the end; either pair of servers stops on drop.
    let (_http_servers, _grpc_servers, grpc_files) = if sc.over_grpc() {
        let files =
            grpc_serving::write_files(&opts.out, &stable_model, &canary_model, &data.held_out)?;
        println!(
            "       gRPC model servers (grpcio, h2c) evaluate the exported trees: {}, {}",
            shown(&files.trees[0]).display(),
            shown(&files.trees[1]).display()
        );
        let stable = grpc_serving::start(
            &topo.backends[0],
            at(0),
            "stable",
            &files.trees[0],
            Fault::None,
        )?;
        let canary =
            grpc_serving::start(&topo.backends[1], at(1), "canary", &files.trees[1], fault)?;
        (None, Some([stable, canary]), Some(files))
    } else {
        let stable = model_server::start(
            &topo.backends[0],
            at(0),
            "stable",
            stable_model,
            Fault::None,
        )?;
        let canary = model_server::start(&topo.backends[1], at(1), "canary", canary_model, fault)?;
        (Some([stable, canary]), None, None)
    };

    println!("demo: [3/6] canaryd on the host's {HOST_IF}, a webhook receiver, Prometheus");
    let receiver = webhook::Receiver::start(&topo.host, WEBHOOK.parse()?, webhook::Answer::Accept)?;
    let dirs = DaemonDirs::new("demo")?;
    let vip = SocketAddr::new(HOST_V4.into(), if sc.over_grpc() { GRPC_PORT } else { 80 });
    let plan = scenario::plan("http://127.0.0.1:9090", &receiver.url);
    let mut service = crate::kit::tcp_service(SERVICE, vip, at(0), at(1), 0);
    if sc.over_grpc() {
        service.app_protocol = AppProtocol::H2c;
    }
    let config = Config {
        daemon: dirs.daemon_config(HOST_IF),
        services: vec![service],
        rollouts: [(SERVICE.to_owned(), plan.clone())].into(),
        fleet: None,
    };
    dirs.write_config(&config)?;
    fs::write(opts.out.join("canary.toml"), config.to_toml())?;
    let daemon = Canaryd::start(&topo.host, &opts.binaries, &dirs, &[])?;
    let labeller_metrics = SocketAddr::new(CLIENT_V4.into(), LABELLER_METRICS);
    let prom = prometheus::Server::start_scraping(
        &topo.host,
        &dirs.root,
        &[
            ("canaryd", CANARYD_METRICS.parse()?),
            ("labeller", labeller_metrics),
        ],
    )?;
    println!(
        "       config: {}",
        shown(&opts.out.join("canary.toml")).display()
    );

    let mut load = match &grpc_files {
        Some(files) => {
            println!(
                "demo: [4/6] labelled Predict calls to {vip} (h2c), {} calls/s, a new connection every {} calls",
                opts.rate, GRPC_CALLS_PER_CHANNEL
            );
            let plan = LoadPlan {
                per_connection: GRPC_CALLS_PER_CHANNEL,
                ..load_plan(opts.rate)
            };
            Clients::Grpc(GrpcLabeller::start(
                &topo.client,
                labeller_metrics,
                vip,
                &files.samples,
                &plan,
            )?)
        }
        None => {
            println!(
                "demo: [4/6] labelled requests from {CLIENT_ADDRESSES} client addresses to {vip}, {} req/s",
                opts.rate
            );
            Clients::Http(Labeller::start(
                &topo.client,
                labeller_metrics,
                vec![vip],
                sources,
                data.held_out.clone(),
                &load_plan(opts.rate),
            )?)
        }
    };
    thread::sleep(WARM_UP);

    let steps: Vec<String> = plan.steps.iter().map(Weight::to_string).collect();
    println!(
        "demo: [5/6] rollout: steps {}, every {} s; checks: error rate <= {}%, p99 <= {} ms, PromQL accuracy >= {}",
        steps.join(" "),
        plan.interval.as_secs_f64(),
        plan.checks.max_error_rate.unwrap_or(1.0) * 100.0,
        scenario::MAX_P99_MS,
        scenario::MIN_ACCURACY
    );
    let socket = dirs.socket();
    let client = Client { socket: &socket };
    let mut timeline = Timeline::default();
    client.rollout(SERVICE, RolloutAction::Start)?;
    timeline.start_unix_ms = unix_ms();
    let report = follow(&client, &mut timeline)?;
    let ended = Instant::now();
    let at_end = timeline.samples.len() - 1;
    while ended.elapsed() < AFTERMATH {
        thread::sleep(SAMPLE_EVERY);
        sample(&client, &mut timeline)?;
    }
    let (first, last) = (
        &timeline.samples[at_end],
        &timeline.samples[timeline.samples.len() - 1],
    );
    let after = [0, 1].map(|v| last.signals[v].since(&first.signals[v]).requests);
    load.stop()?;
    let (seen, grpc) = load.seen();
    let measured = settled(&client)?;

    println!("demo: [6/6] outcome");
    let chart_path = opts
        .out
        .join(format!("rollout-{}.svg", format!("{sc:?}").to_lowercase()));
    let mut marks = timeline.marks(&report.steps);
    marks.insert(
        0,
        Mark {
            t: 0.0,
            label: format!(
                "start {}",
                report.steps.first().copied().unwrap_or_default()
            ),
            kind: MarkKind::Decision,
        },
    );
    let svg = chart::svg(
        &format!(
            "canary rollout, scenario {}: {}",
            format!("{sc:?}").to_lowercase(),
            report.phase.name()
        ),
        &timeline.points(SAMPLES_PER_POINT),
        &marks,
        chart::Limits {
            max_error_rate: plan.checks.max_error_rate,
            max_p99_ms: plan.checks.max_p99_ms,
        },
    );
    fs::write(&chart_path, svg).with_context(|| format!("writing {}", chart_path.display()))?;
    let report_path = opts.out.join("report.json");
    fs::write(&report_path, serde_json::to_string_pretty(&report)?)?;
    let events = receiver.events();
    let accuracy = |v: usize| {
        seen.accuracy(v)
            .map(|a| format!("{a:.3}"))
            .unwrap_or_else(|| "-".into())
    };
    let rollout_s = report
        .history
        .last()
        .map(|r| (r.at_unix_ms.saturating_sub(timeline.start_unix_ms)) as f64 / 1000.0)
        .unwrap_or(0.0);
    println!(
        "       {} after {} decisions in {rollout_s:.1} s: {}",
        report.phase.name().to_uppercase(),
        report.history.len(),
        report.reason
    );
    match &grpc {
        Some(g) => print_grpc(g, &measured, &accuracy),
        None => println!(
            "       clients saw: stable {} answers ({} errors, accuracy {}), canary {} answers ({} errors, accuracy {}), {} without answer",
            seen.answered[0],
            seen.errors[0],
            accuracy(0),
            seen.answered[1],
            seen.errors[1],
            accuracy(1),
            seen.failed
        ),
    }
    println!(
        "       in the {} s after: weight {}, requests stable {}, canary {} (connections opened before the end finish where they are)",
        AFTERMATH.as_secs(),
        last.weight,
        after[0],
        after[1]
    );
    println!(
        "       webhook received {} events: {}",
        events.len(),
        events
            .iter()
            .map(|e| e.phase.name().to_owned() + "/" + &action_name(&e.decision.action))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Ok(Some(v)) = prom.query(&format!("canary_rollbacks_total{{service=\"{SERVICE}\"}}")) {
        println!("       Prometheus: canary_rollbacks_total = {v}");
    }
    println!("       chart:  {}", shown(&chart_path).display());
    println!(
        "       report: {} (as canaryctl rollout status --json prints it)",
        shown(&report_path).display()
    );

    drop(daemon);
    Ok(Outcome {
        report,
        wall: started.elapsed(),
        chart: chart_path,
        seen,
        events,
        rollout_secs: rollout_s,
        grpc,
        measured,
    })
}

/// What the gRPC clients saw beside what canary counted from the kernel's
/// streams and the grpc-status canaryd decoded.
fn print_grpc(g: &GrpcSeen, m: &[VersionSignals; 2], accuracy: &dyn Fn(usize) -> String) {
    println!(
        "       clients saw: stable {} calls ({} UNAVAILABLE, accuracy {}), canary {} calls ({} UNAVAILABLE, accuracy {}), {} without answer",
        g.seen.answered[0],
        g.count(0, Code::Unavailable),
        accuracy(0),
        g.seen.answered[1],
        g.count(1, Code::Unavailable),
        accuracy(1),
        g.seen.failed
    );
    println!(
        "       canary counted: stable {} streams ({} OK, {} UNAVAILABLE), canary {} streams ({} OK, {} UNAVAILABLE); \
         :status 2xx {}, 5xx {} (an HTTP status check sees no failure); untracked connections {}, undecodable {}",
        m[0].requests,
        m[0].grpc_code(GRPC_OK),
        m[0].grpc_code(GRPC_UNAVAILABLE),
        m[1].requests,
        m[1].grpc_code(GRPC_OK),
        m[1].grpc_code(GRPC_UNAVAILABLE),
        m[0].class(1) + m[1].class(1),
        m[0].class(4) + m[1].class(4),
        m[0].h2_untracked + m[1].h2_untracked,
        m[0].h2_undecodable + m[1].h2_undecodable,
    );
}

/// canaryd's [stable, canary] counts once the last answers are in: read
/// until two readings agree (at most `SETTLE_LIMIT`).
fn settled(client: &Client) -> Result<[VersionSignals; 2]> {
    let read = || -> Result<[VersionSignals; 2]> {
        let status = client.status()?;
        let svc = status
            .services
            .iter()
            .find(|s| s.name == SERVICE)
            .context("canaryd no longer reports the service")?;
        Ok([svc.stable.signals.clone(), svc.canary.signals.clone()])
    };
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut last = read()?;
    loop {
        thread::sleep(SAMPLE_EVERY);
        let now = read()?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Reads status and rollout status until the rollout is no longer running,
/// printing a line a second and every decision as it is made.
fn follow(client: &Client, timeline: &mut Timeline) -> Result<RolloutReport> {
    let deadline = Instant::now() + ROLLOUT_LIMIT;
    let mut printed = 0;
    let mut n = 0usize;
    loop {
        sample(client, timeline)?;
        let report = client.rollout_status(SERVICE)?;
        for r in &report.history[printed.min(report.history.len())..] {
            let t = (r.at_unix_ms.saturating_sub(timeline.start_unix_ms)) as f64 / 1000.0;
            println!("  {t:>5.1}s  decision: {}", describe(r));
        }
        printed = report.history.len();
        timeline.decisions = report.history.clone();
        n += 1;
        if n.is_multiple_of(SAMPLES_PER_POINT)
            && let Some(p) = timeline.points(SAMPLES_PER_POINT).last()
        {
            print_live(p);
        }
        if report.phase != Phase::Running {
            return Ok(report);
        }
        if Instant::now() > deadline {
            bail!(
                "the rollout still runs after {ROLLOUT_LIMIT:?} (step {}, {})",
                report.step + 1,
                report.reason
            );
        }
        thread::sleep(SAMPLE_EVERY);
    }
}

/// A rate as a live line's column: "  2.5%", or "    - " without data.
pub(super) fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:>5.1}%", r * 100.0))
        .unwrap_or_else(|| "    - ".into())
}

/// Milliseconds as a live line's column.
pub(super) fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:>6.1}ms"))
        .unwrap_or_else(|| "     - ".into())
}

/// One live line: the last second's traffic of both versions.
fn print_live(p: &Point) {
    println!(
        "  {:>5.1}s  weight {:>5.1}%  stable {:>5.0} req/s err {} p99 {}  canary {:>5.0} req/s err {} p99 {}",
        p.t,
        p.weight_percent,
        p.requests_per_s[0],
        pct(p.error_rate[0]),
        ms(p.p99_ms[0]),
        p.requests_per_s[1],
        pct(p.error_rate[1]),
        ms(p.p99_ms[1]),
    );
}

fn sample(client: &Client, timeline: &mut Timeline) -> Result<()> {
    let status = client.status()?;
    let svc = status
        .services
        .iter()
        .find(|s| s.name == SERVICE)
        .context("canaryd no longer reports the service")?;
    timeline.samples.push(Sample::of(unix_ms(), svc));
    Ok(())
}

pub(super) fn action_name(a: &canary_userspace::model::rollout::Action) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("{a:?}"))
}

/// `p` relative to the working directory when it is below it.
pub(super) fn shown(p: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok())
        .unwrap_or(p)
}

/// Where the demo writes: `target/demo` next to the running binary's
/// profile directory.
pub fn default_out(exe: &Path) -> Option<PathBuf> {
    Some(exe.parent()?.parent()?.join("demo"))
}
