//! TC egress: a reply from a backend of a live flow gets its source rewritten
//! back to the VIP, so the client sees the address it connected to.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use canary_common::{Endpoint, FlowKey, PROTO_TCP, verdict::Verdict};

use crate::{
    close::{Close, Sender, track_close},
    counters::stats,
    h2,
    hook::{Side, pull_headers, skb_rewrite},
    maps::{BACKEND_OWNERS, FLOWS, HALF_OPEN},
    parse::{TCP_ACK, TCP_SYN, parse},
    signals,
    tables::{Table, expect_handshake_ack, promote},
};

/// `Ok` is the verdict of a translated reply, `Err` of one left as it is;
/// the entry point counts either.
///
/// `h2` is set when the reply's payload is for `h2` to walk, which
/// `canary_egress_h2` does (tail-called once this program has counted).
#[inline(always)]
pub fn try_egress(ctx: &TcContext, h2: &mut bool) -> Result<Verdict, Verdict> {
    // Locally built replies keep their headers linear, but a GSO or cloned
    // skb may not.
    pull_headers(ctx);
    let pkt = parse(ctx.data(), ctx.data_end()).map_err(|odd| match odd.verdict {
        // A reply fragment cannot be matched; it leaves untouched.
        Verdict::DropFragment => Verdict::PassFragment,
        v => v,
    })?;
    let from = Endpoint {
        addr: pkt.src,
        port: pkt.sport,
        proto: pkt.proto,
        family: pkt.family,
    };
    // SAFETY: the value's memory stays valid while the program runs, and it
    // is copied out at once: nothing below reads map memory userspace may be
    // rewriting.
    let Some(owner) = (unsafe { BACKEND_OWNERS.get(&from) }).copied() else {
        return Err(Verdict::PassNotService);
    };
    let fkey = FlowKey {
        client: pkt.dst,
        vip: owner.vip.addr,
        client_port: pkt.dport,
        vip_port: owner.vip.port,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    let (entry, table) = match FLOWS.get_ptr_mut(&fkey) {
        Some(e) => (e, Table::Established),
        None => (
            HALF_OPEN.get_ptr_mut(&fkey).ok_or(Verdict::EgressNoFlow)?,
            Table::HalfOpen,
        ),
    };
    // SAFETY: map value pointer from a successful lookup, valid for this run;
    // this is the only reference to it this run makes.
    let e = unsafe { &mut *entry };
    // The client may hold a flow to this VIP that went to another backend
    // while talking to this backend directly: only the flow's own backend is
    // translated.
    if e.backend != pkt.src || e.backend_port != pkt.sport {
        return Err(Verdict::EgressNoFlow);
    }
    skb_rewrite(ctx, &pkt, Side::Source, &owner.vip.addr, owner.vip.port)?;
    if let Some(s) = stats(e.service_id, e.version) {
        s.packets_out += 1;
        s.bytes_out += ctx.len() as u64;
    }
    signals::on_backend_packet(ctx, e, &pkt, table);
    if pkt.proto != PROTO_TCP {
        // SAFETY: a BPF helper call with no arguments and no preconditions.
        e.last_seen_ns = unsafe { bpf_ktime_get_ns() };
        if table == Table::HalfOpen {
            promote(e, &fkey);
        }
        return Ok(Verdict::Translated);
    }
    // What a genuine client RST must carry (see close.rs); written only when
    // it moved, which a reply that carries no new ACK does not.
    if pkt.has(TCP_ACK) && e.backend_ack != pkt.ack_seq {
        e.backend_ack = pkt.ack_seq;
    }
    if track_close(e, &pkt, &fkey, Sender::Backend, table) == Close::Released {
        return Ok(Verdict::Translated);
    }
    *h2 = pkt.payload_len != 0 && signals::is_h2(e) && signals::enabled();
    if table == Table::HalfOpen {
        if pkt.has(TCP_SYN) {
            // The client's ACK of this completes the flow (ingress).
            expect_handshake_ack(e, &pkt);
        } else {
            // The backend talks on a connection it has: a flow decided
            // mid-stream is real.
            promote(e, &fkey);
        }
    }
    Ok(Verdict::Translated)
}

/// The tail-called part of egress: a translated reply whose payload `h2`
/// walks (`try_egress` said so). Its flow is found again from the packet,
/// whose source is the VIP by now.
#[inline(always)]
pub fn h2_reply(ctx: &TcContext) {
    let Ok(pkt) = parse(ctx.data(), ctx.data_end()) else {
        return;
    };
    let fkey = FlowKey {
        client: pkt.dst,
        vip: pkt.src,
        client_port: pkt.dport,
        vip_port: pkt.sport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    let Some(entry) = FLOWS
        .get_ptr_mut(&fkey)
        .or_else(|| HALF_OPEN.get_ptr_mut(&fkey))
    else {
        return;
    };
    // SAFETY: map value pointer from a successful lookup, valid for this
    // run; this is the only reference to it this run makes.
    let e = unsafe { &mut *entry };
    h2::server_payload(ctx, e, &fkey, &signals::segment(&pkt));
}
