//! The HTTP/2 cases: what following an h2c (gRPC) connection costs per
//! packet, and what an HTTP/1.x connection on the same `auto` service
//! pays now that its first payload is read for the preface.
//!
//! The walk sees each byte of a direction once, in sequence order, so none
//! of these cases can repeat a packet: each runs in single mode, one call
//! per packet, every packet the next in its connection's byte stream (its
//! TCP sequence number advanced by the one before). The connection is made
//! through the data path itself, handshake first, so its entry, its
//! `app` byte and its H2_CONNS state are the kernel's own, not written
//! from userspace. The service is the self service of the other repeat
//! cases (backend = VIP), so the rewrites cost what theirs do.
//!
//! Counters are checked as deltas from just before the timed runs: the
//! handshake and the preface count too.

use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use aya::maps::{HashMap, MapData, RingBuf};
use canary_common::{
    FlowEntry, FlowKey,
    h2::{
        APP_H2, APP_HTTP1, CLIENT, DATA, FLAG_END_HEADERS, FLAG_END_STREAM, H2Conn, H2Signals,
        H2StreamKey, HEADERS, PREFACE, SETTINGS,
    },
    names::{H2_CONNS, H2_HEADERS, H2_STREAMS},
    signals::Signals,
    verdict,
};
use canary_userspace::{Dataplane, LoadOptions, Protocol, Verdicts};
// `::tests`: the crate, not a module of this binary.
use ::tests::{
    TC_ACT_OK, XDP_PASS,
    packet::{ACK, Frame, PSH, SYN},
};

use super::{
    Args, CLIENT as CLIENT_ADDR, Measured, REPLY, VIP, call_once, egress_program, flows, ingress,
    load_service, sa, self_service, single_runs,
};

/// Initial sequence numbers of the client and the backend.
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 7_000_000;
/// The HTTP/1.x request that decides `h2_not_h2`'s connection.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// A gRPC request's header block, as a client's HPACK encoder sends it
/// once its dynamic table holds the call's headers: :method POST,
/// :scheme http, :path and content-type from the table, te: trailers.
/// The kernel skips it; only its length matters.
const REQUEST_BLOCK: &[u8] = &[0x83, 0x86, 0xc1, 0xc0, 0xbf, 0xbe];
/// A gRPC message of 64 bytes behind its 5-byte prefix: the DATA frame of
/// `h2_data`.
const MESSAGE_LEN: usize = 64;
/// The server's response and trailer blocks (the kernel hands them to
/// canaryd as they are): `:status: 200` and content-type from the
/// table, then `grpc-status: 0`.
const RESPONSE_BLOCK: &[u8] = &[0x88, 0xc0];
const TRAILER_BLOCK: &[u8] = b"\x40\x0bgrpc-status\x010";
/// Replies between two drains of the H2_HEADERS ring in `h2_reply`: 400
/// pieces, under half of the 256 KiB ring's 862 (304 bytes a record).
const DRAIN_EVERY: u32 = 200;
/// The stream `h2_data` sends on, opened before its runs.
const DATA_STREAM: u32 = 1;

/// A frame: 9-byte header, then payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A client HEADERS frame opening `stream` (END_HEADERS, no END_STREAM:
/// a gRPC request's DATA follows).
fn request_headers(stream: u32) -> Vec<u8> {
    frame(HEADERS, FLAG_END_HEADERS, stream, REQUEST_BLOCK)
}

/// A unary call's response in one segment: HEADERS, DATA, trailers
/// (HEADERS with END_STREAM), as a gRPC server sends it.
fn response(stream: u32) -> Vec<u8> {
    let mut r = frame(HEADERS, FLAG_END_HEADERS, stream, RESPONSE_BLOCK);
    r.extend(frame(DATA, 0, stream, &[0, 0, 0, 0, 2, 1, 2]));
    r.extend(frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        stream,
        TRAILER_BLOCK,
    ));
    r
}

/// One TCP connection through the data path, from its handshake: the
/// client's and the backend's next sequence numbers.
struct Conn {
    dp: Dataplane,
    id: u32,
    key: FlowKey,
    client: SocketAddr,
    backend: SocketAddr,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    /// The self service (signals on, `app_protocol = auto`) and one
    /// connection through it: SYN, SYN-ACK, ACK.
    fn open() -> Result<Conn> {
        let spec = self_service(VIP, Protocol::Tcp);
        let (dp, id) = load_service(&LoadOptions::default(), &spec)?;
        let mut c = Conn {
            dp,
            id,
            key: spec.flow_key(sa(CLIENT_ADDR)),
            client: sa(CLIENT_ADDR),
            backend: spec.stable[0],
            cseq: CLIENT_ISN,
            sseq: SERVER_ISN,
        };
        c.ingress_at(SYN, b"")?;
        c.cseq += 1;
        c.egress_at(SYN | ACK, b"")?;
        c.sseq += 1;
        c.ingress_at(ACK, b"")?;
        Ok(c)
    }

    /// The client's packet carrying `payload` at its next sequence number.
    fn client_packet(&self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Frame::tcp(self.client, sa(VIP), flags).with_payload(payload);
        (f.seq, f.ack) = (self.cseq, self.sseq);
        f.bytes()
    }

    /// The backend's packet carrying `payload` at its next sequence number.
    fn server_packet(&self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Frame::tcp(self.backend, self.client, flags).with_payload(payload);
        (f.seq, f.ack) = (self.sseq, self.cseq);
        f.bytes()
    }

    fn ingress_at(&mut self, flags: u8, payload: &[u8]) -> Result<u32> {
        let input = self.client_packet(flags, payload);
        let ns = call_once(ingress(&mut self.dp)?, &input, XDP_PASS)?;
        self.cseq = self.cseq.wrapping_add(payload.len() as u32);
        Ok(ns)
    }

    fn egress_at(&mut self, flags: u8, payload: &[u8]) -> Result<u32> {
        let input = self.server_packet(flags, payload);
        let ns = call_once(egress_program(&mut self.dp)?, &input, TC_ACT_OK)?;
        self.sseq = self.sseq.wrapping_add(payload.len() as u32);
        Ok(ns)
    }

    /// The client sends `payload` next; returns the kernel's ns.
    fn client(&mut self, payload: &[u8]) -> Result<u32> {
        self.ingress_at(ACK | PSH, payload)
    }

    /// The backend sends `payload` next; returns the kernel's ns.
    fn server(&mut self, payload: &[u8]) -> Result<u32> {
        self.egress_at(ACK | PSH, payload)
    }

    /// The preface and both sides' SETTINGS, as a gRPC channel opens; the
    /// connection must be followed as HTTP/2 afterwards.
    fn open_h2(&mut self) -> Result<()> {
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        self.client(&opening)?;
        self.server(&frame(SETTINGS, 0, 0, &[]))?;
        self.client(&frame(SETTINGS, 1, 0, &[]))?;
        self.server(&frame(SETTINGS, 1, 0, &[]))?;
        let app = self.entry()?.app;
        ensure!(
            app == APP_H2,
            "the preface left app = {app}, want APP_H2 ({APP_H2})"
        );
        Ok(())
    }

    fn entry(&mut self) -> Result<FlowEntry> {
        flows(&mut self.dp)?
            .get(&self.key, 0)
            .context("the connection has no established entry")
    }

    /// H2_CONNS, taken out of the object (the programs keep their own
    /// reference to it).
    fn conns(&mut self) -> Result<HashMap<MapData, FlowKey, H2Conn>> {
        let map = self
            .dp
            .ebpf_mut()
            .take_map(H2_CONNS)
            .context("no H2_CONNS map")?;
        Ok(HashMap::try_from(map)?)
    }

    fn streams(&mut self) -> Result<HashMap<MapData, H2StreamKey, u64>> {
        let map = self
            .dp
            .ebpf_mut()
            .take_map(H2_STREAMS)
            .context("no H2_STREAMS map")?;
        Ok(HashMap::try_from(map)?)
    }

    fn ring(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .dp
            .ebpf_mut()
            .take_map(H2_HEADERS)
            .context("no H2_HEADERS map")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Counters now, to check a case's deltas against.
    fn before(&self) -> Result<Before> {
        Ok(Before {
            verdicts: self.dp.verdicts()?,
            signals: self.signals()?,
            h2: self.h2()?,
        })
    }

    /// The service's signals, stable and canary summed.
    fn signals(&self) -> Result<Signals> {
        let [mut sum, canary] = self.dp.counters().version_signals(self.id)?;
        sum.add(&canary);
        Ok(sum)
    }

    /// The service's HTTP/2 counters, stable and canary summed.
    fn h2(&self) -> Result<H2Signals> {
        let [mut sum, canary] = self.dp.counters().version_h2(self.id)?;
        sum.add(&canary);
        Ok(sum)
    }
}

/// Counters at the start of a case's timed runs.
struct Before {
    verdicts: Verdicts,
    signals: Signals,
    h2: H2Signals,
}

impl Before {
    /// Checks that `ingress` packets were translated at ingress and
    /// `egress` at egress since, and nothing else counted a verdict.
    fn expect_translated(&self, dp: &Dataplane, ingress: u64, egress: u64) -> Result<String> {
        let v = dp.verdicts()?;
        for (side, now, was, count) in [
            ("ingress", &v.ingress, &self.verdicts.ingress, ingress),
            ("egress", &v.egress, &self.verdicts.egress, egress),
        ] {
            for (i, (now, was)) in now.iter().zip(was).enumerate() {
                let want = if i as u32 == verdict::TRANSLATED {
                    count
                } else {
                    0
                };
                ensure!(
                    now - was == want,
                    "{side} verdict {} moved by {}, want {want}",
                    verdict::NAMES[i],
                    now - was
                );
            }
        }
        let side = |name: &str, n: u64| format!("{name} translated = {n} of {n} packets");
        Ok(match (ingress, egress) {
            (n, 0) => side("ingress", n),
            (0, n) => side("egress", n),
            (i, e) => format!("{}, {}", side("ingress", i), side("egress", e)),
        })
    }

    /// The signals' requests and responses since.
    fn requests_responses(&self, c: &Conn) -> Result<(u64, u64)> {
        let s = c.signals()?;
        Ok((
            s.requests - self.signals.requests,
            s.responses - self.signals.responses,
        ))
    }

    /// The HTTP/2 counters since, per field.
    fn h2_delta(&self, c: &Conn) -> Result<H2Signals> {
        let now = c.h2()?;
        let was = self.h2;
        let mut server_resets = now.server_resets;
        for (a, b) in server_resets.iter_mut().zip(was.server_resets) {
            *a -= b;
        }
        Ok(H2Signals {
            connections: now.connections - was.connections,
            untracked: now.untracked - was.untracked,
            streams_ended: now.streams_ended - was.streams_ended,
            server_resets,
            client_resets: now.client_resets - was.client_resets,
            goaway: now.goaway - was.goaway,
            goaway_errors: now.goaway_errors - was.goaway_errors,
            header_pieces: now.header_pieces - was.header_pieces,
            header_pieces_lost: now.header_pieces_lost - was.header_pieces_lost,
        })
    }
}

/// Ingress, a client HEADERS frame opening a new stream on a followed
/// connection: the walk reads its header, counts a request, takes the
/// sampler's decision on timing it and inserts the stream into
/// H2_STREAMS. Each call's stream is deleted from userspace after it
/// (outside the timed part), as its response would, so the table stays as
/// a live connection keeps it: nearly empty, never evicting.
pub fn h2_headers(args: &Args) -> Result<Measured> {
    let mut c = Conn::open()?;
    c.open_h2()?;
    let conn_id = c
        .conns()?
        .get(&c.key, 0)
        .context("the connection has no H2_CONNS state")?
        .id;
    let mut streams = c.streams()?;
    let before = c.before()?;
    let [t] = single_runs(args.runs, args.signal_calls, |_, n| {
        let stream = 1 + 2 * n;
        let ns = c.client(&request_headers(stream))?;
        streams
            .remove(&H2StreamKey {
                conn: conn_id,
                stream,
                _pad: 0,
            })
            .with_context(|| format!("stream {stream} was not opened"))?;
        Ok(ns)
    })?;
    let total = args.signal_calls();
    let check = before.expect_translated(&c.dp, total, 0)?;
    let (requests, responses) = before.requests_responses(&c)?;
    ensure!(
        requests == total && responses == 0,
        "{requests} requests and {responses} responses counted for {total} HEADERS, want {total} and 0"
    );
    let h = before.h2_delta(&c)?;
    ensure!(h == H2Signals::default(), "HTTP/2 counters moved: {h:?}");
    Ok((
        t,
        format!(
            "{check}; signals: {total} requests, one stream each; every stream found in H2_STREAMS \
             and deleted after its call; no connection untracked"
        ),
    ))
}

/// Ingress, a client DATA frame (a 64-byte gRPC message) on a stream the
/// client opened before the runs: the walk reads its header and skips its
/// payload; nothing is counted.
pub fn h2_data(args: &Args) -> Result<Measured> {
    let mut c = Conn::open()?;
    c.open_h2()?;
    c.client(&request_headers(DATA_STREAM))?;
    let mut message = vec![0, 0, 0, 0, MESSAGE_LEN as u8];
    message.resize(5 + MESSAGE_LEN, 7);
    let data = frame(DATA, 0, DATA_STREAM, &message);
    let before = c.before()?;
    let [t] = single_runs(args.runs, args.signal_calls, |_, _| c.client(&data))?;
    let total = args.signal_calls();
    let check = before.expect_translated(&c.dp, total, 0)?;
    let (requests, responses) = before.requests_responses(&c)?;
    ensure!(
        (requests, responses) == (0, 0),
        "{requests} requests and {responses} responses counted for DATA frames, want none"
    );
    let h = before.h2_delta(&c)?;
    ensure!(h == H2Signals::default(), "HTTP/2 counters moved: {h:?}");
    let pos = c
        .conns()?
        .get(&c.key, 0)
        .context("the connection lost its H2_CONNS state")?
        .dir[CLIENT]
        .pos;
    ensure!(
        pos == c.cseq,
        "the client walk stands at {pos}, want {}: not every byte was walked",
        c.cseq
    );
    Ok((
        t,
        format!(
            "{check}; signals: none; the client walk at the last byte sent ({} bytes per frame \
             walked); no connection untracked",
            data.len()
        ),
    ))
}

/// Egress, a unary call's whole response in one segment (HEADERS, DATA,
/// trailers) on a followed connection: `canary_egress` translates it and
/// tail-calls `canary_egress_h2`, whose walk counts the stream's response
/// and its end and sends both header blocks to the H2_HEADERS ring. The
/// timed call is the egress one; before it, untimed, the client's HEADERS
/// opens the stream (ingress). The ring (256 KiB, about 850 pieces) is
/// drained every `DRAIN_EVERY` replies, outside the timed part, so every
/// piece finds room, as it does while canaryd keeps up under load.
pub fn h2_reply(args: &Args) -> Result<Measured> {
    reply_drained_every(args, DRAIN_EVERY)
}

/// `h2_reply` with the ring drained after every reply, as canaryd drains
/// it when it is idle: each reply's first piece then finds the reader
/// caught up, and the kernel queues its wakeup (ring buffer notification,
/// irq_work) inside the timed call.
pub fn h2_reply_wakeup(args: &Args) -> Result<Measured> {
    reply_drained_every(args, 1)
}

fn reply_drained_every(args: &Args, drain_every: u32) -> Result<Measured> {
    let mut c = Conn::open()?;
    c.open_h2()?;
    let mut ring = c.ring()?;
    let before = c.before()?;
    let mut drained = 0u64;
    let [t] = single_runs(args.runs, args.signal_calls, |_, n| {
        let stream = 1 + 2 * n;
        c.client(&request_headers(stream))?;
        let ns = c.server(&response(stream))?;
        if (n + 1) % drain_every == 0 {
            let mut pieces = 0;
            while ring.next().is_some() {
                pieces += 1;
            }
            ensure!(
                pieces == 2 * u64::from(drain_every),
                "the last {drain_every} replies sent {pieces} header pieces, want 2 each"
            );
            drained += pieces;
        }
        Ok(ns)
    })?;
    let total = args.signal_calls();
    let check = before.expect_translated(&c.dp, total, total)?;
    let (requests, responses) = before.requests_responses(&c)?;
    ensure!(
        requests == total && responses == total,
        "{requests} requests and {responses} responses for {total} calls, want {total} each"
    );
    let h = before.h2_delta(&c)?;
    let want = H2Signals {
        streams_ended: total,
        header_pieces: 2 * total,
        ..H2Signals::default()
    };
    ensure!(h == want, "HTTP/2 counters moved by {h:?}, want {want:?}");
    Ok((
        t,
        format!(
            "{check} (the client's HEADERS before each, untimed); signals: {total} responses; \
             {total} streams ended; {drained} header pieces sent and drained (every \
             {drain_every} replies), none lost; no connection untracked"
        ),
    ))
}

/// Ingress, an HTTP/1.x connection on the same `auto` service after its
/// first payload (a request, answered) decided it `APP_HTTP1`: a request
/// starts. As in `request_start`, the entry is rewritten before each call
/// with no request waiting (keeping the `app` the data path gave it), so
/// every call counts a request; the packets follow each other in
/// sequence. What an HTTP/1.x request's first segment pays beside
/// `request_start`, whose entry is written from userspace.
pub fn h2_not_h2(args: &Args) -> Result<Measured> {
    let mut c = Conn::open()?;
    c.client(REQUEST)?;
    c.server(REPLY)?;
    let decided = c.entry()?;
    ensure!(
        decided.app == APP_HTTP1,
        "the first payload left app = {}, want APP_HTTP1 ({APP_HTTP1})",
        decided.app
    );
    let before = c.before()?;
    let [t] = single_runs(args.runs, args.signal_calls, |_, _| {
        let key = c.key;
        flows(&mut c.dp)?
            .insert(
                key,
                FlowEntry {
                    request_ns: 0,
                    ..decided
                },
                0,
            )
            .context("writing the flow's entry")?;
        c.client(REQUEST)
    })?;
    let total = args.signal_calls();
    let check = before.expect_translated(&c.dp, total, 0)?;
    let (requests, responses) = before.requests_responses(&c)?;
    ensure!(
        requests == total && responses == 0,
        "{requests} requests and {responses} responses for {total} calls, want {total} and 0"
    );
    let h = before.h2_delta(&c)?;
    ensure!(h == H2Signals::default(), "HTTP/2 counters moved: {h:?}");
    let app = c.entry()?.app;
    ensure!(
        app == APP_HTTP1,
        "app = {app} after the runs, want APP_HTTP1"
    );
    Ok((
        t,
        format!(
            "{check}; app = APP_HTTP1, decided by the first payload; signals: {total} requests, \
             one per call; HTTP/2 counters unmoved; entry rewritten before each call"
        ),
    ))
}
