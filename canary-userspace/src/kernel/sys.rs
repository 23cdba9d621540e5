//! The bpf(2) calls aya 0.14 does not offer, in one place.
//!
//! - `open_pin` (BPF_OBJ_GET): a descriptor for any pinned object, links
//!   included, without aya's typing.
//! - `detach_link` (BPF_LINK_DETACH): aya has no way to take a pinned link
//!   off its hook now; unpinning alone waits for the last holder.
//! - `tcx_program_ids` (BPF_PROG_QUERY): aya's `SchedClassifier::query_tcx`
//!   opens every program by id, which needs CAP_SYS_ADMIN; canaryd keeps
//!   only CAP_BPF and CAP_NET_ADMIN, and the ids are all status needs.
//!
//! A pinned map's id comes from aya (`MapInfo::from_pin`).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// bpf(2) commands (uapi/linux/bpf.h).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Attach types of the tcx hooks.
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// Programs a tcx hook query reads; more is someone else's pile-up.
pub const MAX_TCX_PROGRAMS: usize = 64;

/// bpf(2) with `attr` as its attribute union; the kernel's return value.
///
/// SAFETY: `attr` must be the attribute struct of `cmd`, and any pointer in
/// it must stay valid for the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; it outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// BPF_OBJ_GET attributes (`union bpf_attr`, BPF_OBJ_* commands).
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    /// The kernel checks the bytes after `path_fd` are zero.
    _pad: u32,
}

/// A new descriptor for the BPF object (map, program, link) pinned at
/// `path`; needs no capability beyond access to the pin.
pub fn open_pin(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut get = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: BPF_OBJ_GET's attributes; the path `c` outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut get)? };
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Takes the link pinned at `path` off its hook now. Unpinning alone
/// releases it only after an RCU grace period, and only once no process
/// holds it open.
pub fn detach_link(path: &Path) -> io::Result<()> {
    let link = open_pin(path)?;
    // `link_detach` in `union bpf_attr`: the link descriptor only.
    let mut detach: u32 = link.as_raw_fd() as u32;
    // SAFETY: BPF_LINK_DETACH's attributes are this one descriptor.
    unsafe { bpf(BPF_LINK_DETACH, &mut detach)? };
    Ok(())
}

/// BPF_PROG_QUERY attributes (`query` in `union bpf_attr`).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// The ids of the programs at a tcx hook (`BPF_TCX_INGRESS` or
/// `BPF_TCX_EGRESS`) of `ifindex`, at most `MAX_TCX_PROGRAMS`.
pub fn tcx_program_ids(ifindex: u32, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; MAX_TCX_PROGRAMS];
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    // SAFETY: BPF_PROG_QUERY's attributes; the kernel writes at most
    // `prog_cnt` ids into `ids`, which outlives the call.
    if let Err(e) = unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
        // ENOSPC: more than MAX_TCX_PROGRAMS; the first ones were written.
        if e.raw_os_error() != Some(libc::ENOSPC) {
            return Err(e);
        }
    }
    ids.truncate((attr.prog_cnt as usize).min(MAX_TCX_PROGRAMS));
    Ok(ids)
}

/// The id of the map pinned at `path` (aya's `MapInfo::from_pin`), with
/// the kernel's error kept as an `io::Error` (NotFound: no such pin).
pub fn pinned_map_id(path: &Path) -> io::Result<u32> {
    match aya::maps::MapInfo::from_pin(path) {
        Ok(info) => Ok(info.id()),
        Err(aya::maps::MapError::SyscallError(e)) => Err(e.io_error),
        Err(e) => Err(io::Error::other(e)),
    }
}
