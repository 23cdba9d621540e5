//! The fake hosts of one run, spread over a few threads that each entered
//! etcd's namespace and run a current-thread runtime: 1,000 hosts are
//! 1,000 tasks, not 1,000 threads.

use std::{os::unix::thread::JoinHandleExt, path::Path, thread::JoinHandle, time::Duration};

use anyhow::{Context, Result};
use canary_userspace::config::FleetConfig;
use tokio::sync::watch;

use crate::{
    cpu::ThreadClock,
    host::{self, Shared},
};

pub struct Hosts {
    threads: Vec<(JoinHandle<()>, ThreadClock)>,
    stop: watch::Sender<bool>,
}

impl Hosts {
    /// Starts `count` hosts named `host-0000`.. on `threads` threads, host
    /// `i` after `i` times `spacing(publish, count)`.
    pub fn start(
        ns: &Path,
        config: &FleetConfig,
        count: usize,
        threads: usize,
        shared: Shared,
    ) -> Result<Hosts> {
        let (stop, stopped) = watch::channel(false);
        let mut out = Hosts {
            threads: vec![],
            stop,
        };
        for t in 0..threads {
            let ns = ns.to_owned();
            let config = config.clone();
            let shared = shared.clone();
            let stopped = stopped.clone();
            let handle = std::thread::Builder::new()
                .name(format!("fake-hosts-{t}"))
                .spawn(move || {
                    if let Err(e) = carry(&ns, &config, (count, t, threads), shared, stopped) {
                        eprintln!("fake hosts thread {t}: {e:#}");
                    }
                })
                .context("starting a fake hosts thread")?;
            let clock = ThreadClock::of(handle.as_pthread_t())?;
            out.threads.push((handle, clock));
        }
        Ok(out)
    }

    /// CPU time all the hosts' threads have used.
    pub fn cpu(&self) -> Duration {
        self.threads.iter().map(|(_, c)| c.now()).sum()
    }

    /// Stops every host and waits for their threads (each host's etcd call
    /// in flight ends within `store::OP_TIMEOUT`).
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for (handle, _) in self.threads {
            let _ = handle.join();
        }
    }
}

/// Hosts never join closer than this: a thousand new connections, leases
/// and watches within one second time out on this 2-core machine. Spaced
/// so, the hosts' publishes still fall all over the interval.
const JOIN_SPACING: Duration = Duration::from_millis(10);

/// Between one host's join and the next's: the publish interval spread
/// over the fleet, or `JOIN_SPACING`.
fn spacing(publish: Duration, count: usize) -> Duration {
    (publish / count.max(1) as u32).max(JOIN_SPACING)
}

/// Thread `t` of `threads`: hosts `t`, `t + threads`, ... of `count`.
fn carry(
    ns: &Path,
    config: &FleetConfig,
    (count, t, threads): (usize, usize, usize),
    shared: Shared,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    xtask::topology::enter_for_good(ns)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in (t..count).step_by(threads) {
            let mut config = config.clone();
            config.host = format!("host-{i:04}");
            let delay = spacing(config.publish, count) * i as u32;
            set.spawn(host::run(i, config, delay, shared.clone(), stop.clone()));
        }
        while set.join_next().await.is_some() {}
    });
    Ok(())
}
