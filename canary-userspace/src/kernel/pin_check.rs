//! Pinned maps are checked against this build's object before they are
//! reused: a map of another type, key or value size, flags or (except the
//! tables sized from `flow_table_size`) size would be read and written with
//! the wrong layout, so start-up refuses it and names the map and both
//! layouts. (aya reuses a pinned map by name without looking at it.)

use std::{fmt, path::Path};

use aya::maps::MapInfo;
use canary_common::names;

use crate::error::{Error, Result};

/// What the kernel knows of a map's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    /// `bpf_map_type` (e.g. 1 hash, 2 array, 6 per-CPU array, 9 LRU hash).
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl fmt::Display for MapLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} ({}), key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type,
            type_name(self.map_type),
            self.key_size,
            self.value_size,
            self.max_entries,
            self.flags
        )
    }
}

fn type_name(t: u32) -> &'static str {
    match t {
        1 => "hash",
        2 => "array",
        5 => "per-CPU hash",
        6 => "per-CPU array",
        9 => "LRU hash",
        10 => "LRU per-CPU hash",
        _ => "other",
    }
}

/// The layouts this build's object defines, by map name.
pub fn expected(object: &[u8]) -> Result<Vec<(String, MapLayout)>> {
    let obj = aya_obj::Object::parse(object).map_err(|e| Error::Pin {
        path: "the embedded eBPF object".into(),
        what: format!("cannot read its map definitions: {e}"),
    })?;
    Ok(obj
        .maps
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                MapLayout {
                    map_type: m.map_type(),
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: m.max_entries(),
                    flags: m.map_flags(),
                },
            )
        })
        .collect())
}

/// The layout of the map pinned at `path`.
pub fn pinned(path: &Path) -> Result<MapLayout> {
    let info = MapInfo::from_pin(path).map_err(|e| Error::Pin {
        path: path.to_owned(),
        what: format!("not a BPF map, or unreadable: {e}"),
    })?;
    // aya's MapType carries the kernel's numbers; a type aya does not know
    // reads as 0 (unspecified), which no canary map has.
    let map_type = info.map_type().map(|t| t as u32).unwrap_or(0);
    Ok(MapLayout {
        map_type,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// Why a pinned map may not be reused, if it may not.
pub fn mismatch(name: &str, pinned: &MapLayout, expected: &MapLayout) -> Option<String> {
    // The flow and half-open tables keep the size they were created with
    // from the config (a new size needs --reset); every other size is
    // fixed by the object.
    let size_matters = !names::SIZED_BY_CONFIG.contains(&name);
    let same = pinned.map_type == expected.map_type
        && pinned.key_size == expected.key_size
        && pinned.value_size == expected.value_size
        && pinned.flags == expected.flags
        && (!size_matters || pinned.max_entries == expected.max_entries);
    (!same).then(|| {
        format!(
            "pinned map {name} has {pinned}; this canaryd needs {expected}{}. \
             It is not canary's map of this layout: remove the pins (canaryd --reset) to start \
             afresh, which ends the split of established flows",
            if size_matters {
                ""
            } else {
                " (any number of entries)"
            }
        )
    })
}

/// Checks every pinned map under `maps_dir` that this object uses.
pub fn check(object: &[u8], maps_dir: &Path) -> Result<()> {
    for (name, want) in expected(object)? {
        let path = maps_dir.join(&name);
        if !path.exists() {
            continue;
        }
        let have = pinned(&path)?;
        if let Some(why) = mismatch(&name, &have, &want) {
            return Err(Error::Pin { path, what: why });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LRU: MapLayout = MapLayout {
        map_type: 9,
        key_size: 40,
        value_size: 64,
        max_entries: 65536,
        flags: 0,
    };

    #[test]
    fn every_field_but_the_config_sized_tables_size_must_match() {
        assert_eq!(mismatch(names::FLOWS, &LRU, &LRU), None);
        // Any size a user may set, smaller or larger than the object's.
        for entries in [1_024, 4_096, 16_384, 131_072, 1 << 20] {
            let sized = MapLayout {
                max_entries: entries,
                ..LRU
            };
            for table in names::SIZED_BY_CONFIG {
                assert_eq!(mismatch(table, &sized, &LRU), None, "{table} {entries}");
            }
            assert!(mismatch(names::SERVICES, &sized, &LRU).is_some());
        }
        for wrong in [
            MapLayout { map_type: 1, ..LRU },
            MapLayout {
                key_size: 36,
                ..LRU
            },
            MapLayout {
                value_size: 56,
                ..LRU
            },
            MapLayout { flags: 2, ..LRU },
        ] {
            let why = mismatch(names::FLOWS, &wrong, &LRU).unwrap();
            assert!(
                why.contains("FLOWS") && why.contains(&wrong.to_string()),
                "{why}"
            );
            assert!(why.contains(&LRU.to_string()), "{why}");
        }
    }
}
