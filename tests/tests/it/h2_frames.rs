//! The kernel's HTTP/2 walk, packet by packet (BPF_PROG_TEST_RUN): whole
//! TCP connections driven through ingress (XDP) and egress (TC, which
//! tail-calls `canary_egress_h2`), then the counters, the flow entry and
//! the header pieces in the ring buffer checked. Each test loads its own
//! data path; no traffic leaves the test.

use std::net::SocketAddr;

use aya::{
    maps::RingBuf,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use canary_common::{
    FlowEntry, FlowKey,
    h2::{
        self, APP_H2, APP_H2_UNTRACKED, APP_HTTP1, CONTINUATION, DATA, FLAG_END_HEADERS,
        FLAG_END_STREAM, GOAWAY, H2HeaderPiece, H2Signals, HEADERS, PREFACE, RST_STREAM, SETTINGS,
    },
    names::{EGRESS_PROGRAM, H2_HEADERS, INGRESS_PROGRAM},
    signals::Signals,
};
use canary_userspace::{
    Affinity, AppProtocol, Dataplane, LoadOptions, Protocol, ServiceSpec, model::weight::Weight,
};
use tests::packet::{ACK, Frame, PSH, SYN};

const VIP: &str = "198.18.0.10:50051";
const STABLE: &str = "198.18.1.2:50051";
const CANARY: &str = "198.18.2.2:50051";
const CLIENT: &str = "198.18.0.2:40000";
/// Initial sequence numbers: the client's, and the server's (chosen so the
/// server's stream wraps past 2^32 within the test).
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = u32::MAX - 40;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A TCP segment's frame bytes.
fn segment(
    from: SocketAddr,
    to: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Frame::tcp(from, to, flags);
    f.seq = seq;
    f.ack = ack;
    f.payload = payload.to_vec();
    f.bytes()
}

/// Runs one frame through `p` (its verdict is not what these tests check).
fn test_run<P>(p: &P, input: &[u8])
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>>,
{
    let mut out = vec![0u8; input.len() + 256];
    p.test_run(TestRunOptions {
        data_in: Some(input),
        data_out: Some(&mut out),
        repeat: 1,
        ..Default::default()
    })
    .unwrap();
}

/// A frame: 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One connection through one data path: the client's and the server's
/// next sequence numbers.
struct Conn {
    dp: Dataplane,
    client: SocketAddr,
    backend: SocketAddr,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    /// A data path with one service (all to stable, or all to the canary
    /// with `canary`), and a connection through it from its handshake.
    fn open(app_protocol: AppProtocol, canary: bool) -> Conn {
        let mut dp = Dataplane::load(&LoadOptions {
            flow_table_size: 1024,
            ..Default::default()
        })
        .unwrap();
        dp.upsert_service(&ServiceSpec {
            name: "grpc".into(),
            vip: sa(VIP),
            protocol: Protocol::Tcp,
            affinity: Affinity::Flow,
            app_protocol,
            stable: vec![sa(STABLE)],
            canary: vec![sa(CANARY)],
            weight: Weight::from_bp(if canary { 10_000 } else { 0 }).unwrap(),
        })
        .unwrap();
        let mut c = Conn {
            dp,
            client: sa(CLIENT),
            backend: sa(if canary { CANARY } else { STABLE }),
            cseq: CLIENT_ISN,
            sseq: SERVER_ISN,
        };
        c.ingress_raw(SYN, CLIENT_ISN, 0, b"");
        c.egress_raw(SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, b"");
        c.cseq = CLIENT_ISN + 1;
        c.sseq = SERVER_ISN.wrapping_add(1);
        c.ingress_raw(ACK, c.cseq, c.sseq, b"");
        c
    }

    fn ingress_raw(&mut self, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        let f = segment(self.client, sa(VIP), flags, seq, ack, payload);
        let p: &mut Xdp = self.program(INGRESS_PROGRAM);
        test_run(p, &f);
    }

    fn egress_raw(&mut self, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        let f = segment(self.backend, self.client, flags, seq, ack, payload);
        let p: &mut SchedClassifier = self.program(EGRESS_PROGRAM);
        test_run(p, &f);
    }

    fn program<P>(&mut self, name: &str) -> &mut P
    where
        for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program>,
    {
        let p = self.dp.ebpf_mut().program_mut(name).unwrap();
        match p.try_into() {
            Ok(p) => p,
            Err(_) => panic!("{name}: another program type"),
        }
    }

    /// The client sends `payload` next in its stream.
    fn client(&mut self, payload: &[u8]) {
        self.ingress_raw(ACK | PSH, self.cseq, self.sseq, payload);
        self.cseq = self.cseq.wrapping_add(payload.len() as u32);
    }

    /// The server sends `payload` next in its stream.
    fn server(&mut self, payload: &[u8]) {
        self.egress_raw(ACK | PSH, self.sseq, self.cseq, payload);
        self.sseq = self.sseq.wrapping_add(payload.len() as u32);
    }

    fn key(&self) -> FlowKey {
        let svc = ServiceSpec {
            name: "grpc".into(),
            vip: sa(VIP),
            protocol: Protocol::Tcp,
            affinity: Affinity::Flow,
            app_protocol: Default::default(),
            stable: vec![],
            canary: vec![],
            weight: Weight::ZERO,
        };
        svc.flow_key(self.client)
    }

    fn entry(&mut self) -> Option<FlowEntry> {
        let key = self.key();
        self.dp.maps_mut().flows.get(&key, 0).ok()
    }

    fn version(&self) -> u8 {
        u8::from(self.backend == sa(CANARY))
    }

    /// The HTTP/2 counters of the connection's version, summed over CPUs.
    fn h2(&mut self) -> H2Signals {
        self.dp.counters().version_h2(0).unwrap()[self.version() as usize]
    }

    fn signals(&mut self) -> Signals {
        self.dp.counters().version_signals(0).unwrap()[self.version() as usize]
    }

    /// Every header piece in the ring buffer, in order.
    fn pieces(&mut self) -> Vec<H2HeaderPiece> {
        let mut ring = RingBuf::try_from(self.dp.ebpf_mut().map_mut(H2_HEADERS).unwrap()).unwrap();
        let mut out = vec![];
        while let Some(item) = ring.next() {
            assert!(item.len() >= size_of::<H2HeaderPiece>());
            // SAFETY: a record the kernel wrote as an H2HeaderPiece, at
            // least that long; read unaligned into a copy.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
        }
        out
    }

    /// The preface and both sides' SETTINGS, as a gRPC channel opens.
    fn handshake_h2(&mut self) {
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        self.client(&opening);
        self.server(&frame(SETTINGS, 0, 0, &[]));
        self.client(&frame(SETTINGS, 1, 0, &[]));
        self.server(&frame(SETTINGS, 1, 0, &[]));
    }
}

/// A unary call's request: HEADERS then DATA with END_STREAM.
fn request(stream: u32) -> Vec<u8> {
    let mut r = frame(
        HEADERS,
        FLAG_END_HEADERS,
        stream,
        &[0x83, 0x86, 0x44, 0x01, b'/'],
    );
    r.extend(frame(DATA, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 1, 7]));
    r
}

/// A unary call's response: HEADERS, DATA, trailers (HEADERS with
/// END_STREAM); the header blocks are arbitrary bytes to the kernel.
fn response(stream: u32) -> Vec<u8> {
    let mut r = frame(HEADERS, FLAG_END_HEADERS, stream, &[0x88, 0x5f, 0x10]);
    r.extend(frame(DATA, 0, stream, &[0, 0, 0, 0, 2, 1, 2]));
    r.extend(frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        stream,
        &[0x40, 0x0b, b'g'],
    ));
    r
}

#[test]
fn the_preface_makes_a_connection_http2_and_its_streams_requests() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    assert_eq!(c.entry().unwrap().app, APP_H2);
    for stream in [1, 3, 5] {
        c.client(&request(stream));
        c.server(&response(stream));
    }
    let h = c.h2();
    assert_eq!((h.connections, h.untracked, h.streams_ended), (1, 0, 3));
    let s = c.signals();
    assert_eq!((s.requests, s.responses), (3, 3), "one request per stream");
    assert_eq!(s.latency.iter().sum::<u64>(), 3, "each stream timed");
    assert_eq!(s.http, [0; 6], "no HTTP/1.x status line read");
    // Two header blocks per response, one piece each, numbered from 0.
    let pieces = c.pieces();
    assert_eq!(pieces.len(), 6);
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!(p.seq, i as u32);
        assert_eq!(p.stream, [1, 1, 3, 3, 5, 5][i]);
        assert_eq!((p.kind, p.offset, p.len, p.frame_len), (HEADERS, 0, 3, 3));
    }
    assert_eq!(&pieces[0].data[..3], &[0x88, 0x5f, 0x10]);
    assert_eq!(pieces[1].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
    assert_eq!(h.header_pieces, 6);
}

#[test]
fn http1_on_an_auto_service_stays_http1() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.client(b"GET / HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 503 Busy\r\n\r\n");
    assert_eq!(c.entry().unwrap().app, APP_HTTP1);
    let s = c.signals();
    assert_eq!((s.requests, s.responses, s.http[4]), (1, 1, 1));
    assert_eq!(c.h2(), H2Signals::default());
}

#[test]
fn an_h2c_service_counts_a_connection_without_the_preface_untracked() {
    let mut c = Conn::open(AppProtocol::H2c, false);
    c.client(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.entry().unwrap().app, APP_H2_UNTRACKED);
    c.server(b"HTTP/1.1 200 OK\r\n\r\n");
    let h = c.h2();
    assert_eq!((h.connections, h.untracked), (0, 1));
    assert_eq!(c.signals().requests, 0, "nothing guessed");
}

#[test]
fn frames_split_across_segments_are_followed() {
    let mut c = Conn::open(AppProtocol::Auto, true);
    c.handshake_h2();
    c.client(&request(1));
    // The response cut so that the first HEADERS' header is split 4 + 5,
    // then its block split 2 + 1, then the rest: the trailers' block
    // crosses into a third segment, and a fourth holds its last byte.
    let r = response(1);
    let (a, rest) = r.split_at(4);
    let (b, rest) = rest.split_at(5 + 2);
    let (d, e) = rest.split_at(rest.len() - 1);
    for part in [a, b, d, e] {
        c.server(part);
    }
    let h = c.h2();
    assert_eq!((h.untracked, h.streams_ended), (0, 1));
    let s = c.signals();
    assert_eq!((s.requests, s.responses), (1, 1));
    // The first block in two pieces (offsets 0 and 2), the trailers' in
    // two (0 and 2): every byte once, in order.
    let pieces = c.pieces();
    let runs: Vec<_> = pieces.iter().map(|p| (p.seq, p.offset, p.len)).collect();
    assert_eq!(runs, [(0, 0, 2), (1, 2, 1), (2, 0, 2), (3, 2, 1)]);
    assert!(pieces.iter().all(|p| p.version == 1), "the canary's");
}

#[test]
fn resets_and_goaway_are_counted_by_code() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    c.client(&request(1));
    c.server(&frame(RST_STREAM, 0, 1, &2u32.to_be_bytes())); // INTERNAL_ERROR
    c.client(&request(3));
    c.client(&frame(RST_STREAM, 0, 3, &8u32.to_be_bytes())); // the client cancels
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend(0u32.to_be_bytes());
    c.server(&frame(GOAWAY, 0, 0, &goaway));
    let h = c.h2();
    assert_eq!(h.server_resets[2], 1);
    assert_eq!(h.server_resets.iter().sum::<u64>(), 1);
    assert_eq!((h.client_resets, h.goaway, h.goaway_errors), (1, 1, 0));
    assert_eq!(c.signals().responses, 0, "a reset stream got no response");
}

#[test]
fn a_sequence_gap_untracks_the_connection_once() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    c.client(&request(1));
    // The server's next 10 bytes never pass: the walk cannot know where
    // frames are after them.
    c.sseq = c.sseq.wrapping_add(10);
    c.server(&response(1));
    c.server(&response(1));
    c.client(&request(3));
    assert_eq!(c.entry().unwrap().app, APP_H2_UNTRACKED);
    let h = c.h2();
    assert_eq!((h.untracked, h.streams_ended), (1, 0));
    assert_eq!(
        c.signals().requests,
        1,
        "the stream after the gap not counted"
    );
}

#[test]
fn a_retransmission_is_walked_once() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    c.client(&request(1));
    let r = response(1);
    let start = c.sseq;
    c.server(&r);
    c.egress_raw(ACK | PSH, start, c.cseq, &r);
    let h = c.h2();
    assert_eq!((h.untracked, h.streams_ended, h.header_pieces), (0, 1, 2));
    assert_eq!(c.signals().responses, 1);
}

#[test]
fn a_super_packet_of_many_frames_is_walked_whole() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    let streams: Vec<u32> = (0..40).map(|i| 1 + 2 * i).collect();
    let requests: Vec<u8> = streams.iter().flat_map(|s| request(*s)).collect();
    c.client(&requests);
    // 40 responses, 120 frames, in one GRO'd packet of about 1.4 KB.
    let responses: Vec<u8> = streams.iter().flat_map(|s| response(*s)).collect();
    c.server(&responses);
    let h = c.h2();
    assert_eq!((h.untracked, h.streams_ended, h.header_pieces), (0, 40, 80));
    let s = c.signals();
    assert_eq!((s.requests, s.responses), (40, 40));
}

#[test]
fn a_header_block_continues_in_continuation_frames() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    c.client(&request(1));
    let mut r = frame(HEADERS, 0, 1, &[1, 2, 3]);
    r.extend(frame(CONTINUATION, FLAG_END_HEADERS, 1, &[4, 5]));
    r.extend(frame(DATA, FLAG_END_STREAM, 1, &[0; 5]));
    c.server(&r);
    let pieces = c.pieces();
    let kinds: Vec<_> = pieces.iter().map(|p| (p.kind, p.len)).collect();
    assert_eq!(kinds, [(HEADERS, 3), (CONTINUATION, 2)]);
    assert_eq!(c.h2().streams_ended, 1);
}

#[test]
fn frame_headers_out_of_sync_untrack() {
    let mut c = Conn::open(AppProtocol::Auto, false);
    c.handshake_h2();
    // An HTTP/1.x line where a frame header should be.
    c.server(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(c.h2().untracked, 1);
    assert!(h2::frame_header(b"HTTP/1.1 ").is_none());
}
