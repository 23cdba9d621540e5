//! The servers' HTTP/2 header blocks, from the kernel's ring buffer
//! (`kernel::h2_ring`) into the HPACK decoders (`model::grpc`) whose
//! counts every reading of the signals includes
//! (`Counters::version_reading`): `grpc-status` by code, `:status` by
//! class, undecodable connections.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::kernel::{h2_ring::HeaderRing, maps::Counters};

/// A connection whose server sent no header block for this long is
/// forgotten (its HPACK table freed). Longer than any keepalive a gRPC
/// channel idles through; one that speaks again after it counts as
/// undecodable (its table is gone), never as decoded.
const IDLE: Duration = Duration::from_secs(15 * 60);
/// How often idle connections are looked for.
const SWEEP: Duration = Duration::from_secs(60);
/// How often the ring is read when the kernel has not woken us (it wakes
/// canaryd only past half full): the delay of a grpc-status count.
const READ_EVERY: Duration = Duration::from_millis(100);

/// Feeds every piece the ring delivers to the decoders, until the ring
/// fails (logged: grpc-status is no longer counted, the rest of the
/// signals are).
pub async fn drain(mut ring: HeaderRing, counters: Arc<Counters>) {
    let mut batch = Vec::with_capacity(256);
    let mut swept = Instant::now();
    loop {
        batch.clear();
        if let Err(e) = ring.read(&mut batch, READ_EVERY).await {
            log::error!(
                "reading HTTP/2 header blocks: {e}; grpc-status and HTTP/2 :status are no longer counted"
            );
            return;
        }
        let now = Instant::now();
        let mut decoders = counters.headers.lock().unwrap_or_else(|p| p.into_inner());
        for piece in &batch {
            decoders.feed(piece, now);
        }
        if now.duration_since(swept) >= SWEEP {
            decoders.forget_idle(now, IDLE);
            swept = now;
        }
    }
}
