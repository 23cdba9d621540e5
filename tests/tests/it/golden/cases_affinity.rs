//! Client affinity: every connection of one client address lands on one
//! version.

use super::*;

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        tr,
        sticky_ver,
        sticky6_ver,
        ..
    } = Fixtures::new();
    vec![
        Case::new(
            "v4 client affinity, port 1000",
            Ingress,
            Frame::tcp(sa("198.18.0.2:1000"), sa("198.18.0.1:81"), SYN).bytes(),
        )
        .weight(HALF)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(sa("198.18.0.2:1000"), backend_of(STICKY4, sticky_ver), SYN).bytes()),
        )
        .stats(STICKY4, new_in(sticky_ver)),
        Case::new(
            "v4 client affinity, port 2000: same version",
            Ingress,
            Frame::tcp(sa("198.18.0.2:2000"), sa("198.18.0.1:81"), SYN).bytes(),
        )
        .weight(HALF)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(sa("198.18.0.2:2000"), backend_of(STICKY4, sticky_ver), SYN).bytes()),
        )
        .stats(STICKY4, new_in(sticky_ver)),
        Case::new(
            "v6 client affinity",
            Ingress,
            Frame::tcp(sa("[2001:db8::2]:3000"), sa("[2001:db8::1]:81"), SYN).bytes(),
        )
        .weight(HALF)
        .expect(
            XDP_PASS,
            tr,
            Some(
                Frame::tcp(
                    sa("[2001:db8::2]:3000"),
                    backend_of(STICKY6, sticky6_ver),
                    SYN,
                )
                .bytes(),
            ),
        )
        .stats(STICKY6, new_in(sticky6_ver)),
    ]
}
