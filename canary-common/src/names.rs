//! Names of the object's programs and maps, as userspace finds and pins
//! them. The eBPF crate's statics carry the same names (`maps.rs`,
//! `main.rs`); a golden test checks the object has exactly these.

/// XDP ingress: splits new flows, translates to the backend.
pub const INGRESS_PROGRAM: &str = "canary_ingress";
/// TC (tcx) ingress: the same as `INGRESS_PROGRAM`, for interfaces whose
/// config says `hook = "tc"`. The kernel keeps 15 bytes of a program name:
/// `bpftool prog` shows it as `canary_ingress_`; canary itself goes by ids.
pub const INGRESS_TC_PROGRAM: &str = "canary_ingress_tc";
/// TC egress: translates replies back to the VIP.
pub const EGRESS_PROGRAM: &str = "canary_egress";
/// TC egress's HTTP/2 part, tail-called by `EGRESS_PROGRAM` through
/// TAIL_CALLS; never attached.
pub const EGRESS_H2_PROGRAM: &str = "canary_egress_h2";

pub const SERVICES: &str = "SERVICES";
pub const BACKENDS: &str = "BACKENDS";
pub const BACKEND_OWNERS: &str = "BACKEND_OWNERS";
pub const FLOWS: &str = "FLOWS";
pub const HALF_OPEN: &str = "HALF_OPEN";
pub const STATS: &str = "STATS";
pub const VERDICTS: &str = "VERDICTS";
pub const SETTINGS: &str = "SETTINGS";
pub const SIGNALS: &str = "SIGNALS";
pub const SAMPLER: &str = "SAMPLER";
pub const H2_CONNS: &str = "H2_CONNS";
pub const H2_STREAMS: &str = "H2_STREAMS";
pub const H2_SIGNALS: &str = "H2_SIGNALS";
pub const H2_HEADERS: &str = "H2_HEADERS";
pub const H2_SCRATCH: &str = "H2_SCRATCH";
pub const TAIL_CALLS: &str = "TAIL_CALLS";

/// The read-only global that switches the signals on (1) or off (0) at
/// load time: with it off the verifier prunes their code as dead.
pub const SIGNALS_ENABLED: &str = "SIGNALS_ENABLED";

/// The read-only global capping the latency sampler's shift
/// (`signals::MAX_SAMPLE_SHIFT`, or 0 to time every request start).
pub const LATENCY_MAX_SHIFT: &str = "LATENCY_MAX_SHIFT";

/// Every map of the object; all are pinned when a pin directory is given.
pub const MAPS: [&str; 16] = [
    SERVICES,
    BACKENDS,
    BACKEND_OWNERS,
    FLOWS,
    HALF_OPEN,
    STATS,
    VERDICTS,
    SETTINGS,
    SIGNALS,
    SAMPLER,
    H2_CONNS,
    H2_STREAMS,
    H2_SIGNALS,
    H2_HEADERS,
    H2_SCRATCH,
    TAIL_CALLS,
];

/// Maps sized at load time from the config's `flow_table_size` (the flow
/// table, the half-open table beside it, and the HTTP/2 connection and
/// stream tables): a pinned one keeps the size it was created with,
/// whatever the object or this run's config says.
pub const SIZED_BY_CONFIG: [&str; 4] = [FLOWS, HALF_OPEN, H2_CONNS, H2_STREAMS];
