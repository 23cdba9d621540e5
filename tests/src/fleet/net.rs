//! The fleet's namespaces and links: a client, N hosts and etcd, all in
//! 198.18.0.0/15, removed on drop (each namespace is a `Netns` guard).
//!
//! ```text
//!  client ns                        host i ns                      etcd ns
//!  host<i> 198.18.(10+i).2/24 ─── eth0  198.18.(10+i).1/24
//!  lo      198.18.50.1/32            etcd0 198.18.(200+i).2/24 ─── host<i> 198.18.(200+i).1/24
//! ```
//!
//! Each host is an end host: its backends are local processes on its own
//! address (as `BackendKind::LocalProcess`), and it does not forward, so a
//! host cut from etcd cannot reach it through a neighbour.

use std::{net::Ipv4Addr, sync::Arc};

use anyhow::{Result, ensure};
use xtask::topology::{Netns, veth};

/// Host side of the client link: where canaryd attaches.
pub const HOST_IF: &str = "eth0";
/// Host side of the link to etcd: what `partition` sets down.
pub const HOST_ETCD_IF: &str = "etcd0";
/// The client address every host routes back (`request_from`): one user
/// seen by every host, for client affinity across the fleet.
pub const SHARED_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 1);
const SHARED_CLIENT_NET: &str = "198.18.50.0/24";
/// Third octets: host i's client link is 198.18.(10+i).0/24, its etcd
/// link 198.18.(200+i).0/24; the first must stay below the shared client's
/// 50, the second below 256.
const CLIENT_LINK_BASE: u8 = 10;
const ETCD_LINK_BASE: u8 = 200;
pub const MAX_HOSTS: usize = (50 - CLIENT_LINK_BASE) as usize;

/// Host i's address on `HOST_IF`: its VIP and its backends' address.
pub fn host_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, link(CLIENT_LINK_BASE, i), 1)
}

/// The client's address on its link to host i.
pub fn client_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, link(CLIENT_LINK_BASE, i), 2)
}

/// Host i's address on `HOST_ETCD_IF`.
pub fn host_etcd_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, link(ETCD_LINK_BASE, i), 2)
}

/// etcd's address on its link to host i: host i's endpoint.
pub fn etcd_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, link(ETCD_LINK_BASE, i), 1)
}

fn link(base: u8, i: usize) -> u8 {
    assert!(i < MAX_HOSTS, "host {i}: the fleet has at most {MAX_HOSTS}");
    base + i as u8
}

/// The interface named for host i in the client and etcd namespaces.
fn peer_if(i: usize) -> String {
    format!("host{i}")
}

/// The namespaces; `new` links them.
pub struct FleetNet {
    pub client: Netns,
    pub hosts: Vec<Netns>,
    /// Shared with the `Etcd` guard, which starts its process in it.
    pub etcd: Arc<Netns>,
}

impl FleetNet {
    /// `hosts` (1 to `MAX_HOSTS`) host namespaces linked to one client and
    /// one etcd namespace. A failure part way deletes what was made.
    pub fn new(hosts: usize) -> Result<FleetNet> {
        ensure!(
            (1..=MAX_HOSTS).contains(&hosts),
            "a fleet of {hosts} hosts: 1 to {MAX_HOSTS} fit in the address plan"
        );
        let client = Netns::new("fl-client")?;
        let etcd = Netns::new("fl-etcd")?;
        client.ip(&[
            "address",
            "add",
            &format!("{SHARED_CLIENT}/32"),
            "dev",
            "lo",
        ])?;
        let hosts = (0..hosts)
            .map(|i| host(i, &client, &etcd))
            .collect::<Result<Vec<_>>>()?;
        Ok(FleetNet {
            client,
            hosts,
            etcd: Arc::new(etcd),
        })
    }

    /// Host i's link to etcd down: new connections fail at once (no
    /// route), established ones hear nothing, as behind a cut cable.
    pub fn partition(&self, i: usize) -> Result<()> {
        self.hosts[i]
            .ip(&["link", "set", HOST_ETCD_IF, "down"])
            .map(drop)
    }

    /// Host i's link to etcd up again, with its route. A connection begun
    /// right after may wait one SYN retransmit (1 s): seen once in 18 heals
    /// of `fleet_kit::every_host...`.
    pub fn heal(&self, i: usize) -> Result<()> {
        self.hosts[i]
            .ip(&["link", "set", HOST_ETCD_IF, "up"])
            .map(drop)
    }

    /// `n` client addresses (1 to 254) of 198.18.50.0/24, `SHARED_CLIENT`
    /// first, each on the client's `lo`: many users that every host routes
    /// back (the demo's labelling clients).
    pub fn shared_clients(&self, n: u8) -> Result<Vec<Ipv4Addr>> {
        ensure!(
            (1..=254).contains(&n),
            "{n} shared client addresses: 1 to 254 fit in {SHARED_CLIENT_NET}"
        );
        let [a, b, c, first] = SHARED_CLIENT.octets();
        let addrs: Vec<Ipv4Addr> = (0..n).map(|k| Ipv4Addr::new(a, b, c, first + k)).collect();
        // The first is there from `new`; `replace` would not mind either way.
        let batch: String = addrs[1..]
            .iter()
            .map(|addr| format!("address replace {addr}/32 dev lo\n"))
            .collect();
        if !batch.is_empty() {
            self.client.ip_batch(&batch)?;
        }
        Ok(addrs)
    }

    /// Every namespace's name (to check they are gone after drop).
    pub fn names(&self) -> Vec<String> {
        [&self.client, &*self.etcd]
            .into_iter()
            .chain(&self.hosts)
            .map(|ns| ns.name().to_owned())
            .collect()
    }
}

/// Host i's namespace, linked to the client and to etcd.
fn host(i: usize, client: &Netns, etcd: &Netns) -> Result<Netns> {
    let host = Netns::new(&format!("fl-host{i}"))?;
    // Before any interface exists (new ones copy `default`): the data path
    // rewrites the VIP's packets, which strict reverse-path filtering
    // could take for spoofed ones (as in `Topology::new`).
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
    ] {
        host.sysctl(key, "0")?;
    }
    veth(client, &peer_if(i), &host, HOST_IF)?;
    veth(&host, HOST_ETCD_IF, etcd, &peer_if(i))?;
    host.ip_batch(&format!(
        "address add {}/24 dev {HOST_IF}\n\
         address add {}/24 dev {HOST_ETCD_IF}\n\
         route add {SHARED_CLIENT_NET} via {} dev {HOST_IF}\n",
        host_v4(i),
        host_etcd_v4(i),
        client_v4(i),
    ))?;
    client.ip(&[
        "address",
        "add",
        &format!("{}/24", client_v4(i)),
        "dev",
        &peer_if(i),
    ])?;
    etcd.ip(&[
        "address",
        "add",
        &format!("{}/24", etcd_v4(i)),
        "dev",
        &peer_if(i),
    ])?;
    Ok(host)
}
