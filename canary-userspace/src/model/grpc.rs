//! gRPC and HTTP/2 response signals from the server's header blocks: the
//! kernel hands canaryd every piece of every server HEADERS and
//! CONTINUATION frame of the connections it follows (`H2HeaderPiece`);
//! `ServerHeaderDecoder` puts each connection's header blocks back
//! together, decodes them with that connection's HPACK table and counts,
//! per (service, version), `grpc-status` by code and `:status` by class.
//!
//! HPACK is stateful: a block can name entries an earlier block of the
//! same connection added to its dynamic table, so one lost piece makes
//! every later block of that connection untrustworthy. Such a connection
//! is *undecodable*: counted once, never counted as OK, and its later
//! pieces are only counted as ignored. Nothing is guessed.
//!
//! PUSH_PROMISE blocks change the table too, and the kernel does not hand
//! them over: gRPC clients turn server push off (SETTINGS_ENABLE_PUSH 0).
//! A server that pushed anyway would desync its connection's table, which
//! HPACK notices as an error in most cases, not all.
//!
//! HPACK is `loona-hpack`: the maintained fork of `hpack` 0.3, whose
//! decoder returns an error on every malformed block we know of. `hpack`
//! 0.3 and `fluke-hpack` 0.3.1 (its earlier fork) panic on a truncated
//! table-size update (a single 0x3f byte; RUSTSEC-2023-0085) and are not
//! fixed; `httlib-hpack` is unmaintained since 2021. The test
//! `garbage_makes_a_connection_undecodable_without_panicking` holds the
//! crate to that.
//!
//! Memory is bounded by `DecoderLimits`: connections held (least recently
//! used evicted), bytes of one header block, and size of one HPACK table.
//! Worst case about `max_connections * (max_table_bytes + max_block_bytes)`
//! plus a few hundred bytes a connection; a connection holds a block
//! buffer only while a block is in flight.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    time::{Duration, Instant},
};

use canary_common::{
    MAX_SERVICES, VERSIONS,
    h2::{CONTINUATION, FLAG_END_HEADERS, FLAG_PADDED, FLAG_PRIORITY, H2HeaderPiece, HEADERS},
    signals::{HTTP_CLASSES, HTTP_OTHER},
};
use loona_hpack::Decoder as Hpack;
use serde::{Deserialize, Serialize};

/// gRPC status codes counted one by one (0 to 16), then `other` for a
/// value that is not one of them.
pub const GRPC_CODES: usize = 18;
pub const GRPC_OTHER: usize = GRPC_CODES - 1;
/// The name of slot `i` of the counts, as exported (`code` label): the
/// code's (`grpc_code::NAMES`), or `other`.
pub fn grpc_slot_name(i: usize) -> &'static str {
    crate::model::grpc_code::name(i as u32).unwrap_or("other")
}

/// Why a connection became undecodable, counted once per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// First seen after its first piece: canaryd started, or the
    /// connection was evicted or forgotten idle, after it opened.
    MissedStart,
    /// A piece's `seq` was not the next one: the ring buffer lost one.
    LostPiece,
    /// A piece that does not continue the frame or block in flight
    /// (offset, frame type, stream, or lengths that contradict each other).
    OutOfPlace,
    /// A header block longer than `DecoderLimits::max_block_bytes`.
    TooLarge,
    /// HPACK refused the block: its table is out of sync, the bytes are
    /// malformed, or a table-size update exceeds `max_table_bytes`.
    Hpack,
}

pub const UNDECODABLE_REASONS: usize = 5;

impl Undecodable {
    pub const ALL: [Undecodable; UNDECODABLE_REASONS] = [
        Undecodable::MissedStart,
        Undecodable::LostPiece,
        Undecodable::OutOfPlace,
        Undecodable::TooLarge,
        Undecodable::Hpack,
    ];

    /// As exported (`reason` label).
    pub fn name(self) -> &'static str {
        match self {
            Undecodable::MissedStart => "missed_start",
            Undecodable::LostPiece => "lost_piece",
            Undecodable::OutOfPlace => "out_of_place",
            Undecodable::TooLarge => "too_large",
            Undecodable::Hpack => "hpack",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Cumulative counts of one (service, version).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderCounts {
    /// Blocks carrying `grpc-status`, by code (`grpc_slot_name`).
    pub grpc_status: [u64; GRPC_CODES],
    /// Blocks carrying `:status`, by class (`HTTP_CLASS_NAMES`).
    pub http: [u64; HTTP_CLASSES],
    /// Header blocks decoded (whatever they carry).
    pub blocks: u64,
    /// Connections that became undecodable, and why.
    pub undecodable_connections: u64,
    pub undecodable: [u64; UNDECODABLE_REASONS],
    /// Pieces of undecodable connections, the one that showed it included.
    pub pieces_ignored: u64,
}

/// The bounds on what the decoder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Connections followed at once; one more evicts the least recently
    /// used (which is undecodable if it comes back: its table is gone).
    pub max_connections: usize,
    /// Bytes of one header block (all its frames, padding and priority
    /// stripped). gRPC responses carry a few hundred; a larger block makes
    /// the connection undecodable.
    pub max_block_bytes: usize,
    /// Largest HPACK dynamic table a server may switch to. 4096 is
    /// HTTP/2's default SETTINGS_HEADER_TABLE_SIZE, which gRPC clients
    /// keep; a server told more by its client is undecodable here.
    pub max_table_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_connections: 65_536,
            max_block_bytes: 64 * 1024,
            max_table_bytes: 4096,
        }
    }
}

/// What one piece did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceOutcome {
    /// Taken; its block is not complete yet.
    Pending,
    /// It completed a header block, decoded and counted.
    Decoded,
    /// It made its connection undecodable.
    Undecodable(Undecodable),
    /// Its connection was already undecodable (or its service slot was
    /// reset since it opened).
    Ignored,
    /// A service id or version out of range: counted in `stray_pieces`.
    Stray,
}

/// A connection's header block in flight, frame by frame.
struct Block {
    /// Fragments so far, padding and priority fields stripped.
    bytes: Vec<u8>,
    /// The stream of its HEADERS frame: CONTINUATIONs must be on it.
    stream: u32,
    /// Its frames received whole (HEADERS, then CONTINUATIONs).
    frames: u32,
    /// The frame being received, if one is not complete yet.
    frame: Option<Frame>,
}

/// A frame of a block whose payload has not all arrived.
#[derive(Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    len: u32,
    /// Bytes of its payload received so far (the next piece's offset).
    received: u32,
    /// Padding at its end (PADDED), known once its first byte came.
    pad: u32,
}

/// A connection being decoded.
struct Decoding {
    hpack: Hpack<'static>,
    /// `None` between blocks.
    block: Option<Block>,
}

enum State {
    Decoding(Box<Decoding>),
    /// Its pieces are counted as ignored.
    Undecodable,
    /// Its service slot was reset: its pieces belong to a service that is
    /// gone and are dropped without counting.
    Retired,
}

struct Connection {
    slot: usize,
    next_seq: u32,
    last_seen: Instant,
    /// Its key in `ServerHeaderDecoder::recency`.
    touched: u64,
    state: State,
}

/// Decodes the server header blocks of every followed connection and
/// counts what they carry. Fed pieces in the order the ring delivers them.
pub struct ServerHeaderDecoder {
    limits: DecoderLimits,
    connections: HashMap<u64, Connection>,
    /// Connection ids by last touch, oldest first (a counter, not a time:
    /// unique and monotonic whatever clock the caller passes).
    recency: BTreeMap<u64, u64>,
    touches: u64,
    counts: Vec<HeaderCounts>,
    evicted: u64,
    stray_pieces: u64,
}

impl Default for ServerHeaderDecoder {
    fn default() -> Self {
        ServerHeaderDecoder::new(DecoderLimits::default())
    }
}

impl ServerHeaderDecoder {
    pub fn new(limits: DecoderLimits) -> ServerHeaderDecoder {
        ServerHeaderDecoder {
            limits,
            connections: HashMap::new(),
            recency: BTreeMap::new(),
            touches: 0,
            counts: vec![HeaderCounts::default(); (MAX_SERVICES * VERSIONS) as usize],
            evicted: 0,
            stray_pieces: 0,
        }
    }

    /// Takes one piece, seen at `now`.
    pub fn feed(&mut self, piece: &H2HeaderPiece, now: Instant) -> PieceOutcome {
        let Some(slot) = slot_of(piece.service_id, piece.version) else {
            self.stray_pieces += 1;
            return PieceOutcome::Stray;
        };
        if !self.connections.contains_key(&piece.conn) {
            self.evict_if_full();
        }
        let touched = self.touch(piece.conn);
        let limits = self.limits;
        let conn = match self.connections.entry(piece.conn) {
            Entry::Occupied(held) => held.into_mut(),
            Entry::Vacant(new) => {
                let from_start = piece.seq == 0;
                let conn = new.insert(Connection {
                    slot,
                    next_seq: piece.seq,
                    last_seen: now,
                    touched,
                    state: if from_start {
                        State::Decoding(Box::new(Decoding::new(limits)))
                    } else {
                        State::Undecodable
                    },
                });
                if !from_start {
                    // Its earlier pieces, and the table they built, are missing.
                    conn.next_seq = piece.seq.wrapping_add(1);
                    return mark(&mut self.counts[slot], Undecodable::MissedStart);
                }
                conn
            }
        };
        conn.last_seen = now;
        conn.touched = touched;
        let expected = conn.next_seq;
        conn.next_seq = piece.seq.wrapping_add(1);
        let counts = &mut self.counts[conn.slot];
        let decoding = match &mut conn.state {
            State::Decoding(d) => d,
            State::Undecodable => {
                counts.pieces_ignored += 1;
                return PieceOutcome::Ignored;
            }
            State::Retired => return PieceOutcome::Ignored,
        };
        let step = if piece.seq != expected {
            Err(Undecodable::LostPiece)
        } else {
            decoding.take(piece, &limits, counts)
        };
        step.unwrap_or_else(|why| {
            conn.state = State::Undecodable;
            mark(counts, why)
        })
    }

    /// Forgets connections not seen for longer than `idle` at `now`;
    /// returns how many. One that comes back is undecodable (MissedStart).
    pub fn forget_idle(&mut self, now: Instant, idle: Duration) -> usize {
        let mut forgotten = 0;
        while let Some((&touched, &id)) = self.recency.first_key_value() {
            let stale = self
                .connections
                .get(&id)
                .is_none_or(|c| now.saturating_duration_since(c.last_seen) > idle);
            if !stale {
                break;
            }
            self.recency.remove(&touched);
            self.connections.remove(&id);
            forgotten += 1;
        }
        forgotten
    }

    /// Counts of `service_id`'s `version` since its slot was last reset;
    /// `None` out of range.
    pub fn counts(&self, service_id: u32, version: u8) -> Option<&HeaderCounts> {
        slot_of(service_id, version).map(|s| &self.counts[s])
    }

    /// Zeroes a slot for the service that takes its id next. Connections
    /// of the service that had it are retired: their later pieces count
    /// nowhere.
    pub fn reset(&mut self, service_id: u32, version: u8) {
        let Some(slot) = slot_of(service_id, version) else {
            return;
        };
        self.counts[slot] = HeaderCounts::default();
        for conn in self.connections.values_mut().filter(|c| c.slot == slot) {
            conn.state = State::Retired;
        }
    }

    /// Connections held now.
    pub fn connections_held(&self) -> usize {
        self.connections.len()
    }

    /// Connections evicted to stay within `max_connections`, ever.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Pieces with a service id or version out of range, ever.
    pub fn stray_pieces(&self) -> u64 {
        self.stray_pieces
    }

    /// Moves `id` to the most recent end; returns its new key.
    fn touch(&mut self, id: u64) -> u64 {
        if let Some(conn) = self.connections.get(&id) {
            self.recency.remove(&conn.touched);
        }
        self.touches += 1;
        self.recency.insert(self.touches, id);
        self.touches
    }

    /// Makes room for one more connection (called before its key goes
    /// into `recency`).
    fn evict_if_full(&mut self) {
        while self.connections.len() >= self.limits.max_connections.max(1) {
            let Some((_, id)) = self.recency.pop_first() else {
                return;
            };
            if self.connections.remove(&id).is_some() {
                self.evicted += 1;
            }
        }
    }
}

impl Decoding {
    fn new(limits: DecoderLimits) -> Decoding {
        let mut hpack = Hpack::new();
        hpack.set_max_allowed_table_size(limits.max_table_bytes);
        Decoding { hpack, block: None }
    }

    /// Adds a piece (in sequence) to the block in flight; decodes and
    /// counts the block if the piece completes it.
    fn take(
        &mut self,
        piece: &H2HeaderPiece,
        limits: &DecoderLimits,
        counts: &mut HeaderCounts,
    ) -> Result<PieceOutcome, Undecodable> {
        let data = piece
            .data
            .get(..usize::from(piece.len))
            .ok_or(Undecodable::OutOfPlace)?;
        if piece.offset.saturating_add(u32::from(piece.len)) > piece.frame_len {
            return Err(Undecodable::OutOfPlace);
        }
        let block = self.block.get_or_insert_with(|| Block {
            bytes: Vec::new(),
            stream: piece.stream,
            frames: 0,
            frame: None,
        });
        if block.stream != piece.stream {
            return Err(Undecodable::OutOfPlace);
        }
        let frame = match block.frame {
            // A frame in flight: this piece must be its next bytes.
            Some(f) => {
                let same_frame =
                    f.kind == piece.kind && f.flags == piece.flags && f.len == piece.frame_len;
                if !same_frame || f.received != piece.offset {
                    return Err(Undecodable::OutOfPlace);
                }
                f
            }
            // A new frame: a HEADERS opens a block, CONTINUATIONs carry it on.
            None => {
                let expected = if block.frames == 0 {
                    HEADERS
                } else {
                    CONTINUATION
                };
                if piece.kind != expected || piece.offset != 0 {
                    return Err(Undecodable::OutOfPlace);
                }
                Frame {
                    kind: piece.kind,
                    flags: piece.flags,
                    len: piece.frame_len,
                    received: 0,
                    pad: 0,
                }
            }
        };
        let frame = fragment(frame, piece.offset, data, &mut block.bytes)?;
        if block.bytes.len() > limits.max_block_bytes {
            return Err(Undecodable::TooLarge);
        }
        if frame.received < frame.len {
            block.frame = Some(frame);
            return Ok(PieceOutcome::Pending);
        }
        block.frame = None;
        block.frames += 1;
        if frame.flags & FLAG_END_HEADERS == 0 {
            return Ok(PieceOutcome::Pending);
        }
        let bytes = self.block.take().map(|b| b.bytes).unwrap_or_default();
        decode_block(&mut self.hpack, &bytes, counts)?;
        Ok(PieceOutcome::Decoded)
    }
}

/// Appends the header block fragment among `data` (the frame's payload
/// from `offset`) to `out`: a HEADERS frame's pad length and priority
/// fields at its start and its padding at its end are left out (RFC 9113
/// §6.2; CONTINUATION has neither). Returns the frame with `received`
/// moved on.
fn fragment(
    mut frame: Frame,
    offset: u32,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<Frame, Undecodable> {
    let headers = frame.kind == HEADERS;
    let padded = headers && frame.flags & FLAG_PADDED != 0;
    let mut prefix = 0u32;
    if padded {
        prefix += 1;
        if offset == 0 {
            // The pad length is the payload's first byte.
            frame.pad = data.first().map_or(0, |&b| u32::from(b));
        }
    }
    if headers && frame.flags & FLAG_PRIORITY != 0 {
        prefix += 5;
    }
    let content_end = frame
        .len
        .checked_sub(prefix)
        .and_then(|rest| rest.checked_sub(frame.pad))
        .map(|content| prefix + content)
        .ok_or(Undecodable::OutOfPlace)?;
    let end = offset + data.len() as u32;
    let from = prefix.max(offset);
    let to = content_end.min(end);
    if from < to {
        out.extend_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
    }
    frame.received = end;
    Ok(frame)
}

/// Decodes a whole header block and counts what it carries.
fn decode_block(
    hpack: &mut Hpack<'static>,
    block: &[u8],
    counts: &mut HeaderCounts,
) -> Result<(), Undecodable> {
    let mut http = None;
    let mut grpc = None;
    hpack
        .decode_with_cb(block, |name, value| match &*name {
            b":status" if http.is_none() => http = Some(http_class(&value)),
            b"grpc-status" if grpc.is_none() => grpc = Some(grpc_slot(&value)),
            _ => {}
        })
        .map_err(|_| Undecodable::Hpack)?;
    counts.blocks += 1;
    if let Some(class) = http {
        counts.http[class] += 1;
    }
    if let Some(code) = grpc {
        counts.grpc_status[code] += 1;
    }
    Ok(())
}

/// The class of a `:status` value: three digits, the first 1 to 5.
fn http_class(value: &[u8]) -> usize {
    match value {
        [first @ b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => usize::from(first - b'1'),
        _ => HTTP_OTHER,
    }
}

/// The slot of a `grpc-status` value: decimal digits naming 0 to 16.
fn grpc_slot(value: &[u8]) -> usize {
    let short_digits = matches!(value.len(), 1..=3) && value.iter().all(u8::is_ascii_digit);
    if !short_digits {
        return GRPC_OTHER;
    }
    let code = value
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    code.min(GRPC_OTHER)
}

fn slot_of(service_id: u32, version: u8) -> Option<usize> {
    (service_id < MAX_SERVICES && u32::from(version) < VERSIONS)
        .then(|| canary_common::stats_slot(service_id, version) as usize)
}

/// Counts a connection's becoming undecodable; its piece is ignored.
fn mark(counts: &mut HeaderCounts, why: Undecodable) -> PieceOutcome {
    counts.undecodable_connections += 1;
    counts.undecodable[why.slot()] += 1;
    counts.pieces_ignored += 1;
    PieceOutcome::Undecodable(why)
}

#[cfg(test)]
mod tests {
    use canary_common::h2::{FLAG_END_STREAM, PIECE_BYTES};
    use loona_hpack::Encoder;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    use super::*;

    const END_HEADERS: u8 = FLAG_END_HEADERS;

    /// One server connection as the kernel reports it: its id, where it
    /// counts, its HPACK encoder and the next piece number.
    struct Server {
        conn: u64,
        service_id: u32,
        version: u8,
        encoder: Encoder<'static>,
        seq: u32,
    }

    impl Server {
        fn new(conn: u64, service_id: u32, version: u8) -> Server {
            Server {
                conn,
                service_id,
                version,
                encoder: Encoder::new(),
                seq: 0,
            }
        }

        fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
            self.encoder
                .encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
        }

        /// The pieces of one frame: its payload cut at `cuts` (offsets),
        /// and into `PIECE_BYTES` runs beyond that.
        fn frame(
            &mut self,
            kind: u8,
            flags: u8,
            stream: u32,
            payload: &[u8],
            cuts: &[usize],
        ) -> Vec<H2HeaderPiece> {
            let mut bounds: Vec<usize> = vec![0];
            for &cut in cuts.iter().chain([payload.len()].iter()) {
                let mut at = *bounds.last().unwrap();
                while cut - at > PIECE_BYTES {
                    at += PIECE_BYTES;
                    bounds.push(at);
                }
                if cut > at || payload.is_empty() {
                    bounds.push(cut);
                }
            }
            bounds
                .windows(2)
                .map(|w| {
                    let mut data = [0u8; PIECE_BYTES];
                    data[..w[1] - w[0]].copy_from_slice(&payload[w[0]..w[1]]);
                    let piece = H2HeaderPiece {
                        conn: self.conn,
                        seq: self.seq,
                        service_id: self.service_id,
                        stream,
                        frame_len: payload.len() as u32,
                        offset: w[0] as u32,
                        len: (w[1] - w[0]) as u16,
                        version: self.version,
                        kind,
                        flags,
                        _pad: [0; 7],
                        data,
                    };
                    self.seq += 1;
                    piece
                })
                .collect()
        }

        /// A whole block in one HEADERS frame, in as few pieces as fit.
        fn headers(
            &mut self,
            stream: u32,
            flags: u8,
            headers: &[(&str, &str)],
        ) -> Vec<H2HeaderPiece> {
            let block = self.encode(headers);
            self.frame(HEADERS, flags | END_HEADERS, stream, &block, &[])
        }
    }

    fn feed_all(d: &mut ServerHeaderDecoder, pieces: &[H2HeaderPiece]) -> Vec<PieceOutcome> {
        let now = Instant::now();
        pieces.iter().map(|p| d.feed(p, now)).collect()
    }

    fn counts(d: &ServerHeaderDecoder, service_id: u32, version: u8) -> HeaderCounts {
        d.counts(service_id, version).unwrap().clone()
    }

    const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/grpc")];

    #[test]
    fn a_trailers_only_unavailable_counts_its_status_and_code() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(7, 3, 1);
        let pieces = s.headers(
            1,
            FLAG_END_STREAM,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "14"),
                ("grpc-message", "no healthy upstream"),
            ],
        );
        assert_eq!(feed_all(&mut d, &pieces), [PieceOutcome::Decoded]);
        let c = counts(&d, 3, 1);
        let mut want = HeaderCounts {
            blocks: 1,
            ..HeaderCounts::default()
        };
        want.http[1] = 1;
        want.grpc_status[14] = 1;
        assert_eq!(c, want);
        assert_eq!(grpc_slot_name(14), "UNAVAILABLE");
        assert_eq!(grpc_slot_name(GRPC_OTHER), "other");
        assert_eq!(counts(&d, 3, 0), HeaderCounts::default());
    }

    #[test]
    fn a_normal_response_counts_headers_then_trailers_through_the_dynamic_table() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(1, 0, 0);
        for stream in [1, 3, 5] {
            let head = s.headers(stream, 0, RESPONSE);
            assert_eq!(feed_all(&mut d, &head), [PieceOutcome::Decoded]);
            let trailers = s.encode(&[("grpc-status", "0")]);
            if stream > 1 {
                // The encoder indexed grpc-status: 0 on stream 1; later
                // trailers are one byte naming its dynamic table entry.
                assert_eq!(trailers.len(), 1, "{trailers:x?}");
                assert!(trailers[0] >= 0x80 | 62, "{trailers:x?}");
            }
            let tail = s.frame(
                HEADERS,
                FLAG_END_STREAM | END_HEADERS,
                stream,
                &trailers,
                &[],
            );
            assert_eq!(feed_all(&mut d, &tail), [PieceOutcome::Decoded]);
        }
        let c = counts(&d, 0, 0);
        assert_eq!(c.blocks, 6);
        assert_eq!(c.http, [0, 3, 0, 0, 0, 0]);
        assert_eq!(c.grpc_status[0], 3);
        assert_eq!(c.grpc_status.iter().sum::<u64>(), 3);
        assert_eq!(c.undecodable_connections, 0);
    }

    /// RFC 7541 C.6.1 to C.6.3: three responses, Huffman-coded, each
    /// naming entries the ones before it added.
    #[test]
    fn rfc_7541_huffman_responses_decode_across_blocks() {
        let blocks: [&[u8]; 3] = [
            &[
                0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0,
                0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81,
                0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18,
                0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
            ],
            &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf],
            &[
                0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20,
                0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a,
                0x83, 0x9b, 0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7, 0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7,
                0xb3, 0x35, 0xdf, 0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08, 0x7f, 0x36,
                0x72, 0xc1, 0xab, 0x27, 0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0,
                0x03, 0xed, 0x4e, 0xe5, 0xb1, 0x06, 0x3d, 0x50, 0x07,
            ],
        ];
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(9, 0, 0);
        for (i, block) in blocks.iter().enumerate() {
            let pieces = s.frame(HEADERS, END_HEADERS, 1 + 2 * i as u32, block, &[]);
            assert_eq!(feed_all(&mut d, &pieces), [PieceOutcome::Decoded]);
        }
        // 302, 307, then 200.
        assert_eq!(counts(&d, 0, 0).http, [0, 1, 2, 0, 0, 0]);
    }

    /// A block of `n` header fields with long values: several pieces.
    fn long_response(n: usize) -> Vec<(String, String)> {
        let mut h = vec![(":status".to_owned(), "503".to_owned())];
        for i in 0..n {
            h.push((format!("x-field-{i}"), "v".repeat(60)));
        }
        h.push(("grpc-status".to_owned(), "8".to_owned()));
        h
    }

    fn as_refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
        h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn a_block_in_three_pieces_is_decoded_when_the_last_comes() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(2, 5, 0);
        let h = long_response(5);
        let block = s.encode(&as_refs(&h));
        assert!(block.len() > PIECE_BYTES && block.len() <= 3 * PIECE_BYTES);
        let third = block.len() / 3;
        let pieces = s.frame(
            HEADERS,
            END_HEADERS | FLAG_END_STREAM,
            1,
            &block,
            &[third, 2 * third],
        );
        assert_eq!(pieces.len(), 3);
        assert_eq!(
            feed_all(&mut d, &pieces),
            [
                PieceOutcome::Pending,
                PieceOutcome::Pending,
                PieceOutcome::Decoded
            ]
        );
        let c = counts(&d, 5, 0);
        assert_eq!((c.blocks, c.http[4], c.grpc_status[8]), (1, 1, 1));
    }

    #[test]
    fn headers_and_continuations_make_one_block() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(3, 0, 1);
        let h = long_response(8);
        let block = s.encode(&as_refs(&h));
        let (a, rest) = block.split_at(100);
        let (b, c) = rest.split_at(300);
        let mut pieces = s.frame(HEADERS, FLAG_END_STREAM, 1, a, &[]);
        pieces.extend(s.frame(CONTINUATION, 0, 1, b, &[]));
        pieces.extend(s.frame(CONTINUATION, END_HEADERS, 1, c, &[]));
        let outcomes = feed_all(&mut d, &pieces);
        assert_eq!(outcomes.last(), Some(&PieceOutcome::Decoded));
        assert!(
            outcomes[..outcomes.len() - 1]
                .iter()
                .all(|o| *o == PieceOutcome::Pending)
        );
        let c = counts(&d, 0, 1);
        assert_eq!((c.blocks, c.http[4], c.grpc_status[8]), (1, 1, 1));
    }

    #[test]
    fn padding_and_priority_fields_are_stripped() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(4, 0, 0);
        for (stream, flags) in [
            (1, FLAG_PADDED),
            (3, FLAG_PRIORITY),
            (5, FLAG_PADDED | FLAG_PRIORITY),
        ] {
            let block = s.encode(&[(":status", "404"), ("grpc-status", "5")]);
            let mut payload = vec![];
            let pad = 7u8;
            if flags & FLAG_PADDED != 0 {
                payload.push(pad);
            }
            if flags & FLAG_PRIORITY != 0 {
                payload.extend([0x80, 0, 0, 1, 15]);
            }
            payload.extend(&block);
            if flags & FLAG_PADDED != 0 {
                // Padding that would not decode if it were read.
                payload.extend([0xff; 7]);
            }
            // Cut inside the prefix and inside the padding.
            let cuts = [1, payload.len() - 3];
            let pieces = s.frame(HEADERS, flags | END_HEADERS, stream, &payload, &cuts);
            assert_eq!(pieces.len(), 3);
            assert_eq!(
                feed_all(&mut d, &pieces).last(),
                Some(&PieceOutcome::Decoded)
            );
        }
        let c = counts(&d, 0, 0);
        assert_eq!((c.blocks, c.http[3], c.grpc_status[5]), (3, 3, 3));
        assert_eq!(c.undecodable_connections, 0);
    }

    #[test]
    fn padding_longer_than_its_frame_is_out_of_place() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(4, 0, 0);
        let pieces = s.frame(HEADERS, FLAG_PADDED | END_HEADERS, 1, &[9, 0x88], &[]);
        assert_eq!(
            feed_all(&mut d, &pieces),
            [PieceOutcome::Undecodable(Undecodable::OutOfPlace)]
        );
    }

    #[test]
    fn a_lost_piece_makes_the_connection_undecodable_and_later_pieces_ignored() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(5, 2, 1);
        assert_eq!(
            feed_all(&mut d, &s.headers(1, 0, RESPONSE)),
            [PieceOutcome::Decoded]
        );
        let _lost = s.headers(1, FLAG_END_STREAM, &[("grpc-status", "0")]);
        let after = s.headers(3, 0, RESPONSE);
        let more = s.headers(3, FLAG_END_STREAM, &[("grpc-status", "0")]);
        assert_eq!(
            feed_all(&mut d, &after),
            [PieceOutcome::Undecodable(Undecodable::LostPiece)]
        );
        assert_eq!(feed_all(&mut d, &more), [PieceOutcome::Ignored]);
        let c = counts(&d, 2, 1);
        assert_eq!(c.blocks, 1);
        assert_eq!(c.grpc_status, [0; GRPC_CODES], "never counted as OK");
        assert_eq!(c.undecodable_connections, 1);
        assert_eq!(c.undecodable[Undecodable::LostPiece.slot()], 1);
        assert_eq!(c.pieces_ignored, 2);
    }

    #[test]
    fn a_connection_first_seen_after_its_start_is_undecodable() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(6, 0, 0);
        s.seq = 4;
        let pieces = s.headers(9, 0, RESPONSE);
        assert_eq!(
            feed_all(&mut d, &pieces),
            [PieceOutcome::Undecodable(Undecodable::MissedStart)]
        );
        assert_eq!(
            feed_all(&mut d, &s.headers(11, 0, RESPONSE)),
            [PieceOutcome::Ignored]
        );
        let c = counts(&d, 0, 0);
        assert_eq!(
            (c.undecodable_connections, c.pieces_ignored, c.blocks),
            (1, 2, 0)
        );
    }

    #[test]
    fn a_continuation_with_no_headers_before_it_is_out_of_place() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(6, 0, 0);
        let block = s.encode(RESPONSE);
        let pieces = s.frame(CONTINUATION, END_HEADERS, 1, &block, &[]);
        assert_eq!(
            feed_all(&mut d, &pieces),
            [PieceOutcome::Undecodable(Undecodable::OutOfPlace)]
        );
        // And a HEADERS where a CONTINUATION must come.
        let mut s = Server::new(8, 0, 0);
        let mut pieces = s.frame(HEADERS, 0, 1, &block[..2], &[]);
        pieces.extend(s.frame(HEADERS, END_HEADERS, 1, &block[2..], &[]));
        assert_eq!(
            feed_all(&mut d, &pieces),
            [
                PieceOutcome::Pending,
                PieceOutcome::Undecodable(Undecodable::OutOfPlace)
            ]
        );
    }

    #[test]
    fn interleaved_connections_keep_their_own_tables_and_blocks() {
        let mut d = ServerHeaderDecoder::default();
        let mut a = Server::new(100, 1, 0);
        let mut b = Server::new(200, 1, 0);
        let mut pa = vec![];
        let mut pb = vec![];
        for stream in [1, 3] {
            pa.extend(a.headers(stream, 0, RESPONSE));
            let t = a.encode(&[("grpc-status", "0")]);
            pa.extend(a.frame(HEADERS, END_HEADERS | FLAG_END_STREAM, stream, &t, &[1]));
            pb.extend(b.headers(stream, 0, &[(":status", "500")]));
            let t = b.encode(&[("grpc-status", "13"), ("grpc-message", "boom")]);
            pb.extend(b.frame(HEADERS, END_HEADERS | FLAG_END_STREAM, stream, &t, &[1]));
        }
        let mut all = vec![];
        let (mut ia, mut ib) = (pa.into_iter(), pb.into_iter());
        loop {
            match (ia.next(), ib.next()) {
                (None, None) => break,
                (x, y) => all.extend(x.into_iter().chain(y)),
            }
        }
        feed_all(&mut d, &all);
        let c = counts(&d, 1, 0);
        assert_eq!(c.blocks, 8);
        assert_eq!(c.http, [0, 2, 0, 0, 2, 0]);
        assert_eq!((c.grpc_status[0], c.grpc_status[13]), (2, 2));
        assert_eq!(c.undecodable_connections, 0);
        assert_eq!(d.connections_held(), 2);
    }

    #[test]
    fn versions_are_counted_apart() {
        let mut d = ServerHeaderDecoder::default();
        let mut stable = Server::new(1, 4, 0);
        let mut canary = Server::new(2, 4, 1);
        feed_all(
            &mut d,
            &stable.headers(
                1,
                FLAG_END_STREAM,
                &[(":status", "200"), ("grpc-status", "0")],
            ),
        );
        feed_all(
            &mut d,
            &canary.headers(
                1,
                FLAG_END_STREAM,
                &[(":status", "200"), ("grpc-status", "13")],
            ),
        );
        assert_eq!(counts(&d, 4, 0).grpc_status[0], 1);
        assert_eq!(counts(&d, 4, 0).grpc_status[13], 0);
        assert_eq!(counts(&d, 4, 1).grpc_status[13], 1);
        assert_eq!(counts(&d, 4, 1).grpc_status[0], 0);
    }

    #[test]
    fn connections_beyond_the_bound_evict_the_least_recently_used() {
        let limits = DecoderLimits {
            max_connections: 2,
            ..DecoderLimits::default()
        };
        let mut d = ServerHeaderDecoder::new(limits);
        let mut servers: Vec<Server> = (1..=3).map(|id| Server::new(id, 0, 0)).collect();
        feed_all(&mut d, &servers[0].headers(1, 0, RESPONSE));
        feed_all(&mut d, &servers[1].headers(1, 0, RESPONSE));
        // Connection 1 is used again: 2 is now the least recent.
        feed_all(&mut d, &servers[0].headers(3, 0, RESPONSE));
        feed_all(&mut d, &servers[2].headers(1, 0, RESPONSE));
        assert_eq!(d.connections_held(), 2);
        assert_eq!(d.evicted(), 1);
        // 1 and 3 go on; 2 comes back without its table: undecodable.
        assert_eq!(
            feed_all(&mut d, &servers[0].headers(5, 0, RESPONSE)),
            [PieceOutcome::Decoded]
        );
        assert_eq!(
            feed_all(&mut d, &servers[2].headers(3, 0, RESPONSE)),
            [PieceOutcome::Decoded]
        );
        assert_eq!(
            feed_all(&mut d, &servers[1].headers(3, 0, RESPONSE)),
            [PieceOutcome::Undecodable(Undecodable::MissedStart)]
        );
        assert_eq!(d.connections_held(), 2);
        let c = counts(&d, 0, 0);
        assert_eq!((c.blocks, c.undecodable_connections), (6, 1));
    }

    #[test]
    fn idle_connections_are_forgotten() {
        let mut d = ServerHeaderDecoder::default();
        let t0 = Instant::now();
        let mut a = Server::new(1, 0, 0);
        let mut b = Server::new(2, 0, 0);
        for p in a.headers(1, 0, RESPONSE) {
            d.feed(&p, t0);
        }
        for p in b.headers(1, 0, RESPONSE) {
            d.feed(&p, t0 + Duration::from_secs(50));
        }
        assert_eq!(
            d.forget_idle(t0 + Duration::from_secs(60), Duration::from_secs(30)),
            1
        );
        assert_eq!(d.connections_held(), 1);
        assert_eq!(
            d.forget_idle(t0 + Duration::from_secs(60), Duration::from_secs(30)),
            0
        );
        assert_eq!(
            d.forget_idle(t0 + Duration::from_secs(100), Duration::from_secs(30)),
            1
        );
        assert_eq!(d.connections_held(), 0);
    }

    #[test]
    fn garbage_makes_a_connection_undecodable_without_panicking() {
        let mut d = ServerHeaderDecoder::default();
        let garbage: Vec<Vec<u8>> = vec![
            vec![0x3f],                   // truncated table-size update (panics hpack 0.3)
            vec![0xff, 0xff, 0xff],       // an index no table has
            vec![0x80],                   // index 0
            vec![0x3f, 0xe1, 0xff, 0x03], // table-size update beyond 4096
            vec![0x40, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, b'v'], // bad Huffman
            vec![0x88, 0x20],             // a size update at the end
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        let random = (0..200).map(|_| {
            let n = rng.random_range(1..400);
            (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
        });
        let mut undecodable = 0;
        for (i, block) in garbage.into_iter().chain(random).enumerate() {
            let mut s = Server::new(1000 + i as u64, 0, 0);
            let pieces = s.frame(HEADERS, END_HEADERS, 1, &block, &[]);
            let outcomes = feed_all(&mut d, &pieces);
            if i < 6 {
                assert_eq!(
                    outcomes.last(),
                    Some(&PieceOutcome::Undecodable(Undecodable::Hpack)),
                    "{block:x?}"
                );
            }
            undecodable +=
                usize::from(outcomes.contains(&PieceOutcome::Undecodable(Undecodable::Hpack)));
        }
        let c = counts(&d, 0, 0);
        assert_eq!(c.undecodable[Undecodable::Hpack.slot()], undecodable as u64);
        assert!(
            undecodable > 150,
            "random bytes decode rarely: {undecodable}"
        );
        assert_eq!(c.grpc_status[0], 0);
    }

    #[test]
    fn a_block_beyond_the_bound_is_too_large() {
        let limits = DecoderLimits {
            max_block_bytes: 300,
            ..DecoderLimits::default()
        };
        let mut d = ServerHeaderDecoder::new(limits);
        let mut s = Server::new(1, 0, 0);
        let block = s.encode(&as_refs(&long_response(8)));
        let pieces = s.frame(HEADERS, END_HEADERS, 1, &block, &[]);
        assert_eq!(
            feed_all(&mut d, &pieces)[1],
            PieceOutcome::Undecodable(Undecodable::TooLarge)
        );
    }

    #[test]
    fn a_reset_slot_starts_from_zero_and_retires_its_connections() {
        let mut d = ServerHeaderDecoder::default();
        let mut old = Server::new(1, 6, 0);
        feed_all(&mut d, &old.headers(1, 0, RESPONSE));
        assert_eq!(counts(&d, 6, 0).blocks, 1);
        d.reset(6, 0);
        assert_eq!(counts(&d, 6, 0), HeaderCounts::default());
        assert_eq!(
            feed_all(&mut d, &old.headers(3, 0, RESPONSE)),
            [PieceOutcome::Ignored]
        );
        let mut new = Server::new(2, 6, 0);
        feed_all(&mut d, &new.headers(1, 0, RESPONSE));
        assert_eq!(counts(&d, 6, 0).blocks, 1);
        assert_eq!(counts(&d, 6, 0).pieces_ignored, 0);
    }

    #[test]
    fn pieces_out_of_range_are_stray() {
        let mut d = ServerHeaderDecoder::default();
        let mut s = Server::new(1, MAX_SERVICES, 0);
        assert_eq!(
            feed_all(&mut d, &s.headers(1, 0, RESPONSE)),
            [PieceOutcome::Stray]
        );
        let mut s = Server::new(1, 0, 2);
        assert_eq!(
            feed_all(&mut d, &s.headers(1, 0, RESPONSE)),
            [PieceOutcome::Stray]
        );
        let mut p = Server::new(2, 0, 0).headers(1, 0, RESPONSE)[0];
        p.len = PIECE_BYTES as u16 + 1;
        assert_eq!(
            d.feed(&p, Instant::now()),
            PieceOutcome::Undecodable(Undecodable::OutOfPlace)
        );
        assert_eq!(d.stray_pieces(), 2);
        assert_eq!(d.counts(MAX_SERVICES, 0), None);
    }

    #[test]
    fn status_values_find_their_slots() {
        for (value, slot) in [
            ("0", 0),
            ("14", 14),
            ("16", 16),
            ("016", 16),
            ("17", GRPC_OTHER),
            ("", GRPC_OTHER),
            ("-1", GRPC_OTHER),
            ("+1", GRPC_OTHER),
            ("1 ", GRPC_OTHER),
            ("99999999999999999999", GRPC_OTHER),
        ] {
            assert_eq!(grpc_slot(value.as_bytes()), slot, "{value:?}");
        }
        for (value, class) in [
            ("100", 0),
            ("204", 1),
            ("308", 2),
            ("429", 3),
            ("503", 4),
            ("600", HTTP_OTHER),
            ("20", HTTP_OTHER),
            ("2000", HTTP_OTHER),
            ("2x0", HTTP_OTHER),
        ] {
            assert_eq!(http_class(value.as_bytes()), class, "{value:?}");
        }
    }

    #[test]
    fn counts_round_trip_through_serde() {
        let mut c = HeaderCounts::default();
        c.grpc_status[GRPC_OTHER] = 3;
        c.undecodable[1] = 2;
        let back: HeaderCounts = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
