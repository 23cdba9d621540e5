//! Helpers shared by the end-to-end tests, the demo and the benchmarks.
//!
//! Kept free of canary-userspace so that xtask builds before the eBPF
//! toolchain (nightly rust-src, bpf-linker) exists.
//!
//! - `topology`: namespaces, veths and addresses of a test topology.
//! - `http`: a bounded HTTP GET from inside a namespace.
//! - `stats`: the median of repeated runs.

pub mod http;
pub mod stats;
pub mod topology;
