//! Helpers shared by the end-to-end tests, the demo and the benchmarks.
//!
//! Uses canary-userspace without its `dataplane` feature, so xtask builds
//! before the eBPF toolchain (nightly rust-src, bpf-linker) exists.
//!
//! - `topology`: namespaces, veths and addresses of a test topology.
//! - `canaryd`: the real canaryd and canaryctl in a test namespace.
//! - `http`: a bounded HTTP GET from inside a namespace.
//! - `stats`: the median of repeated runs.
//! - `man`: man pages of canaryd and canaryctl from their clap definitions.
//! - `package`: the Debian package (`cargo xtask package`).
//! - `cmd`, `paths`: running a command, where the workspace and target are.

pub mod canaryd;
pub mod cmd;
pub mod http;
pub mod man;
pub mod package;
pub mod paths;
pub mod stats;
pub mod topology;
