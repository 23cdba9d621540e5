//! The accept loops of the control socket and the metrics listener. Each
//! holds at most its share of descriptors (`fds::budget`), so a flood of
//! idle connections can never take the ones a set-weight needs; an accept
//! error never spins the loop (it backs off, 10 ms doubling to 500 ms); and
//! on EMFILE the metrics connection that could not get a descriptor is
//! accepted with a spare one and closed, so it does not sit in the backlog
//! waking the loop again. Control connections wait in the backlog instead.

use std::{
    fs::File,
    future::Future,
    io,
    sync::{Arc, Mutex},
    time::Instant,
};

use canary_userspace::api::metrics::ListenerMetrics;
use prometheus::IntGauge;
use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Duration, sleep, timeout},
};

/// First pause after a failed accept; doubles while they keep failing.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Repeated warnings (rejections, accept errors) at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A listener's accept, whatever its socket type.
pub trait Listen {
    type Stream: Send + 'static;
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Stream>>;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    async fn accept_one(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    async fn accept_one(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// What a listener does with a connection beyond its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Close it at once (metrics: a scraper retries on its next interval).
    Close,
    /// Leave it in the listen backlog until a slot frees (control: every
    /// request is answered in turn; each slot is held at most 5 s idle).
    Wait,
}

/// One descriptor held open (on /dev/null) to be given back for a single
/// accept when the process is out of them: the classic accept-and-close.
pub struct Spare(Mutex<Option<File>>);

impl Spare {
    pub fn open() -> Spare {
        let file = File::open("/dev/null")
            .inspect_err(|e| {
                log::warn!("opening a spare descriptor (/dev/null): {e}; on EMFILE the listeners only back off")
            })
            .ok();
        Spare(Mutex::new(file))
    }

    /// Closes the spare; true when there was one.
    fn release(&self) -> bool {
        self.0
            .lock()
            .map(|mut f| f.take().is_some())
            .unwrap_or(false)
    }

    /// Opens it again, if a descriptor is free for it.
    fn reopen(&self) {
        if let Ok(mut f) = self.0.lock()
            && f.is_none()
        {
            *f = File::open("/dev/null").ok();
        }
    }
}

/// A listener's limit and bookkeeping.
pub struct Gate {
    /// "metrics" or "control": the `listener` label and log prefix.
    pub name: &'static str,
    pub limit: usize,
    pub when_full: WhenFull,
    pub metrics: ListenerMetrics,
    pub spare: Arc<Spare>,
}

/// A connection's slot: freed, and the open gauge lowered, on drop.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A warning that repeats at most every `WARN_EVERY`, saying how many times
/// it happened in between.
struct Quiet {
    last: Option<Instant>,
    since: u64,
}

impl Quiet {
    fn new() -> Quiet {
        Quiet {
            last: None,
            since: 0,
        }
    }

    fn warn(&mut self, what: impl FnOnce(u64) -> String) {
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            log::warn!("{}", what(self.since));
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// Accepts connections for ever, handing each to `handle` on a task of its
/// own while it holds one of `gate.limit` slots.
pub async fn serve<L, F, Fut>(listener: L, gate: Gate, handle: F)
where
    L: Listen,
    F: Fn(L::Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = gate.name;
    let permits = Arc::new(Semaphore::new(gate.limit));
    gate.metrics
        .limit
        .with_label_values(&[name])
        .set(gate.limit as i64);
    let open = gate.metrics.open.with_label_values(&[name]);
    let rejected = gate.metrics.rejected.with_label_values(&[name]);
    let accept_errors = gate.metrics.accept_errors.with_label_values(&[name]);
    let (mut full_warning, mut error_warning) = (Quiet::new(), Quiet::new());
    let mut backoff = BACKOFF_FIRST;
    loop {
        let waited = match gate.when_full {
            WhenFull::Wait => match permits.clone().acquire_owned().await {
                Ok(p) => Some(p),
                // The semaphore is never closed.
                Err(_) => return,
            },
            WhenFull::Close => None,
        };
        match listener.accept_one().await {
            Ok(stream) => {
                backoff = BACKOFF_FIRST;
                let permit = match waited.map_or_else(|| permits.clone().try_acquire_owned(), Ok) {
                    Ok(p) => p,
                    Err(_) => {
                        rejected.inc();
                        drop(stream);
                        full_warning.warn(|n| {
                            format!(
                                "{name}: {n} connection(s) closed at once: {} are open, the limit",
                                gate.limit
                            )
                        });
                        continue;
                    }
                };
                open.inc();
                let slot = Slot {
                    _permit: permit,
                    open: open.clone(),
                };
                let answered = handle(stream);
                tokio::spawn(async move {
                    answered.await;
                    drop(slot);
                });
            }
            Err(e) => {
                accept_errors.inc();
                let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                // Only where extra connections are closed anyway: a control
                // client (a rollback, say) is better left waiting in the
                // backlog for the next try than reset.
                if exhausted && gate.when_full == WhenFull::Close && gate.spare.release() {
                    // The spare's descriptor takes the waiting connection
                    // out of the backlog; closing it frees it again.
                    if let Ok(Ok(s)) = timeout(BACKOFF_FIRST, listener.accept_one()).await {
                        rejected.inc();
                        drop(s);
                    }
                    gate.spare.reopen();
                }
                error_warning.warn(|n| {
                    format!("{name}: accept failed ({n} time(s) since the last warning): {e}; pausing {backoff:?}")
                });
                sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
