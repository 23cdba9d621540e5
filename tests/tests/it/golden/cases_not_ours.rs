//! Traffic not addressed to a service passes untouched, counted as not ours.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        c6,
        vip4,
        ack4,
        established,
        ..
    } = Fixtures::new();
    vec![
        Case::new(
            "v4 tcp to the VIP address, other port",
            Ingress,
            Frame::tcp(c4, sa("198.18.0.1:22"), SYN).bytes(),
        ),
        Case::new(
            "v4 tcp to another address",
            Ingress,
            Frame::tcp(c4, sa("198.18.9.9:80"), SYN).bytes(),
        ),
        Case::new(
            "v6 tcp to another address",
            Ingress,
            Frame::tcp(c6, sa("[2001:db8::9]:80"), SYN).bytes(),
        ),
        Case::new(
            "v4 udp to a TCP service port",
            Ingress,
            Frame::udp(c4, vip4).bytes(),
        ),
        // Ingress follows an established TCP entry without looking at
        // SERVICES, so removing a service must take its flows' entries too.
        Case::new(
            "v4 tcp segment of an established flow whose service was removed",
            Ingress,
            ack4.bytes(),
        )
        .flow(TCP4, c4, established)
        .setup(remove_tcp4)
        .flow_after(TCP4, c4, FlowAfter::Absent),
        Case::new("ARP", Ingress, arp()).expect(XDP_PASS, verdict::PASS_NOT_IP, None),
        Case::new(
            "ICMP echo to the VIP",
            Ingress,
            Frame::raw(ip("198.18.0.2"), ip("198.18.0.1"), ICMP).bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_OTHER_PROTOCOL, None),
        Case::new(
            "ICMPv6 to the VIP",
            Ingress,
            Frame::raw(ip("2001:db8::2"), ip("2001:db8::1"), ICMPV6).bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_OTHER_PROTOCOL, None),
    ]
}

/// Removes the tcp4 service as a reload does, once no revert can want it.
fn remove_tcp4(dp: &mut Dataplane) {
    dp.remove_service(TCP4).unwrap();
    assert_eq!(
        dp.forget_removed(),
        1,
        "the removed service's one flow entry"
    );
}
