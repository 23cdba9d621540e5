//! A fake host's signals: healthy traffic, counted as canaryd counts it
//! (cumulative, both versions, latency histograms in the kernel's
//! buckets), split between the versions by the weight the host applied.

use std::time::Duration;

use canary_common::signals::{
    CONNECT_BUCKETS, HTTP_CLASSES, LATENCY_BUCKETS, LATENCY_SUB_BITS, bucket_of_ns,
};
use canary_userspace::{
    controller::run::Reading,
    model::{
        signals::{Histogram, VersionSignals},
        weight::Weight,
    },
};

/// Every synthetic response takes this long to its first byte: one
/// latency bucket, well inside the plan's p99 limit.
pub const LATENCY: Duration = Duration::from_millis(2);
/// Index of the 2xx class in `VersionSignals::http`.
const HTTP_2XX: usize = 1;

/// A host's cumulative signals: healthy traffic, split by the weight.
pub struct Traffic {
    pub reading: Reading,
    bucket: usize,
}

impl Traffic {
    pub fn new() -> Traffic {
        let empty = VersionSignals {
            http: vec![0; HTTP_CLASSES],
            latency: Histogram::latency(),
            connect: Histogram {
                counts: vec![0; CONNECT_BUCKETS],
                sum_ns: 0,
            },
            ..Default::default()
        };
        let bucket = bucket_of_ns(LATENCY.as_nanos() as u64, LATENCY_SUB_BITS);
        assert!(bucket < LATENCY_BUCKETS);
        Traffic {
            reading: [empty.clone(), empty],
            bucket,
        }
    }

    /// `requests` more, the canary's share at `weight`: each answered 2xx,
    /// no errors, every one in `LATENCY`'s bucket.
    pub fn serve(&mut self, requests: u64, weight: Weight) {
        let canary = requests * u64::from(weight.bp()) / u64::from(Weight::FULL.bp());
        for (v, n) in self.reading.iter_mut().zip([requests - canary, canary]) {
            v.requests += n;
            v.responses += n;
            v.http[HTTP_2XX] += n;
            v.latency.counts[self.bucket] += n;
            v.latency.sum_ns += n * LATENCY.as_nanos() as u64;
        }
    }
}
