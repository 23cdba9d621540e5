//! What canaryd does, without its sockets. One thread owns the daemon's
//! state (`Daemon`) and takes commands over a channel (`owner`); status and
//! metrics are read without it (`observe`), from the pinned counters and the
//! last snapshot the owner published.
//!
//! - `Daemon` (here): the state one thread owns; its operations, a file
//!   each: `lifecycle` (claim the pins, start, heartbeat, detach all),
//!   `weights` (set a weight), `interfaces` (check what the kernel runs),
//!   `reload`, `rollouts` (start, control and apply rollout decisions).
//! - `overrides`: command-line values over `[daemon]`, config warnings.
//! - `reach`: where each service's clients come in; refuses a start that
//!   would leave their interface, flags it in status.
//! - `state`: the atomically written state file (run-time weights,
//!   rollouts).
//! - `driver`: the rollout driver's looks: evidence, gates, decisions.
//! - `error`: what a daemon operation can fail with.
//! - `owner`: the owning thread and the async `Handle` that talks to it.
//! - `observe`: `Status` from a snapshot and the counters.
//! - `fleet`: apply a fleet's decisions to this host (the `fleet` module
//!   takes them).
//! - `links`: interface events (rtnetlink) that make the owner check the
//!   configured interfaces and re-attach one that came back.

pub mod driver;
mod error;
pub mod fleet;
pub mod h2_headers;
mod interfaces;
mod lifecycle;
pub mod links;
pub mod observe;
mod overrides;
pub mod owner;
pub mod reach;
mod reload;
mod rollouts;
pub mod state;
mod weights;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

pub use crate::controller::effect::Control;
pub use error::DaemonError;
pub use overrides::{Overrides, config_warnings};

/// Milliseconds since the Unix epoch: rollout times as persisted and shown.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

use crate::{
    api::InterfaceStatus,
    config::Config,
    kernel::dataplane::{Dataplane, RemovedPins},
    kernel::inspect::Expected,
    kernel::lock::DaemonLock,
};
use state::State;

/// Test hook: how long every reload holds the owner before it starts, so a
/// test can show that status and metrics do not wait on a slow operation.
/// Read once at start from `CANARYD_TEST_HOLD_RELOAD_MS`, and only in a
/// build with the `test-hooks` feature (the tests crate's).
pub const TEST_HOLD_ENV: &str = "CANARYD_TEST_HOLD_RELOAD_MS";

/// Logged by the hook as a held reload begins: the test's signal that the
/// owner is busy, where a sleep would only guess.
pub const TEST_HOLD_STARTED: &str = "test hook: holding this reload";

pub struct Daemon {
    dp: Dataplane,
    config: Config,
    config_path: PathBuf,
    overrides: Overrides,
    state: State,
    interfaces: Vec<InterfaceStatus>,
    /// This run's program and map ids: what the kernel should run.
    expected: std::sync::Arc<Expected>,
    /// Interfaces whose egress program is a tcx link (the netlink
    /// fallback's clsact filter is not listed by BPF_PROG_QUERY).
    tcx: BTreeSet<String>,
    /// Interfaces where the kernel was found running something else than
    /// what canaryd attached, with the same device: not re-attached on its
    /// own (that would fight whoever did it), only by a reload or restart.
    tampered: BTreeSet<String>,
    /// Where each service's clients come in, as found at start (`reach`):
    /// status flags a service none of whose interfaces is attached.
    client_paths: reach::ClientPaths,
    test_hold: Duration,
    /// Held for the daemon's lifetime: one canaryd per pin directory.
    _lock: DaemonLock,
}

/// The pin directory, ready and locked for this process (`Daemon::claim`).
#[derive(Debug)]
pub struct Claim {
    pub lock: DaemonLock,
    /// canaryd mounted the bpffs in a mount namespace of its own (as under
    /// `ip netns exec`): the pins go when that namespace ends.
    pub pins_vanish_with_namespace: bool,
}

/// What `Daemon::detach_all` found and removed.
#[derive(Clone, Debug, Default)]
pub struct Detached {
    pub pins: RemovedPins,
    /// Whether there was a state file.
    pub state_file: bool,
}

impl Daemon {
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What readers need to answer status and metrics without the owner.
    pub fn snapshot(&self) -> observe::Snapshot {
        observe::Snapshot {
            config_path: self.config_path.display().to_string(),
            interfaces: self.interfaces.clone(),
            expected: self.expected.clone(),
            tcx: self.tcx.clone(),
            services: self.dp.registered(),
            rollouts: self.state.rollouts.clone(),
            fleet_lines: self.state.fleet_lines.clone(),
            planned: self.config.rollouts.keys().cloned().collect(),
            rollbacks: self.state.rollbacks.clone(),
            client_paths: self.client_paths.clone(),
            weights: self
                .config
                .services
                .iter()
                .map(|s| {
                    let source = self.state.source_of(&s.name, s.weight);
                    (s.name.clone(), (source, s.weight))
                })
                .collect(),
        }
    }

    /// The counters, shared with the readers.
    pub fn counters(&self) -> std::sync::Arc<crate::kernel::maps::Counters> {
        self.dp.counters()
    }

    /// The ring of the servers' HTTP/2 header blocks, taken once for the
    /// task that decodes them (`h2_headers::drain`). Needs a tokio runtime
    /// (it registers the ring's descriptor with it).
    pub fn take_header_ring(&mut self) -> Result<crate::kernel::h2_ring::HeaderRing, DaemonError> {
        Ok(self.dp.take_h2_headers()?)
    }
}

/// Writes the state file, trying again a few times (155 ms in all) when
/// the process or the system is out of descriptors: the reserve (`fds`)
/// makes that rare, and a set-weight or rollback must not fail on a
/// moment's shortage.
fn save_state(dir: &Path, state: &State) -> std::io::Result<()> {
    let mut pause = Duration::from_millis(5);
    for _ in 0..5 {
        match state::save(dir, state) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                log::warn!("writing the state file: {e}; trying again in {pause:?}");
                std::thread::sleep(pause);
                pause *= 2;
            }
            done => return done,
        }
    }
    state::save(dir, state)
}
