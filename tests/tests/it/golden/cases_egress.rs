//! TC egress: replies from a flow's backend get the VIP back as source;
//! anything else leaves untouched.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        c6,
        vip4,
        vip6,
        dns4,
        dns6,
        tr,
        s,
        c,
        ..
    } = Fixtures::new();
    vec![
        Case::new(
            "egress v4 SYN-ACK from stable becomes the VIP's",
            Egress,
            Frame::tcp(st(TCP4), c4, SYN | ACK).bytes(),
        )
        .flow(TCP4, c4, entry(TCP4, s))
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, SYN | ACK).bytes()))
        .stats(TCP4, out(s)),
        Case::new(
            "egress v6 reply from canary becomes the VIP's",
            Egress,
            Frame::tcp(ca(TCP6), c6, ACK | PSH).bytes(),
        )
        .flow(TCP6, c6, entry(TCP6, c))
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip6, c6, ACK | PSH).bytes()))
        .stats(TCP6, out(c)),
        Case::new(
            "egress v4 udp reply",
            Egress,
            Frame::udp(st(UDP4), c4).bytes(),
        )
        .flow(UDP4, c4, entry(UDP4, s))
        .expect(TC_ACT_OK, tr, Some(Frame::udp(dns4, c4).bytes()))
        .stats(UDP4, out(s))
        .signals(UDP4, reply(VERSION_STABLE)),
        Case::new(
            "egress v4 udp reply without checksum keeps 0",
            Egress,
            Frame {
                udp_no_checksum: true,
                ..Frame::udp(st(UDP4), c4)
            }
            .bytes(),
        )
        .flow(UDP4, c4, entry(UDP4, s))
        .expect(
            TC_ACT_OK,
            tr,
            Some(
                Frame {
                    udp_no_checksum: true,
                    ..Frame::udp(dns4, c4)
                }
                .bytes(),
            ),
        )
        .stats(UDP4, out(s))
        .signals(UDP4, reply(VERSION_STABLE)),
        Case::new(
            "egress v6 udp reply",
            Egress,
            Frame::udp(ca(UDP6), c6).bytes(),
        )
        .flow(UDP6, c6, entry(UDP6, c))
        .expect(TC_ACT_OK, tr, Some(Frame::udp(dns6, c6).bytes()))
        .stats(UDP6, out(c))
        .signals(UDP6, reply(VERSION_CANARY)),
        Case::new(
            "egress local-process reply: port back to 90",
            Egress,
            Frame::tcp(sa("198.18.0.1:8081"), c4, ACK).bytes(),
        )
        .flow(LOCAL4, c4, entry(LOCAL4, s))
        .expect(
            TC_ACT_OK,
            tr,
            Some(Frame::tcp(sa("198.18.0.1:90"), c4, ACK).bytes()),
        )
        .stats(LOCAL4, out(s)),
        Case::new(
            "egress reply with IPv4 options",
            Egress,
            Frame {
                ipv4_options: vec![1, 1, 1, 0],
                ..Frame::tcp(st(TCP4), c4, ACK)
            }
            .bytes(),
        )
        .flow(TCP4, c4, entry(TCP4, s))
        .expect(
            TC_ACT_OK,
            tr,
            Some(
                Frame {
                    ipv4_options: vec![1, 1, 1, 0],
                    ..Frame::tcp(vip4, c4, ACK)
                }
                .bytes(),
            ),
        )
        .stats(TCP4, out(s)),
        Case::new(
            "egress backend reply without a flow is untouched",
            Egress,
            Frame::tcp(st(TCP4), c4, ACK).bytes(),
        )
        .expect(TC_ACT_OK, verdict::EGRESS_NO_FLOW, None),
        Case::new(
            "egress reply from a backend the flow did not choose",
            Egress,
            Frame::tcp(ca(TCP4), c4, ACK).bytes(),
        )
        .flow(TCP4, c4, entry(TCP4, s))
        .expect(TC_ACT_OK, verdict::EGRESS_NO_FLOW, None),
        Case::new(
            "egress traffic from a non-backend is untouched",
            Egress,
            Frame::tcp(sa("198.18.0.1:22"), c4, ACK).bytes(),
        ),
        Case::new("egress ARP", Egress, arp()).expect(TC_ACT_OK, verdict::PASS_NOT_IP, None),
    ]
}
