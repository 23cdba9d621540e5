//! Types and pure functions shared by the canary eBPF programs and userspace.
//!
//! Every map key and value is `#[repr(C)]`, `Copy`, and laid out without
//! implicit padding (explicit `_pad` fields), so the bytes the kernel hashes
//! are exactly the bytes userspace writes. Flags are integers, never `bool`.
#![no_std]

pub mod checksum;
pub mod consts;
pub mod h2;
pub mod hash;
pub mod names;
pub mod signals;
pub mod types;
pub mod verdict;

pub use consts::*;
pub use types::*;
