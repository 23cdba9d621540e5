//! Constants both sides need: map sizes, version ids, protocol numbers. The
//! odd-packet verdict table is in `verdict`.

/// Layout version of the pin directory (`<bpffs>/v4/...`): bumped whenever
/// a pinned map's key or value layout changes, so a daemon never reuses maps
/// written with another layout. v2: FlowEntry carries FIN sequence numbers.
/// v3: two BACKENDS banks per service, `Service::bank` picks one. v4: the
/// SIGNALS map; FlowEntry carries request and SYN times. v5: three more
/// verdicts (VERDICTS grows), the HALF_OPEN table, no VIP_ADDRESSES. v6:
/// SIGNALS' latency histogram is log-linear (170 buckets, 8 per power of
/// two) and both histograms' bounds are powers of two of nanoseconds.
pub const PIN_LAYOUT: &str = "v6";
/// The layout before this one: canaryd carries its pins over at start
/// (`canary_userspace::upgrade`), every map whose layout did not change
/// with its entries, so an upgrade moves no established flow.
pub const PREVIOUS_PIN_LAYOUT: &str = "v5";

/// Canary weight is expressed in basis points: 10000 = 100 %.
pub const WEIGHT_SCALE: u32 = 10_000;

/// Version index of the stable backend set (index into per-version arrays).
pub const VERSION_STABLE: u8 = 0;
/// Version index of the canary backend set.
pub const VERSION_CANARY: u8 = 1;
/// Number of versions a service has (stable and canary).
pub const VERSIONS: u32 = 2;

/// Most services one data path serves; service ids are `0..MAX_SERVICES`.
pub const MAX_SERVICES: u32 = 256;
/// Most backends in one version of a service (the design card allows 1..=16).
pub const MAX_BACKENDS: u32 = 16;
/// Backend banks per service: the live set and the one the next set is
/// written to before `Service::bank` switches to it.
pub const BACKEND_BANKS: u32 = 2;
/// Slots in the BACKENDS array: one block of `MAX_BACKENDS` per (service,
/// bank, version).
pub const BACKEND_SLOTS: u32 = MAX_SERVICES * BACKEND_BANKS * VERSIONS * MAX_BACKENDS;
/// Most backend endpoints at once (BACKEND_OWNERS entries): every live set full.
pub const MAX_BACKEND_ENDPOINTS: u32 = MAX_SERVICES * VERSIONS * MAX_BACKENDS;
/// Default flow-table size; userspace may set another at load time.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
/// The half-open table (flows the backend has not answered yet) holds this
/// share of the flow table's entries, at least `MIN_HALF_OPEN_SIZE`:
/// enough for the SYNs in flight of a busy host, and a separate table so
/// that a flood of spoofed tuples churns it and never the established one.
pub const HALF_OPEN_DIVISOR: u32 = 4;
pub const MIN_HALF_OPEN_SIZE: u32 = 1_024;

/// The half-open table's size for a flow table of `flow_table_size`.
pub const fn half_open_size(flow_table_size: u32) -> u32 {
    let n = flow_table_size / HALF_OPEN_DIVISOR;
    if n < MIN_HALF_OPEN_SIZE {
        MIN_HALF_OPEN_SIZE
    } else {
        n
    }
}
/// Default idle time after which a UDP flow entry no longer pins its backend.
pub const DEFAULT_UDP_IDLE_TIMEOUT_NS: u64 = 30 * 1_000_000_000;

/// Address families, as stored in keys (not the kernel's AF_* values, which
/// differ between platforms userspace may be built for).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers the data path translates.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// What new flows do when canaryd's heartbeat is older than the failsafe
/// timeout: keep the weights, or all go to stable.
pub const FAILSAFE_HOLD: u32 = 0;
pub const FAILSAFE_REVERT: u32 = 1;

/// Affinity modes.
pub const AFFINITY_FLOW: u8 = 0;
pub const AFFINITY_CLIENT: u8 = 1;

/// Bits of `FlowEntry::{client_fin, backend_fin}`. A TCP entry is released
/// when both sides' FINs are acknowledged, judged by sequence numbers: the
/// order in which the two FINs pass the host says nothing about whether
/// each side had seen the other's FIN (crossed closes).
pub const FIN_SEEN: u8 = 1;
pub const FIN_ACKED: u8 = 2;

/// Slots of the TAIL_CALLS program array, and what each holds.
pub const TAIL_CALL_SLOTS: u32 = 1;
/// `canary_egress_h2`: the HTTP/2 walk of a reply, tail-called by egress.
pub const TAIL_EGRESS_H2: u32 = 0;
