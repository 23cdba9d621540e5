//! canary userspace: the library under `canaryd`, `canaryctl`, the tests,
//! the demo and the bench. Layers, lowest first; a module uses only the
//! layers below it (and its own), never one above: `tests/layers.rs`
//! checks it, docs/ARCHITECTURE.md draws it.
//!
//! 0. `error`: the library's error type.
//! 1. `model`, `host`: the vocabulary and the host's plumbing.
//! 2. `controller`, `kernel`: the rollout policy (pure) and the data path.
//! 3. `config`, `api`: the config file and canaryd's outward interfaces.
//! 4. `daemon`, `cli`: canaryd's state and canaryd's and canaryctl's
//!    command lines and output.
//! 5. `fleet`: rollouts across hosts through etcd, driving the daemon.
//!
//! Modules, one line each:
//! - `error`: the library's error type.
//! - `model`: kinds (protocol, affinity, mode, hook), `Weight`, a service,
//!   per-version signals, gRPC and `:status` counts from HTTP/2 header
//!   blocks, a rollout's records, secrets kept out of logs.
//! - `host`: this host's addresses, interfaces and routes, one rtnetlink
//!   request, capability drop and the descriptor limit.
//! - `controller`: the rollout plan, policy, statistics, gate queries,
//!   the run of one rollout, what a move or a command changes, the
//!   fleet's summed reading (ledger) and webhooks.
//! - `kernel`: everything that touches bpffs, maps, programs and links.
//! - `config`: read, check and write the `canaryd` TOML config file.
//! - `api`: the control socket's requests, replies and client, what a
//!   reload changed, and the Prometheus exposition of a status.
//! - `daemon` (`dataplane` feature): canaryd without its sockets.
//! - `fleet` (`dataplane` feature): one rollout across many hosts, kept in
//!   etcd: this host's lease and weights, the leader's looks, commands.
//! - `cli`: command lines (also for man pages and completions), status and
//!   reload as tables, the JSON log format.
//!
//! The `dataplane` feature (default) embeds the eBPF object, so it needs
//! nightly rust-src and bpf-linker to build; without it the crate is what
//! xtask needs before that toolchain exists.

pub mod error;
pub mod host;
pub mod model;

pub mod controller;
pub mod kernel;

pub mod api;
pub mod config;

pub mod cli;
#[cfg(feature = "dataplane")]
pub mod daemon;

#[cfg(feature = "dataplane")]
pub mod fleet;

pub use error::Error;
#[cfg(feature = "dataplane")]
pub use kernel::dataplane::{Dataplane, LoadOptions};
pub use kernel::maps::Verdicts;
pub use model::{
    kinds::{Affinity, AppProtocol, Hook, Protocol, XdpMode},
    service::ServiceSpec,
};
