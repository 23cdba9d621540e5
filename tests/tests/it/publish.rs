//! A reload that changes a live service's backends publishes the new set so
//! that a new flow sees the old set or the new one, never a mix: the new set
//! is staged in the bank of BACKENDS the data path does not read, then the
//! SERVICES record switches banks in one map write.
//!
//! Checked with BPF_PROG_TEST_RUN on the ingress program: while a set is
//! staged, new flows still spread over the whole old set and never reach a
//! staged backend; once published, only the new set. Writing the slots in
//! place (as before banks) fails the first half: a staged backend would
//! appear while the record still counts the old set.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use canary_common::names::INGRESS_PROGRAM;
use canary_userspace::{Affinity, Dataplane, LoadOptions, Protocol, ServiceSpec};
use tests::{
    XDP_PASS, bp,
    packet::{ACK, Frame, SYN},
};

const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 80);
const NEW_FLOWS: u16 = 300;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn spec(stable: &[&str], canary: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: "model".into(),
        vip: VIP,
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: stable.iter().map(|s| sa(s)).collect(),
        canary: canary.iter().map(|s| sa(s)).collect(),
        weight: bp(5000),
    }
}

fn backends(s: &ServiceSpec) -> BTreeSet<SocketAddr> {
    s.stable.iter().chain(&s.canary).copied().collect()
}

/// Runs one frame through ingress; the destination it left with.
fn ingress(dp: &mut Dataplane, frame: &Frame) -> SocketAddr {
    let input = frame.bytes();
    let mut out = vec![0u8; input.len()];
    let prog: &mut Xdp = dp
        .ebpf_mut()
        .program_mut(INGRESS_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.return_value, XDP_PASS);
    // Ethernet 14, IPv4 without options 20: destination at 30, port at 36.
    let ip = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    SocketAddr::new(ip.into(), u16::from_be_bytes([out[36], out[37]]))
}

/// Backends that `NEW_FLOWS` new connections from ports `first..` to `vip`
/// reach.
fn new_flows_to(dp: &mut Dataplane, vip: SocketAddr, first: u16) -> BTreeSet<SocketAddr> {
    (first..first + NEW_FLOWS)
        .map(|port| {
            let client = SocketAddr::new("198.18.0.100".parse().unwrap(), port);
            ingress(dp, &Frame::tcp(client, vip, SYN))
        })
        .collect()
}

fn new_flows_reach(dp: &mut Dataplane, first: u16) -> BTreeSet<SocketAddr> {
    new_flows_to(dp, VIP, first)
}

#[test]
fn a_staged_backend_set_is_invisible_until_published_in_one_write() {
    let _serial = tests::root_scenario();
    let mut dp = Dataplane::load(&LoadOptions::default()).unwrap();
    let old = spec(
        &["198.18.1.1:8081", "198.18.1.2:8081"],
        &["198.18.1.3:8081"],
    );
    let new = spec(
        &["198.18.2.1:9091"],
        &["198.18.2.2:9091", "198.18.2.3:9091", "198.18.2.4:9091"],
    );
    dp.upsert_service(&old).unwrap();
    assert_eq!(new_flows_reach(&mut dp, 10_000), backends(&old));
    let established = SocketAddr::new("198.18.0.100".parse().unwrap(), 10_000);
    let first_backend = ingress(&mut dp, &Frame::tcp(established, sa("198.18.0.1:80"), ACK));

    // Both directions, so both banks serve as the live one once.
    for (from, to, ports) in [(&old, &new, 20_000), (&new, &old, 40_000)] {
        let staged = dp.stage(to).unwrap();
        assert_eq!(
            new_flows_reach(&mut dp, ports),
            backends(from),
            "while staged, new flows must use exactly the live set"
        );
        dp.publish(staged).unwrap();
        assert_eq!(
            new_flows_reach(&mut dp, ports + 10_000),
            backends(to),
            "once published, new flows must use exactly the new set"
        );
    }
    // An established flow never moved.
    assert_eq!(
        ingress(&mut dp, &Frame::tcp(established, sa("198.18.0.1:80"), ACK)),
        first_backend
    );
}

/// In one reload service a moves to b's VIP and b to a third one: each
/// publish may only retire records that are its own, so both end up served
/// (a removal of b's old record must not take a's new one with it).
#[test]
fn services_trading_vips_in_one_reload_both_stay_served() {
    let _serial = tests::root_scenario();
    let mut dp = Dataplane::load(&LoadOptions::default()).unwrap();
    let svc = |name: &str, vip: &str, stable: &str, canary: &str| ServiceSpec {
        name: name.into(),
        vip: sa(vip),
        stable: vec![sa(stable)],
        canary: vec![sa(canary)],
        ..spec(&[], &[])
    };
    let a = svc("a", "198.18.0.1:80", "198.18.1.1:81", "198.18.1.2:81");
    let b = svc("b", "198.18.0.2:80", "198.18.1.3:81", "198.18.1.4:81");
    dp.upsert_service(&a).unwrap();
    dp.upsert_service(&b).unwrap();
    // What Daemon::reload does for a config that moves a to .2 and b to .3.
    let a2 = ServiceSpec {
        vip: sa("198.18.0.2:80"),
        ..a.clone()
    };
    let b3 = ServiceSpec {
        vip: sa("198.18.0.3:80"),
        ..b.clone()
    };
    dp.upsert_service(&a2).unwrap();
    dp.upsert_service(&b3).unwrap();
    assert_eq!(new_flows_to(&mut dp, a2.vip, 10_000), backends(&a2));
    assert_eq!(new_flows_to(&mut dp, b3.vip, 20_000), backends(&b3));
    // And the same once more the other way round, through the other banks.
    dp.upsert_service(&b).unwrap();
    dp.upsert_service(&a).unwrap();
    assert_eq!(new_flows_to(&mut dp, a.vip, 30_000), backends(&a));
    assert_eq!(new_flows_to(&mut dp, b.vip, 40_000), backends(&b));
}
