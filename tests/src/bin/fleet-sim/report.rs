//! The figures of one run, and the markdown table docs/BENCHMARKS.md
//! carries.

use std::fmt::Write as _;

use canary_userspace::model::{rollout::Phase, weight::Weight};

use crate::run::Outcome;

/// What the table shows of one run.
pub struct Figures {
    pub hosts: usize,
    pub phase: Phase,
    pub seconds: f64,
    pub looks: u32,
    pub leader_writes: u64,
    pub generations: usize,
    /// Generations some host never published within the run.
    pub incomplete: usize,
    pub waits: u64,
    /// Decision → one host published it, every host of every generation.
    pub host_ms: Vec<f64>,
    /// Decision → the last host published it, per generation.
    pub all_ms: Vec<f64>,
    /// Decision → the run's own watch saw the record.
    pub seen_ms: Vec<f64>,
    /// From one leader decision to the next (the plan's interval plus
    /// whatever held the look up).
    pub spacing_ms: Vec<f64>,
    /// Per generation: its number, weight and decision → all applied.
    pub per_generation: Vec<(u64, Weight, Option<f64>)>,
    /// Keys etcd wrote (puts, alone or in transactions, and deletes).
    pub writes_per_interval: f64,
    pub interval_ms: f64,
    pub raft_per_interval: f64,
    pub leader_writes_per_interval: f64,
    /// New generations the leader wrote, per interval: each is answered
    /// by every host at once.
    pub generations_per_interval: f64,
    pub leader_cpu_per_look_ms: f64,
    /// Shares of one core over the run.
    pub etcd_cpu: f64,
    pub leader_cpu: f64,
    pub hosts_cpu: f64,
    pub record_bytes: usize,
    pub run_bytes: usize,
    pub rollout_bytes: usize,
    pub tick_errors: u64,
    pub last_tick_error: Option<String>,
    pub join_errors: u64,
    pub host_errors: u64,
}

impl Figures {
    pub fn of(o: &Outcome) -> Figures {
        let seconds = o.elapsed.as_secs_f64();
        let intervals = seconds / o.interval.as_secs_f64();
        let since = |decided_ms: u64, at_us: u64| (at_us as f64 - decided_ms as f64 * 1e3) / 1e3;
        let mut host_ms = vec![];
        let mut all_ms = vec![];
        let mut incomplete = 0;
        let mut per_generation = vec![];
        for g in &o.generations {
            let each: Vec<f64> = g
                .applied_us
                .iter()
                .flatten()
                .map(|at| since(g.decision_ms, *at))
                .collect();
            let all = (each.len() == g.applied_us.len())
                .then(|| each.iter().copied().fold(f64::MIN, f64::max));
            match all {
                Some(ms) => all_ms.push(ms),
                None => incomplete += 1,
            }
            per_generation.push((g.number, g.weight, all));
            host_ms.extend(each);
        }
        let seen_ms = o
            .generations
            .iter()
            .map(|g| since(g.decision_ms, g.seen_us))
            .collect();
        let spacing_ms = o
            .generations
            .windows(2)
            .map(|w| w[1].decision_ms as f64 - w[0].decision_ms as f64)
            .collect();
        let generations = per_generation.len();
        Figures {
            hosts: o.hosts,
            phase: o.phase,
            seconds,
            looks: o.looks,
            leader_writes: o.leader_writes,
            generations: o.generations.len(),
            incomplete,
            waits: o.waits,
            host_ms,
            all_ms,
            seen_ms,
            spacing_ms,
            per_generation,
            interval_ms: o.interval.as_secs_f64() * 1e3,
            writes_per_interval: (o.after.puts + o.after.deletes
                - o.before.puts
                - o.before.deletes)
                / intervals,
            raft_per_interval: (o.after.proposals - o.before.proposals) / intervals,
            leader_writes_per_interval: o.leader_writes as f64 / intervals,
            generations_per_interval: generations as f64 / intervals,
            leader_cpu_per_look_ms: o.leader_cpu.as_secs_f64() * 1e3 / f64::from(o.looks.max(1)),
            etcd_cpu: (o.after.cpu - o.before.cpu).as_secs_f64() / seconds,
            leader_cpu: o.leader_cpu.as_secs_f64() / seconds,
            hosts_cpu: o.hosts_cpu.as_secs_f64() / seconds,
            record_bytes: o.record_bytes,
            run_bytes: o.run_bytes,
            rollout_bytes: o.rollout_bytes,
            tick_errors: o.tick_errors,
            last_tick_error: o.last_tick_error.clone(),
            join_errors: o.join_errors,
            host_errors: o.host_errors,
        }
    }

    /// Promoted, every generation published by every host, no failed
    /// leader tick. (Hosts' failed calls are counted, not fatal: they retry
    /// as the agent does.)
    pub fn clean(&self) -> bool {
        self.phase == Phase::Promoted && self.incomplete == 0 && self.tick_errors == 0
    }

    /// What the run says besides the table.
    pub fn details(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} hosts: {} after {:.1} s, {} looks, {} leader writes, {} generations ({} incomplete)",
            self.hosts,
            self.phase.name(),
            self.seconds,
            self.looks,
            self.leader_writes,
            self.generations,
            self.incomplete
        );
        let _ = writeln!(
            s,
            "  decision -> next decision: p50 {:.0} ms, max {:.0} ms (interval {:.0} ms)",
            quantile(&self.spacing_ms, 0.5).unwrap_or(f64::NAN),
            quantile(&self.spacing_ms, 1.0).unwrap_or(f64::NAN),
            self.interval_ms
        );
        let _ = writeln!(
            s,
            "  decision -> record seen by a watch: p50 {:.1} ms; CPU (share of a core): etcd {:.2}, \
             leader {:.3}, fake hosts {:.2}",
            quantile(&self.seen_ms, 0.5).unwrap_or(f64::NAN),
            self.etcd_cpu,
            self.leader_cpu,
            self.hosts_cpu
        );
        let _ = writeln!(
            s,
            "  one host record: {} bytes, so the leader's read of hosts/ is ~{} KiB; \
             leader tick errors {}; hosts' failed etcd calls: {} joining, {} during the rollout",
            self.record_bytes,
            self.record_bytes * self.hosts / 1024,
            self.tick_errors,
            self.join_errors,
            self.host_errors
        );
        let _ = writeln!(
            s,
            "  what hosts watch of the rollout: {} bytes, so each leader write sends ~{} KiB to \
             the hosts' watches (the whole record, {} bytes, is read by the leader only)",
            self.rollout_bytes,
            self.rollout_bytes * self.hosts / 1024,
            self.run_bytes
        );
        let each: Vec<String> = self
            .per_generation
            .iter()
            .map(|(n, w, all)| match all {
                Some(ms) => format!("{n} ({w:.0}) {ms:.0}"),
                None => format!("{n} ({w:.0}) not all"),
            })
            .collect();
        let _ = writeln!(
            s,
            "  decision -> all applied, ms, by generation (weight): {}",
            each.join(", ")
        );
        if let Some(e) = &self.last_tick_error {
            let _ = writeln!(s, "  the leader's last failed tick: {e}");
        }
        // A leader write puts two keys (run/ and weight/) in one entry.
        let model = self.hosts as f64 * (1.0 + self.generations_per_interval)
            + 2.0 * self.leader_writes_per_interval;
        let _ = writeln!(
            s,
            "  writes per interval: {:.0} measured ({:.0} raft entries); N x (1 publish + 1 answer \
             per new generation) + 2 keys per leader write = {model:.0}",
            self.writes_per_interval, self.raft_per_interval
        );
        s
    }
}

/// Nearest-rank quantile; None for no samples.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

fn pair(samples: &[f64]) -> String {
    match (quantile(samples, 0.5), quantile(samples, 0.99)) {
        (Some(p50), Some(p99)) => format!("{p50:.0} / {p99:.0}"),
        _ => "-".into(),
    }
}

pub fn table(runs: &[Figures]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| hosts | rollout | looks | step-ups that waited for acks | decision → host applied, \
         ms p50 / p99 (samples) | decision → all applied, ms p50 / p99 (generations) | etcd \
         writes / interval | leader CPU / look |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for f in runs {
        let _ = writeln!(
            s,
            "| {} | {} in {:.1} s | {} | {} | {} ({}) | {} ({}) | {:.0} | {:.2} ms |",
            f.hosts,
            f.phase.name(),
            f.seconds,
            f.looks,
            f.waits,
            pair(&f.host_ms),
            f.host_ms.len(),
            pair(&f.all_ms),
            f.all_ms.len(),
            f.writes_per_interval,
            f.leader_cpu_per_look_ms
        );
    }
    s
}
