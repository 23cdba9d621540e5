//! HTTP/2 without TLS (h2c), as the data path follows it: the connection
//! preface, frame headers (RFC 9113 §4.1), the per-connection and
//! per-stream state the kernel keeps, its counters, and the pieces of the
//! server's header blocks it hands to canaryd, which decodes them (HPACK
//! needs every block of a connection in order, so that is done in
//! userspace).
//!
//! The kernel reads frame *headers* only: 9 bytes at each frame boundary,
//! found by walking each direction's byte stream by TCP sequence number.
//! A byte it has not seen (a gap, a reordering) or a header no peer in
//! sync would send ends the walk: the connection is *untracked* from then
//! on, counted once, and nothing more is measured on it. Nothing is
//! guessed.

/// The client connection preface (RFC 9113 §3.4): the first bytes a client
/// sends on an h2c connection with prior knowledge, as gRPC clients do.
pub const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const PREFACE_LEN: usize = 24;
/// Bytes of a frame header: length (24 bits), type, flags, stream (31 bits).
pub const FRAME_HEADER_LEN: usize = 9;

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// HTTP/2 error codes (RFC 9113 §7) counted one by one; any higher code
/// counts in the last slot.
pub const ERROR_CODES: usize = 15;
pub const ERROR_CODE_NAMES: [&str; ERROR_CODES] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
    "other",
];

/// The slot of an error code in `H2Signals::server_resets`.
#[inline(always)]
pub fn error_slot(code: u32) -> usize {
    if code < (ERROR_CODES - 1) as u32 {
        code as usize
    } else {
        ERROR_CODES - 1
    }
}

/// A frame header, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (the 9 header bytes not included).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The frame header in `b`, if a peer in sync with us could have sent it:
/// a known type (0 to 9), the reserved bit clear, a stream id where the
/// type needs one and none where it must not, and the fixed lengths of the
/// fixed-size frames. Anything else means the walk lost the frame
/// boundaries (or the peer speaks extension frames, which gRPC servers do
/// not): the connection is untracked, never guessed at.
#[inline(always)]
pub fn frame_header(b: &[u8; FRAME_HEADER_LEN]) -> Option<FrameHeader> {
    let len = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    let kind = b[3];
    let flags = b[4];
    if b[5] & 0x80 != 0 {
        return None;
    }
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    let ok = match kind {
        DATA | HEADERS | CONTINUATION | PUSH_PROMISE => stream != 0,
        PRIORITY => stream != 0 && len == 5,
        RST_STREAM => stream != 0 && len == 4,
        SETTINGS => stream == 0 && len.is_multiple_of(6) && (flags & 1 == 0 || len == 0),
        PING => stream == 0 && len == 8,
        GOAWAY => stream == 0 && len >= 8,
        WINDOW_UPDATE => len == 4,
        _ => false,
    };
    ok.then_some(FrameHeader {
        len,
        kind,
        flags,
        stream,
    })
}

/// Whether a server's first bytes can open an h2c connection: its
/// preface is a SETTINGS frame without ACK (RFC 9113 §3.4).
#[inline(always)]
pub fn is_server_preface(b: &[u8; FRAME_HEADER_LEN]) -> bool {
    matches!(frame_header(b), Some(h) if h.kind == SETTINGS && h.flags & 1 == 0)
}

/// `Service::app_protocol`: what the data path reads of a service's
/// payload (`[[service]] app_protocol`).
/// `auto`: per connection, the HTTP/2 preface makes it h2c, anything else
/// is read as HTTP/1.x.
pub const APP_PROTOCOL_AUTO: u8 = 0;
/// `http`: HTTP/1.x status lines only; no connection is read as HTTP/2.
pub const APP_PROTOCOL_HTTP: u8 = 1;
/// `h2c`: every connection must open with the HTTP/2 preface; one that
/// does not (or that canary saw mid-stream) is counted untracked.
pub const APP_PROTOCOL_H2C: u8 = 2;
/// `none`: no payload is read: requests and responses are counted by
/// turns, with no status class.
pub const APP_PROTOCOL_NONE: u8 = 3;

/// `FlowEntry::app`: what the data path knows of a connection's
/// application protocol. A new flow starts at the service's `*_PENDING`
/// (or `APP_OPAQUE`); the client's first payload decides the rest.
/// Entries written before this field existed read 0: auto, pending.
pub const APP_AUTO_PENDING: u8 = 0;
/// HTTP/1.x (or anything not HTTP/2): status lines are classified.
pub const APP_HTTP1: u8 = 1;
/// An `h2c` service's connection, before the client's first payload.
pub const APP_H2C_PENDING: u8 = 2;
/// HTTP/2, followed frame by frame: H2_CONNS holds its state.
pub const APP_H2: u8 = 3;
/// HTTP/2 whose frame boundaries were lost: counted once, not measured.
pub const APP_H2_UNTRACKED: u8 = 4;
/// An `app_protocol = "none"` service: payload is never read.
pub const APP_OPAQUE: u8 = 5;

/// The `FlowEntry::app` a new flow of a service starts with.
#[inline(always)]
pub const fn initial_app(app_protocol: u8) -> u8 {
    match app_protocol {
        APP_PROTOCOL_HTTP => APP_HTTP1,
        APP_PROTOCOL_H2C => APP_H2C_PENDING,
        APP_PROTOCOL_NONE => APP_OPAQUE,
        _ => APP_AUTO_PENDING,
    }
}

/// Directions of a connection, indexes of `H2Conn::dir`.
pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

/// One direction's walk over its byte stream (host-order TCP sequence
/// numbers, compared with wrapping arithmetic).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2Dir {
    /// The next byte not walked yet.
    pub pos: u32,
    /// Where the current frame's payload ends; equal to `pos` at a frame
    /// boundary (then the next bytes are a frame header).
    pub frame_end: u32,
    /// The current frame's payload length, type, flags and stream.
    pub frame_len: u32,
    pub stream: u32,
    pub kind: u8,
    pub flags: u8,
    /// Bytes of a frame header split over two packets, held in `hdr`.
    pub have: u8,
    /// 1 once `pos` is known (the preface for the client, the handshake
    /// for the server).
    pub started: u8,
    /// The highest stream id the client opened (client direction only):
    /// a HEADERS on a higher one opens a stream; on a lower one it is a
    /// trailer.
    pub last_stream: u32,
    /// A frame header being assembled: 9 bytes used, 24 so that a load of
    /// up to 9 bytes at any `have` up to 8 stays inside, as the verifier,
    /// which bounds the two apart, can see.
    pub hdr: [u8; 24],
}

/// Value of H2_CONNS, keyed by the flow's `FlowKey`: one tracked HTTP/2
/// connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2Conn {
    /// A random id: the key of its streams and of its header pieces.
    pub id: u64,
    pub dir: [H2Dir; 2],
    /// Header pieces attempted so far (`H2HeaderPiece::seq` of the next):
    /// a gap tells canaryd one was lost.
    pub pieces: u32,
    pub _pad: [u8; 4],
}

/// Key of H2_STREAMS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct H2StreamKey {
    pub conn: u64,
    pub stream: u32,
    pub _pad: u32,
}

/// Value of H2_STREAMS: the stream's start time (`signals::UNTIMED` when
/// the sampler left it untimed), or `STREAM_ANSWERED` once the server's
/// first HEADERS or DATA came.
pub type H2Stream = u64;
pub const STREAM_ANSWERED: u64 = 0;

/// Per (service, version) HTTP/2 counters, a per-CPU slot of H2_SIGNALS at
/// `stats_slot`. Streams opened count in `Signals::requests`, their first
/// server byte in `Signals::responses` and their time to first byte in
/// `Signals::latency`, like HTTP/1.x requests.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Signals {
    /// Connections followed from their preface.
    pub connections: u64,
    /// Connections that lost their frame boundaries (a sequence gap, a
    /// header out of sync, more frames in one packet than the walk takes,
    /// or an `h2c` connection seen without its preface): counted once.
    pub untracked: u64,
    /// Streams the server ended (END_STREAM).
    pub streams_ended: u64,
    /// RST_STREAM from the server, by error code (`ERROR_CODE_NAMES`);
    /// a code the walk could not read (split from its header) is `other`.
    pub server_resets: [u64; ERROR_CODES],
    /// RST_STREAM from the client (cancellations: the client's choice).
    pub client_resets: u64,
    /// GOAWAY from the server: without an error code, and with one.
    pub goaway: u64,
    pub goaway_errors: u64,
    /// Pieces of server header blocks handed to canaryd, and those the
    /// ring buffer had no room for (their connections become
    /// undecodable in canaryd).
    pub header_pieces: u64,
    pub header_pieces_lost: u64,
}

impl Default for H2Signals {
    fn default() -> Self {
        H2Signals {
            connections: 0,
            untracked: 0,
            streams_ended: 0,
            server_resets: [0; ERROR_CODES],
            client_resets: 0,
            goaway: 0,
            goaway_errors: 0,
            header_pieces: 0,
            header_pieces_lost: 0,
        }
    }
}

impl H2Signals {
    /// Sum of two counter sets (folds per-CPU values).
    pub fn add(&mut self, o: &Self) {
        self.connections += o.connections;
        self.untracked += o.untracked;
        self.streams_ended += o.streams_ended;
        for (a, b) in self.server_resets.iter_mut().zip(&o.server_resets) {
            *a += b;
        }
        self.client_resets += o.client_resets;
        self.goaway += o.goaway;
        self.goaway_errors += o.goaway_errors;
        self.header_pieces += o.header_pieces;
        self.header_pieces_lost += o.header_pieces_lost;
    }
}

/// Bytes of header block one `H2HeaderPiece` carries at most; a longer
/// run of a frame goes in several pieces.
pub const PIECE_BYTES: usize = 256;

/// A record of the H2_HEADERS ring buffer: a run of bytes of a server
/// HEADERS or CONTINUATION frame's payload (padding and priority fields
/// included: canaryd strips them, it has the flags and the offset).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2HeaderPiece {
    /// `H2Conn::id`.
    pub conn: u64,
    /// This connection's piece number, from 0; canaryd treats a gap as a
    /// lost piece.
    pub seq: u32,
    pub service_id: u32,
    pub stream: u32,
    /// The frame's payload length, and where in it `data` starts.
    pub frame_len: u32,
    pub offset: u32,
    /// Bytes of `data` used.
    pub len: u16,
    pub version: u8,
    /// HEADERS or CONTINUATION, and the frame's flags.
    pub kind: u8,
    pub flags: u8,
    pub _pad: [u8; 7],
    pub data: [u8; PIECE_BYTES],
}

/// The ring buffer's size: 256 KiB hold about 850 pieces, several
/// hundred milliseconds of a busy gRPC service's responses at the
/// cadence canaryd drains it.
pub const HEADER_RING_BYTES: u32 = 256 * 1024;

/// Steps one packet's walk takes at most (a frame header, a run of
/// payload, or a piece of a header block each): beyond that the
/// connection is untracked. 64 KiB of GRO'd replies of gRPC's 3 frames
/// each fit many times over.
pub const MAX_WALK_STEPS: u32 = 512;

const _: () = assert!(core::mem::size_of::<H2Dir>() == 48);
const _: () = assert!(core::mem::size_of::<H2Conn>() == 112);
const _: () = assert!(core::mem::size_of::<H2StreamKey>() == 16);
const _: () = assert!(core::mem::size_of::<H2Signals>() == (ERROR_CODES + 8) * 8);
const _: () = assert!(core::mem::size_of::<H2HeaderPiece>() == 40 + PIECE_BYTES);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, integers and arrays of integers only, every
    // byte a named field (sizes asserted above).
    unsafe impl aya::Pod for H2Conn {}
    unsafe impl aya::Pod for H2StreamKey {}
    unsafe impl aya::Pod for H2Signals {}
    unsafe impl aya::Pod for H2HeaderPiece {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
        let l = len.to_be_bytes();
        let s = stream.to_be_bytes();
        [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
    }

    #[test]
    fn frame_headers_in_sync_are_read_and_others_refused() {
        let h = frame_header(&header(300, HEADERS, FLAG_END_HEADERS, 1)).unwrap();
        assert_eq!((h.len, h.kind, h.flags, h.stream), (300, HEADERS, 4, 1));
        assert!(frame_header(&header(0, SETTINGS, 0, 0)).is_some());
        assert!(frame_header(&header(18, SETTINGS, 0, 0)).is_some());
        assert!(frame_header(&header(4, RST_STREAM, 0, 3)).is_some());
        assert!(frame_header(&header(8, GOAWAY, 0, 0)).is_some());
        assert!(frame_header(&header(4, WINDOW_UPDATE, 0, 0)).is_some());
        for bad in [
            header(0, 10, 0, 0),                // extension type
            header(0, DATA, 0, 0),              // DATA on stream 0
            header(7, SETTINGS, 0, 0),          // not a multiple of 6
            header(6, SETTINGS, 1, 0),          // an ACK with a payload
            header(0, SETTINGS, 0, 1),          // SETTINGS on a stream
            header(5, RST_STREAM, 0, 1),        // RST_STREAM is 4 bytes
            header(8, PING, 0, 1),              // PING on a stream
            header(4, GOAWAY, 0, 0),            // GOAWAY under 8 bytes
            header(4, PRIORITY, 0, 1),          // PRIORITY is 5 bytes
            header(4, HEADERS, 0, 0x8000_0001), // reserved bit
        ] {
            assert_eq!(frame_header(&bad), None, "{bad:?}");
        }
        assert!(is_server_preface(&header(12, SETTINGS, 0, 0)));
        assert!(!is_server_preface(&header(0, SETTINGS, 1, 0)));
        // An HTTP/1.x response or an SSH banner is no frame header.
        assert_eq!(frame_header(b"HTTP/1.1 "), None);
        assert_eq!(frame_header(b"SSH-2.0-O"), None);
    }

    #[test]
    fn error_codes_have_slots() {
        assert_eq!(error_slot(0), 0);
        assert_eq!(error_slot(0xd), 13);
        assert_eq!(error_slot(0xe), 14);
        assert_eq!(error_slot(u32::MAX), 14);
        assert_eq!(ERROR_CODE_NAMES[8], "CANCEL");
    }
}
