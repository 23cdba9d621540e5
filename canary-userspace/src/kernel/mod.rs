//! Everything that touches the kernel's BPF objects: bpffs, pins, maps,
//! programs and links. Uses `model`, `host` and `error` only.
//!
//! Always built (xtask and the status readers need no eBPF toolchain):
//! - `bpffs`: mount and check the BPF filesystem.
//! - `pins`: where the data path is pinned in bpffs.
//! - `pin_check`: a pinned map's type and sizes against this build's.
//! - `maps`: typed handles on the data path's maps, from a load or pins.
//! - `lock`: one canaryd per pin directory (flock on the bpffs directory).
//! - `upgrade`: carry pins over from the previous pin layout.
//! - `sys`: the raw bpf(2) calls aya 0.14 does not offer.
//!
//! With the `dataplane` feature:
//! - `dataplane`: load the object, pin and attach it, publish services and
//!   weights.
//! - `attachment`: attachments that outlive the daemon.
//! - `inspect`: what the kernel runs on an interface (status's truth).
//! - `h2_ring`: the H2_HEADERS ring buffer, read as the kernel fills it.

pub mod bpffs;
pub mod lock;
pub mod maps;
pub mod pin_check;
pub mod pins;
pub mod sys;
pub mod upgrade;

#[cfg(feature = "dataplane")]
pub mod attachment;
#[cfg(feature = "dataplane")]
pub mod dataplane;
#[cfg(feature = "dataplane")]
pub mod h2_ring;
#[cfg(feature = "dataplane")]
pub mod inspect;
