//! The ways a client reaches a backend, each in a topology of its own
//! (so nftables' conntrack or canary's XDP program never touch another
//! path's packets), with the same nginx backends in every one:
//!
//! - direct: the client connects to the stable backend itself;
//! - empty programs: direct, with the empty floor programs attached where
//!   canary's go (XDP driver mode and TC egress on the host's veth): what
//!   hooking the veth costs before any program logic;
//! - empty TC programs: the same with ingress at TC (tcx ingress and
//!   egress), the floor of canary with `hook = "tc"`;
//! - canary: canaryd on the host's client-facing veth, weight 10 %;
//! - canary (tc): the same with the veth's ingress at TC (`hook = "tc"`);
//! - canary, signals off: the same with `[daemon] signals = false`, for
//!   issue 9's budget on what the health signals may cost;
//! - nftables: DNAT with a weighted `numgen` map in the host namespace;
//! - HAProxy: tcp mode, weights 90/10;
//! - nginx stream: weights 9/1.
//!
//! In each, the path's address is `HOST_V4:80` (direct: the stable backend)
//! and the backends are `BACKEND_V4[0]:8080` (stable) and
//! `BACKEND_V4[1]:8080` (canary), one nginx worker per CPU each.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use canary_common::signals::Signals;
use canary_userspace::{
    Affinity, Hook, Protocol, ServiceSpec, XdpMode,
    config::{Config, DaemonConfig},
    kernel::maps::{Counters, Maps},
    model::weight::Weight,
};
use xtask::{
    canaryd::{Binaries, Canaryd, DaemonDirs},
    topology::{BACKEND_V4, BackendKind, HOST_IF, HOST_V4, Netns, Topology},
};

use super::proc::{Service, TempDir};

pub const BACKEND_PORT: u16 = 8080;
pub const VIP_PORT: u16 = 80;
/// Canary share on every weighted path, in percent.
pub const CANARY_PERCENT: u32 = 10;
/// The service name canaryd is configured with.
pub const SERVICE: &str = "model";
/// What each backend answers, so a client can tell which one served it.
pub const BODIES: [&str; 2] = ["stable\n", "canary\n"];
/// Bound on each step of a single probe request (readiness, first answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// nginx's stream module as Debian's libnginx-mod-stream installs it.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Direct,
    EmptyPrograms,
    EmptyTc,
    Canary,
    CanaryTc,
    CanaryNoSignals,
    Nftables,
    Haproxy,
    NginxStream,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Direct,
        Kind::EmptyPrograms,
        Kind::EmptyTc,
        Kind::Canary,
        Kind::CanaryTc,
        Kind::CanaryNoSignals,
        Kind::Nftables,
        Kind::Haproxy,
        Kind::NginxStream,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::EmptyPrograms => "empty XDP+TC",
            Kind::EmptyTc => "empty TC+TC",
            Kind::Canary => "canary (XDP)",
            Kind::CanaryTc => "canary (tc)",
            Kind::CanaryNoSignals => "canary, signals off",
            Kind::Nftables => "nftables DNAT",
            Kind::Haproxy => "HAProxy tcp",
            Kind::NginxStream => "nginx stream",
        }
    }

    /// Where the client connects.
    pub fn target(self) -> SocketAddr {
        match self {
            Kind::Direct | Kind::EmptyPrograms | Kind::EmptyTc => backend_addr(0),
            _ => SocketAddr::new(HOST_V4.into(), VIP_PORT),
        }
    }

    pub fn url(self) -> String {
        format!("http://{}/", self.target())
    }
}

pub fn backend_addr(i: usize) -> SocketAddr {
    SocketAddr::new(BACKEND_V4[i].into(), BACKEND_PORT)
}

/// Built binaries the bench runs.
#[derive(Clone, Debug)]
pub struct Bins {
    pub canary: Binaries,
    pub kernel_bench: PathBuf,
}

/// One path, set up and answering.
pub struct PathEnv {
    pub kind: Kind,
    /// Fields drop in order: processes first, then their files, then the
    /// namespaces they ran in.
    canaryd: Option<BenchCanaryd>,
    services: Vec<Service>,
    pub dir: TempDir,
    pub topo: Topology,
}

impl PathEnv {
    pub fn new(kind: Kind, bins: &Bins) -> Result<PathEnv> {
        let topo = Topology::new(BackendKind::Namespace)?;
        let dir = TempDir::new(&format!("{kind:?}").to_lowercase())?;
        let mut env = PathEnv {
            kind,
            canaryd: None,
            services: vec![],
            dir,
            topo,
        };
        for i in 0..2 {
            let conf = env.dir.write(
                &format!("backend{i}.conf"),
                &nginx_backend_conf(env.dir.path(), i),
            )?;
            let s = nginx(
                &format!("backend nginx {i}"),
                &env.topo.backends[i],
                &conf,
                env.dir.path(),
                &format!("backend{i}"),
            )?;
            env.services.push(s);
        }
        match kind {
            Kind::Direct => {}
            Kind::EmptyPrograms | Kind::EmptyTc => {
                let flag = if kind == Kind::EmptyTc {
                    "--attach-floor-tc"
                } else {
                    "--attach-floor"
                };
                let mut cmd = Command::new(&bins.kernel_bench);
                cmd.args([flag, HOST_IF]);
                let log = env.dir.path().join("floor.log");
                let mut s = Service::start(
                    &format!("kernel-bench {flag}"),
                    &env.topo.host,
                    cmd,
                    &log,
                    Duration::from_millis(100),
                )?;
                let deadline = Instant::now() + Duration::from_secs(20);
                while !s.log_text().contains("attached") {
                    s.check_running()?;
                    ensure!(
                        Instant::now() < deadline,
                        "the floor programs were not attached within 20 s:\n{}",
                        s.log_text()
                    );
                    thread::sleep(Duration::from_millis(50));
                }
                env.services.push(s);
            }
            Kind::Canary | Kind::CanaryTc | Kind::CanaryNoSignals => {
                let dirs = DaemonDirs::new("bench")?;
                let hook = if kind == Kind::CanaryTc {
                    Hook::Tc
                } else {
                    Hook::Xdp
                };
                dirs.write_config(&canaryd_config(&dirs, kind != Kind::CanaryNoSignals, hook))?;
                let daemon = Canaryd::start(&env.topo.host, &bins.canary, &dirs, &[])?;
                env.canaryd = Some(BenchCanaryd { daemon, dirs });
            }
            Kind::Nftables => {
                let rules = env.dir.write("dnat.nft", &nft_rules())?;
                env.topo
                    .host
                    .exec(&["nft", "-f", &rules.to_string_lossy()])
                    .context("loading the nftables DNAT rules")?;
            }
            Kind::Haproxy => {
                let conf = env.dir.write("haproxy.cfg", &haproxy_conf())?;
                let mut cmd = Command::new("haproxy");
                cmd.arg("-db").arg("-f").arg(&conf);
                let log = env.dir.path().join("haproxy.log");
                env.services.push(Service::start(
                    "haproxy",
                    &env.topo.host,
                    cmd,
                    &log,
                    Duration::from_millis(300),
                )?);
            }
            Kind::NginxStream => {
                let conf = env
                    .dir
                    .write("stream.conf", &nginx_stream_conf(env.dir.path()))?;
                let s = nginx(
                    "nginx stream",
                    &env.topo.host,
                    &conf,
                    env.dir.path(),
                    "stream",
                )?;
                env.services.push(s);
            }
        }
        env.wait_answering()?;
        Ok(env)
    }

    /// A canary path's daemon.
    pub fn canaryd(&self) -> Result<&BenchCanaryd> {
        self.canaryd.as_ref().context("not a canary path")
    }

    /// Fails if a server, proxy or canaryd has died.
    pub fn check_running(&mut self) -> Result<()> {
        for s in &mut self.services {
            s.check_running()?;
        }
        if let Some(d) = &mut self.canaryd {
            d.daemon.check_running()?;
        }
        Ok(())
    }

    /// Waits (bounded) until a request through the path gets a backend's
    /// answer.
    fn wait_answering(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match xtask::http::get(&self.topo.client, self.kind.target(), "/", PROBE_TIMEOUT) {
                Ok(body) if BODIES.contains(&body.as_str()) => return Ok(()),
                Ok(body) => bail!("{}: unexpected answer {body:?}", self.kind.label()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context(format!(
                        "{} does not answer at {}",
                        self.kind.label(),
                        self.kind.target()
                    ));
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Starts nginx in the foreground with `conf`.
fn nginx(name: &str, ns: &Netns, conf: &Path, dir: &Path, tag: &str) -> Result<Service> {
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join(format!("{tag}.error.log")));
    Service::start(
        name,
        ns,
        cmd,
        &dir.join(format!("{tag}.log")),
        Duration::from_millis(300),
    )
}

/// Workers of every server and proxy (nginx processes, HAProxy threads):
/// one per CPU, so no path is held back by a single busy worker.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Shared by every nginx the bench starts: files in the bench's directory,
/// never in /var.
fn nginx_common(dir: &Path, tag: &str, workers: usize) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes {workers};\npid {d}/{tag}.pid;\n\
         events {{ worker_connections 4096; }}\n"
    )
}

/// A backend: `return 200` with its name, keep-alive without a request cap.
pub fn nginx_backend_conf(dir: &Path, i: usize) -> String {
    let d = dir.display();
    format!(
        "{}\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/body{i};\n\
         \x20   proxy_temp_path {d}/proxy{i};\n\
         \x20   fastcgi_temp_path {d}/fastcgi{i};\n\
         \x20   uwsgi_temp_path {d}/uwsgi{i};\n\
         \x20   scgi_temp_path {d}/scgi{i};\n\
         \x20   keepalive_requests 10000000;\n\
         \x20   keepalive_timeout 300s;\n\
         \x20   server {{\n\
         \x20       listen {addr};\n\
         \x20       location / {{ default_type text/plain; return 200 \"{body}\\n\"; }}\n\
         \x20   }}\n\
         }}\n",
        nginx_common(dir, &format!("backend{i}"), cores()),
        addr = backend_addr(i),
        body = BODIES[i].trim_end(),
    )
}

pub fn nginx_stream_conf(dir: &Path) -> String {
    let stable = 100 - CANARY_PERCENT;
    format!(
        "load_module {NGINX_STREAM_MODULE};\n{}\
         stream {{\n\
         \x20   upstream backends {{\n\
         \x20       server {} weight={};\n\
         \x20       server {} weight={};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {HOST_V4}:{VIP_PORT};\n\
         \x20       proxy_pass backends;\n\
         \x20   }}\n\
         }}\n",
        nginx_common(dir, "stream", cores()),
        backend_addr(0),
        stable / 10,
        backend_addr(1),
        CANARY_PERCENT / 10,
    )
}

pub fn haproxy_conf() -> String {
    format!(
        "global\n\
         \x20   nbthread {}\n\
         \x20   maxconn 8000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend fe\n\
         \x20   bind {HOST_V4}:{VIP_PORT}\n\
         \x20   default_backend be\n\
         backend be\n\
         \x20   balance roundrobin\n\
         \x20   server stable {} weight {}\n\
         \x20   server canary {} weight {}\n",
        cores(),
        backend_addr(0),
        100 - CANARY_PERCENT,
        backend_addr(1),
        CANARY_PERCENT,
    )
}

/// Weighted DNAT: `numgen random mod 10000` picks a basis point; the top
/// `CANARY_PERCENT` go to the canary.
pub fn nft_rules() -> String {
    let split = (100 - CANARY_PERCENT) * 100;
    format!(
        "table ip canary_bench {{\n\
         \x20   chain prerouting {{\n\
         \x20       type nat hook prerouting priority dstnat; policy accept;\n\
         \x20       ip daddr {HOST_V4} tcp dport {VIP_PORT} dnat ip to numgen random mod 10000 map {{ 0-{} : {} . {BACKEND_PORT}, {split}-9999 : {} . {BACKEND_PORT} }}\n\
         \x20   }}\n\
         }}\n",
        split - 1,
        BACKEND_V4[0],
        BACKEND_V4[1],
    )
}

/// The canary path's one service, as canaryd is configured with it.
pub fn canary_service() -> ServiceSpec {
    ServiceSpec {
        name: SERVICE.into(),
        vip: SocketAddr::new(HOST_V4.into(), VIP_PORT),
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: vec![backend_addr(0)],
        canary: vec![backend_addr(1)],
        weight: Weight::from_percent(f64::from(CANARY_PERCENT))
            .expect("CANARY_PERCENT is a whole percent from 0 to 100"),
    }
}

/// canaryd's config for a canary path, measuring health signals or not,
/// ingress at `hook`.
pub fn canaryd_config(dirs: &DaemonDirs, signals: bool, hook: Hook) -> Config {
    let mut daemon = DaemonConfig {
        signals,
        ..dirs.daemon_config(HOST_IF)
    };
    if hook != Hook::Xdp {
        daemon.hooks.insert(HOST_IF.into(), hook);
    }
    Config {
        daemon,
        services: vec![canary_service()],
        rollouts: Default::default(),
        fleet: None,
    }
}

/// The config as the report shows it, with placeholder directories.
pub fn canaryd_config_example() -> String {
    let dir = Path::new("/tmp/canary-bench-<pid>-<n>");
    let mut daemon = DaemonConfig::with_defaults(vec![HOST_IF.into()]);
    daemon.socket = dir.join("run/canary.sock");
    daemon.state_dir = dir.join("state");
    daemon.bpffs = "/sys/fs/bpf/canary-bench-<pid>-<n>".into();
    Config {
        daemon,
        services: vec![canary_service()],
        rollouts: Default::default(),
        fleet: None,
    }
    .to_toml()
}

/// canaryd running in the canary path's host namespace; its directories
/// (pins included) go after it.
pub struct BenchCanaryd {
    pub daemon: Canaryd,
    pub dirs: DaemonDirs,
}

impl BenchCanaryd {
    /// XDP attach mode canaryd reports.
    pub fn xdp_mode(&self) -> Result<XdpMode> {
        let status = self.daemon.status()?;
        status
            .daemon
            .interfaces
            .first()
            .context("canaryd reports no interface")?
            .xdp
            .context("canaryd's ingress is not at XDP")
    }

    /// The health signals canaryd's data path counted so far, stable and
    /// canary summed, read from its pinned maps (canaryctl does not show
    /// them).
    pub fn signals(&self) -> Result<Signals> {
        let pins = self.dirs.pins();
        let id = Maps::open_pinned(&pins)?
            .services
            .get(&canary_service().vip_endpoint(), 0)
            .context("the pinned SERVICES map has no entry for the bench's service")?
            .id;
        let [stable, canary] = Counters::open_pinned(&pins)?.version_signals(id)?;
        let mut sum = stable;
        sum.add(&canary);
        Ok(sum)
    }

    /// New flows canaryd's data path sent to each version so far, and its
    /// rehashes.
    pub fn split(&self) -> Result<Split> {
        let status = self.daemon.status()?;
        let svc = status
            .services
            .first()
            .context("canaryd reports no service")?;
        Ok(Split {
            stable: svc.stable.new_flows,
            canary: svc.canary.new_flows,
            rehashes: svc.stable.rehashes + svc.canary.rehashes,
        })
    }
}

/// New flows canaryd's data path sent to each version, and its rehashes
/// (mid-stream packets that found no entry).
#[derive(Clone, Copy, Debug)]
pub struct Split {
    pub stable: u64,
    pub canary: u64,
    pub rehashes: u64,
}

impl Split {
    /// The canary's share of the new flows, in percent.
    pub fn canary_percent(&self) -> f64 {
        self.canary as f64 * 100.0 / (self.stable + self.canary).max(1) as f64
    }
}
