//! Failover time of a 3-member ensemble, for `rookery bench compare --ensemble`.
//!
//! A client connected to every member (the connect string lists all three) writes one setData
//! after another. Once it writes steadily, the leader (the member whose `srvr` says
//! `Mode: leader`) is killed with SIGKILL. Two times are measured from the signal:
//!
//! - **until the first write is acknowledged** that the client sent after the killed process
//!   was gone (so no write the old leader committed counts), whichever member it reconnected
//!   to; the client reconnects with a short back-off (5 to 100 ms), the same for both servers;
//! - **until a surviving member reports `Mode: leader`** in `srvr` (polled every 5 ms).
//!
//! Every wait is bounded: a failover that does not finish within [`FAILOVER_BOUND`] is
//! recorded as failed, with what the client and the survivors said and the end of their logs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rookery_client::{Client, ClientBuilder, CreateOptions};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::process::{log_tail, mode_of, Cluster};
use super::BenchError;

/// The bound on each wait of a failover run: for the leader before the kill, for steady
/// writes, for the first write and the new leader after it.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// Writes acknowledged before the leader is killed.
const WRITES_BEFORE_KILL: u64 = 50;
/// The bound on one write; a write that takes longer is counted as failed and retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The writer's session timeout (the server clamps it; 30 s is within ZooKeeper's 20 ticks of
/// 2 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the survivors' `srvr` is read after the kill.
const MODE_POLL: Duration = Duration::from_millis(5);

/// One failover run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverRun {
    /// The id (N of `server.N`) of the member that led and was killed.
    pub killed_leader: usize,
    /// From SIGKILL until the process was reaped, in ms.
    pub kill_ms: f64,
    /// From SIGKILL until the first write sent after it was acknowledged, in ms.
    pub write_ms: Option<f64>,
    /// From SIGKILL until a surviving member's `srvr` said `Mode: leader`, in ms.
    pub leader_ms: Option<f64>,
    /// The id of that new leader.
    pub new_leader: Option<usize>,
    /// Writes acknowledged before the kill.
    pub writes_before: u64,
    /// Writes that failed after the kill (connection loss, timeouts) before one succeeded.
    pub failed_writes: u64,
    /// Why the run did not finish, with what the survivors said; `None` when it did.
    pub error: Option<String>,
}

/// What the writer saw, shared with the measuring task.
#[derive(Default)]
struct Seen {
    acked: AtomicU64,
    failed_after: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Measures one failover on `cluster` (an ensemble whose members all serve), which loses its
/// leader. Problems with the servers are recorded in the run's `error`; only a cluster that is
/// not an ensemble is an error here.
///
/// # Errors
/// [`BenchError::InvalidOption`] for a cluster of fewer than 3 members.
pub async fn measure(cluster: &mut Cluster, root: &str) -> Result<FailoverRun, BenchError> {
    if cluster.members().len() < 3 {
        return Err(BenchError::InvalidOption(
            "failover is measured on an ensemble".into(),
        ));
    }
    let mut run = FailoverRun::default();
    let leader = match cluster.wait_for_leader(FAILOVER_BOUND).await {
        Ok(i) => i,
        Err(e) => {
            run.error = Some(format!("before the kill: {e}{}", logs(cluster)));
            return Ok(run);
        }
    };
    run.killed_leader = cluster.members()[leader].id;

    let client = match ClientBuilder::new(&cluster.connect_string())
        .session_timeout(SESSION_TIMEOUT)
        .connect_timeout(FAILOVER_BOUND)
        .attempt_timeout(Duration::from_secs(1))
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(100))
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("connecting the writer: {e}{}", logs(cluster)));
            return Ok(run);
        }
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = format!("{root}/failover-{:x}", nanos & 0xffff_ffff_ffff);
    if let Err(e) = ensure_path(&client, &path).await {
        run.error = Some(format!("creating {path}: {e}{}", logs(cluster)));
        return Ok(run);
    }

    let seen = Arc::new(Seen::default());
    let gone_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let started = Instant::now();
    let writer = tokio::spawn(write_until_first_after(
        client.clone(),
        path,
        seen.clone(),
        gone_at.clone(),
        started + 3 * FAILOVER_BOUND,
    ));
    // Stops the writer however the measurement ends (a timed-out wait drops its handle only).
    let _stop_writer = AbortOnDrop(writer.abort_handle());

    // Steady writes first.
    let steady_by = Instant::now() + FAILOVER_BOUND;
    while seen.acked.load(Ordering::Relaxed) < WRITES_BEFORE_KILL {
        if Instant::now() >= steady_by || writer.is_finished() {
            writer.abort();
            run.error = Some(format!(
                "the writer did not write steadily before the kill: {} of {WRITES_BEFORE_KILL} \
                 writes within {FAILOVER_BOUND:?}; last error: {}{}",
                seen.acked.load(Ordering::Relaxed),
                last_error(&seen),
                logs(cluster)
            ));
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    run.writes_before = seen.acked.load(Ordering::Relaxed);

    let (signalled, gone) = match cluster.kill(leader) {
        Ok(t) => t,
        Err(e) => {
            writer.abort();
            run.error = Some(format!("killing the leader: {e}"));
            return Ok(run);
        }
    };
    let _ = gone_at.set(gone);
    run.kill_ms = ms(gone - signalled);
    let deadline = signalled + FAILOVER_BOUND;

    let survivors: Vec<(usize, std::net::SocketAddr)> = cluster
        .members()
        .iter()
        .filter(|m| !m.killed)
        .map(|m| (m.id, m.addr))
        .collect();
    let new_leader = async {
        while Instant::now() < deadline {
            for &(id, addr) in &survivors {
                if mode_of(addr).await.as_deref() == Some("leader") {
                    return Some((id, Instant::now()));
                }
            }
            tokio::time::sleep(MODE_POLL).await;
        }
        None
    };
    let first_write = async {
        match tokio::time::timeout_at(deadline, writer).await {
            Ok(Ok(acked)) => acked,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            _ => None,
        }
    };
    let (leader_seen, acked) = tokio::join!(new_leader, first_write);
    if let Some((id, at)) = leader_seen {
        run.new_leader = Some(id);
        run.leader_ms = Some(ms(at - signalled));
    }
    run.write_ms = acked.map(|at| ms(at - signalled));
    run.failed_writes = seen.failed_after.load(Ordering::Relaxed);
    let mut missing = Vec::new();
    if run.write_ms.is_none() {
        missing.push(format!(
            "no write was acknowledged ({} failed; last error: {})",
            run.failed_writes,
            last_error(&seen)
        ));
    }
    if run.leader_ms.is_none() {
        let mut said = Vec::new();
        for &(id, addr) in &survivors {
            said.push(format!(
                "member {id}: {}",
                mode_of(addr)
                    .await
                    .unwrap_or_else(|| "not serving".to_owned())
            ));
        }
        missing.push(format!("no survivor became leader ({})", said.join(", ")));
    }
    if !missing.is_empty() {
        run.error = Some(format!(
            "within {FAILOVER_BOUND:?} of killing the leader (member {}): {}{}",
            run.killed_leader,
            missing.join("; "),
            logs(cluster)
        ));
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    Ok(run)
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes one setData after another until a write sent after `gone_at` is acknowledged
/// (returning when), or `until`. Failures are counted and retried at once: the client queues
/// requests while it reconnects.
async fn write_until_first_after(
    client: Client,
    path: String,
    seen: Arc<Seen>,
    gone_at: Arc<OnceLock<Instant>>,
    until: Instant,
) -> Option<Instant> {
    let mut seq = 0u64;
    // Bounded by `until`; every write is bounded by WRITE_TIMEOUT.
    while Instant::now() < until {
        seq += 1;
        let sent = Instant::now();
        let after_kill = gone_at.get().is_some_and(|g| sent >= *g);
        let write = client.set_data(&path, &seq.to_be_bytes(), None);
        let outcome = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {WRITE_TIMEOUT:?}")),
        };
        match outcome {
            None if after_kill => return Some(Instant::now()),
            None => {
                seen.acked.fetch_add(1, Ordering::Relaxed);
            }
            Some(e) => {
                if gone_at.get().is_some() {
                    seen.failed_after.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut last) = seen.last_error.lock() {
                    *last = Some(e);
                }
                // Not a busy loop when the client fails at once (it queues while reconnecting,
                // so this is rare).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    None
}

/// Creates `path` and its missing ancestors.
async fn ensure_path(client: &Client, path: &str) -> Result<(), String> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            client.create(&at, b"", &CreateOptions::persistent()),
        )
        .await
        {
            Ok(Ok(_)) | Ok(Err(rookery_client::Error::NodeExists)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        }
    }
    Ok(())
}

fn last_error(seen: &Seen) -> String {
    seen.last_error
        .lock()
        .ok()
        .and_then(|l| l.clone())
        .unwrap_or_else(|| "none".to_owned())
}

/// The end of every member's log, for a failed run.
fn logs(cluster: &Cluster) -> String {
    let mut out = String::new();
    for m in cluster.members() {
        let _ = write!(
            out,
            "\n--- last lines of member {}{} ({}) ---\n{}",
            m.id,
            if m.killed { ", killed" } else { "" },
            m.log.display(),
            log_tail(&m.log, 15)
        );
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median of the runs that finished, of `write_ms` or `leader_ms`.
pub fn median_of(runs: &[FailoverRun], pick: impl Fn(&FailoverRun) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().filter_map(pick).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_failed_runs() {
        let run = |w: Option<f64>| FailoverRun {
            write_ms: w,
            ..FailoverRun::default()
        };
        let runs = [
            run(Some(300.0)),
            run(None),
            run(Some(100.0)),
            run(Some(200.0)),
        ];
        assert_eq!(median_of(&runs, |r| r.write_ms), Some(200.0));
        assert_eq!(median_of(&runs[..1], |r| r.leader_ms), None);
        assert_eq!(
            median_of(&[run(Some(1.0)), run(Some(2.0))], |r| r.write_ms),
            Some(1.5)
        );
    }
}
