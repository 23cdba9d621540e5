//! Attachments that outlive canaryd, so a crash or restart never takes the
//! data path down: XDP through the interface's netlink XDP slot and TC
//! egress as a clsact filter, both made with iproute2 from programs pinned
//! in bpffs.
//!
//! Why not pinned bpf_links (tcx): this kernel refuses BPF_OBJ_PIN of link
//! objects with EPERM (seen for XDP and tcx links alike, as root, while map
//! and program pins work), and an unpinned link dies with the process.
//! Netlink attachments belong to the interface instead. Re-attaching
//! replaces the program atomically (no packet sees no program), and the new
//! program uses the same pinned maps, so flows carry on.

use std::{io, path::Path, process::Command};

use canary_common::names::INGRESS_PROGRAM;

pub use crate::kinds::XdpMode;

/// Filter preference and handle of our egress filter: fixed, so a restart
/// replaces our filter instead of adding a second one.
const TC_PREF: &str = "49";
const TC_HANDLE: &str = "0xca1";

/// Attaches (or atomically replaces) the XDP program pinned at `prog`,
/// in driver mode when the driver supports it, else in generic mode.
pub fn attach_xdp(interface: &str, prog: &Path) -> io::Result<XdpMode> {
    let pinned = prog.to_string_lossy();
    // Only one mode can hold a program; clear the other before switching.
    match run(
        "ip",
        &[
            "-force", "link", "set", "dev", interface, "xdpdrv", "pinned", &pinned,
        ],
    ) {
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
            run(
                "ip",
                &[
                    "-force",
                    "link",
                    "set",
                    "dev",
                    interface,
                    "xdpgeneric",
                    "pinned",
                    &pinned,
                ],
            )?;
            Ok(XdpMode::Generic)
        }
    }
}

/// Attaches (or atomically replaces) the TC egress program pinned at `prog`.
pub fn attach_tc_egress(interface: &str, prog: &Path) -> io::Result<()> {
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

/// Removes both attachments from `interface`; an interface that is gone or
/// has none is not an error.
pub fn detach(interface: &str) -> io::Result<()> {
    let Some(link) = show(interface) else {
        return Ok(());
    };
    // Only ever take off our own program.
    if link.contains(&format!("name {INGRESS_PROGRAM} ")) {
        run("ip", &["link", "set", "dev", interface, "xdpdrv", "off"])?;
        run(
            "ip",
            &["link", "set", "dev", interface, "xdpgeneric", "off"],
        )?;
    }
    // The filter may already be gone (clsact removed by someone else).
    let _ = run(
        "tc",
        &[
            "filter", "del", "dev", interface, "egress", "pref", TC_PREF, "handle", TC_HANDLE,
            "bpf",
        ],
    );
    Ok(())
}

/// `ip link show dev <interface>`, or None when there is no such interface.
fn show(interface: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["link", "show", "dev", interface])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs an iproute2 command; the error carries its stderr.
fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("running {program} (iproute2 is needed): {e}"),
        )
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
