//! The daemon's small state file: weights set at run time (`canaryctl
//! set-weight`), so a restart keeps them instead of going back to the
//! config's weight. Written atomically (temporary file, fsync, rename), so a
//! crash leaves either the old or the new file, never half of one.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    controller::run::RolloutRun,
    model::service::ServiceSpec,
    model::weight::{Weight, WeightSource},
};

pub const STATE_FILE: &str = "state.json";
/// Far above any real state file (a few KiB per rollout history); a larger
/// file is not canaryd's.
const MAX_STATE_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// By service name.
    pub weights: BTreeMap<String, WeightOverride>,
    /// Rollouts, running or ended, by service name: a restart resumes a
    /// running one at the same step.
    #[serde(default)]
    pub rollouts: BTreeMap<String, RolloutRun>,
    /// Rollouts that ended rolled back, by service name.
    #[serde(default)]
    pub rollbacks: BTreeMap<String, u64>,
    /// The last rollout generation handed out (`RolloutState::generation`):
    /// kept across restarts so a generation is never handed out twice.
    #[serde(default)]
    pub generations: u64,
    /// In a fleet: the fleet generation this host last applied, by service
    /// (`daemon::fleet`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet_applied: BTreeMap<String, u64>,
    /// In a fleet: each service's fleet rollout as hosts keep it (phase,
    /// step, looks), for status and metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet_lines: BTreeMap<String, crate::api::fleet::FleetLine>,
}

/// A weight set at run time, and the config weight it overrode: when the
/// config's weight is edited later, the config wins again. Both basis
/// points in the file, under the names every release has written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightOverride {
    #[serde(rename = "weight_bp")]
    pub weight: Weight,
    #[serde(rename = "config_weight_bp")]
    pub config_weight: Weight,
}

impl State {
    /// A generation no rollout of this daemon has had.
    pub fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Forgets overrides set against a config weight the config no longer
    /// has (or for services it no longer has), so an old override cannot
    /// come back if the old value does, and the rollouts and rollback
    /// counts of services the config no longer has, so the state file does
    /// not grow with every service ever served. Returns whether anything
    /// went.
    pub fn forget_obsolete(&mut self, services: &[ServiceSpec]) -> bool {
        let before = (
            self.weights.len(),
            self.rollouts.len(),
            self.rollbacks.len(),
        );
        self.weights.retain(|name, o| {
            services
                .iter()
                .any(|s| &s.name == name && s.weight == o.config_weight)
        });
        let configured = |name: &String| services.iter().any(|s| &s.name == name);
        self.rollouts.retain(|name, _| configured(name));
        self.rollbacks.retain(|name, _| configured(name));
        self.fleet_applied.retain(|name, _| configured(name));
        self.fleet_lines.retain(|name, _| configured(name));
        (
            self.weights.len(),
            self.rollouts.len(),
            self.rollbacks.len(),
        ) != before
    }

    /// Whether `weight_for` gives a runtime weight or the config's.
    pub fn source_of(&self, service: &str, config_weight: Weight) -> WeightSource {
        match self.weights.get(service) {
            Some(o) if o.config_weight == config_weight => WeightSource::Runtime,
            _ => WeightSource::Config,
        }
    }

    /// The weight a service should run with, given its config weight.
    pub fn weight_for(&self, service: &str, config_weight: Weight) -> Weight {
        match self.weights.get(service) {
            Some(o) if o.config_weight == config_weight => o.weight,
            _ => config_weight,
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// Reads the state file; a missing file is an empty state. Every error
/// names the file and says what to do.
pub fn load(state_dir: &Path) -> io::Result<State> {
    let file = path(state_dir);
    let bad = |kind: io::ErrorKind, what: String| {
        io::Error::new(
            kind,
            format!(
                "{}: {what} (move it away to start from the config's weights)",
                file.display()
            ),
        )
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer, and start-up with it.
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(bad(e.kind(), e.to_string())),
    };
    let meta = f.metadata().map_err(|e| bad(e.kind(), e.to_string()))?;
    if !meta.is_file() {
        let kind = match meta.file_type() {
            t if t.is_dir() => "a directory",
            t if t.is_fifo() => "a FIFO",
            t if t.is_socket() => "a socket",
            t if t.is_char_device() || t.is_block_device() => "a device",
            _ => "not a regular file",
        };
        return Err(bad(
            io::ErrorKind::InvalidData,
            format!("is {kind}, not canaryd's state file"),
        ));
    }
    if meta.len() > MAX_STATE_BYTES {
        return Err(bad(
            io::ErrorKind::InvalidData,
            format!(
                "is {} bytes, not canaryd's state file (at most {MAX_STATE_BYTES})",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)
        .map_err(|e| bad(e.kind(), e.to_string()))?;
    let mut state: State = serde_json::from_slice(&bytes).map_err(|e| {
        bad(
            io::ErrorKind::InvalidData,
            format!("not canaryd's state file (JSON): {e}"),
        )
    })?;
    for run in state.rollouts.values_mut() {
        run.carry_v5_histograms();
    }
    Ok(state)
}

pub fn save(state_dir: &Path, state: &State) -> io::Result<()> {
    fs::create_dir_all(state_dir)?;
    let file = path(state_dir);
    let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    // A fresh file: whatever was left at the temporary path (a crashed
    // write, or a FIFO, whose open for writing would block) goes first.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // 0600: rollout plans carry their Prometheus and webhook URLs, which
    // may hold credentials; only root (canaryd) reads the file.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &file)?;
    // The rename is durable only once the directory entry is.
    fs::File::open(state_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::model::grpc_code::GrpcCodes;

    fn bp(bp: u16) -> Weight {
        Weight::from_bp(bp).unwrap()
    }

    #[test]
    fn override_holds_until_the_config_weight_changes() {
        let mut s = State::default();
        assert_eq!(s.weight_for("a", bp(500)), bp(500));
        s.weights.insert(
            "a".into(),
            WeightOverride {
                weight: bp(2500),
                config_weight: bp(500),
            },
        );
        assert_eq!(s.weight_for("a", bp(500)), bp(2500));
        assert_eq!(s.weight_for("a", bp(1000)), bp(1000));
        assert_eq!(s.weight_for("b", bp(700)), bp(700));
        assert_eq!(s.source_of("a", bp(500)), WeightSource::Runtime);
        assert_eq!(s.source_of("a", bp(1000)), WeightSource::Config);
        assert_eq!(s.source_of("b", bp(700)), WeightSource::Config);
    }

    #[test]
    fn overrides_of_changed_or_removed_services_are_forgotten() {
        let spec = |name: &str, weight| ServiceSpec {
            name: name.into(),
            vip: "198.18.0.1:80".parse().unwrap(),
            protocol: crate::model::service::Protocol::Tcp,
            affinity: crate::model::service::Affinity::Flow,
            app_protocol: Default::default(),
            stable: vec!["198.18.0.1:8081".parse().unwrap()],
            canary: vec!["198.18.0.1:8082".parse().unwrap()],
            weight: bp(weight),
        };
        let over = |config_weight| WeightOverride {
            weight: bp(5000),
            config_weight: bp(config_weight),
        };
        let mut s = State::default();
        s.weights.insert("kept".into(), over(500));
        s.weights.insert("edited".into(), over(500));
        s.weights.insert("gone".into(), over(500));
        assert!(s.forget_obsolete(&[spec("kept", 500), spec("edited", 700)]));
        assert_eq!(s.weights.keys().collect::<Vec<_>>(), ["kept"]);
        assert!(!s.forget_obsolete(&[spec("kept", 500)]));
        // A removed service's rollout and rollback count go with it.
        let run = || RolloutRun::start(crate::controller::tests::plan(), Default::default(), 0);
        for name in ["kept", "gone"] {
            s.rollouts.insert(name.into(), run());
            s.rollbacks.insert(name.into(), 1);
        }
        assert!(s.forget_obsolete(&[spec("kept", 500)]));
        assert_eq!(s.rollouts.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(s.rollbacks.keys().collect::<Vec<_>>(), ["kept"]);
        assert!(!s.forget_obsolete(&[spec("kept", 500)]));
    }

    #[test]
    fn save_then_load_round_trips_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("canary-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap(), State::default());
        let mut s = State::default();
        s.weights.insert(
            "m".into(),
            WeightOverride {
                weight: bp(1234),
                config_weight: Weight::ZERO,
            },
        );
        save(&dir, &s).unwrap();
        assert_eq!(load(&dir).unwrap(), s);
        // Rollout plans may carry credentials in their URLs.
        let mode = fs::metadata(path(&dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "state file mode {mode:o}");
        fs::write(path(&dir), "{not json").unwrap();
        assert!(load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A state file as the release before `Weight` wrote it: weights,
    /// steps and decisions in basis points under these names. It reads,
    /// and writes back the same, so a downgrade reads it too.
    const PREVIOUS_RELEASE: &str = r#"{
  "weights": {
    "sentiment": { "weight_bp": 1250, "config_weight_bp": 500 }
  },
  "rollouts": {
    "sentiment": {
      "plan": {
        "steps": [500, 1000, 2500, 5000, 10000],
        "interval": 30000,
        "min_requests": 200,
        "failed_checks_limit": 2,
        "consecutive_failures": 0,
        "min_passes": 1,
        "max_inconclusive": 5,
        "max_step_duration": 1800000,
        "mode": "enforce",
        "on_rollback": "drain",
        "checks": {
          "max_error_rate": 0.01,
          "max_error_ratio": 2.0,
          "max_p99_ms": null,
          "max_p99_ratio": null,
          "error_margin": 0.01,
          "p99_margin_ms": 5.0
        },
        "gates": [],
        "prometheus": null,
        "webhook": null,
        "alpha": 0.05
      },
      "state": {
        "phase": "running",
        "reason": "",
        "step": 1,
        "looks": 1,
        "failed": 0,
        "consecutive_failed": 0,
        "inconclusive_streak": 0,
        "passes_at_step": 0,
        "step_looks": 0,
        "started_unix_ms": 1000,
        "generation": 3,
        "history": [
          {
            "at_unix_ms": 31000,
            "look": 1,
            "step": 0,
            "weight_bp": 500,
            "interval_attempts": [950, 50],
            "verdict": "pass",
            "action": { "action": "step_up", "step": 1 },
            "checks": [],
            "reason": "step up to 10.00%: every check passed",
            "dry_run": false
          }
        ]
      },
      "step_start": [
        { "requests": 950, "responses": 950, "http": [0, 950, 0, 0, 0, 0], "backend_resets": 0,
          "connections_refused": 0, "syn_retransmits": 0, "failsafe_flows": 0,
          "latency": { "counts": [], "sum_ns": 0 }, "connect": { "counts": [], "sum_ns": 0 } },
        { "requests": 50, "responses": 50, "http": [0, 50, 0, 0, 0, 0], "backend_resets": 0,
          "connections_refused": 0, "syn_retransmits": 0, "failsafe_flows": 0,
          "latency": { "counts": [], "sum_ns": 0 }, "connect": { "counts": [], "sum_ns": 0 } }
      ],
      "last": [
        { "requests": 950, "responses": 950, "http": [0, 950, 0, 0, 0, 0], "backend_resets": 0,
          "connections_refused": 0, "syn_retransmits": 0, "failsafe_flows": 0,
          "latency": { "counts": [], "sum_ns": 0 }, "connect": { "counts": [], "sum_ns": 0 } },
        { "requests": 50, "responses": 50, "http": [0, 50, 0, 0, 0, 0], "backend_resets": 0,
          "connections_refused": 0, "syn_retransmits": 0, "failsafe_flows": 0,
          "latency": { "counts": [], "sum_ns": 0 }, "connect": { "counts": [], "sum_ns": 0 } }
      ],
      "stable_before": null,
      "next_at_unix_ms": 61000
    }
  },
  "rollbacks": { "sentiment": 1 },
  "generations": 3
}"#;

    #[test]
    fn a_state_file_of_the_previous_release_reads_and_writes_back_the_same() {
        let dir = std::env::temp_dir().join(format!("canary-state-old-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(path(&dir), PREVIOUS_RELEASE).unwrap();
        let state = load(&dir).unwrap();
        let o = state.weights["sentiment"];
        assert_eq!((o.weight, o.config_weight), (bp(1250), bp(500)));
        let run = &state.rollouts["sentiment"];
        assert_eq!(
            run.plan.steps,
            [500, 1000, 2500, 5000, 10000].map(bp).to_vec()
        );
        assert_eq!(run.weight(), bp(1000));
        assert_eq!(run.state.history[0].weight, bp(500));
        // Written before grpc_error_codes: the default, and not written back.
        assert_eq!(run.plan.grpc_error_codes, GrpcCodes::DEFAULT);
        save(&dir, &state).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path(&dir)).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        assert_eq!(written, before);
        // A weight no release writes is refused, naming the file.
        fs::write(
            path(&dir),
            PREVIOUS_RELEASE.replace(r#""weight_bp": 1250"#, r#""weight_bp": 12500"#),
        )
        .unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("0 to 10000 basis points; found 12500"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A plan's own gRPC error codes survive a restart.
    #[test]
    fn grpc_error_codes_round_trip_through_the_state_file() {
        let dir = std::env::temp_dir().join(format!("canary-state-grpc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut plan = crate::controller::tests::plan();
        plan.grpc_error_codes = GrpcCodes::from_codes([8, 14]).unwrap();
        let mut s = State::default();
        s.rollouts.insert(
            "m".into(),
            RolloutRun::start(plan.clone(), Default::default(), 0),
        );
        save(&dir, &s).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path(&dir)).unwrap()).unwrap();
        assert_eq!(
            written["rollouts"]["m"]["plan"]["grpc_error_codes"],
            serde_json::json!(["RESOURCE_EXHAUSTED", "UNAVAILABLE"])
        );
        assert_eq!(load(&dir).unwrap().rollouts["m"].plan, plan);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What a careless host leaves at the state file's path: each refused
    /// at once (a FIFO must not hang start-up), the error naming the file.
    #[test]
    fn odd_files_at_the_path_are_refused_with_the_path() {
        let dir = std::env::temp_dir().join(format!("canary-state-odd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = path(&dir);
        let expect = |what: &str| {
            let e = load(&dir).unwrap_err().to_string();
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(e.contains(what), "{e}");
        };
        fs::write(&file, [0xffu8, 0xfe, 0x00, 0x13, 0x37]).unwrap();
        expect("not canaryd's state file (JSON)");
        fs::remove_file(&file).unwrap();
        let fifo = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        expect("is a FIFO");
        // Saving replaces it with the real file.
        save(&dir, &State::default()).unwrap();
        assert_eq!(load(&dir).unwrap(), State::default());
        fs::remove_file(&file).unwrap();
        fs::create_dir(&file).unwrap();
        expect("is a directory");
        fs::remove_dir_all(&dir).unwrap();
    }
}
