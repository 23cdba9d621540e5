//! The scripts' pipes: stdout as lines on a channel, stderr's tail kept for
//! error messages, each read by a thread of its own as the process writes
//! (so it never blocks on a full pipe).

use std::{
    io::{BufRead, BufReader, Read},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use anyhow::{Result, bail};

/// Stderr kept for error messages; grpcio can be chatty.
const STDERR_KEPT: usize = 16 * 1024;

/// The next line from `lines`, waiting at most `limit`.
pub(crate) fn receive(lines: &Receiver<String>, limit: Duration) -> Result<String> {
    match lines.recv_timeout(limit) {
        Ok(line) => Ok(line),
        Err(RecvTimeoutError::Timeout) => bail!("no line within {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => bail!("the process closed its stdout (exited?)"),
    }
}

/// Every line of `out`, as it comes, on a channel that closes with it.
pub(crate) fn read_lines(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The last `STDERR_KEPT` bytes of `err`, read as they come (so the
/// process never blocks on a full pipe).
pub(crate) fn keep_tail(err: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let kept = Arc::new(Mutex::new(String::new()));
    let sink = kept.clone();
    thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&line);
            text.push('\n');
            if text.len() > STDERR_KEPT {
                let cut = text.len() - STDERR_KEPT;
                let cut = (cut..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                text.drain(..cut);
            }
        }
    });
    kept
}
