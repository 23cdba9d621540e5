//! End to end over network namespaces: a client namespace, a host namespace
//! with the programs on its client-facing veth, and real TCP backends, either
//! local processes on other ports of the host address or in namespaces of
//! their own. Every scenario runs for IPv4 and IPv6 and both backend kinds.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use canary_userspace::{Affinity, model::weight::Weight};
use tests::{
    bp,
    harness::{CANARY, Family, Harness, STABLE},
    servers::Client,
};
use xtask::topology::BackendKind;

const MATRIX: [(BackendKind, Family); 4] = [
    (BackendKind::LocalProcess, Family::V4),
    (BackendKind::LocalProcess, Family::V6),
    (BackendKind::Namespace, Family::V4),
    (BackendKind::Namespace, Family::V6),
];

#[test]
fn flow_affinity_splits_new_connections_by_weight() {
    let _serial = tests::root_scenario();
    const CONNECTIONS: u32 = 2000;
    const WEIGHT: Weight = Weight::from_bp(1000).unwrap();
    for (kind, family) in MATRIX {
        let h = Harness::new(kind, family, Affinity::Flow, WEIGHT).unwrap();
        let (mut canary, mut predicted) = (0u32, 0u32);
        for i in 0..CONNECTIONS {
            let mut c = h
                .connect(None)
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
            let from = c.local_addr().unwrap();
            let want_canary = h.hash_says_canary(from, WEIGHT);
            predicted += want_canary as u32;
            let answer = c
                .request()
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
            // Every connection lands where the shared hash (the code XDP
            // runs, unit-tested for its spread in canary-common) says: an
            // exact check, where a share band would be a statistical one.
            let want = if want_canary { CANARY } else { STABLE };
            assert_eq!(
                answer, want,
                "{kind:?} {family:?}: connection {i} from {from} answered by {answer:?}, the hash says {want}"
            );
            canary += (answer == CANARY) as u32;
        }
        let share = canary as f64 * 100.0 / CONNECTIONS as f64;
        println!(
            "{kind:?} {family:?}: weight 10%, {CONNECTIONS} connections, canary share {share:.2}% \
             (the hash predicted {predicted} canary connections, {canary} were)"
        );
        // The kernel picks ephemeral ports pseudo-randomly, so the share is a
        // binomial sample (sd 0.67 points at 2000): 5..15 % is 7 sd wide,
        // and only a split that ignores the weight falls outside it.
        assert!(
            (5.0..=15.0).contains(&share),
            "{kind:?} {family:?}: canary share {share:.2}% at weight 10%"
        );

        // Every connection is closed (each Client dropped at its loop's end).
        h.assert_connections_counted(
            &format!("{kind:?} {family:?}"),
            CONNECTIONS.into(),
            canary.into(),
        );
    }
}

#[test]
fn client_affinity_keeps_each_client_on_one_version() {
    let _serial = tests::root_scenario();
    const CLIENTS: u32 = 200;
    const PER_CLIENT: usize = 3;
    for (kind, family) in MATRIX {
        let mut h = Harness::new(kind, family, Affinity::Client, bp(2000)).unwrap();
        let (v4, v6) = h.topo.add_client_addresses(CLIENTS).unwrap();
        let clients: Vec<IpAddr> = if family == Family::V4 { v4 } else { v6 };

        let versions = |h: &Harness| -> HashMap<IpAddr, String> {
            clients
                .iter()
                .map(|ip| {
                    let answers: Vec<String> = (0..PER_CLIENT)
                        .map(|_| h.connect(Some(*ip)).unwrap().request().unwrap())
                        .collect();
                    assert!(
                        answers.iter().all(|a| *a == answers[0]),
                        "{kind:?} {family:?}: client {ip} saw {answers:?}"
                    );
                    (*ip, answers[0].clone())
                })
                .collect()
        };
        let at_20 = versions(&h);
        h.set_weight(bp(5000)).unwrap();
        let at_50 = versions(&h);

        let canary_20 = at_20.values().filter(|v| *v == CANARY).count();
        let canary_50 = at_50.values().filter(|v| *v == CANARY).count();
        println!(
            "{kind:?} {family:?}: {CLIENTS} clients, canary at 20%: {canary_20}, at 50%: {canary_50}"
        );
        for (ip, v) in &at_20 {
            if v == CANARY {
                assert_eq!(
                    at_50[ip], CANARY,
                    "{kind:?} {family:?}: client {ip} went back to stable"
                );
            }
        }
        // The ramp must actually move someone, or the check above is empty.
        assert!(
            canary_20 > 0 && canary_50 > canary_20,
            "{kind:?} {family:?}: {canary_20} -> {canary_50}"
        );
    }
}

#[test]
fn weight_changes_never_move_established_connections() {
    let _serial = tests::root_scenario();
    const STEPS: u16 = 20;
    const PER_STEP: usize = 10; // 200 connections in all
    const STEP_TIME: Duration = Duration::from_millis(150);
    const MAX_REQUESTS_PER_CONNECTION: u64 = 100_000;
    for (kind, family) in MATRIX {
        let mut h = Harness::new(kind, family, Affinity::Flow, Weight::ZERO).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let mut workers = vec![];
        // 0 -> 100 -> 0 in 20 steps of 10 points. Connections open at each of
        // the 20 weights before the last step, so they start on both
        // versions, and all keep sending until after the final return to 0.
        let weights: Vec<Weight> = (0..=STEPS / 2)
            .chain((0..STEPS / 2).rev())
            .map(|s| bp(s * 1000))
            .collect();
        for (i, w) in weights.iter().enumerate() {
            h.set_weight(*w).unwrap();
            let opening = if i < STEPS as usize { PER_STEP } else { 0 };
            for _ in 0..opening {
                let fail = |e: anyhow::Error| -> ! { panic!("{e:#}\n{}", h.diagnostics()) };
                let mut c: Client = h.connect(None).unwrap_or_else(|e| fail(e));
                let first = c.request().unwrap_or_else(|e| fail(e));
                let (stop, requests) = (stop.clone(), requests.clone());
                workers.push(thread::spawn(move || -> Result<(String, u64), String> {
                    let mut n = 1;
                    while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_CONNECTION {
                        let got = c
                            .request()
                            .map_err(|e| format!("request {n} failed: {e:#}"))?;
                        if got != first {
                            return Err(format!(
                                "started on {first}, answered by {got} at request {n}"
                            ));
                        }
                        n += 1;
                        requests.fetch_add(1, Ordering::Relaxed);
                        // A steady stream rather than a busy loop: 200 busy
                        // loops (and their 200 server threads) starve a
                        // 2-core machine, which is not what this measures.
                        thread::sleep(Duration::from_micros(500));
                    }
                    Ok((first, n))
                }));
            }
            thread::sleep(STEP_TIME);
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(workers.len(), STEPS as usize * PER_STEP);
        let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let on_canary = results
            .iter()
            .filter(|r| matches!(r, Ok((v, _)) if v == CANARY))
            .count();
        println!(
            "{kind:?} {family:?}: {} connections ({on_canary} on canary), {} requests, {} failed",
            results.len(),
            requests.load(Ordering::Relaxed),
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{kind:?} {family:?}: {failures:?}\n{}",
            h.diagnostics()
        );
        assert!(
            on_canary > 0 && on_canary < results.len(),
            "{kind:?} {family:?}: ramp put {on_canary} on canary"
        );
        let s = h.stats().unwrap();
        assert_eq!(
            s[0].rehashes + s[1].rehashes,
            0,
            "{kind:?} {family:?}: {s:?}"
        );
    }
}
