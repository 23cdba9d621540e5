//! A real gRPC server and load client (grpcio, HTTP/2 without TLS) for
//! tests, each a Python process inside a test namespace: the scripts in
//! `tests/grpc/`, driven from here.
//!
//! - `server`: `GrpcServer`, one `/inference.Model/Predict` backend that
//!   names itself in every answer, fails every Nth call with UNAVAILABLE
//!   and sleeps before answering, both changeable while it runs, and counts
//!   what it answered.
//! - `load`: `GrpcLoad`, a bounded run of calls over several channels
//!   (TCP connections), and its `GrpcOutcome`.
//!
//! The demo's `--scenario grpc` runs `server.py --model` (an exported iris
//! tree, `tree_model.py`) and its own client, `labeller.py`
//! (`crate::demo::grpc_labeller`).
//!
//! ```ignore
//! let server = GrpcServer::start(&ns_b, addr, "canary", &ServerOptions { fail_every: 10, ..Default::default() })?;
//! let outcome = GrpcLoad { channels: 4, concurrency: 8, ..GrpcLoad::calls(200) }.run(&ns_a, addr)?;
//! assert_eq!(outcome.count(Code::Unavailable), 20);
//! ```

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

pub mod load;
pub(crate) mod pipes;
pub mod server;

pub use load::{ChannelOutcome, GrpcLoad, GrpcOutcome, Latency, ServerOutcome};
pub use server::{GrpcServer, ServerOptions, ServerStats};

/// The full method name the server serves and the client calls.
pub const PREDICT: &str = "/inference.Model/Predict";

/// The server name the client reports for a call that brought none (a
/// deadline the client enforced, a connection that never came up).
pub const UNKNOWN_SERVER: &str = "unknown";

/// Debian's interpreter, where `cargo xtask setup` installs python3-grpcio;
/// a `python3` earlier on PATH (pyenv, a venv) may not have grpc.
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// Proxy variables grpcio honours; the scripts talk to test addresses
/// directly, whatever the caller's environment says.
const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "grpc_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_grpc_proxy",
];

/// `tests/grpc/<script>`.
pub(crate) fn script_path(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("grpc")
        .join(script)
}

/// `PYTHON tests/grpc/<script>` with proxies cleared and every stream
/// piped, not started.
pub(crate) fn script_command(script: &str) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script_path(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in PROXY_VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

/// A gRPC status code, by the name grpcio gives it (`"UNAVAILABLE"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// The name gRPC gives the code (`"UNAVAILABLE"`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{self:?}"))
    }
}
