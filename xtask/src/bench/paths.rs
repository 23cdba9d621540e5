//! The ways a client reaches a backend, each in a topology of its own
//! (so nftables' conntrack or canary's XDP program never touch another
//! path's packets), with the same nginx backends in every one:
//!
//! - direct: the client connects to the stable backend itself;
//! - empty programs: direct, with the empty floor programs attached where
//!   canary's go (XDP driver mode and TC egress on the host's veth): what
//!   hooking the veth costs before any program logic;
//! - canary: canaryd on the host's client-facing veth, weight 10 %;
//! - nftables: DNAT with a weighted `numgen` map in the host namespace;
//! - HAProxy: tcp mode, weights 90/10;
//! - nginx stream: weights 9/1.
//!
//! In each, the path's address is `HOST_V4:80` (direct: the stable backend)
//! and the backends are `BACKEND_V4[0]:8080` (stable) and
//! `BACKEND_V4[1]:8080` (canary), one nginx worker per CPU each.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xtask::topology::{BACKEND_V4, BackendKind, HOST_IF, HOST_V4, Netns, Topology};

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
    Canary,
    Nftables,
    Haproxy,
    NginxStream,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::EmptyPrograms,
        Kind::Canary,
        Kind::Nftables,
        Kind::Haproxy,
        Kind::NginxStream,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::EmptyPrograms => "empty XDP+TC",
            Kind::Canary => "canary (XDP)",
            Kind::Nftables => "nftables DNAT",
            Kind::Haproxy => "HAProxy tcp",
            Kind::NginxStream => "nginx stream",
        }
    }

    /// Where the client connects.
    pub fn target(self) -> SocketAddr {
        match self {
            Kind::Direct | Kind::EmptyPrograms => backend_addr(0),
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
    pub canaryd: PathBuf,
    pub canaryctl: PathBuf,
    pub kernel_bench: PathBuf,
}

impl Bins {
    pub fn all(&self) -> [&PathBuf; 3] {
        [&self.canaryd, &self.canaryctl, &self.kernel_bench]
    }
}

/// One path, set up and answering.
pub struct PathEnv {
    pub kind: Kind,
    /// Fields drop in order: processes first, then their files, then the
    /// namespaces they ran in.
    canaryd: Option<Canaryd>,
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
            Kind::EmptyPrograms => {
                let mut cmd = Command::new(&bins.kernel_bench);
                cmd.args(["--attach-floor", HOST_IF]);
                let log = env.dir.path().join("floor.log");
                let mut s = Service::start(
                    "kernel-bench --attach-floor",
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
            Kind::Canary => {
                let conf = env
                    .dir
                    .write("canary.toml", &canaryd_conf(env.dir.path()))?;
                env.canaryd = Some(Canaryd::start(&env.topo.host, &conf, env.dir.path(), bins)?);
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

    /// The canary path's daemon.
    pub fn canaryd(&self) -> Result<&Canaryd> {
        self.canaryd.as_ref().context("not the canary path")
    }

    /// Fails if a server, proxy or canaryd has died.
    pub fn check_running(&mut self) -> Result<()> {
        for s in &mut self.services {
            s.check_running()?;
        }
        if let Some(d) = &mut self.canaryd {
            d.service.check_running()?;
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

pub fn canaryd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[daemon]\n\
         interfaces = [\"{HOST_IF}\"]\n\
         socket = \"{d}/canary.sock\"\n\
         metrics_listen = \"127.0.0.1:9464\"\n\
         bpffs = \"{}\"\n\
         state_dir = \"{d}/state\"\n\
         log_level = \"info\"\n\
         \n\
         [[service]]\n\
         name = \"{SERVICE}\"\n\
         listen = \"{HOST_V4}:{VIP_PORT}\"\n\
         protocol = \"tcp\"\n\
         affinity = \"flow\"\n\
         stable = [\"{}\"]\n\
         canary = [\"{}\"]\n\
         weight = {CANARY_PERCENT}\n",
        bench_bpffs().display(),
        backend_addr(0),
        backend_addr(1),
    )
}

/// canaryd's pin directory for this bench run.
pub fn bench_bpffs() -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/canary-bench-{}", std::process::id()))
}

/// canaryd running in a host namespace, pins under `bench_bpffs()`.
pub struct Canaryd {
    pub service: Service,
    socket: PathBuf,
    canaryctl: PathBuf,
    pins: PinDir,
}

impl Canaryd {
    fn start(ns: &Netns, conf: &Path, dir: &Path, bins: &Bins) -> Result<Canaryd> {
        let mut cmd = Command::new(&bins.canaryd);
        cmd.arg("--config").arg(conf);
        let service = Service::start(
            "canaryd",
            ns,
            cmd,
            &dir.join("canaryd.log"),
            Duration::from_millis(100),
        )?;
        let mut d = Canaryd {
            service,
            socket: dir.join("canary.sock"),
            canaryctl: bins.canaryctl.clone(),
            pins: PinDir(bench_bpffs()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            d.service.check_running()?;
            if d.ctl(&["version"])?.status.success() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                bail!(
                    "canaryd did not answer within 30 s:\n{}",
                    d.service.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `canaryctl` command for this daemon (not run).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.canaryctl);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        self.ctl_command(args).output().context("running canaryctl")
    }

    /// XDP attach mode canaryd reports ("driver" or "generic").
    pub fn xdp_mode(&self) -> Result<String> {
        let out = self.ctl(&["--json", "status"])?;
        ensure!(out.status.success(), "canaryctl status failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["data"]["daemon"]["interfaces"][0]["xdp"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned())
    }

    /// New flows canaryd's data path sent to each version so far, and its
    /// rehashes.
    pub fn split(&self) -> Result<Split> {
        let out = self.ctl(&["--json", "status"])?;
        ensure!(out.status.success(), "canaryctl status failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let svc = &v["data"]["services"][0];
        let n = |version: &str, field: &str| svc[version][field].as_u64().unwrap_or_default();
        Ok(Split {
            stable: n("stable", "new_flows"),
            canary: n("canary", "new_flows"),
            rehashes: n("stable", "rehashes") + n("canary", "rehashes"),
        })
    }

    pub fn program_pin(&self, name: &str) -> PathBuf {
        self.pins
            .0
            .join(canary_common::PIN_LAYOUT)
            .join("programs")
            .join(name)
    }

    pub fn map_pin(&self, name: &str) -> PathBuf {
        self.pins
            .0
            .join(canary_common::PIN_LAYOUT)
            .join("maps")
            .join(name)
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

/// Removes canaryd's pin directory on drop, after the daemon has gone (it
/// is the last field of `Canaryd`); the attachments go with the veth.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
