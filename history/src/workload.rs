//! The workload: concurrent `rookery-client` sessions doing a mix of plain reads, sync-reads
//! (`sync` and `getData` pipelined), unconditional writes, compare-and-set writes and
//! sequential creates over a few znodes, recording every invocation and completion.
//!
//! Each session sends a small batch of requests at once (the client queues each request when
//! it is called, so a batch is pipelined in order) and records the completions in the order it
//! sees them, which is what the FIFO check needs. Every request is bounded by
//! `op_timeout_ms`; a request that times out is indeterminate (it may still run later: the
//! client does not cancel queued requests). A session that expires is replaced by a new one,
//! which is a new process in the history.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery_client::{Client, CreateMode, CreateOptions, Error};

use crate::history::{
    sequence_of, value_of, Call, MemberState, Op, Outcome, Process, RegisterState, Reply,
    ServerError,
};

/// Relative weights of the operation kinds.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub read: u32,
    pub sync_read: u32,
    pub write: u32,
    pub cas: u32,
    pub create_seq: u32,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            read: 20,
            sync_read: 20,
            write: 15,
            cas: 30,
            create_seq: 15,
        }
    }
}

/// What the sessions do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent sessions.
    pub clients: usize,
    /// The registers (full paths), created beforehand with data `"0"`.
    pub registers: Vec<String>,
    /// The parent of sequential creates, created beforehand.
    pub parent: String,
    pub session_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// The longest the harness waits for one request before calling it indeterminate.
    pub op_timeout_ms: u64,
    /// Pause between a session's batches, to keep the load modest on a small machine.
    pub think_ms: u64,
    /// Requests a session pipelines at once (1 to this many).
    pub max_batch: usize,
    pub mix: Mix,
    pub seed: u64,
}

/// The shared clock and counters of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    seq: AtomicU64,
    process: AtomicU32,
    /// Register values and create tokens, unique across the run (0 is the initial value).
    value: AtomicU64,
}

/// An invocation waiting for its completion.
#[derive(Debug)]
pub struct Pending {
    process: Process,
    session_id: i64,
    call: Call,
    invoke_ns: u64,
    invoke_seq: u64,
}

impl Recorder {
    pub fn new(start: Instant) -> Arc<Recorder> {
        Arc::new(Recorder {
            start,
            seq: AtomicU64::new(0),
            process: AtomicU32::new(0),
            value: AtomicU64::new(1),
        })
    }

    /// Nanoseconds since the start of the run, on the monotonic clock.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn next_process(&self) -> Process {
        self.process.fetch_add(1, Ordering::SeqCst)
    }

    pub fn next_value(&self) -> u64 {
        self.value.fetch_add(1, Ordering::SeqCst)
    }

    /// Records an invocation: call it before the request is queued.
    pub fn invoke(&self, process: Process, session_id: i64, call: Call) -> Pending {
        Pending {
            process,
            session_id,
            call,
            invoke_ns: self.now_ns(),
            invoke_seq: self.seq.fetch_add(1, Ordering::SeqCst),
        }
    }

    /// Records the completion (none for an indeterminate outcome).
    pub fn complete(&self, p: Pending, outcome: Outcome) -> Op {
        let (complete_ns, complete_seq) = if matches!(outcome, Outcome::Unknown { .. }) {
            (None, None)
        } else {
            (
                Some(self.now_ns()),
                Some(self.seq.fetch_add(1, Ordering::SeqCst)),
            )
        };
        Op {
            id: 0,
            process: p.process,
            session_id: p.session_id,
            call: p.call,
            invoke_ns: p.invoke_ns,
            complete_ns,
            invoke_seq: p.invoke_seq,
            complete_seq,
            outcome,
        }
    }
}

/// An outcome, and whether the session is gone for good.
type Issued = Pin<Box<dyn Future<Output = (Outcome, bool)> + Send>>;

/// What a failed request means for the history.
pub fn outcome_of_error(e: &Error) -> Outcome {
    let reason = e.to_string();
    if e.is_outcome_unknown() {
        return Outcome::Unknown { reason };
    }
    match e {
        // Never left the client (reads always say so: they cannot have changed anything).
        Error::ConnectionLoss { .. }
        | Error::TooManyRequests { .. }
        | Error::InvalidArgument(_) => Outcome::NotSent { reason },
        Error::BadVersion => Outcome::Failed(ServerError::BadVersion),
        Error::NoNode => Outcome::Failed(ServerError::NoNode),
        Error::NodeExists => Outcome::Failed(ServerError::NodeExists),
        // A request pending when the session ended may have been applied before.
        Error::SessionExpired
        | Error::ClientClosed
        | Error::AuthFailed
        | Error::Timeout(_)
        | Error::Protocol(_) => Outcome::Unknown { reason },
        other => match other.code() {
            Some(code) => Outcome::Failed(ServerError::Other { code, name: reason }),
            None => Outcome::Unknown { reason },
        },
    }
}

fn failed(e: Error) -> (Outcome, bool) {
    (outcome_of_error(&e), e.is_session_terminated())
}

/// Queues `call` on `c` now and returns its outcome's future.
pub fn issue(c: &Client, call: &Call) -> Issued {
    match call {
        Call::Read { key } => {
            let f = c.get_data(key);
            Box::pin(async move {
                match f.await {
                    Ok((data, stat)) => (
                        Outcome::Ok(Reply::Read {
                            value: value_of(&data),
                            version: stat.version,
                            mzxid: stat.mzxid,
                        }),
                        false,
                    ),
                    Err(e) => failed(e),
                }
            })
        }
        Call::SyncRead { key } => {
            // Both queued now, in this order: the read runs after the sync on the server.
            let s = c.sync(key);
            let g = c.get_data(key);
            Box::pin(async move {
                let (s, g) = futures::join!(s, g);
                match (s, g) {
                    (Ok(()), Ok((data, stat))) => (
                        Outcome::Ok(Reply::Read {
                            value: value_of(&data),
                            version: stat.version,
                            mzxid: stat.mzxid,
                        }),
                        false,
                    ),
                    // A read after a failed sync is no sync-read: count it as not done.
                    (Err(e), _) => {
                        let terminated = e.is_session_terminated();
                        let reason = format!("sync failed: {e}");
                        (Outcome::NotSent { reason }, terminated)
                    }
                    (Ok(()), Err(e)) => failed(e),
                }
            })
        }
        Call::Write { key, value } => {
            let f = c.set_data(key, value.to_string().as_bytes(), None);
            Box::pin(async move { written(f.await) })
        }
        Call::Cas {
            key,
            expected_version,
            value,
        } => {
            let f = c.set_data(key, value.to_string().as_bytes(), Some(*expected_version));
            Box::pin(async move { written(f.await) })
        }
        Call::CreateSeq { parent, token } => {
            let f = c.create2(
                &format!("{parent}/c"),
                token.to_string().as_bytes(),
                &CreateOptions::new(CreateMode::PersistentSequential),
            );
            Box::pin(async move {
                match f.await {
                    Ok((path, stat)) => {
                        let name = path.rsplit('/').next().unwrap_or_default().to_string();
                        let seq = sequence_of(&name).unwrap_or(-1);
                        (
                            Outcome::Ok(Reply::Created {
                                name,
                                seq,
                                czxid: stat.czxid,
                            }),
                            false,
                        )
                    }
                    Err(e) => failed(e),
                }
            })
        }
    }
}

fn written(r: rookery_client::Result<rookery_client::Stat>) -> (Outcome, bool) {
    match r {
        Ok(stat) => (
            Outcome::Ok(Reply::Written {
                version: stat.version,
                mzxid: stat.mzxid,
            }),
            false,
        ),
        Err(e) => failed(e),
    }
}

/// A client of `connect`, or an error after `connect_timeout_ms`.
pub async fn connect(
    connect: &str,
    session_timeout_ms: u64,
    connect_timeout_ms: u64,
    seed: u64,
) -> Result<Client, String> {
    let fut = Client::builder(connect)
        .session_timeout(Duration::from_millis(session_timeout_ms))
        .connect_timeout(Duration::from_millis(connect_timeout_ms))
        .rng_seed(seed)
        .connect();
    // The builder bounds itself; the outer bound is a guard against a hang.
    match tokio::time::timeout(Duration::from_millis(connect_timeout_ms + 2_000), fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session within {connect_timeout_ms} ms")),
    }
}

fn pick(
    rng: &mut StdRng,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    versions: &HashMap<String, i32>,
) -> Call {
    let m = cfg.mix;
    let total = m.read + m.sync_read + m.write + m.cas + m.create_seq;
    let mut x = rng.gen_range(0..total.max(1));
    let key = cfg.registers[rng.gen_range(0..cfg.registers.len())].clone();
    if x < m.read {
        return Call::Read { key };
    }
    x -= m.read;
    if x < m.sync_read {
        return Call::SyncRead { key };
    }
    x -= m.sync_read;
    if x < m.write {
        return Call::Write {
            key,
            value: rec.next_value(),
        };
    }
    x -= m.write;
    if x < m.cas {
        // The version this session last saw; now and then one ahead, which fails unless
        // another session's write got there first.
        let seen = versions.get(&key).copied().unwrap_or(0);
        let expected_version = if rng.gen_ratio(1, 10) { seen + 1 } else { seen };
        return Call::Cas {
            key,
            expected_version,
            value: rec.next_value(),
        };
    }
    Call::CreateSeq {
        parent: cfg.parent.clone(),
        token: rec.next_value(),
    }
}

/// One session slot: runs sessions against `connect` until `deadline`, replacing a session
/// that ends, and returns every operation it recorded.
pub async fn worker(
    slot: usize,
    connect_string: String,
    cfg: Arc<WorkloadConfig>,
    rec: Arc<Recorder>,
    deadline: Instant,
) -> Vec<Op> {
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut ops = Vec::new();
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    while Instant::now() < deadline {
        let client = match connect(
            &connect_string,
            cfg.session_timeout_ms,
            cfg.connect_timeout_ms,
            rng.gen(),
        )
        .await
        {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let process = rec.next_process();
        let session_id = client.session_id();
        let mut versions: HashMap<String, i32> = HashMap::new();
        let mut terminated = false;
        while !terminated && Instant::now() < deadline {
            let batch = rng.gen_range(1..=cfg.max_batch.max(1));
            let mut futs = FuturesUnordered::new();
            for _ in 0..batch {
                let call = pick(&mut rng, &cfg, &rec, &versions);
                let pending = rec.invoke(process, session_id, call.clone());
                let f = issue(&client, &call);
                futs.push(async move { (pending, tokio::time::timeout(op_timeout, f).await) });
            }
            while let Some((pending, r)) = futs.next().await {
                let (outcome, ended) = r.unwrap_or_else(|_| {
                    let reason = format!("no reply within {} ms", cfg.op_timeout_ms);
                    (Outcome::Unknown { reason }, false)
                });
                terminated |= ended;
                match &outcome {
                    Outcome::Ok(Reply::Read { version, .. } | Reply::Written { version, .. }) => {
                        versions.insert(pending.call.key().to_string(), *version);
                    }
                    Outcome::Ok(Reply::Created { .. }) | Outcome::Failed(_) => {}
                    Outcome::NotSent { .. } | Outcome::Unknown { .. } => {}
                }
                ops.push(rec.complete(pending, outcome));
            }
            if cfg.think_ms > 0 {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=cfg.think_ms))).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    }
    ops
}

/// Reads one member's final state through a session bound to it alone: each register by a
/// sync-read (recorded, so the linearizability check includes the final values), and each
/// parent's children with their tokens, after a `sync`. Tries until `max` has passed.
pub async fn read_member(
    member: usize,
    addr: &str,
    registers: &[String],
    parents: &[String],
    rec: &Recorder,
    cfg: &WorkloadConfig,
    max: Duration,
) -> (MemberState, Vec<Op>) {
    let deadline = Instant::now() + max;
    let mut ops = Vec::new();
    let mut last_error = String::from("not tried");
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    while Instant::now() < deadline {
        let c = match connect(
            addr,
            cfg.session_timeout_ms,
            cfg.connect_timeout_ms,
            cfg.seed,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                last_error = format!("connecting: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let process = rec.next_process();
        let mut state = MemberState {
            member,
            ..Default::default()
        };
        let attempt = async {
            for key in registers {
                let call = Call::SyncRead { key: key.clone() };
                let pending = rec.invoke(process, c.session_id(), call.clone());
                let (outcome, _) = tokio::time::timeout(op_timeout, issue(&c, &call))
                    .await
                    .unwrap_or_else(|_| {
                        let reason = "final read timed out".to_string();
                        (Outcome::Unknown { reason }, false)
                    });
                let op = rec.complete(pending, outcome);
                let result = match op.ok() {
                    Some(Reply::Read {
                        value,
                        version,
                        mzxid,
                    }) => Ok(RegisterState {
                        value: *value,
                        version: *version,
                        mzxid: *mzxid,
                    }),
                    _ => Err(format!("reading {key}: {:?}", op.outcome)),
                };
                ops.push(op);
                state.registers.insert(key.clone(), result?);
            }
            for parent in parents {
                let s = c.sync(parent);
                let l = c.get_children(parent);
                let listing = async {
                    s.await?;
                    l.await
                };
                let names = tokio::time::timeout(op_timeout, listing)
                    .await
                    .map_err(|_| format!("listing {parent} timed out"))?
                    .map_err(|e| format!("listing {parent}: {e}"))?;
                // In chunks: all at once could pass the client's queue limit (a long run
                // leaves tens of thousands of children).
                let mut children = std::collections::BTreeMap::new();
                for chunk in names.chunks(500) {
                    let reads: Vec<_> = chunk
                        .iter()
                        .map(|n| c.get_data(&format!("{parent}/{n}")))
                        .collect();
                    let datas = tokio::time::timeout(op_timeout, futures::future::join_all(reads))
                        .await
                        .map_err(|_| format!("reading the children of {parent} timed out"))?;
                    for (n, d) in chunk.iter().zip(datas) {
                        let (data, _) = d.map_err(|e| format!("reading {parent}/{n}: {e}"))?;
                        children.insert(n.clone(), value_of(&data));
                    }
                }
                state.children.insert(parent.clone(), children);
            }
            Ok::<(), String>(())
        };
        let result = attempt.await;
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
        match result {
            Ok(()) => return (state, ops),
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    (
        MemberState {
            member,
            error: Some(last_error),
            ..Default::default()
        },
        ops,
    )
}
