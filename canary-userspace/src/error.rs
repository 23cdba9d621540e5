//! One error type for the library; binaries add context with anyhow.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the eBPF object failed (is this root, with BPF and BTF available?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("attaching to interface {interface}: {source}")]
    Attach {
        interface: String,
        source: aya::programs::ProgramError,
    },
    #[error("attaching to interface {interface}: {source}")]
    Persistent {
        interface: String,
        source: std::io::Error,
    },
    #[error("service {service}: {what}")]
    InvalidService { service: String, what: String },
    #[error("all {max} service slots are in use")]
    TooManyServices { max: u32 },
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("creating pin directory {path}: {source}")]
    PinDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("pin {path}: {what}")]
    Pin {
        path: std::path::PathBuf,
        what: String,
    },
    #[error("pinned link {path}: {source}")]
    Link {
        path: std::path::PathBuf,
        source: aya::programs::links::LinkError,
    },
    #[error(
        "interface {interface} already has XDP program {program}, which canary did not attach; \
         take it off first (ip link set dev {interface} xdp off)"
    )]
    Occupied { interface: String, program: String },
    #[error(
        "interface {interface}: hook = \"tc\" needs pinned tcx links, which this kernel refuses \
         ({reason}); use hook = \"xdp\" there"
    )]
    TcHookRefused { interface: String, reason: String },
    #[error("ring buffer {name}: {source}")]
    Ring {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("backend {backend} already serves service {owner}")]
    BackendInUse { backend: SocketAddr, owner: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, `a: b: c`, each cause once. The
/// check for a cause already in the line is for this type's variants that
/// name their aya or io cause in their message and return it as
/// `source()` too, and for aya's own errors, which do both in places: a
/// plain `{:#}` would print those causes twice. `DaemonError` does not
/// need it: it names its causes (through this) and returns none.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = std::io::Error::other("disk full");
        let e = anyhow::Error::new(Error::PinDir {
            path: "/sys/fs/bpf/x".into(),
            source: inner,
        })
        .context("starting the data path");
        assert_eq!(
            chain(e.as_ref()),
            "starting the data path: creating pin directory /sys/fs/bpf/x: disk full"
        );
    }
}
