//! Every map the programs use, one line each on what it is for. Userspace
//! finds them by these names, which `canary_common::names` spells out too
//! (a golden test checks the object has exactly those).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use canary_common::{
    BACKEND_SLOTS, Backend, BackendOwner, DEFAULT_FLOW_TABLE_SIZE, Endpoint, FlowEntry, FlowKey,
    MAX_BACKEND_ENDPOINTS, MAX_SERVICES, Service, Settings, TAIL_CALL_SLOTS, VERSIONS,
    VersionStats,
    h2::{H2Conn, H2Signals, H2Stream, H2StreamKey, HEADER_RING_BYTES},
    half_open_size,
    signals::{Sampler, Signals},
    verdict,
};

/// (VIP, port, protocol) → service: weight, affinity, backend counts.
#[map]
pub static SERVICES: HashMap<Endpoint, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Backends, `MAX_BACKENDS` slots per (service, bank, version); see `backend_slot`.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(BACKEND_SLOTS, 0);

/// Backend (address, port, protocol) → its service, for egress reverse NAT.
#[map]
pub static BACKEND_OWNERS: HashMap<Endpoint, BackendOwner> =
    HashMap::with_max_entries(MAX_BACKEND_ENDPOINTS, 0);

/// Client-side 5-tuple → the decision its first packet made. LRU so a full
/// table evicts the least recently used flow instead of refusing new ones.
/// Userspace may resize it at load time.
///
/// Only flows the backend has answered are here: a flood of tuples that
/// never complete a handshake (spoofed SYNs or ACKs) fills HALF_OPEN and
/// cannot evict an established flow.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

/// Flows decided but not yet answered by their backend (a new connection's
/// SYN, a UDP flow's first datagrams, a TCP flow decided mid-stream). Egress
/// moves an entry to FLOWS at the backend's first answer that is not a
/// reset; a reset removes it. Userspace sizes it with the flow table.
#[map]
pub static HALF_OPEN: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(half_open_size(DEFAULT_FLOW_TABLE_SIZE), 0);

/// Per-CPU counters per (service, version); see `stats_slot`.
#[map]
pub static STATS: PerCpuArray<VersionStats> =
    PerCpuArray::with_max_entries(MAX_SERVICES * VERSIONS, 0);

/// Per-CPU health signals per (service, version), at `stats_slot`: requests,
/// responses by class, resets, refusals, latency and connect histograms.
#[map]
pub static SIGNALS: PerCpuArray<Signals> =
    PerCpuArray::with_max_entries(MAX_SERVICES * VERSIONS, 0);

/// Per-CPU latency sampling state per (service, version), at `stats_slot`:
/// which request starts read the clock (see `Sampler`).
#[map]
pub static SAMPLER: PerCpuArray<Sampler> =
    PerCpuArray::with_max_entries(MAX_SERVICES * VERSIONS, 0);

/// Per-CPU verdict counters: ingress at `[0, COUNT)`, egress at `[COUNT, 2*COUNT)`.
#[map]
pub static VERDICTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(verdict::COUNT * 2, 0);

/// Data-path-wide settings, slot 0.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// HTTP/2 connections followed frame by frame (`h2`), by flow key:
/// where each direction's walk stands. Userspace sizes it with the flow
/// table; a connection evicted from it is untracked from then on.
#[map]
pub static H2_CONNS: LruHashMap<FlowKey, H2Conn> =
    LruHashMap::with_max_entries(half_open_size(DEFAULT_FLOW_TABLE_SIZE), 0);

/// HTTP/2 streams waiting for their end, by (connection id, stream id):
/// the start time until the first response byte. Userspace sizes it with
/// the flow table.
#[map]
pub static H2_STREAMS: LruHashMap<H2StreamKey, H2Stream> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

/// Per-CPU HTTP/2 counters per (service, version), at `stats_slot`.
#[map]
pub static H2_SIGNALS: PerCpuArray<H2Signals> =
    PerCpuArray::with_max_entries(MAX_SERVICES * VERSIONS, 0);

/// Pieces of the servers' HTTP/2 header blocks, for canaryd's HPACK
/// decoders (`H2HeaderPiece`).
#[map]
pub static H2_HEADERS: RingBuf = RingBuf::with_byte_size(HEADER_RING_BYTES, 0);

/// One H2Conn per CPU to build a new one in (the BPF stack has no room).
#[map]
pub static H2_SCRATCH: PerCpuArray<H2Conn> = PerCpuArray::with_max_entries(1, 0);

/// Programs tail-called: `canary_egress_h2` at `TAIL_EGRESS_H2`.
#[map]
pub static TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(TAIL_CALL_SLOTS, 0);
