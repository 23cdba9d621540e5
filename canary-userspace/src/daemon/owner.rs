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

/// Moves `daemon` onto its own thread; returns the handle that commands it,
/// the observer that reads status without it, and the thread to join.
pub fn spawn(daemon: Daemon) -> std::io::Result<(Handle, Observer, thread::JoinHandle<()>)> {
    let (commands, inbox) = mpsc::channel(QUEUE);
    let (publish, snapshot) = watch::channel(Arc::new(daemon.snapshot()));
    let observer = Observer {
        counters: daemon.counters(),
        snapshot,
    };
    let thread = thread::Builder::new()
        .name("canaryd-owner".into())
        .spawn(move || serve(daemon, inbox, publish))?;
    Ok((Handle { commands }, observer, thread))
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
                let result = daemon.set_weight(&service, percent);
                publish.send_replace(Arc::new(daemon.snapshot()));
                let _ = reply.send(result);
            }
            Command::Reload { reply } => {
                let result = daemon.reload();
                publish.send_replace(Arc::new(daemon.snapshot()));
                let _ = reply.send(result);
            }
        }
    }
}
