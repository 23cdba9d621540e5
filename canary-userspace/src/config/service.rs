//! One `[[service]]` table, read field by field.
//!
//! Fields that pass are kept even when others fail, so the checks across
//! services still run and every error in the file is reported at once.

use std::net::SocketAddr;

use canary_common::MAX_BACKENDS;
use toml::{Table, Value};

use super::{
    Weight, address,
    error::Collector,
    value::{self, join},
};
use crate::{
    controller::plan::RolloutPlan,
    model::kinds::{Affinity, AppProtocol, Named, Protocol},
    model::service::ServiceSpec,
};

const KNOWN: &[&str] = &[
    "name",
    "listen",
    "protocol",
    "affinity",
    "app_protocol",
    "stable",
    "canary",
    "weight",
    "rollout",
];

/// Longest service name; it becomes a Prometheus label value and a CLI argument.
const MAX_NAME: usize = 64;

/// A backend that parsed, with where it was written.
pub(crate) struct Backend {
    pub(crate) path: String,
    pub(crate) addr: SocketAddr,
}

/// What could be read of one service; `None` fields were reported.
pub(crate) struct Partial {
    /// `service[i]`.
    pub(crate) path: String,
    pub(crate) name: Option<String>,
    pub(crate) vip: Option<SocketAddr>,
    pub(crate) protocol: Option<Protocol>,
    affinity: Option<Affinity>,
    app_protocol: Option<AppProtocol>,
    stable: Option<Vec<SocketAddr>>,
    canary: Option<Vec<SocketAddr>>,
    weight: Option<Weight>,
    /// `[service.rollout]`, when present and valid.
    pub(crate) rollout: Option<RolloutPlan>,
    /// Every backend that parsed, stable then canary, for the checks across
    /// services; includes those of a set that failed as a whole.
    pub(crate) backends: Vec<Backend>,
}

impl Partial {
    /// The service, when every field of it passed.
    pub(crate) fn spec(&self) -> Option<ServiceSpec> {
        Some(ServiceSpec {
            name: self.name.clone()?,
            vip: self.vip?,
            protocol: self.protocol?,
            affinity: self.affinity?,
            app_protocol: self.app_protocol?,
            stable: self.stable.clone()?,
            canary: self.canary.clone()?,
            weight: self.weight?,
        })
    }

    /// `service[1] "sentiment"`, or just the path when the name is unusable.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} {name:?}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Reads element `index` of the `service` array.
pub(crate) fn read(errs: &mut Collector, index: usize, value: &Value) -> Partial {
    let path = format!("service[{index}]");
    let mut partial = Partial {
        path,
        name: None,
        vip: None,
        protocol: None,
        affinity: None,
        app_protocol: None,
        stable: None,
        canary: None,
        weight: None,
        rollout: None,
        backends: Vec::new(),
    };
    let Value::Table(table) = value else {
        value::wrong_type(errs, &partial.path, "a table ([[service]])", value);
        return partial;
    };
    let path = partial.path.as_str();
    value::reject_unknown(errs, table.keys(), path, KNOWN);
    partial.rollout = super::rollout::read(errs, table.get("rollout"), path);

    partial.name = name(errs, table, path);
    partial.vip = listen(errs, table, path);
    partial.protocol = value::word::<Protocol>(errs, table, path, "protocol");
    partial.affinity = value::word::<Affinity>(errs, table, path, "affinity");
    partial.app_protocol = app_protocol(errs, table, path, partial.protocol);
    let (stable, mut backends) = backend_set(errs, table, path, "stable", partial.vip);
    let (canary, canary_backends) = backend_set(errs, table, path, "canary", partial.vip);
    backends.extend(canary_backends);
    partial.stable = stable;
    partial.canary = canary;
    partial.backends = backends;
    partial.weight = weight(errs, table, path);
    partial
}

fn name(errs: &mut Collector, table: &Table, path: &str) -> Option<String> {
    let name = value::string(errs, table, path, "name").required(
        errs,
        &join(path, "name"),
        r#"name = "sentiment""#,
    )?;
    let why = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.chars().count() > MAX_NAME {
        format!("it is longer than {MAX_NAME} characters")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        format!("{c:?} is not allowed")
    } else {
        return Some(name.to_owned());
    };
    errs.push(
        join(path, "name"),
        format!("{name:?} is not a service name: {why}; use 1 to {MAX_NAME} of A-Z a-z 0-9 _ . -"),
    );
    None
}

/// `app_protocol`, default `auto`. HTTP and HTTP/2 run over TCP here: a UDP
/// service reads no payload, so only `auto` and `none` (the same on UDP)
/// are allowed there. Not checked against a protocol that was reported.
fn app_protocol(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    protocol: Option<Protocol>,
) -> Option<AppProtocol> {
    let app = value::word::<AppProtocol>(errs, table, path, "app_protocol")?;
    if protocol == Some(Protocol::Udp) && matches!(app, AppProtocol::Http | AppProtocol::H2c) {
        errs.push(
            join(path, "app_protocol"),
            format!(
                "{:?} needs protocol = \"tcp\": canary reads HTTP and HTTP/2 over TCP only; \
                 a UDP service takes \"auto\" or \"none\"",
                app.name()
            ),
        );
        return None;
    }
    Some(app)
}

fn listen(errs: &mut Collector, table: &Table, path: &str) -> Option<SocketAddr> {
    let field = join(path, "listen");
    let text = value::string(errs, table, path, "listen").required(
        errs,
        &field,
        r#"listen = "198.18.0.1:80""#,
    )?;
    let checked = address::parse(text).and_then(|addr| address::check_unicast(addr).map(|()| addr));
    checked.map_err(|why| errs.push(field, why)).ok()
}

/// Reads the `stable` or `canary` set; the set is `None` if any of it failed.
fn backend_set(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    key: &str,
    vip: Option<SocketAddr>,
) -> (Option<Vec<SocketAddr>>, Vec<Backend>) {
    let field = join(path, key);
    let example = format!(r#"{key} = ["198.18.0.1:8081"]"#);
    let Some(items) = value::array(errs, table, path, key).required(errs, &field, &example) else {
        return (None, Vec::new());
    };
    let before = errs.len();
    if items.is_empty() {
        errs.push(
            &field,
            format!("no backends; 1 to {MAX_BACKENDS} are required"),
        );
    } else if items.len() > MAX_BACKENDS as usize {
        errs.push(
            &field,
            format!(
                "{} backends; at most {MAX_BACKENDS} are allowed",
                items.len()
            ),
        );
    }
    let mut backends = Vec::with_capacity(items.len());
    for (item_path, text) in value::strings(errs, items, &field) {
        let addr = match address::parse(text)
            .and_then(|addr| address::check_unicast(addr).map(|()| addr))
        {
            Ok(addr) => addr,
            Err(why) => {
                errs.push(item_path, why);
                continue;
            }
        };
        if let Some(vip) = vip
            && vip.is_ipv4() != addr.is_ipv4()
        {
            errs.push(
                &item_path,
                format!(
                    "{addr} is {} but the listen address {vip} is {}; a service uses one address family",
                    family(addr),
                    family(vip)
                ),
            );
        }
        backends.push(Backend {
            path: item_path,
            addr,
        });
    }
    let set = (errs.len() == before).then(|| backends.iter().map(|b| b.addr).collect());
    (set, backends)
}

fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn weight(errs: &mut Collector, table: &Table, path: &str) -> Option<Weight> {
    let read = match table.get("weight") {
        // `weight = "5%"` reads as 5, as on canaryctl's command line.
        Some(Value::String(text)) => text.parse::<Weight>().map_err(|e| e.to_string()),
        _ => {
            let percent = value::number(errs, table, path, "weight").or(0.0)?;
            Weight::from_percent(percent).map_err(|e| e.to_string())
        }
    };
    read.map_err(|why| errs.push(join(path, "weight"), why))
        .ok()
}
