//! `GrpcServer`: `tests/grpc/server.py` in a test namespace, told what to do
//! through its stdin (one command a line, one JSON answer a line on its
//! stdout), terminated and reaped on drop.

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdin, ExitStatus},
    sync::{Arc, Mutex, mpsc::Receiver},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use xtask::topology::Netns;

use super::{
    pipes::{keep_tail, read_lines, receive},
    script_command,
};

/// Python, grpcio and the bind: a loaded 2-core machine takes seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A control command is answered between two calls; nothing waits long.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to exit after SIGTERM (the server gives calls 0.5 s) before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How a server starts; the delay and failure rule can change later.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Every Nth call is answered UNAVAILABLE (0: never), counted exactly.
    pub fail_every: u64,
    /// Sleep before every answer, failures included.
    pub delay: Duration,
    /// Each connection is closed (GOAWAY) after this long; None: never.
    pub max_connection_age: Option<Duration>,
    /// Calls served at once; more wait for a worker thread.
    pub workers: u32,
    /// Predict with this exported iris tree (`Model::to_json`) instead of
    /// echoing: JSON features in, the class out.
    pub model: Option<PathBuf>,
    /// With `model`: answer UNAVAILABLE to inputs whose sepal width is
    /// above this (the demo canary's input-validation fault).
    pub reject_sepal_width_above: Option<f64>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            fail_every: 0,
            delay: Duration::ZERO,
            max_connection_age: None,
            workers: 32,
            model: None,
            reject_sepal_width_above: None,
        }
    }
}

/// What the server itself counted, and its settings at that moment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerStats {
    pub name: String,
    /// Calls taken (each is counted as answered OK or UNAVAILABLE when
    /// taken: a client that gave up during the delay still counts).
    pub calls: u64,
    pub answered_ok: u64,
    pub answered_unavailable: u64,
    /// Requests a `model` server could not read (not four finite numbers).
    #[serde(default)]
    pub answered_invalid_argument: u64,
    /// Distinct client address:port pairs seen: TCP connections.
    pub connections: u64,
    pub delay_ms: f64,
    pub fail_every: u64,
}

/// A running gRPC server (see the module docs).
pub struct GrpcServer {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    control: Mutex<Control>,
    stderr: Arc<Mutex<String>>,
}

/// The server's stdin, and its stdout as lines.
struct Control {
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl GrpcServer {
    /// Starts a server named `name` on `addr` inside `ns` (the process
    /// enters the namespace with this thread, as canaryd does, and keeps
    /// the test's mount namespace) and waits until it listens.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        name: &str,
        options: &ServerOptions,
    ) -> Result<GrpcServer> {
        let mut cmd = script_command("server.py");
        cmd.args(["--name", name, "--listen", &addr.to_string()])
            .args(["--fail-every", &options.fail_every.to_string()])
            .args(["--delay-ms", &millis(options.delay)])
            .args(["--workers", &options.workers.to_string()]);
        if let Some(age) = options.max_connection_age {
            cmd.args(["--max-connection-age-s", &age.as_secs_f64().to_string()]);
        }
        if let Some(model) = &options.model {
            cmd.arg("--model").arg(model);
        }
        if let Some(width) = options.reject_sepal_width_above {
            cmd.args(["--reject-sepal-width-above", &width.to_string()]);
        }
        let mut child = ns.enter(|| cmd.spawn())?.with_context(|| {
            format!("starting the gRPC server {name} (cargo xtask setup installs python3-grpcio)")
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the gRPC server {name} has no piped stdin, stdout or stderr");
        };
        let server = GrpcServer {
            name: name.to_owned(),
            addr,
            child,
            control: Mutex::new(Control {
                stdin,
                lines: read_lines(stdout),
            }),
            stderr: keep_tail(stderr),
        };
        let ready = server.next_line(READY_TIMEOUT).with_context(|| {
            format!(
                "the gRPC server {name} on {addr} in {} did not start",
                ns.name()
            )
        })?;
        #[derive(Deserialize)]
        struct Ready {
            ready: bool,
        }
        match serde_json::from_str::<Ready>(&ready) {
            Ok(Ready { ready: true }) => Ok(server),
            _ => bail!(
                "the gRPC server {name} said {ready:?} instead of ready\n{}",
                server.stderr_text()
            ),
        }
    }

    /// Sleeps `delay` before every answer from the next call on.
    pub fn set_delay(&self, delay: Duration) -> Result<ServerStats> {
        self.command(&format!("delay-ms {}", millis(delay)))
    }

    /// Fails every `n`th call counted from the next one (0: never).
    pub fn set_fail_every(&self, n: u64) -> Result<ServerStats> {
        self.command(&format!("fail-every {n}"))
    }

    /// What the server has counted so far.
    pub fn stats(&self) -> Result<ServerStats> {
        self.command("stats")
    }

    /// Stops the server (SIGTERM; in-flight calls get 0.5 s) and returns
    /// its final counts.
    pub fn stop(mut self) -> Result<ServerStats> {
        self.terminate()?;
        // Its last line; the reader has it by now, the process having exited.
        let last = self.next_line(CONTROL_TIMEOUT)?;
        serde_json::from_str(&last).with_context(|| {
            format!(
                "the gRPC server {} ended with {last:?}\n{}",
                self.name,
                self.stderr_text()
            )
        })
    }

    /// Sends one control line and parses its one-line answer.
    fn command(&self, line: &str) -> Result<ServerStats> {
        let answer = {
            let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
            // An answer that came after an earlier command timed out is
            // not this command's answer.
            while control.lines.try_recv().is_ok() {}
            writeln!(control.stdin, "{line}")
                .and_then(|()| control.stdin.flush())
                .with_context(|| format!("telling the gRPC server {} {line:?}", self.name))?;
            receive(&control.lines, CONTROL_TIMEOUT)
        };
        let answer = answer.with_context(|| {
            format!(
                "the gRPC server {} did not answer {line:?}\n{}",
                self.name,
                self.stderr_text()
            )
        })?;
        #[derive(Deserialize)]
        struct Refusal {
            error: String,
        }
        if let Ok(Refusal { error }) = serde_json::from_str::<Refusal>(&answer) {
            bail!("the gRPC server {} refused {line:?}: {error}", self.name);
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("the gRPC server {} answered {answer:?}", self.name))
    }

    fn next_line(&self, limit: Duration) -> Result<String> {
        let control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        receive(&control.lines, limit).map_err(|e| anyhow::anyhow!("{e}\n{}", self.stderr_text()))
    }

    /// What the server wrote on stderr (its last `STDERR_KEPT` bytes).
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGTERM, then SIGKILL after `STOP_TIMEOUT`; reaped either way.
    fn terminate(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill(2) on our own child, not yet reaped (try_wait above).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        bail!(
            "the gRPC server {} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed ({status})",
            self.name
        )
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        // Best effort: a failure here must not become a panic in drop, and
        // `terminate` kills and reaps even when it reports one.
        let _ = self.terminate();
    }
}

/// A duration as the scripts take it: milliseconds, fractional.
fn millis(d: Duration) -> String {
    (d.as_secs_f64() * 1000.0).to_string()
}
