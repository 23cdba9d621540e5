//! The control API between `canaryctl` and `canaryd`: one JSON object per
//! line over a unix socket, one request and one response per connection.
//!
//! Request:  `{"command":"status"}`, `{"command":"set-weight","service":"s","percent":12.5}`,
//!           `{"command":"reload"}`, `{"command":"version"}`.
//! Response: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
//! The shapes below are the stable `--json` output of `canaryctl` too:
//! fields may be added, none renamed or removed without a new API version.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Bumped when a field is renamed or removed.
pub const API_VERSION: u32 = 1;

/// Longest a request line may be; anything longer is rejected unread.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long the client waits for the daemon's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    SetWeight { service: String, percent: f64 },
    Reload,
    Version,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response {
            ok: true,
            data: Some(serde_json::to_value(data).unwrap_or(serde_json::Value::Null)),
            error: None,
        }
    }

    pub fn rejected(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(error.into()),
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
    /// Interface name and how XDP is attached: "driver" or "generic".
    pub interfaces: Vec<InterfaceStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub xdp: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// "ip:port"
    pub listen: String,
    pub protocol: String,
    pub affinity: String,
    /// Canary share of new flows (or clients), percent with two decimals.
    pub weight_percent: f64,
    pub stable: VersionStatus,
    pub canary: VersionStatus,
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
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub ingress: std::collections::BTreeMap<String, u64>,
    pub egress: std::collections::BTreeMap<String, u64>,
}

/// `version`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub api_version: u32,
}

/// `set-weight`: what the kernel now uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightSet {
    pub service: String,
    pub previous_percent: f64,
    pub percent: f64,
}

/// `reload`: what changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Why a request got no answer from the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach canaryd at {path}: {source} ({})", unreachable_hint(.source))]
    Unreachable { path: String, source: io::Error },
    #[error("talking to canaryd at {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("canaryd at {path} sent a response this canaryctl cannot read: {detail}")]
    Protocol { path: String, detail: String },
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

/// Sends one request and waits for its response.
pub fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
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
    serde_json::from_str(&answer).map_err(|e| ClientError::Protocol {
        path,
        detail: if answer.is_empty() {
            "the connection closed without an answer".into()
        } else {
            e.to_string()
        },
    })
}

/// Basis points as the API shows them: percent with two decimals.
pub fn bp_to_percent(bp: u16) -> f64 {
    f64::from(bp) / 100.0
}
