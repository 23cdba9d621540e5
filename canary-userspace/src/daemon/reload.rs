//! Reload: read the config again and apply what changed, refusing what
//! only a restart may change.

use std::collections::BTreeSet;

use super::{Daemon, DaemonError, overrides::config_warnings, reach, save_state, state::State};
use crate::{
    api::Reloaded,
    api::changes,
    config::{self, Config},
    model::service::ServiceSpec,
};

impl Daemon {
    /// Reads the config file again and applies it. Everything is validated
    /// before anything changes; an invalid file changes nothing.
    pub fn reload(&mut self) -> Result<Reloaded, DaemonError> {
        if !self.test_hold.is_zero() {
            log::warn!("{}: {:?}", super::TEST_HOLD_STARTED, self.test_hold);
            std::thread::sleep(self.test_hold);
        }
        // An interface this daemon serves may be gone for a while: that is
        // reported in status, not a reason to refuse a reload.
        let serves = |name: &str| {
            self.config.daemon.interfaces.iter().any(|i| i == name)
                || crate::host::interfaces::interface_exists(name)
        };
        let mut new =
            config::load_with(&self.config_path, &serves).map_err(DaemonError::InvalidConfig)?;
        self.overrides.apply(&mut new);
        self.check_restart_only(&new)?;
        let warnings = config_warnings(&new, &self.config_path);
        let old_specs = self.registered_specs();
        let wanted = self.wanted_specs(&new);
        let mut report = changes(&old_specs, &wanted);
        let mut next = self.state.clone();
        let applied = self.apply_specs(&report.removed, &wanted).and_then(|()| {
            if next.forget_obsolete(&new.services) {
                save_state(&new.daemon.state_dir, &next).map_err(|error| {
                    DaemonError::StateWrite {
                        dir: new.daemon.state_dir.clone(),
                        error,
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
                    let config_weight = config
                        .services
                        .iter()
                        .find(|c| c.name == s.name)
                        .map_or(s.weight, |c| c.weight);
                    (s.clone(), state.source_of(&s.name, config_weight))
                })
                .collect::<Vec<_>>()
        };
        let before = sourced(&old_specs, &self.config, &self.state);
        let after = sourced(&wanted, &new, &next);
        report.changes = changes::between(&changes::view(&before), &changes::view(&after));
        self.config = new;
        self.state = next;
        // Services added or moved: status's flag looks at their clients.
        self.client_paths = reach::gather(&self.dp, &self.config.services);
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
    fn check_restart_only(&self, new_config: &Config) -> Result<(), DaemonError> {
        let new = &new_config.daemon;
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
        if self.config.fleet != new_config.fleet {
            errors.push(format!(
                "{file}: fleet: changing it needs a restart of canaryd (the fleet's lease, \
                 watch and leadership are taken at start)"
            ));
        }
        let leaving: BTreeSet<String> = old
            .interfaces
            .iter()
            .filter(|i| !new.interfaces.contains(i))
            .cloned()
            .collect();
        if !leaving.is_empty() {
            // What a restart with the new file would look at.
            let paths = reach::gather(&self.dp, &new_config.services);
            if let Some(cut) = reach::left_behind(&paths, &leaving, &new.interfaces) {
                errors.push(format!(
                    "{file}: daemon.interfaces: a restart with these interfaces would be refused too: {}",
                    cut.refusal(&new.interfaces)
                ));
            }
        }
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
                weight: self.state.weight_for(&s.name, s.weight),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kinds::{Affinity, AppProtocol, Protocol};

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            vip: "198.18.0.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
            affinity: Affinity::Flow,
            app_protocol: AppProtocol::Auto,
            stable: vec!["198.18.0.1:8081".parse().unwrap()],
            canary: vec!["198.18.0.1:8082".parse().unwrap()],
            weight: crate::model::weight::Weight::ZERO,
        }
    }

    /// The data path's service record carries `app_protocol`, so a reload
    /// that changes only it must write the record again.
    #[test]
    fn a_changed_app_protocol_updates_the_service() {
        let mut h2c = spec("model");
        h2c.app_protocol = AppProtocol::H2c;
        let r = changes(&[spec("model"), spec("same")], &[h2c, spec("same")]);
        assert_eq!(r.updated, ["model"]);
        assert_eq!(r.unchanged, ["same"]);
        assert!(r.added.is_empty() && r.removed.is_empty(), "{r:?}");
    }
}
