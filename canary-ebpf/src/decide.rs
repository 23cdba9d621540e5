//! The split decision for a flow that has no entry yet.

use canary_common::{
    AFFINITY_CLIENT, Backend, Service, VERSION_CANARY, VERSION_STABLE, backend_slot,
    hash::{backend_index, client_hash, flow_hash, is_canary},
};

use crate::{maps::BACKENDS, parse::Packet};

pub struct Choice {
    pub version: u8,
    pub backend: Backend,
}

/// Picks the version by `hash % 10000 < weight` and the backend within it by
/// the same hash. A version with no backends falls back to the other one;
/// `None` only when the service has no backend at all.
#[inline(always)]
pub fn decide(svc: &Service, pkt: &Packet) -> Option<Choice> {
    let hash = if svc.affinity == AFFINITY_CLIENT {
        client_hash(svc.seed, &pkt.src)
    } else {
        flow_hash(
            svc.seed, &pkt.src, &pkt.dst, pkt.sport, pkt.dport, pkt.proto,
        )
    };
    let (mut version, mut count) = if is_canary(hash, svc.weight_bp) {
        (VERSION_CANARY, svc.canary_count)
    } else {
        (VERSION_STABLE, svc.stable_count)
    };
    if count == 0 {
        (version, count) = if version == VERSION_CANARY {
            (VERSION_STABLE, svc.stable_count)
        } else {
            (VERSION_CANARY, svc.canary_count)
        };
    }
    if count == 0 {
        return None;
    }
    let backend = BACKENDS.get(backend_slot(
        svc.id,
        svc.bank,
        version,
        backend_index(hash, count),
    ))?;
    Some(Choice {
        version,
        backend: *backend,
    })
}
