//! The workloads, each driven through `rookery-client` against one connect string.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use rookery_client::{Client, ClientBuilder, CreateOptions, EventType};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::process::{cpu_ms, cpu_ms_sum, rss_sum};
use super::raw::RawSession;
use super::stats::Latencies;
use super::{BenchError, Options, Workload, WorkloadResult};

/// A bound on the operations one request slot issues in a timed workload (the deadline
/// normally ends it long before).
const MAX_OPS_PER_SLOT: u64 = 100_000_000;
/// A bound on the rounds of the watch and expiry workloads.
const MAX_ROUNDS: u64 = 1_000_000;
/// Pipelined creates in flight while preparing key sets and tree parents.
const PREPARE_CHUNK: usize = 500;
/// Children per parent in the large tree.
const TREE_FANOUT: u64 = 1000;
/// How long the server is left alone after loading the tree, before its RSS is read.
const TREE_SETTLE: Duration = Duration::from_secs(2);
/// The session timeout of the load-generating sessions.
const LOAD_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `workloads` in order against `connect` (a connect string, `host:port[,host:port][/chroot]`)
/// and returns one result each. Every node the run creates is under
/// `<root>/<run id>/<workload>`; they are left in place.
///
/// # Errors
/// The first failure: an option out of range, a server that refuses a session, an operation that
/// fails or times out (a benchmark with failed operations is not a measurement), or an RSS that
/// cannot be read for a given pid.
pub async fn run(
    connect: &str,
    workloads: &[Workload],
    opts: &Options,
) -> Result<Vec<WorkloadResult>, BenchError> {
    opts.validate()?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_id = format!("run-{:x}-{}", nanos & 0xffff_ffff_ffff, std::process::id());
    let ctx = Ctx {
        connect: connect.to_owned(),
        opts: opts.clone(),
        base: format!("{}/{run_id}", opts.root),
        value: vec![b'x'; opts.value_size].into(),
    };
    let mut out = Vec::with_capacity(workloads.len());
    for &w in workloads {
        tracing::info!(workload = %w, server = connect, "running");
        let mut r = match w {
            Workload::Create => create(&ctx).await?,
            Workload::Set | Workload::Get | Workload::Mixed => keyed(&ctx, w).await?,
            Workload::Watch => watch(&ctx).await?,
            Workload::Churn => churn(&ctx).await?,
            Workload::Expiry => expiry(&ctx).await?,
            Workload::Tree => tree(&ctx).await?,
        };
        if r.rss_kib.is_none() {
            r.rss_kib = rss_sum(&opts.server_pids)?.map(|r| r.rss_kib);
        }
        out.push(r);
    }
    Ok(out)
}

struct Ctx {
    connect: String,
    opts: Options,
    base: String,
    value: Arc<[u8]>,
}

impl Ctx {
    fn dir(&self, w: Workload) -> String {
        format!("{}/{}", self.base, w.name())
    }

    async fn connect_one(&self) -> Result<Client, BenchError> {
        ClientBuilder::new(&self.connect)
            .session_timeout(LOAD_SESSION_TIMEOUT)
            .connect_timeout(self.opts.op_timeout)
            .connect()
            .await
            .map_err(|e| BenchError::client(format!("connecting to {}", self.connect), e))
    }

    /// `n` sessions, opened 64 at a time.
    async fn connect_many(&self, n: usize) -> Result<Vec<Client>, BenchError> {
        let mut clients = Vec::with_capacity(n);
        while clients.len() < n {
            let k = (n - clients.len()).min(64);
            let batch = futures::future::try_join_all((0..k).map(|_| self.connect_one())).await?;
            clients.extend(batch);
        }
        Ok(clients)
    }

    /// Bounds one wait on the server.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, rookery_client::Error>>,
    ) -> Result<T, BenchError> {
        match tokio::time::timeout(self.opts.op_timeout, fut).await {
            Ok(r) => r.map_err(|e| BenchError::client(what, e)),
            Err(_) => Err(BenchError::Timeout {
                context: what.to_owned(),
                after: self.opts.op_timeout,
            }),
        }
    }

    fn window(&self) -> Window {
        let begin = Instant::now() + self.opts.warmup;
        Window {
            begin,
            end: begin + self.opts.duration,
        }
    }
}

/// Creates `path` and any missing ancestors (empty data).
async fn ensure_path(ctx: &Ctx, client: &Client, path: &str) -> Result<(), BenchError> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match tokio::time::timeout(
            ctx.opts.op_timeout,
            client.create(&at, b"", &CreateOptions::persistent()),
        )
        .await
        {
            Ok(Ok(_)) | Ok(Err(rookery_client::Error::NodeExists)) => {}
            Ok(Err(e)) => return Err(BenchError::client(format!("creating {at}"), e)),
            Err(_) => {
                return Err(BenchError::Timeout {
                    context: format!("creating {at}"),
                    after: ctx.opts.op_timeout,
                })
            }
        }
    }
    Ok(())
}

/// Creates every path of `paths` with `value`, `PREPARE_CHUNK` pipelined at a time.
async fn create_all(
    ctx: &Ctx,
    client: &Client,
    paths: impl Iterator<Item = String>,
    value: &[u8],
) -> Result<(), BenchError> {
    let paths: Vec<String> = paths.collect();
    for chunk in paths.chunks(PREPARE_CHUNK) {
        let futs = chunk
            .iter()
            .map(|p| client.create(p, value, &CreateOptions::persistent()));
        ctx.bounded("preparing nodes", futures::future::try_join_all(futs))
            .await?;
    }
    Ok(())
}

/// Makes every client's server catch up with the leader (`sync`), so that what one session
/// prepared is visible to the others: in an ensemble a session reads from the member it is
/// connected to, which may not have applied another session's writes yet.
async fn sync_all(ctx: &Ctx, clients: &[Client], path: &str) -> Result<(), BenchError> {
    ctx.bounded(
        "syncing the sessions",
        futures::future::try_join_all(clients.iter().map(|c| c.sync(path))),
    )
    .await
    .map(drop)
}

#[derive(Debug, Clone, Copy)]
struct Window {
    begin: Instant,
    end: Instant,
}

impl Window {
    fn counts(&self, started: Instant, done: Instant) -> bool {
        started >= self.begin && done <= self.end
    }

    fn seconds(&self) -> f64 {
        (self.end - self.begin).as_secs_f64()
    }
}

/// CPU time used between two instants by the server (summed over its pids) and by this load
/// generator, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    server_ms: Option<f64>,
    client_ms: f64,
}

/// Samples CPU times at `begin` and at `end` (a task, so that sampling never delays a request).
fn sample_cpu(
    pids: Vec<u32>,
    begin: Instant,
    end: Instant,
) -> tokio::task::JoinHandle<Result<CpuUse, BenchError>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(begin).await;
        let (s0, c0) = (cpu_ms_sum(&pids)?, cpu_ms("self")?);
        tokio::time::sleep_until(end).await;
        let (s1, c1) = (cpu_ms_sum(&pids)?, cpu_ms("self")?);
        Ok(CpuUse {
            server_ms: s0.zip(s1).map(|(a, b)| b - a),
            client_ms: c1 - c0,
        })
    })
}

async fn cpu_of(
    sampler: tokio::task::JoinHandle<Result<CpuUse, BenchError>>,
) -> Result<CpuUse, BenchError> {
    match sampler.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(BenchError::Protocol(format!(
            "the CPU sampler was cancelled: {e}"
        ))),
    }
}

/// Adds the CPU figures of a workload to its result: total ms, and µs per operation.
fn add_cpu(r: &mut WorkloadResult, cpu: CpuUse) {
    let per_op = |ms: f64| {
        if r.ops > 0 {
            ms * 1000.0 / r.ops as f64
        } else {
            0.0
        }
    };
    if let Some(ms) = cpu.server_ms {
        r.extra.insert("server_cpu_ms".into(), ms);
        r.extra.insert("server_cpu_us_per_op".into(), per_op(ms));
    }
    r.extra.insert("client_cpu_ms".into(), cpu.client_ms);
    r.extra
        .insert("client_cpu_us_per_op".into(), per_op(cpu.client_ms));
}

/// What one request slot is told about the operation it is about to issue.
struct OpCtx {
    /// Index of the slot (unique across the workload).
    slot: usize,
    /// Operations this slot issued before.
    seq: u64,
    /// The slot's own generator.
    rng: super::SplitMix,
}

struct Measured {
    ops: u64,
    latencies: Latencies,
    cpu: CpuUse,
}

/// A closed loop: each slot issues one operation after another until the window ends; the
/// operations started after the warm-up and finished before the end are measured.
async fn closed_loop<S, F, Fut>(
    ctx: &Ctx,
    what: &'static str,
    slots: Vec<S>,
    window: Window,
    op: F,
) -> Result<Measured, BenchError>
where
    S: Send + 'static,
    F: Fn(&S, &mut OpCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), rookery_client::Error>> + Send + 'static,
{
    let op = Arc::new(op);
    let timeout = ctx.opts.op_timeout;
    let sampler = sample_cpu(ctx.opts.server_pids.clone(), window.begin, window.end);
    let mut set = JoinSet::new();
    for (slot, state) in slots.into_iter().enumerate() {
        let op = op.clone();
        set.spawn(async move {
            let mut c = OpCtx {
                slot,
                seq: 0,
                rng: super::SplitMix::new(slot as u64 + 1),
            };
            let mut lat = Latencies::new();
            let mut ops = 0u64;
            while c.seq < MAX_OPS_PER_SLOT {
                let started = Instant::now();
                if started >= window.end {
                    break;
                }
                let fut = op(&state, &mut c);
                match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(BenchError::client(what, e)),
                    Err(_) => {
                        return Err(BenchError::Timeout {
                            context: what.to_owned(),
                            after: timeout,
                        })
                    }
                }
                let done = Instant::now();
                if window.counts(started, done) {
                    lat.record(done - started);
                    ops += 1;
                }
                c.seq += 1;
            }
            Ok(Measured {
                ops,
                latencies: lat,
                cpu: CpuUse::default(),
            })
        });
    }
    let mut m = join_measured(set).await?;
    m.cpu = cpu_of(sampler).await?;
    Ok(m)
}

async fn join_measured(
    mut set: JoinSet<Result<Measured, BenchError>>,
) -> Result<Measured, BenchError> {
    let mut total = Measured {
        ops: 0,
        latencies: Latencies::new(),
        cpu: CpuUse::default(),
    };
    while let Some(joined) = set.join_next().await {
        let m = match joined {
            Ok(r) => r?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                return Err(BenchError::Protocol(format!(
                    "a load task was cancelled: {e}"
                )))
            }
        };
        total.ops += m.ops;
        total.latencies.merge(&m.latencies);
    }
    Ok(total)
}

fn result(w: Workload, m: &Measured, seconds: f64) -> WorkloadResult {
    let mut r = WorkloadResult {
        workload: w,
        ops: m.ops,
        seconds,
        ops_per_sec: Some(if seconds > 0.0 {
            m.ops as f64 / seconds
        } else {
            0.0
        }),
        latency: m.latencies.summary(),
        rss_kib: None,
        extra: BTreeMap::new(),
    };
    add_cpu(&mut r, m.cpu);
    r
}

/// One slot per request in flight: each session appears `in_flight` times.
fn slots_of(clients: &[Client], in_flight: usize) -> Vec<(usize, Client)> {
    clients
        .iter()
        .enumerate()
        .flat_map(|(i, c)| (0..in_flight).map(move |_| (i, c.clone())))
        .collect()
}

async fn create(ctx: &Ctx) -> Result<WorkloadResult, BenchError> {
    let dir = ctx.dir(Workload::Create);
    let clients = ctx.connect_many(ctx.opts.sessions).await?;
    for i in 0..clients.len() {
        ensure_path(ctx, &clients[0], &format!("{dir}/s{i}")).await?;
    }
    let window = ctx.window();
    let value = ctx.value.clone();
    let dir: Arc<str> = dir.into();
    let m = closed_loop(
        ctx,
        "create",
        slots_of(&clients, ctx.opts.in_flight),
        window,
        move |(session, client): &(usize, Client), c: &mut OpCtx| {
            let path = format!("{dir}/s{session}/n{}-{}", c.slot, c.seq);
            let fut = client.create(&path, &value, &CreateOptions::persistent());
            async move { fut.await.map(drop) }
        },
    )
    .await?;
    Ok(result(Workload::Create, &m, window.seconds()))
}

/// set, get and mixed: random keys of a prepared key set.
async fn keyed(ctx: &Ctx, w: Workload) -> Result<WorkloadResult, BenchError> {
    let dir = ctx.dir(w);
    let clients = ctx.connect_many(ctx.opts.sessions).await?;
    ensure_path(ctx, &clients[0], &dir).await?;
    let keys = ctx.opts.keys as u64;
    create_all(
        ctx,
        &clients[0],
        (0..keys).map(|k| format!("{dir}/k{k}")),
        &ctx.value,
    )
    .await?;
    sync_all(ctx, &clients, &dir).await?;
    let read_pct = match w {
        Workload::Get => 100,
        Workload::Set => 0,
        _ => u64::from(ctx.opts.read_pct),
    };
    let window = ctx.window();
    let value = ctx.value.clone();
    let dir: Arc<str> = dir.into();
    let m = closed_loop(
        ctx,
        w.name(),
        slots_of(&clients, ctx.opts.in_flight),
        window,
        move |(_, client): &(usize, Client), c: &mut OpCtx| {
            let path = format!("{dir}/k{}", c.rng.below(keys));
            let read = c.rng.below(100) < read_pct;
            let fut: futures::future::BoxFuture<'static, Result<(), rookery_client::Error>> =
                if read {
                    let f = client.get_data(&path);
                    Box::pin(async move { f.await.map(drop) })
                } else {
                    let f = client.set_data(&path, &value, None);
                    Box::pin(async move { f.await.map(drop) })
                };
            fut
        },
    )
    .await?;
    let mut r = result(w, &m, window.seconds());
    r.extra.insert("keys".into(), keys as f64);
    r.extra.insert("read_pct".into(), read_pct as f64);
    Ok(r)
}

/// `watchers` sessions each set a one-shot data watch on one node; one write; the round ends
/// when every watcher has its event. Latency: from sending the write until the last watcher is
/// notified. Rounds run back to back (re-arming is not part of the latency).
async fn watch(ctx: &Ctx) -> Result<WorkloadResult, BenchError> {
    let dir = ctx.dir(Workload::Watch);
    let path = format!("{dir}/node");
    let writer = ctx.connect_one().await?;
    ensure_path(ctx, &writer, &path).await?;
    let watchers = ctx.connect_many(ctx.opts.watchers).await?;
    sync_all(ctx, &watchers, &path).await?;
    let window = ctx.window();
    let sampler = sample_cpu(ctx.opts.server_pids.clone(), window.begin, window.end);
    let mut rounds = Latencies::new();
    let mut notify = Latencies::new();
    let mut measured = 0u64;
    for _ in 0..MAX_ROUNDS {
        if Instant::now() >= window.end {
            break;
        }
        let armed = ctx
            .bounded(
                "arming the watches",
                futures::future::try_join_all(watchers.iter().map(|c| c.get_data_watched(&path))),
            )
            .await?;
        let started = Instant::now();
        let set = writer.set_data(&path, &ctx.value, None);
        let mut waits: FuturesUnordered<_> = armed
            .into_iter()
            .map(|(_, _, w)| async move {
                let ev = w.await;
                (ev, Instant::now())
            })
            .collect();
        let all = async {
            let mut times = Vec::with_capacity(watchers.len());
            while let Some(t) = waits.next().await {
                times.push(t);
            }
            times
        };
        let (set, times) =
            tokio::time::timeout(ctx.opts.op_timeout, async { tokio::join!(set, all) })
                .await
                .map_err(|_| BenchError::Timeout {
                    context: "waiting for every watcher".into(),
                    after: ctx.opts.op_timeout,
                })?;
        set.map_err(|e| BenchError::client("the write that fires the watches", e))?;
        let mut last = started;
        for (ev, at) in &times {
            let ty = ev.as_ref().map(|e| e.event_type);
            if ty != Ok(EventType::NodeDataChanged) {
                return Err(BenchError::Protocol(format!(
                    "a watcher got {ty:?} instead of NodeDataChanged"
                )));
            }
            last = last.max(*at);
        }
        if window.counts(started, last) {
            measured += 1;
            rounds.record(last - started);
            for (_, at) in &times {
                notify.record(*at - started);
            }
        }
    }
    let m = Measured {
        ops: measured,
        latencies: rounds,
        cpu: cpu_of(sampler).await?,
    };
    let mut r = result(Workload::Watch, &m, window.seconds());
    let n = notify.summary();
    r.extra.insert("watchers".into(), ctx.opts.watchers as f64);
    r.extra.insert(
        "notifications_per_sec".into(),
        n.count as f64 / window.seconds(),
    );
    r.extra.insert("notify_p50_us".into(), n.p50_us as f64);
    r.extra.insert("notify_p99_us".into(), n.p99_us as f64);
    Ok(r)
}

/// `sessions` loops, each opening a session and closing it again.
async fn churn(ctx: &Ctx) -> Result<WorkloadResult, BenchError> {
    let window = ctx.window();
    let connect: Arc<str> = ctx.connect.as_str().into();
    let timeout = ctx.opts.op_timeout;
    let m = closed_loop(
        ctx,
        "session churn",
        vec![connect; ctx.opts.sessions],
        window,
        move |connect: &Arc<str>, _: &mut OpCtx| {
            let b = ClientBuilder::new(connect)
                .session_timeout(LOAD_SESSION_TIMEOUT)
                .connect_timeout(timeout);
            async move {
                let client = b.connect().await?;
                client.close().await
            }
        },
    )
    .await?;
    Ok(result(Workload::Churn, &m, window.seconds()))
}

/// Rounds of `expiry_sessions` raw sessions, each with an ephemeral node: their sockets are
/// dropped at once without closeSession, and an observer's exists-watches time the deletes.
/// Rounds continue while the duration lasts (at least one).
async fn expiry(ctx: &Ctx) -> Result<WorkloadResult, BenchError> {
    let dir = ctx.dir(Workload::Expiry);
    let observer = ctx.connect_one().await?;
    ensure_path(ctx, &observer, &dir).await?;
    let first = Instant::now();
    let mut lat = Latencies::new();
    let mut granted = 0i32;
    let mut rounds = 0u64;
    // Each round waits up to three session timeouts plus the usual bound.
    let round_bound = ctx.opts.session_timeout * 3 + ctx.opts.op_timeout;
    while rounds < MAX_ROUNDS && (rounds == 0 || first.elapsed() < ctx.opts.duration) {
        // Every session of the round is opened and its ephemeral created at once, so that their
        // timeouts start together.
        let opened = futures::future::try_join_all((0..ctx.opts.expiry_sessions).map(|k| {
            let path = format!("{dir}/r{rounds}-e{k}");
            async move {
                let mut raw =
                    RawSession::open(&ctx.connect, ctx.opts.session_timeout, ctx.opts.op_timeout)
                        .await?;
                raw.create_ephemeral(&path, &ctx.value).await?;
                Ok::<_, BenchError>((raw, path))
            }
        }))
        .await?;
        let mut raws = Vec::with_capacity(opened.len());
        let mut paths = Vec::with_capacity(opened.len());
        for (raw, path) in opened {
            granted = raw.timeout_ms;
            raws.push(raw);
            paths.push(path);
        }
        // The ephemerals were created through other sessions, perhaps on other members.
        sync_all(ctx, std::slice::from_ref(&observer), &dir).await?;
        let watched = ctx
            .bounded(
                "watching the ephemerals",
                futures::future::try_join_all(paths.iter().map(|p| observer.exists_watched(p))),
            )
            .await?;
        let mut watches = Vec::with_capacity(watched.len());
        for ((stat, w), path) in watched.into_iter().zip(&paths) {
            if stat.is_none() {
                return Err(BenchError::Protocol(format!(
                    "{path} vanished before its connection was dropped"
                )));
            }
            watches.push(w);
        }
        // The connections die here, without closeSession.
        drop(raws);
        let killed = Instant::now();
        let mut waits: FuturesUnordered<_> = watches
            .into_iter()
            .map(|w| async move { (w.await, Instant::now()) })
            .collect();
        let deadline = killed + round_bound;
        for _ in 0..ctx.opts.expiry_sessions {
            let next = tokio::time::timeout_at(deadline, waits.next())
                .await
                .map_err(|_| BenchError::Timeout {
                    context: "waiting for ephemerals of dead sessions to go".into(),
                    after: round_bound,
                })?;
            let Some((ev, at)) = next else { break };
            let ty = ev.map(|e| e.event_type);
            if ty != Ok(EventType::NodeDeleted) {
                return Err(BenchError::Protocol(format!(
                    "an ephemeral's watcher got {ty:?} instead of NodeDeleted"
                )));
            }
            lat.record(at - killed);
        }
        rounds += 1;
    }
    let mut r = WorkloadResult {
        workload: Workload::Expiry,
        ops: lat.len(),
        seconds: first.elapsed().as_secs_f64(),
        ops_per_sec: None,
        latency: lat.summary(),
        rss_kib: None,
        extra: BTreeMap::new(),
    };
    r.extra
        .insert("session_timeout_ms".into(), f64::from(granted));
    r.extra.insert("rounds".into(), rounds as f64);
    Ok(r)
}

/// Loads `tree_nodes` nodes (`TREE_FANOUT` children per parent) with multis of `tree_batch`
/// creates from every slot, then reads the server's RSS.
async fn tree(ctx: &Ctx) -> Result<WorkloadResult, BenchError> {
    let dir = ctx.dir(Workload::Tree);
    let clients = ctx.connect_many(ctx.opts.sessions).await?;
    ensure_path(ctx, &clients[0], &dir).await?;
    let n = ctx.opts.tree_nodes;
    let parents = n.div_ceil(TREE_FANOUT);
    create_all(
        ctx,
        &clients[0],
        (0..parents).map(|p| format!("{dir}/p{p}")),
        b"",
    )
    .await?;
    let next = Arc::new(AtomicU64::new(0));
    let batch = ctx.opts.tree_batch as u64;
    let started = Instant::now();
    let cpu_before = (cpu_ms_sum(&ctx.opts.server_pids)?, cpu_ms("self")?);
    let mut set = JoinSet::new();
    for (_, client) in slots_of(&clients, ctx.opts.in_flight) {
        let (next, dir, value) = (next.clone(), dir.clone(), ctx.value.clone());
        let timeout = ctx.opts.op_timeout;
        set.spawn(async move {
            let mut lat = Latencies::new();
            let mut ops = 0;
            // Each turn claims a new batch, so there are at most n / batch turns in all.
            for _ in 0..=n / batch {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= n {
                    break;
                }
                let last = (first + batch).min(n);
                let mut multi = client.multi();
                for i in first..last {
                    let path = format!("{dir}/p{}/n{}", i / TREE_FANOUT, i % TREE_FANOUT);
                    multi = multi.create(&path, &value, &CreateOptions::persistent());
                }
                let t0 = Instant::now();
                match tokio::time::timeout(timeout, multi.commit()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(BenchError::client("loading the tree", e)),
                    Err(_) => {
                        return Err(BenchError::Timeout {
                            context: "loading the tree".into(),
                            after: timeout,
                        })
                    }
                }
                lat.record(t0.elapsed());
                ops += last - first;
            }
            Ok(Measured {
                ops,
                latencies: lat,
                cpu: CpuUse::default(),
            })
        });
    }
    let mut m = join_measured(set).await?;
    let seconds = started.elapsed().as_secs_f64();
    m.cpu = CpuUse {
        server_ms: cpu_before
            .0
            .zip(cpu_ms_sum(&ctx.opts.server_pids)?)
            .map(|(a, b)| b - a),
        client_ms: cpu_ms("self")? - cpu_before.1,
    };
    let last = format!(
        "{dir}/p{}/n{}",
        (n - 1) / TREE_FANOUT,
        (n - 1) % TREE_FANOUT
    );
    sync_all(ctx, &clients[..1], &dir).await?;
    if ctx
        .bounded("checking the tree", clients[0].exists(&last))
        .await?
        .is_none()
    {
        return Err(BenchError::Protocol(format!(
            "{last} is missing after the load"
        )));
    }
    drop(clients);
    let mut r = result(Workload::Tree, &m, seconds);
    r.extra.insert("nodes".into(), n as f64);
    r.extra.insert("batch".into(), batch as f64);
    if !ctx.opts.server_pids.is_empty() {
        tokio::time::sleep(TREE_SETTLE).await;
        if let Some(rss) = rss_sum(&ctx.opts.server_pids)? {
            r.rss_kib = Some(rss.rss_kib);
            r.extra.insert("rss_hwm_kib".into(), rss.hwm_kib as f64);
        }
    }
    Ok(r)
}
