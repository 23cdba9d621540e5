//! canary userspace: the library under `canaryd` and `canaryctl`.
//!
//! - `dataplane`: load the embedded eBPF object, attach it, write services
//!   and weights, read counters.
//! - `service`: the service description userspace hands to the data path.
//! - `error`: the library's error type.

pub mod dataplane;
pub mod error;
pub mod service;

pub use dataplane::{Dataplane, LoadOptions, Verdicts};
pub use error::Error;
pub use service::{Affinity, Protocol, ServiceSpec};
