//! canaryctl: drive a running canaryd over its control socket.

mod fleet;
mod reload;
mod rollout;
mod set_weight;
mod status;
mod version;
mod watch;

use std::process::ExitCode;

use canary_userspace::{
    api::{self, Client, ClientError, Request},
    cli::canaryctl::{Args, Command, UsageError},
};
use clap::Parser;

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
    let args = match Args::try_parse() {
        Ok(args) => args,
        // A weight is refused the way every other canaryctl error is said.
        Err(e) => match UsageError::of_weight(&e) {
            Some(refused) => {
                eprintln!("canaryctl: {refused}");
                return ExitCode::from(EXIT_USAGE);
            }
            None => e.exit(),
        },
    };
    let request = match &args.command {
        Command::Completions { shell } => {
            canary_userspace::cli::canaryctl::completions(*shell, &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        // One service is picked here, from the whole status: the request
        // stays the one every canaryd version answers.
        Command::Status(_) => Request::Status {},
        Command::SetWeight(a) => a.request(),
        Command::Reload => Request::Reload {},
        Command::Version => Request::Version {},
        Command::Rollout(r) => r.request(),
        Command::Rollback { service } => Request::Rollback {
            service: service.clone(),
        },
        Command::Fleet(_) => Request::FleetStatus {},
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
            if let Command::Status(s) = &args.command
                && let Some(name) = &s.service
            {
                return status::print_json_only(socket, &line, name);
            }
            if wait.is_none() {
                println!("{}", line.trim_end());
            }
            return api::parse_response::<serde::de::IgnoredAny>(socket, &line).map(|_| ());
        }
        match &args.command {
            Command::Status(s) => {
                api::parse_response(socket, &line).and_then(|st| status::print(st, s))
            }
            Command::SetWeight(_) => api::parse_response(socket, &line).map(set_weight::print),
            Command::Reload => api::parse_response(socket, &line).map(reload::print),
            Command::Version => api::parse_response(socket, &line).map(version::print),
            Command::Fleet(_) => api::parse_response(socket, &line).map(fleet::print),
            Command::Rollout(_) | Command::Rollback { .. } => api::parse_response(socket, &line)
                .map(|r| {
                    if wait.is_none() {
                        rollout::print(&r)
                    }
                }),
            Command::Watch(_) | Command::Completions { .. } => Ok(()),
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
