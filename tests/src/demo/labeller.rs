//! The demo's clients: threads in the client namespace sending the held-out
//! labelled samples to the service, from many client addresses, at a paced
//! rate, over keep-alive connections renewed every few requests (a weight
//! moves new connections only). With several service addresses (a fleet's
//! hosts), each new connection goes to the next one, as a load balancer in
//! front of the hosts would send it. Like a labelling pipeline, they compare
//! each prediction with its label and export, per answering version, the
//! predictions and the correct ones as Prometheus counters on
//! `/metrics`; the rollout's accuracy gate reads them through Prometheus.
//!
//! Bounded: every thread stops on `stop()`/drop, after `max_duration`, or
//! after `max_requests` requests, whichever comes first.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};
use xtask::topology::{Netns, enter_for_good};

use super::{model::Sample, model_server::target};
use crate::{
    ns_http::{NsHttpServer, header},
    servers::HttpClient,
};

/// How the load is shaped.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub threads: usize,
    /// Requests per second over all threads.
    pub rate: u32,
    /// Requests on one connection before it is closed and a new one opened.
    pub per_connection: u32,
    pub max_duration: Duration,
    pub max_requests: u64,
}

/// The counters, shared by the client threads and the exporter.
struct Tally {
    registry: Registry,
    predictions: IntCounterVec,
    correct: IntCounterVec,
    responses: IntCounterVec,
    failed: IntCounter,
}

impl Tally {
    fn new() -> Result<Tally> {
        let registry = Registry::new();
        let predictions = IntCounterVec::new(
            Opts::new(
                "demo_predictions_total",
                "Labelled predictions received, by the version that answered.",
            ),
            &["version"],
        )?;
        let correct = IntCounterVec::new(
            Opts::new(
                "demo_predictions_correct_total",
                "Predictions that matched their label, by version.",
            ),
            &["version"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "demo_responses_total",
                "HTTP responses received, by version and status code.",
            ),
            &["version", "code"],
        )?;
        let failed = IntCounter::new(
            "demo_requests_failed_total",
            "Requests without an answer (refused, reset, timed out).",
        )?;
        registry.register(Box::new(predictions.clone()))?;
        registry.register(Box::new(correct.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        Ok(Tally {
            registry,
            predictions,
            correct,
            responses,
            failed,
        })
    }
}

/// What the clients saw, per version (stable, canary).
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub answered: [u64; 2],
    pub errors: [u64; 2],
    pub predictions: [u64; 2],
    pub correct: [u64; 2],
    pub failed: u64,
}

impl Seen {
    pub fn accuracy(&self, version: usize) -> Option<f64> {
        (self.predictions[version] > 0)
            .then(|| self.correct[version] as f64 / self.predictions[version] as f64)
    }
}

pub struct Labeller<'a> {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tally: Arc<Tally>,
    sent: Arc<AtomicU64>,
    /// Answers (any status) per service address, in `services`' order.
    answered_by_service: Arc<Vec<AtomicU64>>,
    _exporter: NsHttpServer<'a>,
}

const VERSIONS: [&str; 2] = ["stable", "canary"];

impl<'a> Labeller<'a> {
    /// Starts the exporter on `metrics` and the client threads, which send
    /// `samples` in turn from `sources` in `ns`, each connection to the
    /// next of `services`.
    pub fn start(
        ns: &'a Netns,
        metrics: SocketAddr,
        services: Vec<SocketAddr>,
        sources: Vec<IpAddr>,
        samples: Vec<Sample>,
        plan: &LoadPlan,
    ) -> Result<Labeller<'a>> {
        anyhow::ensure!(
            !services.is_empty() && !sources.is_empty() && !samples.is_empty(),
            "no services, sources or samples"
        );
        let tally = Arc::new(Tally::new()?);
        let t = tally.clone();
        let exporter = NsHttpServer::start(ns, metrics, 2, move |request| {
            let mut body = vec![];
            let encoder = TextEncoder::new();
            let _ = encoder.encode(&t.registry.gather(), &mut body);
            let response = tiny_http::Response::from_data(body)
                .with_header(header("Content-Type", encoder.format_type()));
            let _ = request.respond(response);
        })
        .context("starting the labelling client's /metrics")?;

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let answered_by_service: Arc<Vec<AtomicU64>> =
            Arc::new(services.iter().map(|_| AtomicU64::new(0)).collect());
        let (sources, samples) = (Arc::new(sources), Arc::new(samples));
        let services = Arc::new(services);
        let pause = Duration::from_secs_f64(plan.threads as f64 / f64::from(plan.rate.max(1)));
        let deadline = Instant::now() + plan.max_duration;
        let mut threads = vec![];
        for id in 0..plan.threads {
            let (stop, sent, tally) = (stop.clone(), sent.clone(), tally.clone());
            let (sources, samples) = (sources.clone(), samples.clone());
            let (services, answered_by_service) = (services.clone(), answered_by_service.clone());
            let ns_path = ns.path();
            let (per_connection, max_requests) = (plan.per_connection.max(1), plan.max_requests);
            threads.push(thread::spawn(move || {
                // The thread lives in the client namespace: every
                // connection it opens starts there.
                if let Err(e) = enter_for_good(&ns_path) {
                    eprintln!("demo client thread {id}: {e:#}");
                    return;
                }
                let mut next = Instant::now();
                let mut n = id; // this thread's position in samples and sources
                let mut connections = id; // and in services
                let running = || {
                    !stop.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                        && sent.load(Ordering::Relaxed) < max_requests
                };
                while running() {
                    let source = sources[n % sources.len()];
                    let to = connections % services.len();
                    connections += 1;
                    let Ok(mut client) = HttpClient::connect_here(Some(source), services[to])
                    else {
                        tally.failed.inc();
                        thread::sleep(pause);
                        n += 1;
                        continue;
                    };
                    for _ in 0..per_connection {
                        if !running() {
                            break;
                        }
                        // Paced: each thread sends at rate / threads; a
                        // thread that fell behind (slow answers) does not
                        // burst to catch up.
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        }
                        next = next.max(now) + pause;
                        let sample = samples[n % samples.len()];
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let Ok(answer) = client.get_path(&target(&sample.features)) else {
                            tally.failed.inc();
                            break;
                        };
                        answered_by_service[to].fetch_add(1, Ordering::Relaxed);
                        let version = if answer.version == VERSIONS[1] {
                            VERSIONS[1]
                        } else {
                            VERSIONS[0]
                        };
                        tally
                            .responses
                            .with_label_values(&[version, &answer.status.to_string()])
                            .inc();
                        if answer.status == 200 {
                            tally.predictions.with_label_values(&[version]).inc();
                            let label = super::model::CLASSES[sample.label];
                            if answer.body.trim() == label {
                                tally.correct.with_label_values(&[version]).inc();
                            }
                        }
                    }
                }
            }));
        }
        Ok(Labeller {
            stop,
            threads,
            tally,
            sent,
            answered_by_service,
            _exporter: exporter,
        })
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Answers so far (any status) from each service address, in the
    /// order `start` was given them.
    pub fn answered_by_service(&self) -> Vec<u64> {
        self.answered_by_service
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    pub fn seen(&self) -> Seen {
        let mut seen = Seen {
            failed: self.tally.failed.get(),
            ..Seen::default()
        };
        for (i, v) in VERSIONS.iter().enumerate() {
            seen.predictions[i] = self.tally.predictions.with_label_values(&[v]).get();
            seen.correct[i] = self.tally.correct.with_label_values(&[v]).get();
        }
        for family in self.tally.registry.gather() {
            if family.name() != "demo_responses_total" {
                continue;
            }
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                let i = usize::from(label("version") == VERSIONS[1]);
                let count = m.get_counter().get_value() as u64;
                seen.answered[i] += count;
                if label("code").starts_with('5') {
                    seen.errors[i] += count;
                }
            }
        }
        seen
    }

    /// Stops the client threads and waits for them (each finishes the
    /// request it is in, bounded by the clients' I/O timeout).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Labeller<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}
