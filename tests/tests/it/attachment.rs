//! Attachments with a pin directory, on veths in test namespaces: which path
//! ran and why (pinned bpf_links on this kernel), that the programs stay
//! attached and running after the Dataplane is dropped (a daemon exit), that
//! the next run swaps its programs into the same links, that an earlier
//! canaryd's netlink attachment is replaced in place, and that detach takes
//! everything off.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{SchedClassifier, TcAttachType, links::PinnedLink};
use canary_common::names::{EGRESS_PROGRAM, INGRESS_PROGRAM, INGRESS_TC_PROGRAM};
use canary_userspace::{
    Dataplane, Hook, LoadOptions,
    kernel::attachment::{
        self, Attached, Attachment, TC_EGRESS_PIN, TC_INGRESS_PIN, XDP_DRIVER_PIN, XDP_GENERIC_PIN,
        XdpMode,
    },
    kernel::bpffs,
    kernel::pins::PinLayout,
};
use xtask::topology::{BackendKind, HOST_IF, HOST_V4, Netns, Topology};

static PIN_DIRS: AtomicU32 = AtomicU32::new(0);

/// A bpffs directory of one test, every pin under it removed on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> PinDir {
        let n = PIN_DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(bpffs::DEFAULT_MOUNT)
            .join(format!("canary-attach-test-{}-{n}", std::process::id()));
        bpffs::ensure(&dir).unwrap();
        PinDir(dir)
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            pin_dir: Some(self.0.clone()),
            ..Default::default()
        }
    }

    fn layout(&self) -> PinLayout {
        PinLayout::new(&self.0)
    }

    /// A data path pinned here, loaded in `ns`.
    fn load_in(&self, ns: &Netns) -> Dataplane {
        ns.enter(|| Dataplane::load(&self.options()))
            .unwrap()
            .unwrap()
    }

    /// The record directory `attach` keeps for an interface, as spelled in
    /// bpffs (dots as ':').
    fn record(&self, dir_name: &str) -> PathBuf {
        self.layout().interfaces().join(dir_name)
    }

    fn program(&self, name: &str) -> PathBuf {
        self.layout().program(name)
    }
}

/// `dp.attach(interface, hook)` in `ns`.
fn attach_in(ns: &Netns, dp: &mut Dataplane, interface: &str, hook: Hook) -> Attached {
    ns.enter(|| dp.attach(interface, hook)).unwrap().unwrap()
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = Dataplane::remove_pins(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (link id, program id) of the link pinned at `path`.
fn pinned_link(path: &Path) -> (u32, u32) {
    let link = PinnedLink::from_pin(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let info = aya::programs::links::FdLink::from(link).info().unwrap();
    (info.id(), info.program_id())
}

/// (program id, name, IFLA_XDP_ATTACHED mode) of the XDP program on
/// `iface`, as the library's own inspection reads it (`ip -json`).
fn xdp_on(ns: &Netns, iface: &str) -> Option<(u32, String, u64)> {
    ns.enter(|| attachment::xdp_program_on(iface))
        .unwrap()
        .unwrap()
        .map(|p| (p.id as u32, p.name, p.mode))
}

/// (program id, name) of every tcx egress program on `iface`.
fn tcx_egress(ns: &Netns, iface: &str) -> Vec<(u32, String)> {
    tcx(ns, iface, TcAttachType::Egress)
}

/// (program id, name) of every tcx program at `at` on `iface`.
fn tcx(ns: &Netns, iface: &str, at: TcAttachType) -> Vec<(u32, String)> {
    let (_, progs) = ns
        .enter(|| SchedClassifier::query_tcx(iface, at))
        .unwrap()
        .unwrap();
    progs
        .iter()
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Our clsact egress filter's program (id, name), from `tc -json`.
fn tc_filter_on(ns: &Netns, iface: &str) -> Option<(u32, String)> {
    ns.enter(|| attachment::our_tc_filter_on(iface))
        .unwrap()
        .unwrap()
        .map(|p| (p.id as u32, p.name))
}

/// Ingress and egress verdicts counted so far, all verdicts together.
fn verdict_totals(dp: &Dataplane) -> (u64, u64) {
    let v = dp.verdicts().unwrap();
    (v.ingress.iter().sum(), v.egress.iter().sum())
}

#[test]
fn pinned_links_outlive_the_dataplane_take_the_next_programs_and_detach() {
    let _serial = tests::root_scenario();
    let topo = Topology::new(BackendKind::LocalProcess).unwrap();
    let pins = PinDir::new();
    let record = pins.record(HOST_IF);

    let (xdp_link, first_xdp, tc_link, first_tc) = topo
        .host
        .enter(|| {
            let mut first = Dataplane::load(&pins.options()).unwrap();
            let attached = first.attach(HOST_IF, Hook::Xdp).unwrap();
            println!(
                "first run: {HOST_IF}: XDP {:?} mode through {}",
                attached.xdp, attached.via
            );
            assert_eq!(attached.via, Attachment::PinnedLink, "on this kernel");
            // veth has native XDP.
            assert_eq!(attached.xdp, Some(XdpMode::Driver));
            assert_eq!(first.attached_interfaces().unwrap(), [HOST_IF]);
            let (xdp_link, xdp_prog) = pinned_link(&record.join(XDP_DRIVER_PIN));
            let (tc_link, tc_prog) = pinned_link(&record.join(TC_EGRESS_PIN));
            // `first` drops here, as on a daemon exit.
            (xdp_link, xdp_prog, tc_link, tc_prog)
        })
        .unwrap();

    // The programs are still attached after their process let go ...
    assert_eq!(
        xdp_on(&topo.host, HOST_IF),
        Some((first_xdp, INGRESS_PROGRAM.to_owned(), 1)),
        "XDP program after the Dataplane was dropped"
    );
    assert_eq!(
        tcx_egress(&topo.host, HOST_IF),
        [(first_tc, EGRESS_PROGRAM.to_owned())]
    );
    // ... and still run: a ping passes both hooks, which count it in the
    // pinned verdict map (read by a load that attaches nothing).
    let mut second = pins.load_in(&topo.host);
    let before = verdict_totals(&second);
    topo.client
        .exec(&[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            &HOST_V4.to_string(),
        ])
        .unwrap();
    let after = verdict_totals(&second);
    println!(
        "after the first Dataplane was dropped: verdicts (ingress, egress) {before:?} -> {after:?}"
    );
    assert!(after.0 >= before.0 + 3, "ingress {before:?} -> {after:?}");
    assert!(after.1 >= before.1 + 3, "egress {before:?} -> {after:?}");

    // The next run swaps its programs into the same links.
    let attached = attach_in(&topo.host, &mut second, HOST_IF, Hook::Xdp);
    assert_eq!(attached.via, Attachment::PinnedLink);
    assert_eq!(attached.xdp, Some(XdpMode::Driver));
    let (xdp_link_2, second_xdp) = pinned_link(&record.join(XDP_DRIVER_PIN));
    let (tc_link_2, second_tc) = pinned_link(&record.join(TC_EGRESS_PIN));
    println!(
        "second run: XDP link {xdp_link}: program {first_xdp} -> {second_xdp} (link {xdp_link_2}); \
         tcx link {tc_link}: program {first_tc} -> {second_tc} (link {tc_link_2})"
    );
    assert_eq!((xdp_link_2, tc_link_2), (xdp_link, tc_link), "same links");
    assert_ne!(second_xdp, first_xdp);
    assert_ne!(second_tc, first_tc);
    assert_eq!(
        xdp_on(&topo.host, HOST_IF),
        Some((second_xdp, INGRESS_PROGRAM.to_owned(), 1))
    );
    assert_eq!(
        tcx_egress(&topo.host, HOST_IF),
        [(second_tc, EGRESS_PROGRAM.to_owned())]
    );

    // Detach takes both off at once and forgets the interface.
    topo.host.enter(|| second.detach(HOST_IF)).unwrap().unwrap();
    assert_eq!(xdp_on(&topo.host, HOST_IF), None);
    assert_eq!(tcx_egress(&topo.host, HOST_IF), []);
    assert!(!record.exists(), "{} left behind", record.display());
    assert!(second.attached_interfaces().unwrap().is_empty());
}

#[test]
fn dotted_interface_gets_generic_links_and_a_recreated_one_new_links() {
    let _serial = tests::root_scenario();
    let topo = Topology::new(BackendKind::LocalProcess).unwrap();
    let pins = PinDir::new();
    // A dot in its name (bpffs refuses dots; VLANs have them, but this
    // kernel has no VLAN module) and no native XDP: a bridge.
    const DOTTED: &str = "br.100";
    let add = || {
        topo.host
            .ip(&["link", "add", DOTTED, "type", "bridge"])
            .unwrap();
        topo.host.ip(&["link", "set", DOTTED, "up"]).unwrap();
    };
    add();
    let record = pins.record("br:100");

    let mut dp = pins.load_in(&topo.host);
    let attached = attach_in(&topo.host, &mut dp, DOTTED, Hook::Xdp);
    println!(
        "{DOTTED}: XDP {:?} mode through {}",
        attached.xdp, attached.via
    );
    assert_eq!(attached.via, Attachment::PinnedLink);
    assert_eq!(
        attached.xdp,
        Some(XdpMode::Generic),
        "bridges have no native XDP"
    );
    let (old_link, _) = pinned_link(&record.join(XDP_GENERIC_PIN));
    assert_eq!(dp.attached_interfaces().unwrap(), [DOTTED]);
    assert_eq!(xdp_on(&topo.host, DOTTED).map(|x| x.2), Some(2));

    // The interface goes and comes back: the kernel let go of the old
    // links, so attaching makes new ones instead of updating them.
    topo.host.ip(&["link", "del", DOTTED]).unwrap();
    add();
    let attached = attach_in(&topo.host, &mut dp, DOTTED, Hook::Xdp);
    assert_eq!(attached.via, Attachment::PinnedLink);
    let (new_link, new_prog) = pinned_link(&record.join(XDP_GENERIC_PIN));
    println!("{DOTTED} recreated: XDP link {old_link} -> {new_link}");
    assert_ne!(new_link, old_link);
    assert_eq!(xdp_on(&topo.host, DOTTED).map(|x| x.0), Some(new_prog));

    // Gone for good: detaching only removes the pins.
    topo.host.ip(&["link", "del", DOTTED]).unwrap();
    topo.host.enter(|| dp.detach(DOTTED)).unwrap().unwrap();
    assert!(!record.exists(), "{} left behind", record.display());
    assert!(dp.attached_interfaces().unwrap().is_empty());
}

#[test]
fn earlier_netlink_attachment_is_replaced_in_place_and_detached() {
    let _serial = tests::root_scenario();
    let topo = Topology::new(BackendKind::LocalProcess).unwrap();
    let pins = PinDir::new();
    // What an earlier canaryd left: its pinned programs attached through
    // netlink (XDP slot, clsact filter 49/0xca1).
    let old = pins.load_in(&topo.host);
    topo.host
        .enter(|| {
            attachment::netlink_xdp(HOST_IF, &pins.program(INGRESS_PROGRAM))?;
            attachment::netlink_tc_egress(HOST_IF, &pins.program(EGRESS_PROGRAM))
        })
        .unwrap()
        .unwrap();
    drop(old);
    let (old_xdp, _, _) = xdp_on(&topo.host, HOST_IF).unwrap();
    let (old_tc, _) = tc_filter_on(&topo.host, HOST_IF).unwrap();

    let mut dp = pins.load_in(&topo.host);
    let attached = attach_in(&topo.host, &mut dp, HOST_IF, Hook::Xdp);
    println!(
        "{HOST_IF}: XDP {:?} mode through {}",
        attached.xdp, attached.via
    );
    let Attachment::Netlink { reason } = &attached.via else {
        panic!("expected the netlink path, got {:?}", attached.via);
    };
    assert!(reason.contains("earlier canaryd"), "{reason}");
    assert_eq!(attached.xdp, Some(XdpMode::Driver));
    let (new_xdp, name, mode) = xdp_on(&topo.host, HOST_IF).unwrap();
    let (new_tc, tc_name) = tc_filter_on(&topo.host, HOST_IF).unwrap();
    println!(
        "replaced in place: XDP program {old_xdp} -> {new_xdp}, clsact filter {old_tc} -> {new_tc}"
    );
    assert_eq!((name.as_str(), mode), (INGRESS_PROGRAM, 1));
    assert_eq!(tc_name, EGRESS_PROGRAM);
    assert_ne!(new_xdp, old_xdp);
    assert_ne!(new_tc, old_tc);
    assert_eq!(
        tcx_egress(&topo.host, HOST_IF),
        [],
        "no tcx link beside the filter"
    );

    topo.host.enter(|| dp.detach(HOST_IF)).unwrap().unwrap();
    assert_eq!(xdp_on(&topo.host, HOST_IF), None);
    assert_eq!(tc_filter_on(&topo.host, HOST_IF), None);
    assert!(dp.attached_interfaces().unwrap().is_empty());
}

#[test]
fn an_interface_moves_between_hooks_new_link_first_and_detaches_from_either() {
    let _serial = tests::root_scenario();
    let topo = Topology::new(BackendKind::LocalProcess).unwrap();
    let pins = PinDir::new();
    let record = pins.record(HOST_IF);
    let mut dp = pins.load_in(&topo.host);
    let mut attach = |hook| attach_in(&topo.host, &mut dp, HOST_IF, hook);

    let at_xdp = attach(Hook::Xdp);
    assert_eq!(at_xdp.xdp, Some(XdpMode::Driver));
    assert!(record.join(XDP_DRIVER_PIN).exists());

    // To TC: a tcx ingress link runs canary_ingress_tc; the XDP link is gone.
    let at_tc = attach(Hook::Tc);
    println!("{HOST_IF} at tc: {} through {}", at_tc.ingress(), at_tc.via);
    assert_eq!((at_tc.hook, at_tc.xdp), (Hook::Tc, None));
    assert_eq!(at_tc.via, Attachment::PinnedLink);
    let (_, tc_prog) = pinned_link(&record.join(TC_INGRESS_PIN));
    // The kernel keeps 15 bytes of a program's name.
    assert_eq!(
        tcx(&topo.host, HOST_IF, TcAttachType::Ingress),
        [(tc_prog, INGRESS_TC_PROGRAM[..15].to_owned())]
    );
    assert!(!record.join(XDP_DRIVER_PIN).exists());
    assert_eq!(xdp_on(&topo.host, HOST_IF), None, "XDP let go");
    assert_eq!(tcx_egress(&topo.host, HOST_IF).len(), 1);

    // The same hook again swaps the program into the same link.
    let (link, _) = pinned_link(&record.join(TC_INGRESS_PIN));
    attach(Hook::Tc);
    assert_eq!(pinned_link(&record.join(TC_INGRESS_PIN)).0, link);

    // And back to XDP: the tcx ingress link goes.
    attach(Hook::Xdp);
    assert!(record.join(XDP_DRIVER_PIN).exists());
    assert!(!record.join(TC_INGRESS_PIN).exists());
    assert!(tcx(&topo.host, HOST_IF, TcAttachType::Ingress).is_empty());
    assert_eq!(
        xdp_on(&topo.host, HOST_IF).map(|(_, name, _)| name),
        Some(INGRESS_PROGRAM.to_owned())
    );

    // Detach (what --detach-all does per interface) from the TC hook takes
    // everything off.
    attach(Hook::Tc);
    topo.host.enter(|| dp.detach(HOST_IF)).unwrap().unwrap();
    assert!(!record.exists());
    assert!(tcx(&topo.host, HOST_IF, TcAttachType::Ingress).is_empty());
    assert!(tcx_egress(&topo.host, HOST_IF).is_empty());
    assert_eq!(xdp_on(&topo.host, HOST_IF), None);
}
