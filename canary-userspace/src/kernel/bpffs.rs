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

/// Whether this process lives in a mount namespace other than pid 1's, as
/// under `ip netns exec` (which also gives it a /sys of its own): a bpffs
/// mounted there, and every pin on it, goes when the namespace's last
/// process exits.
pub fn own_mount_namespace() -> bool {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(me) = ns("self") else {
        return false;
    };
    // pid 1's namespace may not be readable (a container, a user namespace):
    // then the parent's, which `ip netns exec` and `unshare -m` leave behind.
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() }.to_string();
    match ns("1").or_else(|| ns(&parent)) {
        Some(other) => me != other,
        None => false,
    }
}

/// The one line canaryd logs after mounting a bpffs itself: what that
/// means for the pins (and so for the data path after canaryd stops).
pub fn mounted_note(own_namespace: bool) -> String {
    if own_namespace {
        format!(
            "mounted a BPF filesystem at {DEFAULT_MOUNT} in canaryd's own mount namespace (as under `ip netns exec`): \
             the pins, and the data path with them, vanish when that namespace ends; \
             to keep them, mount a bpffs outside it (e.g. `mount -t bpf bpf /run/canary-bpf` on the host) and pass --bpffs /run/canary-bpf/canary"
        )
    } else {
        format!(
            "mounted a BPF filesystem at {DEFAULT_MOUNT}: the pins last until it is unmounted or the host reboots; \
             mount it at boot (fstab: `bpf {DEFAULT_MOUNT} bpf defaults 0 0`) or pass a persistent --bpffs"
        )
    }
}
