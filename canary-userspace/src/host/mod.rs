//! Process plumbing: nothing in this crate below it.
//!
//! - `caps`: drop every capability canaryd does not need.
//! - `interfaces`: an interface name's syntax, existence and index.
//! - `fds`: the descriptor limit and its split between listeners and a
//!   reserve.

pub mod caps;
pub mod fds;
pub mod interfaces;
