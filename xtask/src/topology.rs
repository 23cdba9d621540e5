//! Network namespaces and veth pairs for end-to-end tests, the demo and
//! benchmarks.
//!
//! Everything is created inside namespaces made here, with addresses from the
//! benchmarking ranges 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 (RFC 3849).
//! Nothing ever touches the root namespace's interfaces, routes or sysctls:
//! veth pairs are created directly inside their namespaces, and sysctls are
//! written from a thread that has entered the namespace.
//!
//! Standard layout (`Topology`):
//!
//! ```text
//!  client ns                host ns (XDP/TC attach here)           b1 / b2 ns
//!  eth0 198.18.0.2/24  ───  eth0 198.18.0.1/24
//!       2001:db8::2/64          2001:db8::1/64
//!                           b1   198.18.1.1/24    ───  eth0 198.18.1.2/24
//!                                2001:db8:1::1/64           2001:db8:1::2/64
//!                           b2   198.18.2.1/24    ───  eth0 198.18.2.2/24
//!                                2001:db8:2::1/64           2001:db8:2::2/64
//! ```

use std::{
    fmt::Write as _,
    fs::File,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, bail, ensure};

/// Where `ip netns add` bind-mounts a named namespace.
const NETNS_RUN_DIR: &str = "/var/run/netns";
/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Client side of the client <-> host link.
pub const CLIENT_IF: &str = "eth0";
/// Host side of the client <-> host link: attach the XDP/TC programs here.
pub const HOST_IF: &str = "eth0";
/// Host side of the links to backend namespaces b1 and b2.
pub const HOST_BACKEND_IF: [&str; 2] = ["b1", "b2"];
/// Backend side of each host <-> backend link.
pub const BACKEND_IF: &str = "eth0";

/// Prefix length of every link subnet.
pub const V4_PREFIX_LEN: u8 = 24;
pub const V6_PREFIX_LEN: u8 = 64;

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Host addresses on `b1`, `b2` (the backends' gateways).
pub const HOST_BACKEND_V4: [Ipv4Addr; 2] =
    [Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1)];
pub const HOST_BACKEND_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1),
];
/// Backend namespace addresses (`eth0` in b1, b2).
pub const BACKEND_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 2, 2)];
pub const BACKEND_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2),
];

/// Extra client addresses (`Topology::add_client_addresses`) come from these
/// networks; the host routes them back via `CLIENT_V4` / `CLIENT_V6`.
pub const EXTRA_CLIENT_V4_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 0);
pub const EXTRA_CLIENT_V4_PREFIX_LEN: u8 = 24;
pub const EXTRA_CLIENT_V6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 0);
pub const EXTRA_CLIENT_V6_PREFIX_LEN: u8 = 64;
/// Host numbers 1..=250 stay inside one /24.
pub const MAX_EXTRA_CLIENTS: u32 = 250;

/// Makes namespace names unique within this process; the pid makes them
/// unique across processes.
static NETNS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `cnry-<pid>-<counter>-<role>` and brings its `lo` up.
    pub fn new(role: &str) -> Result<Netns> {
        ensure!(
            !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "namespace role {role:?} must be non-empty ASCII letters, digits or '-'"
        );
        let n = NETNS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cnry-{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]), None)?;
        // From here on the guard exists, so a failure below still deletes it.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that keeps the namespace alive: open it for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `ip netns exec <name> <cmd...>` and returns its stdout. The error
    /// names the command, its exit status and its stderr.
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        ensure!(!cmd.is_empty(), "Netns::exec needs a command");
        run(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(cmd),
            None,
        )
    }

    /// Runs `ip -netns <name> <args...>` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(
            Command::new("ip").args(["-netns", &self.name]).args(args),
            None,
        )
    }

    /// Feeds `commands` (one `ip` command per line, without the leading `ip`)
    /// to a single `ip -netns <name> -batch -`: hundreds of addresses in one
    /// process instead of hundreds of processes.
    pub fn ip_batch(&self, commands: &str) -> Result<()> {
        run(
            Command::new("ip").args(["-netns", &self.name, "-batch", "-"]),
            Some(commands),
        )
        .map(drop)
    }

    /// Sets a sysctl of this namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    /// Written from this thread after entering the namespace: /proc/sys/net
    /// resolves against the calling thread's network namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        ensure!(
            key.starts_with("net.") && !key.contains(".."),
            "only net.* sysctls are per namespace, got {key:?}"
        );
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.enter(|| std::fs::write(&path, value))?
            .with_context(|| format!("setting {key}={value} in namespace {}", self.name))
    }

    /// Runs `f` on the current thread inside this namespace, then moves the
    /// thread back to the namespace it was in, even if `f` panics. Sockets
    /// created by `f` stay in this namespace after it returns: that is how
    /// tests put listeners and clients into namespaces from Rust threads.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let original = File::open("/proc/thread-self/ns/net")
            .context("opening this thread's network namespace (/proc/thread-self/ns/net)")?;
        let target = File::open(self.path())
            .with_context(|| format!("opening namespace {}", self.path().display()))?;
        // SAFETY: plain syscall on a descriptor that `target` keeps open.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns into namespace {}", self.name));
        }
        let _restore = RestoreNetns(original);
        Ok(f())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: a failed delete must not turn into a panic in drop. The
        // kernel frees the namespace (and its veths) once the last socket or
        // process in it is gone.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the namespace at `ns_path` (a `Netns`'s
/// `path()`) for the rest of its life: for a thread spawned only to work
/// there, which cannot borrow the `Netns`. Its sockets live there too.
pub fn enter_for_good(ns_path: &Path) -> Result<()> {
    let target =
        File::open(ns_path).with_context(|| format!("opening namespace {}", ns_path.display()))?;
    // SAFETY: plain syscall on a descriptor that `target` keeps open.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setns into namespace {}", ns_path.display()));
    }
    Ok(())
}

/// Moves the thread back to its original namespace when dropped.
struct RestoreNetns(File);

impl Drop for RestoreNetns {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a descriptor that `self.0` keeps open.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // A thread left in a test namespace would quietly put every later
            // socket and sysctl write in the wrong place: stop here instead.
            eprintln!(
                "topology: cannot restore this thread's network namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

/// Creates a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up. Each end
/// is created directly in its namespace, so the names only have to be free
/// there, never in the root namespace.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    for name in [a_if, b_if] {
        ensure!(
            !name.is_empty() && name.len() <= MAX_IFNAME_LEN && !name.contains(['/', ' ']),
            "interface name {name:?} must be 1..={MAX_IFNAME_LEN} bytes without '/' or ' '"
        );
    }
    run(
        Command::new("ip").args([
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ]),
        None,
    )?;
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        // No DAD on the link-local address: until it finishes, a forwarding
        // host has no usable source for IPv6 neighbour solicitations.
        ns.sysctl(&format!("net.ipv6.conf.{ifname}.accept_dad"), "0")?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// Where the backends of a `Topology` live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Backends are processes listening in the host namespace.
    LocalProcess,
    /// Two backend namespaces b1 and b2, routed through the host.
    Namespace,
}

/// The standard test layout (see the module docs). Dropping it deletes every
/// namespace it created.
#[derive(Debug)]
pub struct Topology {
    pub kind: BackendKind,
    /// Client namespace: `CLIENT_IF` with `CLIENT_V4`, `CLIENT_V6`.
    pub client: Netns,
    /// Host namespace: `HOST_IF` with `HOST_V4`, `HOST_V6`; forwards.
    pub host: Netns,
    /// b1, b2 for `BackendKind::Namespace`, empty for `LocalProcess`.
    /// `backends[i]` has `BACKEND_IF` with `BACKEND_V4[i]`, `BACKEND_V6[i]`.
    pub backends: Vec<Netns>,
}

impl Topology {
    pub fn new(kind: BackendKind) -> Result<Topology> {
        let client = Netns::new("client")?;
        let host = Netns::new("host")?;

        // Before any interface exists: new interfaces copy the `default` values.
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            // DNAT'ed and asymmetric test traffic must not be dropped as spoofed.
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            host.sysctl(key, value)?;
        }

        client_link(&client, &host)?;

        let mut backends = Vec::new();
        if kind == BackendKind::Namespace {
            for i in 0..2 {
                let backend = Netns::new(&format!("b{}", i + 1))?;
                veth(&host, HOST_BACKEND_IF[i], &backend, BACKEND_IF)?;
                host.ip_batch(&link_config(
                    HOST_BACKEND_IF[i],
                    HOST_BACKEND_V4[i],
                    HOST_BACKEND_V6[i],
                    None,
                ))?;
                backend.ip_batch(&link_config(
                    BACKEND_IF,
                    BACKEND_V4[i],
                    BACKEND_V6[i],
                    Some((HOST_BACKEND_V4[i], HOST_BACKEND_V6[i])),
                ))?;
                backends.push(backend);
            }
        }
        Ok(Topology {
            kind,
            client,
            host,
            backends,
        })
    }

    /// Deletes the client <-> host veth pair (both ends go, with their
    /// addresses and the client's routes): what a careless host does to the
    /// interface canaryd is attached to. Extra client addresses go too.
    pub fn remove_client_link(&self) -> Result<()> {
        self.host.ip(&["link", "del", HOST_IF]).map(drop)
    }

    /// Creates the client <-> host veth pair again as `new` made it: a new
    /// device (new ifindex) under the same names, same addresses and routes.
    pub fn add_client_link(&self) -> Result<()> {
        client_link(&self.client, &self.host)
    }

    /// Adds `n` (at most `MAX_EXTRA_CLIENTS`) extra client addresses,
    /// 198.18.4.1.. (/32) and 2001:db8:4::1.. (/128), on the client's
    /// `CLIENT_IF`, and routes their networks back to the client from the
    /// host. For tests of per-client affinity. Calling it again with the same
    /// or a larger `n` is harmless. Returns (IPv4 list, IPv6 list).
    pub fn add_client_addresses(&self, n: u32) -> Result<(Vec<IpAddr>, Vec<IpAddr>)> {
        if n > MAX_EXTRA_CLIENTS {
            bail!(
                "add_client_addresses: n = {n}, at most {MAX_EXTRA_CLIENTS} fit in 198.18.4.0/24"
            );
        }
        let [a, b, c, _] = EXTRA_CLIENT_V4_NET.octets();
        let v4: Vec<IpAddr> = (1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(a, b, c, i as u8)))
            .collect();
        let s = EXTRA_CLIENT_V6_NET.segments();
        let v6: Vec<IpAddr> = (1..=n)
            .map(|i| IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, i as u16)))
            .collect();
        if n == 0 {
            return Ok((v4, v6));
        }

        let mut client = String::new();
        for addr in &v4 {
            writeln!(client, "address replace {addr}/32 dev {CLIENT_IF}")?;
        }
        for addr in &v6 {
            writeln!(client, "address replace {addr}/128 dev {CLIENT_IF} nodad")?;
        }
        self.client.ip_batch(&client)?;
        self.host.ip_batch(&format!(
            "route replace {EXTRA_CLIENT_V4_NET}/{EXTRA_CLIENT_V4_PREFIX_LEN} via {CLIENT_V4} dev {HOST_IF}\n\
             route replace {EXTRA_CLIENT_V6_NET}/{EXTRA_CLIENT_V6_PREFIX_LEN} via {CLIENT_V6} dev {HOST_IF}\n"
        ))?;
        Ok((v4, v6))
    }
}

/// The client <-> host link: `CLIENT_IF` and `HOST_IF` with their addresses,
/// the client's default routes via the host.
fn client_link(client: &Netns, host: &Netns) -> Result<()> {
    veth(client, CLIENT_IF, host, HOST_IF)?;
    client.ip_batch(&link_config(
        CLIENT_IF,
        CLIENT_V4,
        CLIENT_V6,
        Some((HOST_V4, HOST_V6)),
    ))?;
    host.ip_batch(&link_config(HOST_IF, HOST_V4, HOST_V6, None))
}

/// `ip -batch` lines giving `ifname` its two addresses and, for an end host,
/// default routes via `gateways`.
fn link_config(
    ifname: &str,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    gateways: Option<(Ipv4Addr, Ipv6Addr)>,
) -> String {
    let mut lines = format!(
        "address add {v4}/{V4_PREFIX_LEN} dev {ifname}\n\
         address add {v6}/{V6_PREFIX_LEN} dev {ifname} nodad\n"
    );
    if let Some((gw4, gw6)) = gateways {
        lines += &format!(
            "route add 0.0.0.0/0 via {gw4} dev {ifname}\n\
             route add ::/0 via {gw6} dev {ifname}\n"
        );
    }
    lines
}

/// Runs `cmd` quietly (these run by the hundred in tests), feeding it
/// `stdin`; returns stdout, or an error with the command, status and stderr.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String> {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    if let Some(input) = stdin {
        // `ip -batch` prints nothing on success, so writing all of stdin
        // before reading its output cannot fill a pipe and deadlock.
        let mut pipe = child.stdin.take().context("child stdin")?;
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing commands to `{line}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
        os::unix::fs::MetadataExt,
        thread,
        time::Duration,
    };

    use super::*;

    /// Fails the test without root: a skip would pass while testing nothing.
    #[track_caller]
    fn require_root() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "needs root: creates network namespaces; run `cargo xtask test` as root"
        );
    }

    fn thread_netns_inode() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    fn listed_namespaces() -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// TCP from the client's default address to `server` in `server_ns`;
    /// returns the client address the server saw.
    fn tcp_peer(client: &Netns, server_ns: &Netns, server: IpAddr) -> IpAddr {
        let listener = server_ns
            .enter(|| TcpListener::bind((server, 0)))
            .unwrap()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = thread::spawn(move || {
            let (mut s, peer) = listener.accept().unwrap();
            s.write_all(b"pong").unwrap();
            peer.ip()
        });
        let mut stream = client
            .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "pong");
        accept.join().unwrap()
    }

    /// UDP from `from` (a client address) to `server` and back.
    fn udp_echo(client: &Netns, from: IpAddr, server_ns: &Netns, server: IpAddr) {
        let srv = server_ns
            .enter(|| UdpSocket::bind((server, 0)))
            .unwrap()
            .unwrap();
        let cli = client
            .enter(|| UdpSocket::bind((from, 0)))
            .unwrap()
            .unwrap();
        for s in [&srv, &cli] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        cli.send_to(b"ping", srv.local_addr().unwrap()).unwrap();
        let mut buf = [0; 16];
        let (n, peer): (usize, SocketAddr) = srv.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], peer.ip()), (&b"ping"[..], from));
        srv.send_to(b"pong", peer).unwrap();
        let (n, _) = cli.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }

    #[test]
    fn namespace_topology_forwards_to_backends_and_cleans_up() {
        require_root();
        let root_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let thread_ns = thread_netns_inode();

        let topo = Topology::new(BackendKind::Namespace).unwrap();
        let names: Vec<String> = [&topo.client, &topo.host]
            .into_iter()
            .chain(&topo.backends)
            .map(|ns| ns.name().to_owned())
            .collect();
        assert_eq!(names.len(), 4);
        let listed = listed_namespaces();
        for name in &names {
            assert!(
                listed.contains(name),
                "{name} not in `ip netns list`: {listed:?}"
            );
        }
        for (file, want) in [
            ("ipv4/ip_forward", "1"),
            ("ipv6/conf/all/forwarding", "1"),
            ("ipv4/conf/all/rp_filter", "0"),
            ("ipv4/conf/eth0/rp_filter", "0"),
            ("ipv4/conf/b2/rp_filter", "0"),
        ] {
            let got = topo
                .host
                .exec(&["cat", &format!("/proc/sys/net/{file}")])
                .unwrap();
            assert_eq!(got.trim(), want, "host ns {file}");
        }

        // The host forwards client -> each backend, both families.
        for i in 0..2 {
            for addr in [BACKEND_V4[i].to_string(), BACKEND_V6[i].to_string()] {
                topo.client.exec(&["ping", "-c1", "-W1", &addr]).unwrap();
            }
        }
        assert_eq!(
            tcp_peer(&topo.client, &topo.backends[0], BACKEND_V4[0].into()),
            IpAddr::from(CLIENT_V4)
        );
        assert_eq!(
            tcp_peer(&topo.client, &topo.backends[1], BACKEND_V6[1].into()),
            IpAddr::from(CLIENT_V6)
        );

        // Extra client addresses are usable as sources and routed back.
        let (v4, v6) = topo.add_client_addresses(200).unwrap();
        assert_eq!((v4.len(), v6.len()), (200, 200));
        assert_eq!(v4[199], "198.18.4.200".parse::<IpAddr>().unwrap());
        assert_eq!(v6[0], "2001:db8:4::1".parse::<IpAddr>().unwrap());
        udp_echo(
            &topo.client,
            v4[199],
            &topo.backends[1],
            BACKEND_V4[1].into(),
        );
        udp_echo(&topo.client, v6[0], &topo.backends[0], BACKEND_V6[0].into());
        topo.add_client_addresses(200).unwrap();

        // Nothing leaked into the calling thread or the root namespace.
        assert_eq!(thread_netns_inode(), thread_ns);
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            root_forwarding
        );

        drop(topo);
        let listed = listed_namespaces();
        for name in &names {
            assert!(
                !listed.contains(name),
                "{name} still in `ip netns list` after drop"
            );
        }
    }

    #[test]
    fn local_process_topology_reaches_host_and_enter_survives_panic() {
        require_root();
        let thread_ns = thread_netns_inode();
        let topo = Topology::new(BackendKind::LocalProcess).unwrap();
        assert!(topo.backends.is_empty());
        assert_eq!(
            tcp_peer(&topo.client, &topo.host, HOST_V4.into()),
            IpAddr::from(CLIENT_V4)
        );
        assert_eq!(
            tcp_peer(&topo.client, &topo.host, HOST_V6.into()),
            IpAddr::from(CLIENT_V6)
        );

        let panicked = std::panic::catch_unwind(|| topo.host.enter(|| panic!("inside")));
        assert!(panicked.is_err());
        assert_eq!(thread_netns_inode(), thread_ns);
    }
}
