//! Golden packet fixtures: each case loads a fresh data path, fills its maps,
//! runs one frame through XDP ingress or TC egress with BPF_PROG_TEST_RUN,
//! and checks the verdict, the output bytes and the counters. Cases share no
//! state, so their order does not matter.
//!
//! Expected frames are built independently by `tests::packet`, with full
//! checksums computed by `tests::checksum`: a byte match proves the data
//! path's incremental checksum updates.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use canary_common::{
    FIN_ACKED, FIN_SEEN, FlowEntry, FlowKey, VERSION_CANARY, VERSION_STABLE, VersionStats,
    hash::{backend_index, client_hash, flow_hash, is_canary, seed_from_name},
    names::{EGRESS_PROGRAM, INGRESS_PROGRAM},
    verdict,
};
use canary_userspace::{
    Affinity, Dataplane, LoadOptions, Protocol, ServiceSpec,
    service::{addr_words, endpoint},
};
use tests::{
    packet::{ACK, FIN, Frame, ICMP, ICMPV6, PSH, RST, SYN, arp, hex},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// The fixture services. Names double as service names in the data path.
const TCP4: &str = "tcp4";
const UDP4: &str = "udp4";
const TCP6: &str = "tcp6";
const UDP6: &str = "udp6";
const STICKY4: &str = "sticky4";
const STICKY6: &str = "sticky6";
const LOCAL4: &str = "local4";

fn services(weight_bp: u16) -> Vec<ServiceSpec> {
    let svc = |name: &str, vip: &str, protocol, affinity, stable: &str, canary: &str| ServiceSpec {
        name: name.into(),
        vip: sa(vip),
        protocol,
        affinity,
        stable: vec![sa(stable)],
        canary: vec![sa(canary)],
        weight_bp,
    };
    use Affinity::*;
    use Protocol::*;
    vec![
        svc(
            TCP4,
            "198.18.0.1:80",
            Tcp,
            Flow,
            "198.18.1.2:8080",
            "198.18.2.2:8080",
        ),
        svc(
            UDP4,
            "198.18.0.1:53",
            Udp,
            Flow,
            "198.18.1.2:5353",
            "198.18.2.2:5353",
        ),
        svc(
            TCP6,
            "[2001:db8::1]:80",
            Tcp,
            Flow,
            "[2001:db8:1::2]:8080",
            "[2001:db8:2::2]:8080",
        ),
        svc(
            UDP6,
            "[2001:db8::1]:53",
            Udp,
            Flow,
            "[2001:db8:1::2]:5353",
            "[2001:db8:2::2]:5353",
        ),
        svc(
            STICKY4,
            "198.18.0.1:81",
            Tcp,
            Client,
            "198.18.1.2:8081",
            "198.18.2.2:8081",
        ),
        svc(
            STICKY6,
            "[2001:db8::1]:81",
            Tcp,
            Client,
            "[2001:db8:1::2]:8081",
            "[2001:db8:2::2]:8081",
        ),
        svc(
            LOCAL4,
            "198.18.0.1:90",
            Tcp,
            Flow,
            "198.18.0.1:8081",
            "198.18.0.1:8082",
        ),
    ]
}

fn spec(name: &str) -> ServiceSpec {
    services(0).into_iter().find(|s| s.name == name).unwrap()
}

/// Backend `version` of a fixture service (each version has one backend).
fn backend_of(name: &str, version: u8) -> SocketAddr {
    let s = spec(name);
    if version == VERSION_CANARY {
        s.canary[0]
    } else {
        s.stable[0]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prog {
    Ingress,
    Egress,
}

/// What the flow table must hold for the case's flow afterwards.
#[derive(Clone, Copy, Debug)]
enum FlowAfter {
    Absent,
    Version(u8),
    /// Present, with these (client_fin, backend_fin) markers.
    Fins(u8, u8),
}

/// What the case expects in the per-version counters of its service.
#[derive(Clone, Copy, Debug, Default)]
struct StatsDelta {
    version: u8,
    packets_in: u64,
    packets_out: u64,
    new_flows: u64,
    rehashes: u64,
    closed_flows: u64,
}

struct Case {
    name: &'static str,
    prog: Prog,
    weight_bp: u16,
    /// Flow entries written before the run: (service, client, entry).
    flows: Vec<(&'static str, SocketAddr, FlowEntry)>,
    /// Extra map setup (e.g. a service without backends).
    raw_setup: Option<fn(&mut Dataplane)>,
    input: Vec<u8>,
    verdict: u32,
    /// `None`: output must equal input.
    output: Option<Vec<u8>>,
    counter: u32,
    /// Service whose counters are checked, and the expected values.
    stats: Option<(&'static str, StatsDelta)>,
    /// (service, client) of the flow to look up afterwards.
    flow_after: Option<(&'static str, SocketAddr, FlowAfter)>,
}

impl Case {
    fn new(name: &'static str, prog: Prog, input: Vec<u8>) -> Case {
        Case {
            name,
            prog,
            weight_bp: 0,
            flows: vec![],
            raw_setup: None,
            input,
            verdict: if prog == Prog::Ingress {
                XDP_PASS
            } else {
                TC_ACT_OK
            },
            output: None,
            counter: verdict::PASS_NOT_SERVICE,
            stats: None,
            flow_after: None,
        }
    }
    fn weight(mut self, w: u16) -> Self {
        self.weight_bp = w;
        self
    }
    fn flow(mut self, service: &'static str, client: SocketAddr, e: FlowEntry) -> Self {
        self.flows.push((service, client, e));
        self
    }
    fn expect(mut self, verdict: u32, counter: u32, output: Option<Vec<u8>>) -> Self {
        self.verdict = verdict;
        self.counter = counter;
        self.output = output;
        self
    }
    fn stats(mut self, service: &'static str, d: StatsDelta) -> Self {
        self.stats = Some((service, d));
        self
    }
    fn flow_after(mut self, service: &'static str, client: SocketAddr, f: FlowAfter) -> Self {
        self.flow_after = Some((service, client, f));
        self
    }
}

fn flow_key(service: &str, client: SocketAddr) -> FlowKey {
    spec(service).flow_key(client)
}

fn entry(service: &str, version: u8) -> FlowEntry {
    let b = canary_userspace::service::backend(backend_of(service, version));
    FlowEntry {
        backend: b.addr,
        backend_port: b.port,
        version,
        ..FlowEntry::default()
    }
}

/// Monotonic clock, the one bpf_ktime_get_ns reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Version the data path must choose for a new flow at `weight_bp`, from the
/// shared hash (whose properties are unit-tested in canary-common).
fn expected_version(service: &str, client: SocketAddr, weight_bp: u16) -> u8 {
    let s = spec(service);
    let seed = seed_from_name(s.name.as_bytes());
    let (c, _) = addr_words(client.ip());
    let (v, _) = addr_words(s.vip.ip());
    let h = match s.affinity {
        Affinity::Client => client_hash(seed, &c),
        Affinity::Flow => flow_hash(
            seed,
            &c,
            &v,
            client.port().to_be(),
            s.vip.port().to_be(),
            s.protocol.number(),
        ),
    };
    // One backend per version here, so backend_index is always 0.
    assert_eq!(backend_index(h, 1), 0);
    if is_canary(h, weight_bp) {
        VERSION_CANARY
    } else {
        VERSION_STABLE
    }
}

/// A client port of `client_ip` whose new flow lands on `want` at `weight_bp`.
fn port_for(service: &str, client_ip: &str, weight_bp: u16, want: u8) -> SocketAddr {
    (40000u16..)
        .map(|p| SocketAddr::new(ip(client_ip), p))
        .find(|c| expected_version(service, *c, weight_bp) == want)
        .unwrap()
}

fn cases() -> Vec<Case> {
    use Prog::*;
    let c4 = sa("198.18.0.2:40000");
    let c6 = sa("[2001:db8::2]:40000");
    let vip4 = sa("198.18.0.1:80");
    let vip6 = sa("[2001:db8::1]:80");
    let dns4 = sa("198.18.0.1:53");
    let dns6 = sa("[2001:db8::1]:53");
    let st = |n| backend_of(n, VERSION_STABLE);
    let ca = |n| backend_of(n, VERSION_CANARY);
    let syn4 = Frame::tcp(c4, vip4, SYN);
    let syn6 = Frame::tcp(c6, vip6, SYN);
    let ack4 = Frame::tcp(c4, vip4, ACK | PSH);
    let udp4 = Frame::udp(c4, dns4);
    let udp6 = Frame::udp(c6, dns6);
    let new_in = |version| StatsDelta {
        version,
        packets_in: 1,
        new_flows: 1,
        ..Default::default()
    };
    let hit_in = |version| StatsDelta {
        version,
        packets_in: 1,
        ..Default::default()
    };
    let out = |version| StatsDelta {
        version,
        packets_out: 1,
        ..Default::default()
    };
    let tr = verdict::TRANSLATED;
    let (s, c) = (VERSION_STABLE, VERSION_CANARY);
    let mid = port_for(TCP4, "198.18.0.2", 5000, c);
    let mid_st = port_for(TCP4, "198.18.0.2", 5000, s);
    let sticky_ver = expected_version(STICKY4, sa("198.18.0.2:1"), 5000);
    let sticky6_ver = expected_version(STICKY6, sa("[2001:db8::2]:1"), 5000);
    let now = monotonic_ns();
    let mut established = entry(TCP4, c);
    established.established = 1;

    let mut v: Vec<Case> = vec![
        // --- IPv4 TCP: weights and the flow table -------------------------
        Case::new("v4 tcp SYN, weight 0 -> stable", Ingress, syn4.bytes())
            .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
            .stats(TCP4, new_in(s))
            .flow_after(TCP4, c4, FlowAfter::Version(s)),
        Case::new("v4 tcp SYN, weight 10000 -> canary", Ingress, syn4.bytes())
            .weight(10000)
            .expect(XDP_PASS, tr, Some(syn4.with_dst(ca(TCP4)).bytes()))
            .stats(TCP4, new_in(c))
            .flow_after(TCP4, c4, FlowAfter::Version(c)),
        Case::new(
            "v4 tcp SYN, weight 5000, port hashing to canary",
            Ingress,
            Frame::tcp(mid, vip4, SYN).bytes(),
        )
        .weight(5000)
        .expect(XDP_PASS, tr, Some(Frame::tcp(mid, ca(TCP4), SYN).bytes()))
        .stats(TCP4, new_in(c)),
        Case::new(
            "v4 tcp SYN, weight 5000, port hashing to stable",
            Ingress,
            Frame::tcp(mid_st, vip4, SYN).bytes(),
        )
        .weight(5000)
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(mid_st, st(TCP4), SYN).bytes()),
        )
        .stats(TCP4, new_in(s)),
        Case::new(
            "v4 tcp established, table says canary at weight 0",
            Ingress,
            ack4.bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(XDP_PASS, tr, Some(ack4.with_dst(ca(TCP4)).bytes()))
        .stats(TCP4, hit_in(c))
        .flow_after(TCP4, c4, FlowAfter::Version(c)),
        Case::new(
            "v4 tcp mid-stream without entry is a rehash",
            Ingress,
            ack4.bytes(),
        )
        .expect(XDP_PASS, tr, Some(ack4.with_dst(st(TCP4)).bytes()))
        .stats(
            TCP4,
            StatsDelta {
                version: s,
                packets_in: 1,
                rehashes: 1,
                ..Default::default()
            },
        )
        .flow_after(TCP4, c4, FlowAfter::Version(s)),
        Case::new(
            "v4 tcp SYN retransmit follows its entry",
            Ingress,
            syn4.bytes(),
        )
        .flow(TCP4, c4, entry(TCP4, c))
        .expect(XDP_PASS, tr, Some(syn4.with_dst(ca(TCP4)).bytes()))
        .stats(TCP4, hit_in(c)),
        Case::new(
            "v4 tcp SYN on a completed tuple is decided again",
            Ingress,
            syn4.bytes(),
        )
        .flow(TCP4, c4, established)
        .expect(XDP_PASS, tr, Some(syn4.with_dst(st(TCP4)).bytes()))
        .stats(TCP4, new_in(s))
        .flow_after(TCP4, c4, FlowAfter::Version(s)),
        Case::new(
            "v4 tcp client RST releases the entry",
            Ingress,
            Frame::tcp(c4, vip4, RST | ACK).bytes(),
        )
        .flow(TCP4, c4, established)
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
        .flow_after(TCP4, c4, FlowAfter::Absent),
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
        .flow_after(TCP4, c4, FlowAfter::Fins(1, 0)),
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
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN, FIN_SEEN | FIN_ACKED)),
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
        .flow_after(TCP4, c4, FlowAfter::Fins(FIN_SEEN | FIN_ACKED, FIN_SEEN)),
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
        .flow_after(TCP4, c4, FlowAfter::Absent),
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
        .flow_after(TCP4, c4, FlowAfter::Fins(1, 0)),
        // --- IPv4 UDP -----------------------------------------------------
        Case::new("v4 udp, weight 0 -> stable", Ingress, udp4.bytes())
            .expect(XDP_PASS, tr, Some(udp4.with_dst(st(UDP4)).bytes()))
            .stats(UDP4, new_in(s))
            .flow_after(UDP4, c4, FlowAfter::Version(s)),
        Case::new("v4 udp, weight 10000 -> canary", Ingress, udp4.bytes())
            .weight(10000)
            .expect(XDP_PASS, tr, Some(udp4.with_dst(ca(UDP4)).bytes()))
            .stats(UDP4, new_in(c)),
        Case::new(
            "v4 udp without checksum keeps checksum 0",
            Ingress,
            Frame {
                udp_no_checksum: true,
                ..udp4.clone()
            }
            .bytes(),
        )
        .expect(
            XDP_PASS,
            tr,
            Some(
                Frame {
                    udp_no_checksum: true,
                    ..udp4.with_dst(st(UDP4))
                }
                .bytes(),
            ),
        )
        .stats(UDP4, new_in(s)),
        Case::new("v4 udp recent entry is followed", Ingress, udp4.bytes())
            .flow(
                UDP4,
                c4,
                FlowEntry {
                    last_seen_ns: now,
                    ..entry(UDP4, c)
                },
            )
            .expect(XDP_PASS, tr, Some(udp4.with_dst(ca(UDP4)).bytes()))
            .stats(UDP4, hit_in(c)),
        Case::new(
            "v4 udp entry idle past the timeout is decided again",
            Ingress,
            udp4.bytes(),
        )
        .flow(
            UDP4,
            c4,
            FlowEntry {
                last_seen_ns: now.saturating_sub(3_600_000_000_000),
                ..entry(UDP4, c)
            },
        )
        .expect(XDP_PASS, tr, Some(udp4.with_dst(st(UDP4)).bytes()))
        .stats(UDP4, new_in(s))
        .flow_after(UDP4, c4, FlowAfter::Version(s)),
        // --- IPv6 ---------------------------------------------------------
        Case::new("v6 tcp SYN, weight 0 -> stable", Ingress, syn6.bytes())
            .expect(XDP_PASS, tr, Some(syn6.with_dst(st(TCP6)).bytes()))
            .stats(TCP6, new_in(s)),
        Case::new("v6 tcp SYN, weight 10000 -> canary", Ingress, syn6.bytes())
            .weight(10000)
            .expect(XDP_PASS, tr, Some(syn6.with_dst(ca(TCP6)).bytes()))
            .stats(TCP6, new_in(c))
            .flow_after(TCP6, c6, FlowAfter::Version(c)),
        Case::new(
            "v6 tcp established follows the table",
            Ingress,
            Frame::tcp(c6, vip6, ACK).bytes(),
        )
        .weight(10000)
        .flow(
            TCP6,
            c6,
            FlowEntry {
                established: 1,
                ..entry(TCP6, s)
            },
        )
        .expect(XDP_PASS, tr, Some(Frame::tcp(c6, st(TCP6), ACK).bytes()))
        .stats(TCP6, hit_in(s)),
        Case::new(
            "v6 tcp mid-stream without entry is a rehash",
            Ingress,
            Frame::tcp(c6, vip6, ACK).bytes(),
        )
        .weight(10000)
        .expect(XDP_PASS, tr, Some(Frame::tcp(c6, ca(TCP6), ACK).bytes()))
        .stats(
            TCP6,
            StatsDelta {
                version: c,
                packets_in: 1,
                rehashes: 1,
                ..Default::default()
            },
        ),
        Case::new("v6 udp, weight 0 -> stable", Ingress, udp6.bytes())
            .expect(XDP_PASS, tr, Some(udp6.with_dst(st(UDP6)).bytes()))
            .stats(UDP6, new_in(s)),
        Case::new("v6 udp, weight 10000 -> canary", Ingress, udp6.bytes())
            .weight(10000)
            .expect(XDP_PASS, tr, Some(udp6.with_dst(ca(UDP6)).bytes()))
            .stats(UDP6, new_in(c)),
        // --- client affinity -----------------------------------------------
        Case::new(
            "v4 client affinity, port 1000",
            Ingress,
            Frame::tcp(sa("198.18.0.2:1000"), sa("198.18.0.1:81"), SYN).bytes(),
        )
        .weight(5000)
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
        .weight(5000)
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
        .weight(5000)
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
        Case::new(
            "v4 local-process backend: port rewrite only",
            Ingress,
            Frame::tcp(c4, sa("198.18.0.1:90"), SYN).bytes(),
        )
        .expect(
            XDP_PASS,
            tr,
            Some(Frame::tcp(c4, sa("198.18.0.1:8081"), SYN).bytes()),
        )
        .stats(LOCAL4, new_in(s)),
        // --- not for a service: untouched ---------------------------------
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
        // --- truncation at every header boundary --------------------------
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
        // --- odd but handled, or dropped ----------------------------------
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
            "first IPv4 fragment to a VIP is dropped",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..syn4.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_FRAGMENT, None),
        Case::new(
            "later IPv4 fragment to a VIP is dropped",
            Ingress,
            Frame {
                ipv4_frag: 0x00b9,
                ..udp4.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_FRAGMENT, None),
        Case::new(
            "IPv4 fragment to another address passes",
            Ingress,
            Frame {
                ipv4_frag: 0x2000,
                ..Frame::udp(c4, sa("198.18.9.9:53"))
            }
            .bytes(),
        ),
        Case::new(
            "IPv6 hop-by-hop header to a VIP is dropped",
            Ingress,
            Frame {
                ipv6_ext: Some(0),
                ..syn6.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_IPV6_EXTENSION, None),
        Case::new(
            "IPv6 destination options to a VIP are dropped",
            Ingress,
            Frame {
                ipv6_ext: Some(60),
                ..udp6.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_IPV6_EXTENSION, None),
        Case::new(
            "IPv6 fragment header to a VIP is dropped",
            Ingress,
            Frame {
                ipv6_ext: Some(44),
                ..udp6.clone()
            }
            .bytes(),
        )
        .expect(XDP_DROP, verdict::DROP_FRAGMENT, None),
        Case::new(
            "IPv6 extension header to another address passes",
            Ingress,
            Frame {
                ipv6_ext: Some(0),
                ..Frame::tcp(c6, sa("[2001:db8::9]:80"), SYN)
            }
            .bytes(),
        ),
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
        // --- egress: reverse translation ----------------------------------
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
        .stats(UDP4, out(s)),
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
        .stats(UDP4, out(s)),
        Case::new(
            "egress v6 udp reply",
            Egress,
            Frame::udp(ca(UDP6), c6).bytes(),
        )
        .flow(UDP6, c6, entry(UDP6, c))
        .expect(TC_ACT_OK, tr, Some(Frame::udp(dns6, c6).bytes()))
        .stats(UDP6, out(c)),
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
        .flow_after(TCP4, c4, FlowAfter::Absent),
    ];
    // Every case but the per-service ones reports on all services' counters
    // being zero; the flow-table ones name their service.
    v.iter_mut().for_each(|c| {
        if c.stats.is_none() {
            c.stats = Some(("", StatsDelta::default()));
        }
    });
    v
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

/// Runs one case on a fresh data path; returns a description of every
/// mismatch (empty when the case passes).
fn run(case: &Case) -> Vec<String> {
    let mut dp = Dataplane::load(&LoadOptions {
        flow_table_size: 1024,
        ..Default::default()
    })
    .unwrap();
    for s in services(case.weight_bp) {
        dp.upsert_service(&s).unwrap();
    }
    {
        let flows = &mut dp.maps_mut().flows;
        for (service, client, e) in &case.flows {
            let id = service_id(service);
            flows
                .insert(
                    flow_key(service, *client),
                    FlowEntry {
                        service_id: id,
                        ..*e
                    },
                    0,
                )
                .unwrap();
        }
    }
    if let Some(setup) = case.raw_setup {
        setup(&mut dp);
    }
    let mut out = vec![0u8; case.input.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(&case.input),
        data_out: Some(&mut out),
        repeat: 1,
        ..Default::default()
    };
    let result = match case.prog {
        Prog::Ingress => {
            let p: &mut Xdp = dp
                .ebpf_mut()
                .program_mut(INGRESS_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            p.test_run(opts).unwrap()
        }
        Prog::Egress => {
            let p: &mut SchedClassifier = dp
                .ebpf_mut()
                .program_mut(EGRESS_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            p.test_run(opts).unwrap()
        }
    };
    let mut errors = vec![];
    if result.return_value != case.verdict {
        errors.push(format!(
            "verdict {} (want {})",
            result.return_value, case.verdict
        ));
    }
    out.truncate(result.data_size_out as usize);
    let want = case.output.as_ref().unwrap_or(&case.input);
    if &out != want {
        errors.push(format!(
            "output differs:\n     got  {}\n     want {}",
            hex(&out),
            hex(want)
        ));
    }

    // Exactly one verdict counter moved, in the right program's table.
    let v = dp.verdicts().unwrap();
    let (mine, other) = match case.prog {
        Prog::Ingress => (&v.ingress, &v.egress),
        Prog::Egress => (&v.egress, &v.ingress),
    };
    for (i, n) in mine.iter().enumerate() {
        let want = (i as u32 == case.counter) as u64;
        if *n != want {
            errors.push(format!(
                "{:?} counter {} = {n} (want {want})",
                case.prog,
                verdict::NAMES[i]
            ));
        }
    }
    if other.iter().any(|n| *n != 0) {
        errors.push(format!("the other program's counters moved: {other:?}"));
    }

    // Per-version counters: the named service as expected, all others zero.
    let (named, delta) = case.stats.unwrap();
    for s in services(0) {
        let got = dp.stats(&s.name).unwrap();
        for version in [VERSION_STABLE, VERSION_CANARY] {
            let mut want = VersionStats::default();
            if s.name == named && version == delta.version {
                want = VersionStats {
                    packets_in: delta.packets_in,
                    bytes_in: if delta.packets_in > 0 {
                        case.input.len() as u64
                    } else {
                        0
                    },
                    packets_out: delta.packets_out,
                    bytes_out: if delta.packets_out > 0 {
                        case.input.len() as u64
                    } else {
                        0
                    },
                    new_flows: delta.new_flows,
                    rehashes: delta.rehashes,
                    closed_flows: delta.closed_flows,
                };
            }
            if got[version as usize] != want {
                errors.push(format!(
                    "{} v{version} stats {:?}, want {:?}",
                    s.name, got[version as usize], want
                ));
            }
        }
    }

    if let Some((service, client, after)) = case.flow_after {
        let flows = &dp.maps_mut().flows;
        let found = flows.get(&flow_key(service, client), 0).ok();
        let ok = match (after, found) {
            (FlowAfter::Absent, f) => f.is_none(),
            (FlowAfter::Version(v), Some(e)) => e.version == v,
            (FlowAfter::Fins(c, b), Some(e)) => e.client_fin == c && e.backend_fin == b,
            (_, None) => false,
        };
        if !ok {
            errors.push(format!("flow entry afterwards: {found:?}, want {after:?}"));
        }
    }
    errors
}

/// Fixture services are upserted in order on an empty data path, so their ids
/// are their positions.
fn service_id(name: &str) -> u32 {
    services(0).iter().position(|s| s.name == name).unwrap() as u32
}

#[test]
fn golden_packets() {
    require_root!();
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the fixture table must keep at least 40 cases"
    );
    let started = Instant::now();
    let mut failed = 0;
    for case in &cases {
        let errors = run(case);
        if errors.is_empty() {
            println!("ok    {}", case.name);
        } else {
            failed += 1;
            println!("FAIL  {} ({:?})", case.name, case.prog);
            println!(
                "      input (replay with scapy: Ether(bytes.fromhex(\"{}\")))",
                hex(&case.input)
            );
            for e in errors {
                println!("      {e}");
            }
        }
    }
    println!(
        "{} cases, {failed} failed, in {:?}",
        cases.len(),
        started.elapsed()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} golden cases failed (details above)",
        cases.len()
    );
}

#[test]
fn cases_are_order_independent() {
    require_root!();
    // Each case loads its own data path; running the table backwards must
    // give the same results as forwards.
    let mut cases = cases();
    cases.reverse();
    let failures: Vec<_> = cases
        .iter()
        .filter(|c| !run(c).is_empty())
        .map(|c| c.name)
        .collect();
    assert!(
        failures.is_empty(),
        "cases failing in reverse order: {failures:?}"
    );
}
