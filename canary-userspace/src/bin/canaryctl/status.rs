//! `canaryctl status [SERVICE] [-o wide]`: the text is
//! `canary_userspace::cli::status`'s; here is the choice of service.

use std::path::Path;

use canary_userspace::{
    api::{self, ClientError, ErrorCode, Response, Status},
    cli::{canaryctl::StatusArgs, status},
};

fn unknown(message: String) -> ClientError {
    ClientError::Failed {
        code: ErrorCode::UnknownService,
        message,
    }
}

pub fn print(s: Status, args: &StatusArgs) -> Result<(), ClientError> {
    let s = match &args.service {
        Some(name) => status::only(s, name).map_err(|e| unknown(e.to_string()))?,
        None => s,
    };
    print!("{}", status::render(&s, args.wide()));
    Ok(())
}

/// `--json status SERVICE`: the daemon's answer in its own shape (fields
/// this canaryctl does not know kept) with the other services left out.
pub fn print_json_only(socket: &Path, line: &str, name: &str) -> Result<(), ClientError> {
    // Typed first: a failure answer or a malformed one is reported as such.
    let typed: Status = api::parse_response(socket, line).inspect_err(|_| {
        println!("{}", line.trim_end());
    })?;
    if let Err(e) = status::only(typed, name) {
        let message = e.to_string();
        let answer: Response<()> = Response::failed(ErrorCode::UnknownService, message.clone());
        println!("{}", serde_json::to_string(&answer).unwrap_or_default());
        return Err(unknown(message));
    }
    let mut raw: serde_json::Value =
        serde_json::from_str(line).map_err(|e| ClientError::Protocol {
            path: socket.display().to_string(),
            detail: e.to_string(),
        })?;
    if let Some(services) = raw
        .pointer_mut("/data/services")
        .and_then(serde_json::Value::as_array_mut)
    {
        services.retain(|s| s.get("name").and_then(serde_json::Value::as_str) == Some(name));
    }
    println!("{raw}");
    Ok(())
}
