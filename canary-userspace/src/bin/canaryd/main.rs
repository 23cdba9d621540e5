//! canaryd: owns the canary data path on this host. Loads and pins the
//! XDP/TC programs and maps, applies the config, serves the control socket
//! and Prometheus metrics. See `canaryd --help`.

mod accept;
mod control;
mod http;
mod run;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use canary_userspace::{
    config::{self, Config, DaemonConfig},
    daemon::Overrides,
};
use clap::Parser;

/// canaryd — splits new flows to a service between a stable and a canary
/// backend in XDP, keeps established connections where they started, and
/// exports per-version metrics.
///
/// Runs as root. Starting needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (the
/// verifier's pointer rules), CAP_SETPCAP (to drop the rest) and, only when
/// it must mount bpffs, CAP_SYS_ADMIN; once attached it keeps CAP_BPF and
/// CAP_NET_ADMIN only.
/// Flags override the config file's [daemon] table.
///
/// Examples:
///   canaryd --config /etc/canary/canary.toml
///   canaryd --config canary.toml --interface veth0 --metrics-listen 127.0.0.1:9464
///   canaryd --config /etc/canary/canary.toml --detach-all
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Config file (TOML): [daemon] options and [[service]] entries.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/canary/canary.toml"
    )]
    config: PathBuf,
    /// Interface to attach to (repeatable); replaces daemon.interfaces.
    #[arg(long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Control socket path; replaces daemon.socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Metrics listen address (ip:port); replaces daemon.metrics_listen.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// bpffs directory for pinned maps and programs; replaces daemon.bpffs.
    #[arg(long, value_name = "DIR")]
    bpffs: Option<PathBuf>,
    /// Directory of the state file; replaces daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// error, warn, info, debug or trace; replaces daemon.log_level.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,
    /// Start clean: detach, remove pinned maps and programs and the state file first.
    /// BREAKS ESTABLISHED CONNECTIONS through the VIPs (their flow entries
    /// go) and resets counters and run-time weights to the config's.
    #[arg(long, verbatim_doc_comment)]
    reset: bool,
    /// Remove everything canaryd left in the kernel (programs detach, pins,
    /// flow table, counters and the state file go), then exit. BREAKS
    /// ESTABLISHED CONNECTIONS through the VIPs. Refused while a canaryd runs
    /// on the same bpffs directory: stop it first.
    #[arg(long, conflicts_with = "reset", verbatim_doc_comment)]
    detach_all: bool,
    /// Check the config file and the flags that override it (every error
    /// at once) and exit.
    #[arg(long, conflicts_with_all = ["reset", "detach_all"])]
    check: bool,
}

impl Args {
    fn overrides(&self) -> Overrides {
        Overrides {
            interfaces: self.interfaces.clone(),
            socket: self.socket.clone(),
            metrics_listen: self.metrics_listen,
            bpffs: self.bpffs.clone(),
            state_dir: self.state_dir.clone(),
            log_level: self.log_level,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::new()
        .filter_level(args.log_level.unwrap_or(log::LevelFilter::Info))
        .format_target(false)
        .init();
    let mut config = match config::load(&args.config) {
        Ok(c) => c,
        Err(errors) if args.detach_all => {
            // Cleaning up must work with a broken config: use flags/defaults.
            log::warn!(
                "config not usable ({} errors); using flags and defaults for --detach-all",
                errors.0.len()
            );
            Config {
                daemon: DaemonConfig::with_defaults(vec![]),
                services: vec![],
                rollouts: Default::default(),
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "canaryd: {} error(s) in {}; nothing was started",
                errors.0.len(),
                args.config.display()
            );
            return ExitCode::from(1);
        }
    };
    let overrides = args.overrides();
    // The flags are checked like the file's keys: a typo in --interface
    // must stop --check and start-up before anything is detached.
    // --detach-all works with whatever it is given.
    if !args.detach_all
        && let Err(errors) = overrides.check()
    {
        eprintln!("{errors}");
        eprintln!(
            "canaryd: {} error(s) on the command line; nothing was started",
            errors.0.len()
        );
        return ExitCode::from(1);
    }
    overrides.apply(&mut config.daemon);
    log::set_max_level(config.daemon.log_level);
    if args.check {
        let warnings = canary_userspace::daemon::config_warnings(&config, &args.config);
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "{}: ok ({} services, {} warnings)",
            args.config.display(),
            config.services.len(),
            warnings.len()
        );
        return ExitCode::SUCCESS;
    }
    let result = if args.detach_all {
        run::detach_all(&config)
    } else {
        run::run(&args.config, config, overrides, args.reset)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canaryd: {}", canary_userspace::error::chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
