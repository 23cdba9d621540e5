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

/// Fails a test that needs root (BPF programs, network namespaces) when it
/// runs without it. A skip would let a non-root `cargo test` report green
/// while testing nothing.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::assert_root()
    };
}

/// The check behind `require_root!`; the panic points at the calling test.
#[track_caller]
pub fn assert_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "needs root: loads BPF programs and creates network namespaces; \
             run `cargo xtask test` as root"
        );
    }
}
