//! IPv6 TCP and UDP: the same decisions as IPv4, with the 128-bit addresses
//! and the IPv6 pseudo-header in the checksum.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c6,
        vip6,
        syn6,
        udp6,
        tr,
        s,
        c,
        ..
    } = Fixtures::new();
    vec![
        Case::new("v6 tcp SYN, weight 0 -> stable", Ingress, syn6.bytes())
            .expect(XDP_PASS, tr, Some(syn6.with_dst(st(TCP6)).bytes()))
            .stats(TCP6, new_in(s)),
        Case::new("v6 tcp SYN, weight 10000 -> canary", Ingress, syn6.bytes())
            .weight(Weight::FULL)
            .expect(XDP_PASS, tr, Some(syn6.with_dst(ca(TCP6)).bytes()))
            .stats(TCP6, new_in(c))
            .flow_after(TCP6, c6, FlowAfter::HalfOpen(c)),
        Case::new(
            "v6 tcp established follows the table",
            Ingress,
            Frame::tcp(c6, vip6, ACK).bytes(),
        )
        .weight(Weight::FULL)
        .flow(
            TCP6,
            c6,
            FlowEntry {
                established: 1,
                ..entry(TCP6, s)
            },
        )
        .expect(XDP_PASS, tr, Some(Frame::tcp(c6, st(TCP6), ACK).bytes()))
        .stats(TCP6, hit_in(s))
        .signals(TCP6, request(VERSION_STABLE)),
        Case::new(
            "v6 tcp mid-stream without entry is decided again, half-open",
            Ingress,
            Frame::tcp(c6, vip6, ACK).bytes(),
        )
        .weight(Weight::FULL)
        .expect(XDP_PASS, tr, Some(Frame::tcp(c6, ca(TCP6), ACK).bytes()))
        .stats(TCP6, new_in(c))
        // No request counted: a half-open tuple may be made up.
        .flow_after(TCP6, c6, FlowAfter::HalfOpen(c)),
        Case::new("v6 udp, weight 0 -> stable", Ingress, udp6.bytes())
            .expect(XDP_PASS, tr, Some(udp6.with_dst(st(UDP6)).bytes()))
            .stats(UDP6, new_in(s))
            .signals(UDP6, request(VERSION_STABLE)),
        Case::new("v6 udp, weight 10000 -> canary", Ingress, udp6.bytes())
            .weight(Weight::FULL)
            .expect(XDP_PASS, tr, Some(udp6.with_dst(ca(UDP6)).bytes()))
            .stats(UDP6, new_in(c))
            .signals(UDP6, request(VERSION_CANARY)),
    ]
}
