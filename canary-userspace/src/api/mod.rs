//! The control API between `canaryctl` and `canaryd`: one JSON object per
//! line over a unix socket, one request and one response per connection.
//! docs/API.md describes the protocol; canary-userspace/python/canary/protocol.json
//! lists its requests and codes for this client's tests and the Python client's.
//!
//! Request:  `{"command":"status"}`, `{"command":"set-weight","service":"s","weight_bp":1250}`,
//!           `{"command":"reload"}`, `{"command":"version"}`.
//! Response: `{"ok":true,"data":...}` or
//!           `{"ok":false,"code":"unknown_service","error":"..."}`.
//! The shapes below are the stable `--json` output of `canaryctl` too:
//! fields may be added, none renamed or removed without a new API version.
//!
//! Weights travel as whole basis points (`weight_bp`, `steps_bp`, ...;
//! 1250 is 12.5 %). Deprecated, for one release: a set-weight may carry
//! `{"percent":12.5}` instead of `weight_bp` (one of the two, never both),
//! as older canaryctl sends it, and every answer also carries the old
//! percent fields (`weight_percent`, `config_weight_percent`,
//! `steps_percent`, `previous_percent`, `percent`). The next release, API
//! version 2, drops them. `weight` has the details.

pub mod changes;
pub mod fleet;
pub mod metrics;
pub mod weight;

use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use crate::model::weight::WeightSource;

use crate::{
    model::kinds::{Affinity, Hook, Mode, OnRollback, Protocol, XdpMode},
    model::rollout::{Phase, Record},
    model::weight::Weight,
};

/// Bumped when a field is renamed or removed.
pub const API_VERSION: u32 = 1;

/// Longest a request line may be; anything longer is rejected unread.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long the client waits for the daemon's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    // The commands without arguments are empty struct variants, not unit
    // variants: serde checks `deny_unknown_fields` on struct variants only,
    // and `{"command":"reload","dry_run":true}` must be refused, not run
    // as a real reload.
    Status {},
    /// `{"service":"s","weight_bp":1250}`; for one release
    /// `{"service":"s","percent":12.5}` too (`weight::request`).
    #[serde(
        serialize_with = "weight::request::serialize",
        deserialize_with = "weight::request::deserialize"
    )]
    SetWeight {
        service: String,
        weight: Weight,
    },
    Reload {},
    Version {},
    /// Start, pause, resume, promote or abort a service's rollout.
    Rollout {
        service: String,
        action: RolloutAction,
    },
    /// Canary weight 0 in one map write; a running rollout ends rolled back
    /// (its `on_rollback` applies), in dry-run mode too.
    Rollback {
        service: String,
    },
    /// A rollout's plan, state and history.
    RolloutStatus {
        service: String,
    },
    /// The fleet's hosts (`[fleet]`): which leads, what each applied.
    FleetStatus {},
}

/// Why a request line is not a request: what the answer's `code` and
/// `error` say.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Request {
    /// Reads one request line. A set-weight whose weight is out of range
    /// is refused as `invalid_weight`, as before basis points; anything
    /// else that does not read (unknown fields included) as `bad_request`.
    pub fn decode(line: &str) -> Result<Request, Refusal> {
        serde_json::from_str(line).map_err(|e| match weight::value_error(line) {
            Some(why) => Refusal {
                code: ErrorCode::InvalidWeight,
                message: why.to_string(),
            },
            None => Refusal {
                code: ErrorCode::BadRequest,
                message: format!("bad request: {e}"),
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutAction {
    Start,
    Pause,
    Resume,
    Promote,
    Abort,
}

/// A rollout as `rollout status`, `watch` and `--wait` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutReport {
    pub service: String,
    pub phase: Phase,
    /// Why it is paused or over.
    pub reason: String,
    pub mode: Mode,
    pub on_rollback: OnRollback,
    pub step: usize,
    /// `steps_bp`, and for one release the deprecated `steps_percent`.
    #[serde(flatten, with = "weight::steps")]
    pub steps: Vec<Weight>,
    /// The canary weight the kernel uses now: `weight_bp`, and for one
    /// release the deprecated `weight_percent`.
    #[serde(flatten, with = "weight::weight")]
    pub weight: Weight,
    /// The canary's share of the requests since the last evaluation: below
    /// the weight while long-lived connections that opened before a step
    /// are still on stable.
    pub observed_canary_share: Option<f64>,
    pub interval_ms: u64,
    pub looks: u32,
    pub failed: u32,
    pub failed_checks_limit: u32,
    pub inconclusive_streak: u32,
    pub max_inconclusive: u32,
    pub started_unix_ms: u64,
    pub next_at_unix_ms: u64,
    /// Every decision with its evidence, oldest first.
    pub history: Vec<Record>,
    /// Rollouts of this service that ended rolled back, since the state
    /// file was made.
    pub rollbacks: u64,
    /// In a fleet: every host, with what it applied and saw; absent on a
    /// single host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<fleet::FleetHost>>,
}

/// One answer; `T` is the reply type of the request it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// Why a request failed, for programs: see `ErrorCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Why a request failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Response<T> {
    pub fn ok(data: T) -> Response<T> {
        Response {
            ok: true,
            data: Some(data),
            code: None,
            error: None,
        }
    }

    pub fn failed(code: ErrorCode, error: impl Into<String>) -> Response<T> {
        Response {
            ok: false,
            data: None,
            code: Some(code),
            error: Some(error.into()),
        }
    }
}

/// What kind of failure a response reports. Each class has its own
/// canaryctl exit code (`ErrorCode::exit_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a request this daemon understands (bad JSON, too long).
    BadRequest,
    /// The weight is not 0 to 10000 basis points (or, from an older
    /// client, a percent from 0 to 100 with two decimals).
    InvalidWeight,
    /// No service of that name.
    UnknownService,
    /// The config file has errors; nothing changed.
    InvalidConfig,
    /// The config changes a key only a restart can apply; nothing changed.
    RestartRequired,
    /// Applying failed and was undone: what ran before still runs.
    FailedAndReverted,
    /// Applying failed and undoing it failed too: the kernel may not run
    /// what the daemon last reported. Look at `canaryctl status` and act.
    RevertFailed,
    /// Reading or writing the data path failed (a map, a program, a pin,
    /// the state file): the message has the kernel's error, errno included.
    DataPath,
    /// The daemon is shutting down or its state owner is gone.
    Unavailable,
    /// The service has no `[service.rollout]`.
    RolloutNotConfigured,
    /// The rollout is not in a state that allows this (already running,
    /// ended, not paused, or moved on since a decision was taken).
    RolloutConflict,
    /// A fleet command, and the fleet's store (etcd) did not answer:
    /// nothing was changed.
    StoreUnavailable,
    /// A fleet command to a canaryd with no `[fleet]`.
    NotAFleet,
    /// A code this client does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// canaryctl's exit status for a response with this code.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidWeight
            | ErrorCode::UnknownService
            | ErrorCode::InvalidConfig
            | ErrorCode::RestartRequired
            | ErrorCode::RolloutNotConfigured
            | ErrorCode::RolloutConflict
            | ErrorCode::NotAFleet => 4,
            ErrorCode::FailedAndReverted
            | ErrorCode::DataPath
            | ErrorCode::Unavailable
            | ErrorCode::StoreUnavailable => 5,
            ErrorCode::RevertFailed => 6,
            ErrorCode::Unknown => 1,
        }
    }
}

/// `status`: the daemon and every service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonStatus,
    pub services: Vec<ServiceStatus>,
    /// Odd-packet verdict counters by name, per program.
    pub verdicts: VerdictCounts,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub api_version: u32,
    pub pid: u32,
    pub config: String,
    pub interfaces: Vec<InterfaceStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// Where ingress runs: "xdp" or "tc" (daemons before the choice: xdp).
    #[serde(default)]
    pub hook: Hook,
    /// How XDP is attached: "driver" or "generic" (while not attached: the
    /// mode it last had); absent with the tc hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpMode>,
    /// Whether the programs run on the interface now. False while it is
    /// gone (its links died with it) or a re-attach failed; canaryd
    /// re-attaches when an interface of that name comes back.
    #[serde(default = "yes")]
    pub attached: bool,
    /// The kernel's index of the interface as canaryd last saw it; 0 while
    /// it is gone. A new index means a new device of the same name.
    #[serde(default)]
    pub ifindex: u32,
    /// Times canaryd attached the programs again after the interface came
    /// back, since it started.
    #[serde(default)]
    pub reattached: u64,
    /// What is wrong, as the kernel reports it: not attached, another
    /// program at a hook, pinned maps that are not the programs' maps.
    /// None only when the kernel runs canary's programs with canary's maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The id of the XDP program the kernel runs on the interface (read
    /// from the kernel, RTM_GETLINK); None when it runs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_program_id: Option<u32>,
    /// The ids of the tcx ingress programs the kernel runs on it
    /// (BPF_PROG_QUERY).
    #[serde(default)]
    pub ingress_program_ids: Vec<u32>,
    /// The ids of the tcx egress programs the kernel runs on it
    /// (BPF_PROG_QUERY).
    #[serde(default)]
    pub egress_program_ids: Vec<u32>,
    /// canary's own programs, ingress (at the interface's hook) then tc
    /// egress: what should run.
    #[serde(default)]
    pub canary_program_ids: Vec<u32>,
    /// The maps canary's programs were loaded with (ids), as pinned.
    #[serde(default)]
    pub map_ids: Vec<u32>,
    /// Times canaryd found the kernel running something else than what it
    /// attached (detached, replaced, maps unpinned), since it started.
    #[serde(default)]
    pub mismatches: u64,
}

impl InterfaceStatus {
    /// Where ingress runs, for status lines: "xdp driver", "xdp generic", "tc".
    pub fn ingress(&self) -> String {
        match (self.hook, self.xdp) {
            (Hook::Xdp, Some(mode)) => format!("xdp {mode}"),
            (hook, _) => hook.to_string(),
        }
    }

    /// An interface canaryd has just attached to, before the kernel is read.
    pub fn new(name: &str, hook: Hook, xdp: Option<XdpMode>, ifindex: u32) -> InterfaceStatus {
        InterfaceStatus {
            name: name.to_owned(),
            hook,
            xdp,
            attached: true,
            ifindex,
            reattached: 0,
            problem: None,
            xdp_program_id: None,
            ingress_program_ids: vec![],
            egress_program_ids: vec![],
            canary_program_ids: vec![],
            map_ids: vec![],
            mismatches: 0,
        }
    }
}

/// Daemons before interface tracking reported attached interfaces only.
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// "ip:port"
    pub listen: String,
    pub protocol: Protocol,
    pub affinity: Affinity,
    /// Canary share of new flows (or clients): `weight_bp`, and for one
    /// release the deprecated `weight_percent`.
    #[serde(flatten, with = "weight::weight")]
    pub weight: Weight,
    /// Whether `weight` is the config file's or one set at run time
    /// (set-weight, a rollout, a rollback) and kept in the state file.
    /// Daemons before this field: "config".
    #[serde(default)]
    pub weight_source: WeightSource,
    /// The config file's weight for the service: what a runtime weight
    /// overrides, and what comes back when the config's weight is edited.
    /// `config_weight_bp`, and for one release the deprecated
    /// `config_weight_percent`; both absent when unknown.
    #[serde(flatten, with = "weight::config_weight")]
    pub config_weight: Option<Weight>,
    pub stable: VersionStatus,
    pub canary: VersionStatus,
    /// Why clients may not reach the service, e.g. a VIP that is not an
    /// address of this host (checked at each status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The service's rollout, running or ended (the last one); null when it
    /// never had one. `canaryctl rollout status` has the whole report.
    #[serde(default)]
    pub rollout: Option<RolloutLine>,
}

/// A rollout in one line: where it is and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutLine {
    pub phase: Phase,
    /// Index into the plan's steps (0 is the first).
    pub step: usize,
    pub steps: usize,
    pub looks: u32,
    /// Why it is paused or over; else the last decision's reason; empty
    /// before the first look.
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStatus {
    pub backends: Vec<String>,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub new_flows: u64,
    pub closed_flows: u64,
    /// new_flows - closed_flows: TCP flows still open (UDP flows and flows
    /// evicted from a full table are counted until their entry closes).
    pub active_flows: u64,
    pub rehashes: u64,
    /// Health signals since the counters started (raw counts and
    /// histogram buckets; `crate::model::signals` derives rates and quantiles).
    pub signals: crate::model::signals::VersionSignals,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub ingress: BTreeMap<String, u64>,
    pub egress: BTreeMap<String, u64>,
}

/// `version`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub api_version: u32,
}

impl Version {
    /// This build's.
    pub fn current() -> Version {
        Version {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION,
        }
    }
}

/// `set-weight`: what the kernel now uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightSet {
    pub service: String,
    /// `previous_weight_bp`, and for one release the deprecated
    /// `previous_percent`.
    #[serde(flatten, with = "weight::previous")]
    pub previous: Weight,
    /// `weight_bp`, and for one release the deprecated `percent`.
    #[serde(flatten, with = "weight::set")]
    pub weight: Weight,
    /// Why the weight may not do what it says: interfaces where the kernel
    /// does not run canary's programs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `reload`: what changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Valid but probably not meant (a VIP that is not local, a weight
    /// below 1 %): one line each, naming the file and field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What changed, old -> new, service by service (empty from daemons
    /// before this field). A weight whose source alone changed (a runtime
    /// weight the config now has too) is listed though the service is
    /// unchanged in the kernel.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One difference a reload made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub service: String,
    /// "service" when the whole service was added (no `old`) or removed
    /// (no `new`); else the key: "listen", "protocol", "affinity",
    /// "app_protocol", "stable", "canary" or "weight".
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    /// `+ name: what it is`, `- name: what it was`, `~ name: field old -> new`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.service;
        match (&self.old, &self.new) {
            (None, Some(new)) => write!(f, "+ {s}: {new}"),
            (Some(old), None) => write!(f, "- {s}: {old}"),
            (Some(old), Some(new)) => write!(f, "~ {s}: {} {old} -> {new}", self.field),
            (None, None) => write!(f, "~ {s}: {}", self.field),
        }
    }
}

/// Why a request got no usable answer from the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach canaryd at {path}: {source} ({})", unreachable_hint(.source))]
    Unreachable { path: String, source: io::Error },
    #[error("talking to canaryd at {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("canaryd at {path} sent a response this canaryctl cannot read: {detail}")]
    Protocol { path: String, detail: String },
    #[error("canaryd refused: {message}")]
    Failed { code: ErrorCode, message: String },
    #[error("the rollout was still running after {0:?}")]
    StillRunning(Duration),
}

impl ClientError {
    /// Whether this is what a restarting canaryd looks like: its socket
    /// gone or refusing, a connection closed without an answer, or
    /// `unavailable` while it shuts down (a permission refusal is not).
    pub fn is_restart(&self) -> bool {
        match self {
            ClientError::Unreachable { source, .. } => {
                source.kind() != io::ErrorKind::PermissionDenied
            }
            ClientError::Io { .. } => true,
            ClientError::Failed { code, .. } => *code == ErrorCode::Unavailable,
            ClientError::Protocol { .. } | ClientError::StillRunning(_) => false,
        }
    }
}

/// What to do about a socket that does not answer.
fn unreachable_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "the socket is 0660: run as root or as a member of its group"
        }
        _ => "is canaryd running? pass its socket with --socket",
    }
}

/// Sends one request and returns the response line as the daemon sent it.
pub fn call_raw(socket: &Path, request: &Request) -> Result<String, ClientError> {
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        path: path.clone(),
        source,
    })?;
    let io_err = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(request).map_err(|e| ClientError::Protocol {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol {
            path,
            detail: "the connection closed without an answer".into(),
        });
    }
    Ok(answer)
}

/// Reads a response line as the reply type `T`.
pub fn parse_response<T: DeserializeOwned>(socket: &Path, line: &str) -> Result<T, ClientError> {
    let protocol = |detail: String| ClientError::Protocol {
        path: socket.display().to_string(),
        detail,
    };
    let r: Response<T> = serde_json::from_str(line).map_err(|e| protocol(e.to_string()))?;
    match r {
        Response {
            ok: true,
            data: Some(data),
            ..
        } => Ok(data),
        Response { ok: true, .. } => Err(protocol("an ok answer without data".into())),
        Response { code, error, .. } => Err(ClientError::Failed {
            // An older daemon sends no code: a plain rejection.
            code: code.unwrap_or(ErrorCode::BadRequest),
            message: error.unwrap_or_else(|| "(no reason given)".into()),
        }),
    }
}

/// A typed client of one daemon's socket.
pub struct Client<'a> {
    pub socket: &'a Path,
}

impl Client<'_> {
    pub fn call<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        parse_response(self.socket, &call_raw(self.socket, request)?)
    }

    pub fn status(&self) -> Result<Status, ClientError> {
        self.call(&Request::Status {})
    }

    pub fn set_weight(&self, service: &str, weight: Weight) -> Result<WeightSet, ClientError> {
        self.call(&Request::SetWeight {
            service: service.into(),
            weight,
        })
    }

    pub fn reload(&self) -> Result<Reloaded, ClientError> {
        self.call(&Request::Reload {})
    }

    pub fn version(&self) -> Result<Version, ClientError> {
        self.call(&Request::Version {})
    }

    pub fn rollout(
        &self,
        service: &str,
        action: RolloutAction,
    ) -> Result<RolloutReport, ClientError> {
        self.call(&Request::Rollout {
            service: service.into(),
            action,
        })
    }

    pub fn rollback(&self, service: &str) -> Result<RolloutReport, ClientError> {
        self.call(&Request::Rollback {
            service: service.into(),
        })
    }

    pub fn rollout_status(&self, service: &str) -> Result<RolloutReport, ClientError> {
        self.call(&Request::RolloutStatus {
            service: service.into(),
        })
    }

    pub fn fleet_status(&self) -> Result<fleet::FleetStatus, ClientError> {
        self.call(&Request::FleetStatus {})
    }

    /// Polls `service`'s rollout every `poll` until it is no longer running
    /// (promoted, rolled back, aborted or paused) and returns its report;
    /// `progress` sees every report on the way. After `limit` it gives up
    /// (the rollout goes on).
    pub fn wait_for_rollout(
        &self,
        service: &str,
        poll: Duration,
        limit: Duration,
        mut progress: impl FnMut(&RolloutReport),
    ) -> Result<RolloutReport, ClientError> {
        let deadline = std::time::Instant::now() + limit;
        // Once canaryd has answered, its going away is a restart to wait
        // through (it resumes the rollout from its state file); before
        // that, an unreachable socket is a mistake to report at once.
        let mut answered = false;
        loop {
            match self.rollout_status(service) {
                Ok(report) => {
                    answered = true;
                    progress(&report);
                    if report.phase != Phase::Running {
                        return Ok(report);
                    }
                }
                Err(e) if answered && e.is_restart() => {}
                Err(e) => return Err(e),
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClientError::StillRunning(limit));
            }
            std::thread::sleep(poll);
        }
    }

    /// Starts `service`'s rollout and waits for its end: what a pipeline
    /// runs. The report carries every interval's checks and decisions.
    pub fn run_rollout(
        &self,
        service: &str,
        limit: Duration,
    ) -> Result<RolloutReport, ClientError> {
        self.rollout(service, RolloutAction::Start)?;
        self.wait_for_rollout(service, Duration::from_millis(500), limit, |_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_unknown_fields_are_refused() {
        for line in [
            r#"{"command":"reload","dry_run":true}"#,
            r#"{"command":"status","service":"x"}"#,
            r#"{"command":"version","x":1}"#,
            r#"{"command":"set-weight","service":"s","percent":5,"force":true}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":500,"force":true}"#,
            r#"{"command":"rollback","service":"s","dry_run":true}"#,
        ] {
            assert!(serde_json::from_str::<Request>(line).is_err(), "{line}");
        }
        for (line, want) in [
            (r#"{"command":"reload"}"#, Request::Reload {}),
            (r#"{"command":"status"}"#, Request::Status {}),
            (r#"{"command":"version"}"#, Request::Version {}),
        ] {
            assert_eq!(serde_json::from_str::<Request>(line).unwrap(), want);
            assert_eq!(serde_json::to_string(&want).unwrap(), line);
        }
    }

    #[test]
    fn a_failure_carries_its_code_on_the_wire() {
        let r: Response<Version> = Response::failed(ErrorCode::UnknownService, "no such");
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"ok":false,"code":"unknown_service","error":"no such"}"#
        );
        match parse_response::<Version>(Path::new("s"), &line) {
            Err(ClientError::Failed { code, message }) => {
                assert_eq!(code, ErrorCode::UnknownService);
                assert_eq!(message, "no such");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_code_from_a_newer_daemon_still_reads_as_a_failure() {
        let line = r#"{"ok":false,"code":"rollout_paused","error":"later"}"#;
        match parse_response::<Version>(Path::new("s"), line) {
            Err(ClientError::Failed { code, .. }) => assert_eq!(code, ErrorCode::Unknown),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// The code on the wire of each variant; a new variant does not compile
    /// until it is named here, and then must be in protocol.json too.
    fn wire_code(c: ErrorCode) -> Option<&'static str> {
        Some(match c {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidWeight => "invalid_weight",
            ErrorCode::UnknownService => "unknown_service",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::RestartRequired => "restart_required",
            ErrorCode::FailedAndReverted => "failed_and_reverted",
            ErrorCode::RevertFailed => "revert_failed",
            ErrorCode::DataPath => "data_path",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RolloutNotConfigured => "rollout_not_configured",
            ErrorCode::RolloutConflict => "rollout_conflict",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::NotAFleet => "not_a_fleet",
            // The client's reading of a code it does not know: never sent.
            ErrorCode::Unknown => return None,
        })
    }

    /// The variants serde names in its "expected one of" for a value of
    /// type `T` that is not one: every variant, with no list kept by hand.
    fn variants<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> Vec<String> {
        let e = serde_json::from_str::<T>(json).unwrap_err().to_string();
        let list = e
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        list.split(", ")
            .map(|v| v.split('`').nth(1).unwrap().to_owned())
            .collect()
    }

    /// protocol.json is the list the Python client (canary-userspace/python)
    /// is checked against too (its tests/unit/test_protocol.py): a request,
    /// field, action, phase or error code changed on one side alone fails
    /// here or there.
    #[test]
    fn the_python_client_speaks_this_protocol() {
        let p: serde_json::Value =
            serde_json::from_str(include_str!("../../python/canary/protocol.json")).unwrap();
        assert_eq!(p["api_version"], API_VERSION);
        // Requests: the same commands, each with exactly its fields.
        let listed = p["requests"].as_object().unwrap();
        let mut commands: Vec<String> = listed.keys().cloned().collect();
        let mut ours = variants::<Request>(r#"{"command":"?"}"#);
        commands.sort();
        ours.sort();
        assert_eq!(commands, ours, "requests");
        for (command, fields) in listed {
            let mut sample = serde_json::json!({ "command": command });
            for f in fields.as_array().unwrap() {
                let f = f.as_str().unwrap();
                sample[f] = match f {
                    "service" => "model".into(),
                    "weight_bp" => 1250.into(),
                    "action" => "start".into(),
                    other => panic!("{command}: a field this test has no sample of: {other}"),
                };
            }
            let line = sample.to_string();
            let request = Request::decode(&line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(serde_json::to_value(&request).unwrap(), sample, "{command}");
            for f in fields.as_array().unwrap() {
                let mut short = sample.clone();
                short.as_object_mut().unwrap().remove(f.as_str().unwrap());
                assert!(
                    Request::decode(&short.to_string()).is_err(),
                    "{command} without {f}"
                );
            }
        }
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            strings(&p["rollout_actions"]),
            variants::<RolloutAction>(r#""?""#)
        );
        assert_eq!(strings(&p["phases"]), variants::<Phase>(r#""?""#));
        // Error codes: every code a daemon sends, with canaryctl's exit code.
        let codes: Vec<(String, u64)> = p["error_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["code"].as_str().unwrap().to_owned(),
                    e["exit"].as_u64().unwrap(),
                )
            })
            .collect();
        for (code, exit) in &codes {
            let c: ErrorCode = serde_json::from_value(code.as_str().into()).unwrap();
            assert_eq!(
                wire_code(c),
                Some(code.as_str()),
                "{code} is not a code of ours"
            );
            assert_eq!(u64::from(c.exit_code()), *exit, "{code}'s exit code");
        }
        let every = [
            ErrorCode::BadRequest,
            ErrorCode::InvalidWeight,
            ErrorCode::UnknownService,
            ErrorCode::InvalidConfig,
            ErrorCode::RestartRequired,
            ErrorCode::FailedAndReverted,
            ErrorCode::RevertFailed,
            ErrorCode::DataPath,
            ErrorCode::Unavailable,
            ErrorCode::RolloutNotConfigured,
            ErrorCode::RolloutConflict,
            ErrorCode::StoreUnavailable,
            ErrorCode::NotAFleet,
            ErrorCode::Unknown,
        ];
        let ours: Vec<&str> = every.into_iter().filter_map(wire_code).collect();
        let listed: Vec<&str> = codes.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(listed, ours, "error codes");
        for c in every {
            if let Some(code) = wire_code(c) {
                assert_eq!(serde_json::to_value(c).unwrap(), code);
            }
        }
    }

    #[test]
    fn a_reply_reads_back_as_its_type() {
        let line = serde_json::to_string(&Response::ok(Version::current())).unwrap();
        assert_eq!(
            parse_response::<Version>(Path::new("s"), &line).unwrap(),
            Version::current()
        );
    }
}
