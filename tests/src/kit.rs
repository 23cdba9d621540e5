//! The daemon under test: a namespace topology, a stable and a canary
//! backend on the host, canaryd's directories (config, socket, state, log
//! under /tmp; pins in a bpffs directory of its own), and what every
//! end-to-end suite does with them: write a config, start canaryd (with
//! the test's environment and descriptor limit), run canaryctl or a
//! one-shot canaryd, connect to a VIP, read /metrics. Plus `wait_until`,
//! the bounded wait that tests use instead of a sleep to order events.
//!
//! ```ignore
//! let s = DaemonUnderTest::builder("daemon").build();
//! s.write_config(&s.config(5000));
//! let d = s.start(&[]);
//! wait_until(WAIT, "the VIP answers", || d.log_text(), || s.request(s.vip).is_ok());
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use canary_userspace::{
    Affinity, Protocol, ServiceSpec,
    api::{Client as ApiClient, InterfaceStatus, RolloutAction, RolloutReport, Status},
    config::Config,
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs, canaryctl},
    topology::{BackendKind, HOST_IF, HOST_V4, Topology},
};

use crate::{
    HTTP_TIMEOUT,
    harness::{CANARY, SERVICE, STABLE, VIP_PORT},
    servers::{Backend, Behaviour, Client},
};

/// How long a one-shot canaryd (`--check`, `--detach-all`, a start that
/// should be refused) may run before it is killed and counted as "it kept
/// running".
pub const ONE_SHOT: Duration = Duration::from_secs(30);

/// What a test waits for a daemon-side change by default: the daemon
/// checks its interfaces every second, answers status on demand.
pub const WAIT: Duration = Duration::from_secs(10);

/// How to build a `DaemonUnderTest`; `DaemonUnderTest::builder`.
pub struct Builder {
    tag: &'static str,
    ports: [u16; 2],
    behaviour: [Behaviour; 2],
    env: Vec<(String, String)>,
    nofile: Option<u64>,
    weight_bp: Option<u16>,
}

impl Builder {
    /// The [stable, canary] backends' ports on the host address (default
    /// 8081 and 8082).
    pub fn backend_ports(mut self, stable: u16, canary: u16) -> Builder {
        self.ports = [stable, canary];
        self
    }

    /// How the [stable, canary] backends answer (default: line backends
    /// that answer with their label).
    pub fn behaviour(mut self, behaviour: [Behaviour; 2]) -> Builder {
        self.behaviour = behaviour;
        self
    }

    /// An environment variable for every canaryd this fixture starts (a
    /// test hook such as `TEST_HOLD_ENV`).
    pub fn env(mut self, key: &str, value: &str) -> Builder {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// RLIMIT_NOFILE for every canaryd this fixture starts.
    pub fn nofile(mut self, n: u64) -> Builder {
        self.nofile = Some(n);
        self
    }

    /// Writes `config(weight_bp)` before the test sees the fixture.
    pub fn config(mut self, weight_bp: u16) -> Builder {
        self.weight_bp = Some(weight_bp);
        self
    }

    /// Creates the namespaces, the backends and the directories. Panics
    /// (the test fails there) if any cannot be made.
    pub fn build(self) -> DaemonUnderTest {
        let topo = Topology::new(BackendKind::LocalProcess).unwrap();
        let at = |port| SocketAddr::new(HOST_V4.into(), port);
        let [stable_behaviour, canary_behaviour] = self.behaviour;
        let (stable, canary) = (at(self.ports[0]), at(self.ports[1]));
        let backends = [
            Backend::spawn_with(&topo.host, stable, STABLE, stable_behaviour).unwrap(),
            Backend::spawn_with(&topo.host, canary, CANARY, canary_behaviour).unwrap(),
        ];
        let dirs = DaemonDirs::new(self.tag).unwrap();
        let s = DaemonUnderTest {
            vip: at(VIP_PORT),
            stable,
            canary,
            socket: dirs.socket(),
            dirs,
            bins: Binaries::next_to_test().unwrap(),
            env: self.env,
            nofile: self.nofile,
            _backends: backends,
            topo,
        };
        if let Some(w) = self.weight_bp {
            s.write_config(&s.config(w));
        }
        s
    }
}

/// One scenario's canaryd fixture; `builder` makes one. Nothing runs until
/// `start`; everything (namespaces, backends, directories, pins) goes on
/// drop.
pub struct DaemonUnderTest {
    /// Where the service "model" listens: the host address, port 80.
    /// Nothing listens there itself: it answers only through canary.
    pub vip: SocketAddr,
    pub stable: SocketAddr,
    pub canary: SocketAddr,
    pub dirs: DaemonDirs,
    pub bins: Binaries,
    socket: PathBuf,
    env: Vec<(String, String)>,
    nofile: Option<u64>,
    // Held for their lifetime: the backends serve until the scenario ends.
    _backends: [Backend; 2],
    // Dropped last: namespaces outlive the sockets in them.
    pub topo: Topology,
}

impl DaemonUnderTest {
    /// `tag` names the directories (/tmp/canary-TAG-PID-N and the bpffs
    /// directory beside the pins of other tests).
    pub fn builder(tag: &'static str) -> Builder {
        Builder {
            tag,
            ports: [8081, 8082],
            behaviour: [Behaviour::Line, Behaviour::Line],
            env: vec![],
            nofile: None,
            weight_bp: None,
        }
    }

    /// `builder(tag).build()`: line backends on 8081 and 8082, no config.
    pub fn new(tag: &'static str) -> DaemonUnderTest {
        DaemonUnderTest::builder(tag).build()
    }

    /// "model" on the VIP, this fixture's backends, flow affinity.
    pub fn service(&self, weight_bp: u16) -> ServiceSpec {
        tcp_service(SERVICE, self.vip, self.stable, self.canary, weight_bp)
    }

    /// The daemon on HOST_IF with `services` and no rollout.
    pub fn config_with(&self, services: Vec<ServiceSpec>) -> Config {
        Config {
            daemon: self.dirs.daemon_config(HOST_IF),
            services,
            rollouts: Default::default(),
            fleet: None,
        }
    }

    /// The daemon on HOST_IF with one service, "model", at `weight_bp`.
    pub fn config(&self, weight_bp: u16) -> Config {
        self.config_with(vec![self.service(weight_bp)])
    }

    pub fn write_config(&self, config: &Config) {
        self.dirs.write_config(config).unwrap();
    }

    /// canaryd on the written config, in the host namespace, answering on
    /// its socket; panics with its log otherwise.
    pub fn start(&self, extra: &[&str]) -> Canaryd {
        self.try_start(extra)
            .unwrap_or_else(|e| panic!("starting canaryd {extra:?}: {e:#}"))
    }

    /// `start` that may fail (a start that must be refused).
    pub fn try_start(&self, extra: &[&str]) -> Result<Canaryd> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Canaryd::spawn(
            &self.topo.host,
            &self.bins,
            &self.dirs,
            extra,
            &env,
            self.nofile,
        )
    }

    /// canaryctl on this fixture's socket, daemon running or not.
    pub fn ctl(&self, args: &[&str]) -> Output {
        canaryctl(&self.bins, &self.dirs.socket(), args).unwrap()
    }

    /// The library's typed client on this fixture's socket.
    pub fn client(&self) -> ApiClient<'_> {
        ApiClient {
            socket: &self.socket,
        }
    }

    /// `canaryd --config C args...`, not started.
    fn canaryd_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.canaryd);
        cmd.arg("--config").arg(self.dirs.config()).args(args);
        cmd
    }

    /// `canaryd --config C args...` in the host namespace, to its end
    /// (killed after `ONE_SHOT`: a daemon that should have stopped).
    pub fn one_shot(&self, args: &[&str]) -> Output {
        let cmd = self.canaryd_command(args);
        let child = self.topo.host.enter(|| spawn_piped(cmd)).unwrap().unwrap();
        wait_bounded(child)
    }

    /// A new connection from the client namespace to `to`.
    pub fn connect(&self, to: SocketAddr) -> Result<Client> {
        Client::connect(&self.topo.client, None, to)
    }

    /// One new connection to `to` and one request; the answer.
    pub fn request(&self, to: SocketAddr) -> Result<String> {
        self.connect(to)?.request()
    }

    /// Where the daemon's /metrics listens (in the host namespace).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.dirs.daemon_config(HOST_IF).metrics_listen
    }

    /// A real Prometheus in the host namespace scraping this daemon.
    pub fn prometheus(&self) -> crate::prometheus::Server<'_> {
        crate::prometheus::Server::start(&self.topo.host, &self.dirs.root, self.metrics_addr())
            .unwrap()
    }

    /// GET /metrics from the host namespace.
    pub fn metrics(&self) -> Result<String> {
        xtask::http::get(
            &self.topo.host,
            self.metrics_addr(),
            "/metrics",
            HTTP_TIMEOUT,
        )
    }
}

/// A TCP service, flow affinity, one stable and one canary backend, the
/// canary at `weight_bp` basis points (a number, as tests write them).
pub fn tcp_service(
    name: &str,
    vip: SocketAddr,
    stable: SocketAddr,
    canary: SocketAddr,
    weight_bp: u16,
) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        vip,
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: vec![stable],
        canary: vec![canary],
        weight: crate::bp(weight_bp),
    }
}

/// `port` on the host address (HOST_V4).
pub fn host_addr(port: u16) -> SocketAddr {
    SocketAddr::new(HOST_V4.into(), port)
}

/// `cmd` started with its output captured, no input.
pub fn spawn_piped(mut cmd: Command) -> std::io::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// `cmd` with its output captured, to its end or `ONE_SHOT`.
pub fn run_bounded(cmd: Command) -> Output {
    wait_bounded(spawn_piped(cmd).unwrap())
}

/// Waits for a child with piped output, killing it after `ONE_SHOT`.
pub fn wait_bounded(child: Child) -> Output {
    wait_within(child, ONE_SHOT).unwrap()
}

/// Waits for a child with piped output, killing it (SIGKILL) once `limit`
/// has passed; its output either way. The pipes are read while it runs
/// (`wait_with_output` on a thread): a child that writes more than a pipe
/// holds never blocks on it.
pub fn wait_within(child: Child, limit: Duration) -> std::io::Result<Output> {
    let pid = child.id() as libc::pid_t;
    let waiter = thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + limit;
    while !waiter.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if !waiter.is_finished() {
        // SAFETY: kill(2) on our own child, which its waiter has not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    waiter
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the output reader panicked")))
}

/// Polls `done` (every 20 ms) until it holds; returns how long that took.
/// Past `limit` the test fails, naming `what` and showing `context()` (a
/// daemon's log, say; `String::new` for nothing).
#[track_caller]
pub fn wait_until(
    limit: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            panic!("{what}: not within {limit:?}\n{}", context());
        }
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Bytes a process printed, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of the sample `name{labels}` in a /metrics body.
pub fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// What status says of the host interface.
pub fn host_interface(status: &Status) -> InterfaceStatus {
    status
        .daemon
        .interfaces
        .iter()
        .find(|i| i.name == HOST_IF)
        .cloned()
        .unwrap_or_else(|| panic!("no {HOST_IF} in status: {status:?}"))
}

/// Process `pid`'s TCP sockets connected to `port` (from /proc/PID/net/tcp
/// of its namespace: 127.0.0.1 local connections).
pub fn sockets_to(pid: u32, port: u16) -> usize {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let inodes: std::collections::HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f.get(2)?.rsplit(':').next()?;
            let inode = f.get(9)?.to_string();
            (u16::from_str_radix(remote_port, 16).ok()? == port).then_some(inode)
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| {
                    let t = target.to_string_lossy();
                    t.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .is_some_and(|inode| inodes.contains(inode))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Connections accepted on the Unix socket at `path` of process `pid`.
/// /proc/net/unix lists an accepted socket under its listener's path,
/// connected, in the network namespace of the client that connected: this
/// looks in `pid`'s and in this test's (where canaryctl runs).
pub fn accepted_on(pid: u32, path: &Path) -> usize {
    const CONNECTED: &str = "03";
    let path = path.to_string_lossy();
    let inodes: std::collections::HashSet<String> = [
        format!("/proc/{pid}/net/unix"),
        "/proc/self/net/unix".to_owned(),
    ]
    .iter()
    .flat_map(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(5) == Some(&CONNECTED) && f.get(7) == Some(&path.as_ref()))
                    .then(|| f[6].to_owned())
            })
            .collect::<Vec<_>>()
    })
    .collect();
    inodes.len()
}

/// Starts the rollout of the fixture's service on `d` and waits (bounded
/// by `limit`) for it to stop running: the report and how long it took.
pub fn run_rollout_to_end(d: &Canaryd, limit: Duration) -> (RolloutReport, Duration) {
    let client = d.client();
    let started = Instant::now();
    client.rollout(SERVICE, RolloutAction::Start).unwrap();
    let report = client
        .wait_for_rollout(SERVICE, Duration::from_millis(100), limit, |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    (report, started.elapsed())
}

/// A rollout's decisions, one line each, for a failing assertion.
pub fn describe_history(r: &RolloutReport) -> String {
    r.history
        .iter()
        .map(|h| format!("look {} {:?}: {}", h.look, h.verdict, h.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A megabyte on stdout is more than a pipe holds: read while the
    /// child runs, it finishes on its own instead of blocking until killed.
    #[test]
    fn a_child_writing_more_than_a_pipe_holds_runs_to_its_end() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 1000000 /dev/zero"]);
        let started = Instant::now();
        let out = run_bounded(cmd);
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(out.stdout.len(), 1_000_000);
        assert!(started.elapsed() < ONE_SHOT);
    }
}
