//! The H2_HEADERS ring buffer: the pieces of server header blocks the
//! kernel hands canaryd (`canary_common::h2::H2HeaderPiece`), read as they
//! come. What they mean is `model::grpc`'s job; this only copies them out.

use std::{io, mem::size_of};

use aya::{
    Ebpf,
    maps::{Map, MapData, RingBuf},
};
use canary_common::{h2::H2HeaderPiece, names::H2_HEADERS};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    error::Error,
    kernel::{maps::map_err, pins::PinLayout},
};

/// The ring, registered with tokio's reactor: wakes when the kernel
/// commits a record to a ring we had drained.
pub struct HeaderRing {
    ring: AsyncFd<RingBuf<MapData>>,
    short_records: u64,
}

impl HeaderRing {
    /// Takes the ring out of a loaded object. Needs a tokio runtime.
    pub fn take(ebpf: &mut Ebpf) -> Result<HeaderRing, Error> {
        let map = ebpf.take_map(H2_HEADERS).ok_or(Error::Missing {
            kind: "map",
            name: H2_HEADERS,
        })?;
        HeaderRing::from_map(map)
    }

    /// Opens the ring pinned under `pins`. Needs a tokio runtime.
    pub fn open_pinned(pins: &PinLayout) -> Result<HeaderRing, Error> {
        let data = MapData::from_pin(pins.map(H2_HEADERS)).map_err(map_err(H2_HEADERS))?;
        HeaderRing::from_map(Map::from_map_data(data).map_err(map_err(H2_HEADERS))?)
    }

    fn from_map(map: Map) -> Result<HeaderRing, Error> {
        let ring = RingBuf::try_from(map).map_err(map_err(H2_HEADERS))?;
        // SAFETY: the ring owns its map's descriptor (MapData) and moves
        // into the AsyncFd, which keeps it open until drop; as_raw_fd
        // always returns that descriptor.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| ring_err(io::Error::from(e)))?;
        Ok(HeaderRing {
            ring,
            short_records: 0,
        })
    }

    /// Waits for records, at most `every`, then appends every piece the
    /// ring holds to `out`; returns how many (none when `every` passed
    /// first). The kernel wakes the reader only when the ring is half full
    /// (`h2::send_piece`: a wakeup costs each reply microseconds), so the
    /// caller reads at least every `every` as well.
    pub async fn read(
        &mut self,
        out: &mut Vec<H2HeaderPiece>,
        every: std::time::Duration,
    ) -> Result<usize, Error> {
        if let Ok(ready) = tokio::time::timeout(every, self.ring.readable_mut()).await {
            // Cleared before draining, not after: a record committed
            // between the last read and a later clear must not wait for a
            // wakeup that never comes.
            ready.map_err(ring_err)?.clear_ready();
        }
        let mut taken = 0;
        while let Some(record) = self.ring.get_mut().next() {
            match piece(&record) {
                Some(p) => {
                    out.push(p);
                    taken += 1;
                }
                None => self.short_records += 1,
            }
        }
        Ok(taken)
    }

    /// Records shorter than a piece, skipped (a kernel built against
    /// another `H2HeaderPiece`), ever.
    pub fn short_records(&self) -> u64 {
        self.short_records
    }
}

/// The piece a record holds, if it is long enough for one.
fn piece(record: &[u8]) -> Option<H2HeaderPiece> {
    if record.len() < size_of::<H2HeaderPiece>() {
        return None;
    }
    // SAFETY: the record holds at least size_of::<H2HeaderPiece>() bytes;
    // the type is plain integers (aya::Pod), valid for any bytes; and the
    // read makes no assumption about the record's alignment.
    Some(unsafe { record.as_ptr().cast::<H2HeaderPiece>().read_unaligned() })
}

fn ring_err(source: io::Error) -> Error {
    Error::Ring {
        name: H2_HEADERS,
        source,
    }
}

#[cfg(test)]
mod tests {
    use canary_common::h2::{FLAG_END_HEADERS, HEADERS, PIECE_BYTES};

    use super::*;

    #[test]
    fn records_are_copied_out_whatever_their_alignment_and_short_ones_refused() {
        let mut data = [0u8; PIECE_BYTES];
        data[..3].copy_from_slice(&[0x88, 0xbe, 0xbf]);
        let want = H2HeaderPiece {
            conn: 0x0123_4567_89ab_cdef,
            seq: 7,
            service_id: 3,
            stream: 5,
            frame_len: 3,
            offset: 0,
            len: 3,
            version: 1,
            kind: HEADERS,
            flags: FLAG_END_HEADERS,
            _pad: [0; 7],
            data,
        };
        // SAFETY: a repr(C) value with no padding, read as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&want as *const H2HeaderPiece).cast::<u8>(),
                size_of::<H2HeaderPiece>(),
            )
        };
        let mut record = vec![0u8; 1];
        record.extend_from_slice(bytes);
        record.push(0); // the ring pads records to 8 bytes
        assert_eq!(piece(&record[1..]), Some(want));
        assert_eq!(piece(&record[1..record.len() - 2]), None);
        assert_eq!(piece(&[]), None);
    }
}
