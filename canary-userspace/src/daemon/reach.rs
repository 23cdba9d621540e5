//! Where each service's clients come in, and whether a set of interfaces
//! still receives them: the check before canaryd leaves an interface (a
//! start whose interfaces drop one the pins had, a reload that would), and
//! status's flag for a service none of whose clients' interfaces is
//! attached.
//!
//! XDP and tc see only the packets of the interface they are attached to.
//! Started with `--interface lo` on a host whose clients come in on eth0,
//! canaryd would take its programs off eth0 and put them on lo, and the
//! VIP's clients would get connection refused until it is started again
//! with the right interface. What tells where clients come in:
//! - the interface that holds the VIP's address (other than a loopback:
//!   a VIP on lo is reached through whatever interface routes to it);
//! - the clients of established flows: the interface the kernel routes
//!   each one through (RTM_GETROUTE), which is where its packets arrive
//!   on a host with symmetric routes.
//!
//! A service without established flows whose VIP is on lo gives no hint;
//! the check then has nothing to go on and lets the move happen.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::{
    host::{addresses, interfaces, routes},
    kernel::dataplane::Dataplane,
    model::service::{ServiceSpec, endpoint},
};

/// Flow-table entries read to find clients: a sample, not the whole table
/// (a million entries read one syscall each would hold a start for
/// seconds).
const MAX_FLOW_ENTRIES: usize = 65_536;
/// Distinct clients whose route is asked for, over all services.
const MAX_ROUTE_LOOKUPS: usize = 4_096;

/// The flag that moves the data path anyway.
pub const OVERRIDE_FLAG: &str = "--move-interfaces";

/// Where one service's clients come in.
#[derive(Clone, Debug, PartialEq)]
pub struct Paths {
    pub vip: IpAddr,
    /// Interfaces other than loopbacks that hold the VIP's address.
    pub vip_on: BTreeSet<String>,
    /// Interfaces the clients of established flows are routed through:
    /// how many distinct clients, and one of them.
    pub clients_via: BTreeMap<String, (usize, IpAddr)>,
}

impl Paths {
    /// Every interface this service's clients are known to come in on.
    pub fn interfaces(&self) -> BTreeSet<&str> {
        self.vip_on
            .iter()
            .chain(self.clients_via.keys())
            .map(String::as_str)
            .collect()
    }
}

/// Per service name.
pub type ClientPaths = BTreeMap<String, Paths>;

/// What the host and the flow table say about `services`' clients now.
/// Lookups that fail are left out (logged at debug): the check is a
/// safety net, and a start must not fail because a route could not be
/// asked for.
pub fn gather(dp: &Dataplane, services: &[ServiceSpec]) -> ClientPaths {
    let by_interface = addresses::by_interface().unwrap_or_else(|e| {
        log::debug!("interface addresses: {e}");
        Default::default()
    });
    let mut paths: ClientPaths = services
        .iter()
        .map(|s| {
            let vip_on = by_interface
                .iter()
                .filter(|(_, i)| i.addresses.contains(&s.vip.ip()) && !i.loopback)
                .map(|(name, _)| name.clone())
                .collect();
            let p = Paths {
                vip: s.vip.ip(),
                vip_on,
                clients_via: BTreeMap::new(),
            };
            (s.name.clone(), p)
        })
        .collect();
    let names_by_endpoint: Vec<_> = services
        .iter()
        .map(|s| (endpoint(s.vip, s.protocol.number()), s.name.as_str()))
        .collect();
    let mut routed: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    let mut clients: Vec<_> = dp.flow_clients(MAX_FLOW_ENTRIES).into_iter().collect();
    clients.sort_by_key(|(_, client)| *client);
    for (service, client) in clients {
        let Some((_, name)) = names_by_endpoint.iter().find(|(e, _)| *e == service) else {
            continue;
        };
        if !routed.contains_key(&client) {
            if routed.len() >= MAX_ROUTE_LOOKUPS {
                continue;
            }
            routed.insert(client, route_interface(client));
        }
        let Some(Some(via)) = routed.get(&client) else {
            continue;
        };
        if let Some(p) = paths.get_mut(*name) {
            p.clients_via.entry(via.clone()).or_insert((0, client)).0 += 1;
        }
    }
    paths
}

/// The name of the interface the kernel routes `client` through.
fn route_interface(client: IpAddr) -> Option<String> {
    match routes::interface_to(client) {
        Ok(Some(index)) => interfaces::interface_name(index),
        Ok(None) => None,
        Err(e) => {
            log::debug!("route to {client}: {e}");
            None
        }
    }
}

/// Interfaces a change would leave, and why clients come in on them.
#[derive(Clone, Debug, PartialEq)]
pub struct Cut {
    pub left: Vec<String>,
    pub reasons: Vec<String>,
}

impl Cut {
    /// The refusal: what, why, and the flag that overrides.
    pub fn refusal(&self, staying: &[String]) -> String {
        format!(
            "refusing to move the data path off {}: {}; canary's programs on {} would not see those clients' packets, \
             and they would get connection refused. Check the interfaces (--interface, daemon.interfaces), \
             or start with {OVERRIDE_FLAG} to move anyway",
            self.left.join(", "),
            self.reasons.join("; "),
            if staying.is_empty() {
                "no interface".to_owned()
            } else {
                staying.join(", ")
            },
        )
    }

    /// What the override did, for the log.
    pub fn moved(&self) -> String {
        format!(
            "{OVERRIDE_FLAG}: moving the data path off {} as asked, although {}; \
             those clients get connection refused until canaryd runs on {} again",
            self.left.join(", "),
            self.reasons.join("; "),
            self.left.join(", "),
        )
    }
}

/// What leaving the interfaces in `leaving` that are not in `staying`
/// would cut off; None when nothing says it would cut anyone off.
pub fn left_behind(
    paths: &ClientPaths,
    leaving: &BTreeSet<String>,
    staying: &[String],
) -> Option<Cut> {
    let left: Vec<String> = leaving
        .iter()
        .filter(|l| !staying.contains(l))
        .cloned()
        .collect();
    let mut reasons = vec![];
    for (service, p) in paths {
        for name in p.vip_on.iter().filter(|n| left.contains(n)) {
            reasons.push(format!(
                "service {service}'s VIP {} is an address of {name}",
                p.vip
            ));
        }
        for (name, (clients, example)) in p.clients_via.iter().filter(|(n, _)| left.contains(n)) {
            reasons.push(format!(
                "{clients} client(s) of service {service} with established flows (e.g. {example}) are routed through {name}"
            ));
        }
    }
    (!reasons.is_empty()).then_some(Cut { left, reasons })
}

/// Status's flag for a service whose clients are known to come in on
/// interfaces none of which is attached; None when one is, or when
/// nothing is known.
pub fn unreached(paths: &Paths, attached: &BTreeSet<String>) -> Option<String> {
    let known = paths.interfaces();
    if known.is_empty() || known.iter().any(|k| attached.contains(*k)) {
        return None;
    }
    let known: Vec<_> = known.into_iter().collect();
    Some(format!(
        "none of the interfaces its clients come in on ({}) is attached; canary does not see their packets",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(vip_on: &[&str], via: &[(&str, usize)]) -> ClientPaths {
        let vip = IpAddr::from([198, 18, 0, 10]);
        let p = Paths {
            vip,
            vip_on: vip_on.iter().map(|s| s.to_string()).collect(),
            clients_via: via
                .iter()
                .map(|(n, c)| (n.to_string(), (*c, IpAddr::from([198, 18, 1, 2]))))
                .collect(),
        };
        [("model".to_owned(), p)].into()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leaving_the_vips_interface_is_refused_with_what_and_how() {
        let cut = left_behind(&paths(&["eth0"], &[]), &set(&["eth0"]), &list(&["lo"])).unwrap();
        assert_eq!(
            cut.refusal(&list(&["lo"])),
            "refusing to move the data path off eth0: service model's VIP 198.18.0.10 is an address of eth0; \
             canary's programs on lo would not see those clients' packets, and they would get connection refused. \
             Check the interfaces (--interface, daemon.interfaces), or start with --move-interfaces to move anyway"
        );
        assert_eq!(
            cut.moved(),
            "--move-interfaces: moving the data path off eth0 as asked, although service model's VIP 198.18.0.10 \
             is an address of eth0; those clients get connection refused until canaryd runs on eth0 again"
        );
    }

    #[test]
    fn leaving_the_interface_established_clients_come_in_on_is_refused() {
        let why = left_behind(
            &paths(&[], &[("eth0", 3)]),
            &set(&["eth0"]),
            &list(&["eth1"]),
        )
        .unwrap()
        .refusal(&list(&["eth1"]));
        assert!(
            why.contains("3 client(s) of service model with established flows (e.g. 198.18.1.2) are routed through eth0"),
            "{why}"
        );
    }

    #[test]
    fn what_stays_or_was_never_a_path_is_no_reason() {
        // eth0 stays (an interface added next to it).
        assert_eq!(
            left_behind(
                &paths(&["eth0"], &[("eth0", 1)]),
                &set(&["eth0"]),
                &list(&["eth0", "eth1"])
            ),
            None
        );
        // Leaving eth1, which neither holds the VIP nor brings clients.
        assert_eq!(
            left_behind(
                &paths(&["eth0"], &[("eth0", 1)]),
                &set(&["eth1"]),
                &list(&["eth0"])
            ),
            None
        );
        // VIP on lo and no flows: nothing is known.
        assert_eq!(
            left_behind(&paths(&[], &[]), &set(&["eth0"]), &list(&["lo"])),
            None
        );
    }

    #[test]
    fn status_flags_a_service_none_of_whose_client_interfaces_is_attached() {
        let p = &paths(&["eth0"], &[("eth1", 2)])["model"];
        assert_eq!(
            unreached(p, &set(&["lo"])).unwrap(),
            "none of the interfaces its clients come in on (eth0, eth1) is attached; canary does not see their packets"
        );
        assert_eq!(unreached(p, &set(&["eth1"])), None);
        assert_eq!(unreached(&paths(&[], &[])["model"], &set(&["lo"])), None);
    }
}
