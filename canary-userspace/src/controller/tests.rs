//! The policy as a table (each row a situation and the decision it must
//! give), and seeded simulations of whole rollouts: A/A (the canary is the
//! stable's twin) must be rolled back no more often than the error budget
//! allows; regressions must be caught.

use canary_common::signals::{CONNECT_BUCKETS, LATENCY_BUCKETS, LATENCY_SUB_BITS, bucket_of_ns};
use rand::{SeedableRng, rngs::SmallRng};
use rand_distr::{Binomial, Distribution};
use statrs::distribution::{ContinuousCDF, LogNormal};

use super::{
    plan::{Checks, Gate, Mode, OnRollback, RolloutPlan},
    policy::{Evidence, GateReading, RolloutState, evaluate},
    stats::{level, needed, quantile_bounds, upper_at_most},
};
use crate::model::{
    rollout::{Action, Phase, Verdict},
    signals::{Histogram, VersionSignals},
    weight::Weight,
};

/// The README's steps: 5, 10, 25, 50 and 100 %.
fn readme_steps() -> Vec<Weight> {
    ["5", "10", "25", "50", "100"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// A plan with the README's shape; other modules' tests use it too.
pub(crate) fn plan() -> RolloutPlan {
    let defaults = RolloutPlan::default();
    RolloutPlan {
        steps: readme_steps(),
        min_requests: 50,
        checks: Checks {
            max_error_rate: Some(0.05),
            max_error_ratio: Some(2.0),
            ..defaults.checks
        },
        ..defaults
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

/// A plan whose only check is a p99 ratio of 1 with no margin: a canary
/// in the same bucket as stable's p99 can neither pass nor fail it.
fn on_the_limit() -> RolloutPlan {
    RolloutPlan {
        checks: Checks {
            max_p99_ratio: Some(1.0),
            p99_margin_ms: 0.0,
            ..Checks::default()
        },
        ..plan()
    }
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
            name: "below 100% stable must answer too: no new stable requests is inconclusive",
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
            name: "too few canary requests since the step began, but more came: hold",
            plan: plan(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: evidence(version(5000, 10, 20.0), version(10, 0, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "the step's evidence is enough though this interval brought little: judged",
            plan: plan(),
            state: state_at(0),
            evidence: Evidence {
                interval_attempts: [5000, 10],
                ..healthy()
            },
            verdict: Verdict::Pass,
            action: Action::StepUp { step: 1 },
        },
        Row {
            name: "fifth look in a row with no new canary requests: pause",
            plan: plan(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: Evidence {
                interval_attempts: [5000, 0],
                ..healthy()
            },
            verdict: Verdict::Inconclusive,
            action: Action::Pause,
        },
        Row {
            name: "inconclusive with growing evidence after four stalled looks: hold",
            plan: plan(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: evidence(version(2000, 40, 20.0), version(100, 3, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
        },
        Row {
            name: "a gate that does not answer counts toward the pause, traffic or not",
            plan: with_gate.clone(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: gate(Err("timed out after 5s".into())),
            verdict: Verdict::Inconclusive,
            action: Action::Pause,
        },
        Row {
            name: "a check more data cannot settle (canary p99 on the limit) counts toward the pause",
            plan: on_the_limit(),
            state: RolloutState {
                inconclusive_streak: 4,
                ..state_at(0)
            },
            evidence: healthy(),
            verdict: Verdict::Inconclusive,
            action: Action::Pause,
        },
        Row {
            name: "still inconclusive at max_step_duration: pause",
            plan: RolloutPlan {
                max_step_duration: Some(std::time::Duration::from_secs(60)),
                ..plan()
            },
            state: RolloutState {
                step_looks: 1,
                ..state_at(0)
            },
            evidence: evidence(version(2000, 40, 20.0), version(100, 3, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Pause,
        },
        Row {
            name: "inconclusive before max_step_duration: hold",
            plan: RolloutPlan {
                max_step_duration: Some(std::time::Duration::from_secs(90)),
                ..plan()
            },
            state: RolloutState {
                step_looks: 1,
                ..state_at(0)
            },
            evidence: evidence(version(2000, 40, 20.0), version(100, 3, 20.0)),
            verdict: Verdict::Inconclusive,
            action: Action::Hold,
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

/// The reasons say which check lacked what: a hold whose evidence grows,
/// a pause at `max_step_duration`, a pause that more traffic would not
/// have helped; a step up starts the step's clock again.
#[test]
fn reasons_name_the_check_and_what_it_lacks() {
    let growing = evidence(version(2000, 40, 20.0), version(100, 3, 20.0));
    let hold = evaluate(&plan(), &state_at(0), &growing, 0);
    println!("{}", hold.reason);
    assert!(hold.reason.starts_with("hold: error_"), "{}", hold.reason);
    assert!(
        hold.reason.contains("inconclusive: needs ~")
            && hold
                .reason
                .contains(" canary requests at this step; got 100 ("),
        "{}",
        hold.reason
    );
    assert_eq!(hold.next.inconclusive_streak, 0);

    let timed_out = RolloutPlan {
        max_step_duration: Some(std::time::Duration::from_secs(60)),
        ..plan()
    };
    let state = RolloutState {
        step_looks: 1,
        ..state_at(0)
    };
    let paused = evaluate(&timed_out, &state, &growing, 0);
    println!("{}", paused.reason);
    assert!(
        paused.reason.starts_with(
            "paused: the step at 5.00% is still inconclusive after 2 looks (60 s; max_step_duration 60 s); last: error_"
        ) && paused.reason.contains("needs ~"),
        "{}",
        paused.reason
    );
    assert_eq!(paused.next.reason, paused.reason);

    let healthy = evidence(version(5000, 10, 20.0), version(2000, 4, 20.0));
    let state = RolloutState {
        inconclusive_streak: 4,
        ..state_at(0)
    };
    let stuck = evaluate(&on_the_limit(), &state, &healthy, 0);
    println!("{}", stuck.reason);
    assert!(
        stuck.reason.starts_with(
            "paused: 5 inconclusive intervals in a row that more canary traffic would not settle \
             (max_inconclusive 5); last: p99_ratio inconclusive, and more canary traffic would not settle it: "
        ),
        "{}",
        stuck.reason
    );

    let stepped = evaluate(
        &plan(),
        &RolloutState {
            step_looks: 7,
            ..state_at(0)
        },
        &healthy,
        0,
    );
    assert_eq!(
        (stepped.action, stepped.next.step_looks),
        (Action::StepUp { step: 1 }, 0)
    );
}

/// One version's traffic in a simulation: error probability and a
/// log-normal time to first byte.
#[derive(Clone, Copy, Debug)]
struct Behaviour {
    error_rate: f64,
    median_ms: f64,
    sigma: f64,
}

impl Behaviour {
    /// A model server: p99 at 2.5 x the median (sigma = ln 2.5 / z(0.99)).
    const fn model_server(error_rate: f64, median_ms: f64) -> Behaviour {
        Behaviour {
            error_rate,
            median_ms,
            sigma: 0.394,
        }
    }

    /// The share of responses in each bucket of a histogram of `buckets`
    /// (170: today's; 23: one per power of two, as before pin layout v6).
    fn shares(&self, buckets: usize) -> Vec<f64> {
        let h = Histogram {
            counts: vec![0; buckets],
            sum_ns: 0,
        };
        let d = LogNormal::new((self.median_ms * 1e6).ln(), self.sigma).unwrap();
        let mut below = 0.0;
        (0..buckets)
            .map(|i| {
                let upto = h.upper_ns(i).map_or(1.0, |ns| d.cdf(ns as f64));
                let share = upto - below;
                below = upto;
                share
            })
            .collect()
    }
}

fn binomial(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        0
    } else if p >= 1.0 {
        n
    } else {
        Binomial::new(n, p).map_or(0, |d| d.sample(rng))
    }
}

/// A version that answered `n` requests, `errors` of them 5xx, in `latency`.
fn answered(n: u64, errors: u64, latency: Histogram) -> VersionSignals {
    let mut http = vec![0; 6];
    http[1] = n - errors;
    http[4] = errors;
    VersionSignals {
        requests: n,
        responses: n,
        http,
        latency,
        ..Default::default()
    }
}

/// `n` requests of a version: errors binomial, latencies drawn bucket by
/// bucket from `shares` (a multinomial as a chain of binomials), so an
/// interval costs the same at 60 and at 6,000 requests a second.
fn sample(rng: &mut SmallRng, n: u64, error_rate: f64, shares: &[f64]) -> VersionSignals {
    let errors = binomial(rng, n, error_rate);
    let (mut left, mut mass_left) = (n, 1.0);
    let counts = shares
        .iter()
        .map(|share| {
            let count = binomial(rng, left, share / mass_left);
            left -= count;
            mass_left -= share;
            count
        })
        .collect();
    answered(n, errors, Histogram { counts, sum_ns: 0 })
}

/// `n` requests with every bucket at its expected count: the evidence
/// "with the tail share at its expected value".
fn expected(n: u64, shares: &[f64]) -> VersionSignals {
    let counts = shares
        .iter()
        .map(|share| (share * n as f64).round() as u64)
        .collect();
    let latency = Histogram { counts, sum_ns: 0 };
    answered(latency.total(), 0, latency)
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
}

/// The rollout config of the README's example (`[service.rollout]` in
/// the README's Rollouts section), without its gate: every other key at
/// its default.
fn readme_plan() -> RolloutPlan {
    RolloutPlan {
        steps: readme_steps(),
        interval: std::time::Duration::from_secs(30),
        min_requests: 200,
        failed_checks_limit: 2,
        consecutive_failures: 0,
        min_passes: 1,
        max_inconclusive: 5,
        max_step_duration: Some(std::time::Duration::from_secs(30 * 60)),
        mode: Mode::Enforce,
        on_rollback: OnRollback::Drain,
        checks: Checks {
            max_error_rate: Some(0.01),
            max_error_ratio: Some(2.0),
            max_p99_ms: Some(268.435456),
            max_p99_ratio: Some(1.5),
            error_margin: 0.01,
            p99_margin_ms: 5.0,
        },
        gates: vec![],
        prometheus: None,
        webhook: None,
        alpha: 0.05,
        grpc_error_codes: crate::model::grpc_code::GrpcCodes::DEFAULT,
    }
}

/// Looks after which a simulated rollout that is still running is a bug:
/// `max_step_duration` (60 looks) pauses a step long before.
const MAX_LOOKS: u32 = 1000;

/// A version's behaviour as the simulation draws it.
struct Drawn {
    error_rate: f64,
    shares: Vec<f64>,
}

impl From<Behaviour> for Drawn {
    fn from(b: Behaviour) -> Drawn {
        Drawn {
            error_rate: b.error_rate,
            shares: b.shares(LATENCY_BUCKETS),
        }
    }
}

/// How a simulated rollout ended, after how many looks, and at which step:
/// `per_interval` new requests an interval, each to the canary with the
/// step's weight.
fn simulate(
    plan: &RolloutPlan,
    seed: u64,
    per_interval: u64,
    stable: &Drawn,
    canary: &Drawn,
) -> (Phase, u32, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut state = RolloutState::start(0);
    let empty = || answered(0, 0, Histogram::latency());
    let (mut stable_sum, mut canary_sum) = (empty(), empty());
    while state.phase == Phase::Running {
        assert!(state.looks < MAX_LOOKS, "seed {seed}: still running");
        let weight = plan.steps[state.step].ratio();
        let n_canary = binomial(&mut rng, per_interval, weight);
        let s = sample(
            &mut rng,
            per_interval - n_canary,
            stable.error_rate,
            &stable.shares,
        );
        let c = sample(&mut rng, n_canary, canary.error_rate, &canary.shares);
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
            if plan.steps[step] < Weight::FULL {
                stable_sum = empty();
            }
            canary_sum = empty();
        }
        state = d.next;
    }
    (state.phase, state.looks, state.step)
}

/// A healthy model server: 0.2 % errors, 20 ms median, 50 ms p99.
const HEALTHY: Behaviour = Behaviour::model_server(0.002, 20.0);
/// +5 points of errors.
const ERRORS: Behaviour = Behaviour::model_server(0.052, 20.0);
/// The same median, twice the p99 (100 ms; sigma = ln 5 / z(0.99)): past
/// 1.5 x stable + 5 ms = 80 ms, and inside `max_p99_ms`.
const SLOW_TAIL: Behaviour = Behaviour {
    sigma: 0.692,
    ..HEALTHY
};

/// How `runs` seeded rollouts of one canary ended.
#[derive(Default)]
struct Ends {
    runs: u64,
    rolled_back: Vec<u32>,
    promoted: Vec<u32>,
    paused: Vec<u32>,
    /// Rollouts that ended past the first step.
    past_first_step: u64,
}

impl Ends {
    fn share(&self, looks: &[u32]) -> f64 {
        looks.len() as f64 / self.runs as f64
    }
}

/// The `q` quantile of `looks` (nearest rank); 0 when there are none.
fn looks_quantile(looks: &[u32], q: f64) -> u32 {
    let mut sorted = looks.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

fn rollouts(plan: &RolloutPlan, per_second: u64, runs: u64, canary: Behaviour) -> Ends {
    let per_interval = per_second * plan.interval.as_secs();
    let (stable, canary) = (Drawn::from(HEALTHY), Drawn::from(canary));
    let mut ends = Ends {
        runs,
        ..Ends::default()
    };
    for seed in 0..runs {
        let (phase, looks, step) = simulate(plan, seed, per_interval, &stable, &canary);
        match phase {
            Phase::RolledBack => ends.rolled_back.push(looks),
            Phase::Promoted => ends.promoted.push(looks),
            Phase::Paused => ends.paused.push(looks),
            other => panic!("seed {seed} ended {other:?}"),
        }
        ends.past_first_step += u64::from(step > 0);
    }
    ends
}

/// A rate's power: 1,000 A/A rollouts (the canary is stable's twin) and
/// 200 of each bad canary, with the README's config; printed as a row of
/// docs/ROLLOUTS.md's table. Returns (A/A, +5 points of errors, 2x p99).
fn power(per_second: u64) -> [Ends; 3] {
    let plan = readme_plan();
    let secs = plan.interval.as_secs_f64();
    let seconds = |looks: u32| f64::from(looks) * secs;
    let aa = rollouts(&plan, per_second, 1000, HEALTHY);
    let errors = rollouts(&plan, per_second, 200, ERRORS);
    let slow = rollouts(&plan, per_second, 200, SLOW_TAIL);
    let (median, p95) = (
        looks_quantile(&aa.promoted, 0.5),
        looks_quantile(&aa.promoted, 0.95),
    );
    let caught = |e: &Ends| {
        format!(
            "{}/{} rolled back in {}-{} looks (median {}), {} paused, {} promoted",
            e.rolled_back.len(),
            e.runs,
            looks_quantile(&e.rolled_back, 0.0),
            looks_quantile(&e.rolled_back, 1.0),
            looks_quantile(&e.rolled_back, 0.5),
            e.paused.len(),
            e.promoted.len()
        )
    };
    println!(
        "| {per_second} req/s | {}/{} ({:.1} %) | {:.1} % ({} paused) | {median} looks ({} s) / {p95} looks ({} s) | {} | {} |",
        aa.rolled_back.len(),
        aa.runs,
        aa.share(&aa.rolled_back) * 100.0,
        aa.share(&aa.promoted) * 100.0,
        aa.paused.len(),
        seconds(median),
        seconds(p95),
        caught(&errors),
        caught(&slow),
    );
    [aa, errors, slow]
}

/// The goals of issue 24 at one rate: false rollbacks within `alpha`,
/// at least `promoted` of healthy canaries promoted, no bad one past the
/// first step, and at least `rolled_back` of each kind (+5 points of
/// errors, 2x p99) rolled back.
fn assert_power(per_second: u64, promoted: f64, rolled_back: [f64; 2]) {
    let [aa, errors, slow] = power(per_second);
    let alpha = readme_plan().alpha;
    assert!(
        aa.share(&aa.rolled_back) <= alpha,
        "{per_second} req/s: {} false rollbacks",
        aa.rolled_back.len()
    );
    assert!(
        aa.share(&aa.promoted) >= promoted,
        "{per_second} req/s: {} healthy canaries promoted",
        aa.promoted.len()
    );
    for ((name, bad), goal) in [("+5 points of errors", errors), ("2x p99", slow)]
        .into_iter()
        .zip(rolled_back)
    {
        assert_eq!(
            bad.past_first_step, 0,
            "{per_second} req/s, {name}: past the first step"
        );
        assert!(
            bad.share(&bad.rolled_back) >= goal,
            "{per_second} req/s, {name}: {} rolled back",
            bad.rolled_back.len()
        );
    }
}

/// At 3 canary requests a second (5 %), showing the 2x p99 canary's tail
/// past the limit takes longer than `max_step_duration`: most pause at the
/// first step instead (held there, never stepped up).
#[test]
fn power_at_60_requests_a_second() {
    assert_power(60, 0.95, [0.95, 0.0]);
}

#[test]
fn power_at_600_requests_a_second() {
    assert_power(600, 0.99, [0.95, 0.95]);
}

#[test]
fn power_at_6000_requests_a_second() {
    assert_power(6000, 0.99, [0.95, 0.95]);
}

/// How p99_ratio passed before issue 24: the canary's responses above
/// `ratio` x stable's lower bound + margin, counting every bucket that
/// holds the limit whole, at most 1 %. `.1` of `above` spreads that bucket.
fn passed_counting_whole_buckets(
    stable: &VersionSignals,
    canary: &VersionSignals,
    ratio: f64,
    margin_ms: f64,
) -> bool {
    let plan = readme_plan();
    let lvl = level(plan.alpha, plan.steps.len(), plan.checks.bounds());
    let (s_lo, _) = quantile_bounds(&stable.latency, 0.99, lvl);
    let limit_us = ratio * s_lo + margin_ms * 1e3;
    let h = &canary.latency;
    let whole: u64 = (0..h.counts.len())
        .filter(|i| h.upper_ns(*i).is_none_or(|u| u as f64 / 1e3 > limit_us))
        .map(|i| h.counts[i])
        .sum();
    upper_at_most(whole as f64, h.total(), 0.01, lvl)
}

/// Issue 24: stable and canary drawn from one log-normal (30 ms median,
/// p99 68 ms), 95,000 and 5,000 responses (a 5 % step). With one bucket per
/// power of two stable's p99 was known only within (33.6, 134.2] ms, and
/// the canary's tail in the bucket holding 1.5 x 33.6 ms (or 2.5 x + 5 ms)
/// was all "maybe above": never shown under 1 %. The log-linear buckets
/// settle it.
#[test]
fn a_canary_like_stable_passes_p99_ratio_at_a_log2_bucket_edge() {
    let like_stable = Behaviour {
        error_rate: 0.0,
        median_ms: 30.0,
        sigma: (68.0f64 / 30.0).ln() / 2.326,
    };
    let drawn = |buckets: usize| {
        let shares = like_stable.shares(buckets);
        let mut rng = SmallRng::seed_from_u64(24);
        let stable = sample(&mut rng, 95_000, 0.0, &shares);
        (stable, sample(&mut rng, 5_000, 0.0, &shares))
    };
    for (ratio, margin_ms) in [(1.5, 0.0), (2.5, 5.0)] {
        let plan = RolloutPlan {
            checks: Checks {
                max_p99_ratio: Some(ratio),
                p99_margin_ms: margin_ms,
                ..readme_plan().checks
            },
            ..readme_plan()
        };
        let (stable, canary) = drawn(LATENCY_BUCKETS);
        let d = evaluate(&plan, &state_at(0), &evidence(stable, canary), 0);
        let p99_ratio = d.checks.iter().find(|c| c.name == "p99_ratio").unwrap();
        println!("max_p99_ratio {ratio} + {margin_ms} ms: {p99_ratio:?}");
        assert_eq!(p99_ratio.verdict, Verdict::Pass, "{p99_ratio:?}");
        // One bucket per power of two (2^14 ns << i; pin layout v5's were
        // 16 us << i, 2.4 % lower), judged as before.
        let (stable, canary) = drawn(CONNECT_BUCKETS);
        assert!(!passed_counting_whole_buckets(
            &stable, &canary, ratio, margin_ms
        ));
    }
}

/// Canary responses the p99_ratio check needs to reach `want` (the
/// README's config, stable answering 19 for each canary response as at a
/// 5 % step, every bucket at its expected count): stable's p99
/// `stable_p99_ms`, the canary's `true_ratio` times it (the same shape,
/// scaled), the limit `limit` x stable + 5 ms. `rule`: today's check on
/// histograms of `LATENCY_BUCKETS`, or the whole-bucket rule's pass on
/// `buckets`. None: never.
fn responses_for(
    want: Verdict,
    stable_p99_ms: f64,
    true_ratio: f64,
    limit: f64,
    rule: Option<usize>,
) -> Option<u64> {
    let stable = Behaviour::model_server(0.0, stable_p99_ms / 2.5);
    let canary = Behaviour {
        median_ms: stable.median_ms * true_ratio,
        ..stable
    };
    let buckets = rule.unwrap_or(LATENCY_BUCKETS);
    let (stable, canary) = (stable.shares(buckets), canary.shares(buckets));
    let plan = RolloutPlan {
        checks: Checks {
            max_p99_ratio: Some(limit),
            ..readme_plan().checks
        },
        ..readme_plan()
    };
    needed(0, |n| {
        let (stable, canary) = (expected(19 * n, &stable), expected(n, &canary));
        if rule.is_some() {
            return passed_counting_whole_buckets(&stable, &canary, limit, 5.0);
        }
        let d = evaluate(&plan, &state_at(0), &evidence(stable, canary), 0);
        d.checks
            .iter()
            .any(|c| c.name == "p99_ratio" && c.verdict == want)
    })
}

/// What the p99_ratio check can resolve, as the README and
/// docs/ROLLOUTS.md print it, beside the rule before issue 24 (the bucket
/// holding the limit counted whole) on log-linear and on log2 buckets.
#[test]
fn responses_a_p99_ratio_pass_needs() {
    const RULES: [(f64, Option<usize>, &str); 5] = [
        (1.5, None, "1.5"),
        (2.0, None, "2.0"),
        (2.5, None, "2.5"),
        (1.5, Some(LATENCY_BUCKETS), "1.5, whole bucket"),
        (1.5, Some(CONNECT_BUCKETS), "1.5, whole bucket, log2"),
    ];
    println!(
        "| stable p99 | canary p99 / stable's | {} |",
        RULES.map(|l| format!("max_p99_ratio {}", l.2)).join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(RULES.len()));
    let mut table = vec![];
    for (p99, ratio) in [
        (25.0, 1.0),
        (50.0, 1.0),
        (68.0, 1.0),
        (100.0, 1.0),
        (50.0, 1.2),
        (50.0, 1.3),
        (50.0, 1.4),
        (50.0, 1.5),
    ] {
        let row =
            RULES.map(|(limit, rule, _)| responses_for(Verdict::Pass, p99, ratio, limit, rule));
        let cells = row.map(|n| n.map_or("never".to_owned(), |n| n.to_string()));
        println!("| {p99} ms | {ratio} | {} |", cells.join(" | "));
        table.push(((p99, ratio), row));
    }
    for ((p99, ratio), [at_1_5, at_2, at_2_5, whole, log2]) in &table {
        // A canary like stable passes, whatever stable's p99, on about
        // what the zero-error bound needs (1,040).
        if *ratio == 1.0 {
            for n in [at_1_5, at_2, at_2_5] {
                assert!(n.is_some_and(|n| n <= 1500), "{p99} ms: {n:?}");
            }
        }
        // A looser limit never needs more; the whole bucket never less.
        let never_more =
            |a: &Option<u64>, b: &Option<u64>| a.is_none() || b.is_some_and(|b| a >= &Some(b));
        assert!(never_more(at_1_5, at_2) && never_more(at_2, at_2_5));
        assert!(never_more(whole, at_1_5) && never_more(log2, whole));
    }
    // 50 ms x 1.4 = 70 ms is 12.5 % under the limit (1.5 x 50 + 5 = 80 ms):
    // settled; the whole-bucket rule never settles it.
    let near = &table[6];
    assert_eq!(near.0, (50.0, 1.4));
    assert!(near.1[0].is_some() && near.1[3].is_none(), "{near:?}");
    // The case (stable p99 68 ms, a canary like it): never with
    // log2 buckets.
    assert_eq!(table[2].1[4], None);

    // The floor under every check at 1 %: none past the limit at all; and
    // error_rate at 0.2 % errors against max_error_rate 0.01.
    let plan = readme_plan();
    let lvl = level(plan.alpha, plan.steps.len(), plan.checks.bounds());
    let at_rate = |rate: f64| {
        needed(0, |n| {
            let errors = (rate * n as f64).round();
            upper_at_most(errors, n, 0.01, lvl)
        })
    };
    let (floor, errors) = (at_rate(0.0), at_rate(0.002));
    println!(
        "a share shown under 1 % at level {:.2e}: none observed: {floor:?}; 0.2 % observed: {errors:?}",
        lvl.0
    );
    assert!(
        floor.is_some_and(|n| (1000..1100).contains(&n)),
        "{floor:?}"
    );
    assert!(
        errors.is_some_and(|n| (1500..3000).contains(&n)),
        "{errors:?}"
    );
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
        assert!(state.history.len() <= crate::model::rollout::MAX_HISTORY);
    }
    assert_eq!((state.looks, state.phase), (250, Phase::Running));
    assert_eq!(state.history.len(), crate::model::rollout::MAX_HISTORY);
    assert_eq!(state.history.first().map(|h| h.look), Some(151));
    assert_eq!(state.history.last().map(|h| h.look), Some(250));
}

/// Issue 24's resolution, over every position of stable's p99 in its
/// bucket (40 to 80 ms, a ms apart; limit 1.5 x stable + 5 ms): a canary
/// 12.5 % (a bucket) under the limit passes, given the responses; one 20 %
/// over it fails. Failing takes more than a bucket: stable's upper bound
/// and the canary's tail are both judged at bucket bounds, never spread,
/// so that a false rollback stays within alpha.
#[test]
fn p99_ratio_settles_a_bucket_under_its_limit_and_two_over() {
    for (want, factor) in [(Verdict::Pass, 1.0 / 1.125), (Verdict::Fail, 1.2)] {
        let never: Vec<f64> = (40..=80)
            .map(f64::from)
            .filter(|p99| {
                let limit = (1.5 * p99 + 5.0) / p99;
                responses_for(want, *p99, limit * factor, 1.5, None).is_none()
            })
            .collect();
        assert!(
            never.is_empty(),
            "{want:?} never at stable p99 {never:?} ms"
        );
    }
}
