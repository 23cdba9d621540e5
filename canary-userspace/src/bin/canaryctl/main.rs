//! canaryctl: drive a running canaryd over its control socket.

mod reload;
mod rollout;
mod set_weight;
mod status;
mod version;
mod watch;

use std::{path::PathBuf, process::ExitCode};

use canary_userspace::{
    api::{self, Client, ClientError, Request},
    config::DEFAULT_SOCKET,
};
use clap::{Parser, Subcommand};

/// canaryctl — inspect and steer the canary split that canaryd runs.
///
/// Exit codes: 0 ok; 2 usage error (bad arguments); 3 canaryd unreachable
/// (not running, wrong --socket, no permission); 4 request rejected by
/// canaryd, nothing changed (unknown service, invalid config, ...); 5 the
/// request failed in canaryd and was undone, or the data path could not be
/// read; 6 it failed and undoing it failed too: check `canaryctl status`;
/// 1 anything else. With --json the answer carries the reason as `code`.
///
/// Examples:
///   canaryctl status
///   canaryctl set-weight sentiment 12.5
///   canaryctl --json status | jq '.services[0].canary.new_flows'
///   canaryctl --socket /tmp/canary.sock reload
///   canaryctl rollout start sentiment --wait
///   canaryctl watch sentiment
///   canaryctl rollback sentiment
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
    /// Drive SERVICE's automatic rollout: start (optionally --wait), pause,
    /// resume, promote, abort, status.
    #[command(subcommand)]
    Rollout(rollout::Rollout),
    /// Send every new flow (or client) of SERVICE to stable now: canary
    /// weight 0 in one map write; a running rollout ends rolled back.
    Rollback { service: String },
    /// A live view of SERVICE, refreshed in place: weight, per-version
    /// requests/s, error rate, p50/p99, rollout phase and last decision.
    Watch(watch::Args),
}

pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `println!` to a closed pipe panics
    // (`canaryctl status | head -1`). The default action ends canaryctl
    // quietly, as any Unix tool in a pipeline. The daemon's request is
    // already answered by then: nothing is lost.
    // SAFETY: setting a signal's disposition to the default before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = Args::parse();
    let request = match &args.command {
        Command::Status => Request::Status {},
        Command::SetWeight(a) => match a.request() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("canaryctl: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Command::Reload => Request::Reload {},
        Command::Version => Request::Version {},
        Command::Rollout(r) => r.request(),
        Command::Rollback { service } => Request::Rollback {
            service: service.clone(),
        },
        Command::Watch(w) => {
            let client = Client {
                socket: &args.socket,
            };
            return match watch::run(&client, w) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("canaryctl: {e}");
                    ExitCode::from(exit_code(&e))
                }
            };
        }
    };
    let wait = match &args.command {
        Command::Rollout(r) => match r.wait() {
            Ok(w) => w,
            Err(e) => {
                eprintln!("canaryctl: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        _ => None,
    };
    let socket = args.socket.as_path();
    let answered = api::call_raw(socket, &request).and_then(|line| {
        if args.json {
            // The daemon's answer as it sent it, fields this canaryctl does
            // not know included; the exit code still follows its `code`.
            // With --wait the report at the end is the one answer printed.
            if wait.is_none() {
                println!("{}", line.trim_end());
            }
            return api::parse_response::<serde::de::IgnoredAny>(socket, &line).map(|_| ());
        }
        match args.command {
            Command::Status => api::parse_response(socket, &line).map(status::print),
            Command::SetWeight(_) => api::parse_response(socket, &line).map(set_weight::print),
            Command::Reload => api::parse_response(socket, &line).map(reload::print),
            Command::Version => api::parse_response(socket, &line).map(version::print),
            Command::Rollout(_) | Command::Rollback { .. } => api::parse_response(socket, &line)
                .map(|r| {
                    if wait.is_none() {
                        rollout::print(&r)
                    }
                }),
            Command::Watch(_) => Ok(()),
        }
    });
    if let (Ok(()), Command::Rollout(r), Some(limit)) = (&answered, &args.command, wait) {
        let client = Client { socket };
        return match rollout::wait(&client, r.service(), limit) {
            Ok(report) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                } else {
                    rollout::print(&report);
                }
                ExitCode::from(rollout::exit_code(&report))
            }
            Err(ClientError::StillRunning(after)) => {
                eprintln!("canaryctl: the rollout is still running after {after:?}; it goes on");
                ExitCode::from(rollout::EXIT_WAIT_TIMED_OUT)
            }
            Err(e) => {
                eprintln!("canaryctl: {e}");
                ExitCode::from(exit_code(&e))
            }
        };
    }
    match answered {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !args.json {
                eprintln!("canaryctl: {e}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
        ClientError::Failed { code, .. } => code.exit_code(),
        ClientError::StillRunning(_) => rollout::EXIT_WAIT_TIMED_OUT,
        ClientError::Io { .. } | ClientError::Protocol { .. } => 1,
    }
}
