//! A service's `[service.rollout]` table: the steps, the pace, the checks
//! and the gates of its automatic rollout, read field by field.

use std::time::Duration;

use toml::{Table, Value};

use super::{
    Weight,
    duration::parse_duration,
    error::Collector,
    value::{self, join},
};
use crate::{
    controller::plan::{Checks, Gate, RolloutPlan},
    model::{
        grpc_code::{self, GrpcCodes},
        kinds::{Mode, OnRollback},
    },
};

const KNOWN: &[&str] = &[
    "steps",
    "step",
    "max",
    "interval",
    "min_requests",
    "failed_checks_limit",
    "consecutive_failures",
    "min_passes",
    "max_inconclusive",
    "max_step_duration",
    "mode",
    "on_rollback",
    "max_error_rate",
    "max_error_ratio",
    "error_margin",
    "max_p99_ms",
    "max_p99_ratio",
    "p99_margin_ms",
    "alpha",
    "grpc_error_codes",
    "prometheus",
    "webhook",
    "gate",
];

/// Shortest interval: an evaluation needs requests to judge.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Reads `path.rollout`; `None` when absent or when anything in it was
/// reported.
pub(crate) fn read(
    errs: &mut Collector,
    value: Option<&Value>,
    service: &str,
) -> Option<RolloutPlan> {
    let path = join(service, "rollout");
    let table = match value? {
        Value::Table(t) => t,
        other => {
            value::wrong_type(errs, &path, "a table ([service.rollout])", other);
            return None;
        }
    };
    let before = errs.len();
    value::reject_unknown(errs, table.keys(), &path, KNOWN);
    let p = path.as_str();
    // Every default comes from the plan's `Default`, documented there.
    let d = RolloutPlan::default();
    let steps = steps(errs, table, p);
    let interval = interval(errs, table, p, d.interval);
    let max_step_duration = max_step_duration(errs, table, p, interval);
    let count = |errs: &mut Collector, key: &str, default: u64, min: u64| -> Option<u64> {
        let n = value::integer(errs, table, p, key).or(default as i64)?;
        match u64::try_from(n) {
            Ok(n) if n >= min => Some(n),
            _ => {
                errs.push(
                    join(p, key),
                    format!("{n} is out of range; it must be at least {min}"),
                );
                None
            }
        }
    };
    let min_requests = count(errs, "min_requests", d.min_requests, 1);
    let failed_checks_limit = count(errs, "failed_checks_limit", d.failed_checks_limit.into(), 1);
    let consecutive_failures = count(
        errs,
        "consecutive_failures",
        d.consecutive_failures.into(),
        0,
    );
    let min_passes = count(errs, "min_passes", d.min_passes.into(), 1);
    let max_inconclusive = count(errs, "max_inconclusive", d.max_inconclusive.into(), 1);
    let mode = value::word_or::<Mode>(errs, table, p, "mode", d.mode);
    let on_rollback = value::word_or::<OnRollback>(errs, table, p, "on_rollback", d.on_rollback);
    let share = |errs: &mut Collector, key: &str| fraction(errs, table, p, key, false);
    let max_error_rate = share(errs, "max_error_rate");
    let error_margin =
        fraction(errs, table, p, "error_margin", true).map(|m| m.unwrap_or(d.checks.error_margin));
    let alpha = open_fraction(errs, table, p, "alpha");
    let positive = |errs: &mut Collector, key: &str| positive(errs, table, p, key);
    let max_error_ratio = positive(errs, "max_error_ratio");
    let max_p99_ms = positive(errs, "max_p99_ms");
    let max_p99_ratio = positive(errs, "max_p99_ratio");
    let p99_margin_ms =
        match value::number(errs, table, p, "p99_margin_ms").or(d.checks.p99_margin_ms) {
            Some(m) if m >= 0.0 && m.is_finite() => Some(m),
            Some(m) => {
                errs.push(join(p, "p99_margin_ms"), format!("{m} must be 0 or more"));
                None
            }
            None => None,
        };
    let grpc_error_codes = grpc_error_codes(errs, table, p, d.grpc_error_codes);
    let prometheus = url(errs, table, p, "prometheus");
    let webhook = url(errs, table, p, "webhook");
    let gates = gates(errs, table, p);

    let checks = Checks {
        max_error_rate: max_error_rate?,
        max_error_ratio: max_error_ratio?,
        max_p99_ms: max_p99_ms?,
        max_p99_ratio: max_p99_ratio?,
        error_margin: error_margin?,
        p99_margin_ms: p99_margin_ms?,
    };
    let gates = gates?;
    let prometheus = prometheus?;
    if checks.bounds() == 0 && gates.is_empty() {
        errs.push(
            &path,
            "a rollout needs at least one check (max_error_rate, max_error_ratio, max_p99_ms, \
             max_p99_ratio) or a [[service.rollout.gate]]: with none, nothing would be judged",
        );
    }
    if !gates.is_empty() && prometheus.is_none() {
        errs.push(
            join(p, "prometheus"),
            "gates need a Prometheus server to query: add prometheus = \"http://127.0.0.1:9090\"",
        );
    }
    if errs.len() != before {
        return None;
    }
    Some(RolloutPlan {
        steps: steps?,
        interval: interval?,
        min_requests: min_requests?,
        failed_checks_limit: failed_checks_limit? as u32,
        consecutive_failures: consecutive_failures? as u32,
        min_passes: min_passes? as u32,
        max_inconclusive: max_inconclusive? as u32,
        max_step_duration: max_step_duration?,
        mode: mode?,
        on_rollback: on_rollback?,
        checks,
        gates,
        prometheus,
        webhook: webhook?,
        alpha: alpha?.unwrap_or(d.alpha),
        grpc_error_codes: grpc_error_codes?,
    })
}

/// Most steps a rollout may have (`steps = [...]` or `step`/`max`).
pub const MAX_STEPS: usize = 1000;

/// `steps = [5, 10, 25]`, or `step = 10` with `max = 100`: increasing
/// percents above 0 and at most 100.
fn steps(errs: &mut Collector, table: &Table, path: &str) -> Option<Vec<Weight>> {
    let listed = table.contains_key("steps");
    let stepped = table.contains_key("step") || table.contains_key("max");
    if listed && stepped {
        errs.push(
            join(path, "steps"),
            "give either steps = [...] or step and max, not both",
        );
        return None;
    }
    let percents: Vec<(String, f64)> = if stepped {
        let step = value::number(errs, table, path, "step").required(
            errs,
            &join(path, "step"),
            "step = 10",
        )?;
        let max = value::number(errs, table, path, "max").or(100.0)?;
        if !(step > 0.0 && step <= max && max <= 100.0) {
            errs.push(
                join(path, "step"),
                format!("step {step} and max {max}: need 0 < step <= max <= 100"),
            );
            return None;
        }
        // Each step is at least one interval: more steps than this is a
        // rollout of days at 30 s, and almost surely a typo (0.01 for 1).
        let count = (max / step - 1e-9).ceil();
        if count > MAX_STEPS as f64 {
            errs.push(
                join(path, "step"),
                format!(
                    "step {step} up to max {max} makes {count} steps; at most {MAX_STEPS} \
                     (step is a percent: step = 5 steps 5 % at a time)"
                ),
            );
            return None;
        }
        let mut v = vec![];
        let mut at = step;
        while at < max - 1e-9 {
            v.push((join(path, "step"), (at * 100.0).round() / 100.0));
            at += step;
        }
        v.push((join(path, "max"), max));
        v
    } else {
        let items = value::array(errs, table, path, "steps").required(
            errs,
            &join(path, "steps"),
            "steps = [5, 10, 25, 50, 100] (or step = 10 and max = 100)",
        )?;
        if items.len() > MAX_STEPS {
            errs.push(
                join(path, "steps"),
                format!("{} steps; at most {MAX_STEPS}", items.len()),
            );
            return None;
        }
        let mut v = vec![];
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", join(path, "steps"));
            match item {
                Value::Integer(n) => v.push((at, *n as f64)),
                Value::Float(f) => v.push((at, *f)),
                other => value::wrong_type(errs, &at, "a percent", other),
            }
        }
        if v.is_empty() {
            errs.push(
                join(path, "steps"),
                "needs at least one step, e.g. [5, 10, 25, 50, 100]",
            );
            return None;
        }
        v
    };
    let mut out = vec![];
    for (at, percent) in percents {
        match Weight::from_percent(percent) {
            Ok(Weight::ZERO) => errs.push(&at, "a step of 0 % sends the canary nothing"),
            Ok(w) if out.last().is_some_and(|last| *last >= w) => errs.push(
                &at,
                format!("{percent} is not above the step before it; steps must increase"),
            ),
            Ok(w) => out.push(w),
            Err(e) => errs.push(&at, e.to_string()),
        }
    }
    Some(out)
}

fn interval(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    default: Duration,
) -> Option<Duration> {
    let text = match value::string(errs, table, path, "interval") {
        value::Field::Absent => return Some(default),
        value::Field::Bad => return None,
        value::Field::Found(text) => text,
    };
    match parse_duration(text) {
        Ok(d) if d >= MIN_INTERVAL => Some(d),
        Ok(_) => {
            errs.push(
                join(path, "interval"),
                format!("{text:?} is shorter than 100ms"),
            );
            None
        }
        Err(e) => {
            errs.push(join(path, "interval"), e.to_string());
            None
        }
    }
}

/// An optional duration of at least one `interval` (a step is judged once
/// per interval); not checked against an interval that was itself reported.
fn max_step_duration(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    interval: Option<Duration>,
) -> Option<Option<Duration>> {
    let key = "max_step_duration";
    let text = match value::string(errs, table, path, key) {
        value::Field::Absent => return Some(None),
        value::Field::Bad => return None,
        value::Field::Found(text) => text,
    };
    match (parse_duration(text), interval) {
        (Ok(d), Some(i)) if d < i => {
            errs.push(
                join(path, key),
                format!(
                    "{text:?} is shorter than interval ({} ms): a step is judged once per interval",
                    i.as_millis()
                ),
            );
            None
        }
        (Ok(d), _) => Some(Some(d)),
        (Err(e), _) => {
            errs.push(join(path, key), e.to_string());
            None
        }
    }
}

/// An optional fraction: `Some(None)` when absent, `Some(Some(x))` for a
/// valid one (0 <= x <= 1; x > 0 unless `zero_ok`), `None` when reported.
fn fraction(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    key: &str,
    zero_ok: bool,
) -> Option<Option<f64>> {
    match value::number(errs, table, path, key) {
        value::Field::Absent => Some(None),
        value::Field::Bad => None,
        value::Field::Found(x) if (zero_ok || x > 0.0) && x <= 1.0 => Some(Some(x)),
        value::Field::Found(x) => {
            errs.push(
                join(path, key),
                format!("{x} is not a fraction between 0 and 1 (e.g. 0.01 for 1 %)"),
            );
            None
        }
    }
}

/// An optional level strictly between 0 and 1.
fn open_fraction(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    key: &str,
) -> Option<Option<f64>> {
    match value::number(errs, table, path, key) {
        value::Field::Absent => Some(None),
        value::Field::Bad => None,
        value::Field::Found(x) if x > 0.0 && x < 1.0 => Some(Some(x)),
        value::Field::Found(x) => {
            errs.push(
                join(path, key),
                format!("{x} must be above 0 and below 1, e.g. 0.05"),
            );
            None
        }
    }
}

/// An optional number above 0.
fn positive(errs: &mut Collector, table: &Table, path: &str, key: &str) -> Option<Option<f64>> {
    match value::number(errs, table, path, key) {
        value::Field::Absent => Some(None),
        value::Field::Bad => None,
        value::Field::Found(x) if x > 0.0 && x.is_finite() => Some(Some(x)),
        value::Field::Found(x) => {
            errs.push(join(path, key), format!("{x} must be above 0"));
            None
        }
    }
}

/// `grpc_error_codes = ["UNAVAILABLE", ...]`: gRPC status code names in
/// any case, or their numbers; OK and a code listed twice are refused.
/// Empty is allowed: only `:status` 5xx and stream resets count then.
fn grpc_error_codes(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    default: GrpcCodes,
) -> Option<GrpcCodes> {
    let key = "grpc_error_codes";
    let items = match value::array(errs, table, path, key) {
        value::Field::Absent => return Some(default),
        value::Field::Bad => return None,
        value::Field::Found(items) => items,
    };
    let field = join(path, key);
    let before = errs.len();
    let mut set = GrpcCodes::EMPTY;
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let code = match item {
            Value::String(name) => grpc_code::parse_name(name),
            Value::Integer(n) => grpc_code::from_number(*n),
            other => {
                value::wrong_type(errs, &at, "a gRPC status code name or number", other);
                continue;
            }
        };
        match code.map_err(|e| e.to_string()).and_then(|c| {
            if set.contains(c) {
                Err(format!(
                    "{} ({c}) is already listed",
                    grpc_code::NAMES[c as usize]
                ))
            } else {
                set.with(c).map_err(|e| e.to_string())
            }
        }) {
            Ok(more) => set = more,
            Err(why) => errs.push(&at, why),
        }
    }
    (errs.len() == before).then_some(set)
}

/// An optional `http://host:port[/path]` URL: the controller speaks plain
/// HTTP to a local Prometheus and webhook receiver.
fn url(errs: &mut Collector, table: &Table, path: &str, key: &str) -> Option<Option<String>> {
    match value::string(errs, table, path, key) {
        value::Field::Absent => Some(None),
        value::Field::Bad => None,
        value::Field::Found(u) if u.starts_with("http://") && u.len() > "http://".len() => {
            Some(Some(u.trim_end_matches('/').to_owned()))
        }
        value::Field::Found(u) => {
            errs.push(
                join(path, key),
                format!(
                    "{:?} is not an http:// URL, e.g. \"http://127.0.0.1:9090\"",
                    crate::model::redact::redact(u)
                ),
            );
            None
        }
    }
}

fn gates(errs: &mut Collector, table: &Table, path: &str) -> Option<Vec<Gate>> {
    let items = match value::array(errs, table, path, "gate") {
        value::Field::Absent => return Some(vec![]),
        value::Field::Bad => return None,
        value::Field::Found(items) => items,
    };
    let before = errs.len();
    let mut out: Vec<Gate> = vec![];
    for (i, item) in items.iter().enumerate() {
        let at = format!("{}[{i}]", join(path, "gate"));
        let Value::Table(t) = item else {
            value::wrong_type(errs, &at, "a table ([[service.rollout.gate]])", item);
            continue;
        };
        value::reject_unknown(errs, t.keys(), &at, &["name", "query", "min", "max"]);
        let name = value::string(errs, t, &at, "name").required(
            errs,
            &join(&at, "name"),
            r#"name = "accuracy""#,
        );
        let query = value::string(errs, t, &at, "query").required(
            errs,
            &join(&at, "query"),
            r#"query = 'model_accuracy{version="canary"}'"#,
        );
        let bound = |errs: &mut Collector, key: &str| match value::number(errs, t, &at, key) {
            value::Field::Absent => Some(None),
            value::Field::Bad => None,
            value::Field::Found(x) => Some(Some(x)),
        };
        let (min, max) = (bound(errs, "min"), bound(errs, "max"));
        let (Some(name), Some(query), Some(min), Some(max)) = (name, query, min, max) else {
            continue;
        };
        if min.is_none() && max.is_none() {
            errs.push(&at, "a gate needs min, max or both");
            continue;
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            errs.push(join(&at, "min"), format!("min {lo} is above max {hi}"));
            continue;
        }
        if out.iter().any(|g| g.name == name) {
            errs.push(
                join(&at, "name"),
                format!("{name:?} is already a gate's name"),
            );
            continue;
        }
        out.push(Gate {
            name: name.to_owned(),
            query: query.to_owned(),
            min,
            max,
        });
    }
    (errs.len() == before).then_some(out)
}
