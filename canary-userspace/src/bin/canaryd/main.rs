//! canaryd: owns the canary data path on this host. Loads and pins the
//! XDP/TC programs and maps, applies the config, serves the control socket
//! and Prometheus metrics. See `canaryd --help`.

mod accept;
mod answer;
mod control;
mod fleet;
mod http;
mod run;
mod served;

use std::process::ExitCode;

use canary_userspace::{
    cli::{canaryd::Args, log_format},
    config::{self, Config, DaemonConfig},
    daemon::Overrides,
};
use clap::Parser;

/// Command-line values that replace the config file's `[daemon]` keys.
fn overrides(args: &Args) -> Overrides {
    Overrides {
        interfaces: args.interfaces.clone(),
        socket: args.socket.clone(),
        metrics_listen: args.metrics_listen,
        bpffs: args.bpffs.clone(),
        state_dir: args.state_dir.clone(),
        log_level: args.log_level,
        move_interfaces: args.move_interfaces,
        fleet_host: args.fleet_host.clone(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    log_format::init(
        args.log_format,
        args.log_level.unwrap_or(log::LevelFilter::Info),
    );
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
                fleet: None,
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
    let overrides = overrides(&args);
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
    overrides.apply(&mut config);
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
