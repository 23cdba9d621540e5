//! Network interfaces by name: the kernel's rules for a name, and whether
//! one exists in this thread's network namespace now.

use std::ffi::CString;

/// Longest interface name Linux accepts (IFNAMSIZ less the NUL).
const MAX_NAME: usize = 15;

/// A name the kernel would refuse for an interface, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an interface name: {why}")]
pub struct InvalidName {
    pub name: String,
    pub why: &'static str,
}

/// Checks a name the way the kernel does (`dev_valid_name`), which also keeps
/// it from escaping `/sys/class/net` when looked up there.
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME {
        "it is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "it is a path component"
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        "it contains '/', ':' or a space"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        name: name.to_owned(),
        why,
    })
}

/// Whether an interface of that name exists in this network namespace now.
/// Asks the kernel (if_nametoindex) rather than /sys/class/net, which shows
/// the namespace sysfs was mounted in, not necessarily the process's own.
pub fn interface_exists(name: &str) -> bool {
    interface_index(name).is_some()
}

/// The kernel's index of the interface of that name in this thread's
/// network namespace now; None when there is none. A device deleted and
/// created again under the same name gets a new index.
pub fn interface_index(name: &str) -> Option<u32> {
    check_name(name).ok()?;
    let c = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of the interface with kernel index `index` in this thread's
/// network namespace now; None when there is none.
pub fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `buf`.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
