//! Config values that are valid but probably not meant: reported as
//! warnings (by `canaryd --check`, at start, on reload and in status), not
//! errors, because each can be right.
//!
//! - A VIP that is not an address of this host: nobody answers ARP or
//!   neighbour solicitations for it, so clients on the link cannot reach
//!   it. Not an error: a VIP that keepalived (VRRP) moves between hosts is
//!   on this host only while it is the active one, and a standby must
//!   start, check and reload the same config. canaryd serves it as soon as
//!   the address is added; status says while it is not.
//! - A weight above 0 and below 1 %: `0.05` is easily typed for 5 %.

use std::{collections::BTreeSet, io, net::IpAddr};

use super::{Config, ConfigError, low_weight_hint};

/// The warnings of a valid `config` read from `file`; `is_local` says
/// whether an address is one of this host's (tests pass their own).
pub fn warnings(
    config: &Config,
    file: &str,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Vec<ConfigError> {
    let mut out = vec![];
    for (i, s) in config.services.iter().enumerate() {
        let field = |key: &str| format!("service[{i}].{key}");
        if !is_local(s.vip.ip()) {
            out.push(ConfigError {
                file: file.to_owned(),
                field: field("listen"),
                message: vip_not_local(s.vip.ip()),
            });
        }
        if let Some(hint) = low_weight_hint(s.weight) {
            out.push(ConfigError {
                file: file.to_owned(),
                field: field("weight"),
                message: hint,
            });
        }
    }
    out
}

/// What status and the warnings say about a VIP that is not local.
pub fn vip_not_local(ip: IpAddr) -> String {
    format!(
        "{ip} is not an address of this host: clients cannot reach it until it is added \
         (e.g. `ip addr add {ip}/32 dev lo`, or by keepalived); canaryd serves it once it is"
    )
}

/// Every address of every interface of this host (in this thread's network
/// namespace), from getifaddrs(3).
pub fn local_addresses() -> io::Result<BTreeSet<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = BTreeSet::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*at };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.insert(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.insert(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local() {
        let local = local_addresses().unwrap();
        assert!(local.contains(&IpAddr::from([127, 0, 0, 1])), "{local:?}");
    }
}
