//! Processes the bench starts inside its namespaces, and what it reads from
//! /proc about them and about the machine.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xtask::topology::Netns;

/// A long-running process (server, proxy, daemon) started in a namespace,
/// in its own process group; the whole group is stopped on drop.
pub struct Service {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `cmd` inside `ns` with stdout and stderr to `log`, then waits
    /// `settle` and fails if it has already exited.
    pub fn start(
        name: &str,
        ns: &Netns,
        mut cmd: Command,
        log: &Path,
        settle: Duration,
    ) -> Result<Service> {
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // The child inherits the namespace of the thread that forks it.
        let child = ns
            .enter(|| cmd.spawn())?
            .with_context(|| format!("starting {name} in {}", ns.name()))?;
        let mut s = Service {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        };
        thread::sleep(settle);
        if let Some(status) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!(
                "{name} exited at once ({status}); its log {}:\n{}",
                log.display(),
                s.log_text()
            );
        }
        Ok(s)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log if the process is gone.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = -(child.id() as i32);
        // SAFETY: kill(2) on the process group this guard created.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Workers may outlive their master: the group goes in any case.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `cmd` inside `ns` to completion, killed after `limit`; returns its
/// output whatever the exit status.
pub fn run_in(ns: &Netns, mut cmd: Command, limit: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = ns
        .enter(|| cmd.spawn())?
        .with_context(|| format!("starting {program} in {}", ns.name()))?;
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group of our own child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            bail!("{program} did not finish within {limit:?}; killed");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under /tmp for configs and logs, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("canary-bench-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in this directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Busy CPU time of the whole machine from the first line of /proc/stat,
/// in clock ticks: everything but idle and iowait.
#[derive(Clone, Copy, Debug)]
pub struct CpuTicks {
    pub busy: u64,
}

impl CpuTicks {
    pub fn now() -> Result<CpuTicks> {
        let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = stat.lines().next().context("/proc/stat is empty")?;
        parse_cpu_line(line)
    }

    /// Busy CPU time since `earlier`, in microseconds.
    pub fn busy_us_since(&self, earlier: &CpuTicks) -> f64 {
        (self.busy - earlier.busy) as f64 * 1e6 / clock_ticks_per_sec()
    }
}

fn parse_cpu_line(line: &str) -> Result<CpuTicks> {
    let mut fields = line.split_whitespace();
    ensure!(
        fields.next() == Some("cpu"),
        "unexpected /proc/stat line {line:?}"
    );
    let v: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>()?;
    ensure!(v.len() >= 5, "short /proc/stat line {line:?}");
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Ok(CpuTicks { busy: total - idle })
}

pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Resident set size of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()?)
}

/// User plus system CPU time of a process, in clock ticks.
pub fn process_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: fields after it.
    let rest = &stat[stat.rfind(')').context("malformed /proc/pid/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 11 and 12 after ')'.
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// The first line of a command's output, trimmed: stdout, or stderr when
/// stdout is empty (`nginx -v` writes there). For version lines.
pub fn first_line(cmd: &mut Command) -> std::io::Result<String> {
    let o = cmd.stdin(Stdio::null()).output()?;
    let text = if o.stdout.is_empty() {
        o.stderr
    } else {
        o.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line() {
        let t = parse_cpu_line("cpu  100 5 50 1000 20 3 7 1 0 0").unwrap();
        assert_eq!(t.busy, 1186 - 1020);
    }
}
