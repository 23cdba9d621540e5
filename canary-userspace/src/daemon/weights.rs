//! A service's canary weight at run time: one map write, then the state
//! file.

use super::{
    Control, Daemon, DaemonError, save_state,
    state::{State, WeightOverride},
    unix_ms,
};
use crate::{api::WeightSet, model::weight::Weight};

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
    pub fn set_weight(&mut self, service: &str, weight: Weight) -> Result<WeightSet, DaemonError> {
        let mut notes = vec![];
        if let Some(line) = self.state.fleet_lines.get(service)
            && !line.phase.is_over()
        {
            // set-weight 0 during a fleet rollout is the fleet's rollback,
            // taken before it reaches here (canaryd's control socket).
            return Err(DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: format!(
                    "a fleet rollout is {:?}, and its next step would undo a weight set by \
                     hand on this host; `canaryctl rollout pause {service}` holds the fleet's \
                     weight where it is, `canaryctl rollback {service}` (or set-weight \
                     {service} 0) ends it with the canary at 0% on every host, `canaryctl \
                     rollout abort {service}` ends it so that set-weight is yours again",
                    line.phase
                ),
            });
        }
        let previous = match self.state.rollouts.get(service) {
            Some(run) if !run.state.phase.is_over() => {
                if weight != Weight::ZERO {
                    return Err(DaemonError::RolloutConflict {
                        service: service.to_owned(),
                        why: format!(
                            "a rollout is {:?} at {:.2}, and its next step would undo a weight \
                             set by hand; `canaryctl rollout pause {service}` holds the weight \
                             where it is, `canaryctl rollback {service}` (or set-weight \
                             {service} 0) ends it with the canary at 0%, `canaryctl rollout \
                             abort {service}` ends it so that set-weight is yours again",
                            run.state.phase,
                            run.weight()
                        ),
                    });
                }
                let previous = self.dp.weight(service).unwrap_or(Weight::ZERO);
                self.control_rollout(service, Control::Rollback, unix_ms())?;
                notes.push(format!(
                    "the rollout of {service} ended as rolled back (set-weight 0 is a rollback)"
                ));
                previous
            }
            _ => {
                let next = self.state.clone();
                self.commit_weight(service, Some(weight), next, "set-weight")?
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
            previous,
            weight,
            warnings,
        })
    }

    /// The config weight of a configured service.
    pub(super) fn config_weight(&self, service: &str) -> Result<Weight, DaemonError> {
        self.config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.weight)
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
        weight: Option<Weight>,
        mut next: State,
        what: &'static str,
    ) -> Result<Weight, DaemonError> {
        let config_weight = self.config_weight(service)?;
        let previous = self.dp.weight(service).unwrap_or(config_weight);
        if let Some(weight) = weight {
            self.dp.set_weight(service, weight)?;
            next.weights.insert(
                service.to_owned(),
                WeightOverride {
                    weight,
                    config_weight,
                },
            );
        }
        if let Err(e) = save_state(&self.config.daemon.state_dir, &next) {
            let cause = format!(
                "writing the state file in {} failed: {e}",
                self.config.daemon.state_dir.display()
            );
            let Some(weight) = weight else {
                return Err(DaemonError::Reverted { what, cause });
            };
            return Err(match self.dp.set_weight(service, previous) {
                Ok(()) => DaemonError::Reverted {
                    what,
                    cause: format!("{cause}; the weight stays {previous:.2}"),
                },
                Err(revert) => DaemonError::RevertFailed {
                    what,
                    cause: format!(
                        "{cause}; the kernel now uses {weight:.2}, which a restart would not keep"
                    ),
                    revert: revert.to_string(),
                },
            });
        }
        self.state = next;
        if let Some(weight) = weight
            && weight != previous
        {
            log::info!("service {service}: weight {previous:.2} -> {weight:.2} ({what})");
        }
        Ok(previous)
    }
}
