//! Truncation at every header boundary: never read past the packet, pass it
//! untouched and let the stack drop it.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        syn4, syn6, udp4, ..
    } = Fixtures::new();
    vec![
        Case::new(
            "truncated inside the VLAN tag",
            Ingress,
            trunc(
                &Frame {
                    vlans: vec![0x8100],
                    ..syn4.clone()
                },
                16,
            ),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the IPv4 header",
            Ingress,
            trunc(&syn4, 14 + 19),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the IPv4 options",
            Ingress,
            trunc(
                &Frame {
                    ipv4_options: vec![1, 1, 1, 0],
                    ..syn4.clone()
                },
                14 + 22,
            ),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the TCP header",
            Ingress,
            trunc(&syn4, 14 + 20 + 19),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the UDP header",
            Ingress,
            trunc(&udp4, 14 + 20 + 7),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the IPv6 header",
            Ingress,
            trunc(&syn6, 14 + 39),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "truncated inside the TCP header over IPv6",
            Ingress,
            trunc(&syn6, 14 + 40 + 12),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
        Case::new(
            "IPv4 header length below 20 bytes",
            Ingress,
            set_byte(syn4.bytes(), 14, 0x44),
        )
        .expect(XDP_PASS, verdict::PASS_TRUNCATED, None),
    ]
}

fn trunc(f: &Frame, len: usize) -> Vec<u8> {
    let mut b = f.bytes();
    b.truncate(len);
    b
}

fn set_byte(mut b: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    b[at] = v;
    b
}
