//! Why a daemon operation failed, with the API code each failure travels
//! under (`api::ErrorCode`), so canaryctl and scripts can tell a typo from
//! a half-applied change.

use std::{io, path::PathBuf};

use crate::{
    api::ErrorCode,
    config::ConfigErrors,
    error::{Error, chain},
    kernel::lock::LockError,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("unknown service {name:?}; this daemon has: {}", known_list(.known))]
    UnknownService { name: String, known: Vec<String> },
    #[error("{0}")]
    InvalidConfig(ConfigErrors),
    #[error("{}", .0.join("\n"))]
    RestartRequired(Vec<String>),
    /// The interfaces asked for would leave a VIP's clients behind
    /// (`reach`); nothing was changed.
    #[error("{0}")]
    WouldCutOffClients(String),
    /// The operation failed part way and was undone: what ran before runs.
    #[error("{what} failed and was undone: {cause}")]
    Reverted { what: &'static str, cause: String },
    /// The operation failed part way and undoing it failed too.
    #[error(
        "{what} failed: {cause}; undoing it failed too: {revert}. The kernel may not run what canaryd last reported: check `canaryctl status`"
    )]
    RevertFailed {
        what: &'static str,
        cause: String,
        revert: String,
    },
    /// The data path failed (a map, a program, a pin, a link). Every
    /// variant here names its cause in its message, the kernel's errno
    /// included, so a reply or log line that shows one level is complete;
    /// none also returns it as `source()`, which would print it again
    /// wherever the chain is printed (`{:#}`, `error::chain`).
    #[error("the data path: {}", chain(.0))]
    DataPath(Error),
    #[error("preparing the bpffs directory {dir}: {error}")]
    Bpffs { dir: PathBuf, error: io::Error },
    #[error("reading the state file in {dir}: {error}")]
    StateRead { dir: PathBuf, error: io::Error },
    #[error("writing the state file in {dir}: {error}")]
    StateWrite { dir: PathBuf, error: io::Error },
    #[error("removing the pins under {dir}: {error}")]
    RemovePins { dir: PathBuf, error: io::Error },
    #[error("interface {interface}: {error}")]
    Attach { interface: String, error: io::Error },
    /// Attaching at start failed; nothing the pins had was detached.
    #[error(
        "attaching {interface} failed: {}; nothing was detached: {}",
        chain(.error.as_ref()),
        serving_text(.serving)
    )]
    AttachFailed {
        interface: String,
        /// Boxed: the data path's error is large, and every owner call's
        /// result carries a `DaemonError`.
        error: Box<Error>,
        /// Interfaces the pins had before: they keep their programs.
        serving: Vec<String>,
    },
    #[error("{0}")]
    Locked(LockError),
    #[error("canaryd is shutting down")]
    OwnerGone,
    #[error("service {service} has no [service.rollout] in the config")]
    RolloutNotConfigured { service: String },
    #[error("service {service}: {why}")]
    RolloutConflict { service: String, why: String },
}

/// `?` on the data path's and the lock's errors. Not `#[from]`: that
/// would make them the `source()` too, and their text is in the message.
impl From<Error> for DaemonError {
    fn from(e: Error) -> DaemonError {
        DaemonError::DataPath(e)
    }
}

impl From<LockError> for DaemonError {
    fn from(e: LockError) -> DaemonError {
        DaemonError::Locked(e)
    }
}

fn serving_text(serving: &[String]) -> String {
    match serving {
        [] => "no interface was attached before".into(),
        [one] => format!("{one} keeps serving from its pinned programs"),
        many => format!(
            "{} keep serving from their pinned programs",
            many.join(", ")
        ),
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "no services".into()
    } else {
        known.join(", ")
    }
}

impl DaemonError {
    /// The code a response carrying this error has.
    pub fn code(&self) -> ErrorCode {
        match self {
            DaemonError::UnknownService { .. } => ErrorCode::UnknownService,
            DaemonError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            DaemonError::RestartRequired(_) => ErrorCode::RestartRequired,
            // Only a start returns it; a reload says it as RestartRequired.
            DaemonError::WouldCutOffClients(_) => ErrorCode::RestartRequired,
            DaemonError::Reverted { .. } => ErrorCode::FailedAndReverted,
            DaemonError::RevertFailed { .. } => ErrorCode::RevertFailed,
            DaemonError::OwnerGone => ErrorCode::Unavailable,
            DaemonError::RolloutNotConfigured { .. } => ErrorCode::RolloutNotConfigured,
            DaemonError::RolloutConflict { .. } => ErrorCode::RolloutConflict,
            DaemonError::DataPath(_)
            | DaemonError::Bpffs { .. }
            | DaemonError::StateRead { .. }
            | DaemonError::StateWrite { .. }
            | DaemonError::RemovePins { .. }
            | DaemonError::Attach { .. }
            | DaemonError::AttachFailed { .. }
            | DaemonError::Locked(_) => ErrorCode::DataPath,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use aya::{maps::MapError, sys::SyscallError};

    use super::*;

    /// A map write the kernel refused: aya keeps the errno in the
    /// syscall error's `source()`, not in its text.
    fn refused_write() -> Error {
        Error::Map {
            name: "WEIGHTS",
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_update_elem",
                io_error: io::Error::from_raw_os_error(libc::EPERM),
            }),
        }
    }

    #[test]
    fn a_data_path_error_prints_its_cause_once_however_it_is_printed() {
        let want = "the data path: map WEIGHTS: `bpf_map_update_elem` failed: \
                    Operation not permitted (os error 1)";
        let e = DaemonError::from(refused_write());
        assert!(e.source().is_none(), "the cause is in the message");
        assert_eq!(e.to_string(), want);
        assert_eq!(crate::error::chain(&e), want);
        // anyhow's `{:#}` walks `source()` with no check for repeats.
        let e = anyhow::Error::new(DaemonError::from(refused_write())).context("set-weight");
        assert_eq!(format!("{e:#}"), format!("set-weight: {want}"));
    }

    #[test]
    fn no_variant_that_names_its_cause_also_returns_it() {
        let dir = PathBuf::from("/run/canary");
        let io = || io::Error::from_raw_os_error(libc::ENOSPC);
        let held = LockError::Io {
            dir: dir.clone(),
            source: io(),
        };
        let cases = [
            DaemonError::Bpffs {
                dir: dir.clone(),
                error: io(),
            },
            DaemonError::StateRead {
                dir: dir.clone(),
                error: io(),
            },
            DaemonError::StateWrite {
                dir: dir.clone(),
                error: io(),
            },
            DaemonError::RemovePins {
                dir: dir.clone(),
                error: io(),
            },
            DaemonError::Attach {
                interface: "eth0".into(),
                error: io(),
            },
            DaemonError::AttachFailed {
                interface: "eth0".into(),
                error: Box::new(refused_write()),
                serving: vec![],
            },
            DaemonError::from(held),
        ];
        for e in cases {
            let text = format!("{:#}", anyhow::Error::new(e));
            let errno = "No space left on device (os error 28)";
            let once = if text.contains("WEIGHTS") {
                "Operation not permitted (os error 1)"
            } else {
                errno
            };
            assert_eq!(text.matches(once).count(), 1, "{text}");
        }
    }
}
