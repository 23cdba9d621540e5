//! A daemon's life on the pins: claim the pin directory, start on (or
//! from) the pinned data path, beat for the failsafe, detach everything.

use std::{collections::BTreeSet, path::Path, time::Duration};

use super::{
    Claim, Daemon, DaemonError, Detached, TEST_HOLD_ENV,
    overrides::{Overrides, config_warnings},
    reach, save_state,
    state::{self},
};
use crate::{
    api::InterfaceStatus,
    api::changes,
    config::{Config, DaemonConfig},
    kernel::bpffs,
    kernel::dataplane::{Attachment, Dataplane, LoadOptions, RemovedPins},
    kernel::lock::{self},
};

impl Daemon {
    /// Makes the bpffs directory ready (mounting a bpffs at /sys/fs/bpf when
    /// none is there, and saying in one line what that means for the pins)
    /// and takes the lock on it. Before anything else touches the kernel:
    /// a second canaryd on the same pins is refused here, nothing changed.
    pub fn claim(d: &DaemonConfig) -> Result<Claim, DaemonError> {
        let bpffs_err = |error| DaemonError::Bpffs {
            dir: d.bpffs.clone(),
            error,
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
        let attach_err = |interface: &str, error| DaemonError::Attach {
            interface: interface.to_owned(),
            error,
        };
        // Before anything changes: the interfaces this start would leave
        // must not be where a VIP's clients come in (`reach`).
        let before = dp.attached_interfaces().map_err(|e| attach_err("", e))?;
        let client_paths = reach::gather(&dp, &config.services);
        let leaving: BTreeSet<String> = before
            .iter()
            .filter(|b| !d.interfaces.contains(b))
            .cloned()
            .collect();
        if let Some(cut) = reach::left_behind(&client_paths, &leaving, &d.interfaces) {
            if !overrides.move_interfaces {
                return Err(DaemonError::WouldCutOffClients(cut.refusal(&d.interfaces)));
            }
            log::warn!("{}", cut.moved());
        }
        for w in config_warnings(&config, config_path) {
            log::warn!("{w}");
        }
        let mut state = state::load(&d.state_dir).map_err(|error| DaemonError::StateRead {
            dir: d.state_dir.clone(),
            error,
        })?;
        if state.forget_obsolete(&config.services) {
            save_state(&d.state_dir, &state).map_err(|error| DaemonError::StateWrite {
                dir: d.state_dir.clone(),
                error,
            })?;
        }
        for spec in &config.services {
            let mut spec = spec.clone();
            let source = state.source_of(&spec.name, spec.weight);
            spec.weight = state.weight_for(&spec.name, spec.weight);
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
                && kernel != spec.weight
            {
                log::warn!(
                    "service {}: the kernel had weight {kernel:.2}, using {:.2} from the config and state file",
                    spec.name,
                    spec.weight
                );
            }
            dp.upsert_service(&spec)?;
        }
        for stale in dp.prune_unclaimed() {
            log::info!(
                "removed a service an earlier run left and the config no longer has ({})",
                crate::model::service::endpoint_text(&stale)
            );
        }
        // Transactional: every configured interface is attached before any
        // interface the pins had is detached, so a failure leaves what was
        // serving serving.
        let expected = std::sync::Arc::new(dp.expected()?);
        let mut interfaces = vec![];
        let mut tcx = BTreeSet::new();
        for name in &d.interfaces {
            // Looked up before attaching: if the device is replaced in
            // between, the next check sees a new index and attaches again.
            let ifindex = crate::host::interfaces::interface_index(name).unwrap_or(0);
            let hook = d.hook(name);
            let attached = match dp.attach(name, hook) {
                Ok(a) => a,
                Err(error) => {
                    undo_new_attachments(&mut dp, &before, &interfaces, name);
                    return Err(DaemonError::AttachFailed {
                        interface: name.clone(),
                        error: Box::new(error),
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
        let attached: BTreeSet<String> = d.interfaces.iter().cloned().collect();
        for (service, paths) in &client_paths {
            if let Some(why) = reach::unreached(paths, &attached) {
                log::warn!("service {service}: {why}");
            }
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
            client_paths,
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
            Dataplane::remove_pins(&daemon.bpffs).map_err(|error| DaemonError::RemovePins {
                dir: daemon.bpffs.clone(),
                error,
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
            Dataplane::remove_layout(&daemon.bpffs).map_err(|error| DaemonError::RemovePins {
                dir: daemon.bpffs.clone(),
                error,
            })?;
        Ok(Detached {
            pins,
            state_file: remove_state_file(daemon)?,
        })
    }

    /// Tells the data path canaryd is alive (see the failsafe).
    pub fn heartbeat(&mut self) -> Result<(), DaemonError> {
        Ok(self.dp.heartbeat()?)
    }

    /// How often to beat: a third of the failsafe timeout, at most 5 s.
    pub fn heartbeat_every(&self) -> Duration {
        (self.config.daemon.failsafe_timeout / 3).min(Duration::from_secs(5))
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
            error: e,
        }),
    }
}
