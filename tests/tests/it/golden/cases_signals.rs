//! Health signals: request start on a client payload, latency and status
//! class on the first reply payload after it, resets, refusals, SYN
//! retransmits and connect time. Times the data path reads from the clock
//! are set by the runner just before the run (`STARTED_AGO`), so each
//! observation is known within a range, and its bucket is checked to be
//! the bucket of the duration it added.

use super::*;

/// A duration a little over 2.5 ms: the runner's own time before the run
/// (up to 7.5 ms on a busy machine) comes on top.
const AGO_RANGE: (u64, u64) = (AGO_NS, 4 * AGO_NS);

/// A reply from tcp4's stable backend to c4 carrying `payload`, and what it
/// looks like translated.
fn reply_frames(c4: SocketAddr, vip4: SocketAddr, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut from = Frame::tcp(st(TCP4), c4, ACK | PSH);
    from.payload = payload.to_vec();
    let mut to = Frame::tcp(vip4, c4, ACK | PSH);
    to.payload = payload.to_vec();
    (from.bytes(), to.bytes())
}

/// One response of `class` (index into `HTTP_CLASS_NAMES`) after a request
/// that started 2.5 ms ago.
fn response(version: u8, class: usize) -> SignalsDelta {
    let mut http = [0; HTTP_CLASSES];
    http[class] = 1;
    SignalsDelta {
        version,
        responses: 1,
        http,
        latency: Some(AGO_RANGE),
        ..Default::default()
    }
}

pub fn cases() -> Vec<Case> {
    use Prog::*;
    let Fixtures {
        c4,
        vip4,
        syn4,
        ack4,
        tr,
        s,
        established,
        ..
    } = Fixtures::new();
    let stable_established = FlowEntry {
        established: 1,
        ..entry(TCP4, s)
    };
    let waiting = FlowEntry {
        request_ns: STARTED_AGO,
        ..stable_established
    };
    let syn_sent = FlowEntry {
        syn_ns: STARTED_AGO,
        ..entry(TCP4, s)
    };
    let mut cases = vec![
        Case::new(
            "signals: a client payload with no request waiting starts one",
            Ingress,
            ack4.bytes(),
        )
        .flow(TCP4, c4, stable_established)
        .expect(XDP_PASS, tr, Some(ack4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, hit_in(s))
        .signals(TCP4, request(s))
        .flow_after(TCP4, c4, FlowAfter::Waiting(true)),
        Case::new(
            "signals: more client payload while a request waits is the same request",
            Ingress,
            ack4.bytes(),
        )
        .flow(TCP4, c4, waiting)
        .expect(XDP_PASS, tr, Some(ack4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, hit_in(s))
        .flow_after(TCP4, c4, FlowAfter::Waiting(true)),
        Case::new(
            "signals: a bare ACK from the client starts no request",
            Ingress,
            Frame::tcp(c4, vip4, ACK).with_payload(b"").bytes(),
        )
        .flow(TCP4, c4, stable_established)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, st(TCP4), ACK).with_payload(b"").bytes()),
        )
        .stats(TCP4, hit_in(s))
        .flow_after(TCP4, c4, FlowAfter::Waiting(false)),
        Case::new(
            "signals: a new flow's SYN starts the connect timer",
            Ingress,
            syn4.bytes(),
        )
        .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, new_in(s))
        .flow_after(TCP4, c4, FlowAfter::SynPending(true)),
        Case::new(
            "signals: a SYN again before the backend answered is a retransmit",
            Ingress,
            syn4.bytes(),
        )
        .half_open(TCP4, c4, syn_sent)
        .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, hit_in(s))
        .signals(
            TCP4,
            SignalsDelta {
                version: s,
                syn_retransmits: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::SynPending(true)),
        Case::new(
            "signals: the backend's SYN-ACK takes the connect time",
            Egress,
            Frame::tcp(st(TCP4), c4, SYN | ACK).bytes(),
        )
        .half_open(TCP4, c4, syn_sent)
        .expect(TC_ACT_OK, tr, Some(Frame::tcp(vip4, c4, SYN | ACK).bytes()))
        .stats(TCP4, out(s))
        .signals(
            TCP4,
            SignalsDelta {
                version: s,
                connect: Some(AGO_RANGE),
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::SynPending(false)),
        Case::new(
            "signals: a backend RST answering the SYN is a refused connection",
            Egress,
            Frame::tcp(st(TCP4), c4, RST | ACK)
                .with_payload(b"")
                .bytes(),
        )
        .half_open(TCP4, c4, syn_sent)
        .expect(
            TC_ACT_OK,
            tr,
            Some(Frame::tcp(vip4, c4, RST | ACK).with_payload(b"").bytes()),
        )
        .stats(TCP4, out(s))
        .signals(
            TCP4,
            SignalsDelta {
                version: s,
                refused: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Absent),
        Case::new(
            "signals: reply payload with no request waiting counts nothing",
            Egress,
            reply_frames(c4, vip4, b"HTTP/1.1 200 OK\r\n\r\n").0,
        )
        .flow(TCP4, c4, stable_established)
        .expect(
            TC_ACT_OK,
            tr,
            Some(reply_frames(c4, vip4, b"HTTP/1.1 200 OK\r\n\r\n").1),
        )
        .stats(TCP4, out(s)),
    ];
    // Latency sampling above the floor rate (canary_common::signals::
    // Sampler): the sampler is preset as a busy CPU would have left it.
    let busy = |starts, shift| Sampler {
        window_start_ns: JUST_NOW,
        starts,
        shift,
    };
    let unchanged = |starts, shift| Sampler {
        window_start_ns: 0,
        starts,
        shift,
    };
    // 300 starts in a window that began at boot (long past) close it: the
    // next times one in 8 (37 of 300, at least TIMED_PER_WINDOW's 32).
    let window_passed = Sampler {
        window_start_ns: 0,
        starts: 299,
        shift: 0,
    };
    for (name, before, after, flow_after) in [
        (
            "signals sampling: a request start between samples is counted, not timed",
            busy(0, 3),
            unchanged(1, 3),
            FlowAfter::Untimed,
        ),
        (
            "signals sampling: every 2^shift-th request start is timed",
            busy(7, 3),
            unchanged(8, 3),
            FlowAfter::Waiting(true),
        ),
        (
            "signals sampling: a timed start after the window closes it and sets the next shift",
            window_passed,
            busy(0, 3),
            FlowAfter::Waiting(true),
        ),
    ] {
        cases.push(
            Case::new(name, Ingress, ack4.bytes())
                .flow(TCP4, c4, stable_established)
                .sampler(TCP4, s, before, after)
                .expect(XDP_PASS, tr, Some(ack4.with_dst(st(TCP4)).bytes()))
                .stats(TCP4, hit_in(s))
                .signals(TCP4, request(s))
                .flow_after(TCP4, c4, flow_after),
        );
    }
    cases.push(
        Case::new(
            "signals sampling: an untimed request's response is counted and classified, no latency",
            Egress,
            reply_frames(c4, vip4, b"HTTP/1.1 503 Busy\r\n\r\n").0,
        )
        .flow(
            TCP4,
            c4,
            FlowEntry {
                request_ns: UNTIMED,
                ..stable_established
            },
        )
        .expect(
            TC_ACT_OK,
            tr,
            Some(reply_frames(c4, vip4, b"HTTP/1.1 503 Busy\r\n\r\n").1),
        )
        .stats(TCP4, out(s))
        .signals(
            TCP4,
            SignalsDelta {
                latency: None,
                ..response(s, 4)
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Waiting(false)),
    );
    // The failsafe: canaryd's heartbeat is stale, so a new flow the weight
    // (100 %) would send to the canary goes to stable, counted there; with
    // hold it goes to the canary.
    cases.push(
        Case::new(
            "failsafe revert: a stale heartbeat sends a new flow to stable",
            Ingress,
            syn4.bytes(),
        )
        .weight(Weight::FULL)
        .setup(stale_heartbeat_revert)
        .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, new_in(s))
        .signals(
            TCP4,
            SignalsDelta {
                version: s,
                failsafe_flows: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::HalfOpen(s)),
    );
    cases.push(
        Case::new(
            "failsafe hold: a stale heartbeat changes nothing",
            Ingress,
            syn4.bytes(),
        )
        .weight(Weight::FULL)
        .setup(stale_heartbeat_hold)
        .expect(XDP_PASS, tr, Some(syn4.with_dst(ca(TCP4)).bytes()))
        .stats(TCP4, new_in(VERSION_CANARY))
        .flow_after(TCP4, c4, FlowAfter::HalfOpen(VERSION_CANARY)),
    );
    // The first reply payload after a request: its latency and class.
    for (name, payload, class) in [
        (
            "signals: 1xx response",
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            0,
        ),
        (
            "signals: 2xx response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            1,
        ),
        (
            "signals: 3xx response (HTTP/1.0)",
            b"HTTP/1.0 302 Found\r\n\r\n",
            2,
        ),
        (
            "signals: 4xx response",
            b"HTTP/1.1 404 Not Found\r\n\r\n",
            3,
        ),
        (
            "signals: 5xx response",
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
            4,
        ),
        (
            "signals: a status line cut off in the first packet is other",
            b"HTTP/1.1 5",
            HTTP_OTHER,
        ),
        (
            "signals: a non-HTTP reply is other",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            HTTP_OTHER,
        ),
        (
            "signals: HTTP/2 is not misread as a status line",
            b"HTTP/2 200 \r\n\r\n\r\n",
            HTTP_OTHER,
        ),
    ] {
        let (from, to) = reply_frames(c4, vip4, payload);
        cases.push(
            Case::new(name, Egress, from)
                .flow(TCP4, c4, waiting)
                .expect(TC_ACT_OK, tr, Some(to))
                .stats(TCP4, out(s))
                .signals(TCP4, response(s, class))
                .flow_after(TCP4, c4, FlowAfter::Waiting(false)),
        );
    }
    // The canary's established entry answers too, on its own version.
    let (from, to) = {
        let mut f = Frame::tcp(ca(TCP4), c4, ACK | PSH);
        f.payload = b"HTTP/1.1 500 Internal Server Error\r\n\r\n".to_vec();
        let mut t = Frame::tcp(vip4, c4, ACK | PSH);
        t.payload = f.payload.clone();
        (f.bytes(), t.bytes())
    };
    cases.push(
        Case::new("signals: a canary 5xx counts for the canary", Egress, from)
            .flow(
                TCP4,
                c4,
                FlowEntry {
                    request_ns: STARTED_AGO,
                    ..established
                },
            )
            .expect(TC_ACT_OK, tr, Some(to))
            .stats(TCP4, out(VERSION_CANARY))
            .signals(TCP4, response(VERSION_CANARY, 4)),
    );
    cases
}

/// SETTINGS with a heartbeat from boot time and a 1 ns timeout: stale.
fn stale_heartbeat(dp: &mut Dataplane, failsafe: u32) {
    let settings = &mut dp.maps_mut().settings;
    let mut s = settings.get(&0, 0).unwrap();
    s.heartbeat_ns = 1;
    s.failsafe_timeout_ns = 1;
    s.failsafe = failsafe;
    settings.set(0, s, 0).unwrap();
}

fn stale_heartbeat_revert(dp: &mut Dataplane) {
    stale_heartbeat(dp, canary_common::FAILSAFE_REVERT);
}

fn stale_heartbeat_hold(dp: &mut Dataplane) {
    stale_heartbeat(dp, canary_common::FAILSAFE_HOLD);
}
