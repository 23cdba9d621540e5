//! Real peers for end-to-end tests: backends that name their version in
//! every answer (a line protocol, HTTP/1.1 keep-alive, a UDP echo), one that
//! resets each connection, and clients that can pick their source address.
//! Everything is bounded: servers stop on drop, reads and writes time out.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result};
use rand::{SeedableRng, rngs::SmallRng};
use rand_distr::{Distribution, StandardNormal};
use xtask::topology::Netns;

/// How long any single read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle server thread checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What a backend does with what reaches it.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// TCP: `label\n` for every request line.
    Line,
    /// TCP: HTTP/1.1 with keep-alive (see `Http`).
    Http(Arc<Http>),
    /// TCP: reads one request, then closes with SO_LINGER 0, so the kernel
    /// sends RST instead of FIN.
    ResetAfterRequest,
    /// UDP: answers every datagram with `label`.
    UdpEcho,
    /// Nothing bound on the address: the kernel refuses a connection (RST
    /// to the SYN).
    NothingListening,
}

/// An HTTP/1.1 backend's behaviour, shared with the test so that it can
/// change the delay between phases. Every answer names the version in an
/// `X-Version` header and as its body, with a `Content-Length`.
#[derive(Debug)]
pub struct Http {
    /// Every n-th request this backend serves (over all its connections)
    /// is answered 500; 0: always 200.
    error_every: u64,
    /// Time between reading a request and answering it, in microseconds:
    /// the median when `spread` is set.
    delay_us: AtomicU64,
    /// Model-server latency: each delay drawn from a lognormal with the
    /// median above and this sigma (0: every delay is the median).
    spread: f64,
    served: AtomicU64,
}

impl Http {
    /// Answers 500 to every `error_every`-th request (0: never), each
    /// answer `delay` after its request was read.
    pub fn new(error_every: u64, delay: Duration) -> Arc<Http> {
        Arc::new(Http {
            error_every,
            delay_us: AtomicU64::new(delay.as_micros() as u64),
            spread: 0.0,
            served: AtomicU64::new(0),
        })
    }

    /// Always 200, each answer after a delay drawn from a lognormal with
    /// `median` and `sigma` (p99 = median × e^(2.326 sigma)): how a model
    /// server's latency is shaped.
    pub fn lognormal(median: Duration, sigma: f64) -> Arc<Http> {
        Arc::new(Http {
            error_every: 0,
            delay_us: AtomicU64::new(median.as_micros() as u64),
            spread: sigma,
            served: AtomicU64::new(0),
        })
    }

    /// The next answer's delay.
    fn delay(&self, rng: &mut SmallRng) -> Duration {
        let median_us = self.delay_us.load(Ordering::Relaxed) as f64;
        if self.spread <= 0.0 {
            return Duration::from_micros(median_us as u64);
        }
        let z: f64 = StandardNormal.sample(rng);
        Duration::from_micros((median_us * (self.spread * z).exp()) as u64)
    }

    /// Applies from the next request on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests read so far (each is answered, unless the client is gone).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The status of the next request.
    fn next_status(&self) -> u16 {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.error_every != 0 && n.is_multiple_of(self.error_every) {
            500
        } else {
            200
        }
    }
}

/// What a TCP backend does with each connection.
#[derive(Clone)]
enum Conn {
    Line,
    Http(Arc<Http>),
    Reset,
}

/// A backend (see `Behaviour`) on one address, stopped on drop.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// TCP connections accepted, or UDP datagrams received.
    accepted: Arc<AtomicU64>,
    /// Connections whose serving thread has started.
    serving: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A line backend (`Behaviour::Line`) listening on `addr` inside `ns`.
    pub fn spawn(ns: &Netns, addr: SocketAddr, label: &'static str) -> Result<Backend> {
        Backend::spawn_with(ns, addr, label, Behaviour::Line)
    }

    /// A backend on `addr` inside `ns` that behaves as `behaviour` says.
    pub fn spawn_with(
        ns: &Netns,
        addr: SocketAddr,
        label: &'static str,
        behaviour: Behaviour,
    ) -> Result<Backend> {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let serving = Arc::new(AtomicU64::new(0));
        let (s, a, v) = (stop.clone(), accepted.clone(), serving.clone());
        let bound =
            |what: &str| format!("binding {what} backend {label} on {addr} in {}", ns.name());
        let conn = match behaviour {
            Behaviour::Line => Conn::Line,
            Behaviour::Http(http) => Conn::Http(http),
            Behaviour::ResetAfterRequest => Conn::Reset,
            Behaviour::NothingListening => {
                return Ok(Backend {
                    addr,
                    stop,
                    accepted,
                    serving,
                    thread: None,
                });
            }
            Behaviour::UdpEcho => {
                let socket = ns
                    .enter(|| UdpSocket::bind(addr))?
                    .with_context(|| bound("UDP"))?;
                socket.set_read_timeout(Some(STOP_POLL))?;
                let thread = thread::spawn(move || udp_echo(socket, label, s, a));
                return Ok(Backend {
                    addr,
                    stop,
                    accepted,
                    serving,
                    thread: Some(thread),
                });
            }
        };
        let listener = ns
            .enter(|| TcpListener::bind(addr))?
            .with_context(|| bound("TCP"))?;
        let thread = thread::spawn(move || accept_loop(listener, label, conn, s, a, v));
        Ok(Backend {
            addr,
            stop,
            accepted,
            serving,
            thread: Some(thread),
        })
    }

    /// Connections accepted (UDP: datagrams received) so far.
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
    conn_behaviour: Conn,
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
            let behaviour = conn_behaviour.clone();
            let spawned = thread::Builder::new().spawn(move || {
                serving.fetch_add(1, Ordering::Relaxed);
                match behaviour {
                    Conn::Line => serve(conn, label, stop),
                    Conn::Http(http) => serve_http(conn, label, &http, stop),
                    Conn::Reset => reset_after_request(conn, stop),
                }
            });
            if let Err(e) = spawned {
                eprintln!("backend {label}: cannot start a thread for a connection: {e}");
            }
        }
    }
}

/// An accepted connection made ready to serve: a read timeout, so the loop
/// sees the stop flag, and no Nagle delay; its reader and a writer.
fn serving(conn: TcpStream) -> Option<(BufReader<TcpStream>, TcpStream)> {
    let _ = conn.set_read_timeout(Some(STOP_POLL));
    let _ = conn.set_nodelay(true);
    let writer = conn.try_clone().ok()?;
    Some((BufReader::new(conn), writer))
}

/// What one `read_line` on a server connection gave.
enum LineRead {
    /// Bytes were appended to the line (maybe not a whole line yet).
    Some,
    /// The read timeout passed: only a chance to look at the stop flag.
    Idle,
    /// The peer closed, or the read failed.
    Closed,
}

fn read_some(reader: &mut BufReader<TcpStream>, line: &mut String) -> LineRead {
    match reader.read_line(line) {
        Ok(0) => LineRead::Closed,
        Ok(_) => LineRead::Some,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            LineRead::Idle
        }
        Err(_) => LineRead::Closed,
    }
}

/// Answers each request line until the client closes or the server stops.
/// An idle connection stays open (the read timeout only lets the thread look
/// at the stop flag).
fn serve(conn: TcpStream, label: &'static str, stop: Arc<AtomicBool>) {
    let Some((mut reader, mut writer)) = serving(conn) else {
        return;
    };
    let mut line = String::new();
    let reply = format!("{label}\n");
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match read_some(&mut reader, &mut line) {
            LineRead::Closed => return,
            LineRead::Idle => continue,
            LineRead::Some => {
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Answers HTTP/1.1 requests on one connection until the client closes or
/// the server stops, each after the configured delay, one write per answer.
fn serve_http(conn: TcpStream, label: &'static str, http: &Http, stop: Arc<AtomicBool>) {
    let Some((mut reader, mut writer)) = serving(conn) else {
        return;
    };
    let mut rng = SmallRng::seed_from_u64(http.served());
    while let Some(body_len) = read_head(&mut reader, &stop) {
        let mut body = vec![0; body_len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = http.next_status();
        thread::sleep(http.delay(&mut rng));
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nX-Version: {label}\r\n\r\n{label}",
            label.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads one request head (request line and headers); returns its
/// `Content-Length` (0 without one), or `None` once the peer closed, the
/// server stops or the read fails. A read timeout only lets the thread look
/// at the stop flag: a partly read line is kept.
fn read_head(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<usize> {
    let mut line = String::new();
    let mut content_length = 0;
    let mut first = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match read_some(reader, &mut line) {
            LineRead::Closed => return None,
            LineRead::Some if line.ends_with('\n') => {}
            // A partly read line is kept for the next read.
            LineRead::Idle | LineRead::Some => continue,
        }
        let header = line.trim_end();
        if header.is_empty() && !first {
            return Some(content_length);
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().ok()?;
        }
        first = false;
        line.clear();
    }
}

/// Reads one request head, then closes with SO_LINGER 0: RST, not FIN.
fn reset_after_request(conn: TcpStream, stop: Arc<AtomicBool>) {
    let _ = conn.set_read_timeout(Some(STOP_POLL));
    let mut reader = BufReader::new(conn);
    if read_head(&mut reader, &stop).is_none() {
        return;
    }
    let conn = reader.into_inner();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor `conn` owns, with a pointer to a
    // linger struct and its size.
    let set = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if set != 0 {
        eprintln!("reset backend: SO_LINGER: {}", io::Error::last_os_error());
    }
    drop(conn);
}

/// Answers every datagram with `label` until the server stops.
fn udp_echo(
    socket: UdpSocket,
    label: &'static str,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((_, peer)) => {
                received.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = socket.send_to(label.as_bytes(), peer) {
                    eprintln!("UDP backend {label}: answering {peer}: {e}");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                eprintln!("UDP backend {label}: {e}");
                return;
            }
        }
    }
}

/// One HTTP answer as the client read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// The `X-Version` header.
    pub version: String,
    pub body: String,
}

/// An HTTP/1.1 keep-alive client: one request at a time, each answer read
/// whole (by its `Content-Length`) before the next request.
pub struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpClient {
    /// Connects from inside `ns` to `to`. A refused connection is an error
    /// whose chain holds the `io::Error` (`ConnectionRefused`).
    pub fn connect(ns: &Netns, to: SocketAddr) -> Result<HttpClient> {
        HttpClient::connect_from(ns, None, to)
    }

    /// `connect`, from `source` if given.
    pub fn connect_from(ns: &Netns, source: Option<IpAddr>, to: SocketAddr) -> Result<HttpClient> {
        let (reader, writer) = connected(ns, source, to)?;
        Ok(HttpClient { reader, writer })
    }

    /// Sends `GET /` and reads the whole answer. A reset is an error whose
    /// chain holds the `io::Error` (`ConnectionReset`).
    pub fn get(&mut self) -> Result<HttpAnswer> {
        self.get_path("/")
    }

    /// `connect_from`, from the calling thread's namespace (a thread moved
    /// into a test namespace with `topology::enter_for_good`).
    pub fn connect_here(source: Option<IpAddr>, to: SocketAddr) -> Result<HttpClient> {
        let stream =
            connect_from(source, to).with_context(|| format!("connecting {source:?} -> {to}"))?;
        let (reader, writer) = split(stream)?;
        Ok(HttpClient { reader, writer })
    }

    /// `get` for `path` (which must be a valid request target).
    pub fn get_path(&mut self, path: &str) -> Result<HttpAnswer> {
        self.writer
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: model\r\n\r\n").as_bytes())
            .context("sending request")?;
        let mut status_line = String::new();
        let n = self
            .reader
            .read_line(&mut status_line)
            .context("reading status line")?;
        anyhow::ensure!(n > 0, "connection closed before an answer");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
        let (mut length, mut version) = (None, None);
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .context("reading headers")?;
            anyhow::ensure!(n > 0, "connection closed inside the headers");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                } else if name.eq_ignore_ascii_case("x-version") {
                    version = Some(value.trim().to_owned());
                }
            }
        }
        let mut body = vec![0; length.context("no Content-Length")?];
        self.reader.read_exact(&mut body).context("reading body")?;
        Ok(HttpAnswer {
            status,
            version: version.context("no X-Version header")?,
            body: String::from_utf8(body)?,
        })
    }
}

/// A UDP client socket connected to one address: it takes datagrams from
/// that address only.
pub struct UdpClient {
    socket: UdpSocket,
}

impl UdpClient {
    /// Binds an ephemeral port in `ns` and connects it to `to`.
    pub fn connect(ns: &Netns, to: SocketAddr) -> Result<UdpClient> {
        let any: IpAddr = if to.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = ns
            .enter(|| UdpSocket::bind((any, 0)))?
            .with_context(|| format!("binding a UDP client in {}", ns.name()))?;
        socket.connect(to)?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(UdpClient { socket })
    }

    /// Sends one datagram and returns the answer.
    pub fn request(&self) -> Result<String> {
        self.socket.send(b"req").context("sending datagram")?;
        let mut buf = [0u8; 1500];
        let n = self.socket.recv(&mut buf).context("reading answer")?;
        Ok(String::from_utf8(buf[..n].to_vec())?)
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
        let (reader, writer) = connected(ns, source, to)?;
        Ok(Client { reader, writer })
    }

    /// The connection's own address (the client side of its tuple).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.writer.local_addr()?)
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

/// A TCP connection from inside `ns` (from `source` if given) to `to`, with
/// the test timeouts and no Nagle delay, split into its reading and writing
/// halves.
fn connected(
    ns: &Netns,
    source: Option<IpAddr>,
    to: SocketAddr,
) -> Result<(BufReader<TcpStream>, TcpStream)> {
    let stream = ns
        .enter(|| connect_from(source, to))?
        .with_context(|| format!("connecting {source:?} -> {to} in {}", ns.name()))?;
    split(stream)
}

/// A connected stream with the test timeouts and no Nagle delay, split into
/// its reading and writing halves.
fn split(stream: TcpStream) -> Result<(BufReader<TcpStream>, TcpStream)> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok((BufReader::new(stream.try_clone()?), stream))
}

/// TCP connect with an optional bind to a source address first (std has no
/// bind-before-connect, which per-client affinity tests need), bounded by
/// `IO_TIMEOUT` either way: a SYN nobody answers (no route back to the
/// source) otherwise waits out the kernel's retries, over two minutes.
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
        // SO_SNDTIMEO bounds a blocking connect(2) too (socket(7)).
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let (src, src_len) = sockaddr(SocketAddr::new(source, 0));
        if libc::bind(fd, &src as *const _ as *const libc::sockaddr, src_len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (dst, dst_len) = sockaddr(to);
        if libc::connect(fd, &dst as *const _ as *const libc::sockaddr, dst_len) != 0 {
            let e = io::Error::last_os_error();
            // What a connect past SO_SNDTIMEO reports: say it as it is.
            if e.raw_os_error() == Some(libc::EINPROGRESS) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer to the SYN within {IO_TIMEOUT:?}"),
                ));
            }
            return Err(e);
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
