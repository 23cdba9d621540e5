//! Counter updates. Per-CPU slots, so plain adds are race-free.

use canary_common::{
    VersionStats, stats_slot,
    verdict::{self, Verdict},
};

use crate::maps::{STATS, VERDICTS};

#[inline(always)]
fn bump(slot: u32) {
    if let Some(n) = VERDICTS.get_ptr_mut(slot) {
        // SAFETY: a map value pointer from a successful lookup, valid for
        // this run; the slot is per-CPU, so nothing else writes it meanwhile.
        unsafe { *n += 1 };
    }
}

#[inline(always)]
pub fn count_ingress(v: Verdict) {
    bump(v.slot());
}

#[inline(always)]
pub fn count_egress(v: Verdict) {
    bump(verdict::COUNT + v.slot());
}

/// This CPU's counters of a (service, version), if the slot exists.
#[inline(always)]
pub fn stats(service_id: u32, version: u8) -> Option<&'static mut VersionStats> {
    STATS.get_ptr_mut(stats_slot(service_id, version)).map(|p| {
        // SAFETY: a map value pointer from a successful lookup, valid for
        // this run, which the reference does not outlive (callers hold it
        // only within one block); per-CPU, so no other CPU aliases it.
        unsafe { &mut *p }
    })
}
