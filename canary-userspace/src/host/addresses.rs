//! This host's addresses, per interface, from getifaddrs(3) (in this
//! thread's network namespace).

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CStr,
    io,
    net::IpAddr,
};

/// One interface's addresses, and whether it is a loopback.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interface {
    pub addresses: BTreeSet<IpAddr>,
    pub loopback: bool,
}

/// Every address of every interface, by interface name. An address with a
/// label (`ip addr add ... label eth0:vip`, as keepalived writes them) is
/// listed under its interface, `eth0`, not under the label.
pub fn by_interface() -> io::Result<BTreeMap<String, Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*at };
        if let Some(ip) = address_of(ifa) {
            // SAFETY: ifa_name is a NUL-terminated string of the same node.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
            // Labels are `<interface>:<label>`; interface names have no ':'.
            let interface = name.split(':').next().unwrap_or_default().to_owned();
            let entry = out.entry(interface).or_default();
            entry.addresses.insert(ip);
            entry.loopback |= ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Every address of every interface of this host.
pub fn local() -> io::Result<BTreeSet<IpAddr>> {
    Ok(by_interface()?
        .into_values()
        .flat_map(|i| i.addresses)
        .collect())
}

/// The IPv4 or IPv6 address of one getifaddrs node; None for others.
fn address_of(ifa: &libc::ifaddrs) -> Option<IpAddr> {
    if ifa.ifa_addr.is_null() {
        return None;
    }
    // SAFETY: ifa_addr points to a sockaddr of the family it names.
    let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
    if family == libc::AF_INET {
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        Some(IpAddr::from(
            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
        ))
    } else if family == libc::AF_INET6 {
        // SAFETY: an AF_INET6 address is a sockaddr_in6.
        let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        Some(IpAddr::from(sin6.sin6_addr.s6_addr))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_on_lo() {
        let local = local().unwrap();
        assert!(local.contains(&IpAddr::from([127, 0, 0, 1])), "{local:?}");
        let by = by_interface().unwrap();
        assert!(
            by["lo"].addresses.contains(&IpAddr::from([127, 0, 0, 1])),
            "{by:?}"
        );
        assert!(by["lo"].loopback, "{by:?}");
        assert!(by.values().filter(|i| i.loopback).count() == 1, "{by:?}");
    }
}
