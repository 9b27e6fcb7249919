//! The harness: a real ensemble (every peer link through the testkit's proxies), the
//! workload's sessions against all members, the nemesis on its seeded schedule; then every
//! fault healed, the final state read from each member, and every checker run.
//!
//! Every phase is bounded: the load by `duration_ms`, each request by `op_timeout_ms`, each
//! fault by its hold time plus `recover_ms`, the final reads by `final_read_ms`. The
//! ensemble's processes are killed when the [`Ensemble`] drops, at the end of [`run`] or on a
//! panic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rookery_client::{CreateMode, CreateOptions, Error};
use rookery_testkit::ensemble::{Ensemble, Member, MemberEnv, Options};
use rookery_testkit::faketime;
use serde::Serialize;

use crate::checker::{self, Anomaly, Budget, Report, Verdict};
use crate::history::{FinalState, History};
use crate::nemesis::{self, ClockSkew, Fault, FaultEvent, Nemesis, NemesisConfig};
use crate::workload::{self, Mix, Recorder, WorkloadConfig};

/// Everything a run does; a run is repeatable from its seed (as far as real processes and
/// real time allow).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub members: usize,
    pub clients: usize,
    /// Registers (znodes written and CAS-ed).
    pub keys: usize,
    /// Load time.
    pub duration_ms: u64,
    /// The servers' tickTime; ZooKeeper clamps session timeouts to 2–20 ticks.
    pub tick_ms: u64,
    pub session_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub op_timeout_ms: u64,
    pub think_ms: u64,
    pub max_batch: usize,
    /// Sessions of the ephemeral slot (K6, S1): each connects through a proxy of its own,
    /// makes an ephemeral node, and is closed or cut off after a short life.
    pub ephemeral_clients: usize,
    /// A workload session closes itself after a batch with probability 1 in this (0: never).
    pub end_session_every: u32,
    pub mix: Mix,
    /// The faults and their timings (its seed is derived from the run's `seed`).
    pub nemesis: NemesisConfig,
    /// Members whose clocks run skewed for the whole run (C1; none by default). Needs
    /// libfaketime (`apt-get install faketime`) and a dynamically linked `rookery`.
    pub clock_skew: ClockSkew,
    /// No fault starts in the last `tail_ms` of the load: the end shows the ensemble serving
    /// again.
    pub tail_ms: u64,
    pub final_read_ms: u64,
    pub budget: Budget,
    /// Where to write the history as JSON (always written, to the temporary directory, when a
    /// run finds an anomaly).
    pub dump: Option<PathBuf>,
}

impl RunConfig {
    /// A run of about `duration_ms` of load with every fault kind: 3 members, 4 clients,
    /// 3 registers, tickTime 200 ms, session timeout 4 s (the most 200 ms ticks allow), the
    /// leader paused 6 s.
    pub fn new(seed: u64, duration_ms: u64) -> RunConfig {
        RunConfig {
            seed,
            members: 3,
            clients: 4,
            keys: 3,
            duration_ms,
            tick_ms: 200,
            session_timeout_ms: 4_000,
            connect_timeout_ms: 4_000,
            op_timeout_ms: 10_000,
            think_ms: 10,
            max_batch: 3,
            ephemeral_clients: 1,
            end_session_every: 400,
            mix: Mix::default(),
            nemesis: NemesisConfig {
                faults: Fault::ALL.to_vec(),
                seed: seed.rotate_left(17),
                quiet_ms: (1_000, 3_000),
                down_ms: (1_000, 3_000),
                partition_ms: (2_000, 5_000),
                pause_ms: 6_000,
                slow_ms: (100, 600),
                recover_ms: 30_000,
            },
            clock_skew: ClockSkew::default(),
            tail_ms: 3_000,
            final_read_ms: 30_000,
            budget: Budget::default(),
            dump: None,
        }
    }
}

/// Why a run could not be carried out (as opposed to what its checkers found).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setting up the znodes: {0}")]
    Setup(String),
    #[error("a workload session did not finish within {0} ms after the load ended")]
    Stuck(u64),
    #[error("clock skew: {0}")]
    ClockSkew(String),
}

/// What a run did and found.
#[derive(Debug)]
pub struct RunResult {
    pub seed: u64,
    pub history: History,
    pub faults: Vec<FaultEvent>,
    /// The members whose clocks ran skewed.
    pub clock_skew: ClockSkew,
    pub report: Report,
    pub wall: Duration,
    /// How long the checkers took.
    pub check: Duration,
    /// Where the history was written, if it was.
    pub dumped: Option<PathBuf>,
    /// The tails of the members' logs, kept when the run is not clean.
    pub logs: Option<String>,
    /// Items the final drain took from the queue, or why it did not finish.
    pub drained: Result<usize, String>,
    /// How long after the heal the ephemeral parent was empty, or what was left.
    pub ephemerals_cleared: Result<Duration, String>,
}

#[derive(Serialize)]
struct Dump<'a> {
    seed: u64,
    config: String,
    history: &'a History,
    faults: &'a [FaultEvent],
    anomalies: &'a [Anomaly],
}

impl RunResult {
    /// No anomaly and every linearizability search decided.
    pub fn clean(&self) -> bool {
        self.report.clean()
    }

    /// Injected faults per kind (skipped ones left out).
    pub fn faults_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for f in self.faults.iter().filter(|f| f.skipped.is_none()) {
            *m.entry(f.fault.name()).or_default() += 1;
        }
        m
    }

    /// The figures of the run, several lines.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let mut s = String::new();
        let total: usize = r.ops.values().map(|c| c.total()).sum();
        let _ = writeln!(
            s,
            "seed {}: {} operations in {:.1} s wall, checked in {:.1} s",
            self.seed,
            total,
            self.wall.as_secs_f64(),
            self.check.as_secs_f64()
        );
        for (kind, c) in &r.ops {
            let _ = writeln!(
                s,
                "  {kind:<10} {:>6} ok {:>6} failed {:>6} not sent {:>6} unknown",
                c.ok, c.failed, c.not_sent, c.unknown
            );
        }
        let faults: Vec<String> = self
            .faults_by_kind()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let skipped = self.faults.iter().filter(|f| f.skipped.is_some()).count();
        let slowest = self.faults.iter().filter_map(|f| f.recovered_ms).max();
        let _ = writeln!(
            s,
            "faults: {} ({}){}{}",
            self.faults.len() - skipped,
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            },
            if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            },
            slowest
                .map(|ms| format!(", slowest recovery {ms} ms"))
                .unwrap_or_default()
        );
        if !self.clock_skew.is_empty() {
            let _ = writeln!(s, "clock skew: {}", self.clock_skew);
        }
        let verdicts: Vec<String> = r
            .registers
            .iter()
            .map(|k| {
                let v = match &k.verdict {
                    Verdict::Linearizable => "linearizable".to_string(),
                    Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
                    Verdict::Unknown { steps } => format!("undecided after {steps} steps"),
                };
                format!("{} ({} ops) {v}", k.key, k.ops)
            })
            .collect();
        let _ = writeln!(s, "registers: {}", verdicts.join("; "));
        let _ = writeln!(
            s,
            "acknowledged writes: {} checked, {} lost; whole-tree digests of {} members \
             compared with the first's",
            r.acked_writes, r.acked_writes_lost, r.trees_compared
        );
        let w = &r.watch;
        let _ = writeln!(
            s,
            "watches: {} set, {} fired, {} caught up after a reconnect, {} ended, {} never \
             delivered; order checked against {} replies showing the change",
            w.set, w.fired, w.catch_up, w.ended, w.undelivered, w.ordered
        );
        let q = &r.queue;
        let _ = writeln!(
            s,
            "queue: {} enqueued ({} unknown), {} consumed ({}), {} lost, {} left",
            q.enqueued,
            q.enqueue_unknown,
            q.consumed,
            match &self.drained {
                Ok(n) => format!("{n} by the final drain"),
                Err(e) => format!("the final drain did not finish: {e}"),
            },
            q.lost,
            q.left
        );
        let _ = writeln!(
            s,
            "counter: {} counts of the sequential parent checked against their bounds, the \
             largest {}",
            r.counter.reads, r.counter.max_read
        );
        let e = &r.ephemeral;
        let _ = writeln!(
            s,
            "ephemerals: {} created, {} own reads; sessions closed {}, cut off {}; resumes \
             refused {}, accepted {}; {}",
            e.created,
            e.own_reads,
            e.closed,
            e.cut_off,
            e.resumes_refused,
            e.resumes_accepted,
            match &self.ephemerals_cleared {
                Ok(d) => format!("all gone {} ms after the heal", d.as_millis()),
                Err(why) => format!("not all gone: {why}"),
            }
        );
        let _ = writeln!(s, "pair reads checked for tearing: {}", r.pair_reads);
        let counts: Vec<String> = r
            .anomaly_counts()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = write!(
            s,
            "anomalies: {}{}",
            r.anomalies.len(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts.join(", "))
            }
        );
        s
    }

    /// The summary, each anomaly, where the history went, how to repeat the run, and the
    /// members' log tails: what a failing test prints.
    pub fn failure_report(&self) -> String {
        let mut s = self.summary();
        for a in self.report.anomalies.iter().take(20) {
            let _ = write!(s, "\n[{}/{}] {}", a.checker, a.kind, a.detail);
        }
        if self.report.anomalies.len() > 20 {
            let _ = write!(s, "\n... and {} more", self.report.anomalies.len() - 20);
        }
        if let Some(p) = &self.dumped {
            let _ = write!(s, "\nhistory: {}", p.display());
        }
        let _ = write!(
            s,
            "\nrepeat with HISTORY_SEED={} (seed {:#x})",
            self.seed, self.seed
        );
        if let Some(logs) = &self.logs {
            let _ = write!(s, "\n{logs}");
        }
        s
    }
}

/// Creates `path` unless it exists, retrying a connection loss until `deadline`.
async fn ensure(
    c: &rookery_client::Client,
    path: &str,
    data: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    loop {
        match c
            .create(path, data, &CreateOptions::new(CreateMode::Persistent))
            .await
        {
            Ok(_) | Err(Error::NodeExists) => return Ok(()),
            Err(e) if Instant::now() < deadline && !e.is_session_terminated() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("creating {path}: {e}")),
        }
    }
}

/// The environment that starts the skewed members under libfaketime, after checking that it
/// can work: the library is installed, the `rookery` binary is dynamically linked (a static
/// one would ignore `LD_PRELOAD`), and every skewed member exists.
fn skewed_clocks(skew: &ClockSkew, members: usize) -> Result<MemberEnv, RunError> {
    let err = |s: String| Err(RunError::ClockSkew(s));
    if let Some((i, _)) = skew.members.iter().find(|(i, _)| *i >= members) {
        return err(format!(
            "member {} is to be skewed, but the ensemble has {members} members",
            i + 1
        ));
    }
    let Some(library) = faketime::library() else {
        return err(format!(
            "libfaketime is not installed (apt-get install faketime, or set {})",
            faketime::LIBRARY_VAR
        ));
    };
    let bin = rookery_testkit::rookery_bin();
    match faketime::dynamically_linked(&bin) {
        Ok(true) => {}
        Ok(false) => {
            return err(format!(
                "{} is not a dynamically linked executable: LD_PRELOAD cannot fake its clocks",
                bin.display()
            ))
        }
        Err(e) => return err(format!("reading {}: {e}", bin.display())),
    }
    let skew = skew.clone();
    Ok(Arc::new(move |m: &Member| {
        skew.spec((m.id - 1) as usize)
            .map(|spec| faketime::env(&library, spec))
            .unwrap_or_default()
    }))
}

/// Carries out one run. Needs a multi-threaded tokio runtime (the proxies and the sessions
/// run beside the nemesis).
pub async fn run(cfg: &RunConfig) -> Result<RunResult, RunError> {
    let wall = Instant::now();
    let mut opts = Options::new(cfg.members);
    opts.tick_ms = cfg.tick_ms;
    opts.proxied = true;
    if !cfg.clock_skew.is_empty() {
        opts.member_env = Some(skewed_clocks(&cfg.clock_skew, cfg.members)?);
    }
    let mut ens = Ensemble::start(opts).await;
    for (i, spec) in &cfg.clock_skew.members {
        let pid = ens.members[*i].child.as_ref().map(|c| c.id());
        if !pid.is_some_and(faketime::loaded_in) {
            return Err(RunError::ClockSkew(format!(
                "member {} runs without libfaketime (FAKETIME {spec:?} not applied)",
                i + 1
            )));
        }
    }
    let all: Vec<usize> = (0..cfg.members).collect();
    let connect = ens.connect_string(&all);

    let registers: Vec<String> = (0..cfg.keys).map(|k| format!("/h/k{k}")).collect();
    let parent = "/h/seq".to_string();
    let pair: Vec<String> = vec!["/h/p0".into(), "/h/p1".into()];
    let queue = "/h/q".to_string();
    let ephemeral_parent = "/h/eph".to_string();
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    let setup = workload::connect(
        &connect,
        cfg.session_timeout_ms,
        cfg.connect_timeout_ms,
        cfg.seed,
    )
    .await
    .map_err(RunError::Setup)?;
    ensure(&setup, "/h", b"", setup_deadline)
        .await
        .map_err(RunError::Setup)?;
    for k in &registers {
        ensure(&setup, k, b"0", setup_deadline)
            .await
            .map_err(RunError::Setup)?;
    }
    for k in &pair {
        ensure(&setup, k, b"0", setup_deadline)
            .await
            .map_err(RunError::Setup)?;
    }
    for p in [&parent, &queue, &ephemeral_parent] {
        ensure(&setup, p, b"", setup_deadline)
            .await
            .map_err(RunError::Setup)?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), setup.close()).await;

    let start = Instant::now();
    let rec = Recorder::new(start);
    let wl = Arc::new(WorkloadConfig {
        clients: cfg.clients,
        registers: registers.clone(),
        parent: parent.clone(),
        pair: pair.clone(),
        queue: queue.clone(),
        ephemeral_parent: ephemeral_parent.clone(),
        session_timeout_ms: cfg.session_timeout_ms,
        connect_timeout_ms: cfg.connect_timeout_ms,
        op_timeout_ms: cfg.op_timeout_ms,
        think_ms: cfg.think_ms,
        max_batch: cfg.max_batch,
        end_session_every: cfg.end_session_every,
        mix: cfg.mix,
        seed: cfg.seed,
    });
    let load_end = start + Duration::from_millis(cfg.duration_ms);
    let mut workers: Vec<_> = (0..cfg.clients)
        .map(|slot| {
            tokio::spawn(workload::worker(
                slot,
                connect.clone(),
                wl.clone(),
                rec.clone(),
                load_end,
            ))
        })
        .collect();
    let member_addrs: Vec<_> = ens.members.iter().map(|m| m.client).collect();
    workers.extend((0..cfg.ephemeral_clients).map(|slot| {
        tokio::spawn(workload::ephemeral_worker(
            slot,
            member_addrs.clone(),
            connect.clone(),
            wl.clone(),
            rec.clone(),
            load_end,
        ))
    }));

    let mut nemesis = Nemesis::new(
        NemesisConfig {
            seed: cfg.seed.rotate_left(17),
            ..cfg.nemesis.clone()
        },
        start,
    );
    let faults_end = load_end
        .checked_sub(Duration::from_millis(cfg.tail_ms))
        .unwrap_or(start);
    let faults = nemesis.run(&mut ens, faults_end).await;

    // Workers stop by themselves at `load_end`, plus a batch and a take (one request's timeout
    // each), a close (2 s) and one connect.
    let grace_ms = 2 * cfg.op_timeout_ms + cfg.connect_timeout_ms + 5_000;
    let worker_deadline = load_end + Duration::from_millis(grace_ms);
    let mut recorded = workload::Recorded::default();
    for w in workers {
        let left = worker_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w).await {
            Ok(Ok(r)) => recorded.extend(r),
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(RunError::Stuck(grace_ms)),
        }
    }

    // Heal everything and read the end state from every member.
    nemesis.heal_all(&mut ens);
    let mut liveness = Vec::new();
    let recover = Duration::from_millis(cfg.nemesis.recover_ms);
    if nemesis::wait_serving(&ens, recover).await.is_none() {
        liveness.push(Anomaly {
            checker: "liveness",
            kind: "no-leader-after-heal".into(),
            detail: format!("the ensemble did not serve within {recover:?} after the final heal"),
            ops: vec![],
        });
    }
    for f in &faults {
        if f.skipped.is_none() && f.recovered_ms.is_none() {
            liveness.push(Anomaly {
                checker: "liveness",
                kind: "no-recovery".into(),
                detail: format!(
                    "no leader served within {recover:?} after healing {} of {:?} at {:.1} s",
                    f.fault,
                    f.members,
                    f.healed_ns as f64 / 1e9
                ),
                ops: vec![],
            });
        }
    }
    let healed = Instant::now();
    // Take what is left in the queue (the queue checker wants every acknowledged item
    // consumed), then let the ensemble expire the sessions that were cut off: every workload
    // session has ended, so every ephemeral node must go.
    let final_read = Duration::from_millis(cfg.final_read_ms);
    let (drain_ops, drained) = workload::drain_queue(&connect, &queue, &rec, &wl, final_read).await;
    recorded.ops.extend(drain_ops);
    let expiry_wait = Duration::from_millis(2 * cfg.session_timeout_ms + 4_000);
    let ephemerals_cleared =
        workload::wait_no_children(&connect, &ephemeral_parent, &wl, expiry_wait)
            .await
            .map(|_| healed.elapsed());
    // Sync makes each member catch up before it is read; converged zxids are a courtesy that
    // makes a diverging member easier to read about in the logs.
    let _ = nemesis::wait_converged(&ens, Duration::from_secs(10)).await;
    let layout = workload::FinalLayout {
        registers: registers.clone(),
        parents: vec![parent.clone()],
        pairs: vec![pair.clone()],
        queues: vec![queue.clone()],
        ephemeral_parents: vec![ephemeral_parent.clone()],
    };
    let mut members = Vec::new();
    for i in 0..cfg.members {
        let addr = ens.connect_string(&[i]);
        let (state, final_ops) =
            workload::read_member(i, &addr, &layout, &rec, &wl, final_read).await;
        members.push(state);
        recorded.ops.extend(final_ops);
    }

    let mut history = History::new(
        registers,
        vec![parent],
        recorded.ops,
        Some(FinalState { members }),
    );
    history.pairs = layout.pairs;
    history.queues = layout.queues;
    history.ephemeral_parents = layout.ephemeral_parents;
    recorded.watches.sort_by_key(|w| w.seq);
    history.watches = recorded.watches;
    let checking = Instant::now();
    let mut report = checker::check_all(&history, cfg.budget);
    let check = checking.elapsed();
    report.anomalies.extend(liveness);

    let mut result = RunResult {
        seed: cfg.seed,
        history,
        faults,
        clock_skew: cfg.clock_skew.clone(),
        report,
        wall: wall.elapsed(),
        check,
        dumped: None,
        logs: None,
        drained,
        ephemerals_cleared,
    };
    let dump_to = match &cfg.dump {
        Some(p) => Some(p.clone()),
        None if !result.clean() => {
            Some(std::env::temp_dir().join(format!("rookery-history-{}.json", cfg.seed)))
        }
        None => None,
    };
    if let Some(path) = dump_to {
        let dump = Dump {
            seed: cfg.seed,
            config: format!("{cfg:?}"),
            history: &result.history,
            faults: &result.faults,
            anomalies: &result.report.anomalies,
        };
        if let Ok(json) = serde_json::to_vec(&dump) {
            if std::fs::write(&path, json).is_ok() {
                result.dumped = Some(path);
            }
        }
    }
    if !result.clean() {
        result.logs = Some(ens.logs());
    }
    drop(ens);
    Ok(result)
}
