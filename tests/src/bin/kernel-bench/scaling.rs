//! `kernel-bench --scaling`: how an established packet's and a new flow's
//! cost grow with the work. Each point changes one thing from the baseline
//! (65,536-entry flow table, 1 service, 1 backend per version, IPv4): the
//! flow table's size (64 Ki, 1 Mi, 16 Mi entries, also filled to capacity),
//! 256 services, 16 backends per version, IPv6.
//!
//! Every point loads its own data path (signals on, as it ships) with the
//! measured service's stable and canary set led by its own VIP, so the
//! established packet's rewrite is idempotent and repeat mode applies (see
//! the cases' module comment); the other backends and services are real
//! entries the lookups walk past. Counters are checked as deltas after each
//! case: one data path serves several cases.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::Instant,
};

use anyhow::{Context, Result, ensure};
use aya::maps::IterableMap;
use canary_common::{
    DEFAULT_FLOW_TABLE_SIZE, FlowEntry, FlowKey, MAX_BACKENDS, MAX_SERVICES, VersionStats, verdict,
};
use canary_userspace::{Affinity, Dataplane, LoadOptions, Protocol, ServiceSpec, Verdicts};
use serde_json::{Value, json};
// `::tests`: the crate, not this file's unit tests.
use ::tests::{
    XDP_PASS,
    packet::{ACK, Frame, PSH, SYN},
};

use super::{
    Args, LRU_BATCH, SERVICE, Timing, WEIGHT, batch, call_once, floor_xdp, floor_xdp_single,
    flow_entry, flows, fresh_client, half_open, ingress, load, prefilled, repeat_runs, sa,
    single_runs, stats,
};

/// The baseline's flow-table size; the other dimensions use it too.
pub const BASE_TABLE: u32 = DEFAULT_FLOW_TABLE_SIZE;

const VIP_V4: &str = "198.18.0.1:80";
const VIP_V6: &str = "[2001:db8::1]:80";
const CLIENT_V4: &str = "198.18.0.2:40000";
const CLIENT_V6: &str = "[2001:db8::2]:40000";

/// One point of the sweep: the baseline with one thing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub dimension: &'static str,
    pub value: String,
    pub table: u32,
    pub services: u32,
    pub backends: u32,
    pub v6: bool,
    /// Also measure with both flow tables filled to capacity.
    pub fill: bool,
}

impl Point {
    fn base(dimension: &'static str, value: String) -> Point {
        Point {
            dimension,
            value,
            table: BASE_TABLE,
            services: 1,
            backends: 1,
            v6: false,
            fill: false,
        }
    }

    pub fn is_baseline(&self) -> bool {
        self.table == BASE_TABLE && self.services == 1 && self.backends == 1 && !self.v6
    }
}

/// The sweep's points: each table size (filled too), then the other
/// dimensions at the baseline's table.
pub fn points(tables: &[u32]) -> Vec<Point> {
    let mut v: Vec<Point> = tables
        .iter()
        .map(|&t| Point {
            table: t,
            fill: true,
            ..Point::base("flow table", format!("{} entries", entries_text(t)))
        })
        .collect();
    v.push(Point {
        services: MAX_SERVICES,
        ..Point::base("services", format!("{MAX_SERVICES} services"))
    });
    v.push(Point {
        backends: MAX_BACKENDS,
        ..Point::base(
            "backends per version",
            format!("{MAX_BACKENDS} backends per version"),
        )
    });
    v.push(Point {
        v6: true,
        ..Point::base("address family", "IPv6".into())
    });
    v
}

/// 65536 → "64 Ki", 16777216 → "16 Mi", 1000 → "1000".
pub fn entries_text(n: u32) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} Mi", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} Ki", n >> 10)
    } else {
        n.to_string()
    }
}

pub fn run(args: &Args, cpu: usize) -> Result<Value> {
    ensure!(
        args.scaling_tables.contains(&BASE_TABLE),
        "--scaling-tables must hold the baseline's {BASE_TABLE}"
    );
    let started = Instant::now();
    let (floor, _) = floor_xdp(args).context("floor, repeat mode")?;
    let (floor1, _) = floor_xdp_single(args).context("floor, one call per packet")?;
    let floor_ns = xtask::stats::median(&floor.runs_ns);
    let floor1_ns = xtask::stats::median(&floor1.runs_ns);
    eprintln!(
        "kernel-bench: scaling: floors {floor_ns:.1} ns (repeat), {floor1_ns:.1} ns (one call)"
    );
    let mut out = vec![];
    for p in points(&args.scaling_tables) {
        let t = Instant::now();
        eprintln!("kernel-bench: scaling: {} ...", p.value);
        let mut v = measure(args, &p).with_context(|| format!("scaling point {}", p.value))?;
        v["seconds"] = json!(t.elapsed().as_secs_f64());
        eprintln!(
            "kernel-bench: scaling: {} done in {:.1}s",
            p.value,
            t.elapsed().as_secs_f64()
        );
        out.push(v);
    }
    Ok(json!({
        "cpu": cpu,
        "runs": args.runs,
        "repeat": args.repeat,
        "single": args.single,
        "tables": args.scaling_tables,
        "floor_ns": floor_ns,
        "floor_runs_ns": floor.runs_ns,
        "floor_single_ns": floor1_ns,
        "floor_single_runs_ns": floor1.runs_ns,
        "seconds": started.elapsed().as_secs_f64(),
        "jit": std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        "points": out,
    }))
}

/// One point: its cases, its tables' memory, how long loading and filling
/// took. A data path that cannot be loaded (a table too large for this
/// machine) is reported as skipped, with the kernel's answer.
fn measure(args: &Args, p: &Point) -> Result<Value> {
    let mut v = json!({
        "dimension": p.dimension,
        "value": p.value,
        "baseline": p.is_baseline(),
        "table": p.table,
        "services": p.services,
        "backends": p.backends,
        "family": if p.v6 { "IPv6" } else { "IPv4" },
    });
    let spec = measured_service(p);
    let opts = LoadOptions {
        flow_table_size: p.table,
        ..Default::default()
    };
    let loading = Instant::now();
    let mut dp = match load(&opts) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("kernel-bench: scaling: {} skipped: {e:#}", p.value);
            v["skipped"] = json!(format!("{e:#}"));
            return Ok(v);
        }
    };
    for i in 0..p.services - 1 {
        dp.upsert_service(&other_service(i))?;
    }
    let id = dp.upsert_service(&spec)?;
    v["load_seconds"] = json!(loading.elapsed().as_secs_f64());
    v["memory"] = json!({
        "flows": table_memory(flows(&mut dp)?)?,
        "half_open": table_memory(half_open(&mut dp)?)?,
    });
    let client = sa(if p.v6 { CLIENT_V6 } else { CLIENT_V4 });
    flows(&mut dp)?
        .insert(spec.flow_key(client), flow_entry(&spec, id), 0)
        .context("writing the flow's entry")?;

    let mut cases = vec![
        established(args, &mut dp, &spec, client, false)?,
        new_flow(args, &mut dp, &spec, None)?,
    ];
    if p.fill {
        let filling = Instant::now();
        let (flows_cap, half_cap) = fill(&mut dp, &spec, id)?;
        v["fill_seconds"] = json!(filling.elapsed().as_secs_f64());
        cases.push(established(args, &mut dp, &spec, client, true)?);
        cases.push(established_random(args, &mut dp, &spec, flows_cap - 1)?);
        cases.push(new_flow(args, &mut dp, &spec, Some(half_cap))?);
    }
    v["cases"] = json!(cases);
    Ok(v)
}

/// The measured service: VIP first in both sets (idempotent rewrite, see
/// the module comment), then `backends - 1` real ones.
fn measured_service(p: &Point) -> ServiceSpec {
    let vip = sa(if p.v6 { VIP_V6 } else { VIP_V4 });
    let set = |version: u16| -> Vec<SocketAddr> {
        let mut v = vec![vip];
        v.extend((1..p.backends).map(|k| {
            let ip: IpAddr = if p.v6 {
                Ipv6Addr::new(0x2001, 0xdb8, version, 0, 0, 0, 0, 2 + k as u16).into()
            } else {
                [198, 18, version as u8, 2 + k as u8].into()
            };
            SocketAddr::new(ip, 8080)
        }));
        v
    };
    ServiceSpec {
        name: SERVICE.into(),
        vip,
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: set(1),
        canary: set(2),
        weight: WEIGHT,
    }
}

/// The i-th other service of the 256-service point: 198.18.3.i:80, its
/// backends 198.18.5.i and 198.18.6.i port 8080.
fn other_service(i: u32) -> ServiceSpec {
    let at = |third: u8, port: u16| SocketAddr::new([198, 18, third, i as u8].into(), port);
    ServiceSpec {
        name: format!("other-{i}"),
        vip: at(3, 80),
        protocol: Protocol::Tcp,
        affinity: Affinity::Flow,
        app_protocol: Default::default(),
        stable: vec![at(5, 8080)],
        canary: vec![at(6, 8080)],
        weight: WEIGHT,
    }
}

fn table_memory(table: &batch::Table) -> Result<Value> {
    let max = table.map().info()?.max_entries();
    let memlock = batch::memlock(table)?;
    Ok(json!({ "max_entries": max, "memlock_bytes": memlock }))
}

/// Fills FLOWS (which holds the live flow already) and HALF_OPEN to
/// capacity with `prefilled` flows to the service; returns both
/// capacities, having counted that each table holds exactly that many.
fn fill(dp: &mut Dataplane, spec: &ServiceSpec, id: u32) -> Result<(u32, u32)> {
    let entry = flow_entry(spec, id);
    let mut caps = [0u32; 2];
    for (k, name) in ["FLOWS", "HALF_OPEN"].into_iter().enumerate() {
        let table = if k == 0 { flows(dp)? } else { half_open(dp)? };
        let cap = table.map().info()?.max_entries();
        let t = Instant::now();
        // FLOWS holds the live flow already.
        let n = if k == 0 { cap - 1 } else { cap };
        let mut start = 0;
        while start < n {
            let (keys, values) = chunk(spec, entry, start..n.min(start + (1 << 16)));
            batch::update(table, &keys, &values)?;
            start += keys.len() as u32;
        }
        let written = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let count = batch::for_each_key(table, |_| {})?;
        ensure!(
            count == u64::from(cap),
            "{name} holds {count} entries after filling, want {cap}"
        );
        eprintln!(
            "kernel-bench: scaling: {name} filled to {cap} entries in {written:.1}s (batch updates), counted in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        caps[k] = cap;
    }
    Ok((caps[0], caps[1]))
}

/// Counters at the start of a case, to check its deltas against.
struct Before {
    verdicts: Verdicts,
    stats: VersionStats,
}

impl Before {
    fn take(dp: &Dataplane) -> Result<Before> {
        Ok(Before {
            verdicts: dp.verdicts()?,
            stats: stats(dp)?,
        })
    }

    /// Checks that the case's `count` packets were all counted `translated`
    /// at ingress, to the measured service, nothing else, and no new flow or
    /// rehash counted; returns the check as a sentence.
    fn expect(&self, dp: &Dataplane, count: u64) -> Result<String> {
        let v = dp.verdicts()?;
        for (i, (now, was)) in v.ingress.iter().zip(&self.verdicts.ingress).enumerate() {
            let want = if i as u32 == verdict::TRANSLATED {
                count
            } else {
                0
            };
            ensure!(
                now - was == want,
                "verdict {} moved by {}, want {want}",
                verdict::NAMES[i],
                now - was
            );
        }
        ensure!(
            v.egress == self.verdicts.egress,
            "egress verdicts moved: {:?}",
            v.egress
        );
        let s = stats(dp)?;
        let (packets, new, rehash) = (
            s.packets_in - self.stats.packets_in,
            s.new_flows - self.stats.new_flows,
            s.rehashes - self.stats.rehashes,
        );
        ensure!(
            packets == count && new == 0 && rehash == 0,
            "service {SERVICE}: {packets} packets in, {new} new flows, {rehash} rehashes; want {count}, 0, 0"
        );
        Ok(format!(
            "ingress translated = {count} of {count} packets, all to service {SERVICE}; no new flow, no rehash counted"
        ))
    }
}

fn case(id: &str, name: &str, t: Timing, check: String) -> Value {
    json!({
        "id": id,
        "name": name,
        "mode": if t.percentiles.is_some() { "single" } else { "repeat" },
        "median_ns": xtask::stats::median(&t.runs_ns),
        "runs_ns": t.runs_ns,
        "p50_ns": t.percentiles.map(|p| p.0),
        "p99_ns": t.percentiles.map(|p| p.1),
        "check": check,
    })
}

fn log(v: &Value, started: Instant) {
    eprintln!(
        "kernel-bench: scaling:   {:<58} {:>7.1} ns/packet  [{:.1}s] ({})",
        v["name"].as_str().unwrap_or_default(),
        v["median_ns"].as_f64().unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64(),
        v["check"].as_str().unwrap_or_default()
    );
}

/// The client's request segment on its established flow, repeat mode (as
/// the cases' `established`), with the table holding only this flow or
/// filled to capacity.
fn established(
    args: &Args,
    dp: &mut Dataplane,
    spec: &ServiceSpec,
    client: SocketAddr,
    full: bool,
) -> Result<Value> {
    let started = Instant::now();
    let before = Before::take(dp)?;
    let input = Frame::tcp(client, spec.vip, ACK | PSH).bytes();
    let [t] = repeat_runs([&*ingress(dp)?], &input, args, XDP_PASS)?;
    let check = before.expect(dp, args.repeats())? + "; output = input";
    let (id, name) = if full {
        (
            "established_full",
            "established flow (repeat), tables at capacity",
        )
    } else {
        ("established", "established flow (repeat), tables empty")
    };
    let v = case(id, name, t, check);
    log(&v, started);
    Ok(v)
}

/// A bare ACK of a different established flow of the full FLOWS table on
/// every call (single mode, flows picked at random among `flows`
/// prefilled ones): the lookups a busy host makes, whose entries are not in
/// the cache when the table is larger than it. No payload, so no request
/// starts and every call takes the same path however often a flow is
/// picked again.
fn established_random(
    args: &Args,
    dp: &mut Dataplane,
    spec: &ServiceSpec,
    flows: u32,
) -> Result<Value> {
    let started = Instant::now();
    let before = Before::take(dp)?;
    let mut rng = SplitMix(0x5eed);
    let [t] = single_runs(args.runs, args.single, |_, _| {
        let client = prefilled((rng.next_u64() % u64::from(flows)) as u32);
        let input = Frame::tcp(client, spec.vip, ACK).with_payload(&[]).bytes();
        call_once(ingress(dp)?, &input, XDP_PASS)
    })?;
    let check = before.expect(dp, args.calls())?;
    let v = case(
        "established_random",
        "established flow, a random one of the full table each call",
        t,
        check,
    );
    log(&v, started);
    Ok(v)
}

/// A SYN on a tuple never seen (single mode, as the cases' new-flow ones):
/// with the half-open table empty (`full` = None: each call's entry is
/// deleted after it, outside the timed part) or at its capacity (`Some`:
/// every insert must evict).
fn new_flow(
    args: &Args,
    dp: &mut Dataplane,
    spec: &ServiceSpec,
    full: Option<u32>,
) -> Result<Value> {
    let started = Instant::now();
    let before = Before::take(dp)?;
    let v6 = spec.vip.is_ipv6();
    let [t] = single_runs(args.runs, args.single, |_, n| {
        let client = if v6 {
            fresh_client_v6(n)
        } else {
            fresh_client(n)
        };
        let ns = call_once(
            ingress(dp)?,
            &Frame::tcp(client, spec.vip, SYN).bytes(),
            XDP_PASS,
        )?;
        if full.is_none() {
            half_open(dp)?
                .remove(&spec.flow_key(client))
                .context("the new flow has no half-open entry")?;
        }
        Ok(ns)
    })?;
    let mut check = before.expect(dp, args.calls())? + "; decided into HALF_OPEN";
    let (id, name) = match full {
        None => {
            check += ", each entry found and deleted after its call";
            ("new_flow_empty", "new flow (TCP SYN), tables empty")
        }
        Some(cap) => {
            // Still full, and prefilled flows gone: the inserts evicted. The
            // LRU frees in batches to per-CPU lists, hence the slack.
            let mut left = 0u32;
            let after = batch::for_each_key(half_open(dp)?, |k| {
                if is_prefilled(k) {
                    left += 1;
                }
            })? as u32;
            let slack = LRU_BATCH * std::thread::available_parallelism()?.get() as u32;
            ensure!(
                after + slack >= cap,
                "HALF_OPEN holds {after} entries after the runs, want at least {cap} - {slack}"
            );
            ensure!(left < cap, "no prefilled half-open flow was evicted");
            check += &format!(
                "; HALF_OPEN {cap}/{cap} entries before, {after} after; {} of the {cap} prefilled flows evicted",
                cap - left
            );
            (
                "new_flow_full",
                "new flow (TCP SYN), tables at capacity (LRU evicts)",
            )
        }
    };
    let v = case(id, name, t, check);
    log(&v, started);
    Ok(v)
}

/// The n-th IPv6 client of single mode: 2001:db8:8000::/48, never the same
/// twice in a case.
fn fresh_client_v6(n: u32) -> SocketAddr {
    SocketAddr::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0x8000, 0, 0, 0, (n >> 16) as u16, n as u16).into(),
        40000,
    )
}

/// Whether a key is one of `prefilled`'s flows (198.19.0.0/16).
fn is_prefilled(k: &FlowKey) -> bool {
    k.client[0].to_ne_bytes()[..2] == [198, 19]
}

/// splitmix64: a fixed, cheap sequence of well-mixed numbers, so every run
/// and every point picks the same flows.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Keys and values for `prefilled` flows `range` to the service.
fn chunk(
    spec: &ServiceSpec,
    entry: FlowEntry,
    range: std::ops::Range<u32>,
) -> (Vec<FlowKey>, Vec<FlowEntry>) {
    let keys: Vec<FlowKey> = range.map(|i| spec.flow_key(prefilled(i))).collect();
    let values = vec![entry; keys.len()];
    (keys, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(entries_text(65_536), "64 Ki");
        assert_eq!(entries_text(1_048_576), "1 Mi");
        assert_eq!(entries_text(16_777_216), "16 Mi");
        assert_eq!(entries_text(1_000), "1000");
    }

    #[test]
    fn one_baseline_and_one_change_per_point() {
        let p = points(&[65_536, 1_048_576]);
        assert_eq!(p.iter().filter(|p| p.is_baseline()).count(), 1);
        assert!(p[0].is_baseline() && p[0].fill);
        for q in &p[1..] {
            let changed = [
                q.table != BASE_TABLE,
                q.services != 1,
                q.backends != 1,
                q.v6,
            ];
            assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{q:?}");
        }
    }

    #[test]
    fn prefilled_flows_are_told_from_fresh_clients() {
        let spec = measured_service(&points(&[65_536])[0]);
        assert!(is_prefilled(&spec.flow_key(prefilled(70_000))));
        assert!(!is_prefilled(&spec.flow_key(fresh_client(3))));
        assert!(!is_prefilled(&spec.flow_key(sa(CLIENT_V4))));
    }

    #[test]
    fn measured_service_checks_and_has_its_backends() {
        for p in points(&[65_536]) {
            let s = measured_service(&p);
            s.check().unwrap();
            assert_eq!(s.stable.len() as u32, p.backends);
            assert_eq!(s.stable[0], s.vip);
        }
        for i in [0, 254] {
            other_service(i).check().unwrap();
        }
    }
}
