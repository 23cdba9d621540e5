//! Rollouts on the owner's side: start, pause, resume, promote, abort,
//! roll back, and apply a decision the driver took. Each carries out the
//! effect the controller decided (`controller::effect`): at most one weight
//! (one map write), persisted with the rollout, and the canary's flows
//! reset when it says so. Nothing here decides what a move changes.

use crate::model::rollout::{Action, Phase};
use canary_common::VERSION_CANARY;

use super::{Daemon, DaemonError, observe, state::State};
use crate::controller::effect::Control;
use crate::{
    api::RolloutReport,
    controller::{
        effect::{Act, Effect, effect},
        operate::operate,
        plan::{Mode, OnRollback},
        policy::Decision,
        run::{Reading, RolloutRun},
    },
    model::weight::Weight,
};

impl Daemon {
    /// `service`'s rollout as it stands, for an answer to a command.
    pub fn rollout_report(&self, service: &str) -> Result<RolloutReport, DaemonError> {
        let run = self
            .state
            .rollouts
            .get(service)
            .ok_or_else(|| DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: "no rollout has been started".into(),
            })?;
        let weight = self.dp.weight(service).unwrap_or(Weight::ZERO);
        let rollbacks = self.state.rollbacks.get(service).copied().unwrap_or(0);
        Ok(observe::report(
            service,
            run,
            weight,
            &self.reading(service)?,
            rollbacks,
        ))
    }

    /// The answer to a rollback of a service that has no rollout: its
    /// weight, no history.
    pub fn rollback_report(&self, service: &str) -> Result<RolloutReport, DaemonError> {
        let weight = self.dp.weight(service).unwrap_or(Weight::ZERO);
        Ok(RolloutReport {
            service: service.to_owned(),
            phase: Phase::RolledBack,
            reason: "rolled back by an operator (no rollout was running)".into(),
            mode: Mode::Enforce,
            on_rollback: OnRollback::Drain,
            step: 0,
            steps: vec![],
            weight,
            observed_canary_share: None,
            interval_ms: 0,
            looks: 0,
            failed: 0,
            failed_checks_limit: 0,
            inconclusive_streak: 0,
            max_inconclusive: 0,
            started_unix_ms: 0,
            next_at_unix_ms: 0,
            history: vec![],
            rollbacks: self.state.rollbacks.get(service).copied().unwrap_or(0),
            hosts: None,
        })
    }

    /// Both versions' signals now, summed over CPUs.
    pub fn reading(&self, service: &str) -> Result<Reading, DaemonError> {
        Ok(self.dp.reading(service)?)
    }

    /// Starts `service`'s configured rollout at its first step.
    pub fn start_rollout(
        &mut self,
        service: &str,
        now_unix_ms: u64,
    ) -> Result<RolloutRun, DaemonError> {
        self.config_weight(service)?;
        let plan = self.config.rollouts.get(service).cloned().ok_or_else(|| {
            DaemonError::RolloutNotConfigured {
                service: service.to_owned(),
            }
        })?;
        if let Some(run) = self.state.rollouts.get(service)
            && !run.state.phase.is_over()
        {
            return Err(DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: format!("a rollout is already {:?}", run.state.phase),
            });
        }
        let mut run = RolloutRun::start(plan, self.reading(service)?, now_unix_ms);
        let effect = effect(Some(&run.plan), 0, Act::Start);
        let mut next = self.state.clone();
        run.state.generation = next.next_generation();
        next.rollouts.insert(service.to_owned(), run.clone());
        self.carry_out(service, effect, next, "rollout start")?;
        log::info!(
            "service {service}: rollout started at {:.2} ({} steps, every {:?}, {:?})",
            run.weight(),
            run.plan.steps.len(),
            run.plan.interval,
            run.plan.mode
        );
        Ok(run)
    }

    /// An operator's pause, resume, promote, abort or rollback.
    pub fn control_rollout(
        &mut self,
        service: &str,
        control: Control,
        now_unix_ms: u64,
    ) -> Result<Option<RolloutRun>, DaemonError> {
        self.config_weight(service)?;
        let current = self.state.rollouts.get(service).cloned();
        // A rollback needs no rollout: it is the one-write way back.
        if control == Control::Rollback && current.as_ref().is_none_or(|r| r.state.phase.is_over())
        {
            let next = self.state.clone();
            let effect = effect(None, 0, Act::Operator(control));
            self.carry_out(service, effect, next, "rollback")?;
            return Ok(current);
        }
        let Some(mut run) = current else {
            return Err(DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: "no rollout has been started".into(),
            });
        };
        let effect = operate(&mut run, control).map_err(|e| DaemonError::RolloutConflict {
            service: service.to_owned(),
            why: e.to_string(),
        })?;
        if control == Control::Resume {
            // The next interval starts now.
            run.last = self.reading(service)?;
            run.next_at_unix_ms = now_unix_ms + run.plan.interval.as_millis() as u64;
        }
        let mut next = self.state.clone();
        // A look begun before this control must not land after it.
        run.state.generation = next.next_generation();
        next.rollouts.insert(service.to_owned(), run.clone());
        if control == Control::Rollback {
            *next.rollbacks.entry(service.to_owned()).or_default() += 1;
        }
        self.carry_out(service, effect, next, "rollout control")?;
        log::info!("service {service}: rollout {control:?}");
        Ok(Some(run))
    }

    /// Carries out a decision the driver took on the rollout as it was after
    /// `looks` evaluations in its generation (`decision.next.generation`);
    /// refused when the rollout has moved on since: another look was
    /// applied, an operator paused, resumed, aborted or started it again.
    pub fn apply_decision(
        &mut self,
        service: &str,
        looks: u32,
        decision: Decision,
        reading: Reading,
        now_unix_ms: u64,
    ) -> Result<RolloutRun, DaemonError> {
        let Some(mut run) = self.state.rollouts.get(service).cloned() else {
            return Err(DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: "no rollout to apply a decision to".into(),
            });
        };
        let generation = decision.next.generation;
        if run.state.looks != looks
            || run.state.generation != generation
            || run.state.phase != Phase::Running
        {
            return Err(DaemonError::RolloutConflict {
                service: service.to_owned(),
                why: format!(
                    "the decision was taken on look {looks} of generation {generation}; the \
                     rollout is {:?} after look {} of generation {} (an operator or a new \
                     start moved it on meanwhile)",
                    run.state.phase, run.state.looks, run.state.generation
                ),
            });
        }
        let action = decision.action;
        run.state = decision.next;
        run.advance(action, reading, now_unix_ms);
        let mut next = self.state.clone();
        next.rollouts.insert(service.to_owned(), run.clone());
        if action == Action::Rollback {
            *next.rollbacks.entry(service.to_owned()).or_default() += 1;
        }
        self.carry_out(service, decision.effect, next, "rollout")?;
        let level = if matches!(action, Action::Hold) {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        log::log!(
            level,
            "service {service}: rollout look {}: {}{}",
            run.state.looks,
            decision.reason,
            if run.plan.mode == Mode::DryRun {
                " (dry-run: no weight changed)"
            } else {
                ""
            }
        );
        Ok(run)
    }

    /// Carries out `effect` with `next` as the state: its weight (one map
    /// write, persisted with `next`; see `commit_weight`), then, when it
    /// says so, the canary's flow reset, once new flows go to stable.
    pub(super) fn carry_out(
        &mut self,
        service: &str,
        effect: Effect,
        next: State,
        what: &'static str,
    ) -> Result<(), DaemonError> {
        self.commit_weight(service, effect.weight, next, what)?;
        if effect.reset_canary {
            self.reset_canary_flows(service);
        }
        Ok(())
    }

    /// `on_rollback = "reset"`: the canary's flow entries go, so their
    /// next packets are decided again (weight 0: stable), which resets them.
    fn reset_canary_flows(&mut self, service: &str) {
        match self.dp.forget_flows(service, VERSION_CANARY) {
            Ok(n) => log::warn!("service {service}: rollback reset {n} canary connections"),
            Err(e) => log::error!("service {service}: resetting canary connections failed: {e}"),
        }
    }
}
