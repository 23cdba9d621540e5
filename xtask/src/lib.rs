//! Helpers shared by the end-to-end tests, the demo and the benchmarks.
//!
//! Kept free of canary-userspace so that xtask builds before the eBPF
//! toolchain (nightly rust-src, bpf-linker) exists.

pub mod topology;
