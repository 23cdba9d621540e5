//! Upgrading canary across a pin layout change without moving an
//! established flow.
//!
//! A new layout version (`PIN_LAYOUT`) gets its own pin directory, so a
//! daemon never reads a map written with another layout. When this
//! canaryd starts and finds no pins of its own layout but pins of the one
//! before (`PREVIOUS_PIN_LAYOUT`), it carries over, in one step, before it
//! loads its programs:
//! - every map whose layout did not change (type, key, value, flags, size:
//!   `pin_check`) is renamed into the new directory: the same kernel map,
//!   entries and all, with no copy and no moment without it: the old
//!   programs keep using it until the new ones replace them;
//! - every interface's record (the pinned links that hold the old programs
//!   on the interface) moves too, so the new daemon swaps its programs into
//!   those links (BPF_LINK_UPDATE: no packet sees no program);
//! - what is left of the old layout goes: maps this build does not have or
//!   whose layout changed (their contents are lost: the new one starts
//!   empty), and the old programs' pins (the links hold them until the
//!   swap).
//!
//! The flow table, services, backends and counters carry over as long as
//! their layouts hold. v5 → v6 changed one value: SIGNALS' latency
//! histogram went from 23 log2 buckets to 170 log-linear ones. Its values
//! are read from the old map and converted (`convert_v5_signals`: each old
//! bucket's count into the new bucket holding its old upper bound), and
//! `Dataplane::load` writes them into the new map once it exists, so a
//! rollout's evidence and the exported counters go on (what the old
//! programs count between that read and the swap, milliseconds, is lost:
//! counters, not flows). A layout change of
//! the flow table itself would need its entries converted too, which no
//! upgrade so far has needed.

use std::{fs, io, path::Path};

use aya::maps::{Map, MapData, PerCpuArray};
use canary_common::{
    MAX_SERVICES, PIN_LAYOUT, PREVIOUS_PIN_LAYOUT, VERSIONS, names,
    signals::{CONNECT_SUB_BITS, HTTP_CLASSES, LATENCY_SUB_BITS, Signals},
};

use crate::{
    error::{Error, Result},
    kernel::pin_check,
    kernel::pins::PinLayout,
    model::signals::{V5_LATENCY_BUCKETS, v5_bucket},
};

/// What an upgrade carried over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Maps moved into the new layout, entries and all.
    pub maps: Vec<String>,
    /// Maps of the new layout that start empty (new, or of a changed layout).
    pub fresh: Vec<String>,
    /// Interfaces whose pinned links moved.
    pub interfaces: Vec<String>,
    /// The previous layout's SIGNALS, converted: (slot, one value per CPU)
    /// for every slot that had counted anything. Written into the new map
    /// after load.
    pub signals: Vec<(u32, Vec<Signals>)>,
}

/// SIGNALS' value in pin layout v5: the same fields as today's `Signals`,
/// with 23 log2 buckets in both histograms.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalsV5 {
    pub requests: u64,
    pub responses: u64,
    pub http: [u64; HTTP_CLASSES],
    pub backend_resets: u64,
    pub refused: u64,
    pub syn_retransmits: u64,
    pub latency: [u64; V5_LATENCY_BUCKETS],
    pub connect: [u64; V5_LATENCY_BUCKETS],
    pub latency_sum_ns: u64,
    pub connect_sum_ns: u64,
    pub failsafe_flows: u64,
}

const _: () = assert!(std::mem::size_of::<SignalsV5>() == 60 * 8);

// SAFETY: repr(C), Copy, only u64 fields and arrays of u64: no padding.
unsafe impl aya::Pod for SignalsV5 {}

/// One v5 value in today's layout (see the module docs).
pub fn convert_v5_signals(old: &SignalsV5) -> Signals {
    let mut new = Signals {
        requests: old.requests,
        responses: old.responses,
        http: old.http,
        backend_resets: old.backend_resets,
        refused: old.refused,
        syn_retransmits: old.syn_retransmits,
        latency_sum_ns: old.latency_sum_ns,
        connect_sum_ns: old.connect_sum_ns,
        failsafe_flows: old.failsafe_flows,
        ..Signals::default()
    };
    for i in 0..V5_LATENCY_BUCKETS {
        new.latency[v5_bucket(i, LATENCY_SUB_BITS)] += old.latency[i];
        new.connect[v5_bucket(i, CONNECT_SUB_BITS)] += old.connect[i];
    }
    new
}

/// The v5 SIGNALS map at `path`, converted: every slot that counted
/// anything.
fn read_v5_signals(path: &Path) -> Result<Vec<(u32, Vec<Signals>)>> {
    let bad = |what: String| Error::Pin {
        path: path.to_owned(),
        what: format!("converting the previous layout's SIGNALS: {what}"),
    };
    let data = MapData::from_pin(path).map_err(|e| bad(e.to_string()))?;
    let map = Map::from_map_data(data).map_err(|e| bad(e.to_string()))?;
    let old: PerCpuArray<MapData, SignalsV5> =
        PerCpuArray::try_from(map).map_err(|e| bad(e.to_string()))?;
    let mut out = vec![];
    for slot in 0..MAX_SERVICES * VERSIONS {
        let values = old.get(&slot, 0).map_err(|e| bad(e.to_string()))?;
        let converted: Vec<Signals> = values.iter().map(convert_v5_signals).collect();
        // A slot no service ever counted in: nothing to carry.
        if converted.iter().all(|v| *v == Signals::default()) {
            continue;
        }
        out.push((slot, converted));
    }
    Ok(out)
}

impl Carried {
    /// One log line.
    pub fn describe(&self) -> String {
        format!(
            "upgraded the pins from layout {PREVIOUS_PIN_LAYOUT} to {PIN_LAYOUT}: carried {} \
             (established flows keep their entries); new or changed, starting empty: {}; \
             converted SIGNALS to the new histogram, {} (service, version) slots; interfaces {}",
            list(&self.maps),
            list(&self.fresh),
            self.signals.len(),
            list(&self.interfaces)
        )
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::Pin {
        path: path.to_owned(),
        what: format!("carrying the previous pin layout over: {e}"),
    }
}

/// Carries the previous layout's pins under `bpffs` over to this build's
/// layout (see the module docs). None when there is nothing to carry: no
/// previous pins, or pins of this layout already there.
pub fn carry_over(object: &[u8], bpffs: &Path) -> Result<Option<Carried>> {
    let new = PinLayout::new(bpffs);
    let old = PinLayout {
        dir: bpffs.join(PREVIOUS_PIN_LAYOUT),
    };
    if !old.maps().is_dir() || new.map(names::FLOWS).exists() {
        return Ok(None);
    }
    for dir in [new.maps(), new.interfaces()] {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let mut carried = Carried::default();
    for (name, want) in pin_check::expected(object)? {
        if !names::MAPS.contains(&name.as_str()) {
            continue; // .rodata and the like: never pinned
        }
        let from = old.map(&name);
        let layout = if from.exists() {
            Some(pin_check::pinned(&from)?)
        } else {
            None
        };
        let keep = layout.is_some_and(|l| pin_check::mismatch(&name, &l, &want).is_none());
        if !keep
            && name == names::SIGNALS
            && layout.is_some_and(|l| l.value_size as usize == std::mem::size_of::<SignalsV5>())
        {
            carried.signals = read_v5_signals(&from)?;
            continue; // written into the new map after load
        }
        if keep {
            let to = new.map(&name);
            fs::rename(&from, &to).map_err(io_err(&to))?;
            carried.maps.push(name);
        } else {
            carried.fresh.push(name);
        }
    }
    if old.interfaces().is_dir() {
        let records = fs::read_dir(old.interfaces()).map_err(io_err(&old.interfaces()))?;
        for record in records {
            let record = record.map_err(io_err(&old.interfaces()))?;
            let to = new.interfaces().join(record.file_name());
            fs::rename(record.path(), &to).map_err(io_err(&to))?;
            carried.interfaces.push(crate::kernel::pins::interface_name(
                &record.file_name().to_string_lossy(),
            ));
        }
    }
    fs::remove_dir_all(&old.dir).map_err(io_err(&old.dir))?;
    Ok(Some(carried))
}

#[cfg(test)]
mod tests {
    use canary_common::signals::{LATENCY_BUCKETS, bucket_of_ns};

    use super::*;

    #[test]
    fn a_v5_value_keeps_every_count_within_its_old_bounds() {
        let mut old = SignalsV5 {
            requests: 7,
            responses: 6,
            http: [0, 5, 0, 0, 1, 0],
            backend_resets: 1,
            refused: 2,
            syn_retransmits: 3,
            latency: [0; V5_LATENCY_BUCKETS],
            connect: [0; V5_LATENCY_BUCKETS],
            latency_sum_ns: 11,
            connect_sum_ns: 12,
            failsafe_flows: 4,
        };
        old.latency[0] = 1; // <= 16 µs
        old.latency[8] = 4; // (2,048, 4,096] µs
        old.latency[22] = 1; // +Inf
        old.connect[3] = 2; // (64, 128] µs
        let new = convert_v5_signals(&old);
        assert_eq!(
            (
                new.requests,
                new.responses,
                new.http,
                new.refused,
                new.failsafe_flows
            ),
            (7, 6, [0, 5, 0, 0, 1, 0], 2, 4)
        );
        assert_eq!((new.latency_sum_ns, new.connect_sum_ns), (11, 12));
        assert_eq!(new.latency.iter().sum::<u64>(), 6);
        assert_eq!(new.latency[bucket_of_ns(16_000, LATENCY_SUB_BITS)], 1);
        assert_eq!(new.latency[bucket_of_ns(4_096_000, LATENCY_SUB_BITS)], 4);
        assert_eq!(new.latency[LATENCY_BUCKETS - 1], 1);
        assert_eq!(new.connect[3], 2, "the coarse scale keeps its index");
    }
}
