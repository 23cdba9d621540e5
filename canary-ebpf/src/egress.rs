//! TC egress: a reply from a backend of a live flow gets its source rewritten
//! back to the VIP, so the client sees the address it connected to.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use canary_common::{
    Addr, Endpoint, FAMILY_IPV4, FlowKey, PROTO_TCP, PROTO_UDP, checksum, verdict::Verdict,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    close::{Close, Sender, track_close},
    counters::stats,
    maps::{BACKEND_OWNERS, FLOWS, HALF_OPEN},
    parse::{Packet, TCP_ACK, TCP_SYN, load, parse, ptr_at, store},
    signals,
    tables::{Table, expect_handshake_ack, promote},
};

/// Headers we may need in the linear part of the skb: Ethernet, two VLAN
/// tags, the largest IPv4 header and a TCP header.
const HEADERS_MAX: u32 = 14 + 8 + 60 + 20;

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

/// Rewrites the source to the VIP. The IPv4 header's checksum, the source
/// address and the source port are written directly (the checksum
/// incrementally, RFC 1624): the IP header checksum is always complete, and
/// the verifier makes a cloned skb's headers private before a program that
/// writes packet data runs. Only the L4 checksum goes through the kernel's
/// helper, which alone knows the skb's checksum state: a CHECKSUM_PARTIAL
/// skb (locally generated or forwarded from a veth with offloads) holds only
/// the pseudo-header sum there, which takes the address change but not the
/// port's. Profiled (docs/BENCHMARKS.md), the five helper calls this
/// replaces were a third of the egress program's time.
#[inline(always)]
fn rewrite(ctx: &TcContext, pkt: &Packet, vip: &Endpoint) -> Result<(), Verdict> {
    let fail = Verdict::PassTruncated;
    let (start, end) = (ctx.data(), ctx.data_end());
    // The source port is the first field of both TCP and UDP headers.
    let sport: *mut u16 = ptr_at(start, end, pkt.l4).ok_or(fail)?;
    if pkt.family == FAMILY_IPV4 {
        let ip: *mut Ipv4Hdr = ptr_at(start, end, pkt.l3).ok_or(fail)?;
        // SAFETY: `ip` is inside the checked IPv4 header; `load`/`store`
        // need no alignment.
        unsafe {
            let ip_check = (&raw mut (*ip).check).cast::<u16>();
            store(
                ip_check,
                checksum::replace32(load(ip_check), pkt.src[0], vip.addr[0]),
            );
            store((&raw mut (*ip).src_addr).cast::<u32>(), vip.addr[0]);
        }
    } else {
        let ip: *mut Ipv6Hdr = ptr_at(start, end, pkt.l3).ok_or(fail)?;
        // SAFETY: as above, inside the checked IPv6 header.
        unsafe { store((&raw mut (*ip).src_addr).cast::<Addr>(), vip.addr) };
    }
    // SAFETY: inside the checked L4 header's first two bytes.
    unsafe { store(sport, vip.port) };
    let check = pkt.check_offset();
    let udp = if pkt.proto == PROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let pseudo = BPF_F_PSEUDO_HDR as u64 | udp;
    if pkt.family == FAMILY_IPV4 {
        let (old, new) = (pkt.src[0], vip.addr[0]);
        let check_ptr: *mut u16 = ptr_at(start, end, check).ok_or(fail)?;
        // SAFETY: inside the checked L4 header.
        let before = unsafe { load(check_ptr) };
        ctx.l4_csum_replace(check, old as u64, new as u64, pseudo | 4)
            .map_err(|_| fail)?;
        if port_done_in_place(ctx, check, before, old, new, pkt, vip) {
            return Ok(());
        }
    } else {
        for i in 0..4 {
            let (old, new) = (pkt.src[i] as u64, vip.addr[i] as u64);
            ctx.l4_csum_replace(check, old, new, pseudo | 4)
                .map_err(|_| fail)?;
        }
    }
    ctx.l4_csum_replace(check, pkt.sport as u64, vip.port as u64, udp | 2)
        .map_err(|_| fail)?;
    Ok(())
}

/// After the helper applied the address change to the L4 checksum, tells
/// from the result which kind of sum the field holds (a complemented full
/// sum moves by −d, a CHECKSUM_PARTIAL pseudo-header sum by +d; the two
/// agree only when d is zero, see `checksum::replace32_partial`) and does
/// the port's part in place: the port's change into a full sum, nothing
/// into a partial one (the kernel sums the port when it finishes the
/// checksum). False when the result says neither (no change, a UDP
/// checksum of 0, an skb state the helper treats otherwise): the caller
/// then asks the helper, which always knows.
#[inline(always)]
fn port_done_in_place(
    ctx: &TcContext,
    check: usize,
    before: u16,
    old: u32,
    new: u32,
    pkt: &Packet,
    vip: &Endpoint,
) -> bool {
    if checksum::diff32(old, new) % 0xffff == 0 {
        return false;
    }
    // The helper may have moved the packet: fresh pointers.
    let Some(check_ptr) = ptr_at::<u16>(ctx.data(), ctx.data_end(), check) else {
        return false;
    };
    // SAFETY: inside the packet, checked just above.
    let after = unsafe { load(check_ptr) };
    if checksum::same_sum(after, checksum::replace32_partial(before, old, new)) {
        return true;
    }
    if !checksum::same_sum(after, checksum::replace32(before, old, new)) {
        return false;
    }
    let mut l4 = checksum::replace16(after, pkt.sport, vip.port);
    if pkt.proto == PROTO_UDP && l4 == 0 {
        // 0 means "no checksum" in UDP: a computed 0 is sent as 0xffff.
        l4 = 0xffff;
    }
    // SAFETY: as above.
    unsafe { store(check_ptr, l4) };
    true
}
