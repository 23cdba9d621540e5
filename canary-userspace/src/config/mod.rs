//! The `canaryd` config file: one TOML file read into a [`Config`].
//!
//! Validation reads the raw TOML tree field by field, so every error names
//! its file and field path, and all of them are reported at once; only a
//! TOML syntax error stops the checks, as there is no tree to check.
//! Modules: `daemon` and `service` read the two tables, `conflicts` checks
//! across services, `address`, `duration`, `interface` and `weight` read one
//! kind of value each, `value` reads typed fields, `error` reports.

mod address;
mod conflicts;
mod daemon;
mod duration;
mod error;
mod fleet;
mod interface;
mod render;
mod rollout;
mod service;
mod value;
mod warnings;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use canary_common::MAX_SERVICES;
use toml::{Table, Value};

pub use crate::host::interfaces::{
    check_name as check_interface_name, interface_exists, interface_index,
};
pub use crate::model::weight::{
    InvalidPercent, InvalidWeight, ParseWeightError, Weight, low_weight_hint,
};
pub use daemon::MAX_FLOW_TABLE_SIZE;
pub use duration::{InvalidDuration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use fleet::{FleetConfig, check_name as check_fleet_name, hostname};
pub use warnings::{vip_not_local, warnings};

use crate::{controller::plan::RolloutPlan, model::service::ServiceSpec};
use error::Collector;

pub const DEFAULT_SOCKET: &str = "/run/canary/canary.sock";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/canary";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/canary";

/// A config that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// In file order; may be empty (the daemon attaches and idles).
    pub services: Vec<ServiceSpec>,
    /// `[service.rollout]` tables, by service name.
    pub rollouts: BTreeMap<String, RolloutPlan>,
    /// `[fleet]`: rollouts coordinated through etcd; None on a single host.
    pub fleet: Option<FleetConfig>,
}

/// The `[daemon]` table, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Interfaces to attach to; at least one, each present at load time.
    pub interfaces: Vec<String>,
    /// The ingress hook of each interface whose ingress does not run at the
    /// default, XDP (`{ name = "veth0", hook = "tc" }` in `interfaces`).
    pub hooks: BTreeMap<String, crate::model::kinds::Hook>,
    /// Control socket for `canaryctl`.
    pub socket: PathBuf,
    /// Where Prometheus scrapes `/metrics`.
    pub metrics_listen: SocketAddr,
    /// bpffs directory the maps and programs are pinned under.
    pub bpffs: PathBuf,
    /// Directory of the state file (weights across restarts).
    pub state_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// Entries in the flow table.
    pub flow_table_size: u32,
    /// How long an idle UDP flow keeps its backend.
    pub udp_idle_timeout: Duration,
    /// Measure health signals in the data path (on unless set false, which
    /// only serves to measure their cost).
    pub signals: bool,
    /// Time a sample of requests above 320 a second per CPU and version
    /// instead of every one (`canary_common::signals::Sampler`); false
    /// times every request, at a clock read more per request start
    /// (tens of ns; docs/DATAPATH.md, "Latency sampling").
    pub latency_sampling: bool,
    /// What new flows do when canaryd's heartbeat is older than
    /// `failsafe_timeout`.
    pub failsafe: crate::model::kinds::Failsafe,
    pub failsafe_timeout: Duration,
}

impl DaemonConfig {
    /// Every key at its default, attached to `interfaces`: what a config
    /// file with only `interfaces` set reads as.
    pub fn with_defaults(interfaces: Vec<String>) -> DaemonConfig {
        DaemonConfig {
            interfaces,
            hooks: BTreeMap::new(),
            socket: DEFAULT_SOCKET.into(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            bpffs: DEFAULT_BPFFS.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            log_level: log::LevelFilter::Info,
            flow_table_size: canary_common::DEFAULT_FLOW_TABLE_SIZE,
            udp_idle_timeout: Duration::from_nanos(canary_common::DEFAULT_UDP_IDLE_TIMEOUT_NS),
            signals: true,
            latency_sampling: true,
            failsafe: crate::model::kinds::Failsafe::Revert,
            failsafe_timeout: Duration::from_secs(30),
        }
    }

    /// Where `interface`'s ingress runs.
    pub fn hook(&self, interface: &str) -> crate::model::kinds::Hook {
        self.hooks.get(interface).copied().unwrap_or_default()
    }
}

/// Reads and checks the config file at `path`, looking interfaces up on
/// this host.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, &interface_exists)
}

/// `load`, with `interface_exists` deciding which interfaces count as
/// present (a reload accepts the ones the daemon already serves even while
/// they are gone).
pub fn load_with(
    path: &Path,
    interface_exists: &dyn Fn(&str) -> bool,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file, interface_exists),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            field: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])),
    }
}

/// Checks config `text`; `file` names it in errors, and `interface_exists`
/// decides whether an interface is present (tests pass their own).
pub fn parse(
    text: &str,
    file: &str,
    interface_exists: &dyn Fn(&str) -> bool,
) -> Result<Config, ConfigErrors> {
    let mut errs = Collector::new(file);
    let root = match text.parse::<Table>() {
        Ok(root) => root,
        Err(e) => {
            errs.push("", syntax_message(text, &e));
            return Err(errs.finish());
        }
    };
    value::reject_unknown(&mut errs, root.keys(), "", &["daemon", "service", "fleet"]);

    let daemon = daemon::read(&mut errs, root.get("daemon"), interface_exists);
    let partials = services(&mut errs, root.get("service"));
    let fleet = fleet::read(&mut errs, root.get("fleet"));
    conflicts::check(&mut errs, &partials);

    // Last safety net: whatever passed here must also pass what the data
    // path checks, or the daemon would fail later instead of at load.
    let mut services = Vec::with_capacity(partials.len());
    let mut rollouts = BTreeMap::new();
    for partial in &partials {
        if let Some(spec) = partial.spec() {
            match spec.check() {
                Ok(()) => {
                    if let Some(plan) = &partial.rollout {
                        rollouts.insert(spec.name.clone(), plan.clone());
                    }
                    services.push(spec)
                }
                Err(e) => errs.push(&partial.path, e.to_string()),
            }
        }
    }

    match daemon {
        Some(daemon) if errs.is_empty() => Ok(Config {
            daemon,
            services,
            rollouts,
            fleet,
        }),
        _ => Err(errs.finish()),
    }
}

fn services(errs: &mut Collector, value: Option<&Value>) -> Vec<service::Partial> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            value::wrong_type(errs, "service", "[[service]] tables", other);
            return Vec::new();
        }
    };
    if items.len() > MAX_SERVICES as usize {
        errs.push(
            "service",
            format!(
                "{} services; at most {MAX_SERVICES} are allowed",
                items.len()
            ),
        );
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| service::read(errs, i, item))
        .collect()
}

/// "TOML syntax error at line L, column C: ..." on one line; the toml
/// crate's own rendering spans several.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let mut detail = error.message().trim().replace('\n', "; ");
    let Some(span) = error.span() else {
        return format!("TOML syntax error: {detail}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    // `weight = 5%` is not TOML; say how to write it.
    if text.lines().nth(line - 1).is_some_and(|l| l.contains('%')) {
        detail
            .push_str(r#"; write a percent as a number (weight = 5) or a string (weight = "5%")"#);
    }
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("TOML syntax error at line {line}, column {column}: {detail}")
}
