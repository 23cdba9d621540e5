//! What the kernel runs on an interface, asked of the kernel itself, so
//! status never repeats what canaryd believes it attached. Anyone with
//! root can take the programs off behind the daemon's back (BPF_LINK_DETACH
//! on a pinned link, `bpftool`, another canaryd, `ip link set ... xdp`):
//! only the kernel knows.
//!
//! - XDP: RTM_GETLINK for the interface's index; IFLA_XDP says which
//!   program id runs and in which mode (as `ip link show` does).
//! - tc ingress and egress: BPF_PROG_QUERY on BPF_TCX_INGRESS and
//!   BPF_TCX_EGRESS lists the tcx programs.
//! - maps: each pin under `<pin dir>/maps` must still be the map the
//!   programs were loaded with (same map id).
//!
//! Only ids are compared: turning an id into a descriptor needs
//! CAP_SYS_ADMIN, which the daemon drops after start (see `caps`).

use std::{io, path::PathBuf};

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};

use super::sys::{self, BPF_TCX_EGRESS, BPF_TCX_INGRESS};
use crate::{
    host::netlink,
    model::kinds::{Hook, XdpMode},
};

/// Why the kernel could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("asking the kernel for the XDP program on ifindex {ifindex} (RTM_GETLINK): {source}")]
    Netlink { ifindex: u32, source: io::Error },
    #[error(
        "asking the kernel for the tcx {direction} programs on ifindex {ifindex} (BPF_PROG_QUERY): {source}"
    )]
    Query {
        ifindex: u32,
        direction: &'static str,
        source: io::Error,
    },
}

/// canaryd's own programs and the maps they were loaded with: what the
/// kernel should run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// XDP ingress.
    pub ingress_id: u32,
    /// TC ingress (interfaces with hook = "tc").
    pub ingress_tc_id: u32,
    pub egress_id: u32,
    /// Each pinned map and the id it had when the programs were loaded;
    /// empty without a pin directory.
    pub maps: Vec<(PathBuf, u32)>,
}

impl Expected {
    /// canary's ingress program at `hook`.
    pub fn ingress_for(&self, hook: Hook) -> u32 {
        match hook {
            Hook::Xdp => self.ingress_id,
            Hook::Tc => self.ingress_tc_id,
        }
    }
}

/// What the kernel runs on one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// The XDP program's id and mode, None when there is none.
    pub xdp: Option<(u32, Option<XdpMode>)>,
    /// The tcx ingress programs' ids, in run order.
    pub tcx_ingress: Vec<u32>,
    /// The tcx egress programs' ids, in run order.
    pub tcx_egress: Vec<u32>,
}

/// Reads the hooks of the interface with index `ifindex` (in this thread's
/// network namespace).
pub fn hooks(ifindex: u32) -> Result<Hooks, InspectError> {
    let xdp = xdp_program(ifindex).map_err(|source| InspectError::Netlink { ifindex, source })?;
    let query = |attach_type, direction| {
        sys::tcx_program_ids(ifindex, attach_type).map_err(|source| InspectError::Query {
            ifindex,
            direction,
            source,
        })
    };
    Ok(Hooks {
        xdp,
        tcx_ingress: query(BPF_TCX_INGRESS, "ingress")?,
        tcx_egress: query(BPF_TCX_EGRESS, "egress")?,
    })
}

/// Program ids as a list, for messages.
fn ids(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with `hooks` against `expected`, in words; None when the
/// kernel runs canary's programs. `hook` is where ingress was attached
/// (with TC, what runs at XDP is not canary's business); `tcx` says whether
/// egress was attached with tcx (the netlink fallback's clsact filter is
/// not listed by BPF_PROG_QUERY and is not checked here).
pub fn hook_problem(expected: &Expected, hooks: &Hooks, hook: Hook, tcx: bool) -> Option<String> {
    let mut problems = vec![];
    match (hook, hooks.xdp) {
        (Hook::Tc, _) => {
            if !hooks.tcx_ingress.contains(&expected.ingress_tc_id) {
                problems.push(format!(
                    "canary's tc ingress program (id {}) is not attached (tcx ingress runs [{}])",
                    expected.ingress_tc_id,
                    ids(&hooks.tcx_ingress)
                ));
            }
        }
        (Hook::Xdp, None) => problems.push(format!(
            "canary's XDP program (id {}) is not attached: the kernel runs no XDP program here",
            expected.ingress_id
        )),
        (Hook::Xdp, Some((id, _))) if id != expected.ingress_id => problems.push(format!(
            "XDP runs program id {id}, not canary's (id {}): it was replaced behind canaryd's back",
            expected.ingress_id
        )),
        (Hook::Xdp, Some(_)) => {}
    }
    if tcx && !hooks.tcx_egress.contains(&expected.egress_id) {
        problems.push(format!(
            "canary's tc egress program (id {}) is not attached (tcx egress runs [{}])",
            expected.egress_id,
            ids(&hooks.tcx_egress)
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Whether the pinned maps are still the ones the programs use; the
/// problem in words when not. A restart would load the programs with what
/// the pins hold now, losing weights, flows or counters.
pub fn maps_problem(expected: &Expected) -> Option<String> {
    let mut problems = vec![];
    for (path, id) in &expected.maps {
        match sys::pinned_map_id(path) {
            Ok(now) if now == *id => {}
            Ok(now) => problems.push(format!(
                "the pin {} is map id {now}, not the map canary's programs use (id {id})",
                path.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => problems.push(format!(
                "the pin {} is gone (the programs still use map id {id}; a restart would start from empty maps)",
                path.display()
            )),
            Err(e) => problems.push(format!("the pin {}: {e}", path.display())),
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The XDP program id and mode that RTM_GETLINK reports for `ifindex`.
fn xdp_program(ifindex: u32) -> io::Result<Option<(u32, Option<XdpMode>)>> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    netlink::ask(RouteNetlinkMessage::GetLink(link), |reply| match reply {
        RouteNetlinkMessage::NewLink(link) if link.header.index == ifindex => Some(xdp_of(&link)),
        _ => None,
    })
}

/// IFLA_XDP of one link message: the program id and the mode.
fn xdp_of(link: &LinkMessage) -> Option<(u32, Option<XdpMode>)> {
    let xdp = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(x) => Some(x),
        _ => None,
    })?;
    let mut id = None;
    let mut mode = None;
    for attr in xdp {
        match attr {
            LinkXdp::ProgId(p) if *p != 0 => id = Some(*p),
            LinkXdp::Attached(XdpAttached::Driver) => mode = Some(XdpMode::Driver),
            LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(XdpMode::Generic),
            _ => {}
        }
    }
    id.map(|id| (id, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            ingress_id: 10,
            ingress_tc_id: 12,
            egress_id: 11,
            maps: vec![],
        }
    }

    #[test]
    fn canary_programs_are_no_problem() {
        let hooks = Hooks {
            xdp: Some((10, Some(XdpMode::Driver))),
            tcx_egress: vec![3, 11],
            ..Hooks::default()
        };
        assert_eq!(hook_problem(&expected(), &hooks, Hook::Xdp, true), None);
        let tc = Hooks {
            xdp: None,
            tcx_ingress: vec![12],
            tcx_egress: vec![11],
        };
        assert_eq!(hook_problem(&expected(), &tc, Hook::Tc, true), None);
    }

    #[test]
    fn detached_and_replaced_programs_are_named() {
        let none = Hooks::default();
        assert_eq!(
            hook_problem(&expected(), &none, Hook::Xdp, true).unwrap(),
            "canary's XDP program (id 10) is not attached: the kernel runs no XDP program here; \
             canary's tc egress program (id 11) is not attached (tcx egress runs [])"
        );
        let other = Hooks {
            xdp: Some((99, None)),
            tcx_egress: vec![11],
            ..Hooks::default()
        };
        assert_eq!(
            hook_problem(&expected(), &other, Hook::Xdp, true).unwrap(),
            "XDP runs program id 99, not canary's (id 10): it was replaced behind canaryd's back"
        );
        // The netlink fallback's egress filter is not a tcx program.
        let netlink = Hooks {
            xdp: Some((10, None)),
            tcx_egress: vec![],
            ..Hooks::default()
        };
        assert_eq!(hook_problem(&expected(), &netlink, Hook::Xdp, false), None);
    }

    #[test]
    fn a_tc_interface_without_canarys_tc_ingress_program_is_detached() {
        // Canary's XDP program left on the interface does not stand in.
        let hooks = Hooks {
            xdp: Some((10, Some(XdpMode::Driver))),
            tcx_ingress: vec![7],
            tcx_egress: vec![11],
        };
        assert_eq!(
            hook_problem(&expected(), &hooks, Hook::Tc, true).unwrap(),
            "canary's tc ingress program (id 12) is not attached (tcx ingress runs [7])"
        );
    }

    #[test]
    fn a_missing_pin_is_a_problem() {
        let e = Expected {
            maps: vec![("/nonexistent/canary/maps/FLOWS".into(), 5)],
            ..expected()
        };
        assert_eq!(
            maps_problem(&e).unwrap(),
            "the pin /nonexistent/canary/maps/FLOWS is gone (the programs still use map id 5; \
             a restart would start from empty maps)"
        );
    }
}
