//! What operators ask a server: four-letter words on the client port ([`four_letter`]), and
//! the AdminServer's JSON commands and Prometheus metrics over HTTP ([`http`], [`commands`]).
//! Both read the same state through the helpers here, so `mntr` and `/commands/monitor` (and
//! `/metrics`) cannot disagree.

pub mod commands;
mod four_letter;
pub mod http;

pub use four_letter::four_letter;
use serde_json::{json, Value};

use crate::server::Core;

/// The version string the server reports.
pub const VERSION: &str = concat!("3.9.0-rookery-", env!("CARGO_PKG_VERSION"));

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The sizes of the data and log directories, reading one directory once when they are the
/// same (the default).
fn dir_sizes(core: &Core) -> (u64, u64) {
    let c = &core.cfg;
    let data = dir_size(&c.data_dir);
    let log = if c.data_log_dir == c.data_dir {
        data
    } else {
        dir_size(&c.data_log_dir)
    };
    (data, log)
}

/// The average latency, rounded to four places as ZooKeeper reports it.
fn avg_latency(core: &Core) -> f64 {
    (core.stats.latency.avg() * 10_000.0).round() / 10_000.0
}

/// The session a connection carries (0 before its handshake completes).
fn session_of(core: &Core, conn: crate::watch::ConnId) -> i64 {
    core.conns.get(&conn).map_or(0, |c| c.session_id)
}

/// What `envi` and `environment` report.
fn environment_rows(core: &Core) -> Vec<(&'static str, String)> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    vec![
        ("zookeeper.version", format!("{VERSION}, built on unknown")),
        ("host.name", host),
        ("os.name", std::env::consts::OS.into()),
        ("os.arch", std::env::consts::ARCH.into()),
        ("user.dir", cwd),
        ("rookery.data.dir", core.cfg.data_dir.display().to_string()),
    ]
}

fn serving(core: &Core) -> bool {
    core.ensemble.as_ref().is_none_or(|e| e.serving())
}

/// `standalone`, or the ensemble role as ZooKeeper names it.
fn mode(core: &Core) -> &'static str {
    core.ensemble.as_ref().map_or("standalone", |e| e.mode())
}

/// ZooKeeper's node count includes the root twice (it is stored under "" and "/"); report the
/// same number so monitoring compares like with like.
fn zk_node_count(core: &Core) -> usize {
    core.tree.node_count() + 1
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The `mntr` table: ZooKeeper's keys without their `zk_` prefix, as the AdminServer's
/// `monitor` command and the Prometheus provider name them.
fn monitor_rows(core: &Core) -> Vec<(&'static str, Value)> {
    let l = &core.stats.latency;
    let w = &core.tree.watches;
    let mut rows: Vec<(&'static str, Value)> = vec![
        ("version", json!(format!("{VERSION}, built on unknown"))),
        ("server_state", json!(mode(core))),
        ("avg_latency", json!(avg_latency(core))),
        ("max_latency", json!(l.max_ms)),
        ("min_latency", json!(l.min())),
        ("packets_received", json!(core.stats.received)),
        ("packets_sent", json!(core.stats.sent)),
        ("num_alive_connections", json!(core.conns.len())),
        ("outstanding_requests", json!(core.outstanding_requests())),
        ("znode_count", json!(zk_node_count(core))),
        ("watch_count", json!(w.watch_count())),
        ("ephemerals_count", json!(core.tree.ephemeral_count())),
        (
            "approximate_data_size",
            json!(core.tree.approximate_data_size()),
        ),
        ("open_file_descriptor_count", json!(open_fds())),
        ("uptime", json!(core.env.now_ms())),
        ("global_sessions", json!(core.sessions.len())),
        ("local_sessions", json!(0)),
        ("auth_failed_count", json!(core.stats.auth_failed)),
        ("last_zxid", json!(core.last_zxid)),
        ("now_ms", json!(core.env.wall_ms())),
    ];
    if let Some(e) = &core.ensemble {
        let st = e.node.status();
        rows.push(("current_epoch", json!(st.current_epoch)));
        rows.push(("accepted_epoch", json!(st.accepted_epoch)));
        rows.push(("quorum_size", json!(e.node.config().voters.len())));
        if e.is_leader() {
            let (voters, observers) = st.learners;
            let (synced_voters, synced_observers) = st.synced_learners;
            rows.push(("learners", json!(voters + observers)));
            rows.push(("followers", json!(voters)));
            rows.push(("synced_followers", json!(synced_voters)));
            rows.push(("synced_non_voting_followers", json!(0)));
            rows.push(("synced_observers", json!(synced_observers)));
            rows.push(("pending_syncs", json!(0)));
        }
    }
    rows
}

/// The numeric `mntr` rows and each learner's lag, for [`crate::metrics::Metrics::encode`].
pub(crate) fn metrics_state(core: &Core) -> crate::metrics::ScrapeState {
    let rows = monitor_rows(core)
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.as_f64()?)))
        .collect();
    let lags = core
        .ensemble
        .as_ref()
        .map(|e| e.node.learner_lags())
        .unwrap_or_default();
    crate::metrics::ScrapeState { rows, lags }
}
