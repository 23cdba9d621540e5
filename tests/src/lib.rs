//! Shared helpers for canary's kernel and end-to-end tests.
//!
//! - `packet`: builds test frames with checksums computed here, by a routine
//!   independent of the data path's incremental updates.
//! - `checksum`: that routine (RFC 1071).
//! - `servers`: small TCP backends and clients that live in test namespaces.
//! - `harness`: topology + attached data path + backends + one service.
//! - `prometheus`: a real Prometheus server and promtool for metric tests.
//! - `daemon`: the real canaryd/canaryctl binaries run in a test namespace.

pub mod checksum;
pub mod daemon;
pub mod harness;
pub mod packet;
pub mod prometheus;
pub mod servers;

/// Skips a test that needs root (BPF, namespaces), saying why.
#[macro_export]
macro_rules! require_root {
    () => {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to load BPF programs and create network namespaces");
            return;
        }
    };
}
