//! The control socket: one JSON request line in, one JSON response line out.
//! Status is answered by the observer; set-weight and reload go to the
//! owner of the daemon's state and wait for its answer.

use canary_userspace::{
    Error,
    api::{ErrorCode, MAX_REQUEST_BYTES, Request, Response, RolloutAction, Version},
    daemon::{Control, unix_ms},
    error,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    time::{Duration, timeout},
};

use crate::{
    accept::{self, Gate},
    answer::{encode, reply},
    served::Served,
};

/// A client that sends nothing is dropped after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers requests, at most `gate.limit` connections at once; more wait
/// in the listen backlog for a slot.
pub async fn serve(listener: UnixListener, served: Served, gate: Gate) {
    accept::serve(listener, gate, move |stream| answer(stream, served.clone())).await
}

async fn answer(stream: UnixStream, served: Served) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = String::new();
    let bad = |why: String| encode(&Response::<()>::failed(ErrorCode::BadRequest, why));
    let mut out = match timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => return,
        Ok(Err(e)) => bad(format!("reading the request: {e}")),
        Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => {
            bad(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(Ok(_)) => match Request::decode(&line) {
            Err(refused) => encode(&Response::<()>::failed(refused.code, refused.message)),
            Ok(request) => handle(&served, request).await,
        },
    };
    out.push('\n');
    // A client that never reads its answer must not keep the slot.
    let _ = timeout(REQUEST_TIMEOUT, write.write_all(out.as_bytes())).await;
}

async fn handle(served: &Served, request: Request) -> String {
    let request = match &served.fleet {
        Some(fleet) => match crate::fleet::handle(fleet, &served.owner, request).await {
            Ok(answer) => return answer,
            Err(request) => request,
        },
        None => request,
    };
    handle_here(served, request).await
}

/// A request as a single host answers it.
async fn handle_here(served: &Served, request: Request) -> String {
    match request {
        Request::Version {} => encode(&Response::ok(Version::current())),
        Request::Status {} => encode(&match served.observer.status() {
            Ok(s) => Response::ok(s),
            Err(e) => Response::failed(ErrorCode::DataPath, format!("reading the data path: {e}")),
        }),
        Request::SetWeight { service, weight } => {
            reply(served.owner.set_weight(service, weight).await)
        }
        Request::Rollout { service, action } => {
            let now = unix_ms();
            reply(
                served
                    .owner
                    .call(format!("rollout {action:?} {service}"), move |d| {
                        match action {
                            RolloutAction::Start => d.start_rollout(&service, now).map(|_| ()),
                            RolloutAction::Pause => {
                                d.control_rollout(&service, Control::Pause, now).map(|_| ())
                            }
                            RolloutAction::Resume => d
                                .control_rollout(&service, Control::Resume, now)
                                .map(|_| ()),
                            RolloutAction::Promote => d
                                .control_rollout(&service, Control::Promote, now)
                                .map(|_| ()),
                            RolloutAction::Abort => {
                                d.control_rollout(&service, Control::Abort, now).map(|_| ())
                            }
                        }?;
                        d.rollout_report(&service)
                    })
                    .await,
            )
        }
        Request::Rollback { service } => {
            let now = unix_ms();
            reply(
                served
                    .owner
                    .call(format!("rollback {service}"), move |d| {
                        d.control_rollout(&service, Control::Rollback, now)?;
                        // A service that never had a rollout answers with
                        // its weight alone.
                        d.rollout_report(&service)
                            .or_else(|_| d.rollback_report(&service))
                    })
                    .await,
            )
        }
        Request::RolloutStatus { service } => encode(&match served.observer.rollout(&service) {
            Ok(Some(r)) => Response::ok(r),
            // Said apart, so a client can check a plan before it starts one.
            Ok(None) if !served.observer.planned(&service) => Response::failed(
                ErrorCode::RolloutNotConfigured,
                format!("service {service} has no [service.rollout] in the config"),
            ),
            Ok(None) => Response::failed(
                ErrorCode::RolloutConflict,
                format!("service {service}: no rollout has been started"),
            ),
            Err(e) => {
                let (code, message) = read_failed(&e);
                Response::failed(code, message)
            }
        }),
        Request::Reload {} => {
            let result = served.owner.reload().await;
            if let Err(e) = &result {
                log::error!("reload failed:\n{e}");
            }
            reply(result)
        }
        Request::FleetStatus {} => encode(&Response::<()>::failed(
            ErrorCode::NotAFleet,
            "this canaryd has no [fleet] in its config: it runs its rollouts alone",
        )),
    }
}

/// A failed read for a rollout's report: a service this daemon does not
/// have is the caller's mistake; anything else is the data path's (a map
/// read the kernel refused), with the kernel's error in the message.
fn read_failed(e: &Error) -> (ErrorCode, String) {
    match e {
        Error::UnknownService(_) => (ErrorCode::UnknownService, e.to_string()),
        _ => (
            ErrorCode::DataPath,
            format!("reading the data path: {}", error::chain(e)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use aya::{maps::MapError, sys::SyscallError};

    use super::*;

    #[test]
    fn a_failed_map_read_is_a_data_path_error_with_the_kernels_error() {
        let refused = Error::Map {
            name: "SIGNALS",
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_lookup_elem",
                io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            }),
        };
        assert_eq!(
            read_failed(&refused),
            (
                ErrorCode::DataPath,
                "reading the data path: map SIGNALS: `bpf_map_lookup_elem` failed: \
                 Operation not permitted (os error 1)"
                    .to_owned()
            )
        );
        assert_eq!(
            read_failed(&Error::UnknownService("modle".into())),
            (
                ErrorCode::UnknownService,
                "unknown service \"modle\"".to_owned()
            )
        );
    }
}
