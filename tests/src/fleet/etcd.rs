//! A single-member etcd (v3.4, `/usr/bin/etcd`) in its own namespace: the
//! fleet's coordinator, and the faults a test puts it through (stop,
//! continue, kill, restart on the same data). Its directory (data and log)
//! is under /tmp, unique per guard, removed on drop with the process.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xtask::topology::Netns;

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCD_PORT: u16 = 2379;
/// The peer port, on loopback only: a single member has no peers to reach.
const PEER_URL: &str = "http://127.0.0.1:2380";
/// A start (or restart on the same data) that takes longer is a failure.
pub const ETCD_START: Duration = Duration::from_secs(30);
/// How long one request to etcd may take: a stopped etcd accepts
/// connections (the kernel does) and never answers.
pub const ETCD_REQUEST: Duration = Duration::from_secs(2);

static ETCD_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The etcd process and its directory; killed and removed on drop.
pub struct Etcd {
    ns: Arc<Netns>,
    /// Where the hosts reach it (one address per host link), advertised so
    /// that a client that syncs endpoints from the member list still gets
    /// addresses it can reach.
    advertise: Vec<Ipv4Addr>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd in `ns` on a fresh data directory and waits (bounded by
    /// `ETCD_START`) until it answers /health there; the error shows its
    /// log.
    pub fn start(ns: Arc<Netns>, advertise: Vec<Ipv4Addr>) -> Result<Etcd> {
        let n = ETCD_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("canary-etcd-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut etcd = Etcd {
            ns,
            advertise,
            dir,
            child: None,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Everything etcd printed, over all its starts.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The running process's id; None once killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The namespace's own view: etcd on loopback, whatever the links do.
    fn local(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, ETCD_PORT))
    }

    /// GET /health from etcd's own namespace: the body of a 200.
    pub fn health(&self) -> Result<String> {
        xtask::http::get(&self.ns, self.local(), "/health", ETCD_REQUEST)
    }

    /// SIGSTOP: etcd keeps its sockets and answers nothing (a hung or
    /// overloaded coordinator).
    #[track_caller]
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after `stop`.
    #[track_caller]
    pub fn cont(&self) {
        self.signal(libc::SIGCONT);
    }

    #[track_caller]
    fn signal(&self, signal: i32) {
        let pid = self.pid().expect("etcd is not running (killed)");
        // SAFETY: kill(2) on our own child, which has not been reaped.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            panic!(
                "signal {signal} to etcd {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// SIGKILL and reap; the data directory stays for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd if it runs, then starts it again on the same data and
    /// waits until it answers; panics with its log otherwise.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("restarting etcd: {e:#}");
        }
    }

    /// Starts the process (the log is appended to, so every start's lines
    /// stay) and waits for /health.
    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let advertise = self
            .advertise
            .iter()
            .map(|a| format!("http://{a}:{ETCD_PORT}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(ETCD_BIN);
        cmd.arg("--name")
            .arg("fleet")
            .arg("--data-dir")
            .arg(self.data_dir())
            // Every address of its own namespace: only the test's links.
            .arg(format!("--listen-client-urls=http://0.0.0.0:{ETCD_PORT}"))
            .arg(format!("--advertise-client-urls={advertise}"))
            .arg(format!("--listen-peer-urls={PEER_URL}"))
            .arg(format!("--initial-advertise-peer-urls={PEER_URL}"))
            .arg(format!("--initial-cluster=fleet={PEER_URL}"))
            .args(["--logger=zap", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group: a terminal's Ctrl-C or SIGSTOP meant for the
            // test does not reach it, and its faults are the test's.
            .process_group(0);
        let child = self
            .ns
            .enter(|| cmd.spawn())?
            .with_context(|| format!("starting {ETCD_BIN}"))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!("etcd exited ({status}):\n{}", self.log_text());
            }
            if self.health().is_ok_and(|body| body.contains("true")) {
                return Ok(());
            }
            if started.elapsed() > ETCD_START {
                bail!(
                    "etcd did not answer /health within {ETCD_START:?}:\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `key` = `value` through etcd's JSON gateway; returns the
    /// store's revision after the write.
    pub fn put(&self, key: &str, value: &str) -> Result<i64> {
        let body =
            serde_json::json!({ "key": base64(key.as_bytes()), "value": base64(value.as_bytes()) });
        let answer = self.gateway("/v3/kv/put", &body)?;
        revision(&answer)
    }

    /// How many keys start with `prefix`, and the store's revision.
    pub fn count(&self, prefix: &str) -> Result<(u64, i64)> {
        let body = serde_json::json!({
            "key": base64(prefix.as_bytes()),
            "range_end": base64(&prefix_end(prefix.as_bytes())),
            "count_only": true,
        });
        let answer = self.gateway("/v3/kv/range", &body)?;
        // proto3 JSON: 64-bit numbers are strings, and zero is left out.
        let count = match &answer["count"] {
            serde_json::Value::Null => 0,
            v => v
                .as_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("count in {answer}"))?,
        };
        Ok((count, revision(&answer)?))
    }

    /// Compacts etcd's history up to its current revision: a watch from an
    /// older revision is answered "compacted". Returns that revision.
    pub fn compact(&self) -> Result<i64> {
        let (_, now) = self.count("/")?;
        let body = serde_json::json!({ "revision": now.to_string(), "physical": true });
        self.gateway("/v3/kv/compaction", &body)?;
        Ok(now)
    }

    fn gateway(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let text = xtask::http::post_json(
            &self.ns,
            self.local(),
            path,
            &body.to_string(),
            ETCD_REQUEST,
        )?;
        serde_json::from_str(&text).with_context(|| format!("{path} answered {text:?}"))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The header's revision of a gateway answer.
fn revision(answer: &serde_json::Value) -> Result<i64> {
    answer["header"]["revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no header.revision in {answer}"))
}

/// The first key after every key that starts with `prefix` (etcd's
/// `range_end` for a prefix): its last byte below 0xff plus one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on; etcd spells it \0.
    vec![0]
}

/// Standard base64 with padding (RFC 4648), as the JSON gateway wants its
/// keys and values: a few lines rather than a dependency for the tests.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/canary/"), b"/canary0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
