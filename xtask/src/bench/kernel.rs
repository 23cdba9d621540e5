//! The kernel path: runs the tests crate's `kernel-bench` (it needs the
//! data path library, which xtask does not link) and reads its JSON.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Mode, proc::TempDir};
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
    Ok(Results {
        cpu: v["cpu"].as_u64().unwrap_or_default(),
        jit: v["jit"].as_str().unwrap_or_default().to_owned(),
        cases,
    })
}
