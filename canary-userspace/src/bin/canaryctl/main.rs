//! canaryctl: drive a running canaryd over its control socket.

mod reload;
mod set_weight;
mod status;
mod version;

use std::{path::PathBuf, process::ExitCode};

use canary_userspace::{
    api::{self, ClientError, Request, Response},
    config::DEFAULT_SOCKET,
};
use clap::{Parser, Subcommand};

/// canaryctl — inspect and steer the canary split that canaryd runs.
///
/// Exit codes: 0 ok; 2 usage error (bad arguments); 3 canaryd unreachable
/// (not running, wrong --socket, no permission); 4 request rejected by
/// canaryd (unknown service, invalid config on reload, ...); 1 anything else.
///
/// Examples:
///   canaryctl status
///   canaryctl set-weight sentiment 12.5
///   canaryctl --json status | jq '.services[0].canary.new_flows'
///   canaryctl --socket /tmp/canary.sock reload
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// canaryd's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the daemon's JSON answer (stable format, see README) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every service: VIP, backends, weight and per-version counters.
    Status,
    /// Set the canary's share of new flows (or clients) of SERVICE, in
    /// percent with at most two decimals (0 rolls back, 100 sends every new
    /// flow to the canary). Established connections never move.
    ///
    /// Example: canaryctl set-weight sentiment 12.5
    #[command(verbatim_doc_comment)]
    SetWeight(set_weight::Args),
    /// Re-read canaryd's config file and apply it (the same as SIGHUP). An
    /// invalid file is rejected with every error and changes nothing.
    Reload,
    /// Versions of canaryctl and of the running canaryd.
    Version,
}

pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_REJECTED: u8 = 4;
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let request = match &args.command {
        Command::Status => Request::Status,
        Command::SetWeight(a) => match a.request() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("canaryctl: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Command::Reload => Request::Reload,
        Command::Version => Request::Version,
    };
    let response = match api::call(&args.socket, &request) {
        Ok(r) => r,
        Err(e @ ClientError::Unreachable { .. }) => {
            eprintln!("canaryctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
        Err(e) => {
            eprintln!("canaryctl: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response).unwrap_or_default()
        );
        return if response.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_REJECTED)
        };
    }
    let Response { ok: true, data, .. } = response else {
        eprintln!(
            "canaryctl: canaryd rejected the request: {}",
            response.error.as_deref().unwrap_or("(no reason given)")
        );
        return ExitCode::from(EXIT_REJECTED);
    };
    let data = data.unwrap_or(serde_json::Value::Null);
    let printed = match args.command {
        Command::Status => status::print(data),
        Command::SetWeight(_) => set_weight::print(data),
        Command::Reload => reload::print(data),
        Command::Version => version::print(data),
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canaryctl: canaryd's answer has an unexpected shape ({e}); try --json");
            ExitCode::from(1)
        }
    }
}
