//! The control socket's requests that act on the fleet when canaryd has a
//! `[fleet]`: rollout commands and status go to the fleet's store
//! (`canary_userspace::fleet::commands`), from whichever host they reach.
//! Everything else is answered as on a single host.

use canary_userspace::{
    api::{Request, Response, RolloutAction, WeightSet},
    daemon::{Control, owner::Handle},
    fleet::{
        Fleet,
        commands::{self, Refused},
    },
    model::weight::Weight,
};
use serde::Serialize;

use crate::answer::encode;

/// The answer to `request` if the fleet answers it; the request back if
/// this host answers it alone.
pub async fn handle(fleet: &Fleet, owner: &Handle, request: Request) -> Result<String, Request> {
    let answer = match request {
        Request::Rollout { service, action } => {
            let control = match action {
                RolloutAction::Start => {
                    return Ok(answer(commands::start(fleet, owner, &service).await));
                }
                RolloutAction::Pause => Control::Pause,
                RolloutAction::Resume => Control::Resume,
                RolloutAction::Promote => Control::Promote,
                RolloutAction::Abort => Control::Abort,
            };
            answer(commands::control(fleet, &service, control).await)
        }
        Request::RolloutStatus { service } => answer(commands::status(fleet, &service).await),
        Request::FleetStatus {} => answer(commands::fleet_status(fleet).await),
        // With no fleet rollout in progress, a rollback is this host's
        // weight to 0, as on a single host.
        Request::Rollback { service } => match commands::in_progress(fleet, &service).await {
            Ok(true) => answer(commands::control(fleet, &service, Control::Rollback).await),
            Ok(false) => return Err(Request::Rollback { service }),
            Err(e) => answer::<()>(Err(e)),
        },
        // set-weight 0 during a fleet rollout is the fleet's rollback; any
        // other weight is refused by this host (its copy of the rollout).
        Request::SetWeight { service, weight } if weight == Weight::ZERO => {
            match commands::in_progress(fleet, &service).await {
                Ok(true) => answer(set_weight_zero(fleet, &service).await),
                Ok(false) => return Err(Request::SetWeight { service, weight }),
                Err(e) => answer::<()>(Err(e)),
            }
        }
        other => return Err(other),
    };
    Ok(answer)
}

async fn set_weight_zero(fleet: &Fleet, service: &str) -> Result<WeightSet, Refused> {
    let report = commands::status(fleet, service).await?;
    commands::control(fleet, service, Control::Rollback).await?;
    Ok(WeightSet {
        service: service.to_owned(),
        previous: report.weight,
        weight: Weight::ZERO,
        warnings: vec![format!(
            "the fleet rollout of {service} ended as rolled back on every host (set-weight 0 \
             is a rollback)"
        )],
    })
}

fn answer<T: Serialize>(result: Result<T, Refused>) -> String {
    encode(&match result {
        Ok(data) => Response::ok(data),
        Err(r) => Response::failed(r.code, r.message),
    })
}
