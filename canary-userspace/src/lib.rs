//! canary userspace: the library under `canaryd` and `canaryctl`.
//!
//! - `config`: read and check the `canaryd` TOML config file.
//! - `dataplane`: load the embedded eBPF object, pin and attach it, write
//!   services and weights, read counters.
//! - `daemon`: what canaryd does (start from pins, status, set-weight,
//!   reload), without its sockets.
//! - `api`: the control socket's JSON messages and the client side.
//! - `metrics`: Prometheus exposition of the data path's counters.
//! - `state`: the atomically written state file (run-time weights).
//! - `attachment`: XDP/TC attachments that outlive the daemon.
//! - `bpffs`, `caps`: host plumbing (bpffs mount, capability drop).
//! - `service`: the service description userspace hands to the data path.
//! - `error`: the library's error type.

pub mod api;
pub mod attachment;
pub mod bpffs;
pub mod caps;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod error;
pub mod metrics;
pub mod service;
pub mod state;

pub use dataplane::{Dataplane, LoadOptions, Verdicts};
pub use error::Error;
pub use service::{Affinity, Protocol, ServiceSpec};
