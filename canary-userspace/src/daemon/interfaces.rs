//! The configured interfaces against what the kernel runs on them now.

use std::collections::BTreeSet;

use super::Daemon;
use crate::{
    api::InterfaceStatus,
    kernel::dataplane::Attachment,
    kernel::inspect::{self, Expected},
    model::kinds::Hook,
};

impl Daemon {
    /// Compares every configured interface with the kernel (its index now)
    /// and acts on the difference. One that is gone is reported detached:
    /// its XDP and tcx links died with the device. One that is back, or
    /// replaced by a new device of the same name, gets the programs again
    /// (the dead link pins are replaced, see `attachment`). Link events only
    /// say that something may have changed; this looks at what is, so
    /// bursts, lost or reordered events change nothing. Then it asks the
    /// kernel what runs on each interface (`inspect`): a program detached
    /// or replaced behind canaryd's back, or pinned maps that are not the
    /// programs' maps, is logged once per change, counted and shown in
    /// status; such an interface is attached again only when `repair` (a
    /// reload) says so, never on its own: that would fight whoever did it.
    /// Returns whether anything changed.
    pub fn check_interfaces(&mut self, repair: bool) -> bool {
        let mut changed = false;
        let maps_problem = inspect::maps_problem(&self.expected);
        for iface in &mut self.interfaces {
            let name = iface.name.clone();
            let now = crate::host::interfaces::interface_index(&name).unwrap_or(0);
            if now == 0 {
                if iface.attached || iface.ifindex != 0 {
                    log::warn!(
                        "{name}: the interface is gone (was ifindex {}); nothing is served on it until an interface of that name comes back",
                        iface.ifindex
                    );
                    iface.attached = false;
                    iface.ifindex = 0;
                    iface.problem = Some("the interface is gone".into());
                    changed = true;
                }
                continue;
            }
            let tampered = self.tampered.contains(&name);
            if now == iface.ifindex && (iface.attached || (tampered && !repair)) {
                changed |= verify(
                    iface,
                    &self.expected,
                    self.tcx.contains(&name),
                    maps_problem.as_deref(),
                    &mut self.tampered,
                );
                // A repair (reload) mends what this very check found, not
                // only what an earlier one did.
                if !(repair && self.tampered.contains(&name)) {
                    continue;
                }
            }
            let started = std::time::Instant::now();
            match self.dp.attach(&name, iface.hook) {
                Ok(attached) => {
                    iface.reattached += 1;
                    let what = match (iface.ifindex, iface.attached) {
                        (0, _) => format!("back as ifindex {now}"),
                        (old, true) => format!("replaced (ifindex {old} -> {now})"),
                        (_, false) => format!("ifindex {now}"),
                    };
                    log::info!(
                        "{name}: {what}; re-attached in {:.1} ms: {}, through {} (re-attach #{})",
                        started.elapsed().as_secs_f64() * 1e3,
                        attached.ingress(),
                        attached.via,
                        iface.reattached
                    );
                    iface.attached = true;
                    iface.ifindex = now;
                    iface.xdp = attached.xdp;
                    iface.problem = None;
                    self.tampered.remove(&name);
                    if matches!(attached.via, Attachment::Netlink { .. }) {
                        self.tcx.remove(&name);
                    } else {
                        self.tcx.insert(name.clone());
                    }
                    verify(
                        iface,
                        &self.expected,
                        self.tcx.contains(&name),
                        maps_problem.as_deref(),
                        &mut self.tampered,
                    );
                }
                Err(e) => {
                    let problem = format!("re-attaching failed: {e}");
                    // Tried again on every event and check: say it once.
                    if iface.problem.as_ref() != Some(&problem) {
                        log::error!(
                            "{name} (ifindex {now}): {problem}; trying again on the next link event"
                        );
                    }
                    iface.attached = false;
                    iface.ifindex = now;
                    iface.problem = Some(problem);
                }
            }
            changed = true;
        }
        changed
    }
}

/// Compares one attached interface with what the kernel runs now and
/// records the difference in `iface`; returns whether its status changed.
/// A new problem is logged once and counted; its end is logged too.
fn verify(
    iface: &mut InterfaceStatus,
    expected: &Expected,
    tcx: bool,
    maps_problem: Option<&str>,
    tampered: &mut BTreeSet<String>,
) -> bool {
    let name = iface.name.clone();
    let before = (iface.attached, iface.problem.clone());
    let hook_problem = match inspect::hooks(iface.ifindex) {
        Ok(hooks) => {
            let problem = inspect::hook_problem(expected, &hooks, iface.hook, tcx);
            iface.xdp_program_id = hooks.xdp.map(|(id, _)| id);
            if iface.hook == Hook::Xdp
                && let Some((_, Some(mode))) = hooks.xdp
            {
                iface.xdp = Some(mode);
            }
            iface.ingress_program_ids = hooks.tcx_ingress;
            iface.egress_program_ids = hooks.tcx_egress;
            iface.attached = problem.is_none();
            if problem.is_some() {
                tampered.insert(name.clone());
            }
            problem
        }
        // Not knowing is a problem too, but not proof of a detach.
        Err(e) => Some(e.to_string()),
    };
    iface.problem = match (hook_problem, maps_problem) {
        (None, None) => None,
        (Some(h), None) => Some(h),
        (None, Some(m)) => Some(m.to_owned()),
        (Some(h), Some(m)) => Some(format!("{h}; {m}")),
    };
    if (iface.attached, iface.problem.clone()) == before {
        return false;
    }
    match &iface.problem {
        Some(problem) => {
            iface.mismatches += 1;
            let fix = if iface.attached {
                ""
            } else {
                "; canary does not split new connections here until `canaryctl reload` \
                 (or SIGHUP) or a restart attaches its programs again"
            };
            log::warn!("{name}: the kernel does not run what canaryd set up: {problem}{fix}");
        }
        None => log::info!("{name}: the kernel runs canary's programs with canary's maps again"),
    }
    true
}
