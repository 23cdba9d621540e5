//! What an operator's command does to a rollout as the store keeps it:
//! the new phase and reason, and the effect to carry out. One rule for a
//! single host (`daemon::rollouts`) and a fleet (`fleet::commands`).

use super::{
    effect::{Act, Control, Effect, effect},
    run::RolloutRun,
};
use crate::model::rollout::Phase;

/// Why an operator's command does not apply to the rollout as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the rollout is {phase:?}: {why}")]
pub struct NotNow {
    pub phase: Phase,
    pub why: &'static str,
}

/// Moves `run` by `control`; the effect on the data path, or why the
/// command does not apply to the rollout as it is. A resume also starts
/// the step's counts of inconclusive looks afresh; the caller starts the
/// next interval (its reading and time).
pub fn operate(run: &mut RolloutRun, control: Control) -> Result<Effect, NotNow> {
    let phase = run.state.phase;
    let conflict = |why: &'static str| NotNow { phase, why };
    let (new_phase, reason) = match control {
        _ if phase.is_over() => return Err(conflict("it has ended")),
        Control::Pause if phase == Phase::Paused => return Err(conflict("already paused")),
        Control::Resume if phase == Phase::Running => return Err(conflict("not paused")),
        Control::Pause => (Phase::Paused, "paused by an operator"),
        Control::Resume => (Phase::Running, ""),
        Control::Promote => (Phase::Promoted, "promoted by an operator"),
        Control::Abort => (Phase::Aborted, "aborted by an operator"),
        Control::Rollback => (Phase::RolledBack, "rolled back by an operator"),
    };
    // In dry-run too: dry-run holds back the controller's decisions, not
    // an operator's command (`effect`).
    let done = effect(Some(&run.plan), run.state.step, Act::Operator(control));
    run.state.phase = new_phase;
    run.state.reason = reason.to_owned();
    if control == Control::Resume {
        // Inconclusive intervals before the pause no longer count, and the
        // step gets a new max_step_duration.
        run.state.inconclusive_streak = 0;
        run.state.step_looks = 0;
    }
    Ok(done)
}
