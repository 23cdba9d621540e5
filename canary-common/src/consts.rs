//! Constants both sides need: map sizes, version ids, protocol numbers and the
//! odd-packet verdict table.

/// Layout version of the pin directory (`<bpffs>/v3/...`): bumped whenever
/// a pinned map's key or value layout changes, so a daemon never reuses maps
/// written with another layout. v2: FlowEntry carries FIN sequence numbers.
/// v3: two BACKENDS banks per service, `Service::bank` picks one.
pub const PIN_LAYOUT: &str = "v3";

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
/// Default idle time after which a UDP flow entry no longer pins its backend.
pub const DEFAULT_UDP_IDLE_TIMEOUT_NS: u64 = 30 * 1_000_000_000;

/// Address families, as stored in keys (not the kernel's AF_* values, which
/// differ between platforms userspace may be built for).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers the data path translates.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Affinity modes.
pub const AFFINITY_FLOW: u8 = 0;
pub const AFFINITY_CLIENT: u8 = 1;

/// Bits of `FlowEntry::{client_fin, backend_fin}`. A TCP entry is released
/// when both sides' FINs are acknowledged, judged by sequence numbers: the
/// order in which the two FINs pass the host says nothing about whether
/// each side had seen the other's FIN (crossed closes).
pub const FIN_SEEN: u8 = 1;
pub const FIN_ACKED: u8 = 2;

/// Global verdict counters, one slot each in the VERDICTS per-CPU array.
///
/// Every packet either programs sees lands in exactly one of these, so the
/// table doubles as the documentation of what happens to odd input.
pub mod verdict {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed untouched.
    pub const PASS_NOT_IP: u32 = 0;
    /// IP but not addressed to a configured service: passed untouched.
    pub const PASS_NOT_SERVICE: u32 = 1;
    /// Neither TCP nor UDP (ICMP, SCTP, ...): passed untouched, even to a VIP
    /// address, so ping and ICMP errors still reach the host stack.
    pub const PASS_OTHER_PROTOCOL: u32 = 2;
    /// Headers end before the field we must read (Ethernet, VLAN, IP or L4):
    /// passed untouched; we never read past the packet and the stack's own
    /// validation drops what is malformed.
    pub const PASS_TRUNCATED: u32 = 3;
    /// More than two VLAN tags: passed untouched (not parsed further).
    pub const PASS_VLAN_TOO_DEEP: u32 = 4;
    /// IPv4 fragment (MF set or offset != 0) to a VIP address: dropped. Only
    /// the first fragment carries ports, so the rest could not follow it.
    pub const DROP_FRAGMENT: u32 = 5;
    /// IPv6 packet whose next header is an extension header, to a VIP
    /// address: dropped. We do not walk extension chains in the fast path.
    pub const DROP_IPV6_EXTENSION: u32 = 6;
    /// Service whose chosen and fallback versions have no backend: dropped.
    pub const DROP_NO_BACKEND: u32 = 7;
    /// Translated to a backend (ingress) or back to the VIP (egress).
    pub const TRANSLATED: u32 = 8;
    /// Translated, and the IPv4 header carried options (handled: the L4
    /// offset follows IHL; options are left as they are).
    pub const TRANSLATED_IPV4_OPTIONS: u32 = 9;
    /// Translated, and the frame carried one or two VLAN tags (kept as is).
    pub const TRANSLATED_VLAN: u32 = 10;
    /// Egress: reply from a backend address with no live flow entry (evicted,
    /// or a client talking to the backend port directly): passed untouched.
    pub const EGRESS_NO_FLOW: u32 = 11;
    /// Failed map update for a new flow: passed translated, but not pinned.
    pub const FLOW_TABLE_UPDATE_FAILED: u32 = 12;
    /// Number of slots.
    pub const COUNT: u32 = 13;

    /// Names as exported to metrics and printed in test failures.
    pub const NAMES: [&str; COUNT as usize] = [
        "pass_not_ip",
        "pass_not_service",
        "pass_other_protocol",
        "pass_truncated",
        "pass_vlan_too_deep",
        "drop_fragment",
        "drop_ipv6_extension",
        "drop_no_backend",
        "translated",
        "translated_ipv4_options",
        "translated_vlan",
        "egress_no_flow",
        "flow_table_update_failed",
    ];
}
