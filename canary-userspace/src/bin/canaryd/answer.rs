//! An answer line of the control socket, from a result or a reply.

use canary_userspace::{api::Response, daemon::DaemonError};
use serde::Serialize;

/// A daemon operation's result as an answer.
pub fn reply<T: Serialize>(result: Result<T, DaemonError>) -> String {
    encode(&match result {
        Ok(data) => Response::ok(data),
        Err(e) => Response::failed(e.code(), e.to_string()),
    })
}

/// One answer as its JSON line (without the newline).
pub fn encode<T: Serialize>(response: &Response<T>) -> String {
    serde_json::to_string(response).unwrap_or_else(|e| {
        format!(
            "{{\"ok\":false,\"code\":\"data_path\",\"error\":\"encoding the response failed: {e}\"}}"
        )
    })
}
