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

use std::net::IpAddr;

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
