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
    dataplane::{Attachment, Dataplane, LoadOptions, RemovedPins},
    inspect::{self, Expected},
    kinds::Hook,
    lock::{self, DaemonLock},
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
    /// Checks the flags the way the config file's keys are checked (an
    /// interface must exist on this host, paths must be absolute), so
    /// `--check` and start-up catch a typo in a flag before anything in
    /// the kernel changes. Every problem at once, each naming its flag.
    pub fn check(&self) -> Result<(), config::ConfigErrors> {
        let flag = |field: &str, message: String| config::ConfigError {
            file: "command line".into(),
            field: field.into(),
            message,
        };
        let mut errors = vec![];
        let mut seen = BTreeSet::new();
        for name in &self.interfaces {
            if let Err(why) = config::check_interface_name(name) {
                errors.push(flag("--interface", why));
            } else if !seen.insert(name) {
                errors.push(flag("--interface", format!("{name:?} is given twice")));
            } else if !config::interface_exists(name) {
                errors.push(flag(
                    "--interface",
                    format!("no interface named {name:?} on this host"),
                ));
            }
        }
        for (field, path) in [
            ("--socket", &self.socket),
            ("--bpffs", &self.bpffs),
            ("--state-dir", &self.state_dir),
        ] {
            if let Some(p) = path
                && !p.is_absolute()
            {
                errors.push(flag(
                    field,
                    format!("{:?} is not an absolute path", p.display().to_string()),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(config::ConfigErrors(errors))
        }
    }

    pub fn apply(&self, d: &mut DaemonConfig) {
        if !self.interfaces.is_empty() {
            d.interfaces = self.interfaces.clone();
            // An interface the file names keeps the hook the file gives it.
            d.hooks.retain(|name, _| self.interfaces.contains(name));
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

/// The config's warnings (`config::warnings`) against this host's
/// addresses, each as one line naming the file and field. When the
/// addresses cannot be read, VIPs are not checked and the line says so.
pub fn config_warnings(config: &Config, file: &Path) -> Vec<String> {
    let file = file.display().to_string();
    let (local, mut out) = match config::local_addresses() {
        Ok(local) => (Some(local), vec![]),
        Err(e) => (
            None,
            vec![format!(
                "{file}: cannot list this host's addresses ({e}); VIPs are not checked"
            )],
        ),
    };
    let is_local = |ip| local.as_ref().is_none_or(|l| l.contains(&ip));
    out.extend(
        config::warnings(config, &file, &is_local)
            .iter()
            .map(ToString::to_string),
    );
    out
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
    /// This run's program and map ids: what the kernel should run.
    expected: std::sync::Arc<Expected>,
    /// Interfaces whose egress program is a tcx link (the netlink
    /// fallback's clsact filter is not listed by BPF_PROG_QUERY).
    tcx: BTreeSet<String>,
    /// Interfaces where the kernel was found running something else than
    /// what canaryd attached, with the same device: not re-attached on its
    /// own (that would fight whoever did it), only by a reload or restart.
    tampered: BTreeSet<String>,
    test_hold: Duration,
    /// Held for the daemon's lifetime: one canaryd per pin directory.
    _lock: DaemonLock,
}

/// The pin directory, ready and locked for this process (`Daemon::claim`).
#[derive(Debug)]
pub struct Claim {
    pub lock: DaemonLock,
    /// canaryd mounted the bpffs in a mount namespace of its own (as under
    /// `ip netns exec`): the pins go when that namespace ends.
    pub pins_vanish_with_namespace: bool,
}

/// What `Daemon::detach_all` found and removed.
#[derive(Clone, Debug, Default)]
pub struct Detached {
    pub pins: RemovedPins,
    /// Whether there was a state file.
    pub state_file: bool,
}

impl Daemon {
    /// Makes the bpffs directory ready (mounting a bpffs at /sys/fs/bpf when
    /// none is there, and saying in one line what that means for the pins)
    /// and takes the lock on it. Before anything else touches the kernel:
    /// a second canaryd on the same pins is refused here, nothing changed.
    pub fn claim(d: &DaemonConfig) -> Result<Claim, DaemonError> {
        let bpffs_err = |source| DaemonError::Bpffs {
            dir: d.bpffs.clone(),
            source,
        };
        let mounted = bpffs::ensure(&d.bpffs).map_err(bpffs_err)?;
        let own_namespace = mounted && bpffs::own_mount_namespace();
        if own_namespace {
            log::warn!("{}", bpffs::mounted_note(true));
        } else if mounted {
            log::info!("{}", bpffs::mounted_note(false));
        }
        std::fs::create_dir_all(&d.bpffs).map_err(bpffs_err)?;
        Ok(Claim {
            lock: lock::acquire(&d.bpffs)?,
            pins_vanish_with_namespace: own_namespace,
        })
    }

    /// Loads the data path, reusing the pinned maps (and replacing the
    /// attached programs) left by an earlier run (so established flows,
    /// weights and counters carry on), registers the configured services and
    /// attaches to the interfaces. `config` has `overrides` applied already;
    /// they are kept for reloads.
    pub fn start(
        config_path: &Path,
        config: Config,
        overrides: Overrides,
        claim: Claim,
    ) -> Result<Daemon, DaemonError> {
        let d = &config.daemon;
        let mut dp = Dataplane::load(&LoadOptions {
            flow_table_size: d.flow_table_size,
            udp_idle_timeout: d.udp_idle_timeout,
            pin_dir: Some(d.bpffs.clone()),
            signals: d.signals,
            latency_sampling: d.latency_sampling,
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
        for w in config_warnings(&config, config_path) {
            log::warn!("{w}");
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
        // Transactional: every configured interface is attached before any
        // interface the pins had is detached, so a failure leaves what was
        // serving serving.
        let before = dp.attached_interfaces().map_err(|e| attach_err("", e))?;
        let expected = std::sync::Arc::new(dp.expected()?);
        let mut interfaces = vec![];
        let mut tcx = BTreeSet::new();
        for name in &d.interfaces {
            // Looked up before attaching: if the device is replaced in
            // between, the next check sees a new index and attaches again.
            let ifindex = config::interface_index(name).unwrap_or(0);
            let hook = d.hook(name);
            let attached = match dp.attach(name, hook) {
                Ok(a) => a,
                Err(source) => {
                    undo_new_attachments(&mut dp, &before, &interfaces, name);
                    return Err(DaemonError::AttachFailed {
                        interface: name.clone(),
                        source: Box::new(source),
                        serving: before.into_iter().filter(|b| b != name).collect(),
                    });
                }
            };
            log::info!(
                "{name}: {}, through {} (ifindex {ifindex})",
                attached.ingress(),
                attached.via
            );
            if !matches!(attached.via, Attachment::Netlink { .. }) {
                tcx.insert(name.clone());
            }
            interfaces.push(InterfaceStatus {
                canary_program_ids: vec![expected.ingress_for(hook), expected.egress_id],
                map_ids: expected.maps.iter().map(|(_, id)| *id).collect(),
                ..InterfaceStatus::new(name, hook, attached.xdp, ifindex)
            });
        }
        for old in before {
            if !d.interfaces.contains(&old) {
                log::info!("{old}: no longer in the config; detaching");
                dp.detach(&old).map_err(|e| attach_err(&old, e))?;
            }
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
        let mut daemon = Daemon {
            dp,
            config,
            config_path: config_path.to_owned(),
            overrides,
            state,
            interfaces,
            expected,
            tcx,
            tampered: BTreeSet::new(),
            test_hold,
            _lock: claim.lock,
        };
        // What the kernel runs from the first status on, not what attach said.
        daemon.check_interfaces(false);
        Ok(daemon)
    }

    /// Removes every pin (programs detach, flow table and counters go) and
    /// the state file, and says what it found. Established connections
    /// through the VIPs break. Refused while a canaryd holds the pin
    /// directory (`LockError::Held`): nothing is touched then. Never
    /// mounts or creates anything.
    pub fn detach_all(daemon: &DaemonConfig) -> Result<Detached, DaemonError> {
        if !daemon.bpffs.is_dir() {
            return Ok(Detached {
                pins: RemovedPins::default(),
                state_file: remove_state_file(daemon)?,
            });
        }
        let lock = lock::acquire(&daemon.bpffs)?;
        let pins =
            Dataplane::remove_pins(&daemon.bpffs).map_err(|source| DaemonError::RemovePins {
                dir: daemon.bpffs.clone(),
                source,
            })?;
        drop(lock);
        Ok(Detached {
            pins,
            state_file: remove_state_file(daemon)?,
        })
    }

    /// `detach_all` for a daemon that starts clean (`--reset`) and holds
    /// `claim` already: the bpffs directory, which the lock is on, stays.
    pub fn reset(daemon: &DaemonConfig, claim: &Claim) -> Result<Detached, DaemonError> {
        debug_assert_eq!(claim.lock.dir(), daemon.bpffs);
        let pins =
            Dataplane::remove_layout(&daemon.bpffs).map_err(|source| DaemonError::RemovePins {
                dir: daemon.bpffs.clone(),
                source,
            })?;
        Ok(Detached {
            pins,
            state_file: remove_state_file(daemon)?,
        })
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
            expected: self.expected.clone(),
            tcx: self.tcx.clone(),
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
    ///
    /// While a rollout of the service is running or paused, its next step
    /// would undo a weight set by hand: 0 ends the rollout as a rollback
    /// (the one-write way back, as `canaryctl rollback`), any other weight
    /// is refused with the commands that do what was meant.
    pub fn set_weight(&mut self, service: &str, percent: f64) -> Result<WeightSet, DaemonError> {
        let bp = weight_percent_to_bp(percent)
            .map_err(|reason| DaemonError::InvalidWeight { percent, reason })?;
        let mut notes = vec![];
        let previous = match self.state.rollouts.get(service) {
            Some(run) if !run.state.phase.is_over() => {
                if bp != 0 {
                    return Err(DaemonError::RolloutConflict {
                        service: service.to_owned(),
                        why: format!(
                            "a rollout is {:?} at {:.2}%, and its next step would undo a weight \
                             set by hand; `canaryctl rollout pause {service}` holds the weight \
                             where it is, `canaryctl rollback {service}` (or set-weight \
                             {service} 0) ends it with the canary at 0%, `canaryctl rollout \
                             abort {service}` ends it so that set-weight is yours again",
                            run.state.phase,
                            f64::from(run.weight_bp()) / 100.0
                        ),
                    });
                }
                let previous = self.dp.weight(service).unwrap_or(0);
                self.control_rollout(service, rollouts::Control::Rollback, unix_ms())?;
                notes.push(format!(
                    "the rollout of {service} ended as rolled back (set-weight 0 is a rollback)"
                ));
                previous
            }
            _ => {
                let next = self.state.clone();
                self.commit_weight(service, Some(bp), next, "set-weight")?
            }
        };
        // The weight is stored either way; say when no traffic is split.
        let warnings = notes
            .into_iter()
            .chain(self.interfaces.iter().filter(|i| !i.attached).map(|i| {
                format!(
                    "{}: {}; the weight is stored, but canary splits no traffic there",
                    i.name,
                    i.problem.as_deref().unwrap_or("not attached")
                )
            }))
            .collect();
        Ok(WeightSet {
            service: service.to_owned(),
            previous_percent: api::bp_to_percent(previous),
            percent: api::bp_to_percent(bp),
            warnings,
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
    /// bursts, lost or reordered events change nothing. Then it asks the
    /// kernel what runs on each interface (`inspect`): a program detached
    /// or replaced behind canaryd's back, or pinned maps that are not the
    /// programs' maps, is logged once per change, counted and shown in
    /// status; such an interface is attached again only when `repair` (a
    /// reload) says so, never on its own: that would fight whoever did it.
    /// Returns whether anything changed.
    pub fn check_interfaces(&mut self, repair: bool) -> bool {
        let mut changed = false;
        let maps_problem = inspect::maps_problem(&self.expected);
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
            let tampered = self.tampered.contains(&name);
            if now == iface.ifindex && (iface.attached || (tampered && !repair)) {
                changed |= verify(
                    iface,
                    &self.expected,
                    self.tcx.contains(&name),
                    maps_problem.as_deref(),
                    &mut self.tampered,
                );
                // A repair (reload) mends what this very check found, not
                // only what an earlier one did.
                if !(repair && self.tampered.contains(&name)) {
                    continue;
                }
            }
            let started = std::time::Instant::now();
            match self.dp.attach(&name, iface.hook) {
                Ok(attached) => {
                    iface.reattached += 1;
                    let what = match (iface.ifindex, iface.attached) {
                        (0, _) => format!("back as ifindex {now}"),
                        (old, true) => format!("replaced (ifindex {old} -> {now})"),
                        (_, false) => format!("ifindex {now}"),
                    };
                    log::info!(
                        "{name}: {what}; re-attached in {:.1} ms: {}, through {} (re-attach #{})",
                        started.elapsed().as_secs_f64() * 1e3,
                        attached.ingress(),
                        attached.via,
                        iface.reattached
                    );
                    iface.attached = true;
                    iface.ifindex = now;
                    iface.xdp = attached.xdp;
                    iface.problem = None;
                    self.tampered.remove(&name);
                    if matches!(attached.via, Attachment::Netlink { .. }) {
                        self.tcx.remove(&name);
                    } else {
                        self.tcx.insert(name.clone());
                    }
                    verify(
                        iface,
                        &self.expected,
                        self.tcx.contains(&name),
                        maps_problem.as_deref(),
                        &mut self.tampered,
                    );
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
        let warnings = config_warnings(&new, &self.config_path);
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
        let orphans = self.dp.forget_removed();
        if orphans != 0 {
            log::info!(
                "dropped {orphans} flow entries of removed services: their packets now pass to the host untranslated"
            );
        }
        // SIGHUP is what an operator tries when an interface came back, or
        // when the programs were detached behind canaryd's back.
        self.check_interfaces(true);
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
        for w in &warnings {
            log::warn!("{w}");
        }
        report.warnings = warnings;
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
        differs(
            "interfaces",
            old.interfaces != new.interfaces || old.hooks != new.hooks,
        );
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
        differs(
            "latency_sampling",
            old.latency_sampling != new.latency_sampling,
        );
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

/// After a failed attach at start: takes the programs off the interfaces
/// this start attached that the pins did not have before (and the failed
/// one's record), so only what served before serves. Best effort: a
/// failure here is logged, the attach error is what is returned.
fn undo_new_attachments(
    dp: &mut Dataplane,
    before: &[String],
    attached: &[InterfaceStatus],
    failed: &str,
) {
    let new = attached
        .iter()
        .map(|i| i.name.as_str())
        .chain([failed])
        .filter(|name| !before.iter().any(|b| b == name));
    for name in new {
        if let Err(e) = dp.detach(name) {
            log::error!("{name}: taking the programs off again after the failed start: {e}");
        }
    }
}

/// Removes the state file; returns whether there was one.
fn remove_state_file(daemon: &DaemonConfig) -> Result<bool, DaemonError> {
    match std::fs::remove_file(state::path(&daemon.state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DaemonError::StateWrite {
            dir: daemon.state_dir.clone(),
            source: e,
        }),
    }
}

/// Compares one attached interface with what the kernel runs now and
/// records the difference in `iface`; returns whether its status changed.
/// A new problem is logged once and counted; its end is logged too.
fn verify(
    iface: &mut InterfaceStatus,
    expected: &Expected,
    tcx: bool,
    maps_problem: Option<&str>,
    tampered: &mut BTreeSet<String>,
) -> bool {
    let name = iface.name.clone();
    let before = (iface.attached, iface.problem.clone());
    let hook_problem = match inspect::hooks(iface.ifindex) {
        Ok(hooks) => {
            let problem = inspect::hook_problem(expected, &hooks, iface.hook, tcx);
            iface.xdp_program_id = hooks.xdp.map(|(id, _)| id);
            if iface.hook == Hook::Xdp
                && let Some((_, Some(mode))) = hooks.xdp
            {
                iface.xdp = Some(mode);
            }
            iface.ingress_program_ids = hooks.tcx_ingress;
            iface.egress_program_ids = hooks.tcx_egress;
            iface.attached = problem.is_none();
            if problem.is_some() {
                tampered.insert(name.clone());
            }
            problem
        }
        // Not knowing is a problem too, but not proof of a detach.
        Err(e) => Some(e.to_string()),
    };
    iface.problem = match (hook_problem, maps_problem) {
        (None, None) => None,
        (Some(h), None) => Some(h),
        (None, Some(m)) => Some(m.to_owned()),
        (Some(h), Some(m)) => Some(format!("{h}; {m}")),
    };
    if (iface.attached, iface.problem.clone()) == before {
        return false;
    }
    match &iface.problem {
        Some(problem) => {
            iface.mismatches += 1;
            let fix = if iface.attached {
                ""
            } else {
                "; canary does not split new connections here until `canaryctl reload` \
                 (or SIGHUP) or a restart attaches its programs again"
            };
            log::warn!("{name}: the kernel does not run what canaryd set up: {problem}{fix}");
        }
        None => log::info!("{name}: the kernel runs canary's programs with canary's maps again"),
    }
    true
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
