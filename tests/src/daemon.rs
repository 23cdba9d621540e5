//! canaryd and canaryctl as an SRE runs them, for tests: the real binaries,
//! the daemon started inside a test's host namespace with its own socket,
//! bpffs and state directories, stopped and cleaned up on drop.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xtask::topology::Netns;

static DIRS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A built binary of this workspace, next to the test executable's
/// `deps` directory (`cargo xtask test` builds all targets first).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let path = dir.join(name);
    ensure!(
        path.exists(),
        "{} is missing; build it first (cargo build --workspace --exclude canary-ebpf)",
        path.display()
    );
    Ok(path)
}

/// Per-test directories: config, socket, state and log under /tmp, pins
/// under /sys/fs/bpf. Removed on drop, pins included.
pub struct Dirs {
    pub root: PathBuf,
    pub bpffs: PathBuf,
}

impl Dirs {
    pub fn new() -> Result<Dirs> {
        let n = DIRS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("canary-test-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(&tag);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        Ok(Dirs {
            root,
            bpffs: PathBuf::from("/sys/fs/bpf").join(tag),
        })
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("canary.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("run/canary.sock")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("canaryd.log")
    }

    /// The `[daemon]` table for these directories.
    pub fn daemon_table(&self, interface: &str) -> String {
        format!(
            "[daemon]\ninterfaces = [\"{interface}\"]\nsocket = \"{}\"\nbpffs = \"{}\"\nstate_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:9464\"\n",
            self.socket().display(),
            self.bpffs.display(),
            self.state_dir().display()
        )
    }

    pub fn write_config(&self, text: &str) -> Result<()> {
        // Write-then-rename: a reload never sees half a file.
        let tmp = self.root.join(".canary.toml.tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, self.config())?;
        Ok(())
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// One `[[service]]` table.
pub fn service_table(
    name: &str,
    listen: SocketAddr,
    affinity: &str,
    stable: SocketAddr,
    canary: SocketAddr,
    weight: f64,
) -> String {
    format!(
        "\n[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nprotocol = \"tcp\"\naffinity = \"{affinity}\"\nstable = [\"{stable}\"]\ncanary = [\"{canary}\"]\nweight = {weight:.2}\n"
    )
}

/// A running canaryd, killed on drop if still running.
pub struct Canaryd {
    child: Option<Child>,
    pub pid: u32,
    socket: PathBuf,
    log: PathBuf,
}

/// How long a starting daemon may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Canaryd {
    /// Starts `canaryd --config <dirs.config()> [extra]` in `ns` (network
    /// namespace only: the daemon shares the host's mount namespace, so its
    /// pins outlive it as on a real host) and waits until it answers.
    pub fn start(ns: &Netns, dirs: &Dirs, extra: &[&str]) -> Result<Canaryd> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dirs.log())?;
        let mut cmd = Command::new(binary("canaryd")?);
        cmd.arg("--config")
            .arg(dirs.config())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Forked from a thread inside `ns`: the child is in that network
        // namespace and keeps the host's mount namespace (unlike `ip netns
        // exec`, which would hide the pins under /sys/fs/bpf).
        let child = ns.enter(|| cmd.spawn())?.context("starting canaryd")?;
        let mut d = Canaryd {
            pid: child.id(),
            child: Some(child),
            socket: dirs.socket(),
            log: dirs.log(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "canaryd exited with {status} while starting:\n{}",
                    d.log_text()
                );
            }
            if ctl(&d.socket, &["version"])?.status.success() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                bail!(
                    "canaryd did not answer within {START_TIMEOUT:?}:\n{}",
                    d.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `canaryctl --socket <this daemon's socket> args...`
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        ctl(&self.socket, args)
    }

    /// `canaryctl --json status`, parsed.
    pub fn status(&self) -> Result<canary_userspace::api::Status> {
        let out = self.ctl(&["--json", "status"])?;
        ensure!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: canary_userspace::api::Response = serde_json::from_slice(&out.stdout)?;
        Ok(serde_json::from_value(
            r.data.context("status without data")?,
        )?)
    }

    /// Sends a signal and waits (bounded) for the process to exit.
    pub fn signal(&mut self, signal: i32) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, signal) };
        let mut child = self.child.take().context("canaryd is not running")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("canaryd did not exit within 10 s of signal {signal}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's status file in /proc (capabilities).
    pub fn proc_status(&self) -> Result<String> {
        Ok(fs::read_to_string(format!("/proc/{}/status", self.pid))?)
    }
}

impl Drop for Canaryd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs canaryctl against `socket`; never fails on canaryctl's exit code.
pub fn ctl(socket: &Path, args: &[&str]) -> Result<Output> {
    Command::new(binary("canaryctl")?)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .context("running canaryctl")
}

/// How long a test's HTTP request may take at each step.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` from inside `ns`; the body of a 200 answer.
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> Result<String> {
    xtask::http::get(ns, addr, path, HTTP_TIMEOUT)
}

/// Percent-encodes a URL query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
