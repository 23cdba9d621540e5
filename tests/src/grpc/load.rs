//! `GrpcLoad`: one bounded run of `tests/grpc/client.py` in a test
//! namespace, and what it saw (`GrpcOutcome`).

use std::{collections::BTreeMap, net::SocketAddr, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use xtask::topology::Netns;

use super::{Code, script_command};
use crate::kit::{text, wait_within};

/// Python's start and every channel's first connection (the client waits
/// up to 5 s for those), on top of the run's own deadline.
const START_AND_CONNECT: Duration = Duration::from_secs(20);

/// A run of calls: how many, over how many channels, how many at a time,
/// and its bounds. `GrpcLoad { channels: 4, ..GrpcLoad::calls(200) }`.
#[derive(Debug, Clone)]
pub struct GrpcLoad {
    /// Calls in all; call i goes to channel i mod `channels`.
    pub calls: u32,
    /// Channels, each its own TCP connection.
    pub channels: u32,
    /// Calls in flight at once.
    pub concurrency: u32,
    /// Deadline of each call.
    pub call_timeout: Duration,
    /// No call starts after this; the rest are reported `not_sent`.
    pub deadline: Duration,
}

impl GrpcLoad {
    /// `n` calls, one channel, one at a time, 5 s each, 30 s in all.
    pub fn calls(n: u32) -> GrpcLoad {
        GrpcLoad {
            calls: n,
            channels: 1,
            concurrency: 1,
            call_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
        }
    }

    /// Runs the calls from inside `ns` to `target` and waits for the
    /// client's report (the client is killed if it outlives its deadline,
    /// one call's timeout and `START_AND_CONNECT`).
    pub fn run(&self, ns: &Netns, target: SocketAddr) -> Result<GrpcOutcome> {
        ensure!(
            self.calls > 0 && self.channels > 0 && self.concurrency > 0,
            "a gRPC load needs calls, channels and concurrency of at least 1: {self:?}"
        );
        let mut cmd = script_command("client.py");
        cmd.args(["--target", &target.to_string()])
            .args(["--calls", &self.calls.to_string()])
            .args(["--channels", &self.channels.to_string()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--timeout-s", &self.call_timeout.as_secs_f64().to_string()])
            .args(["--deadline-s", &self.deadline.as_secs_f64().to_string()])
            .stdin(Stdio::null());
        let child = ns
            .enter(|| cmd.spawn())?
            .context("starting the gRPC load client (cargo xtask setup installs python3-grpcio)")?;
        let limit = self.deadline + self.call_timeout + START_AND_CONNECT;
        let out = wait_within(child, limit).context("waiting for the gRPC load client")?;
        if !out.status.success() {
            bail!(
                "the gRPC load client to {target} from {} failed ({}; killed after {limit:?} if by signal):\n{}",
                ns.name(),
                out.status,
                text(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "the gRPC load client's report:\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        })
    }
}

/// What the load client saw.
#[derive(Debug, Clone, Deserialize)]
pub struct GrpcOutcome {
    pub target: String,
    pub calls_requested: u64,
    /// Calls made (each has a code).
    pub calls: u64,
    /// Calls never started: the run's deadline came first.
    pub not_sent: u64,
    pub channels: u32,
    /// Channels connected within 5 s of the start.
    pub channels_ready: u32,
    /// Seconds from the first call to the last answer.
    pub load_s: f64,
    pub by_code: BTreeMap<Code, u64>,
    /// Over every call; None when no call was made.
    pub latency_ms: Option<Latency>,
    /// By the server that answered (`super::UNKNOWN_SERVER` when none said).
    pub by_server: BTreeMap<String, ServerOutcome>,
    /// Index i is channel i.
    pub by_channel: Vec<ChannelOutcome>,
}

impl GrpcOutcome {
    /// Calls that ended with `code`.
    pub fn count(&self, code: Code) -> u64 {
        self.by_code.get(&code).copied().unwrap_or(0)
    }

    /// Calls answered by the server named `name` that ended with `code`.
    pub fn count_from(&self, name: &str, code: Code) -> u64 {
        self.by_server.get(name).map_or(0, |s| s.count(code))
    }
}

/// The calls one server answered.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerOutcome {
    pub calls: u64,
    pub by_code: BTreeMap<Code, u64>,
    pub latency_ms: Option<Latency>,
}

impl ServerOutcome {
    pub fn count(&self, code: Code) -> u64 {
        self.by_code.get(&code).copied().unwrap_or(0)
    }
}

/// The calls sent on one channel.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelOutcome {
    pub calls: u64,
    pub by_code: BTreeMap<Code, u64>,
}

/// Call latencies as the client measured them (start to answer or error),
/// in milliseconds; nearest-rank percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}
