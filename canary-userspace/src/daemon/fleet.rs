//! The owner's side of a fleet rollout (`fleet` drives it): apply what the
//! fleet decided to this host's data path, give new flows to stable when
//! cut off from the fleet's store, and tell what this host publishes. The
//! decisions themselves are taken by the fleet's leader, not here.

use std::collections::BTreeMap;

use super::{Daemon, DaemonError};
use crate::{
    api::fleet::FleetLine,
    controller::{effect::Effect, run::Reading},
    model::{rollout::Phase, weight::Weight},
};

/// One fleet generation for this host to apply.
#[derive(Clone, Debug)]
pub struct Generation {
    pub number: u64,
    pub weight: Weight,
    pub reset_canary: bool,
}

/// What `fleet_apply` did.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    /// The generation this host has applied now.
    pub generation: u64,
    /// It was new to this host.
    pub new: bool,
}

/// What this host publishes about one service.
#[derive(Clone, Debug)]
pub struct Published {
    pub reading: Reading,
    pub applied: u64,
    pub weight: Weight,
}

impl Daemon {
    /// Takes `line` as the service's fleet rollout (status and metrics
    /// show it) and applies `generation` if this host has not yet: its
    /// weight in one map write, its flow reset. `restore` applies the
    /// weight again even when the generation was applied (back from a
    /// cut-off).
    pub fn fleet_apply(
        &mut self,
        service: &str,
        line: FleetLine,
        generation: Generation,
        restore: bool,
    ) -> Result<Applied, DaemonError> {
        self.config_weight(service)?;
        let applied = self.state.fleet_applied.get(service).copied().unwrap_or(0);
        let new = generation.number > applied;
        let mut next = self.state.clone();
        let was = next.fleet_lines.get(service).map(|l| l.phase);
        if line.phase == Phase::RolledBack && was.is_some_and(|p| p != Phase::RolledBack) {
            // canary_rollbacks_total counts the fleet's rollbacks here too.
            *next.rollbacks.entry(service.to_owned()).or_default() += 1;
        }
        next.fleet_lines.insert(service.to_owned(), line);
        let effect = if new || restore {
            next.fleet_applied
                .insert(service.to_owned(), generation.number.max(applied));
            Effect {
                weight: Some(generation.weight),
                reset_canary: new && generation.reset_canary,
            }
        } else {
            Effect::NONE
        };
        self.carry_out(service, effect, next, "fleet")?;
        if new {
            log::info!(
                "service {service}: applied fleet generation {} (weight {:.2})",
                generation.number,
                generation.weight
            );
        }
        Ok(Applied {
            generation: generation.number.max(applied),
            new,
        })
    }

    /// Cut off from the fleet's store for longer than its grace: every
    /// service whose fleet rollout is in progress sends new flows to
    /// stable (weight 0, one map write each; established flows stay).
    /// Returns the services changed.
    pub fn fleet_cut_off(&mut self) -> Vec<String> {
        let live: Vec<String> = self
            .state
            .fleet_lines
            .iter()
            .filter(|(_, line)| !line.phase.is_over())
            .map(|(s, _)| s.clone())
            .collect();
        let mut changed = vec![];
        for service in live {
            if self.dp.weight(&service).unwrap_or(Weight::ZERO) == Weight::ZERO {
                continue;
            }
            let next = self.state.clone();
            match self.commit_weight(&service, Some(Weight::ZERO), next, "fleet cut off") {
                Ok(_) => changed.push(service),
                Err(e) => log::error!("service {service}: sending new flows to stable: {e}"),
            }
        }
        changed
    }

    /// Per configured service: its reading, the fleet generation applied
    /// and the weight in use.
    pub fn fleet_published(&self) -> BTreeMap<String, Published> {
        self.config
            .services
            .iter()
            .filter_map(|s| {
                let reading = self.reading(&s.name).ok()?;
                Some((
                    s.name.clone(),
                    Published {
                        reading,
                        applied: self.state.fleet_applied.get(&s.name).copied().unwrap_or(0),
                        weight: self.dp.weight(&s.name).unwrap_or(Weight::ZERO),
                    },
                ))
            })
            .collect()
    }

    /// The configured rollout plan of `service`, for a fleet start.
    pub fn rollout_plan(
        &self,
        service: &str,
    ) -> Result<crate::controller::plan::RolloutPlan, DaemonError> {
        self.config_weight(service)?;
        self.config.rollouts.get(service).cloned().ok_or_else(|| {
            DaemonError::RolloutNotConfigured {
                service: service.to_owned(),
            }
        })
    }
}
