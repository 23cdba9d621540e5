//! The vocabulary every layer shares; depends on nothing in this crate but
//! `error`.
//!
//! - `kinds`: protocol, affinity, XDP mode, hook, rollout mode: one
//!   spelling each.
//! - `weight`: the canary's share in basis points, and who set it.
//! - `service`: the service description userspace hands to the data path.
//! - `signals`: health signals per version: readings, differences, error
//!   rate and latency quantiles (one implementation for all users).
//! - `rollout`: a rollout's phase and the records of its decisions.
//! - `grpc_code`: gRPC status codes by name, and the set a rollout counts
//!   as errors.
//! - `redact`: credentials out of URLs before they are logged or shown.
//! - `grpc`: gRPC status and HTTP/2 `:status` from the server header
//!   blocks the kernel hands over (HPACK, per connection).

pub mod grpc;
pub mod grpc_code;
pub mod kinds;
pub mod redact;
pub mod rollout;
pub mod service;
pub mod signals;
pub mod weight;
