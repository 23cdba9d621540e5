//! Ingress: match a service, follow or make the flow's decision, rewrite
//! the destination to the chosen backend, count, pass. Written once over
//! the hook it runs at (`hook::Hook`): XDP (`canary_ingress`) or TC ingress
//! (`canary_ingress_tc`).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use canary_common::{
    DEFAULT_UDP_IDLE_TIMEOUT_NS, Endpoint, FAILSAFE_REVERT, FlowEntry, FlowKey, PROTO_TCP,
    PROTO_UDP, Service, h2::initial_app, verdict::Verdict,
};

use crate::{
    close::{Close, Sender, closing, track_close},
    counters::stats,
    decide::decide,
    hook::Hook,
    maps::{FLOWS, HALF_OPEN, SERVICES, SETTINGS},
    parse::{Odd, Packet, TCP_ACK, TCP_SYN, parse},
    signals,
    tables::{Table, completes_handshake, promote, release},
};

/// `Ok` is the verdict of a translated packet, `Err` of one that was not;
/// the entry point counts either and answers with its action.
///
/// Three ways through, cheapest first: an established flow (one FLOWS
/// lookup), a flow its backend has not answered yet (HALF_OPEN), a new
/// decision (into HALF_OPEN; egress moves it to FLOWS on the backend's
/// answer).
///
/// A TCP segment that is not a SYN looks for its established entry before
/// the service: such a packet never decides again (only a SYN or an idle
/// UDP flow does), so it needs nothing from SERVICES, and skipping that
/// lookup is most of what an established packet costs above parsing
/// (docs/BENCHMARKS.md, "Profile"). The price: a non-service TCP segment
/// that is not a SYN (traffic to the host itself) pays a FLOWS miss before
/// the SERVICES miss. Flows of a removed service leave FLOWS with it
/// (`Dataplane::forget_removed`), so they stop being translated as before.
#[inline(always)]
pub fn try_ingress<C: Hook>(ctx: &C) -> Result<Verdict, Verdict> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Read beside the bounds, before any helper call: at XDP it is their
    // difference, which needs no second read of the context.
    let frame_len = ctx.frame_len();
    let pkt = parse(start, end).map_err(odd_to_verdict)?;
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
    let may_decide_again = pkt.proto != PROTO_TCP || syn;
    if !may_decide_again && let Some(e) = FLOWS.get_ptr_mut(&fkey) {
        // SAFETY: map value pointer from a successful lookup, valid for this
        // run; this is the only reference to the entry this run makes.
        let e = unsafe { &mut *e };
        return follow_established(ctx, &pkt, e, &fkey, now, frame_len, syn);
    }

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

    let mut had_established = false;
    if may_decide_again && let Some(e) = FLOWS.get_ptr_mut(&fkey) {
        // SAFETY: as above.
        let e = unsafe { &mut *e };
        if !decides_again(e, &pkt, syn, now) {
            return follow_established(ctx, &pkt, e, &fkey, now, frame_len, syn);
        }
        // The connection this entry held is over: it stops deciding.
        release(e, &fkey, Table::Established);
        had_established = true;
    }
    if !had_established && let Some(e) = HALF_OPEN.get_ptr_mut(&fkey) {
        // SAFETY: as above.
        let e = unsafe { &mut *e };
        // A SYN here is a retransmission: the backend has not answered.
        if pkt.proto == PROTO_TCP || !udp_idle(e, now) {
            let close = forward(ctx, &pkt, e, &fkey, now, frame_len, Table::HalfOpen, true)?;
            if close == Close::Open && completes_handshake(e, &pkt) {
                promote(e, &fkey);
            }
            return Ok(translated(&pkt));
        }
    }

    // The failsafe: with canaryd's heartbeat stale, new flows are decided
    // as if the canary weight were 0 (when set to revert).
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
    // Built and updated on the stack, then inserted once: no second lookup
    // of the entry just written. New flows and re-decisions are counted
    // when the backend answers (egress), so spoofed tuples count nothing.
    let mut fresh = FlowEntry {
        backend: choice.backend.addr,
        backend_port: choice.backend.port,
        version: choice.version,
        service_id: svc.id,
        last_seen_ns: now,
        app: initial_app(svc.app_protocol),
        ..FlowEntry::default()
    };
    signals::on_new_flow(&mut fresh, &pkt);
    let close = forward(
        ctx,
        &pkt,
        &mut fresh,
        &fkey,
        now,
        frame_len,
        Table::HalfOpen,
        false,
    )?;
    if close != Close::Released && HALF_OPEN.insert(&fkey, &fresh, 0).is_err() {
        // Still translated and served; only later packets decide again.
        return Ok(Verdict::FlowTableUpdateFailed);
    }
    Ok(translated(&pkt))
}

/// Sends a packet of an established flow on to its entry's backend.
#[inline(always)]
fn follow_established<C: Hook>(
    ctx: &C,
    pkt: &Packet,
    e: &mut FlowEntry,
    fkey: &FlowKey,
    now: u64,
    frame_len: u64,
    syn: bool,
) -> Result<Verdict, Verdict> {
    let close = forward(ctx, pkt, e, fkey, now, frame_len, Table::Established, true)?;
    Ok(if close == Close::RstUnverified {
        Verdict::TranslatedRstUnverified
    } else if syn {
        Verdict::TranslatedSynEstablished
    } else {
        translated(pkt)
    })
}

/// The verdict of a translated packet, by what its headers carried.
#[inline(always)]
fn translated(pkt: &Packet) -> Verdict {
    if pkt.vlan_tags != 0 {
        Verdict::TranslatedVlan
    } else if pkt.ip_options != 0 {
        Verdict::TranslatedIpv4Options
    } else {
        Verdict::Translated
    }
}

/// Sends the packet to the entry's backend, counts it and updates the
/// entry's state (`had_entry`: it existed before this packet); says whether the packet closed the flow (its entry is
/// then released) or was a reset that could not be verified.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into one verifier-checked function; a struct of these would be built and \
              taken apart on the BPF stack, which its 512 bytes cannot spare"
)]
fn forward<C: Hook>(
    ctx: &C,
    pkt: &Packet,
    e: &mut FlowEntry,
    fkey: &FlowKey,
    now: u64,
    frame_len: u64,
    table: Table,
    had_entry: bool,
) -> Result<Close, Verdict> {
    ctx.rewrite_dst(pkt, &e.backend, e.backend_port)?;
    if let Some(s) = stats(e.service_id, e.version) {
        s.packets_in += 1;
        s.bytes_in += frame_len;
    }
    signals::on_client_packet(ctx, e, fkey, pkt, had_entry, table);
    if pkt.proto != PROTO_TCP {
        e.last_seen_ns = now;
        return Ok(Close::Open);
    }
    if e.established == 0 && !pkt.has(TCP_SYN) {
        e.established = 1;
    }
    Ok(track_close(e, pkt, fkey, Sender::Client, table))
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

/// An established entry no longer decides this packet when a TCP SYN
/// arrives on a connection both sides were closing (the client reuses a
/// tuple only once that connection is gone), or a UDP flow sat idle longer
/// than the configured timeout. A SYN on a live connection follows the
/// entry: it is a spoof or a stale duplicate, and the backend answers it
/// with a challenge ACK as Linux does (RFC 5961).
#[inline(always)]
fn decides_again(e: &FlowEntry, pkt: &Packet, syn: bool, now: u64) -> bool {
    if pkt.proto == PROTO_TCP {
        return syn && closing(e);
    }
    udp_idle(e, now)
}

/// A UDP entry idle past the configured timeout.
#[inline(always)]
fn udp_idle(e: &FlowEntry, now: u64) -> bool {
    let timeout = match SETTINGS.get(0) {
        Some(s) if s.udp_idle_timeout_ns != 0 => s.udp_idle_timeout_ns,
        _ => DEFAULT_UDP_IDLE_TIMEOUT_NS,
    };
    now.saturating_sub(e.last_seen_ns) > timeout
}

/// Only the first fragment of a datagram to a service's address, port and
/// protocol is dropped (see the verdict table); every other fragment passes,
/// so traffic to the host's own address is untouched.
#[inline(always)]
fn odd_to_verdict(odd: Odd) -> Verdict {
    if odd.verdict != Verdict::DropFragment {
        return odd.verdict;
    }
    let key = Endpoint {
        addr: odd.dst,
        port: odd.dport,
        proto: odd.proto,
        family: odd.family,
    };
    // SAFETY: only whether the entry exists is used; the value is not read.
    if unsafe { SERVICES.get(&key) }.is_some() {
        Verdict::DropFragment
    } else {
        Verdict::PassFragment
    }
}
