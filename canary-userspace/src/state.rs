//! The daemon's small state file: weights set at run time (`canaryctl
//! set-weight`), so a restart keeps them instead of going back to the
//! config's weight. Written atomically (temporary file, fsync, rename), so a
//! crash leaves either the old or the new file, never half of one.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{controller::run::RolloutRun, service::ServiceSpec};

pub const STATE_FILE: &str = "state.json";

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
}

/// A weight set at run time, and the config weight it overrode: when the
/// config's weight is edited later, the config wins again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightOverride {
    pub weight_bp: u16,
    pub config_weight_bp: u16,
}

impl State {
    /// Forgets overrides set against a config weight the config no longer
    /// has (or for services it no longer has), so an old override cannot
    /// come back if the old value does. Returns whether anything went.
    pub fn forget_obsolete(&mut self, services: &[ServiceSpec]) -> bool {
        let before = self.weights.len();
        self.weights.retain(|name, o| {
            services
                .iter()
                .any(|s| &s.name == name && s.weight_bp == o.config_weight_bp)
        });
        self.weights.len() != before
    }

    /// The weight a service should run with, given its config weight.
    pub fn weight_for(&self, service: &str, config_weight_bp: u16) -> u16 {
        match self.weights.get(service) {
            Some(o) if o.config_weight_bp == config_weight_bp => o.weight_bp,
            _ => config_weight_bp,
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// Reads the state file; a missing file is an empty state.
pub fn load(state_dir: &Path) -> io::Result<State> {
    let file = path(state_dir);
    match fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {e} (move it away to start from the config's weights)",
                    file.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e),
    }
}

pub fn save(state_dir: &Path, state: &State) -> io::Result<()> {
    fs::create_dir_all(state_dir)?;
    let file = path(state_dir);
    let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &file)?;
    // The rename is durable only once the directory entry is.
    fs::File::open(state_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_holds_until_the_config_weight_changes() {
        let mut s = State::default();
        assert_eq!(s.weight_for("a", 500), 500);
        s.weights.insert(
            "a".into(),
            WeightOverride {
                weight_bp: 2500,
                config_weight_bp: 500,
            },
        );
        assert_eq!(s.weight_for("a", 500), 2500);
        assert_eq!(s.weight_for("a", 1000), 1000);
        assert_eq!(s.weight_for("b", 700), 700);
    }

    #[test]
    fn overrides_of_changed_or_removed_services_are_forgotten() {
        let spec = |name: &str, weight_bp| ServiceSpec {
            name: name.into(),
            vip: "198.18.0.1:80".parse().unwrap(),
            protocol: crate::service::Protocol::Tcp,
            affinity: crate::service::Affinity::Flow,
            stable: vec!["198.18.0.1:8081".parse().unwrap()],
            canary: vec!["198.18.0.1:8082".parse().unwrap()],
            weight_bp,
        };
        let over = |config_weight_bp| WeightOverride {
            weight_bp: 5000,
            config_weight_bp,
        };
        let mut s = State::default();
        s.weights.insert("kept".into(), over(500));
        s.weights.insert("edited".into(), over(500));
        s.weights.insert("gone".into(), over(500));
        assert!(s.forget_obsolete(&[spec("kept", 500), spec("edited", 700)]));
        assert_eq!(s.weights.keys().collect::<Vec<_>>(), ["kept"]);
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
                weight_bp: 1234,
                config_weight_bp: 0,
            },
        );
        save(&dir, &s).unwrap();
        assert_eq!(load(&dir).unwrap(), s);
        fs::write(path(&dir), "{not json").unwrap();
        assert!(load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
