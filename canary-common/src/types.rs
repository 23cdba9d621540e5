//! Map keys and values. Layouts are fixed: sizes are asserted at compile time
//! so a field added without its padding fails the build, not the verifier.

/// An IPv4 or IPv6 address in network byte order. IPv4 uses `addr[0]` and
/// leaves the other words zero, so one key type serves both families.
pub type Addr = [u32; 4];

/// Key of SERVICES and of BACKEND_OWNERS: an (address, port, protocol) triple.
/// `port` is in network byte order, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: Addr,
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of SERVICES: what the data path needs to decide a new flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index into STATS and BACKENDS; assigned by userspace, `< MAX_SERVICES`.
    pub id: u32,
    /// Seed of the affinity hash, fixed per service so decisions survive
    /// restarts and agree across hosts.
    pub seed: u32,
    /// Share of new flows/clients sent to the canary, in basis points.
    pub weight_bp: u16,
    /// `AFFINITY_FLOW` or `AFFINITY_CLIENT`.
    pub affinity: u8,
    pub stable_count: u8,
    pub canary_count: u8,
    /// Which of the service's two BACKENDS banks the counts describe.
    /// Userspace writes a new backend set to the other bank, then switches
    /// this record in one map write, so a new flow sees the old set or the
    /// new one, never a mix.
    pub bank: u8,
    /// `h2::APP_PROTOCOL_*`: what the data path reads of the payload.
    pub app_protocol: u8,
    pub _pad: u8,
}

/// Value of BACKENDS, indexed by `backend_slot(service, bank, version, i)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: Addr,
    /// Network byte order.
    pub port: u16,
    pub _pad: [u8; 2],
}

/// Value of BACKEND_OWNERS: which service a backend endpoint serves, so egress
/// can find the forward flow entry of a reply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendOwner {
    pub vip: Endpoint,
    pub service_id: u32,
}

/// Key of FLOWS: the connection as the client sees it (client → VIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: Addr,
    pub vip: Addr,
    /// Network byte order.
    pub client_port: u16,
    /// Network byte order.
    pub vip_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of FLOWS: the decision the first packet made.
///
/// The close-tracking flags are separate bytes because ingress writes some and
/// egress others, possibly on different CPUs at once: a byte store cannot lose
/// the other side's update the way a read-modify-write of a shared word could.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub backend: Addr,
    /// Network byte order.
    pub backend_port: u16,
    pub version: u8,
    /// Set by ingress on the client's first non-SYN packet: the handshake is
    /// done, so a later SYN on this tuple is a new connection.
    pub established: u8,
    pub service_id: u32,
    /// `FIN_SEEN` once the client sent FIN, plus `FIN_ACKED` once the
    /// backend acknowledged it.
    pub client_fin: u8,
    /// The same for the backend's FIN.
    pub backend_fin: u8,
    /// `h2::APP_*`: what is known of the connection's application
    /// protocol (ingress decides it at the client's first payload; either
    /// side may mark an HTTP/2 connection untracked).
    pub app: u8,
    pub _pad: u8,
    /// Sequence number just past the client's FIN (host order): the backend's
    /// ACK of the FIN carries at least this.
    pub client_fin_end: u32,
    /// UDP: last packet time (bpf_ktime_get_ns); entries age out after the
    /// configured idle timeout. TCP, once the backend's SYN-ACK was seen:
    /// `handshake_token` of the ACK number that completes the handshake,
    /// which is also the sequence number of the backend's first payload
    /// byte (where an HTTP/2 walk of its replies starts); kept when the
    /// flow is established. 0 for a TCP flow decided mid-stream.
    pub last_seen_ns: u64,
    /// Sequence number just past the backend's FIN (host order).
    pub backend_fin_end: u32,
    /// The backend's latest acknowledgement number (host order), kept by
    /// egress: the sequence number a genuine client RST carries. A client
    /// RST with any other number does not release the entry (RFC 5961's
    /// rule; the backend itself answers such a RST with a challenge ACK,
    /// and a client whose connection is really gone resets again with
    /// exactly this number).
    pub backend_ack: u32,
    /// Signals: start (bpf_ktime_get_ns) of the request waiting for its
    /// first reply payload; `signals::UNTIMED` when one waits that the
    /// sampler left untimed; 0 when none waits. Ingress sets it, egress
    /// takes the latency (if timed) and clears it.
    pub request_ns: u64,
    /// Signals: time of the client's first SYN until the backend's SYN-ACK
    /// (connect time); 0 once answered, or for a flow that did not start
    /// with a SYN here.
    pub syn_ns: u64,
}

/// Marks `FlowEntry::last_seen_ns` of a TCP half-open entry as holding the
/// ACK number that completes the handshake (so a SYN-ACK whose sequence
/// number + 1 wraps to 0 still reads as recorded).
pub const HANDSHAKE_TOKEN: u64 = 1 << 32;

/// What a TCP half-open entry holds once its backend's SYN-ACK was seen:
/// the client's handshake ACK must carry `ack`.
pub const fn handshake_token(ack: u32) -> u64 {
    HANDSHAKE_TOKEN | ack as u64
}

/// Per (service, version) counters; one per-CPU slot at `stats_slot(id, v)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionStats {
    /// Client → backend packets and bytes (whole frames, as XDP sees them).
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Backend → client packets and bytes translated on egress.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Flows decided for this version (first packet of a flow, or a SYN on a
    /// tuple whose earlier connection had completed its handshake).
    pub new_flows: u64,
    /// Mid-stream TCP packets that found no entry and were decided again.
    pub rehashes: u64,
    /// TCP flows whose entry was released after FIN/FIN/ACK or a reset.
    pub closed_flows: u64,
}

impl VersionStats {
    /// Sum of two counter sets (used to fold per-CPU values).
    pub fn add(&mut self, other: &Self) {
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
        self.packets_out += other.packets_out;
        self.bytes_out += other.bytes_out;
        self.new_flows += other.new_flows;
        self.rehashes += other.rehashes;
        self.closed_flows += other.closed_flows;
    }
}

/// Value of the single-slot SETTINGS array: data-path-wide settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Idle time after which a UDP entry is decided again; 0 means the
    /// built-in `DEFAULT_UDP_IDLE_TIMEOUT_NS`.
    pub udp_idle_timeout_ns: u64,
    /// canaryd's last heartbeat (bpf_ktime_get_ns's clock, CLOCK_MONOTONIC).
    pub heartbeat_ns: u64,
    /// Heartbeat age after which the failsafe acts; 0: never.
    pub failsafe_timeout_ns: u64,
    /// `FAILSAFE_REVERT` (new flows to stable) or `FAILSAFE_HOLD`.
    pub failsafe: u32,
    pub _pad: [u8; 4],
}

/// Slot of a (service, version) in STATS.
#[inline(always)]
pub const fn stats_slot(service_id: u32, version: u8) -> u32 {
    service_id * crate::VERSIONS + version as u32
}

/// Slot of backend `index` of a (service, bank, version) in BACKENDS.
#[inline(always)]
pub const fn backend_slot(service_id: u32, bank: u8, version: u8, index: u32) -> u32 {
    ((service_id * crate::BACKEND_BANKS + bank as u32) * crate::VERSIONS + version as u32)
        * crate::MAX_BACKENDS
        + index
}

// Layouts must match byte for byte on both sides; these fail the build if a
// field is added without explicit padding.
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);
const _: () = assert!(core::mem::size_of::<Service>() == 16);
const _: () = assert!(core::mem::size_of::<Backend>() == 20);
const _: () = assert!(core::mem::size_of::<BackendOwner>() == 24);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 64);
const _: () = assert!(core::mem::size_of::<VersionStats>() == 56);
const _: () = assert!(core::mem::size_of::<Settings>() == 32);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, made only of integers, with every
    // byte covered by a named field (sizes asserted above).
    unsafe impl aya::Pod for Endpoint {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for BackendOwner {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowEntry {}
    unsafe impl aya::Pod for VersionStats {}
    unsafe impl aya::Pod for Settings {}
}
