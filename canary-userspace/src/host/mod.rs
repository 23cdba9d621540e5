//! Process plumbing: nothing in this crate below it.
//!
//! - `addresses`: this host's addresses, per interface.
//! - `caps`: drop every capability canaryd does not need.
//! - `interfaces`: an interface name's syntax, existence and index.
//! - `netlink` and `routes` (`dataplane` feature, which brings the netlink
//!   crates): one rtnetlink request; the interface a route leaves by.
//! - `fds`: the descriptor limit and its split between listeners and a
//!   reserve.

pub mod addresses;
pub mod caps;
pub mod fds;
pub mod interfaces;
#[cfg(feature = "dataplane")]
pub mod netlink;
#[cfg(feature = "dataplane")]
pub mod routes;
