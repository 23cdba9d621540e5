//! One end-to-end setup: a namespace topology, the data path attached to the
//! host's client-facing interface, a stable and a canary backend, and one
//! service "model" on the host address, port 80 (TCP, or UDP).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use canary_common::{
    VersionStats,
    hash::{flow_hash, is_canary, seed_from_name},
    signals::Signals,
};
use canary_userspace::{
    Affinity, Dataplane, Hook, LoadOptions, Protocol, ServiceSpec, model::service::addr_words,
    model::weight::Weight,
};
use xtask::topology::{
    BACKEND_V4, BACKEND_V6, BackendKind, CLIENT_IF, HOST_IF, HOST_V4, HOST_V6, Topology,
};

use crate::servers::{Backend, Behaviour, Client, HttpClient, UdpClient};

pub const SERVICE: &str = "model";
pub const STABLE: &str = "stable";
pub const CANARY: &str = "canary";
pub const VIP_PORT: u16 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub struct Harness {
    pub vip: SocketAddr,
    pub dp: Dataplane,
    pub backends: [Backend; 2],
    // Dropped last: the namespaces outlive the sockets in them.
    pub topo: Topology,
}

impl Harness {
    /// A TCP service with line backends (`Behaviour::Line`).
    pub fn new(
        kind: BackendKind,
        family: Family,
        affinity: Affinity,
        weight: Weight,
    ) -> Result<Harness> {
        Harness::with_backends(
            kind,
            family,
            affinity,
            weight,
            Protocol::Tcp,
            [Behaviour::Line, Behaviour::Line],
        )
    }

    /// A `protocol` service whose [stable, canary] backends behave as
    /// `behaviour` says (UDP services take `UdpEcho` or `NothingListening`).
    pub fn with_backends(
        kind: BackendKind,
        family: Family,
        affinity: Affinity,
        weight: Weight,
        protocol: Protocol,
        behaviour: [Behaviour; 2],
    ) -> Result<Harness> {
        Harness::with_options(
            kind,
            family,
            affinity,
            weight,
            protocol,
            behaviour,
            &LoadOptions::default(),
        )
    }

    /// `with_backends`, the data path loaded with `opts` (e.g. a small
    /// flow table).
    pub fn with_options(
        kind: BackendKind,
        family: Family,
        affinity: Affinity,
        weight: Weight,
        protocol: Protocol,
        behaviour: [Behaviour; 2],
        opts: &LoadOptions,
    ) -> Result<Harness> {
        Harness::with_hook(
            kind,
            family,
            affinity,
            weight,
            protocol,
            behaviour,
            opts,
            Hook::Xdp,
        )
    }

    /// `with_options`, ingress attached to the host interface at `hook`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each scenario names every choice; a builder would hide which ones a test makes"
    )]
    pub fn with_hook(
        kind: BackendKind,
        family: Family,
        affinity: Affinity,
        weight: Weight,
        protocol: Protocol,
        behaviour: [Behaviour; 2],
        opts: &LoadOptions,
        hook: Hook,
    ) -> Result<Harness> {
        let [stable_behaviour, canary_behaviour] = behaviour;
        let topo = Topology::new(kind)?;
        let host_ip: IpAddr = match family {
            Family::V4 => HOST_V4.into(),
            Family::V6 => HOST_V6.into(),
        };
        let vip = SocketAddr::new(host_ip, VIP_PORT);
        // Local-process backends: other ports on the host address. Namespace
        // backends: port 8080 on each backend namespace's address.
        let backend_addr = |i: usize| -> SocketAddr {
            match (kind, family) {
                (BackendKind::LocalProcess, _) => SocketAddr::new(host_ip, 8081 + i as u16),
                (BackendKind::Namespace, Family::V4) => SocketAddr::new(BACKEND_V4[i].into(), 8080),
                (BackendKind::Namespace, Family::V6) => SocketAddr::new(BACKEND_V6[i].into(), 8080),
            }
        };
        let backend_ns = |i: usize| match kind {
            BackendKind::LocalProcess => &topo.host,
            BackendKind::Namespace => &topo.backends[i],
        };
        let backends = [
            Backend::spawn_with(backend_ns(0), backend_addr(0), STABLE, stable_behaviour)?,
            Backend::spawn_with(backend_ns(1), backend_addr(1), CANARY, canary_behaviour)?,
        ];
        let mut dp = Dataplane::load(opts).context("loading the data path")?;
        topo.host
            .enter(|| dp.attach(HOST_IF, hook))?
            .context("attaching to the host interface")?;
        dp.upsert_service(&ServiceSpec {
            name: SERVICE.into(),
            vip,
            protocol,
            affinity,
            app_protocol: Default::default(),
            stable: vec![backend_addr(0)],
            canary: vec![backend_addr(1)],
            weight,
        })?;
        Ok(Harness {
            vip,
            dp,
            backends,
            topo,
        })
    }

    /// Whether the shared hash (the code the kernel runs) sends a new TCP
    /// flow from `client` to the canary at `weight`, flow affinity. Tests
    /// check each connection against it: exact, where a share band is only
    /// a statistical check (the kernel picks ephemeral ports at random).
    pub fn hash_says_canary(&self, client: SocketAddr, weight: Weight) -> bool {
        let (c, _) = addr_words(client.ip());
        let (v, _) = addr_words(self.vip.ip());
        let h = flow_hash(
            seed_from_name(SERVICE.as_bytes()),
            &c,
            &v,
            client.port().to_be(),
            self.vip.port().to_be(),
            Protocol::Tcp.number(),
        );
        is_canary(h, weight.bp())
    }

    /// After `connections` connections, all closed, of which the clients
    /// saw `canary` answered by the canary: the kernel's counters agree
    /// with the clients, every connection released its flow entry (waited
    /// for up to 3 s), none was decided twice, and the canary backend
    /// accepted exactly its share. Panics naming `what` otherwise.
    pub fn assert_connections_counted(&self, what: &str, connections: u64, canary: u64) {
        let released = crate::eventually(std::time::Duration::from_secs(3), || {
            let s = self.stats().unwrap();
            s[0].closed_flows + s[1].closed_flows == connections
        });
        let s = self.stats().unwrap();
        assert_eq!(s[1].new_flows, canary, "{what}: {s:?}");
        assert_eq!(s[0].new_flows, connections - canary, "{what}: {s:?}");
        assert!(
            released,
            "{what}: not every flow was released after close: {s:?}"
        );
        assert_eq!(s[0].rehashes + s[1].rehashes, 0, "{what}: {s:?}");
        assert_eq!(self.backends[1].accepted(), canary, "{what}");
    }

    /// A client connection to the VIP from the client namespace.
    pub fn connect(&self, source: Option<IpAddr>) -> Result<Client> {
        Client::connect(&self.topo.client, source, self.vip)
    }

    /// An HTTP/1.1 client connection to the VIP from the client namespace.
    pub fn connect_http(&self) -> Result<HttpClient> {
        HttpClient::connect(&self.topo.client, self.vip)
    }

    /// A UDP client socket connected to the VIP from the client namespace.
    pub fn connect_udp(&self) -> Result<UdpClient> {
        UdpClient::connect(&self.topo.client, self.vip)
    }

    pub fn set_weight(&mut self, weight: Weight) -> Result<()> {
        Ok(self.dp.set_weight(SERVICE, weight)?)
    }

    /// What to print when a scenario fails: the data path's verdict and
    /// per-version counters, and the host interface's own drop counters.
    pub fn diagnostics(&self) -> String {
        let verdicts = self
            .dp
            .verdicts()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|e| e.to_string());
        let stats = self
            .stats()
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|e| e.to_string());
        let signals = self
            .signals()
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|e| e.to_string());
        let link = self
            .topo
            .host
            .ip(&["-s", "link", "show", HOST_IF])
            .unwrap_or_else(|e| e.to_string());
        let client_link = self
            .topo
            .client
            .ip(&["-s", "link", "show", CLIENT_IF])
            .unwrap_or_else(|e| e.to_string());
        // Retransmissions and timeouts tell lost packets from a slow backend.
        let tcp = |ns: &xtask::topology::Netns| {
            ns.exec(&[
                "nstat",
                "-az",
                "TcpRetransSegs",
                "TcpExtTCPTimeouts",
                "TcpExtTCPSynRetrans",
            ])
            .unwrap_or_else(|e| e.to_string())
        };
        let accepted = self
            .backends
            .iter()
            .map(|b| b.accepted())
            .collect::<Vec<_>>();
        format!(
            "verdicts: {verdicts}\nstats: {stats}\nsignals: {signals}\nbackends (accepted, serving) [stable, canary]: {accepted:?}\n\
             host {HOST_IF}:\n{link}\nclient {CLIENT_IF}:\n{client_link}\n\
             client tcp:\n{}\nhost tcp:\n{}",
            tcp(&self.topo.client),
            tcp(&self.topo.host)
        )
    }

    /// [stable, canary] counters of the service.
    pub fn stats(&self) -> Result<[VersionStats; 2]> {
        Ok(self.dp.stats(SERVICE)?)
    }

    /// [stable, canary] health signals of the service.
    pub fn signals(&self) -> Result<[Signals; 2]> {
        Ok(self.dp.signals(SERVICE)?)
    }
}
