//! Health signals per (service, version), measured by the data path: the
//! per-CPU value of the SIGNALS map, its histogram buckets and the HTTP
//! status-line classifier. Shared by the kernel (which counts), userspace
//! (which sums and exports) and the tests (which check buckets).

/// Duration histograms are log-linear over nanoseconds: bucket 0 holds
/// durations up to `2^FIRST_OCTAVE` ns (16.384 µs); then each power of two
/// from there to `2^(FIRST_OCTAVE + OCTAVES)` ns (34.36 s) is split into
/// `2^sub_bits` buckets of equal width; the last bucket holds the rest
/// (Prometheus' `+Inf`). The bucket of a duration is a bit scan and two
/// shifts: no division, no loop (see `bucket_of_ns`).
pub const FIRST_OCTAVE: u32 = 14;
/// Powers of two covered between the first bucket and the last.
pub const OCTAVES: u32 = 21;
/// Time to first byte: 8 buckets per power of two, each at most 12.5 %
/// wider than its lower bound, fine enough to judge a p99 ratio.
pub const LATENCY_SUB_BITS: u32 = 3;
/// Connect time: one bucket per power of two.
pub const CONNECT_SUB_BITS: u32 = 0;
/// Buckets of a histogram with `sub_bits`.
pub const fn bucket_count(sub_bits: u32) -> usize {
    2 + ((OCTAVES as usize) << sub_bits)
}
pub const LATENCY_BUCKETS: usize = bucket_count(LATENCY_SUB_BITS);
pub const CONNECT_BUCKETS: usize = bucket_count(CONNECT_SUB_BITS);

/// HTTP response classes counted in `Signals::http`: 1xx to 5xx, then
/// `other` for a response that does not start with an HTTP/1.x status line.
pub const HTTP_CLASSES: usize = 6;
pub const HTTP_OTHER: usize = 5;
/// Names of the classes, as exported (`class` label).
pub const HTTP_CLASS_NAMES: [&str; HTTP_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
/// Bytes of a response the classifier reads: `HTTP/1.1 200`.
pub const STATUS_LINE_PREFIX: usize = 12;

/// Value of the SIGNALS per-CPU array, one slot per (service, version) at
/// `stats_slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signals {
    /// TCP: requests, i.e. client payloads that start after the backend's
    /// last reply (or open the flow). UDP: client datagrams.
    pub requests: u64,
    /// TCP: first reply payloads after a request (each is a response whose
    /// latency and class were taken). UDP: backend datagrams.
    pub responses: u64,
    /// TCP responses by status class (see `HTTP_CLASS_NAMES`).
    pub http: [u64; HTTP_CLASSES],
    /// RST from the backend on a flow whose handshake it had answered.
    pub backend_resets: u64,
    /// RST from the backend answering a SYN: nothing listens there.
    pub refused: u64,
    /// A client SYN again on a flow whose SYN the backend has not answered.
    pub syn_retransmits: u64,
    /// Time to first byte: request start to the first reply payload.
    pub latency: [u64; LATENCY_BUCKETS],
    /// Connect time: the client's first SYN to the backend's SYN-ACK.
    pub connect: [u64; CONNECT_BUCKETS],
    /// Sums of the observations in `latency` and `connect`, nanoseconds.
    pub latency_sum_ns: u64,
    pub connect_sum_ns: u64,
    /// New flows the failsafe sent to stable instead of the canary the
    /// weight would have chosen (canaryd's heartbeat was stale); counted
    /// on stable.
    pub failsafe_flows: u64,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            requests: 0,
            responses: 0,
            http: [0; HTTP_CLASSES],
            backend_resets: 0,
            refused: 0,
            syn_retransmits: 0,
            latency: [0; LATENCY_BUCKETS],
            connect: [0; CONNECT_BUCKETS],
            latency_sum_ns: 0,
            connect_sum_ns: 0,
            failsafe_flows: 0,
        }
    }
}

impl Signals {
    /// Sum of two signal sets (folds per-CPU values).
    pub fn add(&mut self, o: &Self) {
        self.requests += o.requests;
        self.responses += o.responses;
        for (a, b) in self.http.iter_mut().zip(&o.http) {
            *a += b;
        }
        self.backend_resets += o.backend_resets;
        self.refused += o.refused;
        self.syn_retransmits += o.syn_retransmits;
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a += b;
        }
        for (a, b) in self.connect.iter_mut().zip(&o.connect) {
            *a += b;
        }
        self.latency_sum_ns += o.latency_sum_ns;
        self.connect_sum_ns += o.connect_sum_ns;
        self.failsafe_flows += o.failsafe_flows;
    }
}

/// `FlowEntry::request_ns` of a request waiting for its response that was
/// not timed (see `Sampler`): its response is counted and classified, but
/// adds no latency. A real start time is never 1 ns after boot.
pub const UNTIMED: u64 = 1;

/// How request starts are timed, per (service, version) and CPU: the
/// SAMPLER per-CPU array, at `stats_slot`.
///
/// Reading the clock is most of what a request start costs (on a VM with
/// retpolines and SRSO's safe RET, several times what counting the start
/// costs; docs/DATAPATH.md, "Latency sampling", has the figures). So each CPU
/// times every request of a (service, version) up to `TIMED_PER_WINDOW`
/// starts per `SAMPLE_WINDOW_NS`, and above that rate one start in
/// `2^shift`, the largest power of two that still leaves at least that
/// many timed (at most one in `1 << MAX_SAMPLE_SHIFT`). Which starts are
/// timed depends only on their order of arrival, never on their latency,
/// so the histogram stays an unbiased sample; requests, responses and
/// status classes still count every request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sampler {
    /// Clock at the timed start that opened the current window.
    pub window_start_ns: u64,
    /// Request starts since then.
    pub starts: u32,
    /// One start in `1 << shift` is timed.
    pub shift: u32,
}

/// Length of a sampling window: the rate is judged, and the shift chosen,
/// at the first timed start after a window has passed.
pub const SAMPLE_WINDOW_NS: u64 = 100_000_000;
/// Starts per window and CPU timed at least: every request up to 320 a
/// second per CPU and version, and never fewer timed above that. A rollout
/// judges p99 over intervals of tens of seconds: 320 a second per CPU give
/// it thousands of observations per interval, a few hundred above its p99.
pub const TIMED_PER_WINDOW: u32 = 32;
/// At most one start in 32 is timed: the clock's cost spread over 32.
pub const MAX_SAMPLE_SHIFT: u32 = 5;

/// The shift (at most `max_shift`, itself at most `MAX_SAMPLE_SHIFT`) for
/// the next window after `starts` request starts in the last one: the
/// largest that still leaves at least `TIMED_PER_WINDOW` of them timed
/// (a window lasts longer than `SAMPLE_WINDOW_NS` when its starts are few
/// or mostly untimed, which only makes the shift smaller).
#[inline(always)]
pub fn sample_shift(starts: u32, max_shift: u32) -> u32 {
    let mut shift = 0;
    // Bounded by MAX_SAMPLE_SHIFT: the verifier sees a fixed trip count.
    while shift < MAX_SAMPLE_SHIFT && shift < max_shift && (starts >> shift) >= 2 * TIMED_PER_WINDOW
    {
        shift += 1;
    }
    shift
}

/// Whether the `starts`-th start of a window (counted from 1) is timed at
/// `shift`: every `1 << shift`-th one.
#[inline(always)]
pub fn is_timed(starts: u32, shift: u32) -> bool {
    starts & ((1u32 << (shift & 31)) - 1) == 0
}

/// The bucket of a duration in nanoseconds, with `2^sub_bits` buckets per
/// power of two. Upper bounds are inclusive (Prometheus' `le`): a duration
/// of exactly a bound counts in the bucket it closes, hence `ns - 1`.
#[inline(always)]
pub fn bucket_of_ns(ns: u64, sub_bits: u32) -> usize {
    if ns <= 1 << FIRST_OCTAVE {
        return 0;
    }
    let m = ns - 1;
    // The power of two m lies in: [2^octave, 2^(octave+1)).
    let octave = 63 - m.leading_zeros();
    if octave >= FIRST_OCTAVE + OCTAVES {
        return bucket_count(sub_bits) - 1;
    }
    let sub = (m >> (octave - sub_bits)) & ((1 << sub_bits) - 1);
    1 + (((octave - FIRST_OCTAVE) as usize) << sub_bits) + sub as usize
}

/// Upper bound (inclusive) of bucket `i` in nanoseconds; `None` for the
/// last (+Inf) and beyond.
pub const fn bucket_upper_ns(i: usize, sub_bits: u32) -> Option<u64> {
    if i == 0 {
        return Some(1 << FIRST_OCTAVE);
    }
    if i + 1 >= bucket_count(sub_bits) {
        return None;
    }
    let j = i - 1;
    let octave = FIRST_OCTAVE as usize + (j >> sub_bits);
    let sub = (j & ((1 << sub_bits) - 1)) as u64;
    Some(((1u64 << sub_bits) + sub + 1) << (octave - sub_bits as usize))
}

/// The sub-bucket resolution of a histogram of `len` buckets: latency or
/// connect (userspace keeps histograms as plain vectors).
pub const fn sub_bits_of(len: usize) -> Option<u32> {
    if len == LATENCY_BUCKETS {
        Some(LATENCY_SUB_BITS)
    } else if len == CONNECT_BUCKETS {
        Some(CONNECT_SUB_BITS)
    } else {
        None
    }
}

/// The class of a response from its first bytes: `HTTP/1.0 ` or
/// `HTTP/1.1 ` and three digits, the first 1 to 5; anything else, or fewer
/// bytes, is `HTTP_OTHER`.
#[inline(always)]
pub fn http_class(head: &[u8; STATUS_LINE_PREFIX]) -> usize {
    let digit = |b: u8| b.is_ascii_digit();
    if &head[..7] == b"HTTP/1."
        && (head[7] == b'0' || head[7] == b'1')
        && head[8] == b' '
        && (b'1'..=b'5').contains(&head[9])
        && digit(head[10])
        && digit(head[11])
    {
        (head[9] - b'1') as usize
    } else {
        HTTP_OTHER
    }
}

const _: () = assert!(core::mem::size_of::<Sampler>() == 16);

const _: () = assert!(
    core::mem::size_of::<Signals>()
        == (2 + HTTP_CLASSES + 3 + LATENCY_BUCKETS + CONNECT_BUCKETS + 3) * 8
);
const _: () = assert!(LATENCY_BUCKETS == 170 && CONNECT_BUCKETS == 23);

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, only u64 fields and arrays of u64: no padding.
unsafe impl aya::Pod for Signals {}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, a u64 then two u32: 16 bytes, no padding.
unsafe impl aya::Pod for Sampler {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_is_timed_until_the_rate_passes_the_floor() {
        assert_eq!(sample_shift(0, MAX_SAMPLE_SHIFT), 0);
        assert_eq!(sample_shift(2 * TIMED_PER_WINDOW - 1, MAX_SAMPLE_SHIFT), 0);
        assert_eq!(sample_shift(2 * TIMED_PER_WINDOW, MAX_SAMPLE_SHIFT), 1);
        assert_eq!(sample_shift(4 * TIMED_PER_WINDOW, MAX_SAMPLE_SHIFT), 2);
        assert_eq!(sample_shift(u32::MAX, MAX_SAMPLE_SHIFT), MAX_SAMPLE_SHIFT);
        // At every rate at least TIMED_PER_WINDOW starts of a window are
        // timed, or all of them when there are fewer.
        for starts in (0..100_000).step_by(7) {
            let shift = sample_shift(starts, MAX_SAMPLE_SHIFT);
            let timed = (1..=starts).filter(|&n| is_timed(n, shift)).count() as u32;
            assert!(
                timed >= TIMED_PER_WINDOW.min(starts) || shift == MAX_SAMPLE_SHIFT,
                "{starts} starts, shift {shift}: {timed} timed"
            );
            assert_eq!(timed, starts >> shift, "{starts} starts, shift {shift}");
        }
        assert!((1..=10).all(|n| is_timed(n, 0)));
        // Sampling off: every start timed at any rate.
        assert_eq!(sample_shift(u32::MAX, 0), 0);
        assert!((1..=24u32).filter(|&n| is_timed(n, 3)).eq([8, 16, 24]));
    }

    #[test]
    fn buckets_follow_their_bounds() {
        for sub_bits in [LATENCY_SUB_BITS, CONNECT_SUB_BITS] {
            let n = bucket_count(sub_bits);
            assert_eq!(bucket_of_ns(0, sub_bits), 0);
            assert_eq!(bucket_of_ns(16_384, sub_bits), 0);
            assert_eq!(bucket_of_ns(16_385, sub_bits), 1);
            assert_eq!(bucket_upper_ns(n - 2, sub_bits), Some(1 << 35));
            assert_eq!(bucket_of_ns(1 << 35, sub_bits), n - 2);
            assert_eq!(bucket_of_ns((1 << 35) + 1, sub_bits), n - 1);
            assert_eq!(bucket_of_ns(u64::MAX, sub_bits), n - 1);
            assert_eq!(bucket_upper_ns(n - 1, sub_bits), None);
            let mut previous = 0;
            for i in 0..n - 1 {
                let upper = bucket_upper_ns(i, sub_bits).unwrap();
                assert!(upper > previous, "bounds increase: {i}");
                assert_eq!(bucket_of_ns(upper, sub_bits), i, "{sub_bits}: {upper}");
                assert_eq!(bucket_of_ns(upper + 1, sub_bits), i + 1, "{sub_bits}");
                assert_eq!(bucket_of_ns(previous + 1, sub_bits), i, "{sub_bits}");
                previous = upper;
            }
        }
        // Every power of two from the first is a bound of both scales, so
        // the coarse buckets are unions of the fine ones.
        for octave in 0..=OCTAVES as usize {
            let coarse = bucket_upper_ns(octave, CONNECT_SUB_BITS).unwrap();
            assert_eq!(coarse, 1 << (FIRST_OCTAVE as usize + octave));
            let fine = bucket_upper_ns(octave << LATENCY_SUB_BITS, LATENCY_SUB_BITS).unwrap();
            assert_eq!(fine, coarse);
        }
        // The fine buckets' width: at most 1/8 of their lower bound.
        for i in 1..LATENCY_BUCKETS - 1 {
            let lo = bucket_upper_ns(i - 1, LATENCY_SUB_BITS).unwrap() as f64;
            let hi = bucket_upper_ns(i, LATENCY_SUB_BITS).unwrap() as f64;
            assert!(hi / lo <= 1.125 + 1e-12, "bucket {i}: {lo} .. {hi}");
        }
        assert_eq!(bucket_upper_ns(1, LATENCY_SUB_BITS), Some(18_432));
        assert_eq!(
            bucket_of_ns(1_000_000, CONNECT_SUB_BITS),
            6,
            "1 ms <= 1.048576 ms"
        );
        assert_eq!(sub_bits_of(LATENCY_BUCKETS), Some(LATENCY_SUB_BITS));
        assert_eq!(sub_bits_of(CONNECT_BUCKETS), Some(CONNECT_SUB_BITS));
        assert_eq!(sub_bits_of(24), None);
    }

    #[test]
    fn status_lines_are_classified_and_nothing_else_is() {
        let class = |s: &[u8]| {
            let mut head = [0u8; STATUS_LINE_PREFIX];
            head.copy_from_slice(&s[..STATUS_LINE_PREFIX]);
            http_class(&head)
        };
        assert_eq!(class(b"HTTP/1.1 200 OK\r\n"), 1);
        assert_eq!(class(b"HTTP/1.0 101 Switching"), 0);
        assert_eq!(class(b"HTTP/1.1 302 Found\r\n"), 2);
        assert_eq!(class(b"HTTP/1.1 404 Not Found"), 3);
        assert_eq!(class(b"HTTP/1.1 503 Busy\r\n\r\n"), 4);
        for other in [
            &b"HTTP/1.1 600 Odd\r\n"[..],
            b"HTTP/1.1 099 Odd\r\n",
            b"HTTP/2.0 200 OK\r\n",
            b"HTTP/1.2 200 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
            b"http/1.1 200 OK\r\n",
            b"SSH-2.0-OpenSSH_9",
            b"\x16\x03\x03\x00\x02HTTP/1.1 ",
        ] {
            assert_eq!(
                class(other),
                HTTP_OTHER,
                "{:?}",
                core::str::from_utf8(other)
            );
        }
    }
}
