//! The real leader (`canary_userspace::fleet::leader::run`) on a thread of
//! its own, with its own current-thread runtime, so that thread's CPU time
//! is the leader's: its looks, its etcd client's connection, and the 250 ms
//! ticks between looks. Its lease is granted here and renewed from outside
//! (`renew`), so the renewals are not counted as the leader's work.

use std::{os::unix::thread::JoinHandleExt, path::Path, thread::JoinHandle, time::Duration};

use anyhow::{Context, Result, anyhow};
use canary_userspace::{
    config::FleetConfig,
    controller::webhook::Webhooks,
    fleet::{Fleet, leader},
};
use tokio::sync::oneshot;

use crate::cpu::ThreadClock;

pub struct LeaderThread {
    handle: JoinHandle<Result<()>>,
    stop: oneshot::Sender<()>,
    pub clock: ThreadClock,
    /// The lease the leader holds: renew it.
    pub lease: i64,
}

/// Longest the leader's connection and lease may take.
const SETUP: Duration = Duration::from_secs(10);

impl LeaderThread {
    /// Connects the leader as host `config.host`, grants its lease and
    /// starts `leader::run`.
    pub fn start(ns: &Path, config: FleetConfig, webhooks: Webhooks) -> Result<LeaderThread> {
        let ns = ns.to_owned();
        let (ready, leased) = std::sync::mpsc::channel::<Result<i64>>();
        let (stop, stopped) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name("leader".into())
            .spawn(move || -> Result<()> {
                xtask::topology::enter_for_good(&ns)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let registry = prometheus::Registry::new();
                    let ttl = config.lease_ttl;
                    let setup = async {
                        let fleet = Fleet::connect(config, &registry).await?;
                        let lease = fleet.store.grant(ttl).await?;
                        fleet.hold_lease(lease);
                        anyhow::Ok((fleet, lease))
                    };
                    let fleet = match setup.await {
                        Ok((fleet, lease)) => {
                            let _ = ready.send(Ok(lease));
                            fleet
                        }
                        Err(e) => {
                            let _ = ready.send(Err(anyhow!("{e:#}")));
                            return Err(e);
                        }
                    };
                    tokio::select! {
                        _ = leader::run(fleet, webhooks) => {}
                        _ = stopped => {}
                    }
                    Ok(())
                })
            })
            .context("starting the leader thread")?;
        let clock = ThreadClock::of(handle.as_pthread_t())?;
        let lease = leased
            .recv_timeout(SETUP)
            .context("the leader's setup did not finish")??;
        Ok(LeaderThread {
            handle,
            stop,
            clock,
            lease,
        })
    }

    pub fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.handle
            .join()
            .map_err(|_| anyhow!("the leader thread panicked"))?
    }
}
