//! The "Cost as the work grows" section of docs/BENCHMARKS.md and its chart
//! (docs/bench-scaling.svg), from one sweep and the control-plane samples.

use std::fmt::Write as _;

use super::{
    chart::{self, Group},
    control_scale::{self, Results as ControlScale},
    scaling::{
        self, ESTABLISHED, ESTABLISHED_FULL, ESTABLISHED_RANDOM, FLAT_LIMIT, NEW_EMPTY, NEW_FULL,
        Point, Results,
    },
};

/// The chart's file name, next to BENCHMARKS.md.
pub const CHART: &str = "bench-scaling.svg";

/// The cases in column order, with the chart's series names.
const SERIES: [(&str, &str); 5] = [
    (ESTABLISHED, "established, tables empty"),
    (ESTABLISHED_FULL, "established, tables full"),
    (
        ESTABLISHED_RANDOM,
        "established, random flow of a full table",
    ),
    (NEW_EMPTY, "new flow, tables empty"),
    (NEW_FULL, "new flow, tables full"),
];

/// Everything the section shows.
pub struct Inputs<'a> {
    pub sweep: &'a Results,
    pub plan: &'a scaling::Plan,
    pub control: &'a ControlScale,
    pub kernel_bin: &'a str,
    /// This machine's last-level cache, as sysfs says (e.g. "32768K").
    pub llc: Option<String>,
}

/// The last-level cache size of CPU 0, as sysfs writes it.
pub fn llc_size() -> Option<String> {
    (0..8)
        .rev()
        .find_map(|i| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size"))
                .ok()
        })
        .map(|s| s.trim().to_owned())
}

/// "+52 ns" for the baseline, "+61 ns (1.17×)" elsewhere, bold when the
/// ratio is not flat; "–" when not measured.
fn cell(r: &Results, p: &Point, id: &str) -> String {
    let above = r.above(p, id);
    if !above.is_finite() {
        return "–".into();
    }
    if p.baseline {
        return format!("{above:+.0}");
    }
    let x = r.ratio(p, id);
    if !x.is_finite() {
        format!("{above:+.0}")
    } else if scaling::is_flat(x) {
        format!("{above:+.0} ({x:.2}×)")
    } else {
        format!("**{above:+.0} ({x:.2}×)**")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The sweep's table, as printed and as in the doc.
pub fn table(r: &Results) -> String {
    let mut t = String::from(
        "| dimension | value | established, repeat: tables empty / full | established, a random flow of the full table per call | new flow: tables empty / full | FLOWS: bytes per entry (memlock) | HALF_OPEN: bytes per entry (memlock) | time: load / fill / point |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in &r.points {
        let value = if p.baseline {
            format!("{} (baseline)", p.value)
        } else {
            p.value.clone()
        };
        if let Some(why) = &p.skipped {
            let _ = writeln!(
                t,
                "| {} | {value} | not measured: {why} | | | | | |",
                p.dimension
            );
            continue;
        }
        let mem = |m: Option<scaling::Memory>| {
            m.map_or("–".into(), |m| {
                format!("{:.0} ({})", m.bytes_per_entry(), mib(m.memlock_bytes))
            })
        };
        let pair = |a: &str, b: &str| {
            if p.case(b).is_some() {
                format!("{} / {}", cell(r, p, a), cell(r, p, b))
            } else {
                cell(r, p, a)
            }
        };
        let _ = writeln!(
            t,
            "| {} | {value} | {} | {} | {} | {} | {} | {:.1} s / {} / {:.0} s |",
            p.dimension,
            pair(ESTABLISHED, ESTABLISHED_FULL),
            cell(r, p, ESTABLISHED_RANDOM),
            pair(NEW_EMPTY, NEW_FULL),
            mem(p.flows),
            mem(p.half_open),
            p.load_seconds,
            p.fill_seconds.map_or("–".into(), |s| format!("{s:.1} s")),
            p.seconds,
        );
    }
    t
}

/// Control plane at 1 and 256 services.
pub fn control_table(c: &ControlScale) -> String {
    let mut t = String::from(
        "| services | `canaryctl status`, start to exit | its output | GET /metrics, connect to end of body | body | samples | canaryd RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let one = c.with(1);
    for s in &c.samples {
        let vs = |v: f64, base: Option<f64>| match base {
            Some(b) if s.services != 1 && b > 0.0 => format!(" ({:.2}×)", v / b),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "| {} | {:.2} ms{} | {} B | {:.2} ms{} | {} B{} | {} | {:.1} MiB |",
            s.services,
            s.status_median_ms(),
            vs(s.status_median_ms(), one.map(|o| o.status_median_ms())),
            s.status_bytes,
            s.metrics_median_ms(),
            vs(s.metrics_median_ms(), one.map(|o| o.metrics_median_ms())),
            s.metrics_bytes,
            vs(s.metrics_bytes as f64, one.map(|o| o.metrics_bytes as f64)),
            s.metrics_samples,
            s.rss_kib as f64 / 1024.0
        );
    }
    t
}

/// The chart: each changed point's cost above the floor over the baseline's.
pub fn svg(r: &Results, subtitle: &str) -> String {
    let groups: Vec<Group> = r
        .points
        .iter()
        .filter(|p| !p.baseline && p.skipped.is_none())
        .map(|p| Group {
            title: p.value.clone(),
            hint: "× baseline",
            ratios: SERIES.iter().map(|(id, _)| r.ratio(p, id)).collect(),
        })
        .collect();
    let names: Vec<&str> = SERIES.iter().map(|(_, n)| *n).collect();
    chart::svg_against(
        &format!("Cost above the floor, × the baseline's ({subtitle})"),
        &names,
        &groups,
        "baseline = 1.0",
    )
}

/// A note on the sizes of `TABLES` this run did not measure.
fn left_out(tables: &[u32]) -> String {
    let missing: Vec<String> = scaling::TABLES
        .iter()
        .filter(|t| !tables.contains(t))
        .map(|t| format!("{t}"))
        .collect();
    if missing.is_empty() {
        String::new()
    } else {
        format!(
            " Table sizes not measured in this run: {} entries (`--quick` leaves 16 Mi out: \
             filling and counting it takes about a minute).",
            missing.join(", ")
        )
    }
}

/// The computed part of the findings: which points are not flat.
pub fn steps_text(r: &Results) -> String {
    let steps = r.steps();
    if steps.is_empty() {
        return format!(
            "Every measured point stays within {FLAT_LIMIT}× the baseline's cost above the floor, \
             in every case: flat over the whole sweep.\n"
        );
    }
    let mut t = format!(
        "Points above {FLAT_LIMIT}× the baseline's cost above the floor (same case; computed \
         from the table):\n\n"
    );
    for s in &steps {
        let name = SERIES
            .iter()
            .find(|(id, _)| *id == s.case)
            .map_or(s.case.as_str(), |(_, n)| n);
        let _ = writeln!(t, "- {}: {name}, {:.2}×", s.point, s.ratio);
    }
    let noise = r.noise();
    if noise.is_finite() {
        let _ = writeln!(
            t,
            "\nThis run's noise: a table's repeat-mode \"empty\" and \"full\" cases take the same \
             path on the same cached entry, yet differ by up to {:.2}× the baseline's cost here; \
             a flag within about that much of {FLAT_LIMIT}× may be the machine's drift, not the work \
             (each point is measured once, one after the other).",
            noise
        );
    }
    let flat: Vec<&str> = r
        .points
        .iter()
        .filter(|p| !p.baseline && p.skipped.is_none())
        .filter(|p| !steps.iter().any(|s| s.point == p.value))
        .map(|p| p.value.as_str())
        .collect();
    if !flat.is_empty() {
        let _ = writeln!(
            t,
            "\nFlat (every case within {FLAT_LIMIT}×): {}.",
            flat.join(", ")
        );
    }
    t
}

pub fn section(i: &Inputs) -> String {
    let r = i.sweep;
    let base_flows = r.baseline().and_then(|b| b.flows);
    let mut d = String::new();
    let _ = write!(
        d,
        "## Cost as the work grows\n\n\
         ```sh\n{} {}\n```\n\n\
         Each point is the baseline (a 65,536-entry flow table, 1 service, 1 backend per \
         version, IPv4) with one thing changed, on a data path of its own (signals on, as it \
         ships), BPF_PROG_TEST_RUN pinned to CPU {}. Figures are ns above the floor of the same \
         sweep ({:.0} ns repeat mode, {:.0} ns one call per packet: the empty XDP program, \
         measured at its start), median of {} runs; in parentheses, × the baseline's, in bold \
         when above {FLAT_LIMIT}×.\n\n\
         - **established, repeat**: the client's request segment on its flow, {} repeats per \
         run, as the kernel path's established case (same entry every repeat, output = input); \
         with the tables holding only that flow, and again after both tables were filled to \
         capacity.\n\
         - **a random flow of the full table per call**: a bare ACK of a different prefilled \
         flow each call (splitmix64 over the table; {} calls per run): the lookups a busy host \
         makes, whose entries are not in the cache once the table is larger than it.\n\
         - **new flow**: a SYN on a tuple never seen, {} calls per run: tables empty (the \
         half-open entry deleted after each call, untimed), and with HALF_OPEN at capacity (every \
         insert evicts; mean of the calls, so the LRU's batched evictions are in it).\n\
         - **bytes per entry**: the kernel's `memlock` charge for the map (its fdinfo) over its \
         `max_entries`; the LRU hash preallocates every element, so it is the same empty or full. \
         HALF_OPEN is a quarter of the flow table's size.\n\
         - **256 services**: the measured service is the last of 256 registered (each with its \
         backends and BACKEND_OWNERS entries); **16 backends**: 16 per version, the VIP first.\n\
         - Filling: `BPF_MAP_UPDATE_BATCH` from userspace, then every table counted with \
         `BPF_MAP_LOOKUP_BATCH` (the sweep stops unless it holds exactly `max_entries`). \
         Counters are checked after every case as deltas: all packets `translated`, to the \
         measured service, no new flow or rehash counted (the checks are listed below).\n\n{}\n\
         The sweep took {:.0} s.{}\n\n\
         ![Cost above the floor, × the baseline's]({})\n\n",
        i.kernel_bin,
        i.plan.args().join(" "),
        r.cpu,
        r.floor_ns,
        r.floor_single_ns,
        i.plan.runs,
        i.plan.repeat,
        i.plan.single,
        i.plan.single,
        table(r),
        r.seconds,
        left_out(&i.plan.tables),
        CHART,
    );

    let _ = write!(
        d,
        "### Where cost stops being flat, and why\n\n{}\n",
        steps_text(r)
    );
    let llc = i.llc.as_deref().unwrap_or("unknown");
    let table_size = |p: &Point| p.flows.map_or("?".into(), |m| mib(m.memlock_bytes));
    let sizes: Vec<String> = r
        .points
        .iter()
        .filter(|p| p.dimension == "flow table" && p.skipped.is_none())
        .map(|p| format!("{} at {}", table_size(p), p.value))
        .collect();
    let max_ratio = |id: &str| {
        r.points
            .iter()
            .filter(|p| !p.baseline)
            .map(|p| r.ratio(p, id))
            .filter(|x| x.is_finite())
            .fold(f64::NAN, f64::max)
    };
    let min_ratio = |id: &str| {
        r.points
            .iter()
            .filter(|p| !p.baseline)
            .map(|p| r.ratio(p, id))
            .filter(|x| x.is_finite())
            .fold(f64::NAN, f64::min)
    };
    let _ = write!(
        d,
        "Reasons, from the kernel's code and the sizes above (reasoned, not profiled; \"likely\" \
         marks what no measurement here isolates):\n\n\
         - **Same flow again (repeat mode)**: {:.2}× to {:.2}× the baseline over the points. By \
         the kernel's code it should not depend on the table: its hash tables have \
         `roundup_pow_of_two(max_entries)` buckets, so a full table's chains stay about one \
         element long at any size, and a lookup hashes the 40-byte key (jhash) and walks one \
         short chain whatever the size. Repeating one packet keeps that bucket and element in \
         L1, so this case cannot show the cache at all; what moves it is noise, or the packet \
         itself (IPv6).\n\
         - **A different flow per call**: FLOWS takes {} here, against a last-level cache of \
         {llc} on this machine. Once the table is larger than the cache, a lookup of a random \
         flow likely misses it for the bucket and for the element (two dependent memory loads), \
         and likely the TLB too (the preallocated elements are one vmalloc area, \
         mapped in 4 KiB pages unless the kernel chose huge ones): that is the \
         cost a host with many active flows pays, and why it grows with the table and not with \
         the number of entries as such. In this harness every call also runs a syscall \
         between packets, which cools the caches even at the baseline.\n\
         - **New flow**: two lookups that miss (FLOWS, then HALF_OPEN; each walks its bucket's \
         chain, longer when the table is full) and an insert into HALF_OPEN. A new tuple hashes \
         to a random bucket, so even an empty table costs memory traffic once its bucket array \
         (a 16-byte head per bucket on this kernel, `roundup_pow_of_two(max_entries)` of them: \
         1 MiB for FLOWS at 64 Ki entries, 256 MiB at 16 Mi) is larger than the cache: likely \
         a miss per lookup, and a cold element from the free list for the insert. At capacity the \
         insert must take a free element from the LRU: the common LRU list refills the CPU's \
         free list in batches of up to 128 by evicting from its inactive list under a global \
         lock, so the mean carries that batch work, and the evicted entries are cold (likely \
         cache misses, more of them in a larger table).\n\
         - **256 services**: SERVICES is a hash of 256 entries; one lookup walks one chain of \
         about one element, so the count of services should not show; BACKENDS is an array \
         indexed by service id, the same cost for any id.\n\
         - **16 backends**: a new flow picks its backend as `hash % count` and reads one array \
         slot; established packets never read BACKENDS. No loop over backends, so no growth \
         expected.\n\
         - **IPv6**: the same 40-byte flow key (both families use 16-byte address words), a \
         40-byte IP header instead of 20 (the parse reads more bytes), no IP header checksum to \
         update but 16-byte addresses in the L4 checksum update.\n\n",
        min_ratio(ESTABLISHED).min(min_ratio(ESTABLISHED_FULL)),
        max_ratio(ESTABLISHED).max(max_ratio(ESTABLISHED_FULL)),
        sizes.join(", "),
    );
    if let Some(m) = base_flows {
        let _ = writeln!(
            d,
            "Memory: {:.0} bytes per flow-table entry (FLOWS, memlock / max_entries at the \
             baseline; the same at every size: a 40-byte key and a 64-byte value, and, likely, \
             the kernel's element header with its LRU node and a share of the bucket array).\n",
            m.bytes_per_entry()
        );
    }

    let c = i.control;
    let _ = write!(
        d,
        "### Control plane with {} services\n\n\
         A canaryd serving 1 service and then one serving {} (VIPs on ports of the host \
         namespace's 198.18.0.1, backends on the backend namespaces' addresses; config generated \
         by `xtask/src/bench/control_scale.rs`), in a topology of the bench's own with no other \
         load; one warm-up, then {} samples of each, medians:\n\n\
         ```sh\n\
         canaryctl --socket <dir>/run/canary.sock status   # process start to exit\n\
         GET http://198.18.0.1:9464/metrics                  # from the host namespace, HTTP/1.0, to the end of the body\n\
         ```\n\n{}\n",
        control_scale::SERVICES[1],
        control_scale::SERVICES[1],
        c.runs,
        control_table(c),
    );
    if let (Some(one), Some(many)) = (c.with(1), c.with(control_scale::SERVICES[1])) {
        let _ = writeln!(
            d,
            "With {} services, `status` takes {:.2}× the time of 1 service and `/metrics` {:.2}× \
             ({:.1}× the body). Both answers hold every service (status a line each, /metrics \
             the series of each service and version), so what grows is the work of reading \
             each one's counters and writing its text; at 1 service `canaryctl status` is \
             likely mostly process start-up and the socket round trip (not measured apart).\n",
            many.services,
            many.status_median_ms() / one.status_median_ms(),
            many.metrics_median_ms() / one.metrics_median_ms(),
            many.metrics_bytes as f64 / one.metrics_bytes.max(1) as f64,
        );
    }

    d.push_str(
        "\nWhat the counters showed after each case of the sweep (it stops if any differ):\n\n",
    );
    for p in r.points.iter().filter(|p| p.skipped.is_none()) {
        for c in &p.cases {
            let _ = writeln!(d, "- {}, {}: {}", p.value, c.name, c.check);
        }
    }
    d.push('\n');
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_mark_what_is_not_flat() {
        let v = serde_json::json!({
            "cpu": 1, "floor_ns": 10.0, "floor_single_ns": 100.0,
            "points": [
                {"dimension": "d", "value": "base", "baseline": true, "cases": [
                    {"id": "established", "mode": "repeat", "median_ns": 60.0}]},
                {"dimension": "d", "value": "big", "baseline": false, "cases": [
                    {"id": "established", "mode": "repeat", "median_ns": 110.0}]},
            ]
        });
        let r = scaling::parse(&v).unwrap();
        assert_eq!(cell(&r, &r.points[0], ESTABLISHED), "+50");
        assert_eq!(cell(&r, &r.points[1], ESTABLISHED), "**+100 (2.00×)**");
        assert_eq!(cell(&r, &r.points[1], NEW_FULL), "–");
        assert!(steps_text(&r).contains("big: established, tables empty, 2.00×"));
        let t = table(&r);
        assert!(t.contains("base (baseline)"));
        let svg = svg(&r, "t");
        assert!(svg.contains("baseline = 1.0"));
    }
}
