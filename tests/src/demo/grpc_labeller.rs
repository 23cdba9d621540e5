//! The gRPC scenario's clients: `tests/grpc/labeller.py` in the client
//! namespace, sending the held-out labelled samples as Predict calls over
//! short-lived channels (new connections, so the weight applies), paced at
//! the demo's rate. Like the HTTP `Labeller`, it exports per answering
//! version the predictions and the correct ones on `/metrics` (the same
//! names, so the rollout's PromQL accuracy gate reads them), and it keeps
//! every call's gRPC status code by version: what the clients saw, to put
//! beside what canary counted.
//!
//! Bounded: the script stops on `stop()`/drop (its stdin closed), after
//! `max_duration`, or after `max_requests` calls, whichever comes first.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, ChildStdin},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use xtask::topology::Netns;

use super::labeller::{LoadPlan, Seen};
use crate::{
    grpc::{Code, pipes::keep_tail, script_command},
    ns_http::{NsHttpServer, header},
};

/// Python, grpcio and the first report (every half second).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Each thread finishes its call in flight (5 s at most) and the script
/// writes its final counts.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);
const VERSIONS: [&str; 2] = ["stable", "canary"];
/// The script's name for calls no server answered.
const UNKNOWN: &str = "unknown";

/// One of the script's report lines: counts so far.
#[derive(Clone, Debug, Default, Deserialize)]
struct Report {
    sent: u64,
    by_server: BTreeMap<String, ServerTally>,
    #[serde(default, rename = "final")]
    last: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ServerTally {
    calls: u64,
    by_code: BTreeMap<Code, u64>,
    predictions: u64,
    correct: u64,
}

/// What the gRPC clients saw: the HTTP clients' `Seen` (answers are calls
/// a version answered, errors its calls that did not end OK), and the
/// calls by code, [stable, canary].
#[derive(Clone, Debug, Default)]
pub struct GrpcSeen {
    pub seen: Seen,
    pub by_code: [BTreeMap<Code, u64>; 2],
}

impl GrpcSeen {
    /// Calls of `version` (0 stable, 1 canary) that ended with `code`.
    pub fn count(&self, version: usize, code: Code) -> u64 {
        self.by_code[version].get(&code).copied().unwrap_or(0)
    }

    fn of(report: &Report) -> GrpcSeen {
        let mut g = GrpcSeen::default();
        for (i, v) in VERSIONS.iter().enumerate() {
            let Some(t) = report.by_server.get(*v) else {
                continue;
            };
            g.seen.answered[i] = t.calls;
            g.seen.errors[i] = t.calls - t.by_code.get(&Code::Ok).copied().unwrap_or(0);
            g.seen.predictions[i] = t.predictions;
            g.seen.correct[i] = t.correct;
            g.by_code[i] = t.by_code.clone();
        }
        g.seen.failed = report.by_server.get(UNKNOWN).map_or(0, |t| t.calls);
        g
    }
}

pub struct GrpcLabeller<'a> {
    child: Child,
    /// Closed to stop the script.
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<Option<Report>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    _exporter: NsHttpServer<'a>,
}

impl<'a> GrpcLabeller<'a> {
    /// Starts the exporter on `metrics` and the script in `ns`, sending
    /// the samples of `samples_file` (written by `grpc_serving`) to
    /// `target`; returns once it has reported.
    pub fn start(
        ns: &'a Netns,
        metrics: SocketAddr,
        target: SocketAddr,
        samples_file: &Path,
        plan: &LoadPlan,
    ) -> Result<GrpcLabeller<'a>> {
        let latest: Arc<Mutex<Option<Report>>> = Arc::default();
        let shown = latest.clone();
        let exporter = NsHttpServer::start(ns, metrics, 2, move |request| {
            let report = shown.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let body = exposition(&GrpcSeen::of(&report.unwrap_or_default()));
            let response = tiny_http::Response::from_string(body).with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            ));
            let _ = request.respond(response);
        })
        .context("starting the gRPC labelling client's /metrics")?;

        let mut cmd = script_command("labeller.py");
        cmd.args(["--target", &target.to_string()])
            .arg("--samples")
            .arg(samples_file)
            .args(["--rate", &plan.rate.to_string()])
            .args(["--threads", &plan.threads.to_string()])
            .args(["--per-channel", &plan.per_connection.max(1).to_string()])
            .args(["--deadline-s", &plan.max_duration.as_secs_f64().to_string()])
            .args(["--max-calls", &plan.max_requests.max(1).to_string()]);
        let mut child = ns.enter(|| cmd.spawn())?.context(
            "starting the gRPC labelling client (cargo xtask setup installs python3-grpcio)",
        )?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the gRPC labelling client has no piped stdin, stdout or stderr");
        };
        let sink = latest.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Report>(&line) {
                    Ok(r) => *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(r),
                    Err(e) => eprintln!("demo: the gRPC labelling client said {line:?}: {e}"),
                }
            }
        });
        let mut labeller = GrpcLabeller {
            child,
            stdin: Some(stdin),
            latest,
            reader: Some(reader),
            stderr: keep_tail(stderr),
            _exporter: exporter,
        };
        let started = Instant::now();
        while labeller.report().is_none() {
            if started.elapsed() > START_TIMEOUT || labeller.child.try_wait()?.is_some() {
                bail!(
                    "the gRPC labelling client did not report within {START_TIMEOUT:?}\n{}",
                    labeller.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(labeller)
    }

    fn report(&self) -> Option<Report> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Calls started so far.
    pub fn sent(&self) -> u64 {
        self.report().map_or(0, |r| r.sent)
    }

    /// What the clients saw so far (after `stop`: in all).
    pub fn seen(&self) -> GrpcSeen {
        GrpcSeen::of(&self.report().unwrap_or_default())
    }

    /// Stops the script (its stdin closed: each thread finishes its call)
    /// and waits for its final counts; killed after `STOP_TIMEOUT`.
    pub fn stop(&mut self) -> Result<()> {
        let Some(stdin) = self.stdin.take() else {
            return Ok(());
        };
        drop(stdin);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!(
                    "the gRPC labelling client did not stop within {STOP_TIMEOUT:?}; killed\n{}",
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if !status.success() || !self.report().is_some_and(|r| r.last) {
            bail!(
                "the gRPC labelling client ended {status} without its final counts\n{}",
                self.stderr_text()
            );
        }
        Ok(())
    }
}

impl Drop for GrpcLabeller<'_> {
    fn drop(&mut self) {
        // Best effort: `stop` kills and reaps even when it reports an error.
        let _ = self.stop();
    }
}

/// The clients' counters in Prometheus' text format, under the HTTP
/// labeller's names (the accuracy gate's query reads them) and
/// `demo_grpc_calls_total` by version and code.
fn exposition(g: &GrpcSeen) -> String {
    let mut out = String::new();
    let families: [(&str, &str, [u64; 2]); 2] = [
        (
            "demo_predictions_total",
            "Labelled predictions received, by the version that answered.",
            g.seen.predictions,
        ),
        (
            "demo_predictions_correct_total",
            "Predictions that matched their label, by version.",
            g.seen.correct,
        ),
    ];
    for (name, help, values) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (v, value) in VERSIONS.iter().zip(values) {
            let _ = writeln!(out, "{name}{{version=\"{v}\"}} {value}");
        }
    }
    let name = "demo_grpc_calls_total";
    let _ = writeln!(
        out,
        "# HELP {name} gRPC calls by the version that answered and status code.\n# TYPE {name} counter"
    );
    for (v, codes) in VERSIONS.iter().zip(&g.by_code) {
        for (code, n) in codes {
            let _ = writeln!(
                out,
                "{name}{{version=\"{v}\",code=\"{}\"}} {n}",
                code.name()
            );
        }
    }
    let name = "demo_requests_failed_total";
    let _ = writeln!(
        out,
        "# HELP {name} Calls no server answered (refused, reset, timed out).\n# TYPE {name} counter\n{name} {}",
        g.seen.failed
    );
    out
}
