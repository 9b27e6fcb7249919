//! `rookery bench`: load generation against any server that speaks the ZooKeeper client
//! protocol, through `rookery-client`, and the side-by-side comparison with Apache ZooKeeper.
//!
//! # Layout
//! - [`Workload`], [`Options`] and [`run`]: the workloads (create, set, get, mixed reads and
//!   writes, watch fan-out, session churn, ephemeral expiry, a large tree) against one server,
//!   each giving a [`WorkloadResult`] (ops/s and latency percentiles from HdrHistogram).
//! - [`process`]: starts Rookery and Apache ZooKeeper (standalone, or a 3-member ensemble with
//!   member N on 127.0.0.N) on free loopback ports, times their start-up until `ruok` is
//!   answered, reads their RSS, finds and kills an ensemble's leader.
//! - [`failover`]: the failover time of an ensemble: the leader killed under a steady writer.
//! - [`compare`]: runs the same workloads against both with the same configuration (and, for
//!   ensembles, times the failover of each) and builds the ratio table.
//! - [`report`]: the text tables, and the SVG chart of the ratios.
//!
//! Every loop is bounded by the workload's deadline, an operation count, or both, and every wait
//! on a server has a timeout.

pub mod compare;
pub mod failover;
pub mod process;
mod raw;
pub mod report;
pub mod stats;
mod workloads;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use stats::{Latencies, LatencySummary};
pub use workloads::run;

/// Why a benchmark could not run or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A client operation failed: a benchmark with failed operations is not a measurement.
    #[error("{context}: {source}")]
    Client {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: rookery_client::Error,
    },
    /// An I/O error (a raw session's socket, a process, a file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A server took longer than the bound on one wait.
    #[error("{context}: no answer within {after:?}")]
    Timeout {
        /// What was being waited for.
        context: String,
        /// The bound.
        after: Duration,
    },
    /// An option or argument is not usable.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A server did not answer the wire protocol as expected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A server process exited or did not become ready.
    #[error("{server} did not start: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    ServerStart {
        /// Which server.
        server: String,
        /// What happened.
        reason: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A workload failed against servers the comparison started: the error, and what the
    /// servers said last (their data directories are removed on exit).
    #[error("{server}: {source}{logs}")]
    Against {
        /// Which server.
        server: String,
        /// The workload's error.
        #[source]
        source: Box<BenchError>,
        /// Each member's state and the end of its log.
        logs: String,
    },
    /// The results could not be written as JSON.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    pub(crate) fn client(context: impl Into<String>, source: rookery_client::Error) -> Self {
        BenchError::Client {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Persistent creates of `value_size` bytes, each to a new path.
    Create,
    /// setData on random nodes of a prepared key set.
    Set,
    /// getData on random nodes of a prepared key set.
    Get,
    /// getData or setData on random keys, `read_pct` percent reads.
    Mixed,
    /// `watchers` sessions watch one node; a write; time until every watcher is notified.
    Watch,
    /// Sessions created and closed, back to back.
    Churn,
    /// How long after its connection dies (without closing) a session's ephemeral node goes.
    Expiry,
    /// Loads `tree_nodes` nodes of `value_size` bytes, then reads the server's RSS.
    Tree,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 8] = [
        Workload::Create,
        Workload::Set,
        Workload::Get,
        Workload::Mixed,
        Workload::Watch,
        Workload::Churn,
        Workload::Expiry,
        Workload::Tree,
    ];

    /// What `rookery bench` runs by default: all but the large tree, which adds a million
    /// nodes to the server it is pointed at.
    pub const DEFAULT: [Workload; 7] = [
        Workload::Create,
        Workload::Set,
        Workload::Get,
        Workload::Mixed,
        Workload::Watch,
        Workload::Churn,
        Workload::Expiry,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Watch => "watch",
            Workload::Churn => "churn",
            Workload::Expiry => "expiry",
            Workload::Tree => "tree",
        }
    }

    /// What one operation is, for report headers.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "setData",
            Workload::Get => "getData",
            Workload::Mixed => "getData or setData",
            Workload::Watch => "write, then every watcher notified",
            Workload::Churn => "session opened and closed",
            Workload::Expiry => "connection dropped until its ephemeral is gone",
            Workload::Tree => "node loaded (multi of 100 creates)",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                BenchError::InvalidOption(format!(
                    "unknown workload {s:?} (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// Serializes a [`Duration`] as whole milliseconds (`"duration_ms": 10000` reads better in
/// results than seconds and nanoseconds).
pub mod serde_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration in ms.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads a duration in ms.
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The knobs of a run. Durations are written to JSON in ms (`duration_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Sessions issuing requests (create, set, get, mixed, tree), or opening and closing at once
    /// (churn).
    pub sessions: usize,
    /// Requests each session keeps in flight (pipelining).
    pub in_flight: usize,
    /// How long each timed workload measures, after the warm-up.
    #[serde(rename = "duration_ms", with = "serde_ms")]
    pub duration: Duration,
    /// How long each timed workload runs before measuring.
    #[serde(rename = "warmup_ms", with = "serde_ms")]
    pub warmup: Duration,
    /// Bytes per value written.
    pub value_size: usize,
    /// Percentage of reads in the mixed workload.
    pub read_pct: u8,
    /// Nodes in the key set of set, get and mixed.
    pub keys: usize,
    /// Sessions watching the node in the watch workload.
    pub watchers: usize,
    /// Sessions whose connection is dropped at once in each expiry round.
    pub expiry_sessions: usize,
    /// Session timeout asked for in the expiry workload (the server clamps it).
    #[serde(rename = "session_timeout_ms", with = "serde_ms")]
    pub session_timeout: Duration,
    /// Nodes loaded by the tree workload.
    pub tree_nodes: u64,
    /// Creates per multi when loading the tree.
    pub tree_batch: usize,
    /// Server processes whose RSS is read from `/proc/<pid>/status` (summed) after each
    /// workload; empty when the server is not local.
    pub server_pids: Vec<u32>,
    /// The parent of every node the benchmark creates.
    pub root: String,
    /// The bound on any single wait for the server.
    #[serde(rename = "op_timeout_ms", with = "serde_ms")]
    pub op_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sessions: 16,
            in_flight: 4,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            value_size: 100,
            read_pct: 90,
            keys: 1000,
            watchers: 100,
            expiry_sessions: 10,
            session_timeout: Duration::from_secs(4),
            tree_nodes: 1_000_000,
            tree_batch: 100,
            server_pids: Vec::new(),
            root: "/rookery-bench".into(),
            op_timeout: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// Checks that every knob is usable.
    ///
    /// # Errors
    /// [`BenchError::InvalidOption`] naming the knob.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::InvalidOption(m.into()));
        if self.sessions == 0 || self.sessions > 10_000 {
            return bad("--sessions must be 1 to 10000");
        }
        if self.in_flight == 0 || self.in_flight > 1000 {
            return bad("--in-flight must be 1 to 1000");
        }
        if self.duration.is_zero() {
            return bad("--duration must be positive");
        }
        if self.value_size > 1 << 20 {
            return bad("--value-size must be at most 1 MiB");
        }
        if self.read_pct > 100 {
            return bad("--read-pct must be 0 to 100");
        }
        if self.keys == 0 {
            return bad("--keys must be positive");
        }
        if self.watchers == 0 || self.watchers > 10_000 {
            return bad("--watchers must be 1 to 10000");
        }
        if self.expiry_sessions == 0 || self.expiry_sessions > 10_000 {
            return bad("--expiry-sessions must be 1 to 10000");
        }
        if self.session_timeout.is_zero() || self.session_timeout.as_millis() > i32::MAX as u128 {
            return bad("--session-timeout must be positive and fit in an i32 of ms");
        }
        if self.tree_nodes == 0 {
            return bad("--tree-nodes must be positive");
        }
        if self.tree_batch == 0 || self.tree_batch > 1000 {
            return bad("the tree batch must be 1 to 1000");
        }
        if rookery_proto::path::validate_path(&self.root).is_err() || self.root == "/" {
            return bad("the root must be a valid path other than /");
        }
        Ok(())
    }
}

/// What one workload measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Which.
    pub workload: Workload,
    /// Operations measured (see [`Workload::unit`]).
    pub ops: u64,
    /// The measured time in seconds.
    pub seconds: f64,
    /// Throughput, where it means something (not for expiry).
    pub ops_per_sec: Option<f64>,
    /// Latency of each operation.
    pub latency: LatencySummary,
    /// The server's resident set after the workload, summed over `server_pids`, in KiB.
    pub rss_kib: Option<u64>,
    /// Workload-specific figures (for example `notify_p99_us`, `session_timeout_ms`).
    pub extra: BTreeMap<String, f64>,
}

/// The report of `rookery bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The connect string.
    pub server: String,
    /// Seconds since the Unix epoch when the run started.
    pub unix_time: u64,
    /// The knobs.
    pub options: Options,
    /// One entry per workload, in run order.
    pub results: Vec<WorkloadResult>,
}

/// Parses a duration: `250ms`, `2s`, `1.5s`, `3m`, or a bare number of seconds.
///
/// # Errors
/// [`BenchError::InvalidOption`] for anything else.
pub fn parse_duration(s: &str) -> Result<Duration, BenchError> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        BenchError::InvalidOption(format!("not a duration: {s:?} (try 500ms, 10s)"))
    })?;
    if !v.is_finite() || v < 0.0 || v * scale > 86_400.0 {
        return Err(BenchError::InvalidOption(format!(
            "duration out of range: {s:?}"
        )));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// SplitMix64: a tiny deterministic generator for picking keys (seeded per request slot, so
/// runs are reproducible).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>().unwrap(), w);
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.name()));
        }
        let err = "creat".parse::<Workload>().unwrap_err().to_string();
        assert!(err.contains("create, set, get"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1000000s").is_err());
    }

    #[test]
    fn default_options_are_valid_and_bad_ones_are_named() {
        Options::default().validate().unwrap();
        let o = Options {
            read_pct: 101,
            ..Options::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("--read-pct"));
        let o = Options {
            root: "no-slash".into(),
            ..Options::default()
        };
        assert!(o.validate().is_err());
    }

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }
}
