//! The policy as a table (each row a situation and the decision it must
//! give), and seeded simulations of whole rollouts: A/A (the canary is the
//! stable's twin) must be rolled back no more often than the error budget
//! allows; regressions must be caught.

use canary_common::signals::{LATENCY_BUCKETS, LATENCY_SUB_BITS, bucket_of_ns, bucket_upper_ns};
use rand::{SeedableRng, rngs::SmallRng};
use rand_distr::{Binomial, Distribution};
use statrs::distribution::{ContinuousCDF, LogNormal};

use super::{
    plan::{Checks, Gate, Mode, OnRollback, RolloutPlan},
    policy::{Action, Evidence, GateReading, Phase, RolloutState, Verdict, evaluate},
};
use crate::signals::{Histogram, VersionSignals};

/// A plan with the README's shape; other modules' tests use it too.
pub(crate) fn plan() -> RolloutPlan {
    RolloutPlan {
        steps: vec![500, 1000, 2500, 5000, 10000],
        interval: std::time::Duration::from_secs(30),
        min_requests: 50,
        failed_checks_limit: 2,
        consecutive_failures: 0,
        min_passes: 1,
        max_inconclusive: 5,
        mode: Mode::Enforce,
        on_rollback: OnRollback::Drain,
        checks: Checks {
            max_error_rate: Some(0.05),
            max_error_ratio: Some(2.0),
            max_p99_ms: None,
            max_p99_ratio: None,
            error_margin: 0.01,
            p99_margin_ms: 5.0,
        },
        gates: vec![],
        prometheus: None,
        webhook: None,
        alpha: 0.05,
    }
}

/// A version that answered `n` requests, `errors` of them 5xx, each in
/// the latency bucket of `latency_ms`.
fn version(n: u64, errors: u64, latency_ms: f64) -> VersionSignals {
    let mut counts = vec![0; LATENCY_BUCKETS];
    counts[bucket_of_ns((latency_ms * 1e6) as u64, LATENCY_SUB_BITS)] = n;
    let mut http = vec![0; 6];
    http[1] = n - errors;
    http[4] = errors;
    VersionSignals {
        requests: n,
        responses: n,
        http,
        latency: Histogram {
            counts,
            sum_ns: (n as f64 * latency_ms * 1e6) as u64,
        },
        ..Default::default()
    }
}

fn evidence(stable: VersionSignals, canary: VersionSignals) -> Evidence {
    Evidence {
        interval_attempts: [stable.requests, canary.requests],
        stable,
        canary,
        gates: vec![],
    }
}

/// One row: a plan, a state, evidence, and the decision expected.
struct Row {
    name: &'static str,
    plan: RolloutPlan,
    state: RolloutState,
    evidence: Evidence,
    verdict: Verdict,
    action: Action,
}

fn state_at(step: usize) -> RolloutState {
    RolloutState {
        step,
        ..RolloutState::start(0)
    }
}

#[test]
fn decisions_table() {
    let healthy = || evidence(version(5000, 10, 20.0), version(2000, 4, 20.0));
    let mut with_gate = plan();
    with_gate.gates = vec![Gate {
        name: "accuracy".into(),
        query: "model_accuracy".into(),
        min: Some(0.9),
        max: None,
    }];
    let gate = |value| Evidence {
        gates: vec![GateReading {
            name: "accuracy".into(),
            value,
        }],
        ..healthy()
    };
    let rows = vec![
        Row {
            name: "healthy, enough data: step up",
            plan: plan(),
            state: state_at(0),
            evidence: healthy(),
            verdict: Verdict::Pass,
            action: Action::StepUp { step: 1 },
        },
        Row {
            name: "healthy at the last step: promote",
            plan: plan(),
            state: state_at(4),
            evidence: healthy(),
            verdict: Verdict::Pass,
            action: Action::Promote,
        },
        Row {
            name: "at 100% stable gets no new flows: judged on its last step's evidence",
            plan: plan(),
            state: state_at(4),
            evidence: Evidence {
                interval_attempts: [0, 2000],
                ..healthy()
            },
            verdict: Verdict::Pass,
            action: Action::Promote,
        },
        Row {
            name: "below 100% stable's minimum applies",
            plan: plan(),
            state: state_at(3),
            evidence: Evidence {
                interval_attempts: [0, 2000],
                ..healthy()
            },
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "min_passes 2: the first pass holds",
            plan: RolloutPlan {
                min_passes: 2,
                ..plan()
            },
            state: state_at(0),
            evidence: healthy(),
            verdict: Verdict::Pass,
            action: Action::Hold,
        },
        Row {
            name: "too few canary requests: inconclusive, never a pass",
            plan: plan(),
            state: state_at(0),
            evidence: evidence(version(5000, 10, 20.0), version(49, 0, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "20% canary errors: fail, first of two allowed",
            plan: plan(),
            state: state_at(1),
            evidence: evidence(version(5000, 10, 20.0), version(500, 100, 20.0)),
            verdict: Verdict::Fail,
            action: Action::Hold,
        },
        Row {
            name: "20% canary errors, second failure: roll back",
            plan: plan(),
            state: RolloutState {
                failed: 1,
                ..state_at(1)
            },
            evidence: evidence(version(5000, 10, 20.0), version(500, 100, 20.0)),
            verdict: Verdict::Fail,
            action: Action::Rollback,
        },
        Row {
            name: "consecutive_failures 1: the first failure rolls back",
            plan: RolloutPlan {
                consecutive_failures: 1,
                ..plan()
            },
            state: state_at(1),
            evidence: evidence(version(5000, 10, 20.0), version(500, 100, 20.0)),
            verdict: Verdict::Fail,
            action: Action::Rollback,
        },
        Row {
            name: "refused connections count as errors and attempts",
            plan: plan(),
            state: RolloutState {
                failed: 1,
                ..state_at(0)
            },
            evidence: Evidence {
                interval_attempts: [5000, 300],
                ..evidence(
                    version(5000, 10, 20.0),
                    VersionSignals {
                        connections_refused: 300,
                        ..Default::default()
                    },
                )
            },
            verdict: Verdict::Fail,
            action: Action::Rollback,
        },
        Row {
            name: "3% errors with 2% stable, few requests: not enough evidence either way",
            plan: plan(),
            state: state_at(0),
            evidence: evidence(version(2000, 40, 20.0), version(100, 3, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "fifth inconclusive in a row: pause",
            plan: plan(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: evidence(version(5000, 10, 20.0), version(10, 0, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Pause,
        },
        Row {
            name: "p99 over the limit, surely: fail",
            plan: RolloutPlan {
                checks: Checks {
                    max_p99_ms: Some(65.536),
                    ..plan().checks
                },
                ..plan()
            },
            state: state_at(2),
            evidence: evidence(version(5000, 10, 20.0), version(2000, 4, 100.0)),
            verdict: Verdict::Fail,
            action: Action::Hold,
        },
        Row {
            name: "p99 5x stable's: the ratio check fails",
            plan: RolloutPlan {
                checks: Checks {
                    max_p99_ratio: Some(1.5),
                    ..plan().checks
                },
                ..plan()
            },
            state: state_at(2),
            evidence: evidence(version(5000, 10, 20.0), version(2000, 4, 100.0)),
            verdict: Verdict::Fail,
            action: Action::Hold,
        },
        Row {
            name: "gate above its minimum: pass",
            plan: with_gate.clone(),
            state: state_at(0),
            evidence: gate(Ok(Some(0.95))),
            verdict: Verdict::Pass,
            action: Action::StepUp { step: 1 },
        },
        Row {
            name: "gate below its minimum: fail",
            plan: with_gate.clone(),
            state: state_at(0),
            evidence: gate(Ok(Some(0.85))),
            verdict: Verdict::Fail,
            action: Action::Hold,
        },
        Row {
            name: "gate with no data: inconclusive, never a pass",
            plan: with_gate.clone(),
            state: state_at(0),
            evidence: gate(Ok(None)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "gate at +Inf (e.g. x/0): inconclusive, never above a minimum",
            plan: with_gate.clone(),
            state: state_at(0),
            evidence: gate(Ok(Some(f64::INFINITY))),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "gate at NaN: inconclusive",
            plan: with_gate.clone(),
            state: state_at(0),
            evidence: gate(Ok(Some(f64::NAN))),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "gate query failed: inconclusive",
            plan: with_gate,
            state: state_at(0),
            evidence: gate(Err("timed out after 5s".into())),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
    ];
    let mut failures = vec![];
    for row in &rows {
        let d = evaluate(&row.plan, &row.state, &row.evidence, 1);
        if (d.verdict, d.action) != (row.verdict, row.action) {
            failures.push(format!(
                "{}: got {:?} {:?}, want {:?} {:?}\n  {}\n  {:#?}",
                row.name, d.verdict, d.action, row.verdict, row.action, d.reason, d.checks
            ));
        }
        assert_eq!(
            d.next.history.len(),
            row.state.history.len() + 1,
            "{}",
            row.name
        );
        assert_eq!(d.next.looks, row.state.looks + 1, "{}", row.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One version's traffic in a simulation: error probability and a
/// log-normal time to first byte.
#[derive(Clone, Copy)]
struct Behaviour {
    error_rate: f64,
    median_ms: f64,
    sigma: f64,
}

/// `n` requests of a version: errors binomial, latencies log-normal, drawn
/// bucket by bucket (a multinomial as a chain of binomials).
fn sample(rng: &mut SmallRng, n: u64, b: Behaviour) -> VersionSignals {
    let binomial = |rng: &mut SmallRng, n: u64, p: f64| {
        if n == 0 || p <= 0.0 {
            0
        } else if p >= 1.0 {
            n
        } else {
            Binomial::new(n, p).map_or(0, |d| d.sample(rng))
        }
    };
    let errors = binomial(rng, n, b.error_rate);
    let log_normal = LogNormal::new((b.median_ms * 1e3).ln(), b.sigma).unwrap();
    let mut counts = vec![0; LATENCY_BUCKETS];
    let (mut left, mut below) = (n, 0.0);
    for (i, count) in counts.iter_mut().enumerate() {
        let upper =
            bucket_upper_ns(i, LATENCY_SUB_BITS).map_or(1.0, |ns| log_normal.cdf(ns as f64 / 1e3));
        let share = if below >= 1.0 {
            0.0
        } else {
            (upper - below) / (1.0 - below)
        };
        *count = binomial(rng, left, share.clamp(0.0, 1.0));
        left -= *count;
        below = upper;
    }
    let mut http = vec![0; 6];
    http[1] = n - errors;
    http[4] = errors;
    VersionSignals {
        requests: n,
        responses: n,
        http,
        latency: Histogram { counts, sum_ns: 0 },
        ..Default::default()
    }
}

fn add(a: &mut VersionSignals, b: &VersionSignals) {
    a.requests += b.requests;
    a.responses += b.responses;
    for (x, y) in a.http.iter_mut().zip(&b.http) {
        *x += y;
    }
    for (x, y) in a.latency.counts.iter_mut().zip(&b.latency.counts) {
        *x += y;
    }
    a.latency.sum_ns += b.latency.sum_ns;
}

/// How a simulated rollout ended, and after how many looks.
fn simulate(plan: &RolloutPlan, seed: u64, stable: Behaviour, canary: Behaviour) -> (Phase, u32) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut state = RolloutState::start(0);
    let empty = || sample(&mut SmallRng::seed_from_u64(0), 0, stable);
    let (mut stable_sum, mut canary_sum) = (empty(), empty());
    while state.phase == Phase::Running && state.looks < 60 {
        let weight = f64::from(plan.steps[state.step]) / 10_000.0;
        let n_canary = (PER_INTERVAL as f64 * weight).round() as u64;
        let s = sample(&mut rng, PER_INTERVAL - n_canary, stable);
        let c = sample(&mut rng, n_canary, canary);
        add(&mut stable_sum, &s);
        add(&mut canary_sum, &c);
        let ev = Evidence {
            stable: stable_sum.clone(),
            canary: canary_sum.clone(),
            interval_attempts: [s.requests, c.requests],
            gates: vec![],
        };
        let d = evaluate(plan, &state, &ev, 0);
        if let Action::StepUp { step } = d.action {
            // The checks judge what happened since the step began; at
            // 100 % stable's evidence is the last step's.
            if plan.steps[step] < 10_000 {
                stable_sum = empty();
            }
            canary_sum = empty();
        }
        state = d.next;
    }
    (state.phase, state.looks)
}

/// Requests the simulated service gets per interval: at a 5 % step the
/// canary answers 2,000, about what showing its p99 within bounds takes (a
/// p99 needs thousands of responses to be shown below a threshold).
const PER_INTERVAL: u64 = 40_000;

fn sim_plan() -> RolloutPlan {
    RolloutPlan {
        checks: Checks {
            max_error_rate: Some(0.05),
            max_error_ratio: Some(2.0),
            // On a bucket bound (16 µs x 2^12): the histogram says exactly
            // which responses are over it.
            max_p99_ms: Some(65.536),
            max_p99_ratio: Some(2.0),
            error_margin: 0.01,
            p99_margin_ms: 5.0,
        },
        ..plan()
    }
}

const HEALTHY: Behaviour = Behaviour {
    error_rate: 0.01,
    median_ms: 15.0,
    sigma: 0.5,
};

/// Runs `runs` seeded rollouts; returns (rolled back, promoted, paused,
/// mean looks of those rolled back).
fn many(runs: u64, canary: Behaviour) -> (u64, u64, u64, f64) {
    let plan = sim_plan();
    let (mut back, mut promoted, mut paused, mut looks) = (0, 0, 0, 0u64);
    for seed in 0..runs {
        match simulate(&plan, seed, HEALTHY, canary) {
            (Phase::RolledBack, l) => {
                back += 1;
                looks += u64::from(l);
            }
            (Phase::Promoted, _) => promoted += 1,
            (Phase::Paused, _) => paused += 1,
            (other, _) => panic!("seed {seed} ended {other:?}"),
        }
    }
    (back, promoted, paused, looks as f64 / back.max(1) as f64)
}

#[test]
fn a_canary_as_good_as_stable_is_rarely_rolled_back() {
    const RUNS: u64 = 1000;
    let (back, promoted, paused, _) = many(RUNS, HEALTHY);
    let rate = back as f64 / RUNS as f64;
    println!(
        "A/A: {RUNS} seeded rollouts ({PER_INTERVAL} requests per interval, 1% errors, 15 ms median): \
         {back} rolled back ({:.1}%), {promoted} promoted, {paused} paused; error budget {:.0}%",
        rate * 100.0,
        sim_plan().alpha * 100.0
    );
    assert!(rate <= sim_plan().alpha, "false rollbacks {rate}");
    assert!(promoted >= RUNS * 9 / 10, "only {promoted} promoted");
}

#[test]
fn regressions_are_caught() {
    const RUNS: u64 = 200;
    let errors = Behaviour {
        error_rate: 0.06,
        ..HEALTHY
    };
    let slow = Behaviour {
        median_ms: 30.0,
        ..HEALTHY
    };
    let slower = Behaviour {
        median_ms: 45.0,
        ..HEALTHY
    };
    for (name, canary) in [
        ("+5 points of errors", errors),
        ("2x latency (p99 48 -> 96 ms)", slow),
        ("3x latency (p99 48 -> 144 ms)", slower),
    ] {
        let (back, promoted, paused, looks) = many(RUNS, canary);
        println!(
            "{name}: {RUNS} seeded rollouts: {back} rolled back (after {looks:.1} intervals on average), {promoted} promoted, {paused} paused"
        );
        assert_eq!(promoted, 0, "{name}: a regression was promoted");
        assert!(back >= RUNS * 95 / 100, "{name}: only {back} rolled back");
    }
}

/// A rollout that holds for days keeps its last `MAX_HISTORY` decisions,
/// not all of them (issue 23: the state file grew by every look); the
/// counts cover every look.
#[test]
fn the_history_keeps_the_latest_decisions_and_the_counts_keep_all() {
    let p = RolloutPlan {
        max_inconclusive: u32::MAX,
        ..plan()
    };
    let mut state = RolloutState::start(0);
    let too_few = evidence(version(1, 0, 20.0), version(1, 0, 20.0));
    for look in 1..=250u64 {
        state = evaluate(&p, &state, &too_few, look).next;
        assert!(state.history.len() <= super::policy::MAX_HISTORY);
    }
    assert_eq!((state.looks, state.phase), (250, Phase::Running));
    assert_eq!(state.history.len(), super::policy::MAX_HISTORY);
    assert_eq!(state.history.first().map(|h| h.look), Some(151));
    assert_eq!(state.history.last().map(|h| h.look), Some(250));
}
