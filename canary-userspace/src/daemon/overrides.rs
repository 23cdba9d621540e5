//! The command line's replacements for `[daemon]` keys, and the config's
//! warnings against this host.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use crate::config::{self, Config, DaemonConfig};

/// Command-line values that replace the config file's `[daemon]` keys, at
/// start and again on every reload (so a reload never sees them "change").
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub socket: Option<PathBuf>,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub bpffs: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<log::LevelFilter>,
    /// `--move-interfaces`: leave interfaces that a VIP's clients come in
    /// on (`reach`); a start only, never kept for reloads.
    pub move_interfaces: bool,
    /// `--fleet-host`: this host's name in its fleet, over `[fleet] host`
    /// (a DaemonSet passes the node's name).
    pub fleet_host: Option<String>,
}

impl Overrides {
    /// Checks the flags the way the config file's keys are checked (an
    /// interface must exist on this host, paths must be absolute), so
    /// `--check` and start-up catch a typo in a flag before anything in
    /// the kernel changes. Every problem at once, each naming its flag.
    pub fn check(&self) -> Result<(), config::ConfigErrors> {
        let flag = |field: &str, message: String| config::ConfigError {
            file: "command line".into(),
            field: field.into(),
            message,
        };
        let mut errors = vec![];
        let mut seen = BTreeSet::new();
        for name in &self.interfaces {
            if let Err(why) = config::check_interface_name(name) {
                errors.push(flag("--interface", why.to_string()));
            } else if !seen.insert(name) {
                errors.push(flag("--interface", format!("{name:?} is given twice")));
            } else if !crate::host::interfaces::interface_exists(name) {
                errors.push(flag(
                    "--interface",
                    format!("no interface named {name:?} on this host"),
                ));
            }
        }
        for (field, path) in [
            ("--socket", &self.socket),
            ("--bpffs", &self.bpffs),
            ("--state-dir", &self.state_dir),
        ] {
            if let Some(p) = path
                && !p.is_absolute()
            {
                errors.push(flag(
                    field,
                    format!("{:?} is not an absolute path", p.display().to_string()),
                ));
            }
        }
        if let Some(host) = &self.fleet_host
            && let Err(why) = config::check_fleet_name(host)
        {
            errors.push(flag("--fleet-host", why));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(config::ConfigErrors(errors))
        }
    }

    /// The flags over the file's values.
    pub fn apply(&self, config: &mut Config) {
        self.apply_daemon(&mut config.daemon);
        if let (Some(host), Some(fleet)) = (&self.fleet_host, &mut config.fleet) {
            fleet.host = host.clone();
        }
    }

    fn apply_daemon(&self, d: &mut DaemonConfig) {
        if !self.interfaces.is_empty() {
            d.interfaces = self.interfaces.clone();
            // An interface the file names keeps the hook the file gives it.
            d.hooks.retain(|name, _| self.interfaces.contains(name));
        }
        if let Some(v) = &self.socket {
            d.socket = v.clone();
        }
        if let Some(v) = self.metrics_listen {
            d.metrics_listen = v;
        }
        if let Some(v) = &self.bpffs {
            d.bpffs = v.clone();
        }
        if let Some(v) = &self.state_dir {
            d.state_dir = v.clone();
        }
        if let Some(v) = self.log_level {
            d.log_level = v;
        }
    }
}

/// The config's warnings (`config::warnings`) against this host's
/// addresses, each as one line naming the file and field. When the
/// addresses cannot be read, VIPs are not checked and the line says so.
pub fn config_warnings(config: &Config, file: &Path) -> Vec<String> {
    let file = file.display().to_string();
    let (local, mut out) = match crate::host::addresses::local() {
        Ok(local) => (Some(local), vec![]),
        Err(e) => (
            None,
            vec![format!(
                "{file}: cannot list this host's addresses ({e}); VIPs are not checked"
            )],
        ),
    };
    let is_local = |ip| local.as_ref().is_none_or(|l| l.contains(&ip));
    out.extend(
        config::warnings(config, &file, &is_local)
            .iter()
            .map(ToString::to_string),
    );
    out
}
