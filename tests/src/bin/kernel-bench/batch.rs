//! The flow tables in bulk: BPF_MAP_UPDATE_BATCH to fill them and
//! BPF_MAP_LOOKUP_BATCH to walk them, which aya 0.14 does not expose. One
//! syscall per entry would spend most of the sweep's time budget on a 16 Mi
//! table (about 1 µs each); a batch is one syscall per few thousand.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
};

use anyhow::{Context, Result, ensure};
use aya::maps::{HashMap, IterableMap, MapData};
use canary_common::{FlowEntry, FlowKey};

/// `enum bpf_cmd` in include/uapi/linux/bpf.h.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Entries per syscall: 4 KiB pages' worth of keys and values, and enough
/// that a hash bucket never holds more (the kernel answers ENOSPC then).
pub const CHUNK: usize = 8192;

pub type Table = HashMap<MapData, FlowKey, FlowEntry>;

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the
    // buffers it points at outlive the call and are as large as `count`
    // says (checked by the callers).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fd(table: &Table) -> u32 {
    table.map().fd().as_fd().as_raw_fd() as u32
}

/// Writes `keys[i] → values[i]` (BPF_ANY), one syscall per `CHUNK`.
pub fn update(table: &Table, keys: &[FlowKey], values: &[FlowEntry]) -> Result<()> {
    ensure!(
        keys.len() == values.len(),
        "keys and values differ in number"
    );
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd(table),
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_BATCH, &mut attr).context("BPF_MAP_UPDATE_BATCH")?;
        ensure!(
            attr.count as usize == k.len(),
            "BPF_MAP_UPDATE_BATCH wrote {} of {} entries",
            attr.count,
            k.len()
        );
    }
    Ok(())
}

/// Calls `f` with every key in the table; returns how many there were.
pub fn for_each_key(table: &Table, mut f: impl FnMut(&FlowKey)) -> Result<u64> {
    let mut keys = vec![FlowKey::default(); CHUNK];
    let mut values = vec![FlowEntry::default(); CHUNK];
    // The hash table's batch token is its next bucket's index (a u32).
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    let mut total = 0u64;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd(table),
            ..Default::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let done = match r {
            Ok(()) => false,
            // The last batch: `count` still says how many it holds.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e).context("BPF_MAP_LOOKUP_BATCH"),
        };
        let n = (attr.count as usize).min(CHUNK);
        keys[..n].iter().for_each(&mut f);
        total += n as u64;
        if done {
            return Ok(total);
        }
        token_in = token_out;
        first = false;
    }
}

/// The kernel's memory charge for the map (`memlock` in its fdinfo: the
/// preallocated elements, buckets and LRU lists), in bytes.
pub fn memlock(table: &Table) -> Result<u64> {
    let path = format!("/proc/self/fdinfo/{}", fd(table));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_memlock(&text).with_context(|| format!("no memlock line in {path}"))
}

/// The `memlock:` figure of a map's fdinfo text.
pub fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse_memlock;

    #[test]
    fn memlock_is_read_from_its_own_line() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2054\nmap_type:\t9\n\
                      key_size:\t40\nvalue_size:\t64\nmax_entries:\t65536\nmap_flags:\t0x0\n\
                      map_extra:\t0x0\nmemlock:\t11010944\nmap_id:\t42\nfrozen:\t0\n";
        assert_eq!(parse_memlock(fdinfo), Some(11_010_944));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
        assert_eq!(parse_memlock("memlock:\tlots\n"), None);
    }
}
