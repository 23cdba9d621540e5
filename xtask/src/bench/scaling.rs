//! Cost as the work grows: runs `kernel-bench --scaling` (each point the
//! baseline with one thing changed: flow-table size, services, backends per
//! version, address family), reads its JSON, and decides which points are
//! no longer flat against the baseline.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use super::{Mode, proc::TempDir};
use crate::cmd;

/// A point whose cost above the floor is more than this many times the
/// baseline's (same case) is "not flat". Above the run-to-run noise of the
/// repeat-mode figures (a few ns on 40-100 ns) on this kind of machine.
pub const FLAT_LIMIT: f64 = 1.2;

/// Flow-table sizes of the sweep: the baseline first.
pub const TABLES: [u32; 3] = [65_536, 1_048_576, 16_777_216];

/// The sweep's case ids, in the report's column order.
pub const ESTABLISHED: &str = "established";
pub const ESTABLISHED_FULL: &str = "established_full";
pub const ESTABLISHED_RANDOM: &str = "established_random";
pub const NEW_EMPTY: &str = "new_flow_empty";
pub const NEW_FULL: &str = "new_flow_full";

/// Sizes of a sweep.
pub struct Plan {
    pub runs: u32,
    pub repeat: u32,
    pub single: u32,
    pub tables: Vec<u32>,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        match mode {
            Mode::Full => Plan {
                runs: 5,
                repeat: 1_000_000,
                single: 100_000,
                tables: TABLES.to_vec(),
            },
            // 16 Mi left out: filling and counting it takes about a minute.
            Mode::Quick => Plan {
                runs: 3,
                repeat: 200_000,
                single: 20_000,
                tables: TABLES[..2].to_vec(),
            },
        }
    }

    pub fn args(&self) -> Vec<String> {
        let tables: Vec<String> = self.tables.iter().map(u32::to_string).collect();
        vec![
            "--scaling".into(),
            "--runs".into(),
            self.runs.to_string(),
            "--repeat".into(),
            self.repeat.to_string(),
            "--single".into(),
            self.single.to_string(),
            "--scaling-tables".into(),
            tables.join(","),
        ]
    }
}

pub struct Results {
    pub cpu: u64,
    pub floor_ns: f64,
    pub floor_single_ns: f64,
    /// The sweep's wall time, as kernel-bench measured it.
    pub seconds: f64,
    pub points: Vec<Point>,
}

pub struct Point {
    pub dimension: String,
    pub value: String,
    pub baseline: bool,
    /// Why the point was not measured (the kernel refused its tables).
    pub skipped: Option<String>,
    pub load_seconds: f64,
    pub fill_seconds: Option<f64>,
    pub seconds: f64,
    pub flows: Option<Memory>,
    pub half_open: Option<Memory>,
    pub cases: Vec<Case>,
}

/// A table's size and the kernel's memory charge for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    pub max_entries: u64,
    pub memlock_bytes: u64,
}

impl Memory {
    pub fn bytes_per_entry(&self) -> f64 {
        self.memlock_bytes as f64 / self.max_entries.max(1) as f64
    }
}

pub struct Case {
    pub id: String,
    pub name: String,
    /// "repeat" or "single": which floor it is compared with.
    pub mode: String,
    pub median_ns: f64,
    pub check: String,
}

/// A case of a point that is no longer flat.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub point: String,
    pub case: String,
    pub ratio: f64,
}

impl Point {
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }
}

impl Results {
    pub fn baseline(&self) -> Option<&Point> {
        self.points.iter().find(|p| p.baseline)
    }

    /// ns above the floor of the case's own mode; NaN when not measured.
    pub fn above(&self, p: &Point, id: &str) -> f64 {
        p.case(id).map_or(f64::NAN, |c| {
            c.median_ns
                - if c.mode == "single" {
                    self.floor_single_ns
                } else {
                    self.floor_ns
                }
        })
    }

    /// The point's cost above the floor over the baseline's, same case.
    pub fn ratio(&self, p: &Point, id: &str) -> f64 {
        let base = self.baseline().map_or(f64::NAN, |b| self.above(b, id));
        ratio(self.above(p, id), base)
    }

    /// Every (point, case) whose ratio to the baseline is above FLAT_LIMIT.
    pub fn steps(&self) -> Vec<Step> {
        let mut v = vec![];
        for p in self.points.iter().filter(|p| !p.baseline) {
            for c in &p.cases {
                let r = self.ratio(p, &c.id);
                if !is_flat(r) {
                    v.push(Step {
                        point: p.value.clone(),
                        case: c.id.clone(),
                        ratio: r,
                    });
                }
            }
        }
        v
    }
}

impl Results {
    /// This run's noise, from the data: in repeat mode a table's "empty" and
    /// "full" cases send the same packet through the same cached entry, so
    /// their difference, over the baseline's cost, is what the machine's
    /// drift alone moves a figure by. The largest such difference; NaN when
    /// no point has both.
    pub fn noise(&self) -> f64 {
        let base = self
            .baseline()
            .map_or(f64::NAN, |b| self.above(b, ESTABLISHED));
        self.points
            .iter()
            .map(|p| {
                ratio(
                    (self.above(p, ESTABLISHED) - self.above(p, ESTABLISHED_FULL)).abs(),
                    base,
                )
            })
            .filter(|x| x.is_finite())
            .fold(f64::NAN, f64::max)
    }
}

/// `above / base`, NaN unless both are measured and the base is at least
/// 1 ns (a ratio to a cost within the floor's own noise means nothing).
pub fn ratio(above: f64, base: f64) -> f64 {
    if above.is_finite() && base.is_finite() && base >= 1.0 {
        above / base
    } else {
        f64::NAN
    }
}

/// Whether a ratio to the baseline counts as flat; an unmeasured one does.
pub fn is_flat(ratio: f64) -> bool {
    ratio.is_nan() || ratio <= FLAT_LIMIT
}

pub fn run(bin: &Path, plan: &Plan) -> Result<Results> {
    let dir = TempDir::new("scaling")?;
    let json = dir.path().join("scaling.json");
    cmd::run(Command::new(bin).args(plan.args()).arg("--json").arg(&json))?;
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    parse(&serde_json::from_str(&text)?)
}

pub fn parse(v: &Value) -> Result<Results> {
    let f = |v: &Value| v.as_f64();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let memory = |m: &Value| {
        Some(Memory {
            max_entries: m["max_entries"].as_u64()?,
            memlock_bytes: m["memlock_bytes"].as_u64()?,
        })
    };
    let mut points = vec![];
    for p in v["points"].as_array().context("no points")? {
        let mut cases = vec![];
        for c in p["cases"].as_array().map(Vec::as_slice).unwrap_or_default() {
            cases.push(Case {
                id: s(&c["id"]),
                name: s(&c["name"]),
                mode: s(&c["mode"]),
                median_ns: f(&c["median_ns"]).context("case without median_ns")?,
                check: s(&c["check"]),
            });
        }
        points.push(Point {
            dimension: s(&p["dimension"]),
            value: s(&p["value"]),
            baseline: p["baseline"].as_bool().unwrap_or(false),
            skipped: p["skipped"].as_str().map(str::to_owned),
            load_seconds: f(&p["load_seconds"]).unwrap_or(f64::NAN),
            fill_seconds: f(&p["fill_seconds"]),
            seconds: f(&p["seconds"]).unwrap_or(f64::NAN),
            flows: memory(&p["memory"]["flows"]),
            half_open: memory(&p["memory"]["half_open"]),
            cases,
        });
    }
    let r = Results {
        cpu: v["cpu"].as_u64().unwrap_or_default(),
        floor_ns: f(&v["floor_ns"]).context("no floor_ns")?,
        floor_single_ns: f(&v["floor_single_ns"]).context("no floor_single_ns")?,
        seconds: f(&v["seconds"]).unwrap_or(f64::NAN),
        points,
    };
    ensure!(
        r.points.iter().filter(|p| p.baseline).count() == 1,
        "the sweep must have exactly one baseline point"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        let case = |id: &str, mode: &str, ns: f64| json!({"id": id, "name": id, "mode": mode, "median_ns": ns, "runs_ns": [ns], "check": "ok"});
        json!({
            "cpu": 1, "floor_ns": 10.0, "floor_single_ns": 100.0, "seconds": 5.0,
            "points": [
                {"dimension": "flow table", "value": "64 Ki entries", "baseline": true,
                 "load_seconds": 0.1, "fill_seconds": 0.2, "seconds": 1.0,
                 "memory": {"flows": {"max_entries": 65536, "memlock_bytes": 11010944},
                            "half_open": {"max_entries": 16384, "memlock_bytes": 2752512}},
                 "cases": [case("established", "repeat", 60.0), case("new_flow_empty", "single", 400.0)]},
                {"dimension": "flow table", "value": "16 Mi entries", "baseline": false,
                 "load_seconds": 3.0, "seconds": 9.0,
                 "cases": [case("established", "repeat", 65.0), case("new_flow_empty", "single", 500.0)]},
                {"dimension": "flow table", "value": "1 Gi entries", "baseline": false,
                 "skipped": "loading the data path: Cannot allocate memory"},
            ]
        })
    }

    #[test]
    fn reads_points_memory_and_skips() {
        let r = parse(&sample()).unwrap();
        assert_eq!(r.points.len(), 3);
        let b = r.baseline().unwrap();
        // The kernel's own figure for 64 Ki entries: a little over 168.
        assert!((b.flows.unwrap().bytes_per_entry() - 168.0).abs() < 0.02);
        assert_eq!(b.half_open.unwrap().bytes_per_entry(), 168.0);
        assert_eq!(r.points[1].fill_seconds, None);
        assert!(r.points[2].skipped.is_some() && r.points[2].cases.is_empty());
    }

    #[test]
    fn cost_is_above_the_floor_of_its_own_mode() {
        let r = parse(&sample()).unwrap();
        let b = r.baseline().unwrap();
        assert_eq!(r.above(b, ESTABLISHED), 50.0);
        assert_eq!(r.above(b, NEW_EMPTY), 300.0);
        assert!(r.above(b, NEW_FULL).is_nan());
    }

    #[test]
    fn a_step_is_a_ratio_above_the_limit() {
        let r = parse(&sample()).unwrap();
        // 55 / 50 = 1.1: flat; 400 / 300 = 1.33: not.
        assert_eq!(
            r.steps(),
            vec![Step {
                point: "16 Mi entries".into(),
                case: NEW_EMPTY.into(),
                ratio: 400.0 / 300.0
            }]
        );
    }

    #[test]
    fn noise_is_the_widest_empty_full_gap_of_one_table() {
        let mut v = sample();
        assert!(parse(&v).unwrap().noise().is_nan());
        v["points"][0]["cases"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "established_full", "mode": "repeat", "median_ns": 70.0}));
        // |50 - 60| / 50.
        assert_eq!(parse(&v).unwrap().noise(), 0.2);
    }

    #[test]
    fn ratios_need_a_measured_base_above_noise() {
        assert_eq!(ratio(30.0, 20.0), 1.5);
        assert!(ratio(30.0, 0.5).is_nan());
        assert!(ratio(f64::NAN, 20.0).is_nan());
        assert!(is_flat(f64::NAN) && is_flat(1.2) && !is_flat(1.21));
    }

    #[test]
    fn one_baseline_or_none() {
        let mut v = sample();
        v["points"][1]["baseline"] = json!(true);
        assert!(parse(&v).is_err());
    }

    #[test]
    fn args_name_the_tables() {
        let a = Plan::new(Mode::Quick).args();
        assert_eq!(a[0], "--scaling");
        assert_eq!(a.last().unwrap(), "65536,1048576");
        let a = Plan::new(Mode::Full).args();
        assert_eq!(a.last().unwrap(), "65536,1048576,16777216");
    }
}
