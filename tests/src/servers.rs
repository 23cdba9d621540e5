//! Real TCP peers for end-to-end tests: a line-based backend that answers
//! every request with its version label, and clients that can pick their
//! source address. Everything is bounded: servers stop on drop, reads and
//! writes time out.

use std::{
    io::{self, BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result};
use xtask::topology::Netns;

/// How long any single read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle server thread checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A backend answering `label\n` to every request line.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    /// Connections whose serving thread has started.
    serving: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Listens on `addr` inside `ns`.
    pub fn spawn(ns: &Netns, addr: SocketAddr, label: &'static str) -> Result<Backend> {
        let listener = ns
            .enter(|| TcpListener::bind(addr))?
            .with_context(|| format!("binding backend {label} on {addr} in {}", ns.name()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let serving = Arc::new(AtomicU64::new(0));
        let (s, a, v) = (stop.clone(), accepted.clone(), serving.clone());
        let thread = thread::spawn(move || accept_loop(listener, label, s, a, v));
        Ok(Backend {
            addr,
            stop,
            accepted,
            serving,
            thread: Some(thread),
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections whose serving thread has started (diagnostics).
    pub fn serving(&self) -> u64 {
        self.serving.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    label: &'static str,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    serving: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        // poll(2) wakes at once for a new connection, and at least every
        // STOP_POLL to look at the stop flag.
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, STOP_POLL.as_millis() as i32) } <= 0 {
            continue;
        }
        if let Ok((conn, _)) = listener.accept() {
            accepted.fetch_add(1, Ordering::Relaxed);
            let (stop, serving) = (stop.clone(), serving.clone());
            let spawned = thread::Builder::new().spawn(move || {
                serving.fetch_add(1, Ordering::Relaxed);
                serve(conn, label, stop)
            });
            if let Err(e) = spawned {
                eprintln!("backend {label}: cannot start a thread for a connection: {e}");
            }
        }
    }
}

/// Answers each request line until the client closes or the server stops.
/// An idle connection stays open (the read timeout only lets the thread look
/// at the stop flag).
fn serve(conn: TcpStream, label: &'static str, stop: Arc<AtomicBool>) {
    let _ = conn.set_read_timeout(Some(STOP_POLL));
    let _ = conn.set_nodelay(true);
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    let reply = format!("{label}\n");
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
            Ok(_) => {
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// A client connection that sends request lines and reads the answer.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects from inside `ns`, from `source` if given, to `to`.
    pub fn connect(ns: &Netns, source: Option<IpAddr>, to: SocketAddr) -> Result<Client> {
        let stream = ns
            .enter(|| connect_from(source, to))?
            .with_context(|| format!("connecting {source:?} -> {to} in {}", ns.name()))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and returns the backend's label.
    pub fn request(&mut self) -> Result<String> {
        self.writer.write_all(b"req\n").context("sending request")?;
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).context("reading reply")?;
        anyhow::ensure!(n > 0, "connection closed before a reply");
        Ok(line.trim_end().to_owned())
    }
}

/// TCP connect with an optional bind to a source address first (std has no
/// bind-before-connect, which per-client affinity tests need).
fn connect_from(source: Option<IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect_timeout(&to, IO_TIMEOUT);
    };
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own; it is handed to
    // TcpStream (which closes it) right after creation.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let (src, src_len) = sockaddr(SocketAddr::new(source, 0));
        if libc::bind(fd, &src as *const _ as *const libc::sockaddr, src_len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (dst, dst_len) = sockaddr(to);
        if libc::connect(fd, &dst as *const _ as *const libc::sockaddr, dst_len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn sockaddr(sa: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
