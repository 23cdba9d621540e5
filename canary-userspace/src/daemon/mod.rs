//! What canaryd does, without its sockets. One thread owns the daemon's
//! state (`Daemon`) and takes commands over a channel (`owner`); status and
//! metrics are read without it (`observe`), from the pinned counters and the
//! last snapshot the owner published.
//!
//! - `Daemon`: start on (or from) the pinned data path, set weights, reload.
//! - `owner`: the owning thread and the async `Handle` that talks to it.
//! - `observe`: `Status` from a snapshot and the counters.
//! - `links`: interface events (rtnetlink) that make the owner check the
//!   configured interfaces and re-attach one that came back.

pub mod driver;
mod error;
pub mod links;
pub mod observe;
pub mod owner;
mod rollouts;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

pub use error::DaemonError;
pub use rollouts::Control;

/// Milliseconds since the Unix epoch: rollout times as persisted and shown.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

use crate::{
    api::{self, InterfaceStatus, Reloaded, WeightSet},
    bpffs, changes,
    config::{self, Config, DaemonConfig, weight_percent_to_bp},
    dataplane::{Dataplane, LoadOptions},
    service::ServiceSpec,
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

/// Test hook: how long every reload holds the owner before it starts, so a
/// test can show that status and metrics do not wait on a slow operation.
/// Read once at start from `CANARYD_TEST_HOLD_RELOAD_MS`, and only in a
/// build with the `test-hooks` feature (the tests crate's).
pub const TEST_HOLD_ENV: &str = "CANARYD_TEST_HOLD_RELOAD_MS";

pub struct Daemon {
    dp: Dataplane,
    config: Config,
    config_path: PathBuf,
    overrides: Overrides,
    state: State,
    interfaces: Vec<InterfaceStatus>,
    test_hold: Duration,
}

impl Daemon {
    /// Loads the data path, reusing the pinned maps (and replacing the
    /// attached programs) left by an earlier run (so established flows,
    /// weights and counters carry on), registers the configured services and
    /// attaches to the interfaces. `config` has `overrides` applied already;
    /// they are kept for reloads.
    pub fn start(
        config_path: &Path,
        config: Config,
        overrides: Overrides,
    ) -> Result<Daemon, DaemonError> {
        let d = &config.daemon;
        if bpffs::ensure(&d.bpffs).map_err(|source| DaemonError::Bpffs {
            dir: d.bpffs.clone(),
            source,
        })? {
            log::info!("mounted a BPF filesystem at {}", bpffs::DEFAULT_MOUNT);
        }
        let mut dp = Dataplane::load(&LoadOptions {
            flow_table_size: d.flow_table_size,
            udp_idle_timeout: d.udp_idle_timeout,
            pin_dir: Some(d.bpffs.clone()),
            signals: d.signals,
            failsafe: d.failsafe,
            failsafe_timeout: d.failsafe_timeout,
        })?;
        let capacity = dp.flow_table_capacity()?;
        if capacity != d.flow_table_size {
            log::warn!(
                "the pinned flow table has {capacity} entries, the config asks for {}; \
                 it keeps {capacity} until canaryd starts with --reset",
                d.flow_table_size
            );
        }
        let mut state = state::load(&d.state_dir).map_err(|source| DaemonError::StateRead {
            dir: d.state_dir.clone(),
            source,
        })?;
        if state.forget_obsolete(&config.services) {
            save_state(&d.state_dir, &state).map_err(|source| DaemonError::StateWrite {
                dir: d.state_dir.clone(),
                source,
            })?;
        }
        for spec in &config.services {
            let mut spec = spec.clone();
            let source = state.source_of(&spec.name, spec.weight_bp);
            spec.weight_bp = state.weight_for(&spec.name, spec.weight_bp);
            // What is served, in one line an operator can grep for.
            log::info!(
                "service {}: {}",
                spec.name,
                changes::summary(changes::Sourced {
                    spec: &spec,
                    source
                })
            );
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
            dp.upsert_service(&spec)?;
        }
        for stale in dp.prune_unclaimed() {
            log::info!(
                "removed a service an earlier run left and the config no longer has ({})",
                crate::service::endpoint_text(&stale)
            );
        }
        let attach_err = |interface: &str, source| DaemonError::Attach {
            interface: interface.to_owned(),
            source,
        };
        for old in dp.attached_interfaces().map_err(|e| attach_err("", e))? {
            if !d.interfaces.contains(&old) {
                log::info!("{old}: no longer in the config; detaching");
                dp.detach(&old).map_err(|e| attach_err(&old, e))?;
            }
        }
        let mut interfaces = vec![];
        for name in &d.interfaces {
            // Looked up before attaching: if the device is replaced in
            // between, the next check sees a new index and attaches again.
            let ifindex = config::interface_index(name).unwrap_or(0);
            let attached = dp.attach(name)?;
            let xdp = attached.xdp;
            log::info!(
                "{name}: XDP in {xdp} mode, through {} (ifindex {ifindex})",
                attached.via
            );
            interfaces.push(InterfaceStatus {
                name: name.clone(),
                xdp,
                attached: true,
                ifindex,
                reattached: 0,
                problem: None,
            });
        }
        let test_hold = if cfg!(feature = "test-hooks") {
            std::env::var(TEST_HOLD_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or_default()
        } else {
            Duration::ZERO
        };
        if !test_hold.is_zero() {
            log::warn!("{TEST_HOLD_ENV}: every reload is held {test_hold:?} (test hook)");
        }
        Ok(Daemon {
            dp,
            config,
            config_path: config_path.to_owned(),
            overrides,
            state,
            interfaces,
            test_hold,
        })
    }

    /// Removes every pin (programs detach, flow table and counters go) and
    /// the state file. Established connections through the VIPs break.
    pub fn detach_all(daemon: &DaemonConfig) -> Result<(), DaemonError> {
        Dataplane::remove_pins(&daemon.bpffs).map_err(|source| DaemonError::RemovePins {
            dir: daemon.bpffs.clone(),
            source,
        })?;
        match std::fs::remove_file(state::path(&daemon.state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DaemonError::StateWrite {
                dir: daemon.state_dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tells the data path canaryd is alive (see the failsafe).
    pub fn heartbeat(&mut self) -> Result<(), DaemonError> {
        Ok(self.dp.heartbeat()?)
    }

    /// How often to beat: a third of the failsafe timeout, at most 5 s.
    pub fn heartbeat_every(&self) -> Duration {
        (self.config.daemon.failsafe_timeout / 3).min(Duration::from_secs(5))
    }

    /// What readers need to answer status and metrics without the owner.
    pub fn snapshot(&self) -> observe::Snapshot {
        observe::Snapshot {
            config_path: self.config_path.display().to_string(),
            interfaces: self.interfaces.clone(),
            services: self.dp.registered(),
            rollouts: self.state.rollouts.clone(),
            rollbacks: self.state.rollbacks.clone(),
            weights: self
                .config
                .services
                .iter()
                .map(|s| {
                    let source = self.state.source_of(&s.name, s.weight_bp);
                    (s.name.clone(), (source, s.weight_bp))
                })
                .collect(),
        }
    }

    /// The counters, shared with the readers.
    pub fn counters(&self) -> std::sync::Arc<crate::maps::Counters> {
        self.dp.counters()
    }

    /// Sets a service's canary weight: one map write, then the state file,
    /// so a restart keeps it. When the state file cannot be written the
    /// kernel goes back to the old weight and the request fails; if even
    /// that write fails, the error says so.
    pub fn set_weight(&mut self, service: &str, percent: f64) -> Result<WeightSet, DaemonError> {
        let bp = weight_percent_to_bp(percent)
            .map_err(|reason| DaemonError::InvalidWeight { percent, reason })?;
        let next = self.state.clone();
        let previous = self.commit_weight(service, Some(bp), next, "set-weight")?;
        Ok(WeightSet {
            service: service.to_owned(),
            previous_percent: api::bp_to_percent(previous),
            percent: api::bp_to_percent(bp),
        })
    }

    /// The config weight of a configured service.
    fn config_weight(&self, service: &str) -> Result<u16, DaemonError> {
        self.config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.weight_bp)
            .ok_or_else(|| DaemonError::UnknownService {
                name: service.to_owned(),
                known: self.dp.service_names(),
            })
    }

    /// Sets `service`'s canary weight (one map write; None leaves it) and
    /// makes `next` the state, weight override included, written to the
    /// state file after the map. If the file cannot be written the map goes
    /// back, and the error says whether that worked. Returns the weight
    /// before.
    pub(crate) fn commit_weight(
        &mut self,
        service: &str,
        weight_bp: Option<u16>,
        mut next: State,
        what: &'static str,
    ) -> Result<u16, DaemonError> {
        let config_weight = self.config_weight(service)?;
        let previous = self.dp.weight(service).unwrap_or(config_weight);
        if let Some(bp) = weight_bp {
            self.dp.set_weight(service, bp)?;
            next.weights.insert(
                service.to_owned(),
                WeightOverride {
                    weight_bp: bp,
                    config_weight_bp: config_weight,
                },
            );
        }
        if let Err(e) = save_state(&self.config.daemon.state_dir, &next) {
            let cause = format!(
                "writing the state file in {} failed: {e}",
                self.config.daemon.state_dir.display()
            );
            let Some(bp) = weight_bp else {
                return Err(DaemonError::Reverted { what, cause });
            };
            return Err(match self.dp.set_weight(service, previous) {
                Ok(()) => DaemonError::Reverted {
                    what,
                    cause: format!(
                        "{cause}; the weight stays {:.2}%",
                        api::bp_to_percent(previous)
                    ),
                },
                Err(revert) => DaemonError::RevertFailed {
                    what,
                    cause: format!(
                        "{cause}; the kernel now uses {:.2}%, which a restart would not keep",
                        api::bp_to_percent(bp)
                    ),
                    revert: revert.to_string(),
                },
            });
        }
        self.state = next;
        if let Some(bp) = weight_bp
            && bp != previous
        {
            log::info!(
                "service {service}: weight {:.2}% -> {:.2}% ({what})",
                api::bp_to_percent(previous),
                api::bp_to_percent(bp)
            );
        }
        Ok(previous)
    }

    /// Compares every configured interface with the kernel (its index now)
    /// and acts on the difference. One that is gone is reported detached:
    /// its XDP and tcx links died with the device. One that is back, or
    /// replaced by a new device of the same name, gets the programs again
    /// (the dead link pins are replaced, see `attachment`). Link events only
    /// say that something may have changed; this looks at what is, so
    /// bursts, lost or reordered events change nothing. Returns whether
    /// anything changed.
    pub fn check_interfaces(&mut self) -> bool {
        let mut changed = false;
        for iface in &mut self.interfaces {
            let name = iface.name.clone();
            let now = config::interface_index(&name).unwrap_or(0);
            if now == 0 {
                if iface.attached || iface.ifindex != 0 {
                    log::warn!(
                        "{name}: the interface is gone (was ifindex {}); nothing is served on it until an interface of that name comes back",
                        iface.ifindex
                    );
                    iface.attached = false;
                    iface.ifindex = 0;
                    iface.problem = Some("the interface is gone".into());
                    changed = true;
                }
                continue;
            }
            if now == iface.ifindex && iface.attached {
                continue;
            }
            let started = std::time::Instant::now();
            match self.dp.attach(&name) {
                Ok(attached) => {
                    iface.reattached += 1;
                    let what = match (iface.ifindex, iface.attached) {
                        (0, _) => format!("back as ifindex {now}"),
                        (old, true) => format!("replaced (ifindex {old} -> {now})"),
                        (_, false) => format!("ifindex {now}"),
                    };
                    log::info!(
                        "{name}: {what}; re-attached in {:.1} ms: XDP in {} mode, through {} (re-attach #{})",
                        started.elapsed().as_secs_f64() * 1e3,
                        attached.xdp,
                        attached.via,
                        iface.reattached
                    );
                    iface.attached = true;
                    iface.ifindex = now;
                    iface.xdp = attached.xdp;
                    iface.problem = None;
                }
                Err(e) => {
                    let problem = format!("re-attaching failed: {e}");
                    // Tried again on every event and check: say it once.
                    if iface.problem.as_ref() != Some(&problem) {
                        log::error!(
                            "{name} (ifindex {now}): {problem}; trying again on the next link event"
                        );
                    }
                    iface.attached = false;
                    iface.ifindex = now;
                    iface.problem = Some(problem);
                }
            }
            changed = true;
        }
        changed
    }

    /// Reads the config file again and applies it. Everything is validated
    /// before anything changes; an invalid file changes nothing.
    pub fn reload(&mut self) -> Result<Reloaded, DaemonError> {
        if !self.test_hold.is_zero() {
            std::thread::sleep(self.test_hold);
        }
        // An interface this daemon serves may be gone for a while: that is
        // reported in status, not a reason to refuse a reload.
        let serves = |name: &str| {
            self.config.daemon.interfaces.iter().any(|i| i == name)
                || config::interface_exists(name)
        };
        let mut new =
            config::load_with(&self.config_path, &serves).map_err(DaemonError::InvalidConfig)?;
        self.overrides.apply(&mut new.daemon);
        self.check_restart_only(&new.daemon)?;
        let old_specs = self.registered_specs();
        let wanted = self.wanted_specs(&new);
        let mut report = changes(&old_specs, &wanted);
        let mut next = self.state.clone();
        let applied = self.apply_specs(&report.removed, &wanted).and_then(|()| {
            if next.forget_obsolete(&new.services) {
                save_state(&new.daemon.state_dir, &next).map_err(|source| {
                    DaemonError::StateWrite {
                        dir: new.daemon.state_dir.clone(),
                        source,
                    }
                })?;
            }
            Ok(())
        });
        if let Err(e) = applied {
            let back = changes(&self.registered_specs(), &old_specs);
            let reverted = self.apply_specs(&back.removed, &old_specs);
            self.dp.forget_removed();
            return Err(match reverted {
                Ok(()) => DaemonError::Reverted {
                    what: "reload",
                    cause: e.to_string(),
                },
                Err(revert) => DaemonError::RevertFailed {
                    what: "reload",
                    cause: e.to_string(),
                    revert: revert.to_string(),
                },
            });
        }
        self.dp.forget_removed();
        // SIGHUP is what an operator tries when an interface came back.
        self.check_interfaces();
        log::set_max_level(new.daemon.log_level);
        let sourced = |specs: &[ServiceSpec], config: &Config, state: &State| {
            specs
                .iter()
                .map(|s| {
                    let config_bp = config
                        .services
                        .iter()
                        .find(|c| c.name == s.name)
                        .map_or(s.weight_bp, |c| c.weight_bp);
                    (s.clone(), state.source_of(&s.name, config_bp))
                })
                .collect::<Vec<_>>()
        };
        let before = sourced(&old_specs, &self.config, &self.state);
        let after = sourced(&wanted, &new, &next);
        report.changes = changes::between(&changes::view(&before), &changes::view(&after));
        self.config = new;
        self.state = next;
        log::info!(
            "reloaded {}: {} added, {} updated, {} removed, {} unchanged",
            self.config_path.display(),
            report.added.len(),
            report.updated.len(),
            report.removed.len(),
            report.unchanged.len()
        );
        for c in &report.changes {
            log::info!("reload: {c}");
        }
        Ok(report)
    }

    /// Settings that only a restart can change; a reload that changes them
    /// is refused with a field-by-field message.
    fn check_restart_only(&self, new: &DaemonConfig) -> Result<(), DaemonError> {
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
        differs("signals", old.signals != new.signals);
        differs("failsafe", old.failsafe != new.failsafe);
        differs(
            "failsafe_timeout",
            old.failsafe_timeout != new.failsafe_timeout,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DaemonError::RestartRequired(errors))
        }
    }

    fn registered_specs(&self) -> Vec<ServiceSpec> {
        self.dp.registered().into_iter().map(|r| r.spec).collect()
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
    fn apply_specs(
        &mut self,
        removed: &[String],
        wanted: &[ServiceSpec],
    ) -> Result<(), DaemonError> {
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
            if pending.len() == before
                && let Some(e) = last_error
            {
                return Err(e.into());
            }
        }
        Ok(())
    }
}

/// Writes the state file, trying again a few times (155 ms in all) when
/// the process or the system is out of descriptors: the reserve (`fds`)
/// makes that rare, and a set-weight or rollback must not fail on a
/// moment's shortage.
fn save_state(dir: &Path, state: &State) -> std::io::Result<()> {
    let mut pause = Duration::from_millis(5);
    for _ in 0..5 {
        match state::save(dir, state) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                log::warn!("writing the state file: {e}; trying again in {pause:?}");
                std::thread::sleep(pause);
                pause *= 2;
            }
            done => return done,
        }
    }
    state::save(dir, state)
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
