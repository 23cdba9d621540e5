//! Attachments that outlive canaryd, so a crash or restart never takes the
//! data path down.
//!
//! Primary path: two bpf_links pinned in the interface's record directory
//! (`<pin dir>/v3/interfaces/<iface>/`): the ingress link, `xdp-driver` or
//! `xdp-generic` (named by the XDP mode) or `tcx-ingress` (hook = "tc"), and
//! `tcx-egress`. A pinned link is ours by construction and holds our
//! program until its pin is removed. A restart opens the pins and swaps its
//! program in with BPF_LINK_UPDATE: no packet sees no program, and the new
//! program uses the same pinned maps. An interface whose hook changed gets
//! its new ingress link before the old one is detached.
//!
//! bpffs refuses every name with a dot with EPERM (the kernel reserves them:
//! `bpf_lookup` in kernel/bpf/inode.c). Pinning links as `<iface>.xdp` hit
//! exactly that, which was once taken for "this kernel cannot pin links".
//! Interface names may have dots (`eth0.100`) and never a ':', so record
//! directories spell the dots as ':'.
//!
//! Fallback, only when the kernel refuses an XDP or tcx link or a link pin,
//! or when an earlier canaryd attached the interface that way: the
//! interface's netlink XDP slot and a clsact egress filter, made with
//! iproute2 from the pinned programs and inspected with `ip -json` and
//! `tc -json`. The TC ingress hook has no fallback: it exists to be cheaper
//! on virtual interfaces of current kernels, and an interface where tcx is
//! refused is told to use XDP.
//!
//! Why iproute2 there and not aya's netlink attach (`Xdp::attach` without
//! links, `qdisc_add_clsact`): aya 0.14 attaches a program it loaded in this
//! process and detaches it when the link is dropped, while the fallback must
//! attach the *pinned* program by path (`ip link set ... pinned`, `tc
//! filter ... object-pinned`) so that it keeps running after canaryd exits,
//! and find an earlier run's attachment by name (`ip -json`, `tc -json`).

use std::{fmt, fs, io, path::Path, process::Command};

use aya::{
    Ebpf,
    pin::PinError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
    sys::SyscallError,
};

use canary_common::names::{EGRESS_PROGRAM, INGRESS_PROGRAM, INGRESS_TC_PROGRAM};

use super::sys;
use crate::{
    error::{Error, Result},
    host::interfaces::{interface_exists, interface_index},
    kernel::inspect,
    model::kinds::Hook,
};

/// Pins in an interface's record directory.
pub const XDP_DRIVER_PIN: &str = "xdp-driver";
pub const XDP_GENERIC_PIN: &str = "xdp-generic";
pub const TC_INGRESS_PIN: &str = "tcx-ingress";
pub const TC_EGRESS_PIN: &str = "tcx-egress";
const XDP_PINS: [&str; 2] = [XDP_DRIVER_PIN, XDP_GENERIC_PIN];
const LINK_PINS: [&str; 4] = [
    XDP_DRIVER_PIN,
    XDP_GENERIC_PIN,
    TC_INGRESS_PIN,
    TC_EGRESS_PIN,
];

/// Netlink fallback: preference and handle of our egress filter, fixed so a
/// restart replaces our filter instead of adding a second one.
const TC_PREF: &str = "49";
const TC_HANDLE: &str = "0xca1";

pub use crate::model::kinds::XdpMode;

/// Which mechanism holds the programs on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// bpf_links pinned in the interface's record directory: ours, kept
    /// after canaryd exits, updated in place by the next run.
    PinnedLink,
    /// bpf_links held only by this process (no pin directory: tests); they
    /// go when it exits.
    ProcessLink,
    /// The netlink XDP slot and a clsact egress filter (iproute2), and why
    /// pinned links were not used.
    Netlink { reason: String },
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attachment::PinnedLink => f.write_str("pinned bpf_links"),
            Attachment::ProcessLink => f.write_str("bpf_links held by this process"),
            Attachment::Netlink { reason } => {
                write!(f, "netlink XDP and a clsact egress filter ({reason})")
            }
        }
    }
}

/// What `Dataplane::attach` did on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Where ingress runs.
    pub hook: Hook,
    /// How XDP ingress is attached; None with the TC hook.
    pub xdp: Option<XdpMode>,
    pub via: Attachment,
}

impl Attached {
    /// Where ingress runs, in words: "XDP in driver mode", "tc ingress (tcx)".
    pub fn ingress(&self) -> String {
        match self.xdp {
            Some(mode) => format!("XDP in {mode} mode"),
            None => "tc ingress (tcx)".into(),
        }
    }
}

/// Why pinned links are not used on an interface; the caller attaches
/// through netlink instead.
struct Refused(String);

/// A step that may fail outright (`Err`) or be refused by the kernel in a
/// way the netlink fallback covers (`Ok(Err(_))`).
type Step<T> = Result<Result<T, Refused>>;

/// Attaches ingress (at `hook`) and TC egress to `interface` so that they
/// outlive this process: pinned links in `record` when the kernel allows,
/// else (XDP only) netlink attachments of the programs pinned in
/// `programs`. Links pinned there by an earlier run get this run's programs
/// atomically; an ingress link at the other hook is detached once the new
/// one runs.
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    hook: Hook,
    record: &Path,
    programs: &Path,
) -> Result<Attached> {
    match hook {
        Hook::Xdp => attach_xdp(ebpf, interface, record, programs),
        Hook::Tc => attach_tc(ebpf, interface, record),
    }
}

/// Ingress at TC: the tcx ingress and egress links, then (new before old)
/// whatever XDP program of canary's an earlier run left on the interface.
fn attach_tc(ebpf: &mut Ebpf, interface: &str, record: &Path) -> Result<Attached> {
    let refused = |Refused(reason)| Error::TcHookRefused {
        interface: interface.to_owned(),
        reason,
    };
    let persistent = |source| Error::Persistent {
        interface: interface.to_owned(),
        source,
    };
    for (name, attach_type, pin) in [
        (INGRESS_TC_PROGRAM, TcAttachType::Ingress, TC_INGRESS_PIN),
        (EGRESS_PROGRAM, TcAttachType::Egress, TC_EGRESS_PIN),
    ] {
        pinned_tcx(ebpf, interface, record, name, attach_type, pin)?.map_err(refused)?;
    }
    let had_xdp_link = remove_pins(record, &XDP_PINS).map_err(persistent)?;
    // An earlier canaryd's netlink attachment (no link pins): its XDP
    // program and egress filter go; asked of the kernel first, so iproute2
    // runs only when some XDP program is there.
    let xdp_runs = interface_index(interface)
        .and_then(|i| inspect::hooks(i).ok())
        .is_some_and(|h| h.xdp.is_some());
    if !had_xdp_link && xdp_runs {
        detach_netlink(interface).map_err(persistent)?;
    }
    Ok(Attached {
        hook: Hook::Tc,
        xdp: None,
        via: Attachment::PinnedLink,
    })
}

/// Ingress at XDP: pinned XDP and tcx egress links, or the netlink
/// fallback; then a tcx ingress link an earlier run made goes.
fn attach_xdp(
    ebpf: &mut Ebpf,
    interface: &str,
    record: &Path,
    programs: &Path,
) -> Result<Attached> {
    let persistent = |source| Error::Persistent {
        interface: interface.to_owned(),
        source,
    };
    let refused = match pinned_xdp(ebpf, interface, record)? {
        Ok(xdp) => match pinned_tcx(
            ebpf,
            interface,
            record,
            EGRESS_PROGRAM,
            TcAttachType::Egress,
            TC_EGRESS_PIN,
        )? {
            Ok(()) => {
                remove_pins(record, &[TC_INGRESS_PIN]).map_err(persistent)?;
                return Ok(Attached {
                    hook: Hook::Xdp,
                    xdp: Some(xdp),
                    via: Attachment::PinnedLink,
                });
            }
            Err(refused) => {
                // XDP and TC go the same way; nothing was attached before
                // this XDP link (else tcx would have been pinned too).
                remove_link_pins(record).map_err(|source| Error::Persistent {
                    interface: interface.to_owned(),
                    source,
                })?;
                refused
            }
        },
        Err(refused) => refused,
    };
    let Refused(reason) = refused;
    log::warn!("{interface}: attaching through netlink instead of pinned bpf_links: {reason}");
    let netlink_err = |source| Error::Persistent {
        interface: interface.to_owned(),
        source,
    };
    let xdp = netlink_xdp(interface, &programs.join(INGRESS_PROGRAM)).map_err(netlink_err)?;
    netlink_tc_egress(interface, &programs.join(EGRESS_PROGRAM)).map_err(netlink_err)?;
    remove_pins(record, &[TC_INGRESS_PIN]).map_err(netlink_err)?;
    Ok(Attached {
        hook: Hook::Xdp,
        xdp: Some(xdp),
        via: Attachment::Netlink { reason },
    })
}

/// Takes canary's programs off `interface` and removes its record
/// directory. Link pins are detached (BPF_LINK_DETACH, so they are off when
/// this returns) and removed; without link pins, a netlink attachment that
/// `ip -json`/`tc -json` show to be ours is removed. An interface that no
/// longer exists has nothing attached: only its pins go.
pub fn detach(interface: &str, record: &Path) -> io::Result<()> {
    if !remove_link_pins(record)? && interface_exists(interface) {
        detach_netlink(interface)?;
    }
    match fs::remove_dir(record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The XDP link: the pinned one updated, or a new one (driver mode, else
/// generic with a warning) pinned.
fn pinned_xdp(ebpf: &mut Ebpf, interface: &str, record: &Path) -> Step<XdpMode> {
    let attach_err = |source| Error::Attach {
        interface: interface.to_owned(),
        source,
    };
    let xdp: &mut Xdp = program(ebpf, INGRESS_PROGRAM)?;
    for (mode, name) in [
        (XdpMode::Driver, XDP_DRIVER_PIN),
        (XdpMode::Generic, XDP_GENERIC_PIN),
    ] {
        let path = record.join(name);
        let Some(link) = open_pin(&path)? else {
            continue;
        };
        let link = XdpLink::try_from(link).map_err(|source| Error::Link {
            path: path.clone(),
            source,
        })?;
        match xdp.attach_to_link(link) {
            Ok(id) => {
                // Our descriptor goes; the pin keeps the link and its new program.
                drop(xdp.take_link(id).map_err(attach_err)?);
                return Ok(Ok(mode));
            }
            Err(e) if errno(&e) == Some(libc::ENOLINK) => forget_defunct(interface, &path)?,
            Err(e) => return Err(attach_err(e)),
        }
    }
    let (mode, id) = match xdp.attach(interface, aya::programs::XdpMode::Driver) {
        Ok(id) => (XdpMode::Driver, id),
        Err(e) if occupied(&e) => return occupied_xdp(interface, e),
        Err(e) => {
            log::warn!(
                "{interface}: driver-mode XDP failed ({}); using generic mode, which is slower",
                chain(&e)
            );
            match xdp.attach(interface, aya::programs::XdpMode::Skb) {
                Ok(id) => (XdpMode::Generic, id),
                Err(e) if occupied(&e) => return occupied_xdp(interface, e),
                Err(e) => return Err(attach_err(e)),
            }
        }
    };
    let link = xdp.take_link(id).map_err(attach_err)?;
    let Ok(link) = FdLink::try_from(link) else {
        // aya attaches through netlink itself when BPF_LINK_CREATE says
        // EINVAL; that attachment stays, the fallback replaces it in place.
        return Ok(Err(Refused(
            "this kernel has no XDP bpf_links (BPF_LINK_CREATE: EINVAL)".into(),
        )));
    };
    let name = match mode {
        XdpMode::Driver => XDP_DRIVER_PIN,
        XdpMode::Generic => XDP_GENERIC_PIN,
    };
    Ok(pin(link, &record.join(name))?.map(|()| mode))
}

/// A tcx link of program `name` at `attach_type`, pinned as `pin_name`:
/// the pinned one updated, or a new one pinned.
fn pinned_tcx(
    ebpf: &mut Ebpf,
    interface: &str,
    record: &Path,
    name: &'static str,
    attach_type: TcAttachType,
    pin_name: &str,
) -> Step<()> {
    let attach_err = |source| Error::Attach {
        interface: interface.to_owned(),
        source,
    };
    let tc: &mut SchedClassifier = program(ebpf, name)?;
    let path = record.join(pin_name);
    if let Some(link) = open_pin(&path)? {
        let link = SchedClassifierLink::try_from(link).map_err(|source| Error::Link {
            path: path.clone(),
            source,
        })?;
        match tc.attach_to_link(link) {
            Ok(id) => {
                drop(tc.take_link(id).map_err(attach_err)?);
                return Ok(Ok(()));
            }
            Err(e) if errno(&e) == Some(libc::ENOLINK) => forget_defunct(interface, &path)?,
            Err(e) => return Err(attach_err(e)),
        }
    }
    let id = match tc.attach_with_options(
        interface,
        attach_type,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(id) => id,
        Err(e) if errno(&e) == Some(libc::EINVAL) => {
            return Ok(Err(Refused(
                "this kernel has no tcx links (Linux 6.6+; BPF_LINK_CREATE: EINVAL)".into(),
            )));
        }
        Err(e) => return Err(attach_err(e)),
    };
    let link = tc.take_link(id).map_err(attach_err)?;
    let link = FdLink::try_from(link).map_err(|source| Error::Link {
        path: path.clone(),
        source,
    })?;
    pin(link, &path)
}

/// Pins `link` at `path`. Only EINVAL (the kernel does not know how to pin
/// this object) is a refusal; any other error is ours to fix.
fn pin(link: FdLink, path: &Path) -> Step<()> {
    match link.pin(path) {
        // Dropping the PinnedLink closes our descriptor; the pin holds the link.
        Ok(_) => Ok(Ok(())),
        Err(PinError::SyscallError(SyscallError { io_error, .. }))
            if io_error.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(Err(Refused(format!(
                "this kernel cannot pin bpf_links (BPF_OBJ_PIN: {io_error})"
            ))))
        }
        Err(e) => Err(Error::Pin {
            path: path.to_owned(),
            what: chain(&e),
        }),
    }
}

/// Removes the pin of a link whose interface went away (the kernel let go
/// of it: BPF_LINK_UPDATE says ENOLINK), so a new link can be made on the
/// interface of that name.
fn forget_defunct(interface: &str, path: &Path) -> Result<()> {
    log::info!(
        "{interface}: {} belonged to an earlier interface of this name; making a new link",
        path.display()
    );
    fs::remove_file(path).map_err(|source| Error::Persistent {
        interface: interface.to_owned(),
        source,
    })
}

/// The link pinned at `path`, or None when nothing is pinned there.
fn open_pin(path: &Path) -> Result<Option<FdLink>> {
    match PinnedLink::from_pin(path) {
        Ok(pinned) => Ok(Some(pinned.into())),
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(source) => Err(Error::Link {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Detaches and removes every link pin in `record`; returns whether there
/// was one.
fn remove_link_pins(record: &Path) -> io::Result<bool> {
    remove_pins(record, &LINK_PINS)
}

/// Detaches and removes the link pins `names` in `record`; returns whether
/// there was one.
fn remove_pins(record: &Path, names: &[&str]) -> io::Result<bool> {
    let mut found = false;
    for &name in names {
        let path = record.join(name);
        if !path.exists() {
            continue;
        }
        found = true;
        if let Err(e) = sys::detach_link(&path) {
            // Removing the pin still releases the link, a moment later.
            log::warn!("{}: BPF_LINK_DETACH failed: {e}", path.display());
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(found)
}

/// True when attaching failed because the interface's XDP hook is taken
/// (EBUSY: a program or link in that mode; EEXIST: one in the other mode).
fn occupied(e: &ProgramError) -> bool {
    matches!(errno(e), Some(libc::EBUSY | libc::EEXIST))
}

/// The XDP hook is taken: by our own netlink attachment from an earlier
/// canaryd (kept that way: replacing it with a link would leave a moment
/// without a program), or by someone else's program (an error).
fn occupied_xdp(interface: &str, e: ProgramError) -> Step<XdpMode> {
    let found = xdp_program_on(interface).map_err(|source| Error::Persistent {
        interface: interface.to_owned(),
        source,
    })?;
    match found {
        Some(p) if p.name == INGRESS_PROGRAM => Ok(Err(Refused(format!(
            "an earlier canaryd attached {interface} through netlink (XDP program id {}); \
             it is replaced in place; `canaryd --detach-all` and a start move it to pinned links",
            p.id
        )))),
        Some(p) => Err(Error::Occupied {
            interface: interface.to_owned(),
            program: format!("{} (id {})", p.name, p.id),
        }),
        None => Err(Error::Attach {
            interface: interface.to_owned(),
            source: e,
        }),
    }
}

/// A program attached to an interface, as `ip -json` / `tc -json` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    pub id: u64,
    pub name: String,
    /// XDP only: IFLA_XDP_ATTACHED, 1 driver, 2 generic, 3 offloaded.
    pub mode: u64,
}

/// The XDP program on `interface` (in this thread's network namespace),
/// or None.
pub fn xdp_program_on(interface: &str) -> io::Result<Option<AttachedProgram>> {
    let links: serde_json::Value = json("ip", &["-json", "link", "show", "dev", interface])?;
    let Some(xdp) = links.get(0).and_then(|l| l.get("xdp")) else {
        return Ok(None);
    };
    let prog = &xdp["prog"];
    Ok(Some(AttachedProgram {
        id: prog["id"].as_u64().unwrap_or_default(),
        name: prog["name"].as_str().unwrap_or_default().to_owned(),
        mode: xdp["mode"].as_u64().unwrap_or_default(),
    }))
}

/// The program of our netlink egress filter (preference and handle) on
/// `interface`, when `tc -json` shows one running `canary_egress`.
pub fn our_tc_filter_on(interface: &str) -> io::Result<Option<AttachedProgram>> {
    let Ok(filters) = json(
        "tc",
        &["-json", "filter", "show", "dev", interface, "egress"],
    ) else {
        // No clsact qdisc: no filter.
        return Ok(None);
    };
    let ours = |f: &serde_json::Value| {
        let prog = &f["options"]["prog"];
        (f["pref"].as_u64().map(|p| p.to_string()).as_deref() == Some(TC_PREF)
            && f["options"]["handle"].as_str() == Some(TC_HANDLE)
            && prog["name"].as_str() == Some(EGRESS_PROGRAM))
        .then(|| AttachedProgram {
            id: prog["id"].as_u64().unwrap_or_default(),
            name: EGRESS_PROGRAM.to_owned(),
            mode: 0,
        })
    };
    Ok(filters.as_array().and_then(|a| a.iter().find_map(ours)))
}

/// Removes our netlink XDP program and egress filter, when present.
fn detach_netlink(interface: &str) -> io::Result<()> {
    if let Some(p) = xdp_program_on(interface)?
        && p.name == INGRESS_PROGRAM
    {
        let slot = match p.mode {
            1 => "xdpdrv",
            2 => "xdpgeneric",
            3 => "xdpoffload",
            _ => "xdp",
        };
        run("ip", &["link", "set", "dev", interface, slot, "off"])?;
    }
    if our_tc_filter_on(interface)?.is_some() {
        run(
            "tc",
            &[
                "filter", "del", "dev", interface, "egress", "pref", TC_PREF, "handle", TC_HANDLE,
                "bpf",
            ],
        )?;
    }
    Ok(())
}

/// Netlink fallback: attaches (or atomically replaces) the XDP program
/// pinned at `prog`, in driver mode when the driver supports it, else in
/// generic mode. `-force` replaces; an earlier run's program is the only
/// one found here (a foreign one stopped `attach` before).
pub fn netlink_xdp(interface: &str, prog: &Path) -> io::Result<XdpMode> {
    let pinned = prog.to_string_lossy();
    let set = |slot: &str| {
        run(
            "ip",
            &[
                "-force", "link", "set", "dev", interface, slot, "pinned", &pinned,
            ],
        )
    };
    // Only one mode can hold a program; clear the other after switching.
    match set("xdpdrv") {
        Ok(()) => {
            let _ = run(
                "ip",
                &["link", "set", "dev", interface, "xdpgeneric", "off"],
            );
            Ok(XdpMode::Driver)
        }
        Err(driver) => {
            log::warn!(
                "{interface}: driver-mode XDP failed ({driver}); using generic mode, which is slower"
            );
            let _ = run("ip", &["link", "set", "dev", interface, "xdpdrv", "off"]);
            set("xdpgeneric")?;
            Ok(XdpMode::Generic)
        }
    }
}

/// Netlink fallback: attaches (or atomically replaces) the TC egress
/// program pinned at `prog` as our clsact filter.
pub fn netlink_tc_egress(interface: &str, prog: &Path) -> io::Result<()> {
    let pinned = prog.to_string_lossy();
    run("tc", &["qdisc", "replace", "dev", interface, "clsact"])?;
    run(
        "tc",
        &[
            "filter",
            "replace",
            "dev",
            interface,
            "egress",
            "pref",
            TC_PREF,
            "handle",
            TC_HANDLE,
            "bpf",
            "direct-action",
            "object-pinned",
            &pinned,
        ],
    )
}

/// The errno of a failed bpf(2) call inside `e`.
fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(SyscallError { io_error, .. }) => io_error.raw_os_error(),
        _ => None,
    }
}

/// An error with its sources: aya's syscall errors show the errno only
/// there.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        text = format!("{text}: {source}");
        next = source.source();
    }
    text
}

/// Runs an iproute2 command with JSON output and parses it.
fn json(program: &str, args: &[&str]) -> io::Result<serde_json::Value> {
    let out = output(program, args)?;
    serde_json::from_slice(&out).map_err(|e| {
        io::Error::other(format!(
            "`{program} {}`: unreadable JSON: {e}",
            args.join(" ")
        ))
    })
}

/// Runs an iproute2 command; the error carries its stderr.
fn run(program: &str, args: &[&str]) -> io::Result<()> {
    output(program, args).map(drop)
}

fn output(program: &str, args: &[&str]) -> io::Result<Vec<u8>> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("running {program} (iproute2 is needed for netlink attachments): {e}"),
        )
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(io::Error::other(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A program of the loaded object, as its type.
pub(crate) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(Error::Missing {
        kind: "program",
        name,
    })?;
    prog.try_into()
        .map_err(|source| Error::Program { name, source })
}
