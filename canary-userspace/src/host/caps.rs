//! Least privilege: once the programs are loaded and attached and the
//! sockets are bound, the daemon keeps only what map access and link
//! management need, CAP_BPF and CAP_NET_ADMIN, in every capability set
//! (bounding too, so nothing it could exec regains more).
//!
//! Capabilities are per thread on Linux: `drop_to_kept` must run while the
//! process has a single thread, before any runtime or worker thread starts.

use std::io;

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_BPF: u32 = 39;
/// What the daemon keeps.
pub const KEPT: [u32; 2] = [CAP_BPF, CAP_NET_ADMIN];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number this kernel knows (read from procfs).
const CAP_LAST_CAP: &str = "/proc/sys/kernel/cap_last_cap";

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability except `KEPT` from the bounding, ambient,
/// inheritable, permitted and effective sets of the calling thread.
pub fn drop_to_kept() -> io::Result<()> {
    let last: u32 = std::fs::read_to_string(CAP_LAST_CAP)?
        .trim()
        .parse()
        .map_err(io::Error::other)?;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    for cap in (0..=last).filter(|c| !KEPT.contains(c)) {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut data = [CapData::default(); 2];
    for cap in KEPT {
        let word = &mut data[(cap / 32) as usize];
        word.effective |= 1 << (cap % 32);
        word.permitted |= 1 << (cap % 32);
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) reads one header and two data words we own.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mask with only the kept capabilities.
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, c| m | (1u64 << c))
}
