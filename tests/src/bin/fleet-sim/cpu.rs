//! CPU time of one thread, read from any other: the kernel's per-thread
//! CPU clock (`pthread_getcpuclockid`), valid while the thread lives.

use std::time::Duration;

use anyhow::{Result, bail};

#[derive(Clone, Copy, Debug)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The clock of `thread`, which must not have ended.
    pub fn of(thread: libc::pthread_t) -> Result<ThreadClock> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `thread` is a live thread's id (its JoinHandle is held).
        let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut clock) };
        if rc != 0 {
            bail!(
                "pthread_getcpuclockid: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(ThreadClock(clock))
    }

    /// CPU time the thread has used so far; zero once it has ended.
    pub fn now(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to.
        if unsafe { libc::clock_gettime(self.0, &mut ts) } != 0 {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}
