//! An HTTP/1.1 server (tiny_http) listening inside a test namespace, with a
//! fixed pool of worker threads running one handler; stopped on drop.
//!
//! tiny_http's `Server` wakes its accept thread on drop by connecting to its
//! own listening address from the dropping thread. Dropped from the root
//! namespace, that connection would go to the test address through the
//! root namespace's routes, off this machine's test namespaces; so the drop
//! here happens inside the server's namespace.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use xtask::topology::Netns;

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

pub struct NsHttpServer<'a> {
    pub addr: SocketAddr,
    server: Option<Arc<tiny_http::Server>>,
    ns: &'a Netns,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<'a> NsHttpServer<'a> {
    /// Listens on `addr` inside `ns`; `workers` threads take requests and
    /// call `handle` on each (a handler that sleeps holds its worker).
    pub fn start<F>(ns: &'a Netns, addr: SocketAddr, workers: usize, handle: F) -> Result<Self>
    where
        F: Fn(tiny_http::Request) + Send + Sync + 'static,
    {
        let listener = ns
            .enter(|| TcpListener::bind(addr))?
            .with_context(|| format!("binding an HTTP server on {addr} in {}", ns.name()))?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None)
                .map_err(|e| anyhow!("HTTP server on {addr}: {e}"))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let workers = (0..workers.max(1))
            .map(|_| {
                let (server, stop, handle) = (server.clone(), stop.clone(), handle.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(STOP_POLL) {
                            Ok(Some(request)) => handle(request),
                            Ok(None) => {}
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        Ok(NsHttpServer {
            addr,
            server: Some(server),
            ns,
            stop,
            workers,
        })
    }
}

impl Drop for NsHttpServer<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // The workers' clones are gone: this is the last reference, and its
        // drop (the self-connect, see the module docs) runs in the namespace.
        let mut last = self.server.take();
        let _ = self.ns.enter(|| drop(last.take()));
        if let Some(server) = last {
            // Could not enter the namespace: leak the server (the process's
            // exit closes it) rather than let it connect from here.
            std::mem::forget(server);
        }
    }
}

/// A header for a response; the name and value are ASCII constants or
/// numbers, so building it cannot fail.
pub fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("ASCII header name and value")
}
