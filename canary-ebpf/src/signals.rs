//! Health signals: requests, time to first byte, HTTP status classes,
//! resets, refusals, SYN retransmits and connect time, per (service,
//! version), counted in the SIGNALS per-CPU array. Latency is taken for
//! every request up to a floor rate per CPU and version, and for an
//! unbiased sample above it (`Sampler`, the SAMPLER per-CPU array).
//!
//! Ingress and egress of one flow can run on two CPUs at once. They share
//! two u64 fields of the flow entry (`request_ns`, `syn_ns`), each written
//! whole: a race can cost a request counted once too few or a latency taken
//! from a neighbouring request, never a corrupted entry or counter (the
//! counters are per-CPU).

use core::mem::MaybeUninit;

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    programs::TcContext,
};
use canary_common::{
    FlowEntry, FlowKey, PROTO_TCP, PROTO_UDP,
    h2::{APP_AUTO_PENDING, APP_H2, APP_H2_UNTRACKED, APP_H2C_PENDING, APP_HTTP1, APP_OPAQUE},
    signals::{
        CONNECT_SUB_BITS, HTTP_OTHER, LATENCY_SUB_BITS, MAX_SAMPLE_SHIFT, SAMPLE_WINDOW_NS,
        STATUS_LINE_PREFIX, Sampler, Signals, UNTIMED, bucket_of_ns, http_class, is_timed,
        sample_shift,
    },
    stats_slot,
};

use crate::{
    h2,
    hook::Hook,
    maps::{SAMPLER, SIGNALS},
    parse::{Packet, TCP_ACK, TCP_RST, TCP_SYN, ptr_at},
    tables::Table,
};

/// Whether signals are measured: 1 unless the loader overrides it
/// (`canary_common::names::SIGNALS_ENABLED`). A read-only global, so with
/// it 0 the verifier removes their code as dead.
#[unsafe(no_mangle)]
static SIGNALS_ENABLED: u8 = 1;

/// A histogram index the verifier can bound. `bucket_of_ns` is below the
/// bucket count by construction, and LLVM sees that and drops `get_mut`'s
/// check; the verifier, which tracks the bit scan's result only as 0..255,
/// does not, and refuses the store ("math between map_value pointer and
/// register with unbounded min value"). Read back through a volatile load
/// the index is opaque to LLVM, so the check stays in the code the
/// verifier reads.
#[inline(always)]
pub fn checked(i: usize) -> usize {
    // SAFETY: a read of a local we own.
    unsafe { core::ptr::read_volatile(&i) }
}

#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: a read of a static; volatile so LLVM keeps the load the
    // loader's value decides, instead of folding the default in.
    unsafe { core::ptr::read_volatile(&SIGNALS_ENABLED) != 0 }
}

/// The sampler's largest shift: `MAX_SAMPLE_SHIFT` unless the loader sets
/// 0 (`canary_common::names::LATENCY_MAX_SHIFT`: time every request).
#[unsafe(no_mangle)]
static LATENCY_MAX_SHIFT: u32 = MAX_SAMPLE_SHIFT;

#[inline(always)]
fn max_shift() -> u32 {
    // SAFETY: as in `enabled`.
    unsafe { core::ptr::read_volatile(&LATENCY_MAX_SHIFT) }
}

/// This CPU's signals of a (service, version), if the slot exists.
#[inline(always)]
fn slot(e: &FlowEntry) -> Option<&'static mut Signals> {
    SIGNALS
        .get_ptr_mut(stats_slot(e.service_id, e.version))
        .map(|p| {
            // SAFETY: a map value pointer from a successful lookup, valid for
            // this run, which the reference does not outlive; per-CPU, so no
            // other CPU aliases it.
            unsafe { &mut *p }
        })
}

/// The clock: one read per timed request start and one per its response.
/// It is most of what the signals cost on those packets (kernel-bench, one
/// call per packet, on a VM with retpolines and SRSO's safe RET; figures in
/// docs/DATAPATH.md, "Latency sampling"), as the helper calls into
/// timekeeping, which reads the clocksource through an indirect call. No
/// cheaper clock would do: the coarse one advances once per tick (1 to
/// 10 ms), far past the first latency bucket's 16 µs. Hence `Sampler`:
/// above a floor rate, not every request start reads it.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a BPF helper call with no arguments and no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Ingress: the failsafe sent a new flow to `version` (stable) that the
/// weight would have sent to the canary. Counted whether or not the other
/// signals are on: it is the failsafe's only trace.
#[inline(always)]
pub fn on_failsafe(service_id: u32, version: u8) {
    if let Some(p) = SIGNALS.get_ptr_mut(stats_slot(service_id, version)) {
        // SAFETY: a map value pointer from a successful lookup, valid for
        // this run; per-CPU, so no other CPU writes it meanwhile.
        unsafe { (*p).failsafe_flows += 1 };
    }
}

/// Ingress, a new flow's first packet: a TCP SYN starts the connect timer.
#[inline(always)]
pub fn on_new_flow(e: &mut FlowEntry, pkt: &Packet) {
    if enabled() && pkt.proto == PROTO_TCP && pkt.has(TCP_SYN) && !pkt.has(TCP_ACK) {
        e.syn_ns = now();
    }
}

/// Ingress, every client packet of a flow with an entry: a client payload
/// with no request waiting starts one; a UDP datagram is a request; a SYN
/// again on a flow the backend has not answered is a retransmit. A TCP
/// flow still half-open starts no request: spoofed payload on made-up
/// tuples must not pass for traffic (a real flow re-decided mid-stream
/// loses the request in flight from the count, no more).
///
/// The client's first payload decides what the connection speaks
/// (`FlowEntry::app`): the HTTP/2 preface makes it followed frame by
/// frame (`h2`), where streams are the requests; anything else is
/// HTTP/1.x, or untracked for an `h2c` service.
#[inline(always)]
pub fn on_client_packet<C: Hook>(
    ctx: &C,
    e: &mut FlowEntry,
    fkey: &FlowKey,
    pkt: &Packet,
    had_entry: bool,
    table: Table,
) {
    if !enabled() {
        return;
    }
    if pkt.proto == PROTO_UDP {
        if let Some(s) = slot(e) {
            s.requests += 1;
        }
        return;
    }
    let syn = pkt.has(TCP_SYN) && !pkt.has(TCP_ACK);
    if syn {
        if had_entry
            && e.syn_ns != 0
            && let Some(s) = slot(e)
        {
            s.syn_retransmits += 1;
        }
        return;
    }
    if table == Table::HalfOpen || pkt.payload_len == 0 {
        return;
    }
    if e.app != APP_HTTP1 && e.app != APP_OPAQUE && h2::client_payload(ctx, e, fkey, &segment(pkt))
    {
        return;
    }
    if e.request_ns == 0 {
        e.request_ns = stream_start(e);
    }
}

/// Whether egress leaves a connection's payload to `h2`: HTTP/2, or not
/// decided yet (a server that speaks first). An undecided entry with a
/// request waiting is HTTP/1.x: one written before `app` existed (the
/// client's first payload decides every newer one).
#[inline(always)]
pub fn is_h2(e: &FlowEntry) -> bool {
    match e.app {
        APP_H2 | APP_H2_UNTRACKED => true,
        APP_AUTO_PENDING | APP_H2C_PENDING => e.request_ns == 0,
        _ => false,
    }
}

/// A packet's payload as `h2` walks it.
#[inline(always)]
pub fn segment(pkt: &Packet) -> h2::Seg {
    h2::Seg {
        seq: pkt.seq,
        payload: pkt.payload as u32,
        len: pkt.payload_len,
    }
}

/// A request (an HTTP/1.x request or an HTTP/2 stream) starts: counted,
/// and its start time returned if the sampler times it, else `UNTIMED`.
#[inline(always)]
pub fn stream_start(e: &FlowEntry) -> u64 {
    let idx = stats_slot(e.service_id, e.version);
    let start = match SAMPLER.get_ptr_mut(idx) {
        Some(p) => {
            // SAFETY: a map value pointer from a successful lookup, valid
            // for this run; per-CPU, so no other CPU aliases it.
            start_time(unsafe { &mut *p })
        }
        None => now(),
    };
    if let Some(s) = slot(e) {
        s.requests += 1;
    }
    start
}

/// An HTTP/2 stream's first response byte: counted, and its time to
/// first byte taken if its start was timed.
#[inline(always)]
pub fn on_response(e: &FlowEntry, started: Option<u64>) {
    let took = started.map(|t| now().saturating_sub(t));
    if let Some(s) = slot(e) {
        s.responses += 1;
        if let Some(took) = took {
            add_latency(s, took);
        }
    }
}

/// One time to first byte into the latency histogram.
#[inline(always)]
fn add_latency(s: &mut Signals, took: u64) {
    if let Some(b) = s
        .latency
        .get_mut(checked(bucket_of_ns(took, LATENCY_SUB_BITS)))
    {
        *b += 1;
    }
    s.latency_sum_ns += took;
}

/// A request starts: its start time if this start is timed, else
/// `UNTIMED`. The first timed start after a window has passed closes it
/// and sets the next window's shift from its count of starts.
#[inline(always)]
fn start_time(sampler: &mut Sampler) -> u64 {
    sampler.starts = sampler.starts.wrapping_add(1);
    if !is_timed(sampler.starts, sampler.shift) {
        return UNTIMED;
    }
    let t = now();
    if t.saturating_sub(sampler.window_start_ns) >= SAMPLE_WINDOW_NS {
        sampler.shift = sample_shift(sampler.starts, max_shift());
        sampler.window_start_ns = t;
        sampler.starts = 0;
    }
    t
}

/// Egress, every backend packet of a flow: the SYN-ACK ends the connect
/// timer, a RST is a refusal (before the SYN-ACK) or a reset, and the first
/// payload after a request is its response: latency and status class. A
/// reset of a half-open flow decided mid-stream is no backend failure: it
/// is the backend saying it has no such connection (spoofed tuples get
/// exactly that), so it counts nothing.
#[inline(always)]
pub fn on_backend_packet(ctx: &TcContext, e: &mut FlowEntry, pkt: &Packet, table: Table) {
    if !enabled() {
        return;
    }
    if pkt.proto == PROTO_UDP {
        if let Some(s) = slot(e) {
            s.responses += 1;
        }
        return;
    }
    if pkt.has(TCP_RST) {
        if let Some(s) = slot(e) {
            if e.syn_ns != 0 {
                s.refused += 1;
            } else if table == Table::Established {
                s.backend_resets += 1;
            }
        }
        return;
    }
    if pkt.has(TCP_SYN) && pkt.has(TCP_ACK) {
        if e.syn_ns != 0 {
            let took = now().saturating_sub(e.syn_ns);
            e.syn_ns = 0;
            if let Some(s) = slot(e) {
                if let Some(b) = s
                    .connect
                    .get_mut(checked(bucket_of_ns(took, CONNECT_SUB_BITS)))
                {
                    *b += 1;
                }
                s.connect_sum_ns += took;
            }
        }
        return;
    }
    if pkt.payload_len == 0 {
        return;
    }
    // HTTP/2 (and what may become it) is `h2`'s, after the rewrite.
    if is_h2(e) {
        return;
    }
    if e.request_ns == 0 {
        return;
    }
    // An untimed request's response is counted and classified; only a
    // timed one reads the clock and adds a latency.
    let started = e.request_ns;
    let took = if started == UNTIMED {
        None
    } else {
        Some(now().saturating_sub(started))
    };
    e.request_ns = 0;
    let class = if e.app == APP_OPAQUE {
        HTTP_OTHER
    } else {
        status_class(ctx, pkt)
    };
    if let Some(s) = slot(e) {
        s.responses += 1;
        if let Some(took) = took {
            add_latency(s, took);
        }
        // One constant offset per class: LLVM drops the bound it can prove,
        // and the verifier, which cannot, would refuse an indexed store.
        match class {
            0 => s.http[0] += 1,
            1 => s.http[1] += 1,
            2 => s.http[2] += 1,
            3 => s.http[3] += 1,
            4 => s.http[4] += 1,
            _ => s.http[HTTP_OTHER] += 1,
        }
    }
}

/// The class of the response starting at the packet's payload; a payload
/// shorter than a status line is `other`. Read in place when the status
/// line is in the skb's linear part, as it usually is (egress pulls the
/// first `HEADERS_MAX` bytes in, which behind common IP and TCP headers
/// includes it); otherwise copied with bpf_skb_load_bytes, which also
/// reaches the page fragments.
#[inline(always)]
fn status_class(ctx: &TcContext, pkt: &Packet) -> usize {
    if (pkt.payload_len as usize) < STATUS_LINE_PREFIX {
        return HTTP_OTHER;
    }
    // The rewrite's helpers may have moved the skb's data: the bounds are
    // read here, after them, and checked before the read.
    if let Some(head) = ptr_at::<[u8; STATUS_LINE_PREFIX]>(ctx.data(), ctx.data_end(), pkt.payload)
    {
        // SAFETY: `ptr_at` checked that the 12 bytes lie inside the linear
        // packet data; a byte array needs no alignment.
        return http_class(unsafe { &*head });
    }
    let mut head = MaybeUninit::<[u8; STATUS_LINE_PREFIX]>::uninit();
    // SAFETY: the helper copies exactly STATUS_LINE_PREFIX bytes into
    // `head`, a stack buffer of that size, or fails without writing (its
    // destination may be uninitialized memory, so no zeroing first); the
    // context pointer is this program's own skb. (aya's `load_bytes` clamps
    // the length to what it thinks is left, which the verifier reads as a
    // possibly zero-sized read and refuses.)
    let copied = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            pkt.payload as u32,
            head.as_mut_ptr().cast(),
            STATUS_LINE_PREFIX as u32,
        )
    };
    if copied == 0 {
        // SAFETY: the helper returned 0: it wrote all of `head`.
        http_class(unsafe { head.assume_init_ref() })
    } else {
        HTTP_OTHER
    }
}
