//! Latency recording with HdrHistogram, and the summary a workload reports.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency recorded, in microseconds (one hour); longer ones are clamped to it.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, with three significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// An empty histogram for latencies from 1 µs to one hour.
    pub fn new() -> Self {
        // The bounds are constants that HdrHistogram accepts (low >= 1, high >= 2 * low,
        // 3 significant digits), so this cannot fail.
        Latencies(Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid"))
    }

    /// Records one latency (below 1 µs counts as 1 µs, above an hour as an hour).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        self.0.saturating_record(us);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Latencies) {
        for v in other.0.iter_recorded() {
            self.0
                .saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Count, mean and the percentiles (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_us: self.0.mean(),
            p50_us: self.0.value_at_quantile(0.50),
            p90_us: self.0.value_at_quantile(0.90),
            p99_us: self.0.value_at_quantile(0.99),
            max_us: self.0.max(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many operations were measured.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Latencies::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us as i64 - 500).abs() <= 1, "{s:?}");
        assert!((s.p90_us as i64 - 900).abs() <= 1, "{s:?}");
        assert!((s.p99_us as i64 - 990).abs() <= 1, "{s:?}");
        assert!((s.max_us as i64 - 1000).abs() <= 1, "{s:?}");
        assert!((s.mean_us - 500.5).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn merge_adds_counts_and_extremes_are_clamped() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        a.record(Duration::from_nanos(10)); // below 1 µs: counts as 1 µs
        b.record(Duration::from_secs(10 * 3600)); // above the bound: clamped
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50_us, 1);
        assert!(s.max_us >= MAX_US - MAX_US / 500, "{s:?}");
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
    }
}
