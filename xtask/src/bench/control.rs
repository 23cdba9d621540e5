//! Control plane: how soon the kernel uses a weight `canaryctl set-weight`
//! asked for, and what canaryd costs while it waits.
//!
//! Each trial flips the weight between 0 % and 100 %, so the version of a
//! new connection shows whether the kernel uses the new weight. A thread
//! watches the pinned SERVICES map meanwhile; after canaryctl returns, one
//! new connection is opened at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use canary_userspace::{kernel::maps::Maps, model::weight::Weight};

use super::{
    Mode,
    paths::{self, BODIES, Kind, PROBE_TIMEOUT, PathEnv, SERVICE},
    proc::{clock_ticks_per_sec, process_ticks, rss_kib},
};

pub struct Plan {
    pub trials: usize,
    pub idle_seconds: u64,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        match mode {
            Mode::Full => Plan {
                trials: 20,
                idle_seconds: 10,
            },
            Mode::Quick => Plan {
                trials: 6,
                idle_seconds: 3,
            },
        }
    }
}

pub struct Results {
    pub trials: usize,
    /// canaryctl set-weight, process start to exit.
    pub ctl_ms: Vec<f64>,
    /// canaryctl start to the pinned map holding the new weight.
    pub map_ms: Vec<f64>,
    /// Trials where the map held the new weight when canaryctl returned.
    pub visible_at_return: usize,
    /// Trials whose first new connection after canaryctl returned was
    /// served by the version the new weight sends every flow to.
    pub first_conn_ok: usize,
    /// canaryctl's return to that connection's answer.
    pub first_conn_ms: Vec<f64>,
    pub rss_kib: u64,
    /// canaryd's CPU time while idle, in % of one CPU.
    pub idle_cpu_percent: f64,
    pub idle_seconds: u64,
}

pub fn run(env: &PathEnv, plan: &Plan) -> Result<Results> {
    let d = env.canaryd()?;
    let pid = d.daemon.pid;

    println!(
        "control: canaryd idle for {} s (CPU time from /proc/{pid}/stat)",
        plan.idle_seconds
    );
    let t0 = process_ticks(pid)?;
    let started = Instant::now();
    thread::sleep(Duration::from_secs(plan.idle_seconds));
    let ticks = process_ticks(pid)? - t0;
    let idle_cpu_percent =
        ticks as f64 / clock_ticks_per_sec() / started.elapsed().as_secs_f64() * 100.0;
    let rss = rss_kib(pid)?;

    let pins = d.dirs.pins();
    let key = paths::canary_service().vip_endpoint();
    let mut r = Results {
        trials: plan.trials,
        ctl_ms: vec![],
        map_ms: vec![],
        visible_at_return: 0,
        first_conn_ok: 0,
        first_conn_ms: vec![],
        rss_kib: rss,
        idle_cpu_percent,
        idle_seconds: plan.idle_seconds,
    };
    println!(
        "control: {} set-weight trials (0 % <-> 100 %), each followed by one new connection",
        plan.trials
    );
    for trial in 0..plan.trials {
        let want = if trial % 2 == 0 {
            Weight::FULL
        } else {
            Weight::ZERO
        };
        let services = Maps::open_pinned(&pins)?.services;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = stop.clone();
            thread::spawn(move || -> Result<Option<Instant>> {
                while !stop.load(Ordering::Relaxed) {
                    let s = services.get(&key, 0)?;
                    if s.weight_bp == want.bp() {
                        return Ok(Some(Instant::now()));
                    }
                    thread::yield_now();
                }
                Ok(None)
            })
        };
        let start = Instant::now();
        let out = d
            .daemon
            .ctl_command(&["set-weight", SERVICE, &want.percent().to_string()])
            .output()
            .context("running canaryctl set-weight")?;
        let returned = Instant::now();
        ensure!(
            out.status.success(),
            "canaryctl set-weight failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = xtask::http::get(&env.topo.client, Kind::Canary.target(), "/", PROBE_TIMEOUT)?;
        let answered = Instant::now();
        // Give the watcher a bounded time to see the write, then stop it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !watcher.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        let seen = watcher
            .join()
            .map_err(|_| anyhow::anyhow!("map watcher panicked"))??;
        let Some(seen) = seen else {
            bail!(
                "the pinned SERVICES map never showed weight {} bp",
                want.bp()
            );
        };
        r.ctl_ms.push(ms(returned - start));
        r.map_ms.push(ms(seen.saturating_duration_since(start)));
        if seen <= returned {
            r.visible_at_return += 1;
        }
        let want_body = BODIES[if want == Weight::FULL { 1 } else { 0 }];
        if body == want_body {
            r.first_conn_ok += 1;
        }
        r.first_conn_ms.push(ms(answered - returned));
    }
    println!(
        "control: canaryctl {:.2} ms (median); map updated {:.2} ms after canaryctl started; {}/{} first connections on the new version; RSS {} KiB; idle CPU {:.3} %",
        xtask::stats::median(&r.ctl_ms),
        xtask::stats::median(&r.map_ms),
        r.first_conn_ok,
        r.trials,
        r.rss_kib,
        r.idle_cpu_percent
    );
    Ok(r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
