//! One canaryd per pin directory: an exclusive flock(2) on the bpffs
//! directory itself (`daemon.bpffs`), held for the daemon's lifetime.
//!
//! Why there and not in the state dir: the pins are what two daemons fight
//! over (the second one's load replaces the programs every link runs), and
//! two configs may share a bpffs directory with different state dirs. Why
//! the directory and not a file in it: bpffs refuses regular files (open
//! with O_CREAT fails with EACCES: bpffs only has directories, pins and
//! symlinks), while flock works on any descriptor, a directory's included.
//! The holder's pid is not stored anywhere (there is no file to store it
//! in): the kernel lists every flock with its owner in /proc/locks.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, linux::fs::MetadataExt},
    path::{Path, PathBuf},
};

/// The lock, held until dropped (the descriptor closes with it).
#[derive(Debug)]
pub struct DaemonLock {
    dir: PathBuf,
    _file: File,
}

impl DaemonLock {
    /// The directory that is locked.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: a canaryd runs on these pins.
    #[error(
        "canaryd {} is running on the pins in {} (it holds that directory locked); stop it first (systemctl stop canaryd{}); nothing was changed",
        holder_text(*.pid),
        .dir.display(),
        .pid.map(|p| format!(", or kill {p}")).unwrap_or_default()
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    #[error("locking {}: {source}", .dir.display())]
    Io { dir: PathBuf, source: io::Error },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "(pid not found in /proc/locks)".into(),
    }
}

/// Takes the exclusive lock on `dir` (which must exist) without waiting.
pub fn acquire(dir: &Path) -> Result<DaemonLock, LockError> {
    let io_err = |source| LockError::Io {
        dir: dir.to_owned(),
        source,
    };
    // std opens with O_CLOEXEC: iproute2 children never inherit the lock.
    let file = File::open(dir).map_err(io_err)?;
    // SAFETY: flock on a descriptor we own, alive for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = file.metadata().ok().and_then(|m| holder(&m));
            return Err(LockError::Held {
                dir: dir.to_owned(),
                pid,
            });
        }
        return Err(io_err(e));
    }
    Ok(DaemonLock {
        dir: dir.to_owned(),
        _file: file,
    })
}

/// The pid /proc/locks gives for the flock on the file `meta` describes.
fn holder(meta: &std::fs::Metadata) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, meta.st_dev(), meta.st_ino())
}

/// Lines look like `7: FLOCK  ADVISORY  WRITE 16356 00:28:27368411 0 EOF`:
/// pid, then the device (major:minor in hex) and the inode (decimal).
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "->": skip it.
        let flock = fields.iter().position(|f| *f == "FLOCK")?;
        if fields.first().is_some_and(|f| f.starts_with("->")) {
            return None;
        }
        let pid = fields.get(flock + 3)?;
        (fields.get(flock + 4) == Some(&want.as_str()))
            .then(|| pid.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_read_from_proc_locks_lines() {
        let locks = "1: POSIX  ADVISORY  WRITE 99 00:28:5 0 EOF\n\
                     7: FLOCK  ADVISORY  WRITE 16356 00:28:27368411 0 EOF\n";
        let dev = libc::makedev(0, 0x28);
        assert_eq!(holder_in(locks, dev, 27368411), Some(16356));
        assert_eq!(holder_in(locks, dev, 5), None, "POSIX locks are not ours");
        assert_eq!(holder_in(locks, dev, 1), None);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_pid() {
        let dir = std::env::temp_dir().join(format!("canary-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = acquire(&dir).unwrap();
        match acquire(&dir) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        acquire(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
