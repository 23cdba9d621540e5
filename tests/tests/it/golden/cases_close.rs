//! TCP close tracking, from both sides: an entry goes only when both FINs are
//! acknowledged (judged by sequence numbers), or at once on a reset.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        vip4,
        tr,
        s,
        c,
        established,
        ..
    } = Fixtures::new();
    vec![
        Case::new(
            "v4 tcp client RST with the backend's last ACK number releases the entry",
            Ingress,
            Frame::tcp(c4, vip4, RST | ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                backend_ack: 1000,
                ..established
            },
        )
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, ca(TCP4), RST | ACK).bytes()),
        )
        .stats(
            TCP4,
            StatsDelta {
                version: c,
                packets_in: 1,
                closed_flows: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Absent)
        .signals(TCP4, request(VERSION_CANARY)),
        Case::new(
            "v4 tcp client FIN first is remembered",
            Ingress,
            Frame::tcp(c4, vip4, FIN | ACK).bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, ca(TCP4), FIN | ACK).bytes()),
        )
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Fins(1, 0))
        .signals(TCP4, request(VERSION_CANARY)),
        // Test frames carry seq 1000, ack 2000 (with ACK) and 18 bytes of
        // payload, so a client FIN ends at sequence number 1019.
        Case::new(
            "v4 tcp client FIN|ACK acknowledges the backend's FIN",
            Ingress,
            Frame::tcp(c4, vip4, FIN | ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                backend_fin: FIN_SEEN,
                backend_fin_end: 2000,
                ..established
            },
        )
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, ca(TCP4), FIN | ACK).bytes()),
        )
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN, FIN_SEEN | FIN_ACKED))
        .signals(TCP4, request(VERSION_CANARY)),
        Case::new(
            "v4 tcp crossed close: an ACK short of the backend's FIN keeps the entry",
            Ingress,
            Frame::tcp(c4, vip4, ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN | FIN_ACKED,
                backend_fin: FIN_SEEN,
                backend_fin_end: 2001,
                ..established
            },
        )
        .expect(XDP_PASS, tr, Some(Frame::tcp(c4, ca(TCP4), ACK).bytes()))
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN | FIN_ACKED, FIN_SEEN))
        .signals(TCP4, request(VERSION_CANARY)),
        Case::new(
            "v4 tcp client's last ACK releases the entry",
            Ingress,
            Frame::tcp(c4, vip4, ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN | FIN_ACKED,
                backend_fin: FIN_SEEN,
                backend_fin_end: 2000,
                ..established
            },
        )
        .expect(XDP_PASS, tr, Some(Frame::tcp(c4, ca(TCP4), ACK).bytes()))
        .stats(
            TCP4,
            StatsDelta {
                version: c,
                packets_in: 1,
                closed_flows: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Absent)
        .signals(TCP4, request(VERSION_CANARY)),
        Case::new(
            "v4 tcp ACK while only the client closed keeps the entry",
            Ingress,
            Frame::tcp(c4, vip4, ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: 1,
                ..established
            },
        )
        .expect(XDP_PASS, tr, Some(Frame::tcp(c4, ca(TCP4), ACK).bytes()))
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Fins(1, 0))
        .signals(TCP4, request(VERSION_CANARY)),
        // --- egress: the backend closes ---------------------------------
        Case::new(
            "egress backend FIN|ACK acknowledges the client's FIN",
            Egress,
            Frame::tcp(st(TCP4), c4, FIN | ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN,
                client_fin_end: 2000,
                established: 1,
                ..entry(TCP4, s)
            },
        )
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, FIN | ACK).bytes()))
        .stats(TCP4, out(s))
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN | FIN_ACKED, FIN_SEEN)),
        Case::new(
            "egress crossed close: a backend FIN sent before the client's arrived acknowledges nothing",
            Egress,
            Frame::tcp(st(TCP4), c4, FIN | ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN,
                client_fin_end: 5000,
                established: 1,
                ..entry(TCP4, s)
            },
        )
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, FIN | ACK).bytes()))
        .stats(TCP4, out(s))
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN, FIN_SEEN)),
        Case::new(
            "egress backend's last ACK releases the entry",
            Egress,
            Frame::tcp(st(TCP4), c4, ACK).bytes(),
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                client_fin: FIN_SEEN,
                client_fin_end: 2000,
                backend_fin: FIN_SEEN | FIN_ACKED,
                established: 1,
                ..entry(TCP4, s)
            },
        )
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, ACK).bytes()))
        .stats(
            TCP4,
            StatsDelta {
                version: s,
                packets_out: 1,
                closed_flows: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Absent),
        Case::new(
            "egress backend RST releases the entry",
            Egress,
            Frame::tcp(st(TCP4), c4, RST).bytes(),
        )
        .flow(TCP4, c4, entry(TCP4, s))
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, RST).bytes()))
        .stats(
            TCP4,
            StatsDelta {
                version: s,
                packets_out: 1,
                closed_flows: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Absent)
        .signals(TCP4, backend_reset(VERSION_STABLE)),
    ]
}
