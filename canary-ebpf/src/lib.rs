//! Empty library target: it lets canary-userspace name this crate as a
//! build-dependency, so cargo rebuilds the eBPF object when it changes. The
//! programs themselves are the `canary` binary (src/main.rs).
#![no_std]
