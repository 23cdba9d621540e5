//! Odd input to a service: handled (IPv4 options, VLAN tags), passed
//! (fragments not to a service port, extension headers) or dropped (a
//! service datagram's first fragment, no backend), each a counted verdict.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        c6,
        syn4,
        syn6,
        udp4,
        udp6,
        s,
        ..
    } = Fixtures::new();
    vec![
        Case::new(
            "v4 SYN with IPv4 options is translated",
            Ingress,
            Frame {
                ipv4_options: vec![1, 1, 1, 0],
                ..syn4.clone()
            }
            .bytes(),
        )
        .expect(
            XDP_PASS,
            verdict::TRANSLATED_IPV4_OPTIONS,
            Some(
                Frame {
                    ipv4_options: vec![1, 1, 1, 0],
                    ..syn4.with_dst(st(TCP4))
                }
                .bytes(),
            ),
        )
        .stats(TCP4, new_in(s)),
        Case::new(
            "first IPv4 fragment to a service port is dropped",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..udp4.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_FRAGMENT, None),
        Case::new(
            "later IPv4 fragment to a VIP passes (it has no ports to match)",
            Ingress,
            Frame {
                ipv4_frag: 0x00b9,
                ..udp4.clone()
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_FRAGMENT, None),
        Case::new(
            "first IPv4 fragment to the VIP address, another port, passes",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..Frame::udp(c4, sa("198.18.0.1:5000"))
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_FRAGMENT, None),
        Case::new(
            "IPv4 ICMP fragment to the VIP address passes (a large ping)",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..Frame::raw(ip("198.18.0.2"), ip("198.18.0.1"), ICMP)
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_FRAGMENT, None),
        Case::new(
            "IPv4 fragment to another address passes",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..Frame::udp(c4, sa("198.18.9.9:53"))
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_FRAGMENT, None),
        Case::new(
            "IPv6 hop-by-hop header to a VIP passes untouched",
            Ingress,
            Frame {
                ipv6_ext: Some(0),
                ..syn6.clone()
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_IPV6_EXTENSION, None),
        Case::new(
            "IPv6 destination options to a VIP pass untouched",
            Ingress,
            Frame {
                ipv6_ext: Some(60),
                ..udp6.clone()
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_IPV6_EXTENSION, None),
        Case::new(
            "first IPv6 fragment to a service port is dropped",
            Ingress,
            Frame {
                ipv6_ext: Some(44),
                ..udp6.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_FRAGMENT, None),
        Case::new(
            "later IPv6 fragment to a VIP passes",
            Ingress,
            Frame {
                ipv6_ext: Some(44),
                ipv6_frag: 185 << 3,
                ..udp6.clone()
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_FRAGMENT, None),
        Case::new(
            "IPv6 extension header to another address passes",
            Ingress,
            Frame {
                ipv6_ext: Some(0),
                ..Frame::tcp(c6, sa("[2001:db8::9]:80"), SYN)
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_IPV6_EXTENSION, None),
        Case::new(
            "802.1Q-tagged v4 SYN is translated, tag kept",
            Ingress,
            Frame {
                vlans: vec![0x8100],
                ..syn4.clone()
            }
            .bytes(),
        )
        .expect(
            XDP_PASS,
            verdict::TRANSLATED_VLAN,
            Some(
                Frame {
                    vlans: vec![0x8100],
                    ..syn4.with_dst(st(TCP4))
                }
                .bytes(),
            ),
        )
        .stats(TCP4, new_in(s)),
        Case::new(
            "Q-in-Q tagged v6 SYN is translated, tags kept",
            Ingress,
            Frame {
                vlans: vec![0x88a8, 0x8100],
                ..syn6.clone()
            }
            .bytes(),
        )
        .expect(
            XDP_PASS,
            verdict::TRANSLATED_VLAN,
            Some(
                Frame {
                    vlans: vec![0x88a8, 0x8100],
                    ..syn6.with_dst(st(TCP6))
                }
                .bytes(),
            ),
        )
        .stats(TCP6, new_in(s)),
        Case::new(
            "three VLAN tags pass untouched",
            Ingress,
            Frame {
                vlans: vec![0x88a8, 0x8100, 0x8100],
                ..syn4.clone()
            }
            .bytes(),
        )
        .expect(XDP_PASS, verdict::PASS_VLAN_TOO_DEEP, None),
        {
            let mut c = Case::new(
                "service without backends drops new flows",
                Ingress,
                syn4.bytes(),
            )
            .expect(XDP_DROP, verdict::DROP_NO_BACKEND, None);
            c.raw_setup = Some(empty_tcp4_service);
            c
        },
    ]
}

/// Overwrites tcp4's SERVICES entry with one that has no backends, which
/// configuration validation never produces but a data path must survive.
fn empty_tcp4_service(dp: &mut Dataplane) {
    let services = &mut dp.maps_mut().services;
    let key = endpoint(sa("198.18.0.1:80"), 6);
    let mut s = services.get(&key, 0).unwrap();
    s.stable_count = 0;
    s.canary_count = 0;
    services.insert(key, s, 0).unwrap();
}
