//! `canaryctl rollout ...`, `canaryctl rollback` and the rollout report.

use std::time::Duration;

use canary_userspace::{
    api::{Client, ClientError, RolloutReport},
    model::rollout::{Action, Phase, Verdict},
    model::weight::Weight,
};

/// Exit codes of `rollout start --wait` by how the rollout ended (0 when
/// promoted).
pub const EXIT_ROLLED_BACK: u8 = 10;
pub const EXIT_ABORTED: u8 = 11;
pub const EXIT_PAUSED: u8 = 12;
pub const EXIT_WAIT_TIMED_OUT: u8 = 13;

/// Blocks until the rollout is no longer running; prints progress lines on
/// stderr as decisions come.
pub fn wait(client: &Client, service: &str, limit: Duration) -> Result<RolloutReport, ClientError> {
    // By look number: the history keeps only the latest looks.
    let mut seen = 0;
    client.wait_for_rollout(service, Duration::from_millis(500), limit, |r| {
        for rec in r.history.iter().filter(|h| h.look > seen) {
            eprintln!(
                "canaryctl: look {} at {:.2}: {}",
                rec.look, rec.weight, rec.reason
            );
        }
        seen = r.history.last().map_or(seen, |h| h.look);
    })
}

/// The exit code `--wait` ends with.
pub fn exit_code(r: &RolloutReport) -> u8 {
    match r.phase {
        Phase::Promoted => 0,
        Phase::RolledBack => EXIT_ROLLED_BACK,
        Phase::Aborted => EXIT_ABORTED,
        Phase::Paused => EXIT_PAUSED,
        Phase::Running => EXIT_WAIT_TIMED_OUT,
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "inconclusive",
    }
}

fn action(a: Action, steps: &[Weight]) -> String {
    match a {
        Action::Hold => "hold".into(),
        Action::StepUp { step } => {
            format!(
                "step up to {}",
                steps.get(step).copied().unwrap_or_default()
            )
        }
        Action::Rollback => "ROLLBACK".into(),
        Action::Promote => "promote".into(),
        Action::Pause => "pause".into(),
    }
}

pub fn print(r: &RolloutReport) {
    let took = r
        .history
        .last()
        .map(|h| (h.at_unix_ms.saturating_sub(r.started_unix_ms)) as f64 / 1000.0);
    println!(
        "{}: rollout {:?}{} ({}, on_rollback {}){}",
        r.service,
        r.phase,
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        },
        r.mode,
        r.on_rollback,
        took.map_or(String::new(), |t| format!(
            ", {} intervals in {t:.1} s",
            r.looks
        ))
    );
    let steps: Vec<String> = r.steps.iter().map(Weight::to_string).collect();
    let share = r
        .observed_canary_share
        .map_or("-".to_owned(), |s| format!("{:.1}%", s * 100.0));
    println!(
        "  steps {}  now step {} at {:.2}  observed canary share {share}  failed {}/{}  inconclusive in a row {}/{}",
        steps.join(" "),
        r.step + 1,
        r.weight,
        r.failed,
        r.failed_checks_limit,
        r.inconclusive_streak,
        r.max_inconclusive
    );
    if let Some(s) = r.observed_canary_share
        && s * 100.0 + 5.0 < r.weight.percent()
    {
        println!(
            "  the observed share lags the weight: connections opened before a step stay on stable until they close"
        );
    }
    if let Some(hosts) = &r.hosts {
        crate::fleet::print_hosts(hosts);
    }
    if r.history.is_empty() {
        println!("  no interval judged yet");
        return;
    }
    let kept = r.history.len() as u32;
    if r.looks > kept {
        println!(
            "  the first {} looks are not kept; the last {kept} are",
            r.looks - kept
        );
    }
    println!(
        "  {:>4} {:>8} {:>8} {:>10} {:>10}  {:<12} {:<18} REASON",
        "LOOK", "AT", "WEIGHT", "STABLE REQ", "CANARY REQ", "VERDICT", "ACTION"
    );
    for h in &r.history {
        println!(
            "  {:>4} {:>7.1}s {:>8.2} {:>10} {:>10}  {:<12} {:<18} {}{}",
            h.look,
            h.at_unix_ms.saturating_sub(r.started_unix_ms) as f64 / 1000.0,
            h.weight,
            h.interval_attempts[0],
            h.interval_attempts[1],
            verdict(h.verdict),
            action(h.action, &r.steps),
            h.reason,
            if h.dry_run { " (dry-run)" } else { "" }
        );
    }
    if let Some(last) = r.history.last() {
        println!("  checks at look {}:", last.look);
        for c in &last.checks {
            println!(
                "    {:<16} {:>12} {:<12} {}",
                c.name,
                c.value.map_or("-".to_owned(), |v| format!("{v:.4}")),
                verdict(c.verdict),
                c.detail
            );
        }
    }
}
