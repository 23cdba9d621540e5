//! Typed handles on the data path's maps, taken once: from a freshly loaded
//! object (`dataplane`) or from the pins an earlier load left (`--detach-all`,
//! the bench, readers that must not wait on the daemon's owner). Names come
//! from `canary_common::names`; nothing else reaches a map by string.

use std::sync::Mutex;

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, IterableMap, Map, MapData, MapError, PerCpuArray},
};
use canary_common::{
    Backend, BackendOwner, Endpoint, FlowEntry, FlowKey, Service, Settings, VERSION_CANARY,
    VERSION_STABLE, VersionStats,
    h2::H2Signals,
    names,
    signals::{Sampler, Signals},
    stats_slot, verdict,
};

use crate::{
    error::Error,
    kernel::pins::PinLayout,
    model::{grpc::ServerHeaderDecoder, signals::VersionSignals},
};

/// The maps userspace writes: services, their backends, settings; and the
/// flow tables (read by tests and the bench; entries removed only by a
/// rollback with `on_rollback = "reset"`).
pub struct Maps {
    pub services: HashMap<MapData, Endpoint, Service>,
    pub backends: Array<MapData, Backend>,
    pub backend_owners: HashMap<MapData, Endpoint, BackendOwner>,
    pub flows: HashMap<MapData, FlowKey, FlowEntry>,
    /// Flows decided but not answered by their backend yet.
    pub half_open: HashMap<MapData, FlowKey, FlowEntry>,
    pub settings: Array<MapData, Settings>,
    /// Per-CPU latency sampling state (`canary_common::signals::Sampler`):
    /// the kernel's own; tests and the bench preset it to reach a rate's
    /// sampling without that rate.
    pub sampler: PerCpuArray<MapData, Sampler>,
}

/// The per-CPU counters: read-only from userspace (but for zeroing a slot a
/// new service takes, through `stats_writer` and `signals_writer`), shareable between the
/// daemon's owner and the status and metrics readers.
pub struct Counters {
    pub stats: PerCpuArray<MapData, VersionStats>,
    pub signals: PerCpuArray<MapData, Signals>,
    pub h2: PerCpuArray<MapData, H2Signals>,
    pub verdicts: PerCpuArray<MapData, u64>,
    /// The HPACK decoders of the servers' header blocks, fed by canaryd's
    /// ring reader (`daemon::h2_headers`); empty in a process that does
    /// not read the ring (canaryctl's one-shot readers).
    pub headers: Mutex<ServerHeaderDecoder>,
}

/// Global verdict counters, summed over CPUs, for each program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub ingress: [u64; verdict::COUNT as usize],
    pub egress: [u64; verdict::COUNT as usize],
}

/// Another handle on the map behind `handle`, by its id.
fn second_handle<T: Pod>(
    handle: &PerCpuArray<MapData, T>,
    name: &'static str,
) -> Result<PerCpuArray<MapData, T>, Error> {
    let id = handle.map().info().map_err(map_err(name))?.id();
    let data = MapData::from_id(id).map_err(map_err(name))?;
    PerCpuArray::try_from(Map::from_map_data(data).map_err(map_err(name))?).map_err(map_err(name))
}

/// Where typed handles come from: a loaded object, or pins.
trait Source {
    fn map(&mut self, name: &'static str) -> Result<Map, Error>;
}

impl Source for Ebpf {
    fn map(&mut self, name: &'static str) -> Result<Map, Error> {
        self.take_map(name)
            .ok_or(Error::Missing { kind: "map", name })
    }
}

impl Source for &PinLayout {
    fn map(&mut self, name: &'static str) -> Result<Map, Error> {
        let path = PinLayout::map(self, name);
        let data = MapData::from_pin(&path).map_err(|source| Error::Map { name, source })?;
        Map::from_map_data(data).map_err(|source| Error::Map { name, source })
    }
}

fn typed<T>(source: &mut impl Source, name: &'static str) -> Result<T, Error>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(source.map(name)?).map_err(|source| Error::Map { name, source })
}

impl Maps {
    /// Takes the handles out of a loaded object (its programs stay in it).
    pub fn take(ebpf: &mut Ebpf) -> Result<Maps, Error> {
        Maps::from_source(ebpf)
    }

    /// Opens the maps pinned under `pins`.
    pub fn open_pinned(pins: &PinLayout) -> Result<Maps, Error> {
        Maps::from_source(&mut &*pins)
    }

    fn from_source(s: &mut impl Source) -> Result<Maps, Error> {
        Ok(Maps {
            services: typed(s, names::SERVICES)?,
            backends: typed(s, names::BACKENDS)?,
            backend_owners: typed(s, names::BACKEND_OWNERS)?,
            flows: typed(s, names::FLOWS)?,
            half_open: typed(s, names::HALF_OPEN)?,
            settings: typed(s, names::SETTINGS)?,
            sampler: typed(s, names::SAMPLER)?,
        })
    }

    /// Entries the flow table was created with (a reused pinned table keeps
    /// the size it was first made with).
    pub fn flow_table_capacity(&self) -> Result<u32, Error> {
        self.flows
            .map()
            .info()
            .map(|i| i.max_entries())
            .map_err(|source| Error::Map {
                name: names::FLOWS,
                source,
            })
    }
}

impl Counters {
    pub fn take(ebpf: &mut Ebpf) -> Result<Counters, Error> {
        Counters::from_source(ebpf)
    }

    pub fn open_pinned(pins: &PinLayout) -> Result<Counters, Error> {
        Counters::from_source(&mut &*pins)
    }

    fn from_source(s: &mut impl Source) -> Result<Counters, Error> {
        Ok(Counters {
            stats: typed(s, names::STATS)?,
            signals: typed(s, names::SIGNALS)?,
            h2: typed(s, names::H2_SIGNALS)?,
            verdicts: typed(s, names::VERDICTS)?,
            headers: Mutex::new(ServerHeaderDecoder::default()),
        })
    }

    /// Stable and canary counters of service slot `id`, summed over CPUs.
    pub fn version_stats(&self, id: u32) -> Result<[VersionStats; 2], Error> {
        let mut out = [VersionStats::default(); 2];
        for (version, total) in [VERSION_STABLE, VERSION_CANARY].into_iter().zip(&mut out) {
            let per_cpu = self
                .stats
                .get(&stats_slot(id, version), 0)
                .map_err(|source| Error::Map {
                    name: names::STATS,
                    source,
                })?;
            per_cpu.iter().for_each(|v| total.add(v));
        }
        Ok(out)
    }

    /// Stable and canary signals of service slot `id`, summed over CPUs.
    pub fn version_signals(&self, id: u32) -> Result<[Signals; 2], Error> {
        let mut out = [Signals::default(); 2];
        for (version, total) in [VERSION_STABLE, VERSION_CANARY].into_iter().zip(&mut out) {
            let per_cpu = self
                .signals
                .get(&stats_slot(id, version), 0)
                .map_err(map_err(names::SIGNALS))?;
            per_cpu.iter().for_each(|v| total.add(v));
        }
        Ok(out)
    }

    /// Stable and canary HTTP/2 counters of service slot `id`, summed over
    /// CPUs.
    pub fn version_h2(&self, id: u32) -> Result<[H2Signals; 2], Error> {
        let mut out = [H2Signals::default(); 2];
        for (version, total) in [VERSION_STABLE, VERSION_CANARY].into_iter().zip(&mut out) {
            let per_cpu = self
                .h2
                .get(&stats_slot(id, version), 0)
                .map_err(map_err(names::H2_SIGNALS))?;
            per_cpu.iter().for_each(|v| total.add(v));
        }
        Ok(out)
    }

    /// Both versions' whole readings of service slot `id`: the kernel's
    /// signals and HTTP/2 counters, and the decoded header blocks.
    pub fn version_reading(&self, id: u32) -> Result<[VersionSignals; 2], Error> {
        let signals = self.version_signals(id)?;
        let h2 = self.version_h2(id)?;
        // A poisoned lock (a panic while feeding) leaves the counts as they
        // were: still the best reading there is.
        let headers = self.headers.lock().unwrap_or_else(|p| p.into_inner());
        Ok([VERSION_STABLE, VERSION_CANARY].map(|v| {
            let i = v as usize;
            VersionSignals::read(&signals[i], &h2[i], headers.counts(id, v))
        }))
    }

    /// A second handle on H2_SIGNALS for the one writer that zeroes slots.
    pub fn h2_writer(&self) -> Result<PerCpuArray<MapData, H2Signals>, Error> {
        second_handle(&self.h2, names::H2_SIGNALS)
    }

    /// A second handle on STATS for the one writer that zeroes slots.
    pub fn stats_writer(&self) -> Result<PerCpuArray<MapData, VersionStats>, Error> {
        second_handle(&self.stats, names::STATS)
    }

    /// A second handle on SIGNALS for the one writer that zeroes slots.
    pub fn signals_writer(&self) -> Result<PerCpuArray<MapData, Signals>, Error> {
        second_handle(&self.signals, names::SIGNALS)
    }

    /// Verdict counters of both programs, summed over CPUs.
    pub fn verdicts(&self) -> Result<Verdicts, Error> {
        let sum = |slot| -> Result<u64, Error> {
            let v = self.verdicts.get(&slot, 0).map_err(|source| Error::Map {
                name: names::VERDICTS,
                source,
            })?;
            Ok(v.iter().sum())
        };
        let mut out = Verdicts::default();
        for i in 0..verdict::COUNT {
            out.ingress[i as usize] = sum(i)?;
            out.egress[i as usize] = sum(verdict::COUNT + i)?;
        }
        Ok(out)
    }
}

/// Removes every key of `map` not in `keep`; returns the removed ones.
pub fn retain_keys<V: Pod>(
    map: &mut HashMap<MapData, Endpoint, V>,
    keep: &[Endpoint],
) -> Vec<Endpoint> {
    let gone: Vec<Endpoint> = map
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !keep.contains(k))
        .collect();
    for key in &gone {
        let _ = map.remove(key);
    }
    gone
}

/// Maps a map error of `name` into the library's error.
pub(crate) fn map_err(name: &'static str) -> impl Fn(MapError) -> Error {
    move |source| Error::Map { name, source }
}
