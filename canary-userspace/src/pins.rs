//! Where the data path is pinned in bpffs: one directory per map layout
//! version, so a daemon never reuses maps written with another layout.
//!
//! ```text
//! <bpffs>/v3/maps/        one pin per map (canary_common::names::MAPS)
//! <bpffs>/v3/programs/    canary_ingress canary_egress
//! <bpffs>/v3/interfaces/  one entry per attached interface
//! ```

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

    /// One entry per interface the programs are attached to: what
    /// `--detach-all` undoes.
    pub fn interfaces(&self) -> PathBuf {
        self.dir.join("interfaces")
    }

    pub fn interface(&self, name: &str) -> PathBuf {
        self.interfaces().join(name)
    }
}
