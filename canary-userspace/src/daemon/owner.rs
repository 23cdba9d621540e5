//! The one owner of the daemon's state: a thread of its own that takes
//! commands over a channel and answers each on a oneshot. Everything that
//! changes state or blocks (map writes, the state file's fsync, attaching)
//! happens there, never on the async runtime's thread; after every change
//! it publishes a snapshot for `observe`.
//!
//! A command waits behind the ones before it, so concurrent set-weight and
//! reload calls form one serial chain, as a map write order must.

use std::{
    sync::{Arc, Mutex},
    thread,
};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Daemon, DaemonError,
    observe::{Observer, Snapshot},
};
use crate::{
    api::{Reloaded, WeightSet},
    model::weight::Weight,
};

/// How many commands may wait for the owner before senders wait too.
const QUEUE: usize = 64;

/// What delivers a command's answer, once the snapshot says what it did.
type Deliver = Box<dyn FnOnce() + Send>;

/// One command: what the owner runs on the daemon state (returning how to
/// deliver its answer), whether anyone still waits for it, and its name
/// for the log.
struct Command {
    what: String,
    waited_for: Box<dyn Fn() -> bool + Send>,
    run: Box<dyn FnOnce(&mut Daemon) -> Deliver + Send>,
}

/// Sends commands to the owner; cheap to clone. The owner stops when every
/// handle is dropped.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Runs `f` on the daemon state in the owner's thread, in line with
    /// every other command, and waits for its answer.
    pub async fn call<T: Send + 'static>(
        &self,
        what: impl Into<String>,
        f: impl FnOnce(&mut Daemon) -> Result<T, DaemonError> + Send + 'static,
    ) -> Result<T, DaemonError> {
        let (reply, answer) = oneshot::channel();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let waiting = reply.clone();
        let command = Command {
            what: what.into(),
            waited_for: Box::new(move || {
                waiting
                    .lock()
                    .map(|r| r.as_ref().is_some_and(|r| !r.is_closed()))
                    .unwrap_or(false)
            }),
            run: Box::new(move |daemon| {
                let result = f(daemon);
                Box::new(move || {
                    if let Some(reply) = reply.lock().ok().and_then(|mut r| r.take()) {
                        let _ = reply.send(result);
                    }
                })
            }),
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| DaemonError::OwnerGone)?;
        answer.await.map_err(|_| DaemonError::OwnerGone)?
    }

    pub async fn set_weight(
        &self,
        service: String,
        weight: Weight,
    ) -> Result<WeightSet, DaemonError> {
        self.call(
            format!("set-weight {service} {}", weight.percent()),
            move |d| d.set_weight(&service, weight),
        )
        .await
    }

    pub async fn reload(&self) -> Result<Reloaded, DaemonError> {
        self.call("reload", |d| d.reload()).await
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
        // Nobody waits for it any more (the client went, or canaryd is
        // stopping): applying it would change what no one asked to see
        // changed.
        if !(command.waited_for)() {
            log::warn!("{}: dropped, nobody waits for it", command.what);
            continue;
        }
        let deliver = (command.run)(&mut daemon);
        // The snapshot first: whoever gets the answer and then asks for
        // status must see what the command did.
        publish.send_replace(Arc::new(daemon.snapshot()));
        deliver();
    }
}
