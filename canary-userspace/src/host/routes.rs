//! Which interface the kernel sends packets for an address out of
//! (RTM_GETROUTE, as `ip route get`): where that address's packets come
//! in from, on a host whose routes are symmetric.

use std::{io, net::IpAddr};

use super::netlink;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage},
};

/// The index of the interface the route to `ip` leaves through; None when
/// the kernel has no route to it (or answers one without an interface).
pub fn interface_to(ip: IpAddr) -> io::Result<Option<u32>> {
    let mut route = RouteMessage::default();
    route.header.address_family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    route.header.destination_prefix_length = if ip.is_ipv4() { 32 } else { 128 };
    route
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    let answer = netlink::ask(RouteNetlinkMessage::GetRoute(route), |reply| match reply {
        RouteNetlinkMessage::NewRoute(r) => Some(r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })),
        _ => None,
    });
    match answer {
        Ok(oif) => Ok(oif),
        // No route (ENETUNREACH, EHOSTUNREACH): nothing comes in from there.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_routed_through_lo() {
        let lo = crate::host::interfaces::interface_index("lo").unwrap();
        assert_eq!(
            interface_to(IpAddr::from([127, 0, 0, 1])).unwrap(),
            Some(lo)
        );
    }
}
