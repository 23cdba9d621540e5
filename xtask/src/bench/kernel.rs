//! The kernel path: runs the tests crate's `kernel-bench` (it needs the
//! data path library, which xtask does not link) and reads its JSON.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Mode, proc::TempDir, profile};
use crate::cmd;

/// Sizes of a kernel-bench run.
pub struct Plan {
    pub runs: u32,
    pub repeat: u32,
    pub single: u32,
    /// Calls per run of the single-mode signal cases (on and off pairs,
    /// alternating call by call, and their TC floor).
    pub signal_calls: u32,
    pub table: u32,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        Plan {
            runs: 5,
            repeat: 1_000_000,
            single: match mode {
                Mode::Full => 1_000_000,
                Mode::Quick => 50_000,
            },
            signal_calls: match mode {
                Mode::Full => 200_000,
                Mode::Quick => 50_000,
            },
            table: 65_536,
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--runs".into(),
            self.runs.to_string(),
            "--repeat".into(),
            self.repeat.to_string(),
            "--single".into(),
            self.single.to_string(),
            "--signal-calls".into(),
            self.signal_calls.to_string(),
            "--table".into(),
            self.table.to_string(),
        ]
    }
}

pub struct Results {
    pub cpu: u64,
    pub jit: String,
    pub cases: Vec<Case>,
    pub programs: Vec<ProgramSize>,
}

/// What the verifier and the JIT made of one data path program.
pub struct ProgramSize {
    pub name: String,
    pub signals: bool,
    /// Instructions the verifier processed (every path it walked).
    pub verified_insns: Option<u64>,
    /// The loaded program's length in BPF instructions.
    pub xlated_insns: Option<u64>,
    pub jited_bytes: Option<u64>,
}

pub struct Case {
    pub id: String,
    pub name: String,
    /// "xdp" or "tc".
    pub hook: String,
    /// "repeat" or "single".
    pub mode: String,
    pub median_ns: f64,
    pub runs_ns: Vec<f64>,
    pub p50_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    pub check: String,
}

impl Results {
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// The floor a case is compared with: same hook, same mode.
    pub fn floor_of(&self, c: &Case) -> Option<&Case> {
        let id = match (c.hook.as_str(), c.mode.as_str()) {
            ("tc", "single") => "floor_tc_single",
            ("tc", _) => "floor_tc",
            (_, "single") => "floor_xdp_single",
            _ => "floor_xdp",
        };
        self.case(id)
    }
}

/// The cases profiled with perf, and why each.
pub const PROFILED: [(&str, &str); 3] = [
    ("established", "an established packet (repeat mode)"),
    (
        "egress_real",
        "an egress reply with a real rewrite (one call per packet)",
    ),
    (
        "new_flow_full",
        "a new flow at a full table (one call per packet, LRU evicting)",
    ),
];

/// Profiles each of `PROFILED` alone under perf (`kernel-bench --only`).
pub fn profile(bin: &Path, plan: &Plan) -> Result<Vec<profile::Profile>> {
    let dir = TempDir::new("kernel-profile")?;
    let mut out = vec![];
    for (id, _) in PROFILED {
        // Fewer, longer runs than the measured cases: enough samples, a
        // bounded time.
        let sizes = Plan {
            runs: 3,
            repeat: 3_000_000,
            single: 200_000,
            signal_calls: 200_000,
            table: plan.table,
        };
        let mut argv = vec![bin.display().to_string()];
        argv.extend(sizes.args());
        argv.extend(["--only".into(), id.into(), "--json".into()]);
        argv.push(dir.path().join(format!("{id}.json")).display().to_string());
        out.push(profile::command(
            id,
            &argv,
            &dir.path().join(format!("{id}.data")),
        )?);
    }
    Ok(out)
}

pub fn run(bin: &Path, plan: &Plan) -> Result<Results> {
    let dir = TempDir::new("kernel")?;
    let json = dir.path().join("kernel.json");
    cmd::run(Command::new(bin).args(plan.args()).arg("--json").arg(&json))?;
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    parse(&serde_json::from_str(&text)?)
}

fn parse(v: &Value) -> Result<Results> {
    let num = |v: &Value| v.as_f64();
    let mut cases = vec![];
    for c in v["cases"].as_array().context("no cases")? {
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        cases.push(Case {
            id: s("id"),
            name: s("name"),
            hook: s("hook"),
            mode: s("mode"),
            median_ns: num(&c["median_ns"]).context("case without median_ns")?,
            runs_ns: c["runs_ns"]
                .as_array()
                .map(|a| a.iter().filter_map(num).collect())
                .unwrap_or_default(),
            p50_ns: num(&c["p50_ns"]),
            p99_ns: num(&c["p99_ns"]),
            check: s("check"),
        });
    }
    let programs = v["programs"]
        .as_array()
        .context("no program sizes")?
        .iter()
        .map(|p| ProgramSize {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            signals: p["signals"].as_bool().unwrap_or_default(),
            verified_insns: p["verified_insns"].as_u64(),
            xlated_insns: p["xlated_insns"].as_u64(),
            jited_bytes: p["jited_bytes"].as_u64(),
        })
        .collect();
    Ok(Results {
        cpu: v["cpu"].as_u64().unwrap_or_default(),
        jit: v["jit"].as_str().unwrap_or_default().to_owned(),
        cases,
        programs,
    })
}
