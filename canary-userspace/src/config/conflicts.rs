//! Checks across services: names, listen addresses and backends are each
//! used once, and no backend is a VIP (traffic would loop through the
//! splitter).

use std::{collections::HashMap, net::SocketAddr};

use super::{error::Collector, service::Partial, value::join};

/// An address and IP protocol number (`Protocol` has no `Hash`).
type Key = (SocketAddr, u8);

pub(crate) fn check(errs: &mut Collector, services: &[Partial]) {
    names(errs, services);
    let vips = vips(errs, services);
    backends(errs, services, &vips);
}

fn names(errs: &mut Collector, services: &[Partial]) {
    let mut first: HashMap<&str, &Partial> = HashMap::new();
    for service in services {
        let Some(name) = service.name.as_deref() else {
            continue;
        };
        if let Some(owner) = first.get(name) {
            errs.push(
                join(&service.path, "name"),
                format!(
                    "{name:?} is already the name of {}; names must be unique",
                    owner.path
                ),
            );
        } else {
            first.insert(name, service);
        }
    }
}

/// Reports listen addresses used twice; returns the first user of each.
fn vips<'s>(errs: &mut Collector, services: &'s [Partial]) -> HashMap<Key, &'s Partial> {
    let mut first: HashMap<Key, &Partial> = HashMap::new();
    for service in services {
        let (Some(vip), Some(protocol)) = (service.vip, service.protocol) else {
            continue;
        };
        if let Some(owner) = first.get(&(vip, protocol.number())) {
            errs.push(
                join(&service.path, "listen"),
                format!(
                    "{} and {} both listen on {vip} ({}); a VIP serves one service",
                    owner.label(),
                    service.label(),
                    protocol
                ),
            );
        } else {
            first.insert((vip, protocol.number()), service);
        }
    }
    first
}

fn backends(errs: &mut Collector, services: &[Partial], vips: &HashMap<Key, &Partial>) {
    // The data path records one owner per backend and protocol, so a backend
    // shared by two services (or two sets) would send replies astray.
    let mut first: HashMap<Key, (&Partial, &str)> = HashMap::new();
    for service in services {
        let Some(protocol) = service.protocol else {
            continue;
        };
        let proto = protocol;
        for backend in &service.backends {
            let key = (backend.addr, protocol.number());
            let addr = backend.addr;
            if let Some(owner) = vips.get(&key) {
                errs.push(
                    &backend.path,
                    format!(
                        "{addr} ({proto}) is the listen address of {}; a backend cannot be a VIP",
                        owner.label()
                    ),
                );
            } else if let Some((owner, at)) = first.get(&key) {
                let whose = if std::ptr::eq(*owner, service) {
                    "this service".to_owned()
                } else {
                    owner.label()
                };
                errs.push(
                    &backend.path,
                    format!("{addr} ({proto}) is already a backend of {whose} at {at}; a backend serves one service once"),
                );
            } else {
                first.insert(key, (service, &backend.path));
            }
        }
    }
}
