//! Upgrading canary itself moves no established flow: the previous
//! release's data path (pin layout v5, `tests/fixtures/canary-v5.o`, set up
//! here as that release's canaryd did) serves long-lived connections; the
//! weight moves; then today's canaryd starts on the same bpffs directory,
//! carries the pins over (`canary_userspace::kernel::upgrade`) and swaps its
//! programs into the pinned links. Every connection must still be answered
//! by the version it started on, and the signals the previous release
//! counted (its SIGNALS map had 23 log2 latency buckets) go on in today's.

use std::fs;

use aya::{
    EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{SchedClassifier, Xdp},
};
use canary_common::{
    BackendOwner, Endpoint, PREVIOUS_PIN_LAYOUT, Service, Settings, VERSION_CANARY, VERSION_STABLE,
    backend_slot,
    hash::seed_from_name,
    names::{EGRESS_PROGRAM, INGRESS_PROGRAM},
};
use canary_userspace::{
    Hook, Protocol, ServiceSpec,
    kernel::attachment,
    kernel::pins::PinLayout,
    model::service::{backend, endpoint},
    model::weight::Weight,
};
use tests::{harness::SERVICE, kit::DaemonUnderTest, servers::Client};
use xtask::{canaryd::DaemonDirs, topology::HOST_IF};

static V5_OBJECT: &[u8] = aya::include_bytes_aligned!("../../fixtures/canary-v5.o");
/// The v5 object's maps, as that release pinned them (today's first ten;
/// the HTTP/2 maps came later).
const V5_MAPS: [&str; 10] = {
    let m = canary_common::names::MAPS;
    [m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]]
};
const CONNECTIONS: usize = 40;

/// The previous release's data path, as its canaryd left it: maps and
/// attachment links pinned under `<bpffs>/v5`, one service with id 0.
fn start_previous_release(t: &DaemonUnderTest, s: &ServiceSpec) {
    let dirs = &t.dirs;
    let layout = PinLayout {
        dir: dirs.bpffs.join(PREVIOUS_PIN_LAYOUT),
    };
    for d in [layout.maps(), layout.programs(), layout.interface(HOST_IF)] {
        fs::create_dir_all(&d).unwrap();
    }
    let mut loader = EbpfLoader::new();
    for m in V5_MAPS {
        loader.map_pin_path(m, layout.map(m));
    }
    let mut ebpf = loader.load(V5_OBJECT).unwrap();
    let xdp: &mut Xdp = ebpf
        .program_mut(INGRESS_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    xdp.load().unwrap();
    let tc: &mut SchedClassifier = ebpf
        .program_mut(EGRESS_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    tc.load().unwrap();

    let proto = s.protocol.number();
    let vip = endpoint(s.vip, proto);
    let mut map = |name: &str| ebpf.take_map(name).unwrap();
    let mut settings: Array<_, Settings> = Array::try_from(map("SETTINGS")).unwrap();
    // Failsafe off: this test is about the upgrade, not a stale heartbeat.
    settings.set(0, Settings::default(), 0).unwrap();
    let mut backends: Array<_, canary_common::Backend> = Array::try_from(map("BACKENDS")).unwrap();
    for (version, b) in [(VERSION_STABLE, s.stable[0]), (VERSION_CANARY, s.canary[0])] {
        backends
            .set(backend_slot(0, 0, version, 0), backend(b), 0)
            .unwrap();
    }
    let mut owners: HashMap<_, Endpoint, BackendOwner> =
        HashMap::try_from(map("BACKEND_OWNERS")).unwrap();
    for b in [s.stable[0], s.canary[0]] {
        owners
            .insert(endpoint(b, proto), BackendOwner { vip, service_id: 0 }, 0)
            .unwrap();
    }
    let mut services: HashMap<_, Endpoint, Service> = HashMap::try_from(map("SERVICES")).unwrap();
    services
        .insert(
            vip,
            Service {
                id: 0,
                seed: seed_from_name(s.name.as_bytes()),
                weight_bp: s.weight.bp(),
                affinity: s.affinity.number(),
                stable_count: 1,
                canary_count: 1,
                bank: 0,
                app_protocol: 0,
                _pad: 0,
            },
            0,
        )
        .unwrap();
    t.topo
        .host
        .enter(|| {
            attachment::attach(
                &mut ebpf,
                HOST_IF,
                Hook::Xdp,
                &layout.interface(HOST_IF),
                &layout.programs(),
            )
        })
        .unwrap()
        .unwrap();
    // The pins and links hold everything once this process lets go.
}

/// Moves the previous release's weight, as its `set-weight` did: one write
/// of the SERVICES record.
fn set_previous_weight(dirs: &DaemonDirs, vip: Endpoint, weight_bp: u16) {
    let path = dirs.bpffs.join(PREVIOUS_PIN_LAYOUT).join("maps/SERVICES");
    let mut services: HashMap<MapData, Endpoint, Service> =
        HashMap::try_from(aya::maps::Map::HashMap(MapData::from_pin(path).unwrap())).unwrap();
    let record = services.get(&vip, 0).unwrap();
    services
        .insert(
            vip,
            Service {
                weight_bp,
                ..record
            },
            0,
        )
        .unwrap();
}

fn ask_all(conns: &mut [(Client, String)], when: &str) -> Vec<String> {
    conns
        .iter_mut()
        .enumerate()
        .filter_map(|(i, (c, label))| match c.request() {
            Ok(l) if &l == label => None,
            Ok(l) => Some(format!("{when}: connection {i} moved from {label} to {l}")),
            Err(e) => Some(format!("{when}: connection {i} ({label}): {e:#}")),
        })
        .collect()
}

fn new_connection_labels(t: &DaemonUnderTest, n: usize) -> Vec<String> {
    (0..n).map(|_| t.request(t.vip).unwrap()).collect()
}

#[test]
fn upgrading_from_the_previous_pin_layout_moves_no_established_flow() {
    upgrade(Hook::Xdp, canary_common::DEFAULT_FLOW_TABLE_SIZE);
}

/// The same upgrade with the interface moving to the TC hook on the way:
/// today's canaryd makes the tcx ingress link, then lets go of the v5
/// release's XDP link. The config asks for a flow table larger than the
/// previous release's: the carried table keeps its size, the new half-open
/// table takes the config's, and a restart after the upgrade reuses both.
#[test]
fn upgrading_onto_the_tc_hook_moves_no_established_flow() {
    upgrade(Hook::Tc, 131_072);
}

fn upgrade(hook: Hook, flow_table_size: u32) {
    let _serial = tests::root_scenario();
    let t = DaemonUnderTest::new("upgrade");
    let (vip, dirs) = (t.vip, &t.dirs);
    start_previous_release(&t, &t.service(5000));

    // Long-lived connections at 50 %, then the weight moves to 0 % under
    // the previous release: its canary connections stay on the canary.
    let mut conns: Vec<(Client, String)> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = t.connect(vip).unwrap();
            let label = c.request().unwrap();
            (c, label)
        })
        .collect();
    let on_canary = conns.iter().filter(|(_, l)| l == "canary").count();
    set_previous_weight(dirs, endpoint(vip, Protocol::Tcp.number()), 0);
    let mut failures = ask_all(&mut conns, "previous release, weight 0 %");
    assert!(new_connection_labels(&t, 10).iter().all(|l| l == "stable"));

    // Today's canaryd on the same pins, its config at the moved weight.
    let mut config = t.config(0);
    config.daemon.flow_table_size = flow_table_size;
    if hook != Hook::Xdp {
        config.daemon.hooks.insert(HOST_IF.into(), hook);
    }
    t.write_config(&config);
    let mut d = t.start(&[]);
    let log = d.log_text();
    let carried = log
        .lines()
        .find(|l| l.contains("upgraded the pins"))
        .unwrap_or_else(|| panic!("no upgrade in the log:\n{log}"))
        .to_owned();
    failures.extend(ask_all(&mut conns, "after the upgrade"));
    let after_upgrade_new = new_connection_labels(&t, 10);
    // The weight moves again under today's canaryd: still nobody moves.
    d.client().set_weight(SERVICE, Weight::FULL).unwrap();
    failures.extend(ask_all(&mut conns, "after the upgrade, weight 100 %"));
    let status = d.status().unwrap();
    let svc = &status.services[0];
    println!(
        "{CONNECTIONS} connections ({on_canary} on the canary) through the v5 data path, weight \
         50 -> 0 %, then today's canaryd: {} failures; {carried}; new connections after it: \
         {:?}; counters carried: stable {} / canary {} new flows",
        failures.len(),
        after_upgrade_new,
        svc.stable.new_flows,
        svc.canary.new_flows
    );
    assert!(failures.is_empty(), "{failures:#?}\n{log}");
    assert!(after_upgrade_new.iter().all(|l| l == "stable"));
    // The v5 counters went on: every connection counted before the
    // upgrade is still there.
    assert!(
        svc.stable.new_flows + svc.canary.new_flows >= (CONNECTIONS + 10) as u64,
        "{svc:?}"
    );
    assert!(
        carried.contains("FLOWS") && carried.contains("SERVICES"),
        "{carried}"
    );
    // The v5 signals were converted, not lost: each connection's two
    // requests and the 10 new connections' before the upgrade, each timed
    // (far below the sampling floor) into a latency histogram that is now
    // the log-linear one.
    assert!(
        carried.contains("converted SIGNALS to the new histogram, 2 (service, version) slots"),
        "{carried}"
    );
    let (requests, timed) = (
        svc.stable.signals.requests + svc.canary.signals.requests,
        svc.stable.signals.latency.total() + svc.canary.signals.latency.total(),
    );
    let before = (2 * CONNECTIONS + 10) as u64;
    assert!(
        requests >= before && timed >= before,
        "requests {requests}, timed {timed}: {svc:?}"
    );
    assert_eq!(
        svc.canary.signals.latency.counts.len(),
        canary_common::signals::LATENCY_BUCKETS
    );
    assert!(!dirs.bpffs.join(PREVIOUS_PIN_LAYOUT).exists());
    assert_eq!(status.daemon.interfaces.len(), 1);
    let iface = &status.daemon.interfaces[0];
    assert!(iface.attached && iface.hook == hook, "{iface:?}");
    if hook == Hook::Tc {
        assert_eq!(
            iface.xdp_program_id, None,
            "the v5 XDP link let go: {iface:?}"
        );
    }
    // A restart after the upgrade reuses the upgraded pins, whatever size
    // the config gave the tables they did not carry.
    d.signal(libc::SIGTERM).unwrap();
    let d = t.try_start(&[]).unwrap_or_else(|e| {
        panic!("restart after the upgrade (flow_table_size {flow_table_size}): {e:#}")
    });
    let after_restart = ask_all(&mut conns, "after a restart on the upgraded pins");
    assert!(
        after_restart.is_empty(),
        "{after_restart:#?}\n{}",
        d.log_text()
    );
}
