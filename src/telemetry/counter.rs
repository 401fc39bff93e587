//! Single-writer counters and fixed-bucket histograms.
//!
//! Each value has exactly one writer, the shard thread that owns it, so an increment is a
//! relaxed load and a relaxed store: on x86-64 and aarch64 that compiles to the same plain
//! add as a non-atomic integer, with no locked instruction and no cache line bouncing
//! between cores. The exporter reads with relaxed loads; it may see a value a few
//! increments old, never a torn one. A second writer would lose increments (never memory
//! safety), which is why every type here documents who writes it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A monotonic count written by one thread and read by any.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Bucket upper bounds of the duration histograms, in nanoseconds: 0.5 ms to 10 s, about
/// three per decade, which covers a loopback handshake and a connect that times out.
pub const DURATION_BOUNDS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Bucket upper bounds of the completions-per-turn histogram: powers of two up to the
/// shard's per-turn bound (1024). A turn with zero completions is a timer tick.
pub const TURN_BOUNDS: [u64; 12] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A Prometheus histogram with fixed bucket bounds, written by one thread.
///
/// Buckets hold plain (non-cumulative) counts; the exposition accumulates them, so one
/// observation is two counter increments (its bucket and the sum). The count is the sum of
/// the buckets, so a reader never sees a count that disagrees with the buckets.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    /// One per bound, then the +Inf bucket.
    buckets: Box<[Counter]>,
    sum: Counter,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: &'static [u64; N]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=N).map(|_| Counter::default()).collect(),
            sum: Counter::default(),
        }
    }

    #[inline]
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.buckets[i].inc();
        self.sum.add(value);
    }

    /// The bounds, the non-cumulative count of each bucket (the last is +Inf), and the sum.
    pub fn read(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self.buckets.iter().map(Counter::get).collect(),
            sum: self.sum.get(),
        }
    }
}

impl Histogram<{ DURATION_BOUNDS_NS.len() }> {
    pub fn durations() -> Self {
        Histogram::new(&DURATION_BOUNDS_NS)
    }

    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// What a reader saw of a histogram; several add up bucket by bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    pub buckets: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other` (same bounds) bucket by bucket.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_adds() {
        let c = Counter::default();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below() {
        let h = Histogram::durations();
        h.observe_duration(Duration::from_micros(500)); // exactly the first bound: le="0.0005"
        h.observe_duration(Duration::from_micros(501));
        h.observe_duration(Duration::from_secs(10));
        h.observe_duration(Duration::from_secs(11)); // +Inf
        let s = h.read();
        assert_eq!(s.buckets.len(), DURATION_BOUNDS_NS.len() + 1);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[DURATION_BOUNDS_NS.len() - 1], 1);
        assert_eq!(s.buckets[DURATION_BOUNDS_NS.len()], 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum, 500_000 + 501_000 + 10_000_000_000 + 11_000_000_000);
    }

    #[test]
    fn zero_completions_count_in_the_zero_bucket() {
        let h = Histogram::new(&TURN_BOUNDS);
        h.observe(0);
        h.observe(3);
        h.observe(5000);
        let s = h.read();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[3], 1, "3 is in le=4");
        assert_eq!(s.buckets[TURN_BOUNDS.len()], 1);
    }

    #[test]
    fn snapshots_merge() {
        let a = Histogram::new(&TURN_BOUNDS);
        let b = Histogram::new(&TURN_BOUNDS);
        a.observe(1);
        b.observe(1);
        b.observe(2);
        let mut s = a.read();
        s.merge(&b.read());
        assert_eq!(s.buckets[1], 2);
        assert_eq!(s.buckets[2], 1);
        assert_eq!(s.sum, 4);
    }
}
