//! What canaryd does, without the sockets: start on (or from) the pinned
//! data path, answer status, set weights, reload the config. The binary
//! wraps one `Daemon` in a lock and serves it over the control socket.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use canary_common::{VersionStats, verdict};

use crate::{
    api::{
        self, DaemonStatus, InterfaceStatus, Reloaded, ServiceStatus, Status, VerdictCounts,
        VersionStatus, WeightSet,
    },
    attachment::XdpMode,
    bpffs,
    config::{self, Config, DaemonConfig, weight_percent_to_bp},
    dataplane::{Dataplane, LoadOptions},
    service::{Affinity, Protocol, ServiceSpec},
    state::{self, State, WeightOverride},
};

/// Command-line values that replace the config file's `[daemon]` keys, at
/// start and again on every reload (so a reload never sees them "change").
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub socket: Option<PathBuf>,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub bpffs: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<log::LevelFilter>,
}

impl Overrides {
    pub fn apply(&self, d: &mut DaemonConfig) {
        if !self.interfaces.is_empty() {
            d.interfaces = self.interfaces.clone();
        }
        if let Some(v) = &self.socket {
            d.socket = v.clone();
        }
        if let Some(v) = self.metrics_listen {
            d.metrics_listen = v;
        }
        if let Some(v) = &self.bpffs {
            d.bpffs = v.clone();
        }
        if let Some(v) = &self.state_dir {
            d.state_dir = v.clone();
        }
        if let Some(v) = self.log_level {
            d.log_level = v;
        }
    }
}

pub struct Daemon {
    dp: Dataplane,
    config: Config,
    config_path: PathBuf,
    overrides: Overrides,
    state: State,
    interfaces: Vec<InterfaceStatus>,
}

impl Daemon {
    /// Loads the data path, reusing the pinned maps (and replacing the
    /// attached programs) left by an
    /// earlier run (so established flows, weights and counters carry on),
    /// registers the configured services and attaches to the interfaces.
    /// `config` has `overrides` applied already; they are kept for reloads.
    pub fn start(config_path: &Path, config: Config, overrides: Overrides) -> Result<Daemon> {
        let d = &config.daemon;
        if bpffs::ensure(&d.bpffs).context("preparing the bpffs directory")? {
            log::info!("mounted a BPF filesystem at {}", bpffs::DEFAULT_MOUNT);
        }
        let mut dp = Dataplane::load(&LoadOptions {
            flow_table_size: d.flow_table_size,
            udp_idle_timeout: d.udp_idle_timeout,
            pin_dir: Some(d.bpffs.clone()),
        })
        .context("loading the data path")?;
        let capacity = dp.flow_table_capacity()?;
        if capacity != d.flow_table_size {
            log::warn!(
                "the pinned flow table has {capacity} entries, the config asks for {}; \
                 it keeps {capacity} until canaryd starts with --reset",
                d.flow_table_size
            );
        }
        let mut state = state::load(&d.state_dir).context("reading the state file")?;
        if state.forget_obsolete(&config.services) {
            state::save(&d.state_dir, &state).context("writing the state file")?;
        }
        for spec in &config.services {
            let mut spec = spec.clone();
            spec.weight_bp = state.weight_for(&spec.name, spec.weight_bp);
            if let Some(kernel) = dp.recovered_weight(&spec)
                && kernel != spec.weight_bp
            {
                log::warn!(
                    "service {}: the kernel had weight {:.2}%, using {:.2}% from the config and state file",
                    spec.name,
                    api::bp_to_percent(kernel),
                    api::bp_to_percent(spec.weight_bp)
                );
            }
            dp.upsert_service(&spec)
                .with_context(|| format!("registering service {}", spec.name))?;
        }
        for stale in dp.prune_unclaimed()? {
            log::info!(
                "removed a service an earlier run left and the config no longer has ({stale:?})"
            );
        }
        for old in dp.attached_interfaces()? {
            if !d.interfaces.contains(&old) {
                log::info!("{old}: no longer in the config; detaching");
                dp.detach(&old)
                    .with_context(|| format!("detaching from {old}"))?;
            }
        }
        let mut interfaces = vec![];
        for name in &d.interfaces {
            let attached = dp.attach(name)?;
            let xdp = match attached.xdp {
                XdpMode::Driver => "driver",
                XdpMode::Generic => "generic",
            };
            log::info!("{name}: XDP in {xdp} mode, through {}", attached.via);
            interfaces.push(InterfaceStatus {
                name: name.clone(),
                xdp: xdp.into(),
            });
        }
        Ok(Daemon {
            dp,
            config,
            config_path: config_path.to_owned(),
            overrides,
            state,
            interfaces,
        })
    }

    /// Removes every pin (programs detach, flow table and counters go) and
    /// the state file. Established connections through the VIPs break.
    pub fn detach_all(daemon: &DaemonConfig) -> Result<()> {
        Dataplane::remove_pins(&daemon.bpffs)
            .with_context(|| format!("removing pins under {}", daemon.bpffs.display()))?;
        match std::fs::remove_file(state::path(&daemon.state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("removing the state file")
            }
            _ => Ok(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn status(&self) -> Result<Status> {
        let mut services = vec![];
        for name in self.dp.service_names() {
            let Some(spec) = self.dp.spec(&name) else {
                continue;
            };
            let [stable, canary] = self.dp.stats(&name)?;
            services.push(ServiceStatus {
                name: name.clone(),
                listen: spec.vip.to_string(),
                protocol: match spec.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
                .into(),
                affinity: match spec.affinity {
                    Affinity::Flow => "flow",
                    Affinity::Client => "client",
                }
                .into(),
                weight_percent: api::bp_to_percent(spec.weight_bp),
                stable: version_status(&spec.stable, &stable),
                canary: version_status(&spec.canary, &canary),
            });
        }
        let v = self.dp.verdicts()?;
        let named = |counts: &[u64]| {
            verdict::NAMES
                .iter()
                .zip(counts)
                .map(|(n, c)| (n.to_string(), *c))
                .collect()
        };
        Ok(Status {
            daemon: DaemonStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                api_version: api::API_VERSION,
                pid: std::process::id(),
                config: self.config_path.display().to_string(),
                interfaces: self.interfaces.clone(),
            },
            services,
            verdicts: VerdictCounts {
                ingress: named(&v.ingress),
                egress: named(&v.egress),
            },
        })
    }

    /// Sets a service's canary weight: one map write, then the state file,
    /// so a restart keeps it. When the state file cannot be written the
    /// kernel goes back to the old weight and the request fails.
    pub fn set_weight(&mut self, service: &str, percent: f64) -> Result<WeightSet, String> {
        let bp = weight_percent_to_bp(percent).map_err(|e| format!("percent {percent}: {e}"))?;
        let Some(config_weight) = self
            .config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.weight_bp)
        else {
            let known = self.dp.service_names().join(", ");
            return Err(format!(
                "unknown service {service:?}; this daemon has: {}",
                if known.is_empty() {
                    "no services"
                } else {
                    &known
                }
            ));
        };
        let previous = self.dp.weight(service).unwrap_or(config_weight);
        self.dp.set_weight(service, bp).map_err(|e| e.to_string())?;
        let mut next = self.state.clone();
        next.weights.insert(
            service.to_owned(),
            WeightOverride {
                weight_bp: bp,
                config_weight_bp: config_weight,
            },
        );
        if let Err(e) = state::save(&self.config.daemon.state_dir, &next) {
            let _ = self.dp.set_weight(service, previous);
            return Err(format!(
                "weight not changed: writing the state file in {} failed: {e}",
                self.config.daemon.state_dir.display()
            ));
        }
        self.state = next;
        log::info!(
            "service {service}: weight {:.2}% -> {:.2}%",
            api::bp_to_percent(previous),
            api::bp_to_percent(bp)
        );
        Ok(WeightSet {
            service: service.to_owned(),
            previous_percent: api::bp_to_percent(previous),
            percent: api::bp_to_percent(bp),
        })
    }

    /// Reads the config file again and applies it. Everything is validated
    /// before anything changes; an invalid file changes nothing.
    pub fn reload(&mut self) -> Result<Reloaded, String> {
        let mut new = config::load(&self.config_path).map_err(|e| e.to_string())?;
        self.overrides.apply(&mut new.daemon);
        self.check_restart_only(&new.daemon)?;
        let old_specs = self.registered_specs();
        let wanted = self.wanted_specs(&new);
        let report = changes(&old_specs, &wanted);
        let mut next = self.state.clone();
        let applied = self.apply_specs(&report.removed, &wanted).and_then(|()| {
            if next.forget_obsolete(&new.services) {
                state::save(&new.daemon.state_dir, &next).context("writing the state file")?;
            }
            Ok(())
        });
        if let Err(e) = applied {
            // Best effort back to what ran before; the reload reports failure.
            let back = changes(&self.registered_specs(), &old_specs);
            let _ = self.apply_specs(&back.removed, &old_specs);
            return Err(format!("reload failed and was rolled back: {e:#}"));
        }
        log::set_max_level(new.daemon.log_level);
        self.config = new;
        self.state = next;
        log::info!("reloaded {}: {report:?}", self.config_path.display());
        Ok(report)
    }

    /// Settings that only a restart can change; a reload that changes them
    /// is refused with a field-by-field message.
    fn check_restart_only(&self, new: &DaemonConfig) -> Result<(), String> {
        let old = &self.config.daemon;
        let file = self.config_path.display();
        let mut errors = vec![];
        let mut differs = |field: &str, changed: bool| {
            if changed {
                errors.push(format!(
                    "{file}: daemon.{field}: changing it needs a restart of canaryd (reload applies services and log_level)"
                ));
            }
        };
        differs("interfaces", old.interfaces != new.interfaces);
        differs("socket", old.socket != new.socket);
        differs("metrics_listen", old.metrics_listen != new.metrics_listen);
        differs("bpffs", old.bpffs != new.bpffs);
        differs("state_dir", old.state_dir != new.state_dir);
        differs(
            "flow_table_size",
            old.flow_table_size != new.flow_table_size,
        );
        differs(
            "udp_idle_timeout",
            old.udp_idle_timeout != new.udp_idle_timeout,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    fn registered_specs(&self) -> Vec<ServiceSpec> {
        self.dp
            .service_names()
            .iter()
            .filter_map(|n| self.dp.spec(n).cloned())
            .collect()
    }

    /// The specs the new config asks for, with weights overridden at run
    /// time kept unless the config's weight for that service changed.
    fn wanted_specs(&self, new: &Config) -> Vec<ServiceSpec> {
        new.services
            .iter()
            .map(|s| ServiceSpec {
                weight_bp: self.state.weight_for(&s.name, s.weight_bp),
                ..s.clone()
            })
            .collect()
    }

    /// Removes `removed`, then upserts every spec of `wanted` that differs
    /// from what is registered. A backend moving from one service to another
    /// can only be added once the other has let go of it, so upserts that
    /// fail are retried while others make progress.
    fn apply_specs(&mut self, removed: &[String], wanted: &[ServiceSpec]) -> Result<()> {
        for name in removed {
            self.dp.remove_service(name)?;
        }
        let mut pending: Vec<&ServiceSpec> = wanted
            .iter()
            .filter(|s| self.dp.spec(&s.name) != Some(*s))
            .collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut last_error = None;
            pending.retain(|s| match self.dp.upsert_service(s) {
                Ok(_) => false,
                Err(e) => {
                    last_error = Some(e);
                    true
                }
            });
            if pending.len() == before {
                return Err(match last_error {
                    Some(e) => e.into(),
                    None => anyhow::anyhow!("no service could be applied"),
                });
            }
        }
        Ok(())
    }
}

/// What going from `current` to `wanted` changes, by service name.
fn changes(current: &[ServiceSpec], wanted: &[ServiceSpec]) -> Reloaded {
    let mut r = Reloaded::default();
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
    for s in current {
        if !wanted_names.contains(s.name.as_str()) {
            r.removed.push(s.name.clone());
        }
    }
    for s in wanted {
        match current.iter().find(|c| c.name == s.name) {
            None => r.added.push(s.name.clone()),
            Some(c) if c == s => r.unchanged.push(s.name.clone()),
            Some(_) => r.updated.push(s.name.clone()),
        }
    }
    r
}

fn version_status(backends: &[std::net::SocketAddr], s: &VersionStats) -> VersionStatus {
    VersionStatus {
        backends: backends.iter().map(|b| b.to_string()).collect(),
        packets_in: s.packets_in,
        bytes_in: s.bytes_in,
        packets_out: s.packets_out,
        bytes_out: s.bytes_out,
        new_flows: s.new_flows,
        closed_flows: s.closed_flows,
        active_flows: s.new_flows.saturating_sub(s.closed_flows),
        rehashes: s.rehashes,
    }
}
