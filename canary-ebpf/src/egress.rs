//! TC egress: a reply from a backend of a live flow gets its source rewritten
//! back to the VIP, so the client sees the address it connected to.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use canary_common::{Endpoint, FAMILY_IPV4, FlowKey, PROTO_TCP, PROTO_UDP, verdict::Verdict};

use crate::{
    close::{Close, Sender, track_close},
    counters::stats,
    maps::{BACKEND_OWNERS, FLOWS, HALF_OPEN},
    parse::{Packet, TCP_ACK, TCP_SYN, parse},
    signals,
    tables::{Table, expect_handshake_ack, promote},
};

/// Headers we may need in the linear part of the skb: Ethernet, two VLAN
/// tags, the largest IPv4 header and a TCP header.
const HEADERS_MAX: u32 = 14 + 8 + 60 + 20;
/// Offsets of the source address in the IPv4 and IPv6 headers.
const IPV4_SRC_OFFSET: usize = 12;
const IPV4_CHECK_OFFSET: usize = 10;
const IPV6_SRC_OFFSET: usize = 8;

/// `Ok` is the verdict of a translated reply, `Err` of one left as it is;
/// the entry point counts either.
#[inline(always)]
pub fn try_egress(ctx: &TcContext) -> Result<Verdict, Verdict> {
    // Locally built replies keep their headers linear, but a GSO or cloned
    // skb may not: pull them in once rather than misreading them as truncated.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < HEADERS_MAX && ctx.len() > linear {
        let _ = ctx.pull_data(ctx.len().min(HEADERS_MAX));
    }
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
    rewrite(ctx, &pkt, &owner.vip)?;
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

/// Rewrites the source to the VIP with the kernel's checksum helpers, which
/// also handle CHECKSUM_PARTIAL skbs of locally generated replies correctly
/// (only the pseudo-header part is updated there).
#[inline(always)]
fn rewrite(ctx: &TcContext, pkt: &Packet, vip: &Endpoint) -> Result<(), Verdict> {
    let fail = Verdict::PassTruncated;
    let check = pkt.check_offset();
    let udp = if pkt.proto == PROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let pseudo = BPF_F_PSEUDO_HDR as u64 | udp;
    if pkt.family == FAMILY_IPV4 {
        let (old, new) = (pkt.src[0] as u64, vip.addr[0] as u64);
        ctx.l3_csum_replace(pkt.l3 + IPV4_CHECK_OFFSET, old, new, 4)
            .map_err(|_| fail)?;
        ctx.l4_csum_replace(check, old, new, pseudo | 4)
            .map_err(|_| fail)?;
        ctx.store(pkt.l3 + IPV4_SRC_OFFSET, &vip.addr[0], 0)
            .map_err(|_| fail)?;
    } else {
        for i in 0..4 {
            let (old, new) = (pkt.src[i] as u64, vip.addr[i] as u64);
            ctx.l4_csum_replace(check, old, new, pseudo | 4)
                .map_err(|_| fail)?;
        }
        ctx.store(pkt.l3 + IPV6_SRC_OFFSET, &vip.addr, 0)
            .map_err(|_| fail)?;
    }
    ctx.l4_csum_replace(check, pkt.sport as u64, vip.port as u64, udp | 2)
        .map_err(|_| fail)?;
    ctx.store(pkt.l4, &vip.port, 0).map_err(|_| fail)?;
    Ok(())
}
