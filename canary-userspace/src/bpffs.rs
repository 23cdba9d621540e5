//! Making sure the pin directory is on a BPF filesystem: pins elsewhere fail,
//! and a bpffs that is not mounted is common on minimal hosts and containers.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

/// statfs(2) f_type of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the kernel documents bpffs to be mounted.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// True when `path` (which must exist) is on a bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` outlives the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Ensures `dir` can hold pins: when it lies under /sys/fs/bpf and nothing is
/// mounted there yet, mounts a bpffs at /sys/fs/bpf (like `mount -t bpf bpf
/// /sys/fs/bpf`). Returns whether it mounted one.
pub fn ensure(dir: &Path) -> io::Result<bool> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    if is_bpffs(existing)? {
        return Ok(false);
    }
    let default = Path::new(DEFAULT_MOUNT);
    if !dir.starts_with(default) || !default.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not on a BPF filesystem; mount one first (mount -t bpf bpf DIR) or choose a bpffs directory under {DEFAULT_MOUNT}",
            dir.display()
        )));
    }
    let target = CString::new(DEFAULT_MOUNT).map_err(io::Error::other)?;
    let fstype = CString::new("bpf").map_err(io::Error::other)?;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "mounting a BPF filesystem at {DEFAULT_MOUNT}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(true)
}
