//! Gateway metrics kept in memory: the dispatch latency histogram (queued →
//! the agent reports it started). Exposed by the API at `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in milliseconds.
pub const DISPATCH_BUCKETS_MS: [u64; 12] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000];

#[derive(Default)]
pub struct Metrics {
    buckets: [AtomicU64; DISPATCH_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_ms: AtomicU64,
    /// Detections devices sent past their rate (counted, not stored).
    pub alerts_dropped: AtomicU64,
}

impl Metrics {
    pub fn observe_dispatch(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        for (bound, bucket) in DISPATCH_BUCKETS_MS.iter().zip(&self.buckets) {
            if ms <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// (cumulative bucket counts, count, sum in ms)
    pub fn dispatch_snapshot(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let buckets =
            DISPATCH_BUCKETS_MS.iter().zip(&self.buckets).map(|(b, c)| (*b, c.load(Ordering::Relaxed))).collect();
        (buckets, self.count.load(Ordering::Relaxed), self.sum_ms.load(Ordering::Relaxed))
    }
}
