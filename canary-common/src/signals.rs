//! Health signals per (service, version), measured by the data path: the
//! per-CPU value of the SIGNALS map, its histogram buckets and the HTTP
//! status-line classifier. Shared by the kernel (which counts), userspace
//! (which sums and exports) and the tests (which check buckets).

/// Latency histogram buckets: bucket `i < LATENCY_BUCKETS - 1` holds
/// durations up to `16 µs << i` (16 µs, 32 µs, ... 33.55 s); the last one
/// holds the rest (Prometheus' `+Inf`).
pub const LATENCY_BUCKETS: usize = 23;
/// Upper bound of the first bucket, in microseconds.
pub const FIRST_BUCKET_US: u64 = 16;

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
    pub connect: [u64; LATENCY_BUCKETS],
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
            connect: [0; LATENCY_BUCKETS],
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

/// The bucket of a duration in nanoseconds.
#[inline(always)]
pub fn bucket_of_ns(ns: u64) -> usize {
    let us = ns / 1000;
    let mut bound = FIRST_BUCKET_US;
    let mut i = 0;
    // Bounded by the bucket count: the verifier sees a fixed trip count.
    while i < LATENCY_BUCKETS - 1 {
        if us <= bound {
            return i;
        }
        bound <<= 1;
        i += 1;
    }
    LATENCY_BUCKETS - 1
}

/// Upper bound of bucket `i` in microseconds; `None` for the last (+Inf).
pub const fn bucket_upper_us(i: usize) -> Option<u64> {
    if i + 1 < LATENCY_BUCKETS {
        Some(FIRST_BUCKET_US << i)
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

const _: () = assert!(
    core::mem::size_of::<Signals>() == (2 + HTTP_CLASSES + 3 + 2 * LATENCY_BUCKETS + 3) * 8
);

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, only u64 fields and arrays of u64: no padding.
unsafe impl aya::Pod for Signals {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_their_bounds() {
        assert_eq!(bucket_of_ns(0), 0);
        assert_eq!(bucket_of_ns(16_000), 0);
        assert_eq!(bucket_of_ns(16_999), 0, "whole microseconds");
        assert_eq!(bucket_of_ns(17_000), 1);
        assert_eq!(bucket_of_ns(32_000), 1);
        assert_eq!(bucket_of_ns(1_000_000), 6, "1 ms is within 1,024 µs");
        assert_eq!(bucket_of_ns(2_500_000), 8, "2.5 ms is within 4,096 µs");
        let last_finite = bucket_upper_us(LATENCY_BUCKETS - 2).unwrap();
        assert_eq!(last_finite, 16 << 21);
        assert_eq!(bucket_of_ns(last_finite * 1000), LATENCY_BUCKETS - 2);
        assert_eq!(bucket_of_ns(last_finite * 1000 + 1000), LATENCY_BUCKETS - 1);
        assert_eq!(bucket_of_ns(u64::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(bucket_upper_us(LATENCY_BUCKETS - 1), None);
        for i in 0..LATENCY_BUCKETS - 1 {
            let upper = bucket_upper_us(i).unwrap();
            assert_eq!(bucket_of_ns(upper * 1000), i);
            assert_eq!(bucket_of_ns(upper * 1000 + 1000), i + 1);
        }
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
