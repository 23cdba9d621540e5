//! A service's canary weight at run time: one map write, then the state
//! file.

use super::{
    Control, Daemon, DaemonError, save_state,
    state::{State, WeightOverride},
    unix_ms,
};
use crate::{
    api::{self, WeightSet},
    config::weight_percent_to_bp,
};

impl Daemon {
    /// Sets a service's canary weight: one map write, then the state file,
    /// so a restart keeps it. When the state file cannot be written the
    /// kernel goes back to the old weight and the request fails; if even
    /// that write fails, the error says so.
    ///
    /// While a rollout of the service is running or paused, its next step
    /// would undo a weight set by hand: 0 ends the rollout as a rollback
    /// (the one-write way back, as `canaryctl rollback`, in dry-run too),
    /// any other weight is refused with the commands that do what was
    /// meant.
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
                self.control_rollout(service, Control::Rollback, unix_ms())?;
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
    pub(super) fn config_weight(&self, service: &str) -> Result<u16, DaemonError> {
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
}
