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
//! their layouts hold; a layout change of the flow table itself would need
//! its entries converted, which no upgrade so far has needed.

use std::{fs, io, path::Path};

use canary_common::{PIN_LAYOUT, PREVIOUS_PIN_LAYOUT, names};

use crate::{
    error::{Error, Result},
    pin_check,
    pins::PinLayout,
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
}

impl Carried {
    /// One log line.
    pub fn describe(&self) -> String {
        format!(
            "upgraded the pins from layout {PREVIOUS_PIN_LAYOUT} to {PIN_LAYOUT}: carried {} \
             (established flows keep their entries); new or changed, starting empty: {}; \
             interfaces {}",
            list(&self.maps),
            list(&self.fresh),
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
        let keep = from.exists()
            && pin_check::mismatch(&name, &pin_check::pinned(&from)?, &want).is_none();
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
            carried.interfaces.push(crate::pins::interface_name(
                &record.file_name().to_string_lossy(),
            ));
        }
    }
    fs::remove_dir_all(&old.dir).map_err(io_err(&old.dir))?;
    Ok(Some(carried))
}
