//! A service as userspace describes it, and its conversion to map records.

use std::net::{IpAddr, SocketAddr};

use canary_common::{Addr, Backend, Endpoint, FAMILY_IPV4, FAMILY_IPV6, FlowKey, MAX_BACKENDS};

use crate::error::{Error, Result};
pub use crate::model::kinds::{Affinity, AppProtocol, Protocol};
use crate::model::weight::Weight;

/// What the data path needs to know of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub vip: SocketAddr,
    pub protocol: Protocol,
    pub affinity: Affinity,
    /// What the data path reads of the payload.
    pub app_protocol: AppProtocol,
    pub stable: Vec<SocketAddr>,
    pub canary: Vec<SocketAddr>,
    /// Share of new flows (or clients) for the canary.
    pub weight: Weight,
}

impl ServiceSpec {
    /// Checks what the data path relies on: backend counts, one address
    /// family throughout, nonzero ports (a `Weight` is always in range).
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::InvalidService {
                service: self.name.clone(),
                what,
            })
        };
        for (set, backends) in [("stable", &self.stable), ("canary", &self.canary)] {
            if backends.is_empty() || backends.len() > MAX_BACKENDS as usize {
                return bad(format!(
                    "{set} has {} backends; 1..={MAX_BACKENDS} are allowed",
                    backends.len()
                ));
            }
            for b in backends {
                if b.is_ipv4() != self.vip.is_ipv4() {
                    return bad(format!(
                        "{set} backend {b} is not the same address family as {}",
                        self.vip
                    ));
                }
                if b.port() == 0 {
                    return bad(format!("{set} backend {b} has port 0"));
                }
            }
        }
        if self.vip.port() == 0 {
            return bad(format!("listen address {} has port 0", self.vip));
        }
        Ok(())
    }

    pub fn vip_endpoint(&self) -> Endpoint {
        endpoint(self.vip, self.protocol.number())
    }

    /// The flow table key of `client`'s flow to this service.
    pub fn flow_key(&self, client: SocketAddr) -> FlowKey {
        let (client_addr, family) = addr_words(client.ip());
        let vip = self.vip_endpoint();
        FlowKey {
            client: client_addr,
            vip: vip.addr,
            client_port: client.port().to_be(),
            vip_port: vip.port,
            proto: vip.proto,
            family,
            _pad: [0; 2],
        }
    }
}

/// An address as the data path stores it: network byte order in memory,
/// IPv4 in the first word.
pub fn addr_words(ip: IpAddr) -> (Addr, u8) {
    match ip {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], FAMILY_IPV4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_IPV6)
        }
    }
}

pub fn endpoint(sa: SocketAddr, proto: u8) -> Endpoint {
    let (addr, family) = addr_words(sa.ip());
    Endpoint {
        addr,
        port: sa.port().to_be(),
        proto,
        family,
    }
}

/// An address as the data path stores it (`addr_words`), back.
pub fn ip_of(a: Addr, family: u8) -> IpAddr {
    if family == FAMILY_IPV6 {
        let mut o = [0u8; 16];
        for (i, w) in a.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    } else {
        IpAddr::from(a[0].to_ne_bytes())
    }
}

/// `198.18.0.1:80/tcp`: a map key as an operator reads it.
pub fn endpoint_text(e: &Endpoint) -> String {
    let ip = ip_of(e.addr, e.family);
    let proto = match e.proto {
        p if p == Protocol::Tcp.number() => "tcp".to_owned(),
        p if p == Protocol::Udp.number() => "udp".to_owned(),
        p => format!("proto {p}"),
    };
    format!("{}/{proto}", SocketAddr::new(ip, u16::from_be(e.port)))
}

pub fn backend(sa: SocketAddr) -> Backend {
    Backend {
        addr: addr_words(sa.ip()).0,
        port: sa.port().to_be(),
        _pad: [0; 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_key_reads_back_as_the_address_it_was_made_from() {
        use canary_common::{PROTO_TCP, PROTO_UDP};
        for (sa, proto, want) in [
            ("198.18.0.1:80", PROTO_TCP, "198.18.0.1:80/tcp"),
            ("[2001:db8::1]:8443", PROTO_UDP, "[2001:db8::1]:8443/udp"),
        ] {
            let e = endpoint(sa.parse().unwrap(), proto);
            assert_eq!(endpoint_text(&e), want);
        }
    }
}
