//! File descriptors: canaryd raises its soft RLIMIT_NOFILE to the hard
//! limit at start, then splits what is left after start-up so that no
//! listener can take the descriptors a set-weight or a rollback needs (its
//! control connection, the state file's temporary file and the directory
//! fsync). Without this, idle connections to the metrics listener took all
//! 1,024 descriptors and set-weight failed with EMFILE (issue 11).

use std::io;

/// Descriptors never handed to a listener: the state file write (2), a
/// reload's config read, the iproute2 pipes of a netlink attach (up to 6),
/// pins opened by a re-attach, the process collector's /proc reads, the
/// rollout driver's HTTP calls, with room to spare.
pub const RESERVE: u64 = 64;
/// At most this many metrics connections at once: a few Prometheus servers
/// scraping every few seconds need a handful; more only costs memory.
pub const MAX_METRICS: usize = 1024;
/// At most this many control connections at once; more wait in the
/// listen backlog, each for its turn (a control request is one line, read
/// within 5 s).
pub const MAX_CONTROL: usize = 64;
/// Below these the daemon would not be worth starting.
pub const MIN_METRICS: usize = 4;
pub const MIN_CONTROL: usize = 4;
/// The kernel refuses soft limits above fs.nr_open (1 Mi by default); a
/// hard limit of "infinity" is capped here.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FdError {
    #[error("reading RLIMIT_NOFILE: {0}")]
    Read(io::Error),
    #[error("counting open descriptors in /proc/self/fd: {0}")]
    Count(io::Error),
    #[error(
        "RLIMIT_NOFILE is {limit} and {in_use} descriptors are open after start-up: \
         canaryd needs at least {needed} (the reserve of {RESERVE} and a few \
         connections per listener); raise LimitNOFILE= in the unit or `ulimit -n`"
    )]
    TooLow {
        limit: u64,
        in_use: u64,
        needed: u64,
    },
}

/// RLIMIT_NOFILE after `raise_soft_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before.
    pub was: u64,
    /// Why the soft limit could not be raised, when it could not.
    pub refused: Option<i32>,
}

/// Raises the soft limit to the hard limit (no privilege needed). A refusal
/// is reported in `refused`, not an error: the daemon then works within the
/// soft limit it has.
pub fn raise_soft_limit() -> Result<NoFile, FdError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(FdError::Read(io::Error::last_os_error()));
    }
    let was = lim.rlim_cur;
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        NR_OPEN_DEFAULT
    } else {
        lim.rlim_max
    };
    let mut refused = None;
    if target > was {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        } else {
            refused = io::Error::last_os_error().raw_os_error();
        }
    }
    Ok(NoFile {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        was,
        refused,
    })
}

/// Descriptors this process has open now.
pub fn open_now() -> Result<u64, FdError> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(FdError::Count)?;
    // The directory's own descriptor is listed too.
    Ok((dir.count() as u64).saturating_sub(1))
}

/// How many connections each listener may hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub metrics: usize,
    pub control: usize,
    /// Descriptors left for everything else (at least `RESERVE`).
    pub reserve: u64,
}

/// Splits `limit` less the `in_use` descriptors and `RESERVE`: an eighth to
/// the control socket (between `MIN_CONTROL` and `MAX_CONTROL`), the rest to
/// the metrics listener (at most `MAX_METRICS`). Whatever neither gets adds
/// to the reserve.
pub fn budget(limit: u64, in_use: u64) -> Result<Budget, FdError> {
    let needed = in_use + RESERVE + (MIN_METRICS + MIN_CONTROL) as u64;
    if limit < needed {
        return Err(FdError::TooLow {
            limit,
            in_use,
            needed,
        });
    }
    let free = limit - in_use - RESERVE;
    let control = ((free / 8) as usize).clamp(MIN_CONTROL, MAX_CONTROL);
    let metrics = ((free - control as u64) as usize).min(MAX_METRICS);
    Ok(Budget {
        metrics,
        control,
        reserve: limit - in_use - (metrics + control) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_the_reserve_whatever_the_limit() {
        for limit in [80u64, 100, 128, 256, 1024, 4096, 65_536, 1 << 20] {
            for in_use in [0u64, 12, 40] {
                let Ok(b) = budget(limit, in_use) else {
                    assert!(limit < in_use + RESERVE + 8, "{limit} {in_use}");
                    continue;
                };
                assert!(b.reserve >= RESERVE, "{limit} {in_use}: {b:?}");
                assert_eq!(
                    in_use + b.reserve + (b.metrics + b.control) as u64,
                    limit,
                    "{b:?}"
                );
                assert!((MIN_METRICS..=MAX_METRICS).contains(&b.metrics), "{b:?}");
                assert!((MIN_CONTROL..=MAX_CONTROL).contains(&b.control), "{b:?}");
            }
        }
    }

    #[test]
    fn budget_table() {
        // The unit's LimitNOFILE, systemd's default soft limit, a tight test limit.
        assert_eq!(
            budget(65_536, 40).unwrap(),
            Budget {
                metrics: MAX_METRICS,
                control: MAX_CONTROL,
                reserve: 65_536 - 40 - 1024 - 64
            }
        );
        assert_eq!(
            budget(1024, 40).unwrap(),
            Budget {
                metrics: 856,
                control: 64,
                reserve: 64
            }
        );
        assert_eq!(
            budget(256, 40).unwrap(),
            Budget {
                metrics: 133,
                control: 19,
                reserve: 64
            }
        );
        let too_low = budget(100, 40).unwrap_err().to_string();
        assert!(
            too_low.contains("RLIMIT_NOFILE is 100") && too_low.contains("at least 112"),
            "{too_low}"
        );
    }

    #[test]
    fn raising_never_lowers_and_counting_works() {
        let got = raise_soft_limit().unwrap();
        assert!(got.soft >= got.was);
        assert!(got.soft <= got.hard);
        assert!(open_now().unwrap() >= 3);
    }
}
