//! HTTP/2 without TLS (h2c, gRPC), followed frame by frame: streams open
//! on the client's HEADERS, get their time to first byte at the server's
//! first HEADERS or DATA and end at its END_STREAM; RST_STREAM and GOAWAY
//! codes are counted; the server's header blocks go to canaryd (the
//! H2_HEADERS ring buffer), which decodes `:status` and `grpc-status`.
//!
//! Each direction's byte stream is walked by TCP sequence number, frame
//! header to frame header (`canary_common::h2` has the shapes and the
//! rules). The walk reads 9 bytes per frame and skips payloads; a packet
//! takes at most `MAX_WALK_STEPS` steps, run by bpf_loop so the verifier
//! checks one step, not every step unrolled. Bytes it has not seen (a
//! sequence gap, a reordering), a header out of sync, or a walk that runs
//! out of steps make the connection untracked: counted once
//! (`H2Signals::untracked`), its state dropped, nothing more measured on
//! it. A retransmission of bytes already walked is skipped.
//!
//! Where the walk starts: the client's stream at the preface (the first
//! payload byte, by definition); the server's at the byte after its
//! SYN-ACK, whose number the flow entry keeps (`FlowEntry::last_seen_ns`,
//! the handshake token). A flow canary did not see open has no such
//! number: its HTTP/2 is untracked.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_prandom_u32, bpf_loop, bpf_ringbuf_query, bpf_ringbuf_reserve, bpf_ringbuf_submit,
    },
    programs::TcContext,
};
use canary_common::{
    FlowEntry, FlowKey, HANDSHAKE_TOKEN,
    h2::{
        self, APP_AUTO_PENDING, APP_H2, APP_H2_UNTRACKED, APP_H2C_PENDING, APP_HTTP1, CLIENT,
        CONTINUATION, DATA, FLAG_END_STREAM, FRAME_HEADER_LEN, GOAWAY, H2Conn, H2Dir,
        H2HeaderPiece, H2Signals, H2StreamKey, HEADER_RING_BYTES, HEADERS, MAX_WALK_STEPS,
        PIECE_BYTES, PREFACE, PREFACE_LEN, PUSH_PROMISE, RST_STREAM, SERVER, STREAM_ANSWERED,
        error_slot, frame_header,
    },
    signals::UNTIMED,
    stats_slot,
};

use crate::{
    hook::Hook,
    maps::{H2_CONNS, H2_HEADERS, H2_SCRATCH, H2_SIGNALS, H2_STREAMS},
    signals::{checked, on_response, stream_start},
};

/// A TCP segment's payload: its first sequence number, offset in the
/// packet and length. All the walk needs of the packet: passed alone, it
/// keeps the rest of the packet's parse out of the walk's frame.
pub struct Seg {
    pub seq: u32,
    pub payload: u32,
    pub len: u32,
}

/// Ingress: a client payload on a connection not known to be HTTP/1.x.
/// True when the connection is HTTP/2 (followed, or untracked): the
/// HTTP/1.x request logic then leaves the packet alone. The client's first
/// payload decides: the preface makes it HTTP/2; anything else HTTP/1.x,
/// or untracked for an `h2c` service.
#[inline(always)]
pub fn client_payload<C: Hook>(ctx: &C, e: &mut FlowEntry, fkey: &FlowKey, seg: &Seg) -> bool {
    match e.app {
        APP_H2 => {
            follow::<C, CLIENT>(ctx, e, fkey, seg);
            true
        }
        APP_H2_UNTRACKED => true,
        APP_AUTO_PENDING | APP_H2C_PENDING => {
            if starts_with_preface(ctx, seg) {
                open(ctx, e, fkey, seg);
                return true;
            }
            if e.app == APP_H2C_PENDING {
                untrack(e, fkey);
                return true;
            }
            e.app = APP_HTTP1;
            false
        }
        _ => false,
    }
}

/// Egress: a server payload on a connection that is HTTP/2 or may become
/// it (the client has not spoken yet). Run by `canary_egress_h2`, the
/// program egress tail-calls: egress's own frame (about 440 of the BPF
/// stack's 512 bytes) leaves no room for the walk's.
#[inline(always)]
pub fn server_payload(ctx: &TcContext, e: &mut FlowEntry, fkey: &FlowKey, seg: &Seg) {
    match e.app {
        APP_H2 => follow::<TcContext, SERVER>(ctx, e, fkey, seg),
        APP_AUTO_PENDING | APP_H2C_PENDING => server_first(ctx, e, fkey, seg),
        _ => {}
    }
}

/// This CPU's HTTP/2 counters of a (service, version), if the slot exists.
#[inline(always)]
fn counters(e: &FlowEntry) -> Option<&'static mut H2Signals> {
    H2_SIGNALS
        .get_ptr_mut(stats_slot(e.service_id, e.version))
        .map(|p| {
            // SAFETY: a map value pointer from a successful lookup, valid
            // for this run, which the reference does not outlive; per-CPU.
            unsafe { &mut *p }
        })
}

/// Whether the packet's payload opens with the client preface.
#[inline(always)]
fn starts_with_preface<C: Hook>(ctx: &C, seg: &Seg) -> bool {
    if (seg.len as usize) < PREFACE_LEN {
        return false;
    }
    let mut head = [0u8; PREFACE_LEN];
    ctx.load(seg.payload, head.as_mut_ptr(), PREFACE_LEN as u32) && &head == PREFACE
}

/// The sequence number of the server's first payload byte, if the flow
/// was seen from its handshake.
#[inline(always)]
fn server_start(e: &FlowEntry) -> Option<u32> {
    (e.last_seen_ns & HANDSHAKE_TOKEN != 0).then_some(e.last_seen_ns as u32)
}

/// A connection's state, made if it has none yet (either side may come
/// first: a server that speaks first sends its SETTINGS before the
/// client's preface passes ingress).
#[inline(always)]
fn conn_of(e: &FlowEntry, fkey: &FlowKey) -> Option<*mut H2Conn> {
    if let Some(c) = H2_CONNS.get_ptr_mut(fkey) {
        return Some(c);
    }
    let server = server_start(e)?;
    // Built in this CPU's scratch slot: 112 bytes do not fit beside the
    // program's own on the 512-byte BPF stack.
    let fresh = H2_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a map value pointer from a successful lookup, valid for this
    // run; per-CPU, so nothing else writes it meanwhile.
    let fresh = unsafe { &mut *fresh };
    // SAFETY: BPF helper calls with no arguments and no preconditions.
    fresh.id = unsafe { ((bpf_get_prandom_u32() as u64) << 32) | bpf_get_prandom_u32() as u64 };
    fresh.pieces = 0;
    // Field by field: a whole H2Dir built first would take its 48 bytes
    // of stack.
    fresh.dir[CLIENT].started = 0;
    start_dir(&mut fresh.dir[SERVER], server);
    // NOEXIST: if the other side made it meanwhile, theirs stands.
    let _ = H2_CONNS.insert(fkey, fresh, 1);
    H2_CONNS.get_ptr_mut(fkey)
}

/// A direction's walk starts at sequence number `pos`, at a frame
/// boundary.
#[inline(always)]
fn start_dir(d: &mut H2Dir, pos: u32) {
    d.pos = pos;
    d.frame_end = pos;
    d.have = 0;
    d.last_stream = 0;
    d.started = 1;
}

/// Ingress, the client's first payload is the preface: the connection is
/// followed from here (its frames after the preface walked at once).
#[inline(always)]
fn open<C: Hook>(ctx: &C, e: &mut FlowEntry, fkey: &FlowKey, seg: &Seg) {
    let Some(c) = conn_of(e, fkey) else {
        untrack(e, fkey);
        return;
    };
    // SAFETY: a map value pointer from a successful lookup, valid for this
    // run; ingress writes only the client direction of it.
    let conn = unsafe { &mut *c };
    start_dir(
        &mut conn.dir[CLIENT],
        seg.seq.wrapping_add(PREFACE_LEN as u32),
    );
    e.app = APP_H2;
    if let Some(n) = counters(e) {
        n.connections += 1;
    }
    walk::<C, CLIENT>(ctx, e, fkey, seg, c);
}

/// Egress, a server payload on a connection the client has not spoken on
/// yet: a server that speaks first with a SETTINGS frame at its first byte
/// may be HTTP/2 (ingress decides at the client's first payload); its
/// walk starts now so that no byte of it is missed.
#[inline(always)]
fn server_first<C: Hook>(ctx: &C, e: &mut FlowEntry, fkey: &FlowKey, seg: &Seg) {
    if H2_CONNS.get_ptr_mut(fkey).is_none() {
        if server_start(e) != Some(seg.seq) || (seg.len as usize) < FRAME_HEADER_LEN {
            return;
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        if !ctx.load(seg.payload, head.as_mut_ptr(), FRAME_HEADER_LEN as u32)
            || !h2::is_server_preface(&head)
        {
            return;
        }
    }
    if let Some(c) = conn_of(e, fkey) {
        walk::<C, SERVER>(ctx, e, fkey, seg, c);
    }
}

/// Either side, a packet of a followed connection.
#[inline(always)]
fn follow<C: Hook, const DIR: usize>(ctx: &C, e: &mut FlowEntry, fkey: &FlowKey, seg: &Seg) {
    match H2_CONNS.get_ptr_mut(fkey) {
        Some(c) => walk::<C, DIR>(ctx, e, fkey, seg, c),
        // Evicted from its table: its frame boundaries are gone.
        None => untrack(e, fkey),
    }
}

/// The connection lost its frame boundaries: counted once, state dropped.
#[inline(always)]
fn untrack(e: &mut FlowEntry, fkey: &FlowKey) {
    if e.app != APP_H2_UNTRACKED {
        e.app = APP_H2_UNTRACKED;
        if let Some(n) = counters(e) {
            n.untracked += 1;
        }
    }
    let _ = H2_CONNS.remove(fkey);
}

/// A length of 1 to `mask + 1` (`mask` one below a power of two) that
/// the verifier can bound: the helpers that copy bytes refuse a length
/// that might be 0 or past the buffer, and LLVM, which knows the callers'
/// own checks, would check a copy and pass the unchecked register. Read
/// back opaque (`checked`), masked and offset, the value passed carries
/// its bounds. Callers pass `1..=mask + 1`, which this leaves unchanged.
#[inline(always)]
fn length(len: u32, mask: u32) -> u32 {
    (checked(len.wrapping_sub(1) as usize) as u32 & mask) + 1
}

/// What one packet's walk carries from step to step (on the stack of the
/// program, which bpf_loop hands to each step).
#[repr(C)]
struct Walk {
    /// The program's context, for the byte loads.
    ctx: *mut c_void,
    conn: *mut H2Conn,
    entry: *mut FlowEntry,
    /// Offset of the payload in the packet, its first sequence number and
    /// its length.
    payload: u32,
    seq: u32,
    len: u32,
    /// 1: every byte walked; 2: the boundaries were lost.
    end: u32,
}

const WALKED: u32 = 1;
const LOST: u32 = 2;

/// Walks the packet's payload in direction `DIR` of connection `c`.
#[inline(always)]
fn walk<C: Hook, const DIR: usize>(
    ctx: &C,
    e: &mut FlowEntry,
    fkey: &FlowKey,
    seg: &Seg,
    c: *mut H2Conn,
) {
    if seg.len == 0 {
        return;
    }
    // SAFETY: a map value pointer from a successful lookup, valid for this
    // run; this side writes only its own direction.
    let d = unsafe { &(*c).dir[DIR] };
    if d.started == 0 {
        untrack(e, fkey);
        return;
    }
    // Where the walk stands against this packet: ahead of it is a gap;
    // wholly behind it, a retransmission already walked.
    let ahead = seg.seq.wrapping_sub(d.pos) as i32;
    if ahead > 0 {
        untrack(e, fkey);
        return;
    }
    if seg.seq.wrapping_add(seg.len).wrapping_sub(d.pos) as i32 <= 0 {
        return;
    }
    let mut w = Walk {
        ctx: ctx.raw(),
        conn: c,
        entry: e,
        payload: seg.payload,
        seq: seg.seq,
        len: seg.len,
        end: 0,
    };
    // SAFETY: the callback is a static function of the signature bpf_loop
    // calls; its context is `w`, which outlives the call.
    unsafe {
        bpf_loop(
            MAX_WALK_STEPS,
            step::<C, DIR> as *mut c_void,
            (&raw mut w).cast(),
            0,
        )
    };
    if w.end != WALKED {
        untrack(e, fkey);
    }
}

/// One step of a walk: a frame header (or the part of one this packet
/// has), or a run of payload (a piece of a header block for canaryd).
/// Returns 1 to end the walk.
extern "C" fn step<C: Hook, const DIR: usize>(_i: u64, w: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context `walk` gave it, a `Walk` on
    // the program's stack; its pointers are the program's context and map
    // values, valid for this run, and nothing else refers to them now.
    let (w, ctx, conn, e) = unsafe {
        let w = &mut *w.cast::<Walk>();
        let ctx = C::from_raw(w.ctx);
        let conn = &mut *w.conn;
        let e = &*w.entry;
        (w, ctx, conn, e)
    };
    let id = conn.id;
    let walked = conn.dir[DIR].pos.wrapping_sub(w.seq);
    if walked >= w.len {
        w.end = WALKED;
        return 1;
    }
    let avail = w.len - walked;
    let at = w.payload.wrapping_add(walked);
    if conn.dir[DIR].pos != conn.dir[DIR].frame_end {
        // Inside a frame's payload: skipped, or sent on if it is a piece
        // of a server header block.
        let d = &conn.dir[DIR];
        let left = d.frame_end.wrapping_sub(d.pos);
        let mut take = if left < avail { left } else { avail };
        if DIR == SERVER && (d.kind == HEADERS || d.kind == CONTINUATION) {
            if take > PIECE_BYTES as u32 {
                take = PIECE_BYTES as u32;
            }
            // Numbered whether or not the ring has room: a lost piece is
            // a gap canaryd sees.
            let seq = conn.pieces;
            conn.pieces = seq.wrapping_add(1);
            if !send_piece(&ctx, e, id, seq, &conn.dir[DIR], at, take) {
                w.end = LOST;
                return 1;
            }
        }
        let d = &mut conn.dir[DIR];
        d.pos = d.pos.wrapping_add(take);
        return 0;
    }
    // A frame header, or the rest of one split over the packet before.
    let d = &mut conn.dir[DIR];
    let have = d.have as u32;
    if have >= FRAME_HEADER_LEN as u32 {
        w.end = LOST;
        return 1;
    }
    let need = FRAME_HEADER_LEN as u32 - have;
    let take = if need < avail { need } else { avail };
    // 1 to 9 bytes at `have` (0 to 8): inside `hdr` (24 bytes).
    let to = d.hdr.as_mut_ptr().wrapping_add(have as usize & 15);
    if !ctx.load(at, to, length(take, 15)) {
        w.end = LOST;
        return 1;
    }
    d.pos = d.pos.wrapping_add(take);
    if take < need {
        // The header goes on in the next packet: the walk stays at a
        // frame boundary (`frame_end` follows `pos`) with `have` bytes.
        d.frame_end = d.pos;
        d.have = (have + take) as u8;
        return 0;
    }
    d.have = 0;
    let mut head = [0u8; FRAME_HEADER_LEN];
    head.copy_from_slice(&d.hdr[..FRAME_HEADER_LEN]);
    let Some(h) = frame_header(&head) else {
        w.end = LOST;
        return 1;
    };
    // A pushed stream's block changes the server's HPACK table, which
    // canaryd is not given: its decoding would go wrong, so the walk ends
    // here (gRPC never pushes).
    if DIR == SERVER && h.kind == PUSH_PROMISE {
        w.end = LOST;
        return 1;
    }
    d.kind = h.kind;
    d.flags = h.flags;
    d.stream = h.stream;
    d.frame_len = h.len;
    d.frame_end = d.pos.wrapping_add(h.len);
    if DIR == CLIENT {
        on_client_frame(e, id, d, h.stream, h.kind);
    } else {
        // The frame's payload bytes in this packet hold the codes of
        // RST_STREAM and GOAWAY.
        let rest = avail - take;
        on_server_frame(
            &ctx,
            e,
            id,
            h.stream,
            h.kind,
            h.flags,
            at.wrapping_add(take),
            rest,
        );
    }
    0
}

/// A client frame: HEADERS on a stream above every one it opened before
/// opens a stream (a request); HEADERS on an older one is a trailer.
#[inline(always)]
fn on_client_frame(e: &FlowEntry, conn: u64, d: &mut H2Dir, stream: u32, kind: u8) {
    let key = H2StreamKey {
        conn,
        stream,
        _pad: 0,
    };
    if kind == HEADERS && stream > d.last_stream {
        d.last_stream = stream;
        let start = stream_start(e);
        let _ = H2_STREAMS.insert(&key, &start, 0);
    } else if kind == RST_STREAM {
        let _ = H2_STREAMS.remove(&key);
        if let Some(n) = counters(e) {
            n.client_resets += 1;
        }
    }
}

/// A server frame: the first HEADERS or DATA of a stream is its response
/// (time to first byte); END_STREAM ends it; RST_STREAM and GOAWAY are
/// counted by code.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into the verifier-checked step; a struct would cost the BPF stack"
)]
fn on_server_frame<C: Hook>(
    ctx: &C,
    e: &FlowEntry,
    conn: u64,
    stream: u32,
    kind: u8,
    flags: u8,
    payload_at: u32,
    rest: u32,
) {
    let key = H2StreamKey {
        conn,
        stream,
        _pad: 0,
    };
    if kind == HEADERS || kind == DATA {
        let Some(s) = H2_STREAMS.get_ptr_mut(&key) else {
            return;
        };
        // SAFETY: a map value pointer from a successful lookup, valid for
        // this run.
        let started = unsafe { *s };
        if started != STREAM_ANSWERED {
            on_response(e, (started != UNTIMED).then_some(started));
            // SAFETY: as above.
            unsafe { *s = STREAM_ANSWERED };
        }
        if flags & FLAG_END_STREAM != 0 {
            let _ = H2_STREAMS.remove(&key);
            if let Some(n) = counters(e) {
                n.streams_ended += 1;
            }
        }
    } else if kind == RST_STREAM {
        let _ = H2_STREAMS.remove(&key);
        let code = code_at(ctx, payload_at, rest, 0);
        if let Some(n) = counters(e)
            && let Some(slot) = n.server_resets.get_mut(checked(error_slot(code)))
        {
            *slot += 1;
        }
    } else if kind == GOAWAY
        && let Some(n) = counters(e)
    {
        if code_at(ctx, payload_at, rest, 4) == 0 {
            n.goaway += 1;
        } else {
            n.goaway_errors += 1;
        }
    }
}

/// The 32-bit error code `skip` bytes into a frame's payload, when this
/// packet holds it; `u32::MAX` (counted as `other`, an error) when the
/// code lies in the next packet.
#[inline(always)]
fn code_at<C: Hook>(ctx: &C, payload_at: u32, rest: u32, skip: u32) -> u32 {
    if rest < skip + 4 {
        return u32::MAX;
    }
    let mut b = [0u8; 4];
    if ctx.load(payload_at + skip, b.as_mut_ptr(), 4) {
        u32::from_be_bytes(b)
    } else {
        u32::MAX
    }
}

/// The submit flag of a piece: canaryd is woken only once the ring is
/// half full, and otherwise reads it on its own timer (every 100 ms). A
/// wakeup while canaryd is caught up, as an idle one always is, cost each
/// reply about 7.5 µs in the kernel (kernel-bench `h2_reply_wakeup`
/// against `h2_reply`, docs/BENCHMARKS.md).
#[inline(always)]
fn wakeup() -> u64 {
    // SAFETY: a query of this program's own ring buffer map.
    let queued = unsafe {
        bpf_ringbuf_query(
            (&raw const H2_HEADERS).cast_mut().cast(),
            BPF_RB_AVAIL_DATA as u64,
        )
    };
    if queued >= (HEADER_RING_BYTES / 2) as u64 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Hands `len` (1 to PIECE_BYTES) bytes of a server header block at
/// packet offset `at` to canaryd. A full ring buffer loses the piece
/// (counted; canaryd sees the gap in `seq`); false only when the packet
/// could not be read, which loses the walk.
#[inline(always)]
fn send_piece<C: Hook>(
    ctx: &C,
    e: &FlowEntry,
    conn: u64,
    seq: u32,
    d: &H2Dir,
    at: u32,
    len: u32,
) -> bool {
    let n = counters(e);
    // SAFETY: reserve returns memory of the requested size in the ring, or
    // null; written only below, then submitted or discarded.
    let p = unsafe {
        bpf_ringbuf_reserve(
            (&raw const H2_HEADERS).cast_mut().cast(),
            size_of::<H2HeaderPiece>() as u64,
            0,
        )
    }
    .cast::<H2HeaderPiece>();
    if p.is_null() {
        if let Some(n) = n {
            n.header_pieces_lost += 1;
        }
        return true;
    }
    let len = length(len, PIECE_BYTES as u32 - 1);
    // SAFETY: `p` points to a reserved record of the right size; its
    // fields are written in place before it is submitted once.
    unsafe {
        (*p).conn = conn;
        (*p).seq = seq;
        (*p).service_id = e.service_id;
        (*p).stream = d.stream;
        (*p).frame_len = d.frame_len;
        (*p).offset = d.frame_len.wrapping_sub(d.frame_end.wrapping_sub(d.pos));
        (*p).len = len as u16;
        (*p).version = e.version;
        (*p).kind = d.kind;
        (*p).flags = d.flags;
        (*p)._pad = [0; 7];
        if !ctx.load(at, (&raw mut (*p).data).cast(), len) {
            aya_ebpf::helpers::bpf_ringbuf_discard(p.cast(), 0);
            return false;
        }
        bpf_ringbuf_submit(p.cast(), wakeup());
    }
    if let Some(n) = n {
        n.header_pieces += 1;
    }
    true
}
