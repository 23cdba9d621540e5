//! TCP close tracking, shared by both programs. An entry is released only
//! when both FINs are acknowledged, so the last ACK of the closing handshake
//! still reaches (ingress) or comes back from (egress) the same backend.
//! Acknowledgement is judged by sequence numbers: in a crossed close both
//! FINs are in flight at once, and the order they pass the host does not
//! say which side had seen the other's.
//!
//! A reset releases an established entry only when it is genuine: from the
//! backend (which sits behind the host), or from the client with exactly
//! the sequence number the backend acknowledged last (`backend_ack`). A
//! blind attacker guesses that number with odds of 1 in 2^32 per packet; a
//! real client whose RST carried another number (data still in flight) is
//! challenged by the backend (RFC 5961) and resets again with this one.
//! A half-open entry (no answer from the backend yet) goes on any reset:
//! it holds no connection to protect, and the next packet decides again.

use canary_common::{FIN_ACKED, FIN_SEEN, FlowEntry, FlowKey};

use crate::{
    parse::{Packet, TCP_ACK, TCP_FIN, TCP_RST},
    tables::{Table, release},
};

/// What one packet did to a flow's entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The entry stays.
    Open,
    /// The close is complete, or a genuine reset: the entry is released.
    Released,
    /// A client reset with another sequence number than the backend's last
    /// ACK, on an established entry: passed on, the entry stays.
    RstUnverified,
}

/// Which end of the connection sent the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Backend,
}

/// Updates the FIN state of `e` with one packet and releases the entry when
/// the close is complete, or on a genuine reset (see the module docs).
#[inline(always)]
pub fn track_close(
    e: &mut FlowEntry,
    pkt: &Packet,
    fkey: &FlowKey,
    from: Sender,
    table: Table,
) -> Close {
    if pkt.has(TCP_RST) {
        if table == Table::Established && from == Sender::Client && pkt.seq != e.backend_ack {
            return Close::RstUnverified;
        }
        release(e, fkey, table);
        return Close::Released;
    }
    // The FIN occupies one sequence number after the segment's data.
    let fin_end = pkt.seq.wrapping_add(pkt.payload_len).wrapping_add(1);
    let fin = pkt.has(TCP_FIN);
    let ack = pkt.has(TCP_ACK);
    // This packet's sender's FIN, and the other side's FIN it may ACK.
    let (own_fin, own_end, other_fin, other_end) = match from {
        Sender::Client => (
            &mut e.client_fin,
            &mut e.client_fin_end,
            &mut e.backend_fin,
            e.backend_fin_end,
        ),
        Sender::Backend => (
            &mut e.backend_fin,
            &mut e.backend_fin_end,
            &mut e.client_fin,
            e.client_fin_end,
        ),
    };
    if fin && *own_fin & FIN_SEEN == 0 {
        *own_fin |= FIN_SEEN;
        *own_end = fin_end;
    }
    if ack && *other_fin & FIN_SEEN != 0 && reached(pkt.ack_seq, other_end) {
        *other_fin |= FIN_ACKED;
    }
    let closed = e.client_fin & FIN_ACKED != 0 && e.backend_fin & FIN_ACKED != 0;
    if closed {
        release(e, fkey, table);
        return Close::Released;
    }
    Close::Open
}

/// Whether the connection is closing as both sides agree: a FIN the other
/// side acknowledged (which a blind spoofer cannot produce: the peer only
/// ACKs a FIN in its window). Only then may a SYN on the tuple start a new
/// connection.
#[inline(always)]
pub fn closing(e: &FlowEntry) -> bool {
    (e.client_fin | e.backend_fin) & FIN_ACKED != 0
}

/// `ack` is at or past `end`, in sequence-number space (mod 2^32).
#[inline(always)]
fn reached(ack: u32, end: u32) -> bool {
    ack.wrapping_sub(end) as i32 >= 0
}
