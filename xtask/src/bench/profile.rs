//! Where the data path's time goes: `perf` sampling (cpu-clock: this kind
//! of virtual machine has no hardware counters, so `bpftool prog profile`
//! cannot count cycles here) of kernel-bench cases and of the host under
//! the end-to-end load, with the JIT's symbols (`net.core.bpf_jit_kallsyms`)
//! so each BPF program shows under its own name.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, ensure};

use crate::cmd;

/// One symbol's share of a profile's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    pub name: String,
    pub percent: f64,
}

/// What one profile saw.
pub struct Profile {
    /// What was profiled (a kernel-bench case id, or the load).
    pub what: String,
    /// The command that recorded it, for the page.
    pub command: String,
    /// Self time per symbol, % of all samples.
    pub symbols: Vec<Symbol>,
    /// The data path's time: samples whose call chain runs through one of
    /// canary's programs, by the function the sample landed in (% of those
    /// samples), and their share of all samples.
    pub data_path: ChainShare,
}

/// Samples attributed by call chain to canary's programs.
#[derive(Debug, Default, PartialEq)]
pub struct ChainShare {
    pub samples: u64,
    pub of_all_percent: f64,
    /// Where those samples landed (the leaf frame), % of `samples`.
    pub leaves: Vec<Symbol>,
}

impl Profile {
    /// The data path's time by category, % of its samples, largest first.
    pub fn categories(&self) -> Vec<(&'static str, f64)> {
        let mut sums: Vec<(&'static str, f64)> = vec![];
        for s in &self.data_path.leaves {
            let c = category(&s.name);
            match sums.iter_mut().find(|(n, _)| *n == c) {
                Some((_, p)) => *p += s.percent,
                None => sums.push((c, s.percent)),
            }
        }
        sums.sort_by(|a, b| b.1.total_cmp(&a.1));
        sums
    }
}

/// Sampling rate: high enough for a few thousand samples from a
/// seconds-long case.
const FREQUENCY: &str = "9999";

fn record_args(data: &Path, system_wide: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "record",
        "-q",
        "-g",
        "-e",
        "cpu-clock",
        "-F",
        FREQUENCY,
        "-o",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    a.push(data.display().to_string());
    if system_wide {
        a.push("-a".into());
    }
    a
}

/// The perf command line as the report prints it: paths inside the
/// checkout relative to its root (the report is read on other machines).
fn as_a_reader_runs_it(args: &[String]) -> String {
    let root = format!("{}/", crate::paths::workspace_root().display());
    format!("perf {}", args.join(" ")).replace(&root, "")
}

/// Profiles one command (its own samples, kernel and user) into `data`.
pub fn command(what: &str, argv: &[String], data: &Path) -> Result<Profile> {
    let mut args = record_args(data, false);
    args.push("--".into());
    args.extend(argv.iter().cloned());
    cmd::run(
        Command::new("perf")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .with_context(|| format!("perf record of {what}"))?;
    Ok(Profile {
        what: what.into(),
        command: as_a_reader_runs_it(&args),
        symbols: report(data)?,
        data_path: chains(data)?,
    })
}

/// Starts sampling every CPU for `seconds`; `finish` reads it.
pub fn start_system_wide(data: &Path, seconds: u32) -> Result<Child> {
    let mut args = record_args(data, true);
    args.extend(["--".into(), "sleep".into(), seconds.to_string()]);
    Command::new("perf")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record -a")
}

/// Waits for a `start_system_wide` recording and reads it.
pub fn finish_system_wide(
    what: &str,
    mut child: Child,
    data: &Path,
    seconds: u32,
) -> Result<Profile> {
    let status = child.wait().context("waiting for perf record")?;
    ensure!(status.success(), "perf record -a exited with {status}");
    let mut args = record_args(data, true);
    args.extend(["--".into(), "sleep".into(), seconds.to_string()]);
    Ok(Profile {
        what: what.into(),
        command: as_a_reader_runs_it(&args),
        symbols: report(data)?,
        data_path: chains(data)?,
    })
}

/// Self time per symbol (no children), as perf reports it.
fn report(data: &Path) -> Result<Vec<Symbol>> {
    let text = cmd::probe(Command::new("perf").args([
        "report",
        "-i",
        &data.display().to_string(),
        "--no-children",
        "--sort",
        "symbol",
        "--stdio",
        "-g",
        "none",
    ]))?
    .context("perf report failed")?;
    let symbols = parse_report(&text);
    ensure!(!symbols.is_empty(), "perf report found no samples");
    Ok(symbols)
}

/// Reads every sample's call chain (`perf script`) and keeps those that
/// run through one of canary's programs: a helper or map function called
/// by the program counts as the program's time, and a clock read by the
/// harness or the network stack does not.
fn chains(data: &Path) -> Result<ChainShare> {
    let mut child = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i", &data.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf script")?;
    let out = child.stdout.take().context("perf script's output")?;
    let share = attribute(BufReader::new(out).lines().map_while(|l| l.ok()));
    let status = child.wait().context("waiting for perf script")?;
    ensure!(status.success(), "perf script exited with {status}");
    Ok(share)
}

/// `perf script -F ip,sym` output: one sample per block of frame lines
/// (`\t<address> <symbol>`, the leaf first), blocks apart by blank lines.
pub fn attribute(lines: impl Iterator<Item = String>) -> ChainShare {
    let mut total = 0u64;
    let mut ours = 0u64;
    let mut leaves: Vec<(String, u64)> = vec![];
    let mut leaf: Option<String> = None;
    let mut in_program = false;
    let mut end_sample = |leaf: &mut Option<String>, in_program: &mut bool| {
        if let Some(l) = leaf.take() {
            total += 1;
            if *in_program {
                ours += 1;
                match leaves.iter_mut().find(|(n, _)| *n == l) {
                    Some((_, c)) => *c += 1,
                    None => leaves.push((l, 1)),
                }
            }
        }
        *in_program = false;
    };
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(_ip), Some(sym)) = (words.next(), words.next()) else {
            end_sample(&mut leaf, &mut in_program);
            continue;
        };
        let sym = program_name(sym);
        in_program |= sym.starts_with("bpf_prog_canary");
        if leaf.is_none() {
            leaf = Some(sym);
        }
    }
    end_sample(&mut leaf, &mut in_program);
    let mut leaves: Vec<Symbol> = leaves
        .into_iter()
        .map(|(name, c)| Symbol {
            name,
            percent: c as f64 * 100.0 / ours.max(1) as f64,
        })
        .collect();
    leaves.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    ChainShare {
        samples: ours,
        of_all_percent: ours as f64 * 100.0 / total.max(1) as f64,
        leaves,
    }
}

/// Lines like `    20.60%  [k] htab_map_hash`; one BPF program may show
/// twice (two loads of it in one case), so equal names add up.
pub fn parse_report(text: &str) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = vec![];
    for line in text.lines() {
        let line = line.trim();
        let Some((pct, rest)) = line.split_once('%') else {
            continue;
        };
        let Ok(percent) = pct.trim().parse::<f64>() else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(_space), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let name = program_name(name);
        match out.iter_mut().find(|s| s.name == name) {
            Some(s) => s.percent += percent,
            None => out.push(Symbol { name, percent }),
        }
    }
    out.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    out
}

/// `bpf_prog_<tag>_canary_ingress` → `bpf_prog_canary_ingress`: the tag
/// changes with every build, the name says what it is.
fn program_name(symbol: &str) -> String {
    match symbol.strip_prefix("bpf_prog_") {
        Some(rest) => match rest.split_once('_') {
            Some((tag, name)) if tag.chars().all(|c| c.is_ascii_hexdigit()) => {
                format!("bpf_prog_{name}")
            }
            _ => symbol.into(),
        },
        None => symbol.into(),
    }
}

/// What a symbol's time is spent on, for the summary line of a profile.
pub fn category(symbol: &str) -> &'static str {
    const HASH: [&str; 5] = [
        "htab_map_hash",
        "lookup_nulls_elem_raw",
        "__htab_map_lookup_elem",
        "memcmp",
        "lookup_elem_raw",
    ];
    const CHECKSUM: [&str; 6] = [
        "bpf_l4_csum_replace",
        "bpf_l3_csum_replace",
        "inet_proto_csum_replace4",
        "inet_proto_csum_replace_by_diff",
        "bpf_skb_store_bytes",
        "skb_ensure_writable",
    ];
    const HARNESS: [&str; 4] = [
        "bpf_test_run",
        "bpf_test_timer_continue",
        "__local_bh_enable_ip",
        "bpf_prog_test_run_skb",
    ];
    if symbol.starts_with("bpf_prog_canary") {
        "canary's programs (their own instructions)"
    } else if symbol.starts_with("bpf_prog_bench_floor") {
        "empty floor programs"
    } else if HASH.contains(&symbol) {
        "hash map lookups (hash, bucket walk, key compare)"
    } else if symbol.contains("lru")
        || symbol.starts_with("htab_lru")
        || symbol.contains("alloc_htab_elem")
    {
        "LRU insert and eviction"
    } else if CHECKSUM.contains(&symbol) {
        "checksum and store helpers"
    } else if symbol.contains("ktime") || symbol == "read_tsc" {
        "clock reads"
    } else if HARNESS.contains(&symbol) {
        "BPF_PROG_TEST_RUN harness"
    } else {
        "other kernel functions"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_self_time_lines_and_merges_program_copies() {
        let text = "# Samples: 10K of event 'cpu-clock'\n\
                    #\n\
                    \x20   20.60%  [k] htab_map_hash\n\
                    \x20   18.57%  [k] bpf_prog_215fbd3b278358c4_canary_ingress\n\
                    \x20   17.72%  [k] bpf_prog_215fbd3b278358c4_canary_ingress\n\
                    \x20    0.23%  [.] aya_obj::btf::btf::Btf::parse\n";
        let s = parse_report(text);
        assert_eq!(s[0].name, "bpf_prog_canary_ingress");
        assert!((s[0].percent - 36.29).abs() < 1e-9);
        assert_eq!(s[1].name, "htab_map_hash");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn samples_count_as_the_data_path_by_call_chain() {
        let text = "\n\tffffffff1 htab_map_hash\n\tffffffff2 __htab_map_lookup_elem\n\
                    \tffffffff3 bpf_prog_0123abcd_canary_ingress\n\tffffffff4 bpf_test_run\n\
                    \n\n\tffffffff5 read_tsc\n\tffffffff6 bpf_test_timer_continue\n\
                    \n\tffffffff3 bpf_prog_0123abcd_canary_ingress\n\tffffffff4 bpf_test_run\n\
                    \n\tffffffff7 read_tsc\n\tffffffff8 bpf_ktime_get_ns\n\
                    \tffffffff9 bpf_prog_99_canary_egress\n";
        let share = attribute(text.lines().map(String::from));
        assert_eq!(share.samples, 3);
        assert_eq!(share.of_all_percent, 75.0);
        let names: Vec<&str> = share.leaves.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"htab_map_hash"));
        assert!(names.contains(&"bpf_prog_canary_ingress"));
        assert!(
            names.contains(&"read_tsc"),
            "the program's own clock read counts"
        );
        assert!((share.leaves.iter().map(|s| s.percent).sum::<f64>() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn categories_add_up_by_kind() {
        let leaves = vec![
            Symbol {
                name: "htab_map_hash".into(),
                percent: 20.0,
            },
            Symbol {
                name: "memcmp".into(),
                percent: 5.0,
            },
            Symbol {
                name: "bpf_prog_canary_egress".into(),
                percent: 30.0,
            },
            Symbol {
                name: "bpf_l4_csum_replace".into(),
                percent: 10.0,
            },
        ];
        let p = Profile {
            what: "x".into(),
            command: String::new(),
            symbols: vec![],
            data_path: ChainShare {
                samples: 4,
                of_all_percent: 65.0,
                leaves,
            },
        };
        let c = p.categories();
        assert_eq!(c[0], ("canary's programs (their own instructions)", 30.0));
        assert_eq!(c[1].1, 25.0);
        assert_eq!(c[2].0, "checksum and store helpers");
    }
}
