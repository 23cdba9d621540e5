//! What carrying out a rollout's move changes in the data path: the canary
//! weight to write (one map write) and whether the canary's flows are
//! reset. Decided once, here, from the plan (its mode and `on_rollback`),
//! the step and what moved the rollout; the daemon does what the `Effect`
//! says and derives none of it.
//!
//! Dry-run governs the controller's own decisions only: they are logged,
//! exported and kept in the history, never carried out. An operator's
//! command is carried out in either mode, because it is a command, not a
//! judgement of the controller's:
//! - rollback is the emergency button: canary weight 0 in one map write
//!   and, with `on_rollback = "reset"`, the canary's flows reset, in
//!   dry-run too (`set-weight 0` during a rollout is the same rollback);
//! - promote sets the canary to 100 % and abort to 0 % (its flows drain:
//!   an abort does not judge the canary bad), in dry-run too;
//! - pause and resume change no weight.
//!
//! Starting a rollout sets its first step, as the controller's steps are:
//! in enforce mode only. With no rollout in progress (none was started,
//! or it ended) only a rollback means anything: canary weight 0, and no
//! flow reset, as no plan's `on_rollback` is in force.

use super::plan::{Mode, OnRollback, RolloutPlan};
use crate::model::{rollout::Action, weight::Weight};

/// An operator's command on a rollout (canaryctl, the control API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// The canary becomes the whole of new traffic now.
    Promote,
    /// Stop and send new flows to stable; not a failure of the canary.
    Abort,
    /// Stop and send new flows to stable: the canary is judged bad.
    Rollback,
}

/// What moves a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// The rollout starts at its first step.
    Start,
    /// The controller's decision on a look (`policy::evaluate`).
    Look(Action),
    /// An operator's command.
    Operator(Control),
}

/// What carrying a move out changes in the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The canary weight to write; None leaves it as it is.
    pub weight: Option<Weight>,
    /// Forget the canary's flow entries, so their next packets reach
    /// stable, which resets them (`on_rollback = "reset"`).
    pub reset_canary: bool,
}

impl Effect {
    /// Nothing changes in the data path.
    pub const NONE: Effect = Effect {
        weight: None,
        reset_canary: false,
    };
}

/// The effect of `act` on a rollout following `plan` (None: no rollout in
/// progress) at `step`, by the rules in this module's documentation.
pub fn effect(plan: Option<&RolloutPlan>, step: usize, act: Act) -> Effect {
    let Some(plan) = plan else {
        return match act {
            Act::Operator(Control::Rollback) => Effect {
                weight: Some(Weight::ZERO),
                reset_canary: false,
            },
            _ => Effect::NONE,
        };
    };
    let reset_on_rollback = plan.on_rollback == OnRollback::Reset;
    match act {
        Act::Operator(Control::Pause | Control::Resume) => Effect::NONE,
        Act::Operator(Control::Promote) => weight(Weight::FULL),
        Act::Operator(Control::Abort) => weight(Weight::ZERO),
        Act::Operator(Control::Rollback) => Effect {
            weight: Some(Weight::ZERO),
            reset_canary: reset_on_rollback,
        },
        // The controller's moves: dry-run logs them and changes nothing.
        _ if plan.mode == Mode::DryRun => Effect::NONE,
        Act::Start => weight(plan.step_weight(0)),
        Act::Look(Action::Hold | Action::Pause) => Effect::NONE,
        Act::Look(Action::StepUp { step }) => weight(plan.step_weight(step)),
        Act::Look(Action::Promote) => weight(plan.step_weight(step)),
        Act::Look(Action::Rollback) => Effect {
            weight: Some(Weight::ZERO),
            reset_canary: reset_on_rollback,
        },
    }
}

fn weight(w: Weight) -> Effect {
    Effect {
        weight: Some(w),
        reset_canary: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [&str; 4] = [
        "enforce+drain",
        "enforce+reset",
        "dry-run+drain",
        "dry-run+reset",
    ];

    /// Every (mode x on_rollback) plan, in the order of `COLUMNS`.
    fn plans() -> [RolloutPlan; 4] {
        // Only the steps, the mode and `on_rollback` matter here.
        let with = |mode, on_rollback| RolloutPlan {
            steps: ["5", "25", "90"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            mode,
            on_rollback,
            ..RolloutPlan::default()
        };
        [
            with(Mode::Enforce, OnRollback::Drain),
            with(Mode::Enforce, OnRollback::Reset),
            with(Mode::DryRun, OnRollback::Drain),
            with(Mode::DryRun, OnRollback::Reset),
        ]
    }

    /// `(weight in basis points, reset)`; None: no weight written.
    type Want = (Option<u16>, bool);
    const NONE: Want = (None, false);

    #[test]
    fn every_mode_act_and_on_rollback() {
        use Act::{Look, Operator, Start};
        let stay = [NONE; 4];
        // (act, the step the rollout is at, what it does per column)
        let table: [(Act, usize, [Want; 4]); 11] = [
            (
                Start,
                0,
                [(Some(500), false), (Some(500), false), NONE, NONE],
            ),
            (Look(Action::Hold), 1, stay),
            (
                Look(Action::StepUp { step: 2 }),
                1,
                [(Some(9000), false), (Some(9000), false), NONE, NONE],
            ),
            // The last step's weight, which need not be 100 %.
            (
                Look(Action::Promote),
                2,
                [(Some(9000), false), (Some(9000), false), NONE, NONE],
            ),
            (Look(Action::Pause), 1, stay),
            (
                Look(Action::Rollback),
                1,
                [(Some(0), false), (Some(0), true), NONE, NONE],
            ),
            (Operator(Control::Pause), 1, stay),
            (Operator(Control::Resume), 1, stay),
            (Operator(Control::Promote), 1, [(Some(10_000), false); 4]),
            (Operator(Control::Abort), 1, [(Some(0), false); 4]),
            // The emergency button: in dry-run too.
            (
                Operator(Control::Rollback),
                1,
                [
                    (Some(0), false),
                    (Some(0), true),
                    (Some(0), false),
                    (Some(0), true),
                ],
            ),
        ];
        let plans = plans();
        let mut seen = 0;
        for (act, step, wants) in table {
            for (column, plan) in plans.iter().enumerate() {
                let got = effect(Some(plan), step, act);
                let got = (got.weight.map(Weight::bp), got.reset_canary);
                assert_eq!(
                    got, wants[column],
                    "{act:?} at step {step}, {}",
                    COLUMNS[column]
                );
                seen += 1;
            }
        }
        // Every act: start, the five look actions, the five controls.
        assert_eq!(seen, 11 * 4);
    }

    #[test]
    fn with_no_rollout_in_progress_only_a_rollback_acts() {
        use Act::{Look, Operator, Start};
        let acts = [
            Start,
            Look(Action::Hold),
            Look(Action::StepUp { step: 1 }),
            Look(Action::Promote),
            Look(Action::Pause),
            Look(Action::Rollback),
            Operator(Control::Pause),
            Operator(Control::Resume),
            Operator(Control::Promote),
            Operator(Control::Abort),
        ];
        for act in acts {
            assert_eq!(effect(None, 0, act), Effect::NONE, "{act:?}");
        }
        assert_eq!(
            effect(None, 0, Operator(Control::Rollback)),
            Effect {
                weight: Some(Weight::ZERO),
                reset_canary: false
            }
        );
    }
}
