//! canaryd and canaryctl as an SRE runs them, for the tests and the bench:
//! the real binaries, the daemon started inside a test namespace with its
//! own socket, bpffs and state directories, stopped and cleaned up on drop.
//! Configs are written from a typed `Config`, status is read through the
//! library's typed client: nothing here re-implements canary-userspace.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use canary_userspace::{
    api::{Client, Status},
    config::{Config, DaemonConfig},
    kernel::pins::PinLayout,
};

use crate::topology::Netns;

/// Where the built `canaryd` and `canaryctl` are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub canaryd: PathBuf,
    pub canaryctl: PathBuf,
}

impl Binaries {
    /// In a cargo target profile directory (`target/release`).
    pub fn in_dir(dir: &Path) -> Result<Binaries> {
        let b = Binaries {
            canaryd: dir.join("canaryd"),
            canaryctl: dir.join("canaryctl"),
        };
        for p in [&b.canaryd, &b.canaryctl] {
            ensure!(
                p.exists(),
                "{} is missing; build it first (cargo build --all-targets)",
                p.display()
            );
        }
        Ok(b)
    }

    /// Next to the running test executable's `deps` directory, where
    /// `cargo xtask test` builds them first.
    pub fn next_to_test() -> Result<Binaries> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .context("the test executable has no target directory")?;
        Binaries::in_dir(dir)
    }
}

static DIRS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One daemon's directories: config, socket, state and log under /tmp,
/// pins under /sys/fs/bpf. Removed on drop, pins included (the
/// attachments go with the test's interfaces).
pub struct DaemonDirs {
    pub root: PathBuf,
    pub bpffs: PathBuf,
}

impl DaemonDirs {
    pub fn new(tag: &str) -> Result<DaemonDirs> {
        let n = DIRS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("canary-{tag}-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(&tag);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        Ok(DaemonDirs {
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
    pub fn pins(&self) -> PinLayout {
        PinLayout::new(&self.bpffs)
    }

    /// The `[daemon]` table for these directories, attached to `interface`.
    pub fn daemon_config(&self, interface: &str) -> DaemonConfig {
        DaemonConfig {
            socket: self.socket(),
            bpffs: self.bpffs.clone(),
            state_dir: self.state_dir(),
            ..DaemonConfig::with_defaults(vec![interface.to_owned()])
        }
    }

    pub fn write_config(&self, config: &Config) -> Result<()> {
        self.write_config_text(&config.to_toml())
    }

    /// Writes config text as is (for configs that must fail to load).
    pub fn write_config_text(&self, text: &str) -> Result<()> {
        // Write-then-rename: a reload never sees half a file.
        let tmp = self.root.join(".canary.toml.tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, self.config())?;
        Ok(())
    }
}

impl Drop for DaemonDirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// How long a starting daemon may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running canaryd, killed on drop if still running.
pub struct Canaryd {
    child: Option<Child>,
    pub pid: u32,
    pub socket: PathBuf,
    log: PathBuf,
    canaryctl: PathBuf,
}

impl Canaryd {
    /// Starts `canaryd --config <dirs.config()> [extra]` in `ns` and waits
    /// until it answers. Only the network namespace is entered (setns on a
    /// thread): the daemon shares the host's mount namespace, so its pins
    /// outlive it as on a real host, unlike under `ip netns exec`.
    pub fn start(
        ns: &Netns,
        bins: &Binaries,
        dirs: &DaemonDirs,
        extra: &[&str],
    ) -> Result<Canaryd> {
        Canaryd::spawn(ns, bins, dirs, extra, &[], None)
    }

    /// `start` with environment variables for the daemon and, when
    /// `nofile` is set, RLIMIT_NOFILE at that (soft and hard, so the daemon
    /// cannot raise it): what `LimitNOFILE=` does in a unit.
    pub fn spawn(
        ns: &Netns,
        bins: &Binaries,
        dirs: &DaemonDirs,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Result<Canaryd> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dirs.log())?;
        let mut cmd = Command::new(&bins.canaryd);
        cmd.arg("--config")
            .arg(dirs.config())
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and `limit` is a copy
            // owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = ns.enter(|| cmd.spawn())?.context("starting canaryd")?;
        let mut d = Canaryd {
            pid: child.id(),
            child: Some(child),
            socket: dirs.socket(),
            log: dirs.log(),
            canaryctl: bins.canaryctl.clone(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            d.check_running()?;
            if d.client().version().is_ok() {
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

    /// Fails with the log if the daemon has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!("canaryd exited ({status}):\n{}", self.log_text());
        }
        Ok(())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The library's typed client on this daemon's socket.
    pub fn client(&self) -> Client<'_> {
        Client {
            socket: &self.socket,
        }
    }

    pub fn status(&self) -> Result<Status> {
        self.client().status().context("status")
    }

    /// The `canaryctl --socket <this daemon's socket> args...` command.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.canaryctl);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    /// Runs canaryctl; never fails on canaryctl's exit code.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        self.ctl_command(args).output().context("running canaryctl")
    }

    /// The canaryctl binary this daemon is driven with.
    pub fn canaryctl(&self) -> &Path {
        &self.canaryctl
    }

    /// Sends a signal and waits (bounded) for the process to exit.
    pub fn signal(&mut self, signal: i32) -> Result<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
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

    /// The daemon's status file in /proc (capabilities, threads, memory).
    pub fn proc_status(&self) -> Result<String> {
        Ok(fs::read_to_string(format!("/proc/{}/status", self.pid))?)
    }
}

/// Runs `canaryctl --socket SOCKET args...` (a daemon may or may not be
/// there); never fails on canaryctl's exit code.
pub fn canaryctl(bins: &Binaries, socket: &Path, args: &[&str]) -> Result<Output> {
    Command::new(&bins.canaryctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .context("running canaryctl")
}

impl Drop for Canaryd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
