//! What the leader says, as far as the report needs it. The leader tells
//! nothing else outside: a step up that waits for hosts' acks is only a
//! log line (once per generation), and a failed tick only a debug line.
//! Warnings and errors are printed as progress; those two are counted.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use log::{Level, LevelFilter, Log, Metadata, Record};

pub struct LeaderLog {
    /// Generations whose step up waited for some host's ack.
    pub waits: AtomicU64,
    /// Leader ticks that failed (an etcd error or timeout).
    pub tick_errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

pub static LEADER_LOG: LeaderLog = LeaderLog {
    waits: AtomicU64::new(0),
    tick_errors: AtomicU64::new(0),
    last_error: Mutex::new(None),
};

/// The leader's own wording (fleet/leader.rs) of the two counted lines.
const WAIT_LINE: &str = "the next step waits until";
const TICK_ERROR_LINE: &str = ": leader: ";
const FLEET_TARGET: &str = "canary_userspace::fleet";
/// Characters of a log line printed.
const PRINTED: usize = 160;

pub fn install() {
    // A second install (none is made) would only fail: ignore it.
    let _ = log::set_logger(&LEADER_LOG);
    log::set_max_level(LevelFilter::Debug);
}

impl LeaderLog {
    /// Counts from zero, for the next run.
    pub fn reset(&self) {
        self.waits.store(0, Ordering::Relaxed);
        self.tick_errors.store(0, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }
}

impl Log for LeaderLog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Warn || m.target().starts_with(FLEET_TARGET)
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = r.args().to_string();
        if line.contains(WAIT_LINE) {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        if r.level() == Level::Debug && line.contains(TICK_ERROR_LINE) {
            self.tick_errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut e) = self.last_error.lock() {
                *e = Some(line.clone());
            }
        }
        if r.level() <= Level::Warn {
            // A wait names every host behind: 1,000 names are not progress.
            match line.char_indices().nth(PRINTED) {
                Some((end, _)) => eprintln!("  [{}] {} ...", r.level(), &line[..end]),
                None => eprintln!("  [{}] {line}", r.level()),
            }
        }
    }

    fn flush(&self) {}
}
