//! Health signals as userspace reads them: one version's counts and
//! histograms summed over CPUs, the difference of two readings, and what is
//! derived from them (error rate, latency quantiles). canaryctl, the metrics
//! and the rollout controller all use these, so a p99 means one thing.

use std::time::Duration;

use canary_common::h2::H2Signals;
use canary_common::signals::{
    HTTP_CLASS_NAMES, HTTP_CLASSES, LATENCY_BUCKETS, LATENCY_SUB_BITS, Signals, bucket_count,
    bucket_of_ns, bucket_upper_ns, sub_bits_of,
};
use serde::{Deserialize, Serialize};

use crate::model::{
    grpc::{GRPC_CODES, HeaderCounts},
    grpc_code::GrpcCodes,
};

/// A log-linear histogram of durations (`canary_common::signals`): latency
/// (`LATENCY_BUCKETS`, 8 buckets per power of two) or connect time
/// (`CONNECT_BUCKETS`, one per power of two), told apart by their length.
/// `counts[i]` observations up to `upper_ns(i)` (the last bucket has no
/// upper bound), and their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum_ns: u64,
}

/// Buckets of the latency histogram before pin layout v6 (16 µs << i,
/// whole microseconds, then +Inf), as older state files and SIGNALS maps
/// hold them.
pub const V5_LATENCY_BUCKETS: usize = 23;

/// Where a count of pin layout v5's bucket `i` (durations up to
/// `16 µs << i`; the last unbounded) goes in today's histogram of
/// `sub_bits`: the bucket holding that old upper bound, so every count
/// stays within the bound it was counted under.
pub fn v5_bucket(i: usize, sub_bits: u32) -> usize {
    if i + 1 < V5_LATENCY_BUCKETS {
        bucket_of_ns(16_000 << i, sub_bits)
    } else {
        bucket_count(sub_bits) - 1
    }
}

impl Histogram {
    fn from_kernel(counts: &[u64], sum_ns: u64) -> Histogram {
        Histogram {
            counts: counts.to_vec(),
            sum_ns,
        }
    }

    /// An empty latency histogram.
    pub fn latency() -> Histogram {
        Histogram {
            counts: vec![0; LATENCY_BUCKETS],
            sum_ns: 0,
        }
    }

    /// Upper bound of bucket `i` in nanoseconds; None for the last (+Inf),
    /// or for a histogram of no known length.
    pub fn upper_ns(&self, i: usize) -> Option<u64> {
        bucket_upper_ns(i, sub_bits_of(self.counts.len())?)
    }

    /// Lower bound of bucket `i`: the upper bound of the one before; 0 for
    /// the first.
    pub fn lower_ns(&self, i: usize) -> u64 {
        i.checked_sub(1).and_then(|j| self.upper_ns(j)).unwrap_or(0)
    }

    /// A latency histogram of pin layout v5's 23 log2 buckets carried onto
    /// today's: each old bucket's count goes to the fine bucket holding the
    /// old upper bound (16 µs << i), so "at most the old bound" still holds
    /// for every count; the unbounded bucket stays unbounded. A histogram
    /// of another length is returned as it is.
    pub fn from_v5_latency(self) -> Histogram {
        if self.counts.len() != V5_LATENCY_BUCKETS {
            return self;
        }
        let mut out = Histogram {
            counts: vec![0; LATENCY_BUCKETS],
            sum_ns: self.sum_ns,
        };
        for (i, n) in self.counts.iter().enumerate() {
            out.counts[v5_bucket(i, LATENCY_SUB_BITS)] += n;
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The observations made since `earlier` (counters only grow; a reset
    /// in between reads as nothing rather than as negative counts).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }

    /// This histogram and `other` together: bucket by bucket, so a sum of
    /// hosts' histograms is exactly the fleet's (same layout everywhere).
    pub fn plus(&self, other: &Histogram) -> Histogram {
        let len = self.counts.len().max(other.counts.len());
        let at = |h: &Histogram, i: usize| h.counts.get(i).copied().unwrap_or(0);
        Histogram {
            counts: (0..len)
                .map(|i| at(self, i).saturating_add(at(other, i)))
                .collect(),
            sum_ns: self.sum_ns.saturating_add(other.sum_ns),
        }
    }

    /// The `q` quantile (0 to 1), estimated as Prometheus'
    /// `histogram_quantile` does: find the bucket holding the rank, then
    /// interpolate linearly within it, assuming its observations spread
    /// evenly between its bounds (the first bucket from 0). A rank in the
    /// last, unbounded bucket reads as its lower bound: "at least this".
    /// None when there are no observations.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            let lower_ns = self.lower_ns(i);
            if *n > 0 && (below + n) as f64 >= rank {
                let Some(upper_ns) = self.upper_ns(i) else {
                    return Some(Duration::from_nanos(lower_ns));
                };
                let within = (rank - below as f64) / *n as f64;
                let ns = lower_ns as f64 + (upper_ns - lower_ns) as f64 * within;
                return Some(Duration::from_nanos(ns as u64));
            }
            below += n;
        }
        None
    }
}

/// One version's signals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSignals {
    /// TCP: requests (a client payload with no request waiting); UDP:
    /// client datagrams.
    pub requests: u64,
    /// TCP: first reply payloads after a request; UDP: backend datagrams.
    pub responses: u64,
    /// TCP responses by status class: `1xx` .. `5xx`, `other`.
    pub http: Vec<u64>,
    pub backend_resets: u64,
    pub connections_refused: u64,
    pub syn_retransmits: u64,
    /// New flows the failsafe sent to stable (counted on stable) while
    /// canaryd's heartbeat was stale.
    #[serde(default)]
    pub failsafe_flows: u64,
    /// Time to first byte (HTTP/2: per stream).
    pub latency: Histogram,
    /// SYN to SYN-ACK.
    pub connect: Histogram,
    /// HTTP/2 responses by `grpc-status` (codes 0 to 16, then one slot
    /// for any other value), as canaryd decoded the servers' header blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc: Vec<u64>,
    /// RST_STREAM from the backend with an error code: streams it
    /// abandoned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stream_resets: u64,
    /// HTTP/2 connections followed from their preface; those whose frame
    /// boundaries the kernel lost (untracked: their later streams are not
    /// counted at all); those whose header blocks canaryd could not decode
    /// (their streams count, with no status and no grpc-status).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub h2_connections: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub h2_untracked: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub h2_undecodable: u64,
}

/// The HTTP/2 fields are left out of state files and fleet records while
/// zero: a reading of an HTTP/1.x service writes what the release before
/// wrote.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Slots of `VersionSignals::grpc`: the 17 codes, then other values.
pub const GRPC_SLOTS: usize = GRPC_CODES;

/// `grpc` of two readings combined slot by slot; empty (no HTTP/2 decoded:
/// all zero) when both are, so readings of HTTP/1.x services keep their
/// shape in state files and fleet records.
fn grpc_slots(a: &VersionSignals, b: &VersionSignals, f: impl Fn(u64, u64) -> u64) -> Vec<u64> {
    if a.grpc.is_empty() && b.grpc.is_empty() {
        return vec![];
    }
    (0..GRPC_SLOTS)
        .map(|i| f(a.grpc_code(i), b.grpc_code(i)))
        .collect()
}

impl From<&Signals> for VersionSignals {
    fn from(s: &Signals) -> Self {
        VersionSignals {
            requests: s.requests,
            responses: s.responses,
            http: s.http.to_vec(),
            backend_resets: s.backend_resets,
            connections_refused: s.refused,
            syn_retransmits: s.syn_retransmits,
            failsafe_flows: s.failsafe_flows,
            latency: Histogram::from_kernel(&s.latency, s.latency_sum_ns),
            connect: Histogram::from_kernel(&s.connect, s.connect_sum_ns),
            grpc: vec![],
            stream_resets: 0,
            h2_connections: 0,
            h2_untracked: 0,
            h2_undecodable: 0,
        }
    }
}

impl VersionSignals {
    /// One version's whole reading: the kernel's signals and HTTP/2
    /// counters, and what canaryd decoded of its servers' header blocks
    /// (`:status` classes join the HTTP/1.x ones; a stream is never both).
    pub fn read(s: &Signals, h2: &H2Signals, headers: Option<&HeaderCounts>) -> VersionSignals {
        let mut v = VersionSignals::from(s);
        // NO_ERROR is a stream closed early on purpose (a server done
        // before its client), not a failure.
        v.stream_resets = h2.server_resets[1..].iter().sum();
        v.h2_connections = h2.connections;
        v.h2_untracked = h2.untracked;
        if let Some(c) = headers {
            for (a, b) in v.http.iter_mut().zip(&c.http) {
                *a += b;
            }
            v.grpc = c.grpc_status.to_vec();
            v.h2_undecodable = c.undecodable_connections;
        }
        v
    }

    /// What happened since `earlier` (a reading of the same version).
    pub fn since(&self, earlier: &VersionSignals) -> VersionSignals {
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        VersionSignals {
            requests: sub(self.requests, earlier.requests),
            responses: sub(self.responses, earlier.responses),
            http: (0..HTTP_CLASSES)
                .map(|i| sub(self.class(i), earlier.class(i)))
                .collect(),
            backend_resets: sub(self.backend_resets, earlier.backend_resets),
            connections_refused: sub(self.connections_refused, earlier.connections_refused),
            syn_retransmits: sub(self.syn_retransmits, earlier.syn_retransmits),
            failsafe_flows: sub(self.failsafe_flows, earlier.failsafe_flows),
            latency: self.latency.since(&earlier.latency),
            connect: self.connect.since(&earlier.connect),
            grpc: grpc_slots(self, earlier, sub),
            stream_resets: sub(self.stream_resets, earlier.stream_resets),
            h2_connections: sub(self.h2_connections, earlier.h2_connections),
            h2_untracked: sub(self.h2_untracked, earlier.h2_untracked),
            h2_undecodable: sub(self.h2_undecodable, earlier.h2_undecodable),
        }
    }

    /// Both readings together (two hosts' counts of one version).
    pub fn plus(&self, other: &VersionSignals) -> VersionSignals {
        let add = |a: u64, b: u64| a.saturating_add(b);
        VersionSignals {
            requests: add(self.requests, other.requests),
            responses: add(self.responses, other.responses),
            http: (0..HTTP_CLASSES)
                .map(|i| add(self.class(i), other.class(i)))
                .collect(),
            backend_resets: add(self.backend_resets, other.backend_resets),
            connections_refused: add(self.connections_refused, other.connections_refused),
            syn_retransmits: add(self.syn_retransmits, other.syn_retransmits),
            failsafe_flows: add(self.failsafe_flows, other.failsafe_flows),
            latency: self.latency.plus(&other.latency),
            connect: self.connect.plus(&other.connect),
            grpc: grpc_slots(self, other, add),
            stream_resets: add(self.stream_resets, other.stream_resets),
            h2_connections: add(self.h2_connections, other.h2_connections),
            h2_untracked: add(self.h2_untracked, other.h2_untracked),
            h2_undecodable: add(self.h2_undecodable, other.h2_undecodable),
        }
    }

    /// Responses with `grpc-status` in slot `i` (the code, or 17: other).
    pub fn grpc_code(&self, i: usize) -> u64 {
        self.grpc.get(i).copied().unwrap_or(0)
    }

    /// Whether any count is below `earlier`'s: the counters were reset in
    /// between (a host rebooted, or its pins were removed).
    pub fn went_back_from(&self, earlier: &VersionSignals) -> bool {
        self.requests < earlier.requests
            || self.responses < earlier.responses
            || self.connections_refused < earlier.connections_refused
            || self.latency.total() < earlier.latency.total()
    }

    /// Responses of class `i` (index into `HTTP_CLASS_NAMES`).
    pub fn class(&self, i: usize) -> u64 {
        self.http.get(i).copied().unwrap_or(0)
    }

    /// Responses by class name, for display.
    pub fn classes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        HTTP_CLASS_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, self.class(i)))
    }

    /// Failures, with the default gRPC codes (`errors_with`).
    pub fn errors(&self) -> u64 {
        self.errors_with(GrpcCodes::DEFAULT)
    }

    /// Failures: 5xx responses (HTTP/1.x status lines and HTTP/2
    /// `:status`), backend resets, refused connections, HTTP/2 streams the
    /// backend reset with an error code, and gRPC responses whose
    /// `grpc-status` is in `codes`. (A response with both a 5xx `:status`
    /// and a failing `grpc-status`, which a proxy may send, counts twice.)
    pub fn errors_with(&self, codes: GrpcCodes) -> u64 {
        let grpc: u64 = codes.codes().map(|c| self.grpc_code(c as usize)).sum();
        self.class(4) + self.backend_resets + self.connections_refused + self.stream_resets + grpc
    }

    /// The error rate with the default gRPC codes (`error_rate_with`).
    pub fn error_rate(&self) -> Option<f64> {
        self.error_rate_with(GrpcCodes::DEFAULT)
    }

    /// Failures over attempts: `errors / (requests + refused)` (HTTP/2:
    /// a stream is a request). A refused connection never carries a
    /// request, so it counts as an attempt of its own; without that a
    /// canary that refuses everything would show no error rate at all.
    /// None when there were no attempts.
    pub fn error_rate_with(&self, codes: GrpcCodes) -> Option<f64> {
        let attempts = self.requests + self.connections_refused;
        (attempts > 0).then(|| self.errors_with(codes) as f64 / attempts as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(observations: &[(usize, u64)]) -> Histogram {
        let mut counts = vec![0; LATENCY_BUCKETS];
        for (bucket, n) in observations {
            counts[*bucket] = *n;
        }
        Histogram { counts, sum_ns: 0 }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        // 100 observations in the (16.384, 18.432] µs bucket: the median
        // is halfway.
        let h = histogram(&[(1, 100)]);
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(17_408)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(18_432)));
        // 90 fast (≤ 16.384 µs) and 10 in the bucket of 1.5 ms: p50 fast,
        // p99 in that bucket.
        let slow = bucket_of_ns(1_500_000, LATENCY_SUB_BITS);
        let h = histogram(&[(0, 90), (slow, 10)]);
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 <= Duration::from_nanos(16_384), "{p50:?}");
        let p99 = h.quantile(0.99).unwrap().as_nanos() as u64;
        assert!(p99 > h.lower_ns(slow) && p99 <= h.upper_ns(slow).unwrap());
        assert!((1_375_000..=1_625_000).contains(&p99), "within 1/8: {p99}");
        // The unbounded bucket reads as its lower bound.
        let h = histogram(&[(LATENCY_BUCKETS - 1, 5)]);
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(1 << 35)));
        assert_eq!(histogram(&[]).quantile(0.5), None);
    }

    #[test]
    fn v5_latency_histograms_carry_over_within_their_old_bounds() {
        let mut old = vec![0u64; V5_LATENCY_BUCKETS];
        old[0] = 3; // <= 16 µs
        old[6] = 5; // (512, 1024] µs
        old[22] = 2; // +Inf
        let h = Histogram {
            counts: old,
            sum_ns: 42,
        }
        .from_v5_latency();
        assert_eq!(
            (h.counts.len(), h.total(), h.sum_ns),
            (LATENCY_BUCKETS, 10, 42)
        );
        // Each count sits in the bucket holding its old upper bound.
        let at = |ns: u64| h.counts[bucket_of_ns(ns, LATENCY_SUB_BITS)];
        assert_eq!(at(16_000), 3);
        assert_eq!(at(1_024_000), 5);
        assert_eq!(h.counts[LATENCY_BUCKETS - 1], 2);
        // Today's histograms pass through.
        let today = histogram(&[(7, 1)]);
        assert_eq!(today.clone().from_v5_latency(), today);
    }

    #[test]
    fn a_difference_keeps_only_what_happened_in_between() {
        let mut before = Signals {
            requests: 10,
            latency_sum_ns: 1_000_000,
            ..Default::default()
        };
        before.http[1] = 9;
        before.http[4] = 1;
        before.latency[3] = 10;
        let mut after = before;
        after.requests = 30;
        after.http[4] = 6;
        after.http[1] = 23;
        after.refused = 2;
        after.latency[3] = 25;
        after.latency[5] = 4;
        after.latency_sum_ns = 3_000_000;
        let d = VersionSignals::from(&after).since(&VersionSignals::from(&before));
        assert_eq!((d.requests, d.class(1), d.class(4)), (20, 14, 5));
        assert_eq!(d.connections_refused, 2);
        assert_eq!(d.latency.counts[3], 15);
        assert_eq!(d.latency.counts[5], 4);
        assert_eq!(d.latency.sum_ns, 2_000_000);
        assert_eq!(d.errors(), 7);
        assert_eq!(d.error_rate(), Some(7.0 / 22.0));
        // Counters that went backwards (a reset) read as nothing.
        let back = VersionSignals::from(&before).since(&VersionSignals::from(&after));
        assert_eq!((back.requests, back.latency.total()), (0, 0));
        assert_eq!(VersionSignals::default().error_rate(), None);
    }
}
