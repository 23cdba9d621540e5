//! IPv4 TCP and UDP to a flow-affinity service: the weight decides a new flow,
//! the flow table decides the rest; and a backend that is a local process.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        vip4,
        syn4,
        ack4,
        udp4,
        tr,
        s,
        c,
        mid,
        mid_st,
        now,
        established,
        ..
    } = Fixtures::new();
    vec![
        Case::new("v4 tcp SYN, weight 0 -> stable", Ingress, syn4.bytes())
            .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
            .stats(TCP4, new_in(s))
            .flow_after(TCP4, c4, FlowAfter::HalfOpen(s)),
        Case::new("v4 tcp SYN, weight 10000 -> canary", Ingress, syn4.bytes())
            .weight(Weight::FULL)
            .expect(XDP_PASS, tr, Some(syn4.with_dst(ca(TCP4)).bytes()))
            .stats(TCP4, new_in(c))
            .flow_after(TCP4, c4, FlowAfter::HalfOpen(c)),
        Case::new(
            "v4 tcp SYN, weight 5000, port hashing to canary",
            Ingress,
            Frame::tcp(mid, vip4, SYN).bytes(),
        )
        .weight(HALF)
        .expect(XDP_PASS, tr, Some(Frame::tcp(mid, ca(TCP4), SYN).bytes()))
        .stats(TCP4, new_in(c)),
        Case::new(
            "v4 tcp SYN, weight 5000, port hashing to stable",
            Ingress,
            Frame::tcp(mid_st, vip4, SYN).bytes(),
        )
        .weight(HALF)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(mid_st, st(TCP4), SYN).bytes()),
        )
        .stats(TCP4, new_in(s)),
        Case::new(
            "v4 tcp established, table says canary at weight 0",
            Ingress,
            ack4.bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(XDP_PASS, tr, Some(ack4.with_dst(ca(TCP4)).bytes()))
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Version(c))
        .signals(TCP4, request(VERSION_CANARY)),
        Case::new(
            "v4 tcp mid-stream without entry is decided again, half-open until the backend answers",
            Ingress,
            ack4.bytes(),
        )
        .expect(XDP_PASS, tr, Some(ack4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, new_in(s))
        // No request counted: a half-open tuple may be made up.
        .flow_after(TCP4, c4, FlowAfter::HalfOpen(s)),
        Case::new(
            "v4 tcp SYN retransmit follows its half-open entry",
            Ingress,
            syn4.bytes(),
        )
        .half_open(TCP4, c4, entry(TCP4, c))
        .expect(XDP_PASS, tr, Some(syn4.with_dst(ca(TCP4)).bytes()))
        .stats(TCP4, hit_in(c)),
        Case::new(
            "v4 tcp SYN on a live established tuple follows its entry (spoofed or stale)",
            Ingress,
            syn4.bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(
            XDP_PASS,
            verdict::TRANSLATED_SYN_ESTABLISHED,
            Some(syn4.with_dst(ca(TCP4)).bytes()),
        )
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Version(c)),
        Case::new(
            "v4 tcp SYN on a tuple whose FIN was acknowledged is decided again",
            Ingress,
            syn4.bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN | FIN_ACKED,
                ..established
            },
        )
        .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, new_in(s))
        .stats_other(closed(c))
        .flow_after(TCP4, c4, FlowAfter::HalfOpen(s)),
        // --- IPv4 UDP -----------------------------------------------------
        Case::new("v4 udp, weight 0 -> stable", Ingress, udp4.bytes())
            .expect(XDP_PASS, tr, Some(udp4.with_dst(st(UDP4)).bytes()))
            .stats(UDP4, new_in(s))
            .flow_after(UDP4, c4, FlowAfter::HalfOpen(s))
            .signals(UDP4, request(VERSION_STABLE)),
        Case::new("v4 udp, weight 10000 -> canary", Ingress, udp4.bytes())
            .weight(Weight::FULL)
            .expect(XDP_PASS, tr, Some(udp4.with_dst(ca(UDP4)).bytes()))
            .stats(UDP4, new_in(c))
            .signals(UDP4, request(VERSION_CANARY)),
        Case::new(
            "v4 udp without checksum keeps checksum 0",
            Ingress,
            Frame {
                udp_no_checksum: true,
                ..udp4.clone()
            }
            .bytes(),
        )
        .expect(
            XDP_PASS,
            tr,
            Some(
                Frame {
                    udp_no_checksum: true,
                    ..udp4.with_dst(st(UDP4))
                }
                .bytes(),
            ),
        )
        .stats(UDP4, new_in(s))
        .signals(UDP4, request(VERSION_STABLE)),
        Case::new("v4 udp recent entry is followed", Ingress, udp4.bytes())
            .flow(
                UDP4,
                c4,
                FlowEntry {
                    last_seen_ns: JUST_NOW,
                    ..entry(UDP4, c)
                },
            )
            .expect(XDP_PASS, tr, Some(udp4.with_dst(ca(UDP4)).bytes()))
            .stats(UDP4, hit_in(c))
            .signals(UDP4, request(VERSION_CANARY)),
        Case::new(
            "v4 udp entry idle past the timeout is decided again",
            Ingress,
            udp4.bytes(),
        )
        .flow(
            UDP4,
            c4,
            FlowEntry {
                last_seen_ns: now.saturating_sub(3_600_000_000_000),
                ..entry(UDP4, c)
            },
        )
        .expect(XDP_PASS, tr, Some(udp4.with_dst(st(UDP4)).bytes()))
        .stats(UDP4, new_in(s))
        .stats_other(closed(c))
        .flow_after(UDP4, c4, FlowAfter::HalfOpen(s))
        .signals(UDP4, request(VERSION_STABLE)),
        // --- local-process backend ---------------------------------------
        Case::new(
            "v4 local-process backend: port rewrite only",
            Ingress,
            Frame::tcp(c4, sa("198.18.0.1:90"), SYN).bytes(),
        )
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, sa("198.18.0.1:8081"), SYN).bytes()),
        )
        .stats(LOCAL4, new_in(s)),
    ]
}
