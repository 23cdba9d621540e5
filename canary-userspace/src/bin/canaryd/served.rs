//! What the socket servers share: its own module so that `run`, which
//! starts the servers, and the servers themselves both depend on it and not
//! on each other.

use std::sync::Arc;

use canary_userspace::{
    daemon::{observe::Observer, owner::Handle},
    fleet::Fleet,
};

/// What the socket servers need: the owner's handle for changes, the
/// observer for reads.
#[derive(Clone)]
pub struct Served {
    pub owner: Handle,
    pub observer: Observer,
    /// `[fleet]`: rollout commands act on the fleet's rollout.
    pub fleet: Option<Arc<Fleet>>,
}
