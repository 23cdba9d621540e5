//! The kernel data path seen from userspace: load the embedded object, attach
//! the programs, write services and weights, read counters.
//!
//! Write order matters because the programs run while we write: a service's
//! backends and owners are written before the SERVICES entry that makes the
//! data path use them, and removed only after it.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
    util::nr_cpus,
};
use canary_common::{
    BackendOwner, DEFAULT_FLOW_TABLE_SIZE, DEFAULT_UDP_IDLE_TIMEOUT_NS, Endpoint, MAX_BACKENDS,
    MAX_SERVICES, Service, Settings, VERSION_CANARY, VERSION_STABLE, VersionStats, backend_slot,
    hash::seed_from_name, stats_slot, verdict,
};

use crate::{
    attachment,
    error::{Error, Result},
    service::{ServiceSpec, backend, endpoint},
};

/// The eBPF object built by build.rs from canary-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/canary"));

pub const INGRESS_PROGRAM: &str = "canary_ingress";
pub const EGRESS_PROGRAM: &str = "canary_egress";

/// Every map of the object; all are pinned when a pin directory is given.
pub const MAPS: [&str; 8] = [
    "SERVICES",
    "VIP_ADDRESSES",
    "BACKENDS",
    "BACKEND_OWNERS",
    "FLOWS",
    "STATS",
    "VERDICTS",
    "SETTINGS",
];

pub use canary_common::PIN_LAYOUT;
/// Under the layout directory: pinned programs, and one directory per
/// interface the programs are attached to, holding its pinned links (what
/// --detach-all undoes).
const PROGRAMS_DIR: &str = "programs";
const INTERFACES_DIR: &str = "interfaces";

/// Choices made once, at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Entries in the flow table; the most concurrent flows pinned to a
    /// version before the least recently used one is evicted.
    pub flow_table_size: u32,
    /// How long an idle UDP flow keeps its backend.
    pub udp_idle_timeout: Duration,
    /// bpffs directory to pin maps and programs under (`<dir>/v2/maps`,
    /// `<dir>/v2/programs`). Pinned state outlives the process, and a later load
    /// with the same directory reuses it: flows, weights and counters carry
    /// on. `None` keeps everything tied to this process (tests).
    pub pin_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            udp_idle_timeout: Duration::from_nanos(DEFAULT_UDP_IDLE_TIMEOUT_NS),
            pin_dir: None,
        }
    }
}

/// How the programs are attached to an interface.
pub use crate::attachment::{Attached, Attachment};

/// Global verdict counters, summed over CPUs, for each program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub ingress: [u64; verdict::COUNT as usize],
    pub egress: [u64; verdict::COUNT as usize],
}

struct Registered {
    id: u32,
    spec: ServiceSpec,
}

pub struct Dataplane {
    ebpf: Ebpf,
    services: BTreeMap<String, Registered>,
    /// SERVICES entries found in pinned maps at load, by VIP: their ids are
    /// reused so counters and flow entries keep meaning the same service.
    recovered: StdHashMap<Endpoint, Service>,
    pin_dir: Option<PathBuf>,
}

impl Dataplane {
    /// Loads the programs into the kernel (not attached yet).
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let pin_dir = opts.pin_dir.as_ref().map(|d| d.join(PIN_LAYOUT));
        let mut loader = EbpfLoader::new();
        loader.map_max_entries("FLOWS", opts.flow_table_size);
        let map_paths: Vec<(&str, PathBuf)> = match &pin_dir {
            Some(dir) => {
                for sub in ["maps", PROGRAMS_DIR, INTERFACES_DIR] {
                    fs::create_dir_all(dir.join(sub)).map_err(|source| Error::PinDir {
                        path: dir.join(sub),
                        source,
                    })?;
                }
                MAPS.iter()
                    .map(|m| (*m, dir.join("maps").join(m)))
                    .collect()
            }
            None => vec![],
        };
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        let xdp: &mut Xdp = program(&mut ebpf, INGRESS_PROGRAM)?;
        xdp.load().map_err(|source| Error::Program {
            name: INGRESS_PROGRAM,
            source,
        })?;
        let tc: &mut SchedClassifier = program(&mut ebpf, EGRESS_PROGRAM)?;
        tc.load().map_err(|source| Error::Program {
            name: EGRESS_PROGRAM,
            source,
        })?;
        if let Some(dir) = &pin_dir {
            // This run's programs replace the pins of an earlier run's; an
            // attached old program lives on until the attach replaces it.
            for name in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
                let path = dir.join(PROGRAMS_DIR).join(name);
                let _ = fs::remove_file(&path);
                let prog = ebpf.program_mut(name).ok_or(Error::Missing {
                    kind: "program",
                    name,
                })?;
                prog.pin(&path).map_err(|e| Error::Pin {
                    path: path.clone(),
                    what: format!(
                        "{e}: {}",
                        std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ),
                })?;
            }
        }
        let mut dp = Dataplane {
            ebpf,
            services: BTreeMap::new(),
            recovered: StdHashMap::new(),
            pin_dir,
        };
        dp.recovered = dp
            .hash_map::<Endpoint, Service>("SERVICES")?
            .iter()
            .filter_map(|kv| kv.ok())
            .collect();
        let timeout = opts.udp_idle_timeout.as_nanos().min(u64::MAX as u128) as u64;
        dp.array::<Settings>("SETTINGS")?
            .set(
                0,
                Settings {
                    udp_idle_timeout_ns: timeout,
                },
                0,
            )
            .map_err(|source| Error::Map {
                name: "SETTINGS",
                source,
            })?;
        Ok(dp)
    }

    /// Attaches XDP ingress (driver mode, falling back to generic mode with a
    /// warning) and TC egress to `interface`; says how.
    ///
    /// With a pin directory the attachments outlive this process (see
    /// `attachment`): bpf_links pinned in `<dir>/v2/interfaces/<iface>/`, and a
    /// link an earlier run pinned gets this run's program atomically
    /// (BPF_LINK_UPDATE); netlink only where the kernel refuses that. Without
    /// one (tests) they are bpf_links (tcx for TC) that go when this process
    /// does.
    pub fn attach(&mut self, interface: &str) -> Result<Attached> {
        if let Some(dir) = self.pin_dir.clone() {
            // Recorded before attaching, so --detach-all finds a half-done one.
            let record = attachment::record_dir(&dir.join(INTERFACES_DIR), interface);
            fs::create_dir_all(&record).map_err(|source| Error::PinDir {
                path: record.clone(),
                source,
            })?;
            return attachment::attach(&mut self.ebpf, interface, &record, &dir.join(PROGRAMS_DIR));
        }
        let attach_err = |source| Error::Attach {
            interface: interface.to_owned(),
            source,
        };
        let xdp: &mut Xdp = program(&mut self.ebpf, INGRESS_PROGRAM)?;
        let mode = match xdp.attach(interface, XdpMode::Driver) {
            Ok(_) => attachment::XdpMode::Driver,
            Err(e) => {
                log::warn!(
                    "{interface}: driver-mode XDP failed ({e}); using generic mode, which is slower"
                );
                xdp.attach(interface, XdpMode::Skb).map_err(attach_err)?;
                attachment::XdpMode::Generic
            }
        };
        let tc: &mut SchedClassifier = program(&mut self.ebpf, EGRESS_PROGRAM)?;
        tc.attach(interface, TcAttachType::Egress)
            .map_err(attach_err)?;
        Ok(Attached {
            xdp: mode,
            via: Attachment::ProcessLink,
        })
    }

    /// Interfaces the programs are attached to with a pin directory
    /// (recorded by `attach`, by this run or an earlier one).
    pub fn attached_interfaces(&self) -> io::Result<Vec<String>> {
        let Some(dir) = &self.pin_dir else {
            return Ok(vec![]);
        };
        let mut names = vec![];
        for entry in fs::read_dir(dir.join(INTERFACES_DIR))? {
            let record = entry?.file_name();
            names.push(attachment::interface_name(&record.to_string_lossy()));
        }
        names.sort();
        Ok(names)
    }

    /// Takes the programs off an interface attached with a pin directory
    /// and forgets it: its pinned links are detached and unpinned (or its
    /// netlink attachment removed). An interface that no longer exists only
    /// loses its pins. Without a pin directory there is nothing to forget:
    /// the links go with this process.
    pub fn detach(&mut self, interface: &str) -> io::Result<()> {
        match &self.pin_dir {
            Some(dir) => attachment::detach(
                interface,
                &attachment::record_dir(&dir.join(INTERFACES_DIR), interface),
            ),
            None => Ok(()),
        }
    }

    /// Detaches the programs from every interface an earlier run attached
    /// to, then removes every pin under `pin_dir`: the maps, with every flow
    /// entry and counter, are freed once no process holds them.
    /// Established connections through the VIPs break.
    pub fn remove_pins(pin_dir: &Path) -> io::Result<()> {
        let dir = pin_dir.join(PIN_LAYOUT);
        match fs::read_dir(dir.join(INTERFACES_DIR)) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let interface =
                        attachment::interface_name(&entry.file_name().to_string_lossy());
                    attachment::detach(&interface, &entry.path())?;
                }
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The kernel's current weight of a service whose VIP was found in
    /// pinned maps at load (what an earlier run left).
    pub fn recovered_weight(&self, spec: &ServiceSpec) -> Option<u16> {
        self.recovered
            .get(&spec.vip_endpoint())
            .map(|s| s.weight_bp)
    }

    /// Current weight of a registered service.
    pub fn weight(&self, service: &str) -> Option<u16> {
        self.services.get(service).map(|r| r.spec.weight_bp)
    }

    /// Names of registered services, sorted.
    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// The registered definition of a service.
    pub fn spec(&self, service: &str) -> Option<&ServiceSpec> {
        self.services.get(service).map(|r| &r.spec)
    }

    /// The loaded object, for tests that run programs with BPF_PROG_TEST_RUN.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Adds a service or replaces one of the same name (same id, so its
    /// counters carry on). Established flows keep their entries.
    pub fn upsert_service(&mut self, spec: &ServiceSpec) -> Result<u32> {
        spec.check()?;
        let proto = spec.protocol.number();
        for b in spec.stable.iter().chain(&spec.canary) {
            let owner = self.services.values().find(|r| {
                r.spec.name != spec.name
                    && r.spec.protocol == spec.protocol
                    && r.spec.stable.iter().chain(&r.spec.canary).any(|x| x == b)
            });
            if let Some(owner) = owner {
                return Err(Error::BackendInUse {
                    backend: *b,
                    owner: owner.spec.name.clone(),
                });
            }
        }
        let id = match self.services.get(&spec.name) {
            Some(r) => r.id,
            None => match self.recovered.get(&spec.vip_endpoint()) {
                Some(s) => s.id,
                None => {
                    let taken = |id: u32| {
                        self.services.values().any(|r| r.id == id)
                            || self.recovered.values().any(|s| s.id == id)
                    };
                    let id = (0..MAX_SERVICES)
                        .find(|id| !taken(*id))
                        .ok_or(Error::TooManyServices { max: MAX_SERVICES })?;
                    self.reset_stats(id)?;
                    id
                }
            },
        };
        let old = self.services.get(&spec.name).map(|r| r.spec.clone());
        let vip = spec.vip_endpoint();

        let mut backends = self.array("BACKENDS")?;
        for (version, set) in [
            (VERSION_STABLE, &spec.stable),
            (VERSION_CANARY, &spec.canary),
        ] {
            for (i, b) in set.iter().enumerate() {
                backends
                    .set(backend_slot(id, version, i as u32), backend(*b), 0)
                    .map_err(|source| Error::Map {
                        name: "BACKENDS",
                        source,
                    })?;
            }
        }
        let mut owners = self.hash_map::<Endpoint, BackendOwner>("BACKEND_OWNERS")?;
        for b in spec.stable.iter().chain(&spec.canary) {
            owners
                .insert(
                    endpoint(*b, proto),
                    BackendOwner {
                        vip,
                        service_id: id,
                    },
                    0,
                )
                .map_err(|source| Error::Map {
                    name: "BACKEND_OWNERS",
                    source,
                })?;
        }
        let vip_addr = Endpoint {
            port: 0,
            proto: 0,
            ..vip
        };
        self.hash_map::<Endpoint, u32>("VIP_ADDRESSES")?
            .insert(vip_addr, 1, 0)
            .map_err(|source| Error::Map {
                name: "VIP_ADDRESSES",
                source,
            })?;
        let record = Service {
            id,
            seed: seed_from_name(spec.name.as_bytes()),
            weight_bp: spec.weight_bp,
            affinity: spec.affinity.number(),
            stable_count: spec.stable.len() as u8,
            canary_count: spec.canary.len() as u8,
            _pad: [0; 3],
        };
        self.hash_map::<Endpoint, Service>("SERVICES")?
            .insert(vip, record, 0)
            .map_err(|source| Error::Map {
                name: "SERVICES",
                source,
            })?;

        // Only now that SERVICES points at the new sets: forget what the old
        // definition had and the new one does not.
        if let Some(old) = old {
            let mut owners = self.hash_map::<Endpoint, BackendOwner>("BACKEND_OWNERS")?;
            for b in old.stable.iter().chain(&old.canary) {
                if !spec.stable.contains(b) && !spec.canary.contains(b) {
                    let _ = owners.remove(&endpoint(*b, old.protocol.number()));
                }
            }
            if old.vip != spec.vip || old.protocol != spec.protocol {
                let _ = self
                    .hash_map::<Endpoint, Service>("SERVICES")?
                    .remove(&old.vip_endpoint());
            }
        }
        self.services.insert(
            spec.name.clone(),
            Registered {
                id,
                spec: spec.clone(),
            },
        );
        self.refresh_vip_addresses()?;
        Ok(id)
    }

    /// Sets the canary share of new flows/clients: one map write.
    pub fn set_weight(&mut self, service: &str, weight_bp: u16) -> Result<()> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let mut spec = reg.spec.clone();
        spec.weight_bp = weight_bp;
        spec.check()?;
        let key = spec.vip_endpoint();
        let mut services = self.hash_map::<Endpoint, Service>("SERVICES")?;
        let mut record = services.get(&key, 0).map_err(|source| Error::Map {
            name: "SERVICES",
            source,
        })?;
        record.weight_bp = weight_bp;
        services
            .insert(key, record, 0)
            .map_err(|source| Error::Map {
                name: "SERVICES",
                source,
            })?;
        if let Some(r) = self.services.get_mut(service) {
            r.spec.weight_bp = weight_bp;
        }
        Ok(())
    }

    /// Stable and canary counters of a service, summed over CPUs.
    pub fn stats(&self, service: &str) -> Result<[VersionStats; 2]> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let map = self.ebpf.map("STATS").ok_or(Error::Missing {
            kind: "map",
            name: "STATS",
        })?;
        let stats: PerCpuArray<_, VersionStats> =
            PerCpuArray::try_from(map).map_err(|source| Error::Map {
                name: "STATS",
                source,
            })?;
        let mut out = [VersionStats::default(); 2];
        for (version, total) in [VERSION_STABLE, VERSION_CANARY].into_iter().zip(&mut out) {
            let per_cpu = stats
                .get(&stats_slot(reg.id, version), 0)
                .map_err(|source| Error::Map {
                    name: "STATS",
                    source,
                })?;
            per_cpu.iter().for_each(|v| total.add(v));
        }
        Ok(out)
    }

    /// Verdict counters of both programs, summed over CPUs.
    pub fn verdicts(&self) -> Result<Verdicts> {
        let map = self.ebpf.map("VERDICTS").ok_or(Error::Missing {
            kind: "map",
            name: "VERDICTS",
        })?;
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| Error::Map {
                name: "VERDICTS",
                source,
            })?;
        let mut out = Verdicts::default();
        for i in 0..verdict::COUNT {
            let sum = |slot| -> Result<u64> {
                let v = counts.get(&slot, 0).map_err(|source| Error::Map {
                    name: "VERDICTS",
                    source,
                })?;
                Ok(v.iter().sum())
            };
            out.ingress[i as usize] = sum(i)?;
            out.egress[i as usize] = sum(verdict::COUNT + i)?;
        }
        Ok(out)
    }

    /// Removes a service: its SERVICES entry first (new packets to the VIP
    /// pass untouched from then on), then what only it used.
    pub fn remove_service(&mut self, service: &str) -> Result<()> {
        let reg = self
            .services
            .remove(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let vip = reg.spec.vip_endpoint();
        self.recovered.remove(&vip);
        let _ = self.hash_map::<Endpoint, Service>("SERVICES")?.remove(&vip);
        let mut owners = self.hash_map::<Endpoint, BackendOwner>("BACKEND_OWNERS")?;
        for b in reg.spec.stable.iter().chain(&reg.spec.canary) {
            let _ = owners.remove(&endpoint(*b, reg.spec.protocol.number()));
        }
        self.refresh_vip_addresses()
    }

    /// Forgets what an earlier run left in pinned maps and the current
    /// services do not claim: services whose VIP is gone, and backend owners
    /// of backends no service has now. Call once every configured service is
    /// registered.
    pub fn prune_unclaimed(&mut self) -> Result<Vec<Endpoint>> {
        let vips: Vec<Endpoint> = self
            .services
            .values()
            .map(|r| r.spec.vip_endpoint())
            .collect();
        let backends: Vec<Endpoint> = self
            .services
            .values()
            .flat_map(|r| {
                let proto = r.spec.protocol.number();
                r.spec
                    .stable
                    .iter()
                    .chain(&r.spec.canary)
                    .map(move |b| endpoint(*b, proto))
            })
            .collect();
        let stale = retain_keys(&mut self.hash_map::<Endpoint, Service>("SERVICES")?, &vips);
        retain_keys(
            &mut self.hash_map::<Endpoint, BackendOwner>("BACKEND_OWNERS")?,
            &backends,
        );
        self.recovered.clear();
        self.refresh_vip_addresses()?;
        Ok(stale)
    }

    /// Entries the flow table was created with (a reused pinned table keeps
    /// the size it was first made with).
    pub fn flow_table_capacity(&self) -> Result<u32> {
        let map = self.ebpf.map("FLOWS").ok_or(Error::Missing {
            kind: "map",
            name: "FLOWS",
        })?;
        let data: &MapData = match map {
            aya::maps::Map::LruHashMap(m) => m,
            _ => {
                return Err(Error::Missing {
                    kind: "LRU hash map",
                    name: "FLOWS",
                });
            }
        };
        data.info()
            .map(|i| i.max_entries())
            .map_err(|source| Error::Map {
                name: "FLOWS",
                source,
            })
    }

    /// Zeroes the counters of a service slot before a new service takes it.
    fn reset_stats(&mut self, id: u32) -> Result<()> {
        let map = self.ebpf.map_mut("STATS").ok_or(Error::Missing {
            kind: "map",
            name: "STATS",
        })?;
        let mut stats: PerCpuArray<_, VersionStats> =
            PerCpuArray::try_from(map).map_err(|source| Error::Map {
                name: "STATS",
                source,
            })?;
        let cpus = nr_cpus().map_err(|(_, source)| Error::Cpus(source))?;
        for version in [VERSION_STABLE, VERSION_CANARY] {
            let zeros =
                PerCpuValues::try_from(vec![VersionStats::default(); cpus]).map_err(Error::Cpus)?;
            stats
                .set(stats_slot(id, version), zeros, 0)
                .map_err(|source| Error::Map {
                    name: "STATS",
                    source,
                })?;
        }
        Ok(())
    }

    /// Keeps VIP_ADDRESSES equal to the set of addresses that have a service.
    fn refresh_vip_addresses(&mut self) -> Result<()> {
        let wanted: Vec<Endpoint> = self
            .services
            .values()
            .map(|r| Endpoint {
                port: 0,
                proto: 0,
                ..r.spec.vip_endpoint()
            })
            .collect();
        retain_keys(
            &mut self.hash_map::<Endpoint, u32>("VIP_ADDRESSES")?,
            &wanted,
        );
        Ok(())
    }

    fn hash_map<K: Pod, V: Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(Error::Missing { kind: "map", name })?;
        HashMap::try_from(map).map_err(|source| Error::Map { name, source })
    }

    fn array<V: Pod>(&mut self, name: &'static str) -> Result<Array<&mut MapData, V>> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(Error::Missing { kind: "map", name })?;
        Array::try_from(map).map_err(|source| Error::Map { name, source })
    }
}

/// Removes every key of `map` not in `keep`; returns the removed ones.
fn retain_keys<V: Pod>(
    map: &mut HashMap<&mut MapData, Endpoint, V>,
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

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(Error::Missing {
        kind: "program",
        name,
    })?;
    prog.try_into()
        .map_err(|source| Error::Program { name, source })
}

// The per-version slot layout must leave room for the largest backend set.
const _: () = assert!(MAX_BACKENDS <= u8::MAX as u32);
