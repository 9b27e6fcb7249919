//! Prometheus metrics, in the text exposition format, under the names Apache ZooKeeper's
//! Prometheus provider uses.
//!
//! Two kinds:
//! - **Distributions** (request latencies, fsync time, proposal latency, election time) are
//!   histograms recorded where the event happens; the storage thread records fsync time itself.
//!   ZooKeeper exports these as summaries; a histogram has the same `_sum` and `_count`, so
//!   rate-of-average panels work unchanged, and its buckets aggregate across members.
//! - **State** (znode and watch counts, sessions, outstanding requests, ...) is the `mntr` table,
//!   read from the request processor at each scrape and exported as gauges with `mntr`'s names
//!   (ZooKeeper's provider uses the same names), plus Rookery's own `rookery_*` gauges.
//!
//! Times are in milliseconds, as ZooKeeper's are.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Bucket bounds in ms: 0.1 ms to 10 s.
const BUCKETS_MS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// One learner, as its leader sees it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LearnerLabel {
    /// The learner's server id.
    pub sid: String,
}

/// What the request processor reports at each scrape.
#[derive(Debug, Default)]
pub struct ScrapeState {
    /// The numeric rows of the `mntr` table, under their names.
    pub rows: Vec<(String, f64)>,
    /// As leader: each learner's id and lag in transactions.
    pub lags: Vec<(u64, i64)>,
}

/// Every metric of one server. Shared (`Arc`) by the request processor, the storage thread and
/// the HTTP endpoints; recording is a few atomic operations.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `readlatency`: reads, from arrival to reply.
    pub read_latency: Histogram,
    /// `updatelatency`: writes, from arrival to reply (so including the quorum and the fsync).
    pub update_latency: Histogram,
    /// `fsynctime`: one group commit's fsync.
    pub fsync_time: Histogram,
    /// `proposal_latency`: as leader, from numbering a write to its commit.
    pub proposal_latency: Histogram,
    /// `election_time`: from starting to look for a leader to serving under one.
    pub election_time: Histogram,
    /// `commit_propagation_latency`: from the leader stamping a transaction to its commit on
    /// this member (wall clocks).
    pub commit_propagation_latency: Histogram,
    /// `rookery_slow_requests`: requests over the slow-request threshold.
    pub slow_requests: Counter,
    /// `rookery_learner_lag_txns`: as leader, the transactions each learner has yet to make
    /// durable (set at each scrape).
    pub learner_lag: Family<LearnerLabel, Gauge>,
    /// The `mntr` table of the last scrape.
    state: Arc<Mutex<Vec<(String, f64)>>>,
    /// Serializes scrapes: each sets the state table and then encodes it.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let histogram = || Histogram::new(BUCKETS_MS);
        let m = Metrics {
            read_latency: histogram(),
            update_latency: histogram(),
            fsync_time: histogram(),
            proposal_latency: histogram(),
            election_time: histogram(),
            commit_propagation_latency: histogram(),
            slow_requests: Counter::default(),
            learner_lag: Family::default(),
            state: Arc::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        for (name, help, histogram) in [
            (
                "readlatency",
                "Read request latency in ms, from arrival to reply",
                &m.read_latency,
            ),
            (
                "updatelatency",
                "Write request latency in ms, from arrival to reply",
                &m.update_latency,
            ),
            (
                "fsynctime",
                "Time of one group commit's fsync of the transaction log, in ms",
                &m.fsync_time,
            ),
            (
                "proposal_latency",
                "As leader, time from numbering a write to its commit, in ms",
                &m.proposal_latency,
            ),
            (
                "election_time",
                "Time from starting to look for a leader to serving under one, in ms",
                &m.election_time,
            ),
            (
                "commit_propagation_latency",
                "Time from the leader stamping a transaction to its commit here, in ms (wall clocks)",
                &m.commit_propagation_latency,
            ),
        ] {
            registry.register(name, help, histogram.clone());
        }
        registry.register(
            "rookery_slow_requests",
            "Requests slower than slowRequestThresholdMs",
            m.slow_requests.clone(),
        );
        registry.register(
            "rookery_learner_lag_txns",
            "As leader, the transactions each learner has yet to make durable",
            m.learner_lag.clone(),
        );
        registry.register_collector(Box::new(StateTable(m.state.clone())));
        Metrics { registry, ..m }
    }

    /// Records a request's latency.
    pub fn request(&self, update: bool, latency_ms: f64) {
        if update {
            self.update_latency.observe(latency_ms);
        } else {
            self.read_latency.observe(latency_ms);
        }
    }

    /// The text exposition of every metric, with `state` as of now.
    pub fn encode(&self, state: ScrapeState) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state.rows;
        // Learners that left must not linger with their last lag.
        self.learner_lag.clear();
        for (sid, lag) in &state.lags {
            self.learner_lag
                .get_or_create(&LearnerLabel {
                    sid: sid.to_string(),
                })
                .set(*lag);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `mntr` table as gauges, under its own names.
#[derive(Debug)]
struct StateTable(Arc<Mutex<Vec<(String, f64)>>>);

impl prometheus_client::collector::Collector for StateTable {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in rows.iter() {
            let metric = encoder.encode_descriptor(name, name, None, MetricType::Gauge)?;
            ConstGauge::<f64>::new(*value).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_holds_histograms_the_state_table_and_learner_lags() {
        let m = Metrics::new();
        m.request(false, 0.3);
        m.request(true, 12.0);
        m.fsync_time.observe(2.0);
        let text = m.encode(ScrapeState {
            rows: vec![("znode_count".into(), 5.0), ("avg_latency".into(), 0.25)],
            lags: vec![(2, 7)],
        });
        assert!(text.contains("# TYPE readlatency histogram"), "{text}");
        assert!(text.contains("readlatency_count 1"), "{text}");
        assert!(text.contains("updatelatency_sum 12.0"), "{text}");
        assert!(text.contains("fsynctime_bucket{le=\"2.5\"} 1"), "{text}");
        assert!(text.contains("# TYPE znode_count gauge"), "{text}");
        assert!(text.contains("znode_count 5.0"), "{text}");
        assert!(
            text.contains("rookery_learner_lag_txns{sid=\"2\"} 7"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A learner gone by the next scrape is not reported with its old lag.
        let text = m.encode(ScrapeState::default());
        assert!(!text.contains("sid=\"2\""), "{text}");
        assert!(!text.contains("znode_count"), "{text}");
    }
}
