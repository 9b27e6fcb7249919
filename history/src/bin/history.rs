//! `rookery-history`: long history-checking runs over a real ensemble with faults (what
//! `scripts/history.sh` drives). Each run prints its figures; the last lines total them. Exits
//! 1 when any run found an anomaly or could not decide a history, 2 when a run could not be
//! carried out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rookery_history::checker::{check_all, Budget};
use rookery_history::history::History;
use rookery_history::nemesis::{ClockSkew, Fault};
use rookery_history::run::{run, RunConfig};

#[derive(Parser, Debug)]
#[command(about = "History checks of a real rookery ensemble under faults")]
struct Args {
    /// Seconds of load per run.
    #[arg(long, env = "HISTORY_DURATION_S", default_value_t = 180)]
    duration_s: u64,
    /// The first run's seed (each later run adds one); random when not given.
    #[arg(long, env = "HISTORY_SEED")]
    seed: Option<u64>,
    /// Runs, one after the other.
    #[arg(long, env = "HISTORY_RUNS", default_value_t = 1)]
    runs: u64,
    #[arg(long, env = "HISTORY_MEMBERS", default_value_t = 3)]
    members: usize,
    #[arg(long, env = "HISTORY_CLIENTS", default_value_t = 4)]
    clients: usize,
    /// Registers.
    #[arg(long, env = "HISTORY_KEYS", default_value_t = 3)]
    keys: usize,
    /// Comma-separated fault kinds, `all` or `none`: kill-leader, kill-random, kill-all,
    /// pause-leader, partition-leader, partition-random, one-way-leader, one-way-random,
    /// partial-partition, slow-leader, stall-leader, stall-random, blackhole-leader,
    /// partition-minority, majorities-ring (five members or more), chaos-leader.
    #[arg(long, env = "HISTORY_FAULTS", default_value = "all")]
    faults: String,
    /// Members whose clocks run skewed for the whole run, under libfaketime (`apt-get install
    /// faketime`): `none`, `default` (member 1 `+1h x1.5`, member 2 `-30m x0.7`), or
    /// `<member>=<FAKETIME>,...` with members numbered from 1 and each value an offset and a
    /// rate, such as `3=+10m x1.2`.
    #[arg(long, env = "HISTORY_CLOCK_SKEW", default_value = "none")]
    clock_skew: String,
    /// Shortest and longest quiet time between faults, in ms (`min,max`).
    #[arg(long, env = "HISTORY_QUIET_MS", default_value = "1000,3000")]
    quiet_ms: String,
    /// Pause between a session's request batches, in ms.
    #[arg(long, env = "HISTORY_THINK_MS", default_value_t = 10)]
    think_ms: u64,
    /// Write each run's history as JSON into this directory (a run with anomalies is always
    /// written, to the temporary directory if not here).
    #[arg(long, env = "HISTORY_DUMP_DIR")]
    dump_dir: Option<PathBuf>,
    /// Check a history written by an earlier run (its JSON file) instead of running.
    #[arg(long)]
    check: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct Dumped {
    seed: u64,
    history: History,
}

/// Re-checks a dumped history: the same checkers, offline.
fn recheck(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let dumped: Dumped = serde_json::from_slice(&bytes).context("parsing the history")?;
    let started = std::time::Instant::now();
    let report = check_all(&dumped.history, Budget::default());
    println!(
        "seed {}: {} operations checked in {:.1} s",
        dumped.seed,
        dumped.history.ops.len(),
        started.elapsed().as_secs_f64()
    );
    for k in &report.registers {
        println!("  {} ({} ops): {:?}", k.key, k.ops, k.verdict);
    }
    println!(
        "acknowledged writes: {} checked, {} lost",
        report.acked_writes, report.acked_writes_lost
    );
    println!("watches: {:?}", report.watch);
    println!("queue: {:?}", report.queue);
    println!("ephemerals: {:?}", report.ephemeral);
    println!("pair reads checked for tearing: {}", report.pair_reads);
    for a in &report.anomalies {
        println!("[{}/{}] {}", a.checker, a.kind, a.detail);
    }
    println!("anomalies: {}", report.anomalies.len());
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn range(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once(',').context("expected min,max")?;
    Ok((a.trim().parse()?, b.trim().parse()?))
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Some(path) = &args.check {
        return recheck(path);
    }
    // The testkit looks for the server beside a test binary's deps/ folder; this binary sits in
    // the profile folder itself, beside `rookery`.
    if std::env::var_os("ROOKERY_BIN").is_none() {
        let exe = std::env::current_exe()?;
        if let Some(dir) = exe.parent() {
            std::env::set_var("ROOKERY_BIN", dir.join("rookery"));
        }
    }
    let faults = Fault::parse_list(&args.faults).map_err(anyhow::Error::msg)?;
    let quiet = range(&args.quiet_ms).context("--quiet-ms")?;
    let clock_skew = ClockSkew::parse(&args.clock_skew)
        .map_err(anyhow::Error::msg)
        .context("--clock-skew")?;
    let first_seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut failed_runs = Vec::new();
    let (mut histories, mut key_histories, mut ops, mut anomalies, mut lost, mut acked) =
        (0u64, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut faults_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Watches set / fired or caught up / checked against a reply showing the change; queue
    // items enqueued / consumed / lost; ephemerals created / left; sessions closed / cut off;
    // pair reads.
    let (mut watches, mut delivered, mut ordered) = (0usize, 0usize, 0usize);
    let (mut enqueued, mut consumed, mut items_lost) = (0usize, 0usize, 0usize);
    let (mut ephemerals, mut ephemerals_left, mut closed, mut cut_off, mut pair_reads) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut anomaly_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..args.runs {
        let seed = first_seed.wrapping_add(i);
        let mut cfg = RunConfig::new(seed, args.duration_s * 1000);
        cfg.members = args.members;
        cfg.clients = args.clients;
        cfg.keys = args.keys;
        cfg.nemesis.faults = faults.clone();
        cfg.nemesis.quiet_ms = quiet;
        cfg.clock_skew = clock_skew.clone();
        cfg.think_ms = args.think_ms;
        cfg.dump = args
            .dump_dir
            .as_ref()
            .map(|d| d.join(format!("rookery-history-{seed}.json")));
        println!(
            "run {}/{}: seed {seed}, {} s of load, {} members, {} clients, {} registers, faults \
             {}, clock skew {clock_skew}",
            i + 1,
            args.runs,
            args.duration_s,
            cfg.members,
            cfg.clients,
            cfg.keys,
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        let result = match rt.block_on(run(&cfg)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("run with seed {seed} could not be carried out: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        if result.clean() {
            println!("{}", result.summary());
        } else {
            println!("{}", result.failure_report());
            failed_runs.push(seed);
        }
        histories += 1;
        key_histories += result.report.registers.len()
            + result.history.parents.len()
            + result.history.queues.len();
        let r = &result.report;
        watches += r.watch.set;
        delivered += r.watch.fired + r.watch.catch_up;
        ordered += r.watch.ordered;
        enqueued += r.queue.enqueued;
        consumed += r.queue.consumed;
        items_lost += r.queue.lost;
        ephemerals += r.ephemeral.created;
        ephemerals_left += r.ephemeral.left;
        closed += r.ephemeral.closed;
        cut_off += r.ephemeral.cut_off;
        pair_reads += r.pair_reads;
        ops += result.history.ops.len();
        anomalies += result.report.anomalies.len();
        lost += result.report.acked_writes_lost;
        acked += result.report.acked_writes;
        for (k, n) in result.faults_by_kind() {
            *faults_by_kind.entry(k).or_default() += n;
        }
        for (k, n) in result.report.anomaly_counts() {
            *anomaly_kinds.entry(k).or_default() += n;
        }
        println!();
    }
    let fault_total: usize = faults_by_kind.values().sum();
    println!("== totals ==");
    println!(
        "histories checked: {histories} runs ({key_histories} per-key histories: registers, \
         the multi pair, sequential parents, queues)"
    );
    println!("operations: {ops}");
    println!(
        "faults injected: {fault_total} ({})",
        faults_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "anomalies: {anomalies}{}",
        if anomaly_kinds.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                anomaly_kinds
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    println!("acknowledged writes lost: {lost} of {acked}");
    println!(
        "watches: {watches} set, {delivered} delivered, order checked against {ordered} replies"
    );
    println!("queue: {enqueued} acknowledged items, {consumed} consumed, {items_lost} lost");
    println!(
        "ephemerals: {ephemerals} created, {ephemerals_left} left at the end; sessions closed \
         {closed}, cut off {cut_off}"
    );
    println!("pair reads checked for tearing: {pair_reads}");
    if failed_runs.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("runs with findings (seeds): {failed_runs:?}");
        Ok(ExitCode::from(1))
    }
}
