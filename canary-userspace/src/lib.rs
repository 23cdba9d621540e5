//! canary userspace: the library under `canaryd`, `canaryctl`, the tests,
//! the demo and the bench. Module map (docs/ARCHITECTURE.md has the whole tree):
//!
//! Always built (no eBPF toolchain needed; xtask uses these):
//! - `config`: read, check and write the `canaryd` TOML config file.
//! - `controller`: the rollout policy (pure) and its statistics.
//! - `api`: the control socket's typed requests, replies, error codes and
//!   client.
//! - `kinds`: protocol, affinity, XDP mode, hook: one spelling each.
//! - `service`: the service description userspace hands to the data path.
//! - `pins`: where the data path is pinned in bpffs.
//! - `maps`: typed handles on the data path's maps, from a load or from pins.
//! - `signals`: health signals per version: readings, differences,
//!   error rate and latency quantiles (one implementation for all users).
//! - `metrics`: Prometheus exposition of a status.
//! - `state`: the atomically written state file (run-time weights).
//! - `lock`: one canaryd per pin directory (flock on the bpffs directory).
//! - `changes`: what a reload changed, old -> new, and a service in one line.
//! - `cli`: canaryd's and canaryctl's command lines (also for man pages and
//!   completions), status and reload as tables, the JSON log format.
//! - `bpffs`, `caps`, `fds`: host plumbing (bpffs mount, capability drop,
//!   the descriptor limit and its split between listeners and a reserve).
//! - `error`: the library's error type.
//!
//! With the `dataplane` feature (default; embeds the eBPF object, so it
//! needs nightly rust-src and bpf-linker to build):
//! - `dataplane`: load the object, pin and attach it, publish services and
//!   weights.
//! - `attachment`: attachments that outlive the daemon.
//! - `inspect`: what the kernel runs on an interface (status's truth).
//! - `daemon`: canaryd's state, its owning thread and the status readers.

pub mod api;
pub mod bpffs;
pub mod caps;
pub mod changes;
pub mod cli;
pub mod config;
pub mod controller;
pub mod error;
pub mod fds;
pub mod kinds;
pub mod lock;
pub mod maps;
pub mod metrics;
pub mod pin_check;
pub mod pins;
pub mod redact;
pub mod service;
pub mod signals;
pub mod state;
pub mod upgrade;

#[cfg(feature = "dataplane")]
pub mod attachment;
#[cfg(feature = "dataplane")]
pub mod daemon;
#[cfg(feature = "dataplane")]
pub mod dataplane;
#[cfg(feature = "dataplane")]
pub mod inspect;

#[cfg(feature = "dataplane")]
pub use dataplane::{Dataplane, LoadOptions};
pub use error::Error;
pub use kinds::{Affinity, Hook, Protocol, XdpMode};
pub use maps::Verdicts;
pub use service::ServiceSpec;
