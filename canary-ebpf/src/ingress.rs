//! XDP ingress: match a service, follow or make the flow's decision, rewrite
//! the destination to the chosen backend, count, XDP_PASS.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use canary_common::{
    Addr, DEFAULT_UDP_IDLE_TIMEOUT_NS, Endpoint, FAILSAFE_REVERT, FAMILY_IPV4, FlowEntry, FlowKey,
    PROTO_TCP, PROTO_UDP, Service, checksum, verdict::Verdict,
};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::{
    close::{Sender, track_close},
    counters::stats,
    decide::decide,
    maps::{FLOWS, SERVICES, SETTINGS, VIP_ADDRESSES},
    parse::{
        Odd, Packet, TCP_ACK, TCP_CHECK_OFFSET, TCP_SYN, UDP_CHECK_OFFSET, load, parse, ptr_at,
        store,
    },
    signals,
};

/// `Ok` is the verdict of a translated packet, `Err` of one that was not;
/// the entry point counts either and answers with its action.
#[inline(always)]
pub fn try_ingress(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let pkt = parse(start, end).map_err(odd_to_verdict)?;
    let key = Endpoint {
        addr: pkt.dst,
        port: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
    };
    // SAFETY: the value's memory stays valid while the program runs, and it
    // is copied out at once: nothing below reads map memory userspace may be
    // rewriting.
    let Some(svc) = (unsafe { SERVICES.get(&key) }).copied() else {
        return Err(Verdict::PassNotService);
    };
    let fkey = FlowKey {
        client: pkt.src,
        vip: pkt.dst,
        client_port: pkt.sport,
        vip_port: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    let syn = pkt.proto == PROTO_TCP && pkt.has(TCP_SYN) && !pkt.has(TCP_ACK);
    let now = if pkt.proto == PROTO_UDP {
        // SAFETY: a BPF helper call with no arguments and no preconditions.
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };

    let frame_len = (end - start) as u64;
    let pinned = match FLOWS.get_ptr_mut(&fkey) {
        // SAFETY: map value pointer from a successful lookup, valid for this
        // run; the shared reference ends with the guard, before the `&mut`.
        Some(e) if !is_stale(unsafe { &*e }, &pkt, syn, now) => {
            // SAFETY: as above; this is the only reference to the entry now.
            forward(ctx, &pkt, unsafe { &mut *e }, &fkey, now, frame_len, true)?;
            true
        }
        found => {
            // The failsafe: with canaryd's heartbeat stale, new flows are
            // decided as if the canary weight were 0 (when set to revert).
            let reverted = failsafe_reverts(&svc);
            let weighed = Service {
                weight_bp: if reverted { 0 } else { svc.weight_bp },
                ..svc
            };
            let choice = decide(&weighed, &pkt).ok_or(Verdict::DropNoBackend)?;
            if reverted
                && svc.weight_bp != 0
                && decide(&svc, &pkt).is_some_and(|c| c.version != choice.version)
            {
                signals::on_failsafe(svc.id, choice.version);
            }
            if let Some(s) = stats(svc.id, choice.version) {
                // A mid-stream TCP packet with no entry at all was evicted
                // (or the table was reset): re-decided, not a new flow.
                if pkt.proto == PROTO_TCP && !syn && found.is_none() {
                    s.rehashes += 1;
                } else {
                    s.new_flows += 1;
                }
            }
            // Built and updated on the stack, then inserted once: no second
            // lookup of the entry just written.
            let mut fresh = FlowEntry {
                backend: choice.backend.addr,
                backend_port: choice.backend.port,
                version: choice.version,
                service_id: svc.id,
                last_seen_ns: now,
                ..FlowEntry::default()
            };
            signals::on_new_flow(&mut fresh, &pkt);
            let open = forward(ctx, &pkt, &mut fresh, &fkey, now, frame_len, false)?;
            !open || FLOWS.insert(&fkey, &fresh, 0).is_ok()
        }
    };
    Ok(if !pinned {
        // Still translated and served; only later packets must decide again.
        Verdict::FlowTableUpdateFailed
    } else if pkt.vlan_tags != 0 {
        Verdict::TranslatedVlan
    } else if pkt.ip_options != 0 {
        Verdict::TranslatedIpv4Options
    } else {
        Verdict::Translated
    })
}

/// Sends the packet to the entry's backend, counts it and updates the
/// entry's state (`had_entry`: the entry existed before this packet).
/// Returns false when the packet closed the flow (its entry is released).
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    pkt: &Packet,
    e: &mut FlowEntry,
    fkey: &FlowKey,
    now: u64,
    frame_len: u64,
    had_entry: bool,
) -> Result<bool, Verdict> {
    rewrite(ctx, pkt, &e.backend, e.backend_port)?;
    if let Some(s) = stats(e.service_id, e.version) {
        s.packets_in += 1;
        s.bytes_in += frame_len;
    }
    signals::on_client_packet(e, pkt, had_entry);
    if pkt.proto != PROTO_TCP {
        e.last_seen_ns = now;
        return Ok(true);
    }
    if e.established == 0 && !pkt.has(TCP_SYN) {
        e.established = 1;
    }
    Ok(!track_close(e, pkt, fkey, Sender::Client))
}

/// Whether the failsafe sends this new flow to stable: canaryd's heartbeat
/// is older than the configured timeout and the mode is revert. Read only
/// for new flows; established ones follow their entries whatever happens.
#[inline(always)]
fn failsafe_reverts(svc: &Service) -> bool {
    if svc.weight_bp == 0 {
        return false;
    }
    let Some(s) = SETTINGS.get(0) else {
        return false;
    };
    if s.failsafe != FAILSAFE_REVERT || s.failsafe_timeout_ns == 0 {
        return false;
    }
    // SAFETY: a BPF helper call with no arguments and no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    now.saturating_sub(s.heartbeat_ns) > s.failsafe_timeout_ns
}

/// An entry no longer decides this packet when a TCP SYN arrives after the
/// tuple's earlier connection completed its handshake (the client only
/// reuses a tuple once that connection is gone), or a UDP flow sat idle
/// longer than the configured timeout. A SYN before the handshake completes
/// is a retransmission and follows the entry.
#[inline(always)]
fn is_stale(e: &FlowEntry, pkt: &Packet, syn: bool, now: u64) -> bool {
    if pkt.proto == PROTO_TCP {
        return syn && e.established != 0;
    }
    let timeout = match SETTINGS.get(0) {
        Some(s) if s.udp_idle_timeout_ns != 0 => s.udp_idle_timeout_ns,
        _ => DEFAULT_UDP_IDLE_TIMEOUT_NS,
    };
    now.saturating_sub(e.last_seen_ns) > timeout
}

/// Deletes a closed flow's entry and counts it.
#[inline(always)]
pub fn release(e: &FlowEntry, fkey: &FlowKey) {
    if let Some(s) = stats(e.service_id, e.version) {
        s.closed_flows += 1;
    }
    let _ = FLOWS.remove(fkey);
}

/// Fragments and extension-header packets are dropped only when they are
/// addressed to a VIP; to any other address they pass like all other traffic.
#[inline(always)]
fn odd_to_verdict(odd: Odd) -> Verdict {
    if let Verdict::DropFragment | Verdict::DropIpv6Extension = odd.verdict {
        let key = Endpoint {
            addr: odd.dst,
            port: 0,
            proto: 0,
            family: odd.family,
        };
        // SAFETY: only whether the entry exists is used; the value is not read.
        if unsafe { VIP_ADDRESSES.get(&key) }.is_none() {
            return Verdict::PassNotService;
        }
    }
    odd.verdict
}

/// Rewrites destination address and port and updates the IPv4 header and L4
/// checksums incrementally (RFC 1624). A UDP/IPv4 checksum of 0 means "none"
/// and stays 0; a computed UDP checksum of 0 is sent as 0xffff.
#[inline(always)]
fn rewrite(ctx: &XdpContext, pkt: &Packet, addr: &Addr, port: u16) -> Result<(), Verdict> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let truncated = Verdict::PassTruncated;
    // One checked pointer per header; fields at constant offsets from it (the
    // verifier tracks bounds per pointer).
    let l4_hdr: *mut u8 = if pkt.proto == PROTO_TCP {
        ptr_at::<TcpHdr>(start, end, pkt.l4).ok_or(truncated)? as *mut u8
    } else {
        ptr_at::<UdpHdr>(start, end, pkt.l4).ok_or(truncated)? as *mut u8
    };
    let check_at = if pkt.proto == PROTO_TCP {
        TCP_CHECK_OFFSET
    } else {
        UDP_CHECK_OFFSET
    };
    let check = l4_hdr.wrapping_add(check_at).cast::<u16>();
    let dport = l4_hdr.wrapping_add(2).cast::<u16>();
    // SAFETY: every pointer is inside a header `ptr_at` checked (the L4
    // header above, the IP header below, each before use), and `load` /
    // `store` need no alignment.
    unsafe {
        let old_check = load(check);
        let skip_l4 = pkt.proto == PROTO_UDP && pkt.family == FAMILY_IPV4 && old_check == 0;
        let mut l4 = old_check;
        if pkt.family == FAMILY_IPV4 {
            let ip: *mut Ipv4Hdr = ptr_at(start, end, pkt.l3).ok_or(truncated)?;
            let old = pkt.dst[0];
            let ip_check = (&raw mut (*ip).check).cast::<u16>();
            store(ip_check, checksum::replace32(load(ip_check), old, addr[0]));
            store((&raw mut (*ip).dst_addr).cast::<u32>(), addr[0]);
            l4 = checksum::replace32(l4, old, addr[0]);
        } else {
            let ip: *mut Ipv6Hdr = ptr_at(start, end, pkt.l3).ok_or(truncated)?;
            for (old, new) in pkt.dst.iter().zip(addr) {
                l4 = checksum::replace32(l4, *old, *new);
            }
            store((&raw mut (*ip).dst_addr).cast::<Addr>(), *addr);
        }
        l4 = checksum::replace16(l4, pkt.dport, port);
        store(dport, port);
        if !skip_l4 {
            let l4 = if pkt.proto == PROTO_UDP && l4 == 0 {
                0xffff
            } else {
                l4
            };
            store(check, l4);
        }
    }
    Ok(())
}
