//! End to end with ingress at TC (`hook = "tc"`): the same namespaces and
//! backends as e2e.rs, the host's client-facing veth running
//! `canary_ingress_tc` at tcx ingress instead of XDP.
//!
//! Two checksum states reach the program. Sockets in the client namespace
//! send CHECKSUM_PARTIAL skbs over the veth (the L4 checksum field holds
//! only the pseudo-header sum, which nobody on a veth path verifies), so
//! the TCP scenario shows the split and the flow table work; frames sent
//! whole from an AF_PACKET socket arrive with CHECKSUM_NONE and a full
//! checksum, which the backend's UDP stack verifies before it answers: a
//! wrong rewrite of the checksum would get no answer.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use canary_common::verdict;
use canary_userspace::{Affinity, Hook, LoadOptions, Protocol, model::weight::Weight};
use tests::{
    bp,
    harness::{CANARY, Family, Harness, STABLE},
    packet::Frame,
    raw::RawSender,
    servers::Behaviour,
};
use xtask::topology::{BackendKind, CLIENT_IF, CLIENT_V4, CLIENT_V6, HOST_IF};

const MATRIX: [(BackendKind, Family); 4] = [
    (BackendKind::LocalProcess, Family::V4),
    (BackendKind::LocalProcess, Family::V6),
    (BackendKind::Namespace, Family::V4),
    (BackendKind::Namespace, Family::V6),
];

fn harness(kind: BackendKind, family: Family, protocol: Protocol, weight: Weight) -> Harness {
    let behaviour = match protocol {
        Protocol::Tcp => [Behaviour::Line, Behaviour::Line],
        Protocol::Udp => [Behaviour::UdpEcho, Behaviour::UdpEcho],
    };
    Harness::with_hook(
        kind,
        family,
        Affinity::Flow,
        weight,
        protocol,
        behaviour,
        &LoadOptions::default(),
        Hook::Tc,
    )
    .unwrap()
}

#[test]
fn tcp_at_tc_ingress_splits_by_weight_and_keeps_each_connection() {
    let _serial = tests::root_scenario();
    const CONNECTIONS: u32 = 400;
    const REQUESTS: usize = 3;
    for (kind, family) in MATRIX {
        let h = harness(kind, family, Protocol::Tcp, bp(2000));
        let mut canary = 0u32;
        for i in 0..CONNECTIONS {
            let fail = |e: anyhow::Error| -> ! {
                panic!(
                    "{kind:?} {family:?} connection {i}: {e:#}\n{}",
                    h.diagnostics()
                )
            };
            let mut c = h.connect(None).unwrap_or_else(|e| fail(e));
            let from = c.local_addr().unwrap_or_else(|e| fail(e));
            let answers: Vec<String> = (0..REQUESTS)
                .map(|_| c.request().unwrap_or_else(|e| fail(e)))
                .collect();
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "{kind:?} {family:?}: connection {i} moved: {answers:?}"
            );
            // Each connection lands where the shared hash says (exact; the
            // share below is only a binomial sample of random ports).
            let want = if h.hash_says_canary(from, bp(2000)) {
                CANARY
            } else {
                STABLE
            };
            assert_eq!(
                answers[0], want,
                "{kind:?} {family:?}: connection {i} from {from}: the hash says {want}"
            );
            canary += (answers[0] == CANARY) as u32;
        }
        let share = canary as f64 * 100.0 / CONNECTIONS as f64;
        println!(
            "{kind:?} {family:?} at tc ingress: weight 20%, {CONNECTIONS} connections of \
             {REQUESTS} requests, canary share {share:.2}%"
        );
        // 400 connections at 20 %: sd 2 points; 8..32 % is 6 sd each side,
        // so only a split that ignores the weight falls outside it.
        assert!(
            (8.0..=32.0).contains(&share),
            "{kind:?} {family:?}: canary share {share:.2}% at weight 20%"
        );
        h.assert_connections_counted(
            &format!("{kind:?} {family:?} at tc ingress"),
            CONNECTIONS.into(),
            canary.into(),
        );
        let v = h.dp.verdicts().unwrap();
        assert!(
            v.ingress[verdict::TRANSLATED as usize] >= (CONNECTIONS as usize * REQUESTS) as u64,
            "{kind:?} {family:?}: {v:?}"
        );
    }
}

/// A client socket at the client namespace's own address, for answers to
/// datagrams sent raw from that address and port.
fn raw_client(h: &Harness, family: Family) -> (UdpSocket, SocketAddr) {
    let ip: IpAddr = match family {
        Family::V4 => CLIENT_V4.into(),
        Family::V6 => CLIENT_V6.into(),
    };
    let socket = h
        .topo
        .client
        .enter(|| UdpSocket::bind((ip, 0)))
        .unwrap()
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[test]
fn udp_frames_with_full_checksums_are_answered_through_tc_ingress() {
    let _serial = tests::root_scenario();
    const DATAGRAMS: usize = 20;
    for (kind, family) in MATRIX {
        let h = harness(kind, family, Protocol::Udp, bp(5000));
        let mut raw = RawSender::open(&h.topo.client, CLIENT_IF, &h.topo.host, HOST_IF).unwrap();
        // IPv4 UDP may go without a checksum (0): it must stay 0, and be
        // answered too.
        let variants: &[bool] = match family {
            Family::V4 => &[false, true],
            Family::V6 => &[false],
        };
        for &no_checksum in variants {
            let mut answered = 0;
            let mut labels = vec![];
            // A fresh socket (port) per datagram: each a new flow.
            for i in 0..DATAGRAMS {
                let (socket, client) = raw_client(&h, family);
                let frame = Frame {
                    udp_no_checksum: no_checksum,
                    ..Frame::udp(client, h.vip).with_payload(format!("req {i}").as_bytes())
                };
                // The first datagram of a flow may wait for neighbour
                // resolution of the client; one resend covers it.
                let mut buf = [0u8; 1500];
                let mut got = None;
                for _attempt in 0..2 {
                    raw.send(&frame.bytes()).unwrap();
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        assert_eq!(from, h.vip, "{kind:?} {family:?}: answer from {from}");
                        got = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                        break;
                    }
                }
                if let Some(label) = got {
                    answered += 1;
                    labels.push(label);
                }
            }
            println!(
                "{kind:?} {family:?} at tc ingress, raw UDP (checksum {}): {answered} of \
                 {DATAGRAMS} answered, {} by canary",
                if no_checksum { "0" } else { "full" },
                labels.iter().filter(|l| *l == CANARY).count()
            );
            assert_eq!(
                answered,
                DATAGRAMS,
                "{kind:?} {family:?} (no checksum: {no_checksum}): a datagram went unanswered \
                 (a wrong checksum is dropped by the backend's stack)\n{}",
                h.diagnostics()
            );
            assert!(
                labels.iter().all(|l| l == STABLE || l == CANARY),
                "{labels:?}"
            );
        }
    }
}
