//! "IP:port" addresses: parsing with a diagnosis of what is wrong.

use std::net::{IpAddr, SocketAddr};

const FORM: &str = r#"write IP:port, e.g. "198.18.0.1:80" or "[2001:db8::1]:80""#;

/// Parses "IP:port". Host names are not accepted: the data path matches
/// addresses, and a name resolved once at load would silently go stale.
pub(crate) fn parse(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not an address: {}; {FORM}", diagnose(text)))
}

/// Why `text` is not "IP:port", as precisely as can be told.
fn diagnose(text: &str) -> String {
    if text.trim() != text {
        return "it has leading or trailing spaces".to_owned();
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(_) => "the port is missing".to_owned(),
            IpAddr::V6(_) => "the port is missing (an IPv6 address goes in brackets)".to_owned(),
        };
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return "the port is missing".to_owned();
    };
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match bracketed {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    if !host_ok {
        return match bracketed {
            Some(v6) => format!("{v6:?} is not an IPv6 address"),
            None if host.contains(':') => "an IPv6 address goes in brackets".to_owned(),
            None if host.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                format!("{host:?} is not an IPv4 address")
            }
            None => format!("{host:?} is not an IP address (host names are not resolved)"),
        };
    }
    if port.parse::<u16>().is_err() {
        return format!("port {port:?} is not a number from 1 to 65535");
    }
    "the syntax is not IP:port".to_owned()
}

/// Checks that `addr` can carry traffic: a real host and a real port.
pub(crate) fn check_unicast(addr: SocketAddr) -> Result<(), String> {
    let ip = addr.ip();
    if addr.port() == 0 {
        return Err(format!(
            "{addr} has port 0; a port from 1 to 65535 is required"
        ));
    }
    if ip.is_unspecified() {
        return Err(format!(
            "{addr} has the unspecified address {ip}; give a host address"
        ));
    }
    if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(format!("{addr} is not a unicast address"));
    }
    if let SocketAddr::V6(v6) = addr {
        // The data path keys services and backends by address and port
        // only: a scope id would make two entries that the checks here
        // see as different and the kernel as one.
        if v6.scope_id() != 0 {
            return Err(format!(
                "{addr} has a scope id (%{}); the data path matches addresses without one: write [{}]:{}",
                v6.scope_id(),
                v6.ip(),
                v6.port()
            ));
        }
        // An IPv4 client never sends a packet to ::ffff:a.b.c.d: the data
        // path sees it as IPv4, so such a service would never match.
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            return Err(format!(
                "{addr} is an IPv4-mapped IPv6 address; IPv4 traffic arrives as IPv4: write {v4}:{}",
                v6.port()
            ));
        }
    }
    Ok(())
}
