//! The one owner of the daemon's state: a thread of its own that takes
//! commands over a channel and answers each on a oneshot. Everything that
//! changes state or blocks (map writes, the state file's fsync, attaching)
//! happens there, never on the async runtime's thread; after every change
//! it publishes a snapshot for `observe`.
//!
//! A command waits behind the ones before it, so concurrent set-weight and
//! reload calls form one serial chain, as a map write order must.

use std::{sync::Arc, thread};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Daemon, DaemonError,
    observe::{Observer, Snapshot},
};
use crate::api::{Reloaded, WeightSet};

/// How many commands may wait for the owner before senders wait too.
const QUEUE: usize = 64;

enum Command {
    SetWeight {
        service: String,
        percent: f64,
        reply: oneshot::Sender<Result<WeightSet, DaemonError>>,
    },
    Reload {
        reply: oneshot::Sender<Result<Reloaded, DaemonError>>,
    },
}

/// Sends commands to the owner; cheap to clone. The owner stops when every
/// handle is dropped.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    pub async fn set_weight(
        &self,
        service: String,
        percent: f64,
    ) -> Result<WeightSet, DaemonError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetWeight {
            service,
            percent,
            reply,
        })
        .await?;
        answer.await.map_err(|_| DaemonError::OwnerGone)?
    }

    pub async fn reload(&self) -> Result<Reloaded, DaemonError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Reload { reply }).await?;
        answer.await.map_err(|_| DaemonError::OwnerGone)?
    }

    async fn send(&self, command: Command) -> Result<(), DaemonError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DaemonError::OwnerGone)
    }
}

/// The running owner, as `spawn` hands it over.
pub struct Owner {
    /// Commands it; the owner stops once every clone is dropped.
    pub handle: Handle,
    /// Reads status without it.
    pub observer: Observer,
    /// Completes (with an error) when the owner's thread ends, for whatever
    /// reason: a daemon whose owner died must not go on looking healthy.
    pub stopped: oneshot::Receiver<()>,
    pub thread: thread::JoinHandle<()>,
}

/// Moves `daemon` onto its own thread.
pub fn spawn(daemon: Daemon) -> std::io::Result<Owner> {
    let (commands, inbox) = mpsc::channel(QUEUE);
    let (publish, snapshot) = watch::channel(Arc::new(daemon.snapshot()));
    let observer = Observer {
        counters: daemon.counters(),
        snapshot,
    };
    // Dropped when the thread ends, on return or on a panic's unwinding.
    let (alive, stopped) = oneshot::channel::<()>();
    let thread = thread::Builder::new()
        .name("canaryd-owner".into())
        .spawn(move || {
            let _alive = alive;
            serve(daemon, inbox, publish)
        })?;
    Ok(Owner {
        handle: Handle { commands },
        observer,
        stopped,
        thread,
    })
}

fn serve(
    mut daemon: Daemon,
    mut inbox: mpsc::Receiver<Command>,
    publish: watch::Sender<Arc<Snapshot>>,
) {
    while let Some(command) = inbox.blocking_recv() {
        match command {
            Command::SetWeight {
                service,
                percent,
                reply,
            } => {
                // Nobody waits for it any more (the client went, or canaryd
                // is stopping): applying it would change what no one asked
                // to see changed.
                if reply.is_closed() {
                    log::warn!("set-weight {service} {percent}: dropped, nobody waits for it");
                    continue;
                }
                let result = daemon.set_weight(&service, percent);
                publish.send_replace(Arc::new(daemon.snapshot()));
                let _ = reply.send(result);
            }
            Command::Reload { reply } => {
                if reply.is_closed() {
                    log::warn!("reload: dropped, nobody waits for it");
                    continue;
                }
                let result = daemon.reload();
                publish.send_replace(Arc::new(daemon.snapshot()));
                let _ = reply.send(result);
            }
        }
    }
}
