//! Golden packet fixtures: each case loads a fresh data path, fills its maps,
//! runs one frame through XDP ingress or TC egress with BPF_PROG_TEST_RUN,
//! and checks the verdict, the output bytes and the counters (what they
//! moved by). `cases_are_order_independent` runs the table both ways on
//! one shared data path, each case given only what it declares: no case
//! may depend on what an earlier one left. Every ingress case runs a second
//! time through the TC ingress program (`hook = "tc"`), which shares the
//! ingress logic and must give the same bytes, counters and flow state.
//!
//! Expected frames are built independently by `tests::packet`, with full
//! checksums computed by `tests::checksum`: a byte match proves the data
//! path's incremental checksum updates.
//!
//! This file holds the fixture services, the runner and the checks; the
//! cases live in one `cases_*` module per theme.

mod cases_affinity;
mod cases_close;
mod cases_egress;
mod cases_hostile;
mod cases_ipv4;
mod cases_ipv6;
mod cases_not_ours;
mod cases_odd_input;
mod cases_signals;
mod cases_truncated;

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use aya::{
    maps::PerCpuValues,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    util::nr_cpus,
};
use canary_common::Settings;
use canary_common::{
    FIN_ACKED, FIN_SEEN, FlowEntry, FlowKey, VERSION_CANARY, VERSION_STABLE, VersionStats,
    handshake_token,
    hash::{backend_index, client_hash, flow_hash, is_canary, seed_from_name},
    names::{EGRESS_PROGRAM, INGRESS_PROGRAM, INGRESS_TC_PROGRAM},
    signals::{
        CONNECT_SUB_BITS, HTTP_CLASSES, HTTP_OTHER, LATENCY_SUB_BITS, Sampler, Signals, UNTIMED,
        bucket_of_ns,
    },
    stats_slot, verdict,
};
use canary_userspace::{
    Affinity, Dataplane, LoadOptions, Protocol, ServiceSpec,
    kernel::maps::Verdicts,
    model::service::{addr_words, endpoint},
    model::weight::Weight,
};
use tests::{
    TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS,
    packet::{ACK, FIN, Frame, ICMP, ICMPV6, PSH, RST, SYN, arp, hex},
};

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

/// Half the new flows to the canary.
const HALF: Weight = Weight::from_bp(5000).unwrap();

fn services(weight: Weight) -> Vec<ServiceSpec> {
    let svc = |name: &str, vip: &str, protocol, affinity, stable: &str, canary: &str| ServiceSpec {
        name: name.into(),
        vip: sa(vip),
        protocol,
        affinity,
        app_protocol: Default::default(),
        stable: vec![sa(stable)],
        canary: vec![sa(canary)],
        weight,
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
    services(Weight::ZERO)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
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
    /// The ingress logic at TC ingress (`canary_ingress_tc`): made from an
    /// `Ingress` case by `at_tc_ingress`.
    IngressTc,
    Egress,
}

/// What the flow tables must hold for the case's flow afterwards. `Absent`
/// is in neither table, `Version` in FLOWS (established), `HalfOpen` in
/// HALF_OPEN only; the others look in FLOWS, then HALF_OPEN.
#[derive(Clone, Copy, Debug)]
enum FlowAfter {
    Absent,
    Version(u8),
    HalfOpen(u8),
    /// Present, with these (client_fin, backend_fin) markers.
    Fins(u8, u8),
    /// Present, with a timed request waiting for its reply (or none).
    Waiting(bool),
    /// Present, with a request waiting that the sampler left untimed.
    Untimed,
    /// Present, with the connect timer running (or not).
    SynPending(bool),
    /// In FLOWS, with this `backend_ack`.
    BackendAck(u32),
    /// In HALF_OPEN, waiting for the client's ACK of this number.
    AwaitsAck(u32),
}

/// A time in a flow entry that the runner sets to 2.5 ms before the run.
const STARTED_AGO: u64 = u64::MAX;
/// A UDP entry's last-seen time that the runner sets to the moment before
/// the run (a time taken when the table was built would age past the idle
/// timeout while the table runs).
const JUST_NOW: u64 = u64::MAX - 1;
const AGO_NS: u64 = 2_500_000;

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

/// What the case expects in the health signals of its service's version:
/// counts exactly, and for each histogram one observation whose duration
/// (the histogram's sum) lies in the given range of nanoseconds (the
/// kernel's clock decides where exactly), counted in that duration's
/// bucket.
#[derive(Clone, Copy, Debug, Default)]
struct SignalsDelta {
    version: u8,
    requests: u64,
    responses: u64,
    http: [u64; HTTP_CLASSES],
    backend_resets: u64,
    refused: u64,
    syn_retransmits: u64,
    failsafe_flows: u64,
    latency: Option<(u64, u64)>,
    connect: Option<(u64, u64)>,
}

struct Case {
    name: &'static str,
    prog: Prog,
    weight: Weight,
    /// Flow entries written before the run: (service, client, entry), in
    /// FLOWS (established) and in HALF_OPEN.
    flows: Vec<(&'static str, SocketAddr, FlowEntry)>,
    half_open: Vec<(&'static str, SocketAddr, FlowEntry)>,
    /// Extra map setup (e.g. a service without backends).
    raw_setup: Option<fn(&mut Dataplane)>,
    input: Vec<u8>,
    verdict: u32,
    /// `None`: output must equal input.
    output: Option<Vec<u8>>,
    counter: u32,
    /// Service whose counters are checked, and the expected values.
    stats: Option<(&'static str, StatsDelta)>,
    /// The same service's other version, when the case moves both (an old
    /// entry closed, a new decision made).
    stats_other: Option<StatsDelta>,
    /// Service whose signals are checked, and the expected values; every
    /// other (service, version) must have none.
    signals: Option<(&'static str, SignalsDelta)>,
    /// (service, client) of the flow to look up afterwards.
    flow_after: Option<(&'static str, SocketAddr, FlowAfter)>,
    /// The sampler of (service, version) on every CPU before the run (a
    /// `window_start_ns` of `JUST_NOW` is the moment before it), and what
    /// the running CPU's must hold afterwards (`JUST_NOW`: a time taken
    /// during the run).
    sampler: Option<(&'static str, u8, Sampler, Sampler)>,
}

impl Case {
    fn new(name: &'static str, prog: Prog, input: Vec<u8>) -> Case {
        Case {
            name,
            prog,
            weight: Weight::ZERO,
            flows: vec![],
            half_open: vec![],
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
            stats_other: None,
            signals: None,
            flow_after: None,
            sampler: None,
        }
    }
    fn weight(mut self, w: Weight) -> Self {
        self.weight = w;
        self
    }
    fn flow(mut self, service: &'static str, client: SocketAddr, e: FlowEntry) -> Self {
        self.flows.push((service, client, e));
        self
    }
    fn half_open(mut self, service: &'static str, client: SocketAddr, e: FlowEntry) -> Self {
        self.half_open.push((service, client, e));
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
    fn stats_other(mut self, d: StatsDelta) -> Self {
        self.stats_other = Some(d);
        self
    }
    fn setup(mut self, f: fn(&mut Dataplane)) -> Self {
        self.raw_setup = Some(f);
        self
    }
    fn signals(mut self, service: &'static str, d: SignalsDelta) -> Self {
        self.signals = Some((service, d));
        self
    }
    fn flow_after(mut self, service: &'static str, client: SocketAddr, f: FlowAfter) -> Self {
        self.flow_after = Some((service, client, f));
        self
    }
    fn sampler(
        mut self,
        service: &'static str,
        version: u8,
        before: Sampler,
        after: Sampler,
    ) -> Self {
        self.sampler = Some((service, version, before, after));
        self
    }
}

fn flow_key(service: &str, client: SocketAddr) -> FlowKey {
    spec(service).flow_key(client)
}

fn entry(service: &str, version: u8) -> FlowEntry {
    let b = canary_userspace::model::service::backend(backend_of(service, version));
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

/// Version the data path must choose for a new flow at `weight`, from the
/// shared hash (whose properties are unit-tested in canary-common).
fn expected_version(service: &str, client: SocketAddr, weight: Weight) -> u8 {
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
    if is_canary(h, weight.bp()) {
        VERSION_CANARY
    } else {
        VERSION_STABLE
    }
}

/// A client port of `client_ip` whose new flow lands on `want` at `weight`.
fn port_for(service: &str, client_ip: &str, weight: Weight, want: u8) -> SocketAddr {
    (40000u16..)
        .map(|p| SocketAddr::new(ip(client_ip), p))
        .find(|c| expected_version(service, *c, weight) == want)
        .unwrap()
}

/// Values the case tables share. Each table takes the ones it needs.
struct Fixtures {
    /// The IPv4 and IPv6 client most cases use.
    c4: SocketAddr,
    c6: SocketAddr,
    /// The tcp4/tcp6 and udp4/udp6 service addresses.
    vip4: SocketAddr,
    vip6: SocketAddr,
    dns4: SocketAddr,
    dns6: SocketAddr,
    /// Client-to-VIP frames.
    syn4: Frame,
    syn6: Frame,
    ack4: Frame,
    udp4: Frame,
    udp6: Frame,
    /// The plain translated verdict.
    tr: u32,
    /// Version indices, short: stable and canary.
    s: u8,
    c: u8,
    /// Client ports of 198.18.0.2 that tcp4 sends to canary / stable at
    /// weight 5000.
    mid: SocketAddr,
    mid_st: SocketAddr,
    /// The version 198.18.0.2 / 2001:db8::2 gets at weight 5000 (client
    /// affinity).
    sticky_ver: u8,
    sticky6_ver: u8,
    /// The clock when the table was built, for UDP idle times.
    now: u64,
    /// A tcp4 entry to canary whose handshake completed.
    established: FlowEntry,
}

impl Fixtures {
    fn new() -> Fixtures {
        let c4 = sa("198.18.0.2:40000");
        let c6 = sa("[2001:db8::2]:40000");
        let vip4 = sa("198.18.0.1:80");
        let vip6 = sa("[2001:db8::1]:80");
        let dns4 = sa("198.18.0.1:53");
        let dns6 = sa("[2001:db8::1]:53");
        let (s, c) = (VERSION_STABLE, VERSION_CANARY);
        let mut established = entry(TCP4, c);
        established.established = 1;
        Fixtures {
            c4,
            c6,
            vip4,
            vip6,
            dns4,
            dns6,
            syn4: Frame::tcp(c4, vip4, SYN),
            syn6: Frame::tcp(c6, vip6, SYN),
            ack4: Frame::tcp(c4, vip4, ACK | PSH),
            udp4: Frame::udp(c4, dns4),
            udp6: Frame::udp(c6, dns6),
            tr: verdict::TRANSLATED,
            s,
            c,
            mid: port_for(TCP4, "198.18.0.2", HALF, c),
            mid_st: port_for(TCP4, "198.18.0.2", HALF, s),
            sticky_ver: expected_version(STICKY4, sa("198.18.0.2:1"), HALF),
            sticky6_ver: expected_version(STICKY6, sa("[2001:db8::2]:1"), HALF),
            now: monotonic_ns(),
            established,
        }
    }
}

/// Stable and canary backend of a fixture service.
fn st(name: &str) -> SocketAddr {
    backend_of(name, VERSION_STABLE)
}
fn ca(name: &str) -> SocketAddr {
    backend_of(name, VERSION_CANARY)
}

/// Counters of one ingress packet that made a new flow / followed an entry,
/// and of one egress reply. A new flow is counted when its backend answers
/// (egress), not on its first packet.
fn new_in(version: u8) -> StatsDelta {
    StatsDelta {
        version,
        packets_in: 1,
        ..Default::default()
    }
}
fn hit_in(version: u8) -> StatsDelta {
    StatsDelta {
        version,
        packets_in: 1,
        ..Default::default()
    }
}
/// The counters of an established entry's flow that ended (closed).
fn closed(version: u8) -> StatsDelta {
    StatsDelta {
        version,
        closed_flows: 1,
        ..Default::default()
    }
}
fn out(version: u8) -> StatsDelta {
    StatsDelta {
        version,
        packets_out: 1,
        ..Default::default()
    }
}

/// Signals of one client payload that started a request (or one UDP
/// datagram), one UDP reply, one backend reset.
fn request(version: u8) -> SignalsDelta {
    SignalsDelta {
        version,
        requests: 1,
        ..Default::default()
    }
}
fn reply(version: u8) -> SignalsDelta {
    SignalsDelta {
        version,
        responses: 1,
        ..Default::default()
    }
}
fn backend_reset(version: u8) -> SignalsDelta {
    SignalsDelta {
        version,
        backend_resets: 1,
        ..Default::default()
    }
}

/// Cases in the table; a case added or lost must change this on purpose.
const CASES: usize = 109;

/// The whole table, theme by theme.
fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = [
        cases_ipv4::cases(),
        cases_ipv6::cases(),
        cases_affinity::cases(),
        cases_close::cases(),
        cases_not_ours::cases(),
        cases_truncated::cases(),
        cases_odd_input::cases(),
        cases_egress::cases(),
        cases_hostile::cases(),
        cases_signals::cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Every case but the per-service ones reports on all services' counters
    // being zero; the flow-table ones name their service.
    v.iter_mut().for_each(|c| {
        if c.stats.is_none() {
            c.stats = Some(("", StatsDelta::default()));
        }
    });
    v
}

/// Runs one case on a fresh data path; returns a description of every
/// mismatch (empty when the case passes).
fn run(case: &Case) -> Vec<String> {
    let mut dp = Dataplane::load(&LoadOptions {
        flow_table_size: 1024,
        ..Default::default()
    })
    .unwrap();
    for s in services(case.weight) {
        dp.upsert_service(&s).unwrap();
    }
    run_on(&mut dp, case)
}

/// One data path for a whole table run, on which each case gets what it
/// declares and nothing more: every fixture service at its weight (put
/// back if an earlier case removed it), the flow tables holding exactly
/// its entries, the settings as loaded unless its setup changes them, and
/// its services' samplers as loaded unless it presets one (a case that
/// presets none relies on a fresh sampler: the first run of this test found
/// "a client payload with no request waiting starts one" untimed after the
/// cases before it). Everything else is what earlier cases left: the
/// counters (`run_on` reads what moved), the SERVICES and BACKENDS entries
/// a replaced service leaves behind, the bank each service reads, the
/// slots of services removed and added again.
struct Shared {
    dp: Dataplane,
    settings: Settings,
}

impl Shared {
    fn new() -> Shared {
        let mut dp = Dataplane::load(&LoadOptions {
            flow_table_size: 1024,
            ..Default::default()
        })
        .unwrap();
        let settings = dp.maps_mut().settings.get(&0, 0).unwrap();
        Shared { dp, settings }
    }

    fn run(&mut self, case: &Case) -> Vec<String> {
        for s in services(case.weight) {
            self.dp.upsert_service(&s).unwrap();
        }
        let maps = self.dp.maps_mut();
        for table in [&mut maps.flows, &mut maps.half_open] {
            let keys: Vec<FlowKey> = table.keys().map(|k| k.unwrap()).collect();
            for key in &keys {
                table.remove(key).unwrap();
            }
        }
        maps.settings.set(0, self.settings, 0).unwrap();
        let cpus = nr_cpus().unwrap();
        for id in service_ids(&self.dp).into_values() {
            for version in [VERSION_STABLE, VERSION_CANARY] {
                let fresh = PerCpuValues::try_from(vec![Sampler::default(); cpus]).unwrap();
                let sampler = &mut self.dp.maps_mut().sampler;
                sampler.set(stats_slot(id, version), fresh, 0).unwrap();
            }
        }
        run_on(&mut self.dp, case)
    }
}

/// Fills `dp` as `case` declares, runs its frame and checks the verdict,
/// the output, what the counters moved by, the sampler and the flow entry.
fn run_on(dp: &mut Dataplane, case: &Case) -> Vec<String> {
    let ids = service_ids(dp);
    let service_id = |name: &str| ids[name];
    let before = Counts::read(dp);
    for half_open in [false, true] {
        let maps = dp.maps_mut();
        let (flows, entries) = if half_open {
            (&mut maps.half_open, &case.half_open)
        } else {
            (&mut maps.flows, &case.flows)
        };
        let ago = |t: u64| {
            if t == STARTED_AGO {
                monotonic_ns() - AGO_NS
            } else {
                t
            }
        };
        for (service, client, e) in entries {
            let id = service_id(service);
            let e = &FlowEntry {
                last_seen_ns: if e.last_seen_ns == JUST_NOW {
                    monotonic_ns()
                } else {
                    e.last_seen_ns
                },
                request_ns: ago(e.request_ns),
                syn_ns: ago(e.syn_ns),
                ..*e
            };
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
        setup(dp);
    }
    let run_started = monotonic_ns();
    if let Some((service, version, before, _)) = case.sampler {
        let before = Sampler {
            window_start_ns: resolve_just_now(before.window_start_ns, run_started),
            ..before
        };
        let cpus = nr_cpus().unwrap();
        dp.maps_mut()
            .sampler
            .set(
                stats_slot(service_id(service), version),
                PerCpuValues::try_from(vec![before; cpus]).unwrap(),
                0,
            )
            .unwrap();
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
        Prog::IngressTc | Prog::Egress => {
            let name = if case.prog == Prog::Egress {
                EGRESS_PROGRAM
            } else {
                INGRESS_TC_PROGRAM
            };
            let p: &mut SchedClassifier =
                dp.ebpf_mut().program_mut(name).unwrap().try_into().unwrap();
            match p.test_run(opts) {
                Ok(r) => r,
                // The kernel builds no skb of some frames (a truncated
                // network header): the caller says which.
                Err(e) if case.prog == Prog::IngressTc && format!("{e:?}").contains("code: 22") => {
                    return vec![NO_SKB.into()];
                }
                Err(e) => panic!("{}: {e:?}", case.name),
            }
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
    let after = Counts::read(dp);
    let v = after.verdicts_since(&before);
    let (mine, other) = match case.prog {
        Prog::Ingress | Prog::IngressTc => (&v.ingress, &v.egress),
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
    for s in services(Weight::ZERO) {
        // A case may remove a service; it has no counters to check.
        let Some(got) = after.stats_since(&before, &s.name) else {
            continue;
        };
        for version in [VERSION_STABLE, VERSION_CANARY] {
            let mut want = VersionStats::default();
            let other = case
                .stats_other
                .filter(|o| s.name == named && o.version == version);
            if let Some(o) = other {
                want = VersionStats {
                    new_flows: o.new_flows,
                    rehashes: o.rehashes,
                    closed_flows: o.closed_flows,
                    ..want
                };
            } else if s.name == named && version == delta.version {
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

    // Signals: the named service's version as expected, all others none.
    let (named, want) = case.signals.unwrap_or(("", SignalsDelta::default()));
    for s in services(Weight::ZERO) {
        // A case may remove a service; it has no counters to check.
        let Some(got) = after.signals_since(&before, &s.name) else {
            continue;
        };
        for version in [VERSION_STABLE, VERSION_CANARY] {
            let got = &got[version as usize];
            let want = if s.name == named && version == want.version {
                want
            } else {
                SignalsDelta::default()
            };
            if let Some(mismatch) = signals_mismatch(got, &want) {
                errors.push(format!("{} v{version} signals: {mismatch}", s.name));
            }
        }
    }

    if let Some((service, version, before, want)) = case.sampler {
        let per_cpu = dp
            .maps_mut()
            .sampler
            .get(&stats_slot(service_id(service), version), 0)
            .unwrap();
        // The CPU that ran the program holds `want`, where a window start
        // of JUST_NOW is a time the kernel took during the run (after the
        // preset's) and 0 means the preset's, unchanged.
        let preset = resolve_just_now(before.window_start_ns, run_started);
        let run_ended = monotonic_ns();
        let matches = |got: &Sampler| {
            let window = match want.window_start_ns {
                JUST_NOW => got.window_start_ns > run_started && got.window_start_ns <= run_ended,
                _ => got.window_start_ns == preset,
            };
            window && got.starts == want.starts && got.shift == want.shift
        };
        if !per_cpu.iter().any(matches) {
            errors.push(format!(
                "sampler afterwards, per CPU: {:?}; want {want:?} (JUST_NOW: taken in the run, 0: unchanged)",
                per_cpu.iter().collect::<Vec<_>>()
            ));
        }
    }

    if let Some((service, client, after)) = case.flow_after {
        let key = flow_key(service, client);
        let maps = dp.maps_mut();
        let established = maps.flows.get(&key, 0).ok();
        let half_open = maps.half_open.get(&key, 0).ok();
        let found = established.or(half_open);
        let ok = match (after, found) {
            (FlowAfter::Absent, f) => f.is_none(),
            (FlowAfter::Version(v), _) => established.is_some_and(|e| e.version == v),
            (FlowAfter::HalfOpen(v), _) => {
                established.is_none() && half_open.is_some_and(|e| e.version == v)
            }
            (FlowAfter::Fins(c, b), Some(e)) => e.client_fin == c && e.backend_fin == b,
            (FlowAfter::Waiting(w), Some(e)) => {
                (e.request_ns != 0 && e.request_ns != UNTIMED) == w && (w || e.request_ns == 0)
            }
            (FlowAfter::Untimed, Some(e)) => e.request_ns == UNTIMED,
            (FlowAfter::SynPending(p), Some(e)) => (e.syn_ns != 0) == p,
            (FlowAfter::BackendAck(a), _) => established.is_some_and(|e| e.backend_ack == a),
            (FlowAfter::AwaitsAck(a), _) => {
                established.is_none()
                    && half_open.is_some_and(|e| e.last_seen_ns == handshake_token(a))
            }
            (_, None) => false,
        };
        if !ok {
            errors.push(format!(
                "flow entry afterwards: established {established:?}, half-open {half_open:?}; want {after:?}"
            ));
        }
    }
    errors
}

/// How `got` differs from `want`, if it does.
fn signals_mismatch(got: &Signals, want: &SignalsDelta) -> Option<String> {
    let counts = (
        got.requests,
        got.responses,
        got.http,
        got.backend_resets,
        got.refused,
        got.syn_retransmits,
        got.failsafe_flows,
    );
    let want_counts = (
        want.requests,
        want.responses,
        want.http,
        want.backend_resets,
        want.refused,
        want.syn_retransmits,
        want.failsafe_flows,
    );
    // A histogram holds one observation in the expected range, or none;
    // it sits in the bucket of its own duration (the sum).
    let one_in = |h: &[u64], sum_ns: u64, range: Option<(u64, u64)>, sub_bits| match range {
        None => h.iter().all(|n| *n == 0) && sum_ns == 0,
        Some((lo, hi)) => {
            (lo..=hi).contains(&sum_ns)
                && h.iter().sum::<u64>() == 1
                && h[bucket_of_ns(sum_ns, sub_bits)] == 1
        }
    };
    if counts == want_counts
        && one_in(
            &got.latency,
            got.latency_sum_ns,
            want.latency,
            LATENCY_SUB_BITS,
        )
        && one_in(
            &got.connect,
            got.connect_sum_ns,
            want.connect,
            CONNECT_SUB_BITS,
        )
    {
        return None;
    }
    Some(format!(
        "(requests, responses, http, resets, refused, syn retransmits, failsafe flows) = {counts:?}, want {want_counts:?}; \
         latency buckets {:?} sum {} ns (want one in {:?}); connect buckets {:?} sum {} ns (want one in {:?})",
        got.latency,
        got.latency_sum_ns,
        want.latency,
        got.connect,
        got.connect_sum_ns,
        want.connect
    ))
}

/// A failed case, with its input as hex to replay it in scapy.
fn print_failure(case: &Case, errors: &[String]) {
    println!("FAIL  {} ({:?})", case.name, case.prog);
    println!(
        "      input (replay with scapy: Ether(bytes.fromhex(\"{}\")))",
        hex(&case.input)
    );
    for e in errors {
        println!("      {e}");
    }
}

/// `t`, or `now` when `t` is `JUST_NOW`.
fn resolve_just_now(t: u64, now: u64) -> u64 {
    if t == JUST_NOW { now } else { t }
}

/// The slot of each registered service, by name.
fn service_ids(dp: &Dataplane) -> std::collections::HashMap<String, u32> {
    dp.registered()
        .into_iter()
        .map(|r| (r.spec.name, r.id))
        .collect()
}

/// Every counter a case is checked on, as read before or after its run:
/// a case is judged on what moved, so it can run on a shared data path.
struct Counts {
    verdicts: Verdicts,
    stats: std::collections::HashMap<String, [VersionStats; 2]>,
    signals: std::collections::HashMap<String, [Signals; 2]>,
}

impl Counts {
    fn read(dp: &Dataplane) -> Counts {
        let names: Vec<String> = dp.service_names();
        Counts {
            verdicts: dp.verdicts().unwrap(),
            stats: names
                .iter()
                .map(|n| (n.clone(), dp.stats(n).unwrap()))
                .collect(),
            signals: names
                .iter()
                .map(|n| (n.clone(), dp.signals(n).unwrap()))
                .collect(),
        }
    }

    fn verdicts_since(&self, before: &Counts) -> Verdicts {
        let minus = |a: &[u64; verdict::COUNT as usize], b: &[u64; verdict::COUNT as usize]| {
            std::array::from_fn(|i| a[i] - b[i])
        };
        Verdicts {
            ingress: minus(&self.verdicts.ingress, &before.verdicts.ingress),
            egress: minus(&self.verdicts.egress, &before.verdicts.egress),
        }
    }

    /// What `service`'s counters moved by; None if it is gone (or new).
    fn stats_since(&self, before: &Counts, service: &str) -> Option<[VersionStats; 2]> {
        let (now, then) = (self.stats.get(service)?, before.stats.get(service)?);
        Some(std::array::from_fn(|v| {
            let (a, b) = (&now[v], &then[v]);
            VersionStats {
                packets_in: a.packets_in - b.packets_in,
                bytes_in: a.bytes_in - b.bytes_in,
                packets_out: a.packets_out - b.packets_out,
                bytes_out: a.bytes_out - b.bytes_out,
                new_flows: a.new_flows - b.new_flows,
                rehashes: a.rehashes - b.rehashes,
                closed_flows: a.closed_flows - b.closed_flows,
            }
        }))
    }

    /// What `service`'s signals moved by; None if it is gone (or new).
    fn signals_since(&self, before: &Counts, service: &str) -> Option<[Signals; 2]> {
        let (now, then) = (self.signals.get(service)?, before.signals.get(service)?);
        let minus = |a: &[u64], b: &[u64], out: &mut [u64]| {
            for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
                *o = x - y;
            }
        };
        Some(std::array::from_fn(|v| {
            let (a, b) = (&now[v], &then[v]);
            let mut d = Signals {
                requests: a.requests - b.requests,
                responses: a.responses - b.responses,
                backend_resets: a.backend_resets - b.backend_resets,
                refused: a.refused - b.refused,
                syn_retransmits: a.syn_retransmits - b.syn_retransmits,
                latency_sum_ns: a.latency_sum_ns - b.latency_sum_ns,
                connect_sum_ns: a.connect_sum_ns - b.connect_sum_ns,
                failsafe_flows: a.failsafe_flows - b.failsafe_flows,
                ..Signals::default()
            };
            minus(&a.http, &b.http, &mut d.http);
            minus(&a.latency, &b.latency, &mut d.latency);
            minus(&a.connect, &b.connect, &mut d.connect);
            d
        }))
    }
}

#[test]
fn golden_packets() {
    let _serial = tests::root_scenario();
    let cases = cases();
    assert_eq!(
        cases.len(),
        CASES,
        "the fixture table must hold exactly {CASES} cases"
    );
    let started = Instant::now();
    let mut failed = 0;
    for case in &cases {
        let errors = run(case);
        if errors.is_empty() {
            println!("ok    {}", case.name);
        } else {
            failed += 1;
            print_failure(case, &errors);
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

/// Shortest frame BPF_PROG_TEST_RUN builds an skb from (ETH_HLEN): TC
/// programs never see less.
const SKB_MIN_LEN: usize = 14;
/// What `run` reports when BPF_PROG_TEST_RUN refuses to build an skb of
/// the case's frame (EINVAL).
const NO_SKB: &str = "BPF_PROG_TEST_RUN builds no skb of this frame (EINVAL)";

/// An `Ingress` case as the TC ingress program must pass it: the same
/// input, output bytes, counters and flow state; the verdict's action as
/// TC says it. None for frames no skb can be made of.
fn at_tc_ingress(case: &Case) -> Option<Case> {
    if case.prog != Prog::Ingress || case.input.len() < SKB_MIN_LEN {
        return None;
    }
    let verdict = match case.verdict {
        XDP_PASS => TC_ACT_OK,
        XDP_DROP => TC_ACT_SHOT,
        other => panic!("{}: XDP verdict {other} has no TC twin", case.name),
    };
    Some(Case {
        name: case.name,
        prog: Prog::IngressTc,
        weight: case.weight,
        flows: case.flows.clone(),
        half_open: case.half_open.clone(),
        raw_setup: case.raw_setup,
        input: case.input.clone(),
        verdict,
        output: case.output.clone(),
        counter: case.counter,
        stats: case.stats,
        stats_other: case.stats_other,
        signals: case.signals,
        flow_after: case.flow_after,
        sampler: case.sampler,
    })
}

#[test]
fn golden_packets_at_tc_ingress() {
    let _serial = tests::root_scenario();
    let all = cases();
    let ingress = all.iter().filter(|c| c.prog == Prog::Ingress).count();
    let cases: Vec<Case> = all.iter().filter_map(at_tc_ingress).collect();
    // Every ingress case but the frames shorter than an Ethernet header.
    let too_short: Vec<_> = all
        .iter()
        .filter(|c| c.prog == Prog::Ingress && c.input.len() < SKB_MIN_LEN)
        .map(|c| c.name)
        .collect();
    assert_eq!(cases.len() + too_short.len(), ingress);
    println!(
        "{} of {ingress} ingress cases at TC ingress; without an skb (under {SKB_MIN_LEN} bytes): {too_short:?}",
        cases.len()
    );
    let mut failed = 0;
    let mut no_skb = vec![];
    for case in &cases {
        let errors = run(case);
        if errors.is_empty() {
            println!("ok    {}", case.name);
        } else if errors == [NO_SKB] {
            println!("skip  {}: {NO_SKB}", case.name);
            no_skb.push(case.name);
        } else {
            failed += 1;
            print_failure(case, &errors);
        }
    }
    println!(
        "{} cases at TC ingress, {failed} failed, {} without an skb",
        cases.len(),
        no_skb.len()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} golden cases failed at TC ingress (details above)",
        cases.len()
    );
    // Only truncated frames may go without an skb, and most cases must run.
    assert!(
        no_skb.iter().all(|n| n.starts_with("truncated")),
        "cases the kernel made no skb of: {no_skb:?}"
    );
    assert!(no_skb.len() * 4 < cases.len(), "{no_skb:?}");
}

/// The table forwards and then backwards on one shared data path
/// (`Shared`): every case must give what it gives on a fresh one (nothing
/// to report) in both orders. A case that leans on state an earlier case
/// left (a sampler window, a counter read whole, a service or setting not
/// put back) fails here.
#[test]
fn cases_are_order_independent() {
    let _serial = tests::root_scenario();
    let mut cases = cases();
    let mut shared = Shared::new();
    let mut failures = vec![];
    for order in ["forwards", "backwards"] {
        for case in &cases {
            let errors = shared.run(case);
            if !errors.is_empty() {
                print_failure(case, &errors);
                failures.push(format!("{order}: {}", case.name));
            }
        }
        println!("{} cases {order} on one data path", cases.len());
        cases.reverse();
    }
    assert!(
        failures.is_empty(),
        "cases failing on a shared data path: {failures:?}"
    );
}
