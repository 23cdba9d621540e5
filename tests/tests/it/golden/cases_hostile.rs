//! Packets that do not belong to a connection: a reset with a guessed
//! sequence number, a SYN on a live tuple, tuples that never complete a
//! handshake. None may release, re-decide or move an established flow;
//! a flow enters the established table only once it is shown to be real
//! (the client's ACK of the SYN-ACK, or the backend talking mid-stream).

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        vip4,
        ack4,
        udp4,
        dns4,
        tr,
        s,
        c,
        established,
        ..
    } = Fixtures::new();
    let rst = Frame::tcp(c4, vip4, RST | ACK).with_payload(b"");
    // A stable SYN flow whose backend answered: its SYN-ACK had sequence
    // number 4999, so the client's ACK of it carries 5000.
    let answered = FlowEntry {
        last_seen_ns: handshake_token(5000),
        ..entry(TCP4, s)
    };
    let mid_stream = FlowEntry {
        established: 1,
        ..entry(TCP4, s)
    };
    vec![
        Case::new(
            "client RST with a guessed sequence number keeps the established entry",
            Ingress,
            rst.bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                backend_ack: 77_777,
                ..established
            },
        )
        .expect(
            XDP_PASS,
            verdict::TRANSLATED_RST_UNVERIFIED,
            Some(rst.with_dst(ca(TCP4)).bytes()),
        )
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::BackendAck(77_777)),
        Case::new(
            "client RST on a half-open flow removes it, counting no close",
            Ingress,
            rst.bytes(),
        )
        .half_open(TCP4, c4, entry(TCP4, s))
        .expect(XDP_PASS, tr, Some(rst.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, hit_in(s))
        .flow_after(TCP4, c4, FlowAfter::Absent),
        Case::new(
            "egress SYN-ACK of a half-open flow waits for the client's ACK of it",
            Egress,
            Frame {
                seq: 4999,
                ..Frame::tcp(st(TCP4), c4, SYN | ACK)
            }
            .bytes(),
        )
        .half_open(TCP4, c4, entry(TCP4, s))
        .expect(
            TC_ACT_OK,
            tr,
            Some(
                Frame {
                    seq: 4999,
                    ..Frame::tcp(vip4, c4, SYN | ACK)
                }
                .bytes(),
            ),
        )
        .stats(TCP4, out(s))
        .flow_after(TCP4, c4, FlowAfter::AwaitsAck(5000)),
        Case::new(
            "client ACK of the SYN-ACK moves the flow to the table, counted new",
            Ingress,
            Frame {
                ack: 5000,
                ..ack4.clone()
            }
            .bytes(),
        )
        .half_open(TCP4, c4, answered)
        .expect(
            XDP_PASS,
            tr,
            Some(
                Frame {
                    ack: 5000,
                    ..ack4.with_dst(st(TCP4))
                }
                .bytes(),
            ),
        )
        .stats(
            TCP4,
            StatsDelta {
                new_flows: 1,
                ..hit_in(s)
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Version(s)),
        Case::new(
            "client ACK of another number leaves the flow half-open (a blind spoof)",
            Ingress,
            Frame {
                ack: 5001,
                ..ack4.clone()
            }
            .bytes(),
        )
        .half_open(TCP4, c4, answered)
        .expect(
            XDP_PASS,
            tr,
            Some(
                Frame {
                    ack: 5001,
                    ..ack4.with_dst(st(TCP4))
                }
                .bytes(),
            ),
        )
        .stats(TCP4, hit_in(s))
        .flow_after(TCP4, c4, FlowAfter::AwaitsAck(5000)),
        Case::new(
            "egress backend talking on a flow decided mid-stream moves it, counted a re-decision",
            Egress,
            Frame::tcp(st(TCP4), c4, ACK).with_payload(b"").bytes(),
        )
        .half_open(TCP4, c4, mid_stream)
        .expect(
            TC_ACT_OK,
            tr,
            Some(Frame::tcp(vip4, c4, ACK).with_payload(b"").bytes()),
        )
        .stats(
            TCP4,
            StatsDelta {
                rehashes: 1,
                ..out(s)
            },
        )
        .flow_after(TCP4, c4, FlowAfter::BackendAck(2000)),
        Case::new(
            "egress backend RST of a made-up mid-stream tuple removes it and counts no reset",
            Egress,
            Frame::tcp(st(TCP4), c4, RST).with_payload(b"").bytes(),
        )
        .half_open(TCP4, c4, mid_stream)
        .expect(
            TC_ACT_OK,
            tr,
            Some(Frame::tcp(vip4, c4, RST).with_payload(b"").bytes()),
        )
        .stats(TCP4, out(s))
        .flow_after(TCP4, c4, FlowAfter::Absent),
        Case::new(
            "egress backend ACK records what a genuine client RST must carry",
            Egress,
            Frame {
                ack: 123_456,
                ..Frame::tcp(ca(TCP4), c4, ACK).with_payload(b"")
            }
            .bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(
            TC_ACT_OK,
            tr,
            Some(
                Frame {
                    ack: 123_456,
                    ..Frame::tcp(vip4, c4, ACK).with_payload(b"")
                }
                .bytes(),
            ),
        )
        .stats(TCP4, out(c))
        .flow_after(TCP4, c4, FlowAfter::BackendAck(123_456)),
        Case::new(
            "egress UDP reply moves its half-open flow to the table, counted new",
            Egress,
            Frame::udp(st(UDP4), c4).bytes(),
        )
        .half_open(UDP4, c4, entry(UDP4, s))
        .expect(TC_ACT_OK, tr, Some(Frame::udp(dns4, c4).bytes()))
        .stats(
            UDP4,
            StatsDelta {
                new_flows: 1,
                ..out(s)
            },
        )
        .signals(UDP4, reply(VERSION_STABLE))
        .flow_after(UDP4, c4, FlowAfter::Version(s)),
        Case::new(
            "client UDP datagram follows its half-open flow",
            Ingress,
            udp4.bytes(),
        )
        .weight(Weight::FULL)
        .half_open(
            UDP4,
            c4,
            FlowEntry {
                last_seen_ns: JUST_NOW,
                ..entry(UDP4, s)
            },
        )
        .expect(XDP_PASS, tr, Some(udp4.with_dst(st(UDP4)).bytes()))
        .stats(UDP4, hit_in(s))
        .signals(UDP4, request(VERSION_STABLE))
        .flow_after(UDP4, c4, FlowAfter::HalfOpen(s)),
    ]
}
