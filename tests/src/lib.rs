//! Shared helpers for canary's kernel and end-to-end tests.
//!
//! - `packet`: builds test frames with checksums computed here, by a routine
//!   independent of the data path's incremental updates.
//! - `checksum`: that routine (RFC 1071).
//! - `servers`: small TCP backends and clients that live in test namespaces.
//! - `harness`: topology + attached data path + backends + one service.
//! - `kit`: the same with the real canaryd (`DaemonUnderTest`), and
//!   `wait_until`, the bounded wait that orders a test's events.
//! - `fleet`: many hosts, each with its own canaryd and backends, one
//!   client, one etcd (`FleetUnderTest`), and the faults between them.
//! - `prometheus`: a real Prometheus server and promtool for metric tests.
//! - `ns_http`: an HTTP server (tiny_http) inside a test namespace.
//! - `webhook`: a receiver of canaryd's rollout events.
//! - `grpc`: a real gRPC server and load client (Python grpcio) inside test
//!   namespaces, with faults to inject and counts on both sides.
//! - `raw`: an AF_PACKET sender for spoofed frames.
//! - `demo`: the parts of `cargo xtask demo` (bin canary-demo).
//!
//! The real canaryd and canaryctl in a test namespace: `xtask::canaryd`.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

pub mod checksum;
pub mod demo;
pub mod fleet;
pub mod grpc;
pub mod harness;
pub mod kit;
pub mod ns_http;
pub mod packet;
pub mod prometheus;
pub mod raw;
pub mod servers;
pub mod webhook;

/// Fails a test that needs root (BPF programs, network namespaces) when it
/// runs without it. A skip would let a non-root `cargo test` report green
/// while testing nothing.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::assert_root()
    };
}

/// Return values of the programs under BPF_PROG_TEST_RUN (the kernel's
/// XDP_DROP, XDP_PASS, TC_ACT_OK and TC_ACT_SHOT).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// A weight from basis points, for fixtures written in the data path's
/// unit (500 is 5 %). Panics above 10000: a fixture's typo.
pub fn bp(bp: u16) -> canary_userspace::model::weight::Weight {
    canary_userspace::model::weight::Weight::from_bp(bp)
        .unwrap_or_else(|| panic!("{bp} basis points is above 100 %"))
}

/// How long a test's HTTP request may take at each step.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The scenarios of the test binary run one at a time: each drives a data
/// path, hundreds of connections and threads, which a 2-core machine cannot
/// run side by side without starving backends past their timeouts. Every
/// suite is a module of that one binary (`tests/tests/it`), so every test
/// that needs root takes this (through `root_scenario`), whichever suite it
/// is in.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed scenario poisons the lock; the next one still runs.
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// How every test that needs root begins: it fails without root (as
/// `require_root!`, pointing at the test) and waits for its turn
/// (`one_at_a_time`). Hold the guard to the end of the test.
#[track_caller]
pub fn root_scenario() -> MutexGuard<'static, ()> {
    assert_root();
    one_at_a_time()
}

/// Waits (bounded by `limit`) until `f` holds; returns whether it did.
pub fn eventually(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
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
