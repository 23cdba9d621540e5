//! Why a daemon operation failed, with the API code each failure travels
//! under (`api::ErrorCode`), so canaryctl and scripts can tell a typo from
//! a half-applied change.

use std::{io, path::PathBuf};

use crate::{api::ErrorCode, config::ConfigErrors, error::Error};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("unknown service {name:?}; this daemon has: {}", known_list(.known))]
    UnknownService { name: String, known: Vec<String> },
    #[error("{0}")]
    InvalidConfig(ConfigErrors),
    #[error("{}", .0.join("\n"))]
    RestartRequired(Vec<String>),
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
    #[error("the data path: {0}")]
    DataPath(#[from] Error),
    #[error("preparing the bpffs directory {dir}: {source}")]
    Bpffs { dir: PathBuf, source: io::Error },
    #[error("reading the state file in {dir}: {source}")]
    StateRead { dir: PathBuf, source: io::Error },
    #[error("writing the state file in {dir}: {source}")]
    StateWrite { dir: PathBuf, source: io::Error },
    #[error("removing the pins under {dir}: {source}")]
    RemovePins { dir: PathBuf, source: io::Error },
    #[error("interface {interface}: {source}")]
    Attach {
        interface: String,
        source: io::Error,
    },
    /// Attaching at start failed; nothing the pins had was detached.
    #[error(
        "attaching {interface} failed: {source}; nothing was detached: {}",
        serving_text(.serving)
    )]
    AttachFailed {
        interface: String,
        /// Boxed: the data path's error is large, and every owner call's
        /// result carries a `DaemonError`.
        source: Box<Error>,
        /// Interfaces the pins had before: they keep their programs.
        serving: Vec<String>,
    },
    #[error(transparent)]
    Locked(#[from] crate::kernel::lock::LockError),
    #[error("canaryd is shutting down")]
    OwnerGone,
    #[error("service {service} has no [service.rollout] in the config")]
    RolloutNotConfigured { service: String },
    #[error("service {service}: {why}")]
    RolloutConflict { service: String, why: String },
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
