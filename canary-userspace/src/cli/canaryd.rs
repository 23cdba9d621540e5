//! `canaryd`'s command line. The daemon's logic stays in the binary; this
//! is the definition its man page is rendered from.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

use super::log_format::LogFormat;

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
///   canaryd --config /etc/canary/canary.toml --log-format json
///   canaryd --config /etc/canary/canary.toml --detach-all
#[derive(Debug, Parser)]
// `name`: clap would otherwise take the package's ("canary-userspace")
// for --version and the man page.
#[command(name = "canaryd", version, verbatim_doc_comment)]
pub struct Args {
    /// Config file (TOML): [daemon] options and [[service]] entries.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/canary/canary.toml"
    )]
    pub config: PathBuf,
    /// Interface to attach to (repeatable); replaces daemon.interfaces. One
    /// the file lists keeps its hook there; any other runs ingress at XDP.
    #[arg(long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Move the data path even when the interfaces it would leave are where
    /// a VIP's clients come in: the VIP's address is on one, or clients of
    /// established flows are routed through one. Without it such a start is
    /// refused and nothing changes. Those clients get connection refused
    /// until canaryd runs on their interface again.
    #[arg(long, verbatim_doc_comment)]
    pub move_interfaces: bool,
    /// Control socket path; replaces daemon.socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// This host's name in its fleet, over [fleet] host (which defaults to
    /// the hostname); a Kubernetes DaemonSet passes the node's name.
    #[arg(long, value_name = "NAME")]
    pub fleet_host: Option<String>,
    /// Metrics listen address (ip:port); replaces daemon.metrics_listen.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// bpffs directory for pinned maps and programs; replaces daemon.bpffs.
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// Directory of the state file; replaces daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// error, warn, info, debug or trace; replaces daemon.log_level.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,
    /// Log lines as text, or as one JSON object per line (time, level,
    /// target, message) for log shippers.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Start clean: detach, remove pinned maps and programs and the state file first.
    /// BREAKS ESTABLISHED CONNECTIONS through the VIPs (their flow entries
    /// go) and resets counters and run-time weights to the config's.
    #[arg(long, verbatim_doc_comment)]
    pub reset: bool,
    /// Remove everything canaryd left in the kernel (programs detach, pins,
    /// flow table, counters and the state file go), then exit. BREAKS
    /// ESTABLISHED CONNECTIONS through the VIPs. Refused while a canaryd runs
    /// on the same bpffs directory: stop it first.
    #[arg(long, conflicts_with = "reset", verbatim_doc_comment)]
    pub detach_all: bool,
    /// Check the config file and the flags that override it (every error
    /// at once) and exit.
    #[arg(long, conflicts_with_all = ["reset", "detach_all"])]
    pub check: bool,
}
