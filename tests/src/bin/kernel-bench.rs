//! `kernel-bench`: what the data path costs per packet, measured with
//! BPF_PROG_TEST_RUN beside empty floor programs (`bench_floor_xdp`,
//! `bench_floor_tc`). `cargo xtask bench` runs it and puts the figures in
//! docs/BENCHMARKS.md.
//!
//! A DNAT program sees its own rewritten packet when the kernel repeats a
//! run, so every case is built to take the same path on every repeat, and
//! checks afterwards, with the data path's own counters, that it did:
//!
//! - repeat mode (one BPF_PROG_TEST_RUN call, `--repeat` repeats): the
//!   service's backend is its own VIP address and port, so the rewrite is
//!   idempotent and the packet is the same on every repeat;
//! - single mode (`--single` calls with repeat = 1, a fresh 5-tuple each,
//!   the kernel's per-call duration): for new flows, whose flow-table insert
//!   only happens once per tuple;
//! - signals on and off: each case that the signals budget names runs twice,
//!   on a data path loaded with signals (the default) and one loaded with
//!   `signals: false`, the two alternating run by run (repeat mode) or call
//!   by call (single mode), so a change in the machine's load between them
//!   weighs on both alike. Single mode also serves the per-request signal
//!   paths, which need the flow entry's `request_ns` set (or cleared) from
//!   userspace before every packet.
//!
//! `--scaling` runs another set instead: how the cost grows with the flow
//! table's size, services, backends and address family (`scaling`).

#[path = "kernel-bench/batch.rs"]
mod batch;
#[path = "kernel-bench/h2.rs"]
mod h2;
#[path = "kernel-bench/scaling.rs"]
mod scaling;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use aya::{
    maps::{HashMap, IterableMap, MapData, PerCpuValues},
    programs::{
        Program, ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions,
        TestRunResult, Xdp, XdpMode,
        tc::{self, NlOptions, TcAttachOptions},
    },
    util::nr_cpus,
};
use canary_common::{
    FlowEntry, FlowKey, VERSION_STABLE, VersionStats,
    h2::APP_HTTP1,
    names::{EGRESS_H2_PROGRAM, EGRESS_PROGRAM, INGRESS_PROGRAM, INGRESS_TC_PROGRAM},
    signals::{HTTP_CLASSES, MAX_SAMPLE_SHIFT, Sampler, Signals, UNTIMED},
    stats_slot, verdict,
};
use canary_userspace::{
    Affinity, Dataplane, LoadOptions, Protocol, ServiceSpec, model::service::backend,
    model::weight::Weight,
};
use clap::Parser;
use serde_json::json;
use tests::{
    TC_ACT_OK, XDP_PASS,
    packet::{ACK, Frame, PSH, SYN},
};

const FLOOR_XDP: &str = "bench_floor_xdp";
const FLOOR_TC: &str = "bench_floor_tc";

/// The service every case loads, its address, and one client of it.
const SERVICE: &str = "bench";
const VIP: &str = "198.18.0.1:80";
const VIP_UDP: &str = "198.18.0.1:53";
const CLIENT: &str = "198.18.0.2:40000";
/// Nodes the kernel's LRU hash moves to a CPU's free list per shrink
/// (LOCAL_FREE_TARGET in kernel/bpf/bpf_lru_list.c).
const LRU_BATCH: u32 = 128;
/// 10 %: the weight the end-to-end bench uses too.
const WEIGHT: Weight = Weight::from_bp(1000).unwrap();
/// How long the request a "response" case answers has waited: about the
/// end-to-end bench's one-connection p50, so the latency lands in the
/// histogram bucket a real response's does (64-128 µs).
const REQUEST_AGE_NS: u64 = 100_000;
/// The backend's reply in the egress cases: a status line the signals
/// classify (2xx), and the body the bench's backends send.
const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nstable\n";
/// Slot of 2xx in `Signals::http`.
const HTTP_2XX: usize = 1;

#[derive(Parser)]
#[command(
    about = "Data path cost per packet with BPF_PROG_TEST_RUN, beside empty floor programs",
    long_about = "Loads the data path (not attached anywhere), runs each case through \
BPF_PROG_TEST_RUN and checks with the verdict, per-version and signal counters that every run \
took the path it is named after. The cases the signals budget names run twice, on a data path \
with signals and one loaded without, alternating. Prints a table on stderr and JSON on stdout (or --json). Needs root.\n\n\
Example: kernel-bench --runs 5 --repeat 1000000 --single 200000 --signal-calls 200000\n\
Scaling: kernel-bench --scaling --runs 5 --repeat 1000000 --single 200000 --scaling-tables 65536,1048576,16777216"
)]
struct Args {
    /// Runs per case; the median run is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Repeats per run in repeat mode (BPF_PROG_TEST_RUN's `repeat`).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    repeat: u32,
    /// Calls (repeat = 1, fresh 5-tuple each) per run in single mode.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    single: u32,
    /// Calls per run in single mode for the signal cases (a request starts,
    /// a response to a waiting request; signals on and off) and their TC
    /// floor.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    signal_calls: u32,
    /// Flow table size for the "table at capacity" case.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    table: u32,
    /// Measure the scaling sweep instead of the cases: established and
    /// new-flow cost, each point changing one thing from a baseline of a
    /// 65,536-entry table, 1 service, 1 backend per version, IPv4 (uses
    /// --runs, --repeat, --single).
    #[arg(long)]
    scaling: bool,
    /// Flow-table sizes of the scaling sweep, comma-separated; each is also
    /// measured filled to capacity. Must include the baseline's 65536.
    #[arg(long, value_delimiter = ',', default_values_t = [65_536u32, 1_048_576, 16_777_216],
          value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    scaling_tables: Vec<u32>,
    /// Write the results as JSON to this file instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only the cases with these ids (comma-separated, e.g.
    /// `established,egress`; a pair runs when either of its ids is named),
    /// for profiling one path: `perf record -g -- kernel-bench --only established`.
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    only: Vec<String>,
    /// Measure nothing: attach the empty floor programs to this interface
    /// (XDP in driver mode, TC egress as a clsact filter, as canaryd does)
    /// and hold them until killed. For the bench's "empty programs" path.
    #[arg(long, value_name = "IFACE")]
    attach_floor: Option<String>,
    /// The same with ingress at TC: the empty TC program at tcx ingress and
    /// tcx egress, as canaryd attaches an interface with hook = "tc". For
    /// the bench's "empty TC+TC" path.
    #[arg(long, value_name = "IFACE", conflicts_with = "attach_floor")]
    attach_floor_tc: Option<String>,
}

impl Args {
    /// Packets of all runs of a repeat-mode case.
    fn repeats(&self) -> u64 {
        u64::from(self.runs) * u64::from(self.repeat)
    }

    /// Packets of all runs of a single-mode case.
    fn calls(&self) -> u64 {
        u64::from(self.runs) * u64::from(self.single)
    }

    /// Packets of all runs of a single-mode signal case.
    fn signal_calls(&self) -> u64 {
        u64::from(self.runs) * u64::from(self.signal_calls)
    }
}

/// What the runs of one case measured.
struct Timing {
    /// ns per packet of each run: the kernel's figure in repeat mode (whole
    /// ns), the mean of the kernel's per-call figures in single mode.
    runs_ns: Vec<f64>,
    /// Single mode only: p50 and p99 over every call of every run.
    percentiles: Option<(u32, u32)>,
}

/// What one case measured, and what its counters showed.
type Measured = (Timing, String);

/// A case's id, name and hook (which floor it is compared with).
type Row = (&'static str, &'static str, &'static str);

/// Sets up the data path, runs it, and checks with its counters that every
/// run took the path the case is named after.
enum Step {
    One(Row, fn(&Args) -> Result<Measured>),
    /// The same case with signals on, then off, run alternately.
    Pair([Row; 2], fn(&Args) -> Result<[Measured; 2]>),
}

impl Step {
    fn ids(&self) -> Vec<&'static str> {
        match self {
            Step::One(row, _) => vec![row.0],
            Step::Pair(rows, _) => rows.iter().map(|r| r.0).collect(),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("kernel-bench must run as root: it loads BPF programs");
    }
    if let Some(iface) = &args.attach_floor {
        return attach_floor(iface);
    }
    if let Some(iface) = &args.attach_floor_tc {
        return attach_floor_tc(iface);
    }
    let cpu = pin_to_last_cpu()?;
    if args.scaling {
        eprintln!(
            "kernel-bench: scaling sweep, pinned to CPU {cpu}; {} runs per case; repeat mode {} repeats per run; single mode {} calls per run",
            args.runs, args.repeat, args.single
        );
        return emit(&args, &scaling::run(&args, cpu)?);
    }
    eprintln!(
        "kernel-bench: pinned to CPU {cpu}; {} runs per case; repeat mode {} repeats per run; single mode {} calls per run ({} for the signal cases)",
        args.runs, args.repeat, args.single, args.signal_calls
    );
    let mut cases = vec![];
    let steps = [
        Step::One(
            ("floor_xdp", "floor: empty XDP program (XDP_PASS)", "xdp"),
            floor_xdp,
        ),
        Step::One(
            ("not_service", "non-service packet (ingress, SYN)", "xdp"),
            not_service,
        ),
        Step::One(
            (
                "not_service_segment",
                "non-service TCP segment (ingress, not a SYN)",
                "xdp",
            ),
            not_service_segment,
        ),
        Step::Pair(
            [
                (
                    "established",
                    "established flow (ingress), signals on",
                    "xdp",
                ),
                (
                    "established_no_signals",
                    "established flow (ingress), signals off",
                    "xdp",
                ),
            ],
            established,
        ),
        Step::One(
            (
                "new_flow_repeat",
                "new flow, table empty (UDP, entry stale)",
                "xdp",
            ),
            new_flow_repeat,
        ),
        Step::One(
            ("floor_tc", "floor: empty TC program (TC_ACT_OK)", "tc"),
            floor_tc,
        ),
        Step::One(
            (
                "established_tc",
                "established flow (ingress at TC, hook = \"tc\"), signals on",
                "tc",
            ),
            established_tc,
        ),
        Step::Pair(
            [
                ("egress", "egress reply translation (TC), signals on", "tc"),
                (
                    "egress_no_signals",
                    "egress reply translation (TC), signals off",
                    "tc",
                ),
            ],
            egress,
        ),
        Step::One(
            (
                "floor_xdp_single",
                "floor: empty XDP program, one call per packet",
                "xdp",
            ),
            floor_xdp_single,
        ),
        Step::One(
            (
                "established_real",
                "established flow, real backend, one call per packet (ingress)",
                "xdp",
            ),
            established_real,
        ),
        Step::One(
            ("new_flow_empty", "new flow, table empty (TCP SYN)", "xdp"),
            new_flow_empty,
        ),
        Step::One(
            (
                "new_flow_full",
                "new flow, table at capacity (TCP SYN, LRU evicts)",
                "xdp",
            ),
            new_flow_full,
        ),
        Step::Pair(
            [
                (
                    "request_start",
                    "established flow, a request starts (ingress), signals on",
                    "xdp",
                ),
                (
                    "request_start_no_signals",
                    "established flow, a request starts (ingress), signals off",
                    "xdp",
                ),
            ],
            request_start,
        ),
        Step::One(
            (
                "request_start_timed",
                "established flow, a timed request starts (ingress), signals on",
                "xdp",
            ),
            request_start_timed,
        ),
        Step::One(
            (
                "floor_tc_single",
                "floor: empty TC program, one call per packet",
                "tc",
            ),
            floor_tc_single,
        ),
        Step::One(
            (
                "egress_real",
                "egress reply translation, real backend, one call per packet (TC)",
                "tc",
            ),
            egress_real,
        ),
        Step::Pair(
            [
                (
                    "response",
                    "egress reply to a waiting request (TC), signals on",
                    "tc",
                ),
                (
                    "response_no_signals",
                    "egress reply to a waiting request (TC), signals off",
                    "tc",
                ),
            ],
            response,
        ),
        Step::One(
            (
                "h2_not_h2",
                "HTTP/1.x flow on an auto service, decided, a request starts (ingress)",
                "xdp",
            ),
            h2::h2_not_h2,
        ),
        Step::One(
            (
                "h2_headers",
                "HTTP/2 flow, a client HEADERS opens a stream (ingress)",
                "xdp",
            ),
            h2::h2_headers,
        ),
        Step::One(
            (
                "h2_data",
                "HTTP/2 flow, a client DATA frame, 64-byte message (ingress)",
                "xdp",
            ),
            h2::h2_data,
        ),
        Step::One(
            (
                "h2_reply",
                "HTTP/2 flow, a reply: HEADERS, DATA, trailers (TC, tail call)",
                "tc",
            ),
            h2::h2_reply,
        ),
        Step::One(
            (
                "h2_reply_wakeup",
                "HTTP/2 flow, the same reply, ring reader caught up (TC)",
                "tc",
            ),
            h2::h2_reply_wakeup,
        ),
    ];
    let known: Vec<&str> = steps.iter().flat_map(Step::ids).collect();
    if let Some(unknown) = args.only.iter().find(|o| !known.contains(&o.as_str())) {
        bail!(
            "--only: no case {unknown:?}; the cases are {}",
            known.join(", ")
        );
    }
    for step in steps {
        if !args.only.is_empty()
            && !step
                .ids()
                .iter()
                .any(|id| args.only.iter().any(|o| o == id))
        {
            continue;
        }
        let started = Instant::now();
        let measured: Vec<(Row, Measured)> = match step {
            Step::One(row, f) => {
                vec![(row, f(&args).with_context(|| format!("case {}", row.0))?)]
            }
            Step::Pair(rows, f) => {
                let m =
                    f(&args).with_context(|| format!("cases {} and {}", rows[0].0, rows[1].0))?;
                rows.into_iter().zip(m).collect()
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        for ((id, name, hook), (t, check)) in measured {
            let median_ns = xtask::stats::median(&t.runs_ns);
            eprintln!(
                "kernel-bench: {name:<60} {median_ns:>7.1} ns/packet  [{seconds:.1}s] ({check})"
            );
            cases.push(json!({
                "id": id,
                "name": name,
                "hook": hook,
                "mode": if t.percentiles.is_some() { "single" } else { "repeat" },
                "median_ns": median_ns,
                "runs_ns": t.runs_ns,
                "p50_ns": t.percentiles.map(|p| p.0),
                "p99_ns": t.percentiles.map(|p| p.1),
                "check": check,
            }));
        }
    }
    let out = json!({
        "programs": program_sizes()?,
        "cpu": cpu,
        "runs": args.runs,
        "repeat": args.repeat,
        "single": args.single,
        "signal_calls": args.signal_calls,
        "table": args.table,
        "jit": std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        "cases": cases,
    });
    emit(&args, &out)
}

/// Writes the results to `--json`'s file, or stdout.
fn emit(args: &Args, out: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(out)?;
    match &args.json {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// What the verifier and the JIT made of each data path program, signals on
/// and off: instructions the verifier processed (its effort: every path it
/// walked), the translated program's size in instructions, and the JIT's
/// machine code in bytes.
fn program_sizes() -> Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    for signals in [true, false] {
        let mut dp = load(&LoadOptions {
            signals,
            ..Default::default()
        })?;
        let infos = [
            (INGRESS_PROGRAM, ingress(&mut dp)?.info()),
            (EGRESS_PROGRAM, egress_program(&mut dp)?.info()),
            (EGRESS_H2_PROGRAM, {
                let p: &mut SchedClassifier = program(&mut dp, EGRESS_H2_PROGRAM)?;
                p.info()
            }),
        ];
        for (name, info) in infos {
            let info = info.with_context(|| format!("reading {name}'s info"))?;
            out.push(json!({
                "name": name,
                "signals": signals,
                "verified_insns": info.verified_instruction_count(),
                // 8 bytes per BPF instruction.
                "xlated_insns": info.size_translated().map(|b| b / 8),
                "jited_bytes": info.size_jitted(),
            }));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- cases --

fn floor_xdp(args: &Args) -> Result<Measured> {
    let mut dp = load(&LoadOptions::default())?;
    let prog = floor_program(&mut dp, FLOOR_XDP, Xdp::load)?;
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let [t] = repeat_runs([&*prog], &input, args, XDP_PASS)?;
    Ok((t, "returns XDP_PASS".into()))
}

fn floor_tc(args: &Args) -> Result<Measured> {
    let mut dp = load(&LoadOptions::default())?;
    let prog = floor_program(&mut dp, FLOOR_TC, SchedClassifier::load)?;
    let input = Frame::tcp(sa(VIP), sa(CLIENT), ACK | PSH).bytes();
    let [t] = repeat_runs([&*prog], &input, args, TC_ACT_OK)?;
    Ok((t, "returns TC_ACT_OK".into()))
}

/// A SYN to the VIP address on a port with no service: parse, one
/// SERVICES lookup, pass. The floor of any packet's classification.
fn not_service(args: &Args) -> Result<Measured> {
    not_service_packet(args, SYN)
}

/// A mid-stream segment to the same port: ingress looks for an established
/// entry before the service (what makes an established packet one lookup),
/// so this packet pays a FLOWS miss, then the SERVICES miss.
fn not_service_segment(args: &Args) -> Result<Measured> {
    not_service_packet(args, ACK | PSH)
}

fn not_service_packet(args: &Args, flags: u8) -> Result<Measured> {
    let (mut dp, _) = load_service(&LoadOptions::default(), &self_service(VIP, Protocol::Tcp))?;
    let input = Frame::tcp(sa(CLIENT), sa("198.18.0.1:8443"), flags).bytes();
    let [t] = repeat_runs([&*ingress(&mut dp)?], &input, args, XDP_PASS)?;
    let check = expect_verdicts(&dp, verdict::PASS_NOT_SERVICE, args.repeats(), false)?;
    Ok((t, check))
}

/// A mid-stream TCP packet with payload (the client's request) of a flow
/// that has its entry: lookup, rewrite, counters, close tracking, signals.
/// The first repeat starts a request; every later one finds it still
/// waiting (no reply in between), so the steady state is a client segment
/// while its request is outstanding: the signals only test and branch.
fn established(args: &Args) -> Result<[Measured; 2]> {
    let mut on = LiveFlow::new(true)?;
    let mut off = LiveFlow::new(false)?;
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let [t_on, t_off] = repeat_runs(
        [&*ingress(&mut on.dp)?, &*ingress(&mut off.dp)?],
        &input,
        args,
        XDP_PASS,
    )?;
    let total = args.repeats();
    Ok([
        (t_on, expect_established(&on, total, true)?),
        (t_off, expect_established(&off, total, false)?),
    ])
}

/// `established` with ingress at TC (`canary_ingress_tc`, signals on): the
/// same logic, the rewrite through the kernel's checksum helpers.
fn established_tc(args: &Args) -> Result<Measured> {
    let mut on = LiveFlow::new(true)?;
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let tc: &mut SchedClassifier = program(&mut on.dp, INGRESS_TC_PROGRAM)?;
    let [t] = repeat_runs([&*tc], &input, args, TC_ACT_OK)?;
    Ok((t, expect_established(&on, args.repeats(), true)?))
}

/// What an established-flow case's counters must show after `total`
/// packets: all translated at ingress, no new flow, the first repeat's
/// request (signals on) or no signal at all.
fn expect_established(f: &LiveFlow, total: u64, signals: bool) -> Result<String> {
    let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, false)?;
    let s = stats(&f.dp)?;
    ensure!(
        s.packets_in == total && s.new_flows == 0 && s.rehashes == 0,
        "stats {s:?}, want {total} packets in, no new flow, no rehash"
    );
    let want_on = Signals {
        requests: 1,
        ..Signals::default()
    };
    let signals = if signals {
        expect_signals(&f.dp, &want_on, "1 request: the first repeat's")?
    } else {
        expect_signals(&f.dp, &Signals::default(), "none")?
    };
    Ok(format!(
        "{check}; stats: no new flow, no rehash; output = input; {signals}"
    ))
}

/// UDP with a 1 ns idle timeout: every repeat finds its flow's half-open
/// entry stale and takes the whole new-flow path (both table lookups, hash,
/// weight, backend, insert into HALF_OPEN).
fn new_flow_repeat(args: &Args) -> Result<Measured> {
    let opts = LoadOptions {
        udp_idle_timeout: Duration::from_nanos(1),
        ..Default::default()
    };
    let (mut dp, _) = load_service(&opts, &self_service(VIP_UDP, Protocol::Udp))?;
    let input = Frame::udp(sa(CLIENT), sa(VIP_UDP)).bytes();
    let [t] = repeat_runs([&*ingress(&mut dp)?], &input, args, XDP_PASS)?;
    Ok((t, expect_decisions(&dp, args.repeats())?))
}

/// A backend's reply with payload on a live flow: owner lookup, flow
/// lookup, rewrite of the source with the kernel's checksum helpers,
/// signals. A request is set waiting beforehand, so the first repeat is its
/// response (latency, status line); every later one finds none waiting, so
/// the steady state is a reply segment after the response's first: the
/// signals only test and branch.
fn egress(args: &Args) -> Result<[Measured; 2]> {
    let mut on = LiveFlow::new(true)?;
    let mut off = LiveFlow::new(false)?;
    for f in [&mut on, &mut off] {
        f.set_request(monotonic_ns()? - REQUEST_AGE_NS)?;
    }
    let reply = reply();
    let [t_on, t_off] = repeat_runs(
        [
            &*egress_program(&mut on.dp)?,
            &*egress_program(&mut off.dp)?,
        ],
        &reply,
        args,
        TC_ACT_OK,
    )?;
    let total = args.repeats();
    let check = |f: &LiveFlow| -> Result<String> {
        let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, true)?;
        let packets_out = stats(&f.dp)?.packets_out;
        ensure!(
            packets_out == total,
            "{packets_out} packets out for {total} repeats"
        );
        Ok(check + "; output = input")
    };
    Ok([
        (
            t_on,
            format!(
                "{}; {}",
                check(&on)?,
                expect_responses(&on.dp, 1, "the first repeat's")?
            ),
        ),
        (
            t_off,
            format!(
                "{}; {}",
                check(&off)?,
                expect_signals(&off.dp, &Signals::default(), "none")?
            ),
        ),
    ])
}

fn floor_xdp_single(args: &Args) -> Result<Measured> {
    let mut dp = load(&LoadOptions::default())?;
    let prog = floor_program(&mut dp, FLOOR_XDP, Xdp::load)?;
    let [t] = single_runs(args.runs, args.single, |_, n| {
        call_once(prog, &syn(fresh_client(n)), XDP_PASS)
    })?;
    Ok((t, "returns XDP_PASS".into()))
}

fn floor_tc_single(args: &Args) -> Result<Measured> {
    let mut dp = load(&LoadOptions::default())?;
    let prog = floor_program(&mut dp, FLOOR_TC, SchedClassifier::load)?;
    let reply = reply();
    let [t] = single_runs(args.runs, args.signal_calls, |_, _| {
        call_once(prog, &reply, TC_ACT_OK)
    })?;
    Ok((t, "returns TC_ACT_OK".into()))
}

/// A SYN on a tuple never seen, the tables otherwise empty: the half-open
/// entry it makes is deleted from userspace after each call (outside the
/// timed part).
fn new_flow_empty(args: &Args) -> Result<Measured> {
    let spec = real_service();
    let opts = LoadOptions {
        flow_table_size: args.table,
        ..Default::default()
    };
    let (mut dp, _) = load_service(&opts, &spec)?;
    let [t] = single_runs(args.runs, args.single, |_, n| {
        let client = fresh_client(n);
        let ns = call_once(ingress(&mut dp)?, &syn(client), XDP_PASS)?;
        half_open(&mut dp)?
            .remove(&spec.flow_key(client))
            .context("the new flow has no half-open entry")?;
        Ok(ns)
    })?;
    let check = expect_decisions(&dp, args.calls())?;
    Ok((t, check + "; each entry found and deleted after its call"))
}

/// A SYN on a tuple never seen with the half-open table full of other
/// flows: the LRU must evict to insert it. (A new decision goes to
/// HALF_OPEN; FLOWS, full or not, only costs it a lookup.)
fn new_flow_full(args: &Args) -> Result<Measured> {
    let spec = real_service();
    let opts = LoadOptions {
        flow_table_size: args.table,
        ..Default::default()
    };
    let (mut dp, id) = load_service(&opts, &spec)?;
    let capacity = half_open(&mut dp)?
        .map()
        .info()
        .context("the half-open table's size")?
        .max_entries();
    eprintln!("kernel-bench: filling the half-open table ({capacity} entries) ...");
    for i in 0..capacity {
        half_open(&mut dp)?
            .insert(spec.flow_key(prefilled(i)), flow_entry(&spec, id), 0)
            .context("writing a half-open entry")?;
    }
    let before = half_open(&mut dp)?.keys().count() as u32;
    ensure!(
        before == capacity,
        "the flow table holds {before} entries after filling, want {capacity}"
    );
    let [t] = single_runs(args.runs, args.single, |_, n| {
        call_once(ingress(&mut dp)?, &syn(fresh_client(n)), XDP_PASS)
    })?;
    let check = expect_decisions(&dp, args.calls())?;
    // Still full afterwards, and the prefilled flows gone: the inserts had
    // to evict. The LRU evicts in batches into a per-CPU free list, so up to
    // LRU_BATCH entries per CPU may sit freed ahead of use.
    let table = half_open(&mut dp)?;
    let after = table.keys().count() as u32;
    let left = (0..capacity)
        .filter(|i| table.get(&spec.flow_key(prefilled(*i)), 0).is_ok())
        .count() as u32;
    let slack = LRU_BATCH * std::thread::available_parallelism()?.get() as u32;
    ensure!(
        after + slack >= capacity,
        "the flow table holds {after} entries after the runs, want at least {capacity} - {slack}"
    );
    let evicted = capacity - left;
    Ok((
        t,
        format!(
            "{check}; table {before}/{capacity} entries before, {after} after; {evicted} of the {capacity} prefilled flows evicted"
        ),
    ))
}

/// The established packet of `established` when it starts a request: the
/// flow's entry is rewritten with no request waiting before each call
/// (outside the timed part), so every call counts a request, and the
/// latency sampler times the share of them it keeps at this call rate (far
/// above its floor: one in 32). What a request's first segment costs on a
/// busy CPU; one call per packet, since a repeat would find the request
/// started.
fn request_start(args: &Args) -> Result<[Measured; 2]> {
    let mut pair = [LiveFlow::new(true)?, LiveFlow::new(false)?];
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let [t_on, t_off] = single_runs(args.runs, args.signal_calls, |k, _| {
        let f = &mut pair[k];
        f.set_request(0)?;
        call_once(ingress(&mut f.dp)?, &input, XDP_PASS)
    })?;
    let total = args.signal_calls();
    let check = |f: &LiveFlow| -> Result<String> {
        let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, false)?;
        let s = stats(&f.dp)?;
        ensure!(
            s.packets_in == total && s.new_flows == 0 && s.rehashes == 0,
            "stats {s:?}, want {total} packets in, no new flow, no rehash"
        );
        Ok(check + "; stats: no new flow, no rehash; entry rewritten before each call")
    };
    let sampler = pair[0].sampler_text()?;
    let [on, off] = &pair;
    let want_on = Signals {
        requests: total,
        ..Signals::default()
    };
    Ok([
        (
            t_on,
            format!(
                "{}; {}; {}",
                check(on)?,
                expect_signals(&on.dp, &want_on, &format!("{total} requests: one per call"))?,
                sampler
            ),
        ),
        (
            t_off,
            format!(
                "{}; {}",
                check(off)?,
                expect_signals(&off.dp, &Signals::default(), "none")?
            ),
        ),
    ])
}

/// `request_start` with every start timed, as below the sampler's floor
/// rate or with `latency_sampling = false`: before each call the sampler is
/// reset to a window just begun with no start in it, so the call reads the
/// clock (and does not close the window).
fn request_start_timed(args: &Args) -> Result<Measured> {
    let mut f = LiveFlow::new(true)?;
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let [t] = single_runs(args.runs, args.signal_calls, |_, _| {
        f.set_request(0)?;
        f.set_sampler(Sampler {
            window_start_ns: monotonic_ns()?,
            starts: 0,
            shift: 0,
        })?;
        call_once(ingress(&mut f.dp)?, &input, XDP_PASS)
    })?;
    let total = args.signal_calls();
    let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, false)?;
    let want = Signals {
        requests: total,
        ..Signals::default()
    };
    let signals = expect_signals(&f.dp, &want, &format!("{total} requests: one per call"))?;
    let entry = flows(&mut f.dp)?
        .get(&f.key, 0)
        .context("reading the flow's entry")?;
    ensure!(
        entry.request_ns > UNTIMED,
        "the last call left request_ns {}, want a start time: it was not timed",
        entry.request_ns
    );
    Ok((
        t,
        format!("{check}; {signals}; sampler reset before each call: every start timed"),
    ))
}

/// The established packet of a flow to a real backend (198.18.1.2:8080),
/// one call per packet: unlike the repeat cases, whose backend is the VIP
/// itself so the rewrite writes back what it read, the address, port and
/// checksums really change. Steady state: a request is waiting, so the
/// signals only test the entry, as in `established`.
fn established_real(args: &Args) -> Result<Measured> {
    let mut f = LiveFlow::with(real_service(), true)?;
    f.set_request(1)?;
    let input = Frame::tcp(sa(CLIENT), sa(VIP), ACK | PSH).bytes();
    let [t] = single_runs(args.runs, args.single, |_, _| {
        call_once(ingress(&mut f.dp)?, &input, XDP_PASS)
    })?;
    let total = args.calls();
    let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, false)?;
    let s = stats(&f.dp)?;
    ensure!(
        s.packets_in == total && s.new_flows == 0 && s.rehashes == 0,
        "stats {s:?}, want {total} packets in, no new flow, no rehash"
    );
    Ok((
        t,
        check + "; stats: no new flow, no rehash; destination rewritten to the backend",
    ))
}

/// The reply of a flow to a real backend, one call per packet: the source
/// address, port and checksums really change (in repeat mode the rewrite
/// must write back what it read). No request waits, so the signals only
/// test the entry, as in `egress`.
fn egress_real(args: &Args) -> Result<Measured> {
    let spec = real_service();
    let mut f = LiveFlow::with(spec.clone(), true)?;
    let reply = Frame::tcp(spec.stable[0], sa(CLIENT), ACK | PSH)
        .with_payload(REPLY)
        .bytes();
    let [t] = single_runs(args.runs, args.signal_calls, |_, _| {
        call_once(egress_program(&mut f.dp)?, &reply, TC_ACT_OK)
    })?;
    let total = args.signal_calls();
    let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, true)?;
    let packets_out = stats(&f.dp)?.packets_out;
    ensure!(
        packets_out == total,
        "{packets_out} packets out for {total} calls"
    );
    Ok((
        t,
        check
            + "; source rewritten to the VIP; "
            + &expect_signals(&f.dp, &Signals::default(), "none: no request waiting")?,
    ))
}

/// The reply of `egress` when it is the response to a waiting request: the
/// flow's entry is rewritten with a request started `REQUEST_AGE_NS` ago
/// before each call (outside the timed part), so every call takes the
/// clock, buckets the latency, reads and classifies the status line and
/// counts a response. What every response's first segment costs.
fn response(args: &Args) -> Result<[Measured; 2]> {
    let mut pair = [LiveFlow::new(true)?, LiveFlow::new(false)?];
    let reply = reply();
    let [t_on, t_off] = single_runs(args.runs, args.signal_calls, |k, _| {
        let f = &mut pair[k];
        f.set_request(monotonic_ns()? - REQUEST_AGE_NS)?;
        call_once(egress_program(&mut f.dp)?, &reply, TC_ACT_OK)
    })?;
    let total = args.signal_calls();
    let check = |f: &LiveFlow| -> Result<String> {
        let check = expect_verdicts(&f.dp, verdict::TRANSLATED, total, true)?;
        let packets_out = stats(&f.dp)?.packets_out;
        ensure!(
            packets_out == total,
            "{packets_out} packets out for {total} calls"
        );
        Ok(check + "; entry rewritten before each call")
    };
    let [on, off] = &pair;
    Ok([
        (
            t_on,
            format!(
                "{}; {}",
                check(on)?,
                expect_responses(&on.dp, total, "one per call")?
            ),
        ),
        (
            t_off,
            format!(
                "{}; {}",
                check(off)?,
                expect_signals(&off.dp, &Signals::default(), "none")?
            ),
        ),
    ])
}

/// Attaches `bench_floor_xdp` and `bench_floor_tc` to `iface` the way
/// canaryd attaches its programs, then sleeps until killed (the XDP link
/// goes with this process, the TC filter with the interface).
fn attach_floor(iface: &str) -> Result<()> {
    let mut dp = load(&LoadOptions::default())?;
    let xdp = floor_program(&mut dp, FLOOR_XDP, Xdp::load)?;
    xdp.attach(iface, XdpMode::Driver)
        .with_context(|| format!("attaching {FLOOR_XDP} to {iface} in driver mode"))?;
    // An existing clsact qdisc is fine.
    let _ = tc::qdisc_add_clsact(iface);
    let tc = floor_program(&mut dp, FLOOR_TC, SchedClassifier::load)?;
    tc.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::Netlink(NlOptions::default()),
    )
    .with_context(|| format!("attaching {FLOOR_TC} to {iface} egress"))?;
    println!("kernel-bench: floor programs attached to {iface}; holding them until killed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Attaches `bench_floor_tc` to `iface` at tcx ingress and tcx egress, as
/// canaryd attaches an interface with hook = "tc", then sleeps until killed
/// (the tcx links go with this process).
fn attach_floor_tc(iface: &str) -> Result<()> {
    let mut dp = load(&LoadOptions::default())?;
    let tc = floor_program(&mut dp, FLOOR_TC, SchedClassifier::load)?;
    for attach_type in [TcAttachType::Ingress, TcAttachType::Egress] {
        tc.attach_with_options(
            iface,
            attach_type,
            TcAttachOptions::TcxOrder(Default::default()),
        )
        .with_context(|| format!("attaching {FLOOR_TC} to {iface} with tcx ({attach_type:?})"))?;
    }
    println!(
        "kernel-bench: floor programs attached to {iface} (tcx ingress and egress); holding them until killed"
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// -------------------------------------------------------------- helpers --

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("constant socket address")
}

fn load(opts: &LoadOptions) -> Result<Dataplane> {
    Dataplane::load(opts).context("loading the data path")
}

/// The data path with `spec` in it; also returns the service's id.
fn load_service(opts: &LoadOptions, spec: &ServiceSpec) -> Result<(Dataplane, u32)> {
    let mut dp = load(opts)?;
    let id = dp.upsert_service(spec)?;
    Ok((dp, id))
}

/// The data path with the self service on VIP and an entry for CLIENT's
/// flow, with signals on or off.
struct LiveFlow {
    dp: Dataplane,
    key: FlowKey,
    entry: FlowEntry,
}

impl LiveFlow {
    fn new(signals: bool) -> Result<LiveFlow> {
        LiveFlow::with(self_service(VIP, Protocol::Tcp), signals)
    }

    /// The same for another service (its stable backend holds the flow).
    fn with(spec: ServiceSpec, signals: bool) -> Result<LiveFlow> {
        let opts = LoadOptions {
            signals,
            ..Default::default()
        };
        let (dp, id) = load_service(&opts, &spec)?;
        let mut f = LiveFlow {
            dp,
            key: spec.flow_key(sa(CLIENT)),
            entry: flow_entry(&spec, id),
        };
        f.set_request(0)?;
        Ok(f)
    }

    /// Presets the sampler of the flow's (service, version) on every CPU.
    fn set_sampler(&mut self, sampler: Sampler) -> Result<()> {
        let cpus = nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        let slot = stats_slot(self.entry.service_id, self.entry.version);
        self.dp
            .maps_mut()
            .sampler
            .set(slot, PerCpuValues::try_from(vec![sampler; cpus])?, 0)
            .context("writing the sampler")
    }

    /// How the sampler ended on the CPUs that ran the flow's request starts.
    fn sampler_text(&mut self) -> Result<String> {
        let slot = stats_slot(self.entry.service_id, self.entry.version);
        let per_cpu = self
            .dp
            .maps_mut()
            .sampler
            .get(&slot, 0)
            .context("reading the sampler")?;
        let ran: Vec<Sampler> = per_cpu
            .iter()
            .filter(|s| s.window_start_ns != 0)
            .copied()
            .collect();
        // The report reads this case as a busy CPU's cost: the sampler must
        // have reached its top rate, as it does above ~10,000 starts/s.
        ensure!(
            !ran.is_empty() && ran.iter().all(|s| s.shift == MAX_SAMPLE_SHIFT),
            "the latency sampler ended at {ran:?}, not at 1 in {}: the calls came too slowly \
             for this case to measure a busy CPU",
            1u32 << MAX_SAMPLE_SHIFT
        );
        Ok(format!(
            "sampler at the end: 1 in {} timed",
            1u32 << MAX_SAMPLE_SHIFT
        ))
    }

    /// Rewrites the flow's entry as first written, with `request_ns` (0: no
    /// request waiting).
    fn set_request(&mut self, request_ns: u64) -> Result<()> {
        let entry = FlowEntry {
            request_ns,
            ..self.entry
        };
        flows(&mut self.dp)?
            .insert(self.key, entry, 0)
            .context("writing the flow's entry")
    }
}

fn service(vip: &str, protocol: Protocol, stable: &str, canary: &str) -> ServiceSpec {
    ServiceSpec {
        name: SERVICE.into(),
        vip: sa(vip),
        protocol,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: vec![sa(stable)],
        canary: vec![sa(canary)],
        weight: WEIGHT,
    }
}

/// A service whose stable and canary backend is its own VIP: the rewrite
/// leaves the packet as it was, so a repeat sees the same packet again.
/// (Config validation refuses such a service; `ServiceSpec::check` does not.)
fn self_service(vip: &str, protocol: Protocol) -> ServiceSpec {
    service(vip, protocol, vip, vip)
}

/// Real backends, for the single-mode cases (their output is not rerun).
fn real_service() -> ServiceSpec {
    service(VIP, Protocol::Tcp, "198.18.1.2:8080", "198.18.2.2:8080")
}

/// The n-th client tuple of single mode: 198.18.128.0/17 by ports from 1024,
/// never the same twice in a case.
fn fresh_client(n: u32) -> SocketAddr {
    let host = n % 32_768;
    let port = 1024 + (n / 32_768) % 64_000;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 18, 128 + (host >> 8) as u8, host as u8)),
        port as u16,
    )
}

/// The i-th flow the full-table case fills the table with: 198.19.0.0/16,
/// by ports from 1000.
fn prefilled(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)),
        1000 + (i >> 16) as u16,
    )
}

/// An established entry to `spec`'s stable backend, no request waiting,
/// of an HTTP/1.x connection: its first payload has been read (an entry
/// left at `APP_AUTO_PENDING` would be undecided, and pay for the preface
/// check on every payload the bench rewrites it before, and egress's tail
/// call on every reply with no request waiting).
fn flow_entry(spec: &ServiceSpec, service_id: u32) -> FlowEntry {
    let b = backend(spec.stable[0]);
    FlowEntry {
        backend: b.addr,
        backend_port: b.port,
        version: VERSION_STABLE,
        established: 1,
        service_id,
        app: APP_HTTP1,
        ..FlowEntry::default()
    }
}

fn flows(dp: &mut Dataplane) -> Result<&mut HashMap<MapData, FlowKey, FlowEntry>> {
    Ok(&mut dp.maps_mut().flows)
}

fn half_open(dp: &mut Dataplane) -> Result<&mut HashMap<MapData, FlowKey, FlowEntry>> {
    Ok(&mut dp.maps_mut().half_open)
}

fn program<'a, P>(dp: &'a mut Dataplane, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog = dp
        .ebpf_mut()
        .program_mut(name)
        .with_context(|| format!("no program {name} in the object"))?;
    Ok(prog.try_into()?)
}

fn ingress(dp: &mut Dataplane) -> Result<&mut Xdp> {
    program(dp, INGRESS_PROGRAM)
}

fn egress_program(dp: &mut Dataplane) -> Result<&mut SchedClassifier> {
    program(dp, EGRESS_PROGRAM)
}

/// A client's SYN to VIP.
fn syn(client: SocketAddr) -> Vec<u8> {
    Frame::tcp(client, sa(VIP), SYN).bytes()
}

/// The backend's (= the VIP's) reply to CLIENT, status line first.
fn reply() -> Vec<u8> {
    Frame::tcp(sa(VIP), sa(CLIENT), ACK | PSH)
        .with_payload(REPLY)
        .bytes()
}

/// CLOCK_MONOTONIC in ns: bpf_ktime_get_ns's clock.
fn monotonic_ns() -> Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Loads a floor program with `load` (`Xdp::load`, `SchedClassifier::load`):
/// Dataplane::load leaves it unloaded.
fn floor_program<'a, P>(
    dp: &'a mut Dataplane,
    name: &str,
    load: fn(&mut P) -> Result<(), ProgramError>,
) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog = program(dp, name)?;
    load(prog).with_context(|| format!("loading {name}"))?;
    Ok(prog)
}

/// `args.runs` calls with `args.repeat` repeats each of every program in
/// `progs` (run `r` starts at program `r mod N`, so none always goes
/// first); checks the verdict and that the output equals the input (the
/// packet every repeat saw). Returns each program's kernel ns per repeat of
/// each run: its timer covers only the repeat loop, while the call's wall
/// time also holds milliseconds of per-call XDP setup.
fn repeat_runs<P, const N: usize>(
    progs: [&P; N],
    input: &[u8],
    args: &Args,
    want: u32,
) -> Result<[Timing; N]>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut runs_ns: [Vec<f64>; N] = std::array::from_fn(|_| vec![]);
    let mut out = vec![0u8; input.len() + 256];
    for run in 0..args.runs as usize {
        for k in (0..N).map(|k| (run + k) % N) {
            let r = progs[k].test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                repeat: args.repeat,
                ..Default::default()
            })?;
            ensure!(
                r.return_value == want,
                "returned {}, want {want}",
                r.return_value
            );
            ensure!(
                &out[..r.data_size_out as usize] == input,
                "the program changed the packet: later repeats would have seen another one"
            );
            runs_ns[k].push(r.duration.as_nanos() as f64);
        }
    }
    Ok(runs_ns.map(|runs_ns| Timing {
        runs_ns,
        percentiles: None,
    }))
}

/// `runs` runs of `calls` rounds of `call(k, n)` for k in 0..N (round n
/// starts at `n mod N`, so no variant always goes first), where n counts
/// rounds over all runs and `call` returns the kernel's duration of one
/// call. Returns each variant's mean per run, and p50 and p99 over all its
/// calls.
fn single_runs<const N: usize>(
    runs: u32,
    calls: u32,
    mut call: impl FnMut(usize, u32) -> Result<u32>,
) -> Result<[Timing; N]> {
    let mut runs_ns: [Vec<f64>; N] = std::array::from_fn(|_| vec![]);
    let mut all: [Vec<u32>; N] =
        std::array::from_fn(|_| Vec::with_capacity(runs as usize * calls as usize));
    let mut n = 0u32;
    for _ in 0..runs {
        let mut sum = [0u64; N];
        for _ in 0..calls {
            for k in (0..N).map(|k| (n as usize + k) % N) {
                let ns = call(k, n)?;
                sum[k] += u64::from(ns);
                all[k].push(ns);
            }
            n += 1;
        }
        for k in 0..N {
            runs_ns[k].push(sum[k] as f64 / f64::from(calls));
        }
    }
    let mut percentiles = all
        .map(|mut all| {
            all.sort_unstable();
            let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
            (at(0.5), at(0.99))
        })
        .into_iter();
    Ok(runs_ns.map(|runs_ns| Timing {
        runs_ns,
        percentiles: percentiles.next(),
    }))
}

/// One call with `repeat = 1` that must return `want`; returns the kernel's
/// duration of it in ns.
fn call_once<P>(prog: &P, input: &[u8], want: u32) -> Result<u32>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let r = prog.test_run(TestRunOptions {
        data_in: Some(input),
        repeat: 1,
        ..Default::default()
    })?;
    ensure!(
        r.return_value == want,
        "returned {}, want {want}",
        r.return_value
    );
    Ok(r.duration.as_nanos() as u32)
}

/// Checks that `count` packets landed in `slot` of one program's verdict
/// counters and nothing anywhere else; returns the check as a sentence.
fn expect_verdicts(dp: &Dataplane, slot: u32, count: u64, egress: bool) -> Result<String> {
    let v = dp.verdicts()?;
    let (mine, other) = if egress {
        (&v.egress, &v.ingress)
    } else {
        (&v.ingress, &v.egress)
    };
    for (i, n) in mine.iter().enumerate() {
        let want = if i as u32 == slot { count } else { 0 };
        ensure!(
            *n == want,
            "verdict {} = {n}, want {want}",
            verdict::NAMES[i]
        );
    }
    ensure!(
        other.iter().all(|n| *n == 0),
        "the other program's verdicts moved: {other:?}"
    );
    Ok(format!(
        "{} {} = {count} of {count} packets",
        if egress { "egress" } else { "ingress" },
        verdict::NAMES[slot as usize]
    ))
}

/// Checks that all `count` packets were translated at ingress, each a new
/// decision: into the half-open table, counted as a new flow only when the
/// backend answers (never here).
fn expect_decisions(dp: &Dataplane, count: u64) -> Result<String> {
    let check = expect_verdicts(dp, verdict::TRANSLATED, count, false)?;
    let s = stats(dp)?;
    ensure!(
        s.new_flows == 0 && s.rehashes == 0,
        "{} new flows and {} rehashes counted before any backend answered",
        s.new_flows,
        s.rehashes
    );
    Ok(format!("{check}; decided into HALF_OPEN"))
}

/// Checks the service's signals, stable and canary summed, against `want`;
/// `what` says what they hold, for the check's sentence.
fn expect_signals(dp: &Dataplane, want: &Signals, what: &str) -> Result<String> {
    let [stable, canary] = dp.signals(SERVICE)?;
    let mut sum = stable;
    sum.add(&canary);
    ensure!(sum == *want, "signals {sum:?}, want {want:?}");
    Ok(format!("signals: {what}"))
}

/// Checks that the signals hold `count` responses, each 2xx and with a
/// latency, and nothing else.
fn expect_responses(dp: &Dataplane, count: u64, what: &str) -> Result<String> {
    let [stable, canary] = dp.signals(SERVICE)?;
    let mut sum = stable;
    sum.add(&canary);
    let mut http = [0; HTTP_CLASSES];
    http[HTTP_2XX] = count;
    let want = Signals {
        responses: count,
        http,
        ..Signals::default()
    };
    let latencies: u64 = sum.latency.iter().sum();
    // Which buckets the latencies land in, and their sum, is the clock's.
    let rest = Signals {
        latency: want.latency,
        latency_sum_ns: 0,
        ..sum
    };
    ensure!(
        rest == want && latencies == count && (count == 0) == (sum.latency_sum_ns == 0),
        "signals {sum:?}, want {count} responses, 2xx, with a latency each"
    );
    let noun = if count == 1 { "response" } else { "responses" };
    Ok(format!(
        "signals: {count} {noun} ({what}), 2xx, with a latency"
    ))
}

/// The service's counters, stable and canary summed.
fn stats(dp: &Dataplane) -> Result<VersionStats> {
    let [stable, canary] = dp.stats(SERVICE)?;
    let mut sum = stable;
    sum.add(&canary);
    Ok(sum)
}

/// Pins this process to the last CPU: every run then uses the same CPU's
/// per-CPU counters, LRU lists and caches.
fn pin_to_last_cpu() -> Result<usize> {
    let cpus = std::thread::available_parallelism()?.get();
    let cpu = cpus - 1;
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in range.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(cpu)
}
