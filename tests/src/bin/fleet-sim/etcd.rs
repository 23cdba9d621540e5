//! One etcd (Debian's etcd-server, /usr/bin/etcd) for one simulated fleet:
//! inside a network namespace of its own, listening on 127.0.0.1 there,
//! its data in a fresh directory. Dropping the guard kills etcd, removes
//! the directory and then the namespace.

use std::{
    fs::File,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xtask::topology::Netns;

const ETCD: &str = "/usr/bin/etcd";
/// Client URL inside the namespace; /metrics and /health are served there.
pub const ENDPOINT: &str = "http://127.0.0.1:2379";
const CLIENT_ADDR: &str = "127.0.0.1:2379";
const PEER_URL: &str = "http://127.0.0.1:2380";
/// Longest a fresh etcd may take to answer /health.
const STARTUP: Duration = Duration::from_secs(15);
/// Longest one HTTP request to etcd's /health or /metrics may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes data directories unique within this process.
static DIRS: AtomicU32 = AtomicU32::new(0);

pub struct Etcd {
    child: Child,
    dir: PathBuf,
    // Declared last: dropped after etcd is dead and its files are gone.
    pub ns: Netns,
}

/// The counters of etcd's own /metrics that the report reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Keys written (each put, alone or inside a transaction).
    pub puts: f64,
    pub deletes: f64,
    /// Raft entries committed: writes, lease grants and revokes.
    pub proposals: f64,
    /// CPU time etcd's process has used (user + system).
    pub cpu: Duration,
}

impl Etcd {
    /// Starts etcd in a new namespace and waits (bounded) until it is healthy.
    pub fn start() -> Result<Etcd> {
        let ns = Netns::new("fleetsim")?;
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("canary-fleetsim-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = File::create(dir.join("etcd.log"))?;
        let spawned = Command::new("ip")
            .args(["netns", "exec", ns.name(), ETCD])
            .arg("--name=fleetsim")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={ENDPOINT}"))
            .arg(format!("--advertise-client-urls={ENDPOINT}"))
            .arg(format!("--listen-peer-urls={PEER_URL}"))
            .arg(format!("--initial-advertise-peer-urls={PEER_URL}"))
            .arg(format!("--initial-cluster=fleetsim={PEER_URL}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).context(format!("starting {ETCD}"));
            }
        };
        // From here on the guard exists: a failure below still cleans up.
        let mut etcd = Etcd { child, dir, ns };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(body) = etcd.get("/health")
                && body.contains("\"health\":\"true\"")
            {
                return Ok(etcd);
            }
            if let Some(status) = etcd.child.try_wait()? {
                bail!("etcd exited at start ({status}): {}", etcd.log_tail());
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy within {STARTUP:?}: {}", etcd.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ip netns exec` execs etcd, so the child's pid is etcd's.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// etcd's counters now.
    pub fn counters(&self) -> Result<Counters> {
        let metrics = self.get("/metrics")?;
        let value = |name: &str| -> Result<f64> {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .with_context(|| format!("etcd's /metrics has no {name}"))?
                .trim()
                .parse::<f64>()
                .with_context(|| format!("etcd's {name} is not a number"))
        };
        Ok(Counters {
            puts: value("etcd_mvcc_put_total")?,
            deletes: value("etcd_mvcc_delete_total")?,
            proposals: value("etcd_server_proposals_committed_total")?,
            cpu: self.cpu()?,
        })
    }

    /// User + system time of etcd's process, from /proc/<pid>/stat.
    fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 14th and 15th in all.
        let rest = stat.rsplit_once(')').context("odd /proc/<pid>/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis(ticks * 1000 / hz))
    }

    /// A plain HTTP/1.0 GET of etcd's `path`, from inside its namespace.
    fn get(&self, path: &str) -> Result<String> {
        self.ns.enter(|| -> Result<String> {
            let addr = CLIENT_ADDR.parse()?;
            let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
            s.set_read_timeout(Some(HTTP_TIMEOUT))?;
            s.set_write_timeout(Some(HTTP_TIMEOUT))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })?
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
