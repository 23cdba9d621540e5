//! Where the data path is pinned in bpffs: one directory per map layout
//! version, so a daemon never reuses maps written with another layout.
//!
//! ```text
//! <bpffs>/v3/maps/        one pin per map (canary_common::names::MAPS)
//! <bpffs>/v3/programs/    canary_ingress canary_egress
//! <bpffs>/v3/interfaces/  one directory per attached interface, holding
//!                         its pinned links (xdp-driver or xdp-generic,
//!                         tcx-egress)
//! ```
//!
//! bpffs refuses every name with a dot (EPERM; the kernel reserves them),
//! and interface names may have dots (`eth0.100`) but never ':', so an
//! interface's directory spells its dots as ':'.

use std::path::{Path, PathBuf};

use canary_common::PIN_LAYOUT;

/// The pin directory of one bpffs directory (`--bpffs`, `daemon.bpffs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    /// `<bpffs>/<PIN_LAYOUT>`
    pub dir: PathBuf,
}

impl PinLayout {
    pub fn new(bpffs: &Path) -> PinLayout {
        PinLayout {
            dir: bpffs.join(PIN_LAYOUT),
        }
    }

    pub fn maps(&self) -> PathBuf {
        self.dir.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    pub fn programs(&self) -> PathBuf {
        self.dir.join("programs")
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.programs().join(name)
    }

    /// One directory per interface the programs are attached to: what
    /// `--detach-all` undoes.
    pub fn interfaces(&self) -> PathBuf {
        self.dir.join("interfaces")
    }

    /// The directory of `interface`'s pinned links.
    pub fn interface(&self, interface: &str) -> PathBuf {
        self.interfaces().join(record_name(interface))
    }
}

/// Name of an interface's directory: bpffs refuses dots, interface names
/// never have ':'.
pub fn record_name(interface: &str) -> String {
    interface.replace('.', ":")
}

/// The interface a directory under `interfaces()` stands for.
pub fn interface_name(record: &str) -> String {
    record.replace(':', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_have_no_dot_and_map_back() {
        for iface in ["eth0", "eth0.100", "a.b.c", "veth-x_1"] {
            let record = record_name(iface);
            assert!(!record.contains('.'), "{record}");
            assert_eq!(interface_name(&record), iface);
        }
    }
}
