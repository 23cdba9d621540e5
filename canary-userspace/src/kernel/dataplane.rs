//! The kernel data path seen from userspace: load the embedded object, attach
//! the programs, write services and weights, read counters.
//!
//! Write order matters because the programs run while we write: a service's
//! backends and owners are written before the SERVICES entry that makes the
//! data path use them, and removed only after it.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap, HashSet},
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{MapData, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
    util::nr_cpus,
};
use canary_common::{
    BackendOwner, DEFAULT_FLOW_TABLE_SIZE, DEFAULT_UDP_IDLE_TIMEOUT_NS, Endpoint, FlowKey,
    MAX_BACKENDS, MAX_SERVICES, Service, Settings, TAIL_EGRESS_H2, VERSION_CANARY, VERSION_STABLE,
    VersionStats, backend_slot,
    h2::H2Signals,
    half_open_size,
    hash::seed_from_name,
    names::{self, EGRESS_H2_PROGRAM, EGRESS_PROGRAM, INGRESS_PROGRAM, INGRESS_TC_PROGRAM},
    signals::{MAX_SAMPLE_SHIFT, Signals},
    stats_slot,
};

use crate::{
    error::{Error, Result},
    kernel::attachment::{self, program},
    kernel::h2_ring::HeaderRing,
    kernel::inspect,
    kernel::maps::{Counters, Maps, map_err, retain_keys},
    kernel::pins::{PinLayout, interface_name},
    model::kinds::{Failsafe, Hook},
    model::service::{ServiceSpec, backend, endpoint, ip_of},
    model::signals::VersionSignals,
    model::weight::Weight,
};

/// The eBPF object built by build.rs from canary-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/canary"));

/// Choices made once, at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Entries in the flow table; the most concurrent flows pinned to a
    /// version before the least recently used one is evicted.
    pub flow_table_size: u32,
    /// How long an idle UDP flow keeps its backend.
    pub udp_idle_timeout: Duration,
    /// bpffs directory to pin maps and programs under (`<dir>/v3/maps`,
    /// `<dir>/v3/programs`; see `pins`). Pinned state outlives the process, and a later load
    /// with the same directory reuses it: flows, weights and counters carry
    /// on. `None` keeps everything tied to this process (tests).
    pub pin_dir: Option<PathBuf>,
    /// Measure the health signals (requests, latency, status classes,
    /// resets...). Off only to measure what they cost: the verifier then
    /// removes their code from both programs.
    pub signals: bool,
    /// Above 320 request starts a second per CPU and version, time a
    /// sample of them, not every one (`canary_common::signals::Sampler`).
    /// Off, every request start reads the clock.
    pub latency_sampling: bool,
    /// What new flows do when `heartbeat` has not been called for
    /// `failsafe_timeout` (zero: never act).
    pub failsafe: Failsafe,
    pub failsafe_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            udp_idle_timeout: Duration::from_nanos(DEFAULT_UDP_IDLE_TIMEOUT_NS),
            pin_dir: None,
            signals: true,
            latency_sampling: true,
            failsafe: Failsafe::Revert,
            failsafe_timeout: Duration::ZERO,
        }
    }
}

/// How the programs are attached to an interface.
pub use crate::kernel::attachment::{Attached, Attachment};
pub use crate::kernel::maps::Verdicts;

/// A service the data path serves: its slot in STATS and BACKENDS, and
/// what it was registered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub spec: ServiceSpec,
}

/// A service's next backend set, written to the bank the data path does not
/// read; `Dataplane::publish` switches the service to it in one map write.
#[must_use = "a staged set serves nothing until it is published"]
pub struct Staged {
    id: u32,
    bank: u8,
    spec: ServiceSpec,
}

/// What `remove_pins` found and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovedPins {
    /// Whether there was a pin directory of this layout at all.
    pub found: bool,
    /// Interfaces the programs were taken off.
    pub interfaces: Vec<String>,
}

pub struct Dataplane {
    /// The loaded object; its maps have been taken into `maps` and `counters`.
    ebpf: Ebpf,
    maps: Maps,
    counters: Arc<Counters>,
    /// STATS again, writable: zeroes the slot a new service takes.
    stats_writer: PerCpuArray<MapData, VersionStats>,
    /// SIGNALS again, writable: zeroes the slot a new service takes.
    signals_writer: PerCpuArray<MapData, Signals>,
    h2_writer: PerCpuArray<MapData, H2Signals>,
    services: BTreeMap<String, Registered>,
    /// SERVICES entries found in pinned maps at load, by VIP: their ids are
    /// reused so counters and flow entries keep meaning the same service.
    recovered: StdHashMap<Endpoint, Service>,
    pins: Option<PinLayout>,
}

/// Loads `canary_egress_h2` and puts it where egress tail-calls it (the
/// HTTP/2 walk of replies needs a stack of its own). The program array
/// holds it, pinned with the other maps, so it lives on with the attached
/// programs when canaryd stops; the next run puts its own in its place.
fn install_tail_calls(ebpf: &mut Ebpf) -> Result<()> {
    let name = EGRESS_H2_PROGRAM;
    let tc: &mut SchedClassifier = program(ebpf, name)?;
    tc.load()
        .map_err(|source| Error::Program { name, source })?;
    let fd = tc
        .fd()
        .map_err(|source| Error::Program { name, source })?
        .try_clone()
        .map_err(|source| Error::Program {
            name,
            source: source.into(),
        })?;
    let map = ebpf.map_mut(names::TAIL_CALLS).ok_or(Error::Missing {
        kind: "map",
        name: names::TAIL_CALLS,
    })?;
    let mut calls = ProgramArray::try_from(map).map_err(map_err(names::TAIL_CALLS))?;
    calls
        .set(TAIL_EGRESS_H2, &fd, 0)
        .map_err(map_err(names::TAIL_CALLS))
}

impl Dataplane {
    /// Loads the programs into the kernel (not attached yet).
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let pins = opts.pin_dir.as_deref().map(PinLayout::new);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::FLOWS, opts.flow_table_size);
        loader.map_max_entries(names::HALF_OPEN, half_open_size(opts.flow_table_size));
        // HTTP/2 connections are few and long-lived beside the flows; their
        // streams in flight at most one per flow.
        loader.map_max_entries(names::H2_CONNS, half_open_size(opts.flow_table_size));
        loader.map_max_entries(names::H2_STREAMS, opts.flow_table_size);
        let signals = u8::from(opts.signals);
        loader.override_global(names::SIGNALS_ENABLED, &signals, true);
        let max_shift: u32 = if opts.latency_sampling {
            MAX_SAMPLE_SHIFT
        } else {
            0
        };
        loader.override_global(names::LATENCY_MAX_SHIFT, &max_shift, true);
        let mut map_paths = vec![];
        let mut converted_signals = vec![];
        if let Some(bpffs) = opts.pin_dir.as_deref()
            && let Some(carried) = crate::kernel::upgrade::carry_over(OBJECT, bpffs)?
        {
            log::info!("{}", carried.describe());
            converted_signals = carried.signals;
        }
        if let Some(pins) = &pins {
            for dir in [pins.maps(), pins.programs(), pins.interfaces()] {
                fs::create_dir_all(&dir).map_err(|source| Error::PinDir { path: dir, source })?;
            }
            map_paths = names::MAPS.iter().map(|m| (*m, pins.map(m))).collect();
            // Before aya reuses them by name, unseen.
            crate::kernel::pin_check::check(OBJECT, &pins.maps())?;
        }
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        let xdp: &mut Xdp = program(&mut ebpf, INGRESS_PROGRAM)?;
        xdp.load().map_err(|source| Error::Program {
            name: INGRESS_PROGRAM,
            source,
        })?;
        // Both TC programs are loaded whatever the interfaces' hooks: an
        // interface may move to the other hook on a restart.
        for name in [INGRESS_TC_PROGRAM, EGRESS_PROGRAM] {
            let tc: &mut SchedClassifier = program(&mut ebpf, name)?;
            tc.load()
                .map_err(|source| Error::Program { name, source })?;
        }
        install_tail_calls(&mut ebpf)?;
        if let Some(pins) = &pins {
            // This run's programs replace the pins of an earlier run's; an
            // attached old program lives on until the attach replaces it.
            for name in [INGRESS_PROGRAM, INGRESS_TC_PROGRAM, EGRESS_PROGRAM] {
                let path = pins.program(name);
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
        let mut maps = Maps::take(&mut ebpf)?;
        let counters = Arc::new(Counters::take(&mut ebpf)?);
        let stats_writer = counters.stats_writer()?;
        let mut signals_writer = counters.signals_writer()?;
        let h2_writer = counters.h2_writer()?;
        for (slot, per_cpu) in converted_signals {
            let values = PerCpuValues::try_from(per_cpu).map_err(Error::Cpus)?;
            signals_writer
                .set(slot, values, 0)
                .map_err(map_err(names::SIGNALS))?;
        }
        let recovered = maps.services.iter().filter_map(|kv| kv.ok()).collect();
        let timeout = opts.udp_idle_timeout.as_nanos().min(u64::MAX as u128) as u64;
        maps.settings
            .set(
                0,
                Settings {
                    udp_idle_timeout_ns: timeout,
                    heartbeat_ns: monotonic_ns(),
                    failsafe_timeout_ns: opts.failsafe_timeout.as_nanos().min(u64::MAX as u128)
                        as u64,
                    failsafe: opts.failsafe.number(),
                    _pad: [0; 4],
                },
                0,
            )
            .map_err(map_err(names::SETTINGS))?;
        Ok(Dataplane {
            ebpf,
            maps,
            counters,
            stats_writer,
            signals_writer,
            h2_writer,
            services: BTreeMap::new(),
            recovered,
            pins,
        })
    }

    /// Attaches ingress at `hook` (XDP: driver mode, falling back to generic
    /// mode with a warning; TC: a tcx ingress link) and TC egress to
    /// `interface`; says how.
    ///
    /// With a pin directory the attachments outlive this process (see
    /// `attachment`): bpf_links pinned in `<dir>/v3/interfaces/<iface>/`, and a
    /// link an earlier run pinned gets this run's program atomically
    /// (BPF_LINK_UPDATE); netlink only where the kernel refuses that. Without
    /// one (tests) they are bpf_links (tcx for TC) that go when this process
    /// does.
    pub fn attach(&mut self, interface: &str, hook: Hook) -> Result<Attached> {
        if let Some(pins) = self.pins.clone() {
            // Recorded before attaching, so --detach-all finds a half-done one.
            let record = pins.interface(interface);
            fs::create_dir_all(&record).map_err(|source| Error::PinDir {
                path: record.clone(),
                source,
            })?;
            return attachment::attach(&mut self.ebpf, interface, hook, &record, &pins.programs());
        }
        let attach_err = |source| Error::Attach {
            interface: interface.to_owned(),
            source,
        };
        if hook == Hook::Tc {
            for (name, attach_type) in [
                (INGRESS_TC_PROGRAM, TcAttachType::Ingress),
                (EGRESS_PROGRAM, TcAttachType::Egress),
            ] {
                let tc: &mut SchedClassifier = program(&mut self.ebpf, name)?;
                tc.attach(interface, attach_type).map_err(attach_err)?;
            }
            return Ok(Attached {
                hook,
                xdp: None,
                via: Attachment::ProcessLink,
            });
        }
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
            hook,
            xdp: Some(mode),
            via: Attachment::ProcessLink,
        })
    }

    /// This load's program ids and the ids of the maps pinned when it was
    /// loaded: what `inspect` compares the kernel with. Read while canaryd
    /// still has every capability (before `caps::drop_to_kept`).
    pub fn expected(&mut self) -> Result<inspect::Expected> {
        let xdp: &mut Xdp = program(&mut self.ebpf, INGRESS_PROGRAM)?;
        let ingress_id = xdp
            .info()
            .map_err(|source| Error::Program {
                name: INGRESS_PROGRAM,
                source,
            })?
            .id();
        let mut tc_id = |name| -> Result<u32> {
            let tc: &mut SchedClassifier = program(&mut self.ebpf, name)?;
            Ok(tc
                .info()
                .map_err(|source| Error::Program { name, source })?
                .id())
        };
        let ingress_tc_id = tc_id(INGRESS_TC_PROGRAM)?;
        let egress_id = tc_id(EGRESS_PROGRAM)?;
        let mut maps = vec![];
        if let Some(pins) = &self.pins {
            for name in names::MAPS {
                let path = pins.map(name);
                let id = super::sys::pinned_map_id(&path).map_err(|e| Error::Pin {
                    path: path.clone(),
                    what: format!("reading its map id: {e}"),
                })?;
                maps.push((path, id));
            }
        }
        Ok(inspect::Expected {
            ingress_id,
            ingress_tc_id,
            egress_id,
            maps,
        })
    }

    /// Interfaces the programs are attached to with a pin directory
    /// (recorded by `attach`, by this run or an earlier one).
    pub fn attached_interfaces(&self) -> io::Result<Vec<String>> {
        let Some(pins) = &self.pins else {
            return Ok(vec![]);
        };
        let mut names = vec![];
        for entry in fs::read_dir(pins.interfaces())? {
            let record = entry?.file_name();
            names.push(interface_name(&record.to_string_lossy()));
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
        match &self.pins {
            Some(pins) => attachment::detach(interface, &pins.interface(interface)),
            None => Ok(()),
        }
    }

    /// Detaches the programs from every interface an earlier run attached
    /// to, then removes every pin under `pin_dir`: the maps, with every flow
    /// entry and counter, are freed once no process holds them.
    /// Established connections through the VIPs break.
    pub fn remove_pins(pin_dir: &Path) -> io::Result<RemovedPins> {
        let removed = Dataplane::remove_layout(pin_dir)?;
        // The bpffs directory itself too, unless something else lives there
        // (another layout version's pins, say).
        let _ = fs::remove_dir(pin_dir);
        Ok(removed)
    }

    /// `remove_pins`, keeping `pin_dir` itself: a daemon that starts clean
    /// (`--reset`) holds its lock on that directory (see `lock`).
    pub fn remove_layout(pin_dir: &Path) -> io::Result<RemovedPins> {
        let pins = PinLayout::new(pin_dir);
        let mut removed = RemovedPins {
            found: pins.dir.exists(),
            interfaces: vec![],
        };
        match fs::read_dir(pins.interfaces()) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let interface = interface_name(&entry.file_name().to_string_lossy());
                    attachment::detach(&interface, &entry.path())?;
                    removed.interfaces.push(interface);
                }
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        removed.interfaces.sort();
        match fs::remove_dir_all(&pins.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(removed)
    }

    /// The kernel's current weight of a service whose VIP was found in
    /// pinned maps at load (what an earlier run left); None also when the
    /// map holds no weight (above 10000 basis points).
    pub fn recovered_weight(&self, spec: &ServiceSpec) -> Option<Weight> {
        self.recovered
            .get(&spec.vip_endpoint())
            .and_then(|s| Weight::from_bp(s.weight_bp))
    }

    /// Current weight of a registered service.
    pub fn weight(&self, service: &str) -> Option<Weight> {
        self.services.get(service).map(|r| r.spec.weight)
    }

    /// Names of registered services, sorted.
    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// The registered definition of a service.
    pub fn spec(&self, service: &str) -> Option<&ServiceSpec> {
        self.services.get(service).map(|r| &r.spec)
    }

    /// Every registered service with its slot, sorted by name.
    pub fn registered(&self) -> Vec<Registered> {
        self.services.values().cloned().collect()
    }

    /// The loaded object's programs, for tests that run them with
    /// BPF_PROG_TEST_RUN (its maps are in `maps_mut`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Typed handles on the maps, for tests that look inside the data path.
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// The H2_HEADERS ring buffer, taken out of the object (once: a second
    /// call finds it gone). Needs a tokio runtime.
    pub fn take_h2_headers(&mut self) -> Result<HeaderRing> {
        HeaderRing::take(&mut self.ebpf)
    }

    /// The per-CPU counters, shared with readers that must not wait on the
    /// owner of this data path.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Adds a service or replaces one of the same name (same id, so its
    /// counters carry on). Established flows keep their entries. New flows
    /// see the old backend set or the new one, never a mix: see `stage`.
    pub fn upsert_service(&mut self, spec: &ServiceSpec) -> Result<u32> {
        let staged = self.stage(spec)?;
        self.publish(staged)
    }

    /// Checks `spec` and writes its backends to the bank of BACKENDS that
    /// the data path does not read for this service now. Nothing a packet
    /// sees changes until `publish`.
    pub fn stage(&mut self, spec: &ServiceSpec) -> Result<Staged> {
        spec.check()?;
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
        // The bank this service's live record points at, if the data path
        // has one (at its registered VIP, or at the new one for a service
        // recovered from pins). A record of another service, which may sit
        // at the VIP this one moves to, says nothing about this one's banks.
        let live = self
            .services
            .get(&spec.name)
            .map(|r| r.spec.vip_endpoint())
            .into_iter()
            .chain([spec.vip_endpoint()])
            .filter_map(|vip| self.maps.services.get(&vip, 0).ok())
            .find(|record| record.id == id);
        let bank = match live {
            Some(record) => 1 - record.bank.min(1),
            None => 0,
        };
        for (version, set) in [
            (VERSION_STABLE, &spec.stable),
            (VERSION_CANARY, &spec.canary),
        ] {
            for (i, b) in set.iter().enumerate() {
                self.maps
                    .backends
                    .set(backend_slot(id, bank, version, i as u32), backend(*b), 0)
                    .map_err(map_err(names::BACKENDS))?;
            }
        }
        Ok(Staged {
            id,
            bank,
            spec: spec.clone(),
        })
    }

    /// Switches a service to its staged backend set and weight: owners and
    /// the VIP address first, then the SERVICES record in one map write,
    /// then what only the old definition used goes.
    pub fn publish(&mut self, staged: Staged) -> Result<u32> {
        let Staged { id, bank, spec } = staged;
        let proto = spec.protocol.number();
        let vip = spec.vip_endpoint();
        for b in spec.stable.iter().chain(&spec.canary) {
            self.maps
                .backend_owners
                .insert(
                    endpoint(*b, proto),
                    BackendOwner {
                        vip,
                        service_id: id,
                    },
                    0,
                )
                .map_err(map_err(names::BACKEND_OWNERS))?;
        }
        let record = Service {
            id,
            seed: seed_from_name(spec.name.as_bytes()),
            weight_bp: spec.weight.bp(),
            affinity: spec.affinity.number(),
            stable_count: spec.stable.len() as u8,
            canary_count: spec.canary.len() as u8,
            bank,
            app_protocol: spec.app_protocol.number(),
            _pad: 0,
        };
        self.maps
            .services
            .insert(vip, record, 0)
            .map_err(map_err(names::SERVICES))?;

        // Only now that SERVICES points at the new set: forget what the old
        // definition had and the new one does not, where it is still this
        // service's (in one reload another service may take over a VIP or
        // a backend this one lets go of).
        let old = self.services.get(&spec.name).map(|r| r.spec.clone());
        if let Some(old) = old {
            for b in old.stable.iter().chain(&old.canary) {
                if !spec.stable.contains(b) && !spec.canary.contains(b) {
                    self.forget_owner(endpoint(*b, old.protocol.number()), id);
                }
            }
            if old.vip != spec.vip || old.protocol != spec.protocol {
                self.forget_record(old.vip_endpoint(), id);
            }
        }
        self.services
            .insert(spec.name.clone(), Registered { id, spec });
        Ok(id)
    }

    /// Sets the canary share of new flows/clients: one map write.
    pub fn set_weight(&mut self, service: &str, weight: Weight) -> Result<()> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let mut spec = reg.spec.clone();
        spec.weight = weight;
        spec.check()?;
        let key = spec.vip_endpoint();
        let mut record = self
            .maps
            .services
            .get(&key, 0)
            .map_err(map_err(names::SERVICES))?;
        record.weight_bp = weight.bp();
        self.maps
            .services
            .insert(key, record, 0)
            .map_err(map_err(names::SERVICES))?;
        if let Some(r) = self.services.get_mut(service) {
            r.spec.weight = weight;
        }
        Ok(())
    }

    /// Stable and canary counters of a service, summed over CPUs.
    pub fn stats(&self, service: &str) -> Result<[VersionStats; 2]> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        self.counters.version_stats(reg.id)
    }

    /// Stable and canary health signals of a service, summed over CPUs.
    pub fn signals(&self, service: &str) -> Result<[Signals; 2]> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        self.counters.version_signals(reg.id)
    }

    /// Stable and canary whole readings of a service (`Counters::version_reading`).
    pub fn reading(&self, service: &str) -> Result<[VersionSignals; 2]> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        self.counters.version_reading(reg.id)
    }

    /// Verdict counters of both programs, summed over CPUs.
    pub fn verdicts(&self) -> Result<Verdicts> {
        self.counters.verdicts()
    }

    /// Removes a service: its SERVICES entry first (new packets to the VIP
    /// pass untouched from then on), then what only it used.
    pub fn remove_service(&mut self, service: &str) -> Result<()> {
        let reg = self
            .services
            .remove(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let vip = reg.spec.vip_endpoint();
        if let Ok(record) = self.maps.services.get(&vip, 0)
            && record.id == reg.id
        {
            // Kept until `forget_removed`: a reload that fails after this
            // and puts the service back gets the same slot and counters.
            self.recovered.insert(vip, record);
        }
        self.forget_record(vip, reg.id);
        for b in reg.spec.stable.iter().chain(&reg.spec.canary) {
            self.forget_owner(endpoint(*b, reg.spec.protocol.number()), reg.id);
        }
        Ok(())
    }

    /// Tells the data path canaryd is alive: the failsafe acts only when
    /// this has not been called for its timeout.
    pub fn heartbeat(&mut self) -> Result<()> {
        let mut s = self
            .maps
            .settings
            .get(&0, 0)
            .map_err(map_err(names::SETTINGS))?;
        s.heartbeat_ns = monotonic_ns();
        self.maps
            .settings
            .set(0, s, 0)
            .map_err(map_err(names::SETTINGS))
    }

    /// Removes the flow entries of `service`'s `version` (their next
    /// packets are decided again); returns how many went.
    pub fn forget_flows(&mut self, service: &str, version: u8) -> Result<u64> {
        let reg = self
            .services
            .get(service)
            .ok_or_else(|| Error::UnknownService(service.into()))?;
        let id = reg.id;
        let mut n = 0;
        // Both tables: a half-open flow left behind would still be answered
        // by the version it was decided for.
        for table in [&mut self.maps.flows, &mut self.maps.half_open] {
            let doomed: Vec<_> = table
                .iter()
                .filter_map(|kv| kv.ok())
                .filter(|(_, e)| e.service_id == id && e.version == version)
                .map(|(k, _)| k)
                .collect();
            for key in &doomed {
                if table.remove(key).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The clients of established flows, by the service address (VIP,
    /// port, protocol) they came to, from at most `max_entries` entries of
    /// the flow table: enough to know where clients come in from without
    /// walking a million-entry table entry by entry.
    pub fn flow_clients(&self, max_entries: usize) -> HashSet<(Endpoint, IpAddr)> {
        self.maps
            .flows
            .keys()
            .filter_map(|k| k.ok())
            .take(max_entries)
            .map(|key| (flow_service(&key), ip_of(key.client, key.family)))
            .collect()
    }

    /// Frees the slots of services removed since the last call (or load),
    /// once no revert can want them back, and drops their flows' entries
    /// (see `forget_orphan_flows`); returns how many entries went.
    pub fn forget_removed(&mut self) -> u64 {
        let removed = !self.recovered.is_empty();
        self.recovered.clear();
        if removed {
            self.forget_orphan_flows()
        } else {
            0
        }
    }

    /// Removes the flow entries whose service address (VIP, port,
    /// protocol) no service has now: the data path follows an established
    /// TCP entry without looking at SERVICES (canary-ebpf's ingress.rs), so
    /// an entry outliving its service would keep sending that flow to a
    /// backend whose replies nothing translates any more. Without its
    /// entry, the flow's packets pass to the host as any packet for an
    /// address without a service. Returns how many entries went.
    fn forget_orphan_flows(&mut self) -> u64 {
        let vips: Vec<Endpoint> = self
            .services
            .values()
            .map(|r| r.spec.vip_endpoint())
            .collect();
        let mut n = 0;
        for table in [&mut self.maps.flows, &mut self.maps.half_open] {
            let doomed: Vec<FlowKey> = table
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| !vips.contains(&flow_service(k)))
                .collect();
            for key in &doomed {
                if table.remove(key).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Removes the SERVICES record at `vip` if it is service `id`'s.
    fn forget_record(&mut self, vip: Endpoint, id: u32) {
        if self.maps.services.get(&vip, 0).is_ok_and(|r| r.id == id) {
            let _ = self.maps.services.remove(&vip);
        }
    }

    /// Removes the BACKEND_OWNERS entry of `backend` if service `id` owns it.
    fn forget_owner(&mut self, backend: Endpoint, id: u32) {
        if self
            .maps
            .backend_owners
            .get(&backend, 0)
            .is_ok_and(|o| o.service_id == id)
        {
            let _ = self.maps.backend_owners.remove(&backend);
        }
    }

    /// Forgets what an earlier run left in pinned maps and the current
    /// services do not claim: services whose VIP is gone, and backend owners
    /// of backends no service has now. Call once every configured service is
    /// registered.
    pub fn prune_unclaimed(&mut self) -> Vec<Endpoint> {
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
        let stale = retain_keys(&mut self.maps.services, &vips);
        retain_keys(&mut self.maps.backend_owners, &backends);
        self.recovered.clear();
        if !stale.is_empty() {
            self.forget_orphan_flows();
        }
        stale
    }

    /// Entries the flow table was created with (a reused pinned table keeps
    /// the size it was first made with).
    pub fn flow_table_capacity(&self) -> Result<u32> {
        self.maps.flow_table_capacity()
    }

    /// Zeroes the counters, signals and latency sampler of a service slot
    /// before a new service takes it: a removed service's history must not
    /// pass for the new one's.
    fn reset_stats(&mut self, id: u32) -> Result<()> {
        let cpus = nr_cpus().map_err(|(_, source)| Error::Cpus(source))?;
        fn zeros<T: Pod + Default>(cpus: usize) -> Result<PerCpuValues<T>> {
            PerCpuValues::try_from(vec![T::default(); cpus]).map_err(Error::Cpus)
        }
        for version in [VERSION_STABLE, VERSION_CANARY] {
            let slot = stats_slot(id, version);
            self.stats_writer
                .set(slot, zeros(cpus)?, 0)
                .map_err(map_err(names::STATS))?;
            self.signals_writer
                .set(slot, zeros(cpus)?, 0)
                .map_err(map_err(names::SIGNALS))?;
            self.h2_writer
                .set(slot, zeros(cpus)?, 0)
                .map_err(map_err(names::H2_SIGNALS))?;
            self.counters
                .headers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reset(id, version);
            self.maps
                .sampler
                .set(slot, zeros(cpus)?, 0)
                .map_err(map_err(names::SAMPLER))?;
        }
        Ok(())
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// The per-version slot layout must leave room for the largest backend set.
const _: () = assert!(MAX_BACKENDS <= u8::MAX as u32);

/// The service address a flow was made for.
fn flow_service(k: &FlowKey) -> Endpoint {
    Endpoint {
        addr: k.vip,
        port: k.vip_port,
        proto: k.proto,
        family: k.family,
    }
}
