//! The fleet under test: N hosts, each a namespace with its own canaryd
//! directories and a stable and a canary backend on its own address, one
//! client namespace linked to every host, and one etcd in a namespace of
//! its own linked to every host (`net` has the picture). What the fleet
//! end-to-end suites do with it: write each host's config (with its
//! `[fleet]` table), start canaryd on a host, send requests to a host's
//! VIP from the client (optionally from the one address every host sees),
//! cut a host from etcd and heal it, stop, kill and restart etcd.
//!
//! ```ignore
//! let f = FleetUnderTest::new("fleet");
//! for i in 0..f.host_count() {
//!     f.write_config(i, &f.config(i, 0, Some(plan())));
//! }
//! let daemons: Vec<_> = (0..f.host_count()).map(|i| f.start(i, &[])).collect();
//! f.partition(1);
//! ```
//!
//! The backends speak HTTP: the data path judges a version on HTTP status
//! classes, resets and refusals, which is what a fleet rollout compares.
//! A caller with servers of its own (the demo's model servers) builds with
//! `caller_backends` and starts them on each host's `stable` and `canary`.

mod etcd;
mod net;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Output,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use canary_userspace::{
    Affinity, ServiceSpec,
    api::Client as ApiClient,
    config::{Config, FleetConfig},
    controller::plan::RolloutPlan,
};
use xtask::canaryd::{Binaries, Canaryd, DaemonDirs, canaryctl};

pub use etcd::{ETCD_PORT, ETCD_REQUEST, ETCD_START, Etcd};
pub use net::{
    FleetNet, HOST_ETCD_IF, HOST_IF, MAX_HOSTS, SHARED_CLIENT, client_v4, etcd_v4, host_etcd_v4,
    host_v4,
};

use crate::{
    HTTP_TIMEOUT,
    harness::{CANARY, SERVICE, STABLE, VIP_PORT},
    kit::tcp_service,
    servers::{Backend, Behaviour, Http, HttpAnswer, HttpClient},
};

/// Hosts in a fleet unless the builder says otherwise.
pub const DEFAULT_HOSTS: usize = 3;
/// The backends' ports on each host's address.
pub const STABLE_PORT: u16 = 8081;
pub const CANARY_PORT: u16 = 8082;

/// The `[fleet]` timing of every host unless a test changes it: short, so
/// that a lost host or leader is noticed within seconds.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
pub const GRACE: Duration = Duration::from_secs(6);
pub const PUBLISH: Duration = Duration::from_millis(500);

/// Makes fleet names unique within this process (the pid across them).
static FLEET_COUNTER: AtomicU32 = AtomicU32::new(0);

/// What one host's [stable, canary] backends do, by host index.
type BehaviourOf = Box<dyn Fn(usize) -> [Behaviour; 2]>;

/// How to build a `FleetUnderTest`; `FleetUnderTest::builder`.
pub struct Builder {
    tag: &'static str,
    hosts: usize,
    behaviour: BehaviourOf,
    affinity: Affinity,
    bins: Option<Binaries>,
}

impl Builder {
    /// How many hosts (default `DEFAULT_HOSTS`, at most `MAX_HOSTS`).
    pub fn hosts(mut self, n: usize) -> Builder {
        self.hosts = n;
        self
    }

    /// How host i's [stable, canary] backends answer, for every i; each
    /// host should get its own `Http` (its request count is its own), e.g.
    /// every canary failing one request in ten:
    /// `.behaviour(|_| [healthy(), Behaviour::Http(Http::new(10, Duration::ZERO))])`.
    /// Default: both `healthy()`. Only HTTP-speaking behaviours (`Http`,
    /// `ResetAfterRequest`, `NothingListening`): the fixture's traffic is
    /// HTTP.
    pub fn behaviour(mut self, of_host: impl Fn(usize) -> [Behaviour; 2] + 'static) -> Builder {
        self.behaviour = Box::new(of_host);
        self
    }

    /// The service's affinity on every host (default flow; `Client` for
    /// one version per client address across the fleet).
    pub fn affinity(mut self, affinity: Affinity) -> Builder {
        self.affinity = affinity;
        self
    }

    /// No backend on any host: nothing listens on the hosts' `stable` and
    /// `canary` addresses until the caller starts its own servers there
    /// (in `net.hosts[i]`), e.g. the demo's model servers.
    pub fn caller_backends(self) -> Builder {
        self.behaviour(|_| [Behaviour::NothingListening, Behaviour::NothingListening])
    }

    /// The canaryd and canaryctl to run (default: next to the running test
    /// executable, `Binaries::next_to_test`); the demo runs the release
    /// ones beside it.
    pub fn binaries(mut self, bins: Binaries) -> Builder {
        self.bins = Some(bins);
        self
    }

    /// Creates the namespaces, starts etcd and waits until every host
    /// reaches it, starts the backends, makes each host's directories.
    /// Panics (the test fails there) if any of it fails.
    #[track_caller]
    pub fn build(self) -> FleetUnderTest {
        self.try_build()
            .unwrap_or_else(|e| panic!("building the fleet: {e:#}"))
    }

    /// `build`, with an error instead of a panic (the demo reports it);
    /// whatever was made before the failure is removed.
    pub fn try_build(self) -> Result<FleetUnderTest> {
        let started = Instant::now();
        let net = FleetNet::new(self.hosts)?;
        let advertise = (0..self.hosts).map(etcd_v4).collect();
        let etcd = Etcd::start(net.etcd.clone(), advertise).context("starting etcd")?;
        let hosts = (0..self.hosts)
            .map(|i| Host::new(self.tag, i, &net, (self.behaviour)(i)))
            .collect::<Result<_>>()?;
        let bins = match self.bins {
            Some(bins) => bins,
            None => Binaries::next_to_test()?,
        };
        let n = FLEET_COUNTER.fetch_add(1, Ordering::Relaxed);
        let f = FleetUnderTest {
            hosts,
            bins,
            fleet_name: format!("{}-{}-{n}", self.tag, std::process::id()),
            affinity: self.affinity,
            etcd,
            net,
        };
        f.try_wait_for_etcd()?;
        eprintln!(
            "fleet kit: {} hosts, client, etcd up in {:?}",
            f.host_count(),
            started.elapsed()
        );
        Ok(f)
    }
}

/// A healthy HTTP backend: every answer 200, at once.
pub fn healthy() -> Behaviour {
    Behaviour::Http(Http::new(0, Duration::ZERO))
}

/// One host of the fleet: its VIP, backends and canaryd directories.
pub struct Host {
    /// Where the service "model" listens on this host: its address, port
    /// 80. Nothing listens there itself: it answers only through canary.
    pub vip: SocketAddr,
    pub stable: SocketAddr,
    pub canary: SocketAddr,
    pub dirs: DaemonDirs,
    socket: PathBuf,
    // Held for their lifetime: the backends serve until the fleet ends.
    _backends: [Backend; 2],
}

impl Host {
    fn new(tag: &str, i: usize, net: &FleetNet, behaviour: [Behaviour; 2]) -> Result<Host> {
        let at = |port| SocketAddr::new(host_v4(i).into(), port);
        let (stable, canary) = (at(STABLE_PORT), at(CANARY_PORT));
        let [stable_behaviour, canary_behaviour] = behaviour.map(speaks_http);
        let ns = &net.hosts[i];
        let backends = [
            Backend::spawn_with(ns, stable, STABLE, stable_behaviour)?,
            Backend::spawn_with(ns, canary, CANARY, canary_behaviour)?,
        ];
        let dirs = DaemonDirs::new(&format!("{tag}-host{i}"))?;
        Ok(Host {
            vip: at(VIP_PORT),
            stable,
            canary,
            socket: dirs.socket(),
            dirs,
            _backends: backends,
        })
    }
}

/// `behaviour`, if the fixture's HTTP clients can talk to it; a line or UDP
/// backend would only time them out, so that is the test's mistake.
#[track_caller]
fn speaks_http(behaviour: Behaviour) -> Behaviour {
    match behaviour {
        Behaviour::Line | Behaviour::UdpEcho => {
            panic!(
                "a fleet backend must speak HTTP (Http, ResetAfterRequest, NothingListening), got {behaviour:?}"
            )
        }
        b => b,
    }
}

/// A fleet's fixture; `builder` makes one. Nothing runs on a host until
/// `start`; everything (backends, directories, etcd, namespaces) goes on
/// drop, in that order.
pub struct FleetUnderTest {
    pub hosts: Vec<Host>,
    pub bins: Binaries,
    /// The `[fleet] name` of every host: this fixture's own.
    pub fleet_name: String,
    /// The service's affinity in `service` and `config`.
    pub affinity: Affinity,
    pub etcd: Etcd,
    // Dropped last: namespaces outlive the sockets and processes in them.
    pub net: FleetNet,
}

impl FleetUnderTest {
    /// `tag` names the fleet and the hosts' directories: letters, digits
    /// and '-' (the fleet's name is part of its etcd keys).
    pub fn builder(tag: &'static str) -> Builder {
        Builder {
            tag,
            hosts: DEFAULT_HOSTS,
            behaviour: Box::new(|_| [healthy(), healthy()]),
            affinity: Affinity::Flow,
            bins: None,
        }
    }

    /// `builder(tag).build()`: 3 hosts, healthy backends, flow affinity.
    pub fn new(tag: &'static str) -> FleetUnderTest {
        FleetUnderTest::builder(tag).build()
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Host i's VIP (`host_v4(i)`, port 80).
    pub fn vip(&self, i: usize) -> SocketAddr {
        self.hosts[i].vip
    }

    /// Where host i reaches etcd: `http://198.18.(200+i).1:2379`.
    pub fn etcd_endpoint(i: usize) -> String {
        format!("http://{}:{ETCD_PORT}", etcd_v4(i))
    }

    /// Host i's `[fleet]` table: its own etcd address, this fixture's
    /// fleet name, `host-i`, and the short timings `LEASE_TTL`, `GRACE`,
    /// `PUBLISH`. Fields are public: change them in the returned value.
    pub fn fleet_config(&self, i: usize) -> FleetConfig {
        FleetConfig {
            lease_ttl: LEASE_TTL,
            grace: GRACE,
            publish: PUBLISH,
            ..FleetConfig::new(
                vec![FleetUnderTest::etcd_endpoint(i)],
                &self.fleet_name,
                &format!("host-{i}"),
            )
        }
    }

    /// "model" on host i's VIP and backends, this fixture's affinity.
    pub fn service(&self, i: usize, weight_bp: u16) -> ServiceSpec {
        let h = &self.hosts[i];
        ServiceSpec {
            affinity: self.affinity,
            app_protocol: Default::default(),
            ..tcp_service(SERVICE, h.vip, h.stable, h.canary, weight_bp)
        }
    }

    /// Host i's config: canaryd on `HOST_IF`, "model" at `weight_bp`, its
    /// rollout `plan` if any, and `fleet_config(i)`. Change any of it in
    /// the returned value (`fleet: None` for a host on its own).
    pub fn config(&self, i: usize, weight_bp: u16, plan: Option<RolloutPlan>) -> Config {
        Config {
            daemon: self.hosts[i].dirs.daemon_config(HOST_IF),
            services: vec![self.service(i, weight_bp)],
            rollouts: plan
                .map(|p| [(SERVICE.to_owned(), p)].into())
                .unwrap_or_default(),
            fleet: Some(self.fleet_config(i)),
        }
    }

    pub fn write_config(&self, i: usize, config: &Config) {
        self.hosts[i].dirs.write_config(config).unwrap();
    }

    /// canaryd on host i's written config, in host i's namespace,
    /// answering on its socket; panics with its log otherwise.
    #[track_caller]
    pub fn start(&self, i: usize, extra: &[&str]) -> Canaryd {
        self.try_start(i, extra)
            .unwrap_or_else(|e| panic!("starting canaryd on host {i} {extra:?}: {e:#}"))
    }

    /// `start` that may fail (a start that must be refused).
    pub fn try_start(&self, i: usize, extra: &[&str]) -> Result<Canaryd> {
        Canaryd::spawn(
            &self.net.hosts[i],
            &self.bins,
            &self.hosts[i].dirs,
            extra,
            &[],
            None,
        )
    }

    /// canaryctl on host i's socket, daemon running or not.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Output {
        canaryctl(&self.bins, &self.hosts[i].socket, args).unwrap()
    }

    /// The library's typed client on host i's socket.
    pub fn client(&self, i: usize) -> ApiClient<'_> {
        ApiClient {
            socket: &self.hosts[i].socket,
        }
    }

    /// GET /metrics of host i's canaryd, from host i's namespace.
    pub fn metrics(&self, i: usize) -> Result<String> {
        let addr = self.hosts[i].dirs.daemon_config(HOST_IF).metrics_listen;
        xtask::http::get(&self.net.hosts[i], addr, "/metrics", HTTP_TIMEOUT)
    }

    /// A new connection from the client namespace to host i's VIP, from
    /// the client's address on that link.
    pub fn connect(&self, i: usize) -> Result<HttpClient> {
        HttpClient::connect(&self.net.client, self.vip(i))
    }

    /// `connect` from `source` (`SHARED_CLIENT`, the one address every
    /// host routes back, or the client's address on host i's link).
    pub fn connect_from(&self, i: usize, source: IpAddr) -> Result<HttpClient> {
        HttpClient::connect_from(&self.net.client, Some(source), self.vip(i))
    }

    /// One new connection to host i's VIP, one GET; the whole answer.
    pub fn get(&self, i: usize) -> Result<HttpAnswer> {
        self.connect(i)?.get()
    }

    /// `get` from `source`.
    pub fn get_from(&self, i: usize, source: IpAddr) -> Result<HttpAnswer> {
        self.connect_from(i, source)?.get()
    }

    /// One new connection to host i's VIP, one GET; the version that
    /// answered ("stable" or "canary"), whatever its status (`get` has it).
    pub fn request(&self, i: usize) -> Result<String> {
        Ok(self.get(i)?.version)
    }

    /// `request` from `source`.
    pub fn request_from(&self, i: usize, source: IpAddr) -> Result<String> {
        Ok(self.get_from(i, source)?.version)
    }

    /// GET /health of etcd from host i's namespace, through host i's link
    /// (each step bounded by `ETCD_REQUEST`): the body of a 200.
    pub fn etcd_health(&self, i: usize) -> Result<String> {
        let etcd = SocketAddr::new(etcd_v4(i).into(), ETCD_PORT);
        xtask::http::get(&self.net.hosts[i], etcd, "/health", ETCD_REQUEST)
    }

    /// Waits (bounded by `ETCD_START`) until every host gets a healthy
    /// answer from etcd; panics with etcd's log otherwise. After a
    /// `restart`, or a `heal` of every host.
    #[track_caller]
    pub fn wait_for_etcd(&self) {
        if let Err(e) = self.try_wait_for_etcd() {
            panic!("{e:#}");
        }
    }

    /// `wait_for_etcd`, with an error (holding etcd's log) instead of a
    /// panic.
    pub fn try_wait_for_etcd(&self) -> Result<()> {
        let deadline = Instant::now() + ETCD_START;
        for i in 0..self.host_count() {
            while !self.etcd_health(i).is_ok_and(|b| b.contains("true")) {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "etcd healthy from host {i}: not within {ETCD_START:?}\n{}",
                    self.etcd.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Cuts host i from etcd (its `etcd0` down): new connections to etcd
    /// fail at once, established ones go silent.
    #[track_caller]
    pub fn partition(&self, i: usize) {
        self.net.partition(i).unwrap();
    }

    /// Undoes `partition(i)`.
    #[track_caller]
    pub fn heal(&self, i: usize) {
        self.net.heal(i).unwrap();
    }
}
