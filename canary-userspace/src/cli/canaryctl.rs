//! `canaryctl`'s command line: what each subcommand takes and the request
//! it becomes. Printing and waiting stay in the binary; the definition is
//! here for the man page and the shell completions.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    api::{Request, RolloutAction},
    config::{
        DEFAULT_SOCKET, InvalidDuration, InvalidPercent, InvalidWeight, ParseWeightError, Weight,
        low_weight_hint, parse_duration,
    },
};

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
///   canaryctl status sentiment -o wide
///   canaryctl set-weight sentiment 12.5
///   canaryctl --json status | jq '.services[0].canary.new_flows'
///   canaryctl --socket /tmp/canary.sock reload
///   canaryctl rollout start sentiment --wait
///   canaryctl watch sentiment
///   canaryctl rollback sentiment
///   canaryctl completions bash > /etc/bash_completion.d/canaryctl
#[derive(Debug, Parser)]
// `name`: clap would otherwise take the package's ("canary-userspace")
// for --version, the man page and the completions.
#[command(name = "canaryctl", version, verbatim_doc_comment)]
pub struct Args {
    /// canaryd's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the daemon's JSON answer (stable format, see README) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every service (or SERVICE): VIP, weight and where it comes from,
    /// per-version requests, errors, latency, flows and backends. Fits 100
    /// columns; -o wide adds packets, bytes, closed flows and rehashes and
    /// every backend.
    ///
    /// Example: canaryctl status sentiment -o wide
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// Set the canary's share of new flows (or clients) of SERVICE, in
    /// percent with at most two decimals (0 rolls back, 100 sends every new
    /// flow to the canary). Established connections never move.
    ///
    /// Example: canaryctl set-weight sentiment 12.5
    #[command(verbatim_doc_comment)]
    SetWeight(SetWeightArgs),
    /// Re-read canaryd's config file and apply it (the same as SIGHUP). An
    /// invalid file is rejected with every error and changes nothing. Prints
    /// what changed, old -> new.
    Reload,
    /// Versions of canaryctl and of the running canaryd.
    Version,
    /// Drive SERVICE's automatic rollout: start (optionally --wait), pause,
    /// resume, promote, abort, status.
    #[command(subcommand)]
    Rollout(Rollout),
    /// Send every new flow (or client) of SERVICE to stable now: canary
    /// weight 0 in one map write; a running rollout ends rolled back, and
    /// with on_rollback = "reset" the canary's connections are reset. In
    /// dry-run mode too: dry-run holds back the controller, not you.
    Rollback { service: String },
    /// The fleet this canaryd belongs to ([fleet] in its config): every
    /// host that joined, whether it is alive and leads, the generation and
    /// weight it applied, requests and error rate per version.
    ///
    /// Example: canaryctl fleet status --json
    #[command(subcommand, verbatim_doc_comment)]
    Fleet(Fleet),
    /// A live view of SERVICE, refreshed in place: weight, per-version
    /// requests/s, error rate, p50/p99, rollout phase and last decision.
    Watch(WatchArgs),
    /// Print a shell completion script (needs no daemon).
    ///
    /// Example: canaryctl completions bash > /etc/bash_completion.d/canaryctl
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this service (as in the config's [[service]] name).
    pub service: Option<String>,
    /// `table` (fits 100 columns) or `wide` (every counter and backend).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The same as `-o wide`.
    #[arg(long)]
    pub wide: bool,
}

impl StatusArgs {
    pub fn wide(&self) -> bool {
        self.wide || self.output == Output::Wide
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Wide,
}

#[derive(Debug, clap::Args)]
pub struct SetWeightArgs {
    /// Service name as in the config's [[service]] name.
    pub service: String,
    /// Canary share in percent, 0 to 100, at most two decimals; `5` and
    /// `5%` are the same.
    // Hyphens allowed so `-5` reaches the parser and is refused as a
    // weight, not taken for an option. canaryctl's main says a refusal
    // the way it says every other error (`UsageError`), not clap's way.
    #[arg(value_name = "PERCENT", allow_hyphen_values = true)]
    pub weight: Weight,
}

/// A command-line value canaryctl refuses before asking the daemon (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("percent: {0}")]
    Percent(#[from] InvalidPercent),
    #[error("percent {percent}: {reason}")]
    Weight { percent: f64, reason: InvalidWeight },
    #[error("--timeout: {0}")]
    Timeout(#[from] InvalidDuration),
}

impl From<ParseWeightError> for UsageError {
    fn from(e: ParseWeightError) -> UsageError {
        match e {
            ParseWeightError::NotAPercent(e) => UsageError::Percent(e),
            ParseWeightError::NotAWeight(reason) => UsageError::Weight {
                percent: reason.0,
                reason,
            },
        }
    }
}

impl UsageError {
    /// The weight clap's parser refused in `e`, if that is why parsing
    /// the command line failed.
    pub fn of_weight(e: &clap::Error) -> Option<UsageError> {
        let source = std::error::Error::source(e)?;
        let refused = source.downcast_ref::<ParseWeightError>()?;
        Some(UsageError::from(refused.clone()))
    }
}

impl SetWeightArgs {
    /// The weight was checked as the command line was read, so a typo
    /// never reaches the daemon. Below 1 % it prints a hint (the weight is
    /// still set: a smaller share than meant is the cautious side of the
    /// mistake).
    pub fn request(&self) -> Request {
        if let Some(hint) = low_weight_hint(self.weight) {
            eprintln!("canaryctl: note: {}: {hint}", self.service);
        }
        Request::SetWeight {
            service: self.service.clone(),
            weight: self.weight,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub service: String,
    /// Time between refreshes.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub every: String,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Fleet {
    /// Hosts, leader, applied generations and per-version numbers.
    Status,
}

#[derive(Debug, clap::Subcommand)]
pub enum Rollout {
    /// Start SERVICE's configured [service.rollout] at its first step.
    /// With --wait, block until it ends and print the report: exit 0 when
    /// promoted, 10 rolled back, 11 aborted, 12 paused, 13 still running
    /// after --timeout. This is what a CI/CD pipeline calls; the wait
    /// outlasts a canaryd restart (it resumes the rollout).
    ///
    /// Example: canaryctl rollout start sentiment --wait --timeout 30m
    #[command(verbatim_doc_comment)]
    Start {
        service: String,
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this long (the rollout goes on).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        timeout: String,
    },
    /// Stop judging; the weight stays where it is.
    Pause { service: String },
    /// Judge again, from the next interval on.
    Resume { service: String },
    /// End the rollout now with the canary at 100 % (in dry-run mode too).
    Promote { service: String },
    /// End the rollout now with the canary at 0 % (not a verdict on it;
    /// in dry-run mode too).
    Abort { service: String },
    /// Plan, step, weight, observed share, and every decision with its
    /// checks' values and verdicts.
    Status { service: String },
}

impl Rollout {
    pub fn service(&self) -> &str {
        match self {
            Rollout::Start { service, .. }
            | Rollout::Pause { service }
            | Rollout::Resume { service }
            | Rollout::Promote { service }
            | Rollout::Abort { service }
            | Rollout::Status { service } => service,
        }
    }

    pub fn request(&self) -> Request {
        let service = self.service().to_owned();
        let action = match self {
            Rollout::Status { .. } => return Request::RolloutStatus { service },
            Rollout::Start { .. } => RolloutAction::Start,
            Rollout::Pause { .. } => RolloutAction::Pause,
            Rollout::Resume { .. } => RolloutAction::Resume,
            Rollout::Promote { .. } => RolloutAction::Promote,
            Rollout::Abort { .. } => RolloutAction::Abort,
        };
        Request::Rollout { service, action }
    }

    /// `start --wait`'s limit, if it waits.
    pub fn wait(&self) -> Result<Option<Duration>, UsageError> {
        match self {
            Rollout::Start {
                wait: true,
                timeout,
                ..
            } => Ok(Some(parse_duration(timeout)?)),
            _ => Ok(None),
        }
    }
}

/// `shell`'s completion script for canaryctl.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = <Args as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "canaryctl", out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_names_the_binary() {
        Args::command().debug_assert();
        super::super::canaryd::Args::command().debug_assert();
        assert_eq!(Args::command().get_name(), "canaryctl");
        assert_eq!(super::super::canaryd::Args::command().get_name(), "canaryd");
    }

    #[test]
    fn status_takes_a_service_and_wide_either_way() {
        for (argv, service, wide) in [
            (&["canaryctl", "status"][..], None, false),
            (&["canaryctl", "status", "m"][..], Some("m"), false),
            (&["canaryctl", "status", "-o", "wide"][..], None, true),
            (&["canaryctl", "status", "m", "--wide"][..], Some("m"), true),
        ] {
            let a = Args::try_parse_from(argv).unwrap();
            let Command::Status(s) = a.command else {
                panic!("{argv:?}: not status")
            };
            assert_eq!(s.service.as_deref(), service, "{argv:?}");
            assert_eq!(s.wide(), wide, "{argv:?}");
        }
    }

    #[test]
    fn set_weight_reads_a_weight_and_says_why_it_refuses_one() {
        let weight = |arg: &str| {
            Args::try_parse_from(["canaryctl", "set-weight", "m", arg]).map(|a| match a.command {
                Command::SetWeight(s) => s.weight,
                other => panic!("{arg}: not set-weight: {other:?}"),
            })
        };
        assert_eq!(weight("12.5").unwrap().bp(), 1250);
        assert_eq!(weight("12.5%").unwrap().bp(), 1250);
        assert_eq!(weight("0").unwrap(), Weight::ZERO);
        for (arg, says) in [
            (
                "5x",
                "percent: \"5x\" is not a percent; write a number from 0 to 100 with at most two \
                 decimals, e.g. 12.5 or 12.5%",
            ),
            (
                "150",
                "percent 150: weight must be a percent from 0 to 100 with at most two decimals, \
                 e.g. 12.5; found 150",
            ),
            (
                "-5",
                "percent -5: weight must be a percent from 0 to 100 with at most two decimals, \
                 e.g. 12.5; found -5",
            ),
        ] {
            let e = weight(arg).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            assert_eq!(UsageError::of_weight(&e).unwrap().to_string(), says);
        }
        // Other usage errors stay clap's.
        let e = Args::try_parse_from(["canaryctl", "set-weight", "m"]).unwrap_err();
        assert!(UsageError::of_weight(&e).is_none());
    }

    #[test]
    fn bash_completions_know_the_subcommands() {
        let mut out = vec![];
        completions(clap_complete::Shell::Bash, &mut out);
        let text = String::from_utf8(out).unwrap();
        for sub in ["status", "set-weight", "reload", "rollout", "completions"] {
            assert!(text.contains(sub), "{sub}");
        }
    }
}
