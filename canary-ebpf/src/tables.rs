//! The two flow tables and the moves between them.
//!
//! A flow is decided into HALF_OPEN and moves to FLOWS only once it is
//! shown to be real, so that tuples an attacker makes up (spoofed SYNs,
//! ACKs, RSTs from addresses that never complete anything) churn HALF_OPEN
//! and never evict an established flow:
//! - TCP from a SYN: when the client's ACK acknowledges the backend's
//!   SYN-ACK (its sequence number + 1, which a blind spoofer cannot know);
//! - TCP decided mid-stream (its entry evicted, or the tables reset): when
//!   the backend answers with anything but a reset (a backend that has no
//!   such connection resets it, and the entry goes);
//! - UDP, which has no handshake: when the backend answers.
//!
//! New flows and re-decisions are counted when they move, so counters see
//! only flows the backend took part in.

use canary_common::{FlowEntry, FlowKey, HANDSHAKE_TOKEN, PROTO_TCP, h2::APP_H2, handshake_token};

use crate::{
    counters::stats,
    maps::{FLOWS, H2_CONNS, HALF_OPEN},
    parse::{Packet, TCP_ACK, TCP_SYN},
};

/// Which table an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// FLOWS: established.
    Established,
    /// HALF_OPEN: decided, not shown to be real yet.
    HalfOpen,
}

/// Egress, a SYN-ACK of a half-open flow: remember what completes it.
#[inline(always)]
pub fn expect_handshake_ack(e: &mut FlowEntry, pkt: &Packet) {
    e.last_seen_ns = handshake_token(pkt.seq.wrapping_add(1));
}

/// Ingress: this client packet completes a half-open flow's handshake.
#[inline(always)]
pub fn completes_handshake(e: &FlowEntry, pkt: &Packet) -> bool {
    pkt.proto == PROTO_TCP
        && pkt.has(TCP_ACK)
        && !pkt.has(TCP_SYN)
        && e.last_seen_ns == handshake_token(pkt.ack_seq)
}

/// Moves a half-open flow to FLOWS and counts it: a new flow (a TCP flow
/// from its SYN, whose handshake token is set, or a UDP flow), or a
/// re-decision (a TCP flow decided mid-stream). If FLOWS refuses the entry
/// it stays half-open and moves at the next chance.
#[inline(always)]
pub fn promote(e: &FlowEntry, fkey: &FlowKey) {
    let tcp = fkey.proto == PROTO_TCP;
    let redecided = tcp && e.last_seen_ns & HANDSHAKE_TOKEN == 0;
    // A TCP entry keeps its handshake token: it is where the backend's
    // byte stream starts, which an HTTP/2 walk of its replies needs.
    if FLOWS.insert(fkey, e, 0).is_err() {
        return;
    }
    if let Some(s) = stats(e.service_id, e.version) {
        if redecided {
            s.rehashes += 1;
        } else {
            s.new_flows += 1;
        }
    }
    let _ = HALF_OPEN.remove(fkey);
}

/// Deletes a flow's entry from its table; an established one is counted as
/// closed.
#[inline(always)]
pub fn release(e: &FlowEntry, fkey: &FlowKey, table: Table) {
    match table {
        Table::Established => {
            if let Some(s) = stats(e.service_id, e.version) {
                s.closed_flows += 1;
            }
            let _ = FLOWS.remove(fkey);
            if e.app == APP_H2 {
                let _ = H2_CONNS.remove(fkey);
            }
        }
        Table::HalfOpen => {
            let _ = HALF_OPEN.remove(fkey);
        }
    }
}
