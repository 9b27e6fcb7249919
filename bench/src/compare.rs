//! `rookery bench compare`: the same workloads against Apache ZooKeeper and Rookery, each
//! started by the harness with the same configuration, in one run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::failover::{self, FailoverRun};
use super::process::{filesystem_type, Cluster, Flavor, Settings};
use super::{BenchError, Options, Workload, WorkloadResult};

/// How long a freshly started server is left alone before its idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// What to compare, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// The workload knobs (`server_pids` is filled in per server).
    pub bench: Options,
    /// The workloads, run in [`Workload::ALL`] order.
    pub workloads: Vec<Workload>,
    /// Which servers (both for a comparison; one alone gives its figures without ratios).
    pub servers: Vec<Flavor>,
    /// A 3-member ensemble of each instead of a standalone server.
    pub ensemble: bool,
    /// Fresh starts whose start-up time is measured (the median is compared).
    pub startup_runs: usize,
    /// With `ensemble`: fresh ensembles per server whose leader is killed to time the failover
    /// (the median is compared); zero skips it.
    pub failover_runs: usize,
    /// Runs of each timed workload per server, alternating servers; the run with the median
    /// throughput (for expiry: the median p50) is the one reported. More rounds, less noise.
    pub rounds: usize,
    /// Before each run, wait up to this long for the rest of the machine to be idle (below a
    /// quarter of a core busy over one second); zero does not wait.
    pub quiet_wait: Duration,
    /// How to start the servers.
    pub settings: Settings,
}

/// The outcome of a comparison, as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The command line that produced it (filled in by the binary).
    pub command: String,
    /// Seconds since the Unix epoch at the start.
    pub unix_time: u64,
    /// `standalone` or `ensemble of 3`.
    pub topology: String,
    /// The machine.
    pub machine: Machine,
    /// How the servers were started.
    pub settings: Settings,
    /// The zoo.cfg lines both servers got.
    pub shared_config: Vec<(String, String)>,
    /// The workload knobs.
    pub options: Options,
    /// Each server's figures.
    pub sides: Vec<Side>,
    /// The side-by-side rows (empty unless both servers ran).
    pub rows: Vec<Row>,
    /// The 1-minute load average when the run started (other work on the machine adds noise).
    pub load_average: Option<f64>,
    /// Runs per timed workload and server (the median is reported).
    pub rounds: usize,
}

/// The machine the comparison ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Available cores.
    pub cores: usize,
    /// `MemTotal` in KiB.
    pub mem_total_kib: Option<u64>,
    /// `uname -r` equivalent.
    pub kernel: Option<String>,
    /// The file system type of the data directories.
    pub filesystem: Option<String>,
}

/// One server's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Which server.
    pub flavor: Flavor,
    /// Its `srvr` version line.
    pub version: Option<String>,
    /// Spawn until `ruok` answered, per fresh start, in ms.
    pub startup_ms: Vec<f64>,
    /// Spawn until a session opened, per fresh start, in ms.
    pub ready_ms: Vec<f64>,
    /// RSS right after start-up, in KiB.
    pub idle_rss_kib: Option<u64>,
    /// One result per workload.
    pub results: Vec<WorkloadResult>,
    /// Ensembles only: each failover run (leader killed), in run order.
    #[serde(default)]
    pub failover: Vec<FailoverRun>,
}

impl Side {
    /// The median start-up time in ms.
    pub fn startup_median_ms(&self) -> Option<f64> {
        median(&self.startup_ms)
    }

    /// The median time from killing the leader to the first acknowledged write, over the
    /// failover runs that finished.
    pub fn failover_write_median_ms(&self) -> Option<f64> {
        failover::median_of(&self.failover, |r| r.write_ms)
    }

    /// The median time from killing the leader until a survivor reports `Mode: leader`.
    pub fn failover_leader_median_ms(&self) -> Option<f64> {
        failover::median_of(&self.failover, |r| r.leader_ms)
    }

    /// The result of one workload.
    pub fn result(&self, w: Workload) -> Option<&WorkloadResult> {
        self.results.iter().find(|r| r.workload == w)
    }
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Throughput.
    OpsPerSec,
    /// Median latency.
    P50,
    /// 90th percentile latency.
    P90,
    /// 99th percentile latency.
    P99,
    /// Maximum latency.
    Max,
    /// RSS after the workload.
    Rss,
    /// RSS right after start-up.
    IdleRss,
    /// Start-up until `ruok` is answered.
    Startup,
    /// Server CPU time (user + system) per operation: the server's efficiency, which the load
    /// generator sharing the machine does not blur.
    ServerCpu,
    /// Ensembles: from killing the leader (SIGKILL) until a client connected to every member
    /// has a write acknowledged again.
    FailoverWrite,
    /// Ensembles: from killing the leader until a surviving member's `srvr` says it leads.
    FailoverLeader,
}

impl Metric {
    /// Whether more is better (throughput), or less (everything else).
    pub fn higher_is_better(self) -> bool {
        self == Metric::OpsPerSec
    }

    /// Its label and unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops/s",
            Metric::P50 => "p50 ms",
            Metric::P90 => "p90 ms",
            Metric::P99 => "p99 ms",
            Metric::Max => "max ms",
            Metric::Rss => "RSS MiB",
            Metric::IdleRss => "idle RSS MiB",
            Metric::Startup => "start-up ms",
            Metric::ServerCpu => "server CPU µs/op",
            Metric::FailoverWrite => "failover: kill to first write ms",
            Metric::FailoverLeader => "failover: kill to new leader ms",
        }
    }
}

/// The ratio a row should reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// Rookery / ZooKeeper must be at least this (throughput) or at most this (the rest).
    pub ratio: f64,
    /// Whether the issue sets this target (otherwise it is parity: at least as good).
    pub target: bool,
}

/// One side-by-side row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The workload, or none for server-wide rows (start-up, idle RSS).
    pub workload: Option<Workload>,
    /// What.
    pub metric: Metric,
    /// Rookery's figure, in the metric's unit (ops/s, ms, MiB).
    pub rookery: f64,
    /// ZooKeeper's.
    pub zookeeper: f64,
    /// Rookery / ZooKeeper.
    pub ratio: f64,
    /// How many times better Rookery is (the ratio, inverted where less is better).
    pub advantage: f64,
    /// The ratio to reach; `None` for informational rows (expiry time is set by the session
    /// timeout, not by speed).
    pub goal: Option<Goal>,
    /// Whether the goal is met.
    pub met: Option<bool>,
}

impl Row {
    /// `create ops/s`, `start-up ms`, ...
    pub fn label(&self) -> String {
        match self.workload {
            Some(w) => format!("{w} {}", self.metric.label()),
            None => self.metric.label().to_owned(),
        }
    }
}

/// Runs the comparison.
///
/// # Errors
/// [`BenchError::ServerStart`] if a server does not start; any error of [`super::run`]. A
/// failover run that does not finish is not an error here: it is recorded in its
/// [`FailoverRun::error`].
///
/// # Cancellation safety
/// Dropping the future kills every server it started.
pub async fn compare(opts: &CompareOptions) -> Result<Comparison, BenchError> {
    opts.bench.validate()?;
    if opts.servers.is_empty() {
        return Err(BenchError::InvalidOption("no server to run".into()));
    }
    if opts.rounds == 0 || opts.rounds > 100 {
        return Err(BenchError::InvalidOption(
            "--rounds must be 1 to 100".into(),
        ));
    }
    if opts.startup_runs == 0 || opts.startup_runs > 100 {
        return Err(BenchError::InvalidOption(
            "--startup-runs must be 1 to 100".into(),
        ));
    }
    if opts.failover_runs > 100 {
        return Err(BenchError::InvalidOption(
            "--failover-runs must be 0 to 100".into(),
        ));
    }
    let size = if opts.ensemble { 3 } else { 1 };
    let mut servers = opts.servers.clone();
    servers.sort();
    servers.dedup();
    let mut workloads = opts.workloads.clone();
    workloads.sort();
    workloads.dedup();
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::create_dir_all(&opts.settings.work_dir)
        .map_err(|e| BenchError::io(format!("creating {}", opts.settings.work_dir.display()), e))?;
    let filesystem = filesystem_type(&opts.settings.work_dir);
    let load = load_average();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(l) = load.filter(|l| *l > cores as f64 * 0.5) {
        tracing::warn!(
            load = l,
            cores,
            "the machine is busy: other work competes for CPU and disk, and the figures will be \
             noisy (ratios suffer less than absolute numbers)"
        );
    }
    if let Some(fs) = filesystem
        .as_deref()
        .filter(|t| matches!(*t, "tmpfs" | "ramfs"))
    {
        tracing::warn!(
            dir = %opts.settings.work_dir.display(),
            "the data directories are on {fs}: fsync costs nothing there, so durable writes are \
             not measured; give --work-dir on a disk"
        );
    }

    let mut sides: Vec<Side> = servers
        .iter()
        .map(|&flavor| Side {
            flavor,
            version: None,
            startup_ms: Vec::new(),
            ready_ms: Vec::new(),
            idle_rss_kib: None,
            results: Vec::new(),
            failover: Vec::new(),
        })
        .collect();

    for run in 0..opts.startup_runs {
        for side in &mut sides {
            tracing::info!(server = %side.flavor, run, "timing start-up");
            let c = Cluster::start(side.flavor, size, &opts.settings).await?;
            side.startup_ms.push(ms(c.startup));
            side.ready_ms.push(ms(c.ready));
        }
    }

    let timed: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| *w != Workload::Tree)
        .collect();
    if !timed.is_empty() {
        let mut clusters = Vec::with_capacity(sides.len());
        for side in &mut sides {
            let c = Cluster::start(side.flavor, size, &opts.settings).await?;
            side.version = c.version().await;
            tokio::time::sleep(IDLE_SETTLE).await;
            side.idle_rss_kib = Some(c.rss()?.rss_kib);
            clusters.push(c);
        }
        for (i, &w) in timed.iter().enumerate() {
            let mut runs: Vec<Vec<WorkloadResult>> = vec![Vec::new(); sides.len()];
            for round in 0..opts.rounds {
                // Alternate which server goes first, so that drift on a noisy machine is shared.
                let mut order: Vec<usize> = (0..sides.len()).collect();
                if (i + round) % 2 == 1 {
                    order.reverse();
                }
                for k in order {
                    let c = &mut clusters[k];
                    let quiet = wait_for_quiet(opts.quiet_wait).await;
                    tracing::info!(server = %c.flavor, workload = %w, round, "measuring");
                    let bench = Options {
                        server_pids: c.pids(),
                        ..opts.bench.clone()
                    };
                    let mut r = super::run(&c.connect_string(), &[w], &bench)
                        .await
                        .map_err(|e| c.failed(e))?;
                    quiet.note(&mut r);
                    runs[k].append(&mut r);
                }
            }
            for (k, side_runs) in runs.into_iter().enumerate() {
                if let Some(r) = median_run(side_runs) {
                    sides[k].results.push(r);
                }
            }
        }
    }

    if workloads.contains(&Workload::Tree) {
        // A fresh server each, so that the RSS is the tree's alone.
        for side in &mut sides {
            let mut c = Cluster::start(side.flavor, size, &opts.settings).await?;
            if side.version.is_none() {
                side.version = c.version().await;
            }
            let quiet = wait_for_quiet(opts.quiet_wait).await;
            tracing::info!(server = %c.flavor, nodes = opts.bench.tree_nodes, "loading the tree");
            let bench = Options {
                server_pids: c.pids(),
                ..opts.bench.clone()
            };
            let mut r = super::run(&c.connect_string(), &[Workload::Tree], &bench)
                .await
                .map_err(|e| c.failed(e))?;
            quiet.note(&mut r);
            side.results.append(&mut r);
        }
    }

    if opts.ensemble {
        // A fresh ensemble per run: after the kill, two members are left.
        for run in 0..opts.failover_runs {
            let mut order: Vec<usize> = (0..sides.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for k in order {
                let side = &mut sides[k];
                let mut c = Cluster::start(side.flavor, size, &opts.settings).await?;
                if side.version.is_none() {
                    side.version = c.version().await;
                }
                let quiet = wait_for_quiet(opts.quiet_wait).await;
                tracing::info!(server = %c.flavor, run, "killing the leader to time the failover");
                let r = failover::measure(&mut c, &opts.bench.root).await?;
                match &r.error {
                    None => tracing::info!(
                        server = %c.flavor,
                        run,
                        write_ms = r.write_ms,
                        leader_ms = r.leader_ms,
                        other_busy_cores_before = quiet.busy_cores,
                        "failover"
                    ),
                    Some(e) => tracing::error!(server = %c.flavor, run, "failover failed: {e}"),
                }
                side.failover.push(r);
            }
        }
    }

    let rows = match (
        sides.iter().find(|s| s.flavor == Flavor::Rookery),
        sides.iter().find(|s| s.flavor == Flavor::Zookeeper),
    ) {
        (Some(r), Some(z)) => rows(r, z, &workloads),
        _ => Vec::new(),
    };
    Ok(Comparison {
        command: String::new(),
        unix_time,
        topology: if opts.ensemble {
            "ensemble of 3".into()
        } else {
            "standalone".into()
        },
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_kib: std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            }),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            filesystem,
        },
        shared_config: {
            let mut cfg = opts.settings.shared_config();
            if opts.ensemble {
                cfg.extend(Settings::ensemble_config());
            }
            cfg
        },
        settings: opts.settings.clone(),
        options: opts.bench.clone(),
        sides,
        rows,
        load_average: load,
        rounds: opts.rounds,
    })
}

/// The run with the median throughput (the median p50 where there is no throughput), with
/// the number of runs and every run's figure in `extra`.
fn median_run(mut runs: Vec<WorkloadResult>) -> Option<WorkloadResult> {
    let key = |r: &WorkloadResult| r.ops_per_sec.unwrap_or(-(r.latency.p50_us as f64));
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let n = runs.len();
    let figures: Vec<f64> = runs.iter().map(|r| key(r).abs()).collect();
    let mut chosen = runs.into_iter().nth(n / 2)?;
    if n > 1 {
        chosen.extra.insert("rounds_run".into(), n as f64);
        if let (Some(lo), Some(hi)) = (figures.first(), figures.last()) {
            let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
            chosen.extra.insert("round_min".into(), lo);
            chosen.extra.insert("round_max".into(), hi);
        }
    }
    Some(chosen)
}

/// Busy and total jiffies of the whole machine, from the first line of `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// How busy the machine was just before a run, and how long the harness waited for it to calm
/// down.
#[derive(Debug, Clone, Copy, Default)]
struct Quiet {
    busy_cores: Option<f64>,
    waited: Duration,
}

impl Quiet {
    fn note(&self, results: &mut [WorkloadResult]) {
        for r in results {
            if let Some(b) = self.busy_cores {
                r.extra.insert("other_busy_cores_before".into(), b);
            }
            r.extra
                .insert("quiet_wait_ms".into(), self.waited.as_millis() as f64);
        }
    }
}

/// Samples how many cores the rest of the machine keeps busy (one second at a time; nothing of
/// the benchmark runs meanwhile) until it is under a quarter of a core, for at most `max`.
async fn wait_for_quiet(max: Duration) -> Quiet {
    const SAMPLE: Duration = Duration::from_secs(1);
    const QUIET_CORES: f64 = 0.25;
    if max.is_zero() {
        return Quiet::default();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let started = std::time::Instant::now();
    let mut quiet = Quiet::default();
    // Bounded: each turn sleeps a second, and the loop ends once `max` has passed.
    for _ in 0..=max.as_secs() + 1 {
        let Some((b0, t0)) = machine_jiffies() else {
            return quiet;
        };
        tokio::time::sleep(SAMPLE).await;
        let Some((b1, t1)) = machine_jiffies() else {
            return quiet;
        };
        let busy = if t1 > t0 {
            (b1 - b0) as f64 / (t1 - t0) as f64 * cores
        } else {
            0.0
        };
        quiet.busy_cores = Some(busy);
        if busy < QUIET_CORES || started.elapsed() >= max {
            break;
        }
        if quiet.waited.is_zero() {
            tracing::info!(
                busy_cores = format_args!("{busy:.2}"),
                "waiting for the machine to be idle before the next run"
            );
        }
        quiet.waited = started.elapsed();
    }
    quiet
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    })
}

/// The goal of a row: the targets, parity elsewhere, none for expiry.
pub fn goal_of(workload: Option<Workload>, metric: Metric) -> Option<Goal> {
    let target = |ratio| {
        Some(Goal {
            ratio,
            target: true,
        })
    };
    let parity = Some(Goal {
        ratio: 1.0,
        target: false,
    });
    match (workload, metric) {
        (Some(Workload::Expiry), _) => None,
        (
            Some(Workload::Create | Workload::Set | Workload::Get | Workload::Mixed),
            Metric::OpsPerSec,
        ) => target(2.0),
        (Some(Workload::Create | Workload::Set | Workload::Get | Workload::Mixed), Metric::P99) => {
            target(0.5)
        }
        (Some(Workload::Tree), Metric::Rss) => target(0.2),
        (None, Metric::Startup) => target(0.1),
        _ => parity,
    }
}

/// Builds a row from the two figures.
pub fn row(workload: Option<Workload>, metric: Metric, rookery: f64, zookeeper: f64) -> Row {
    let ratio = if zookeeper > 0.0 {
        rookery / zookeeper
    } else if rookery > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let advantage = if metric.higher_is_better() {
        ratio
    } else if ratio > 0.0 {
        1.0 / ratio
    } else {
        f64::INFINITY
    };
    let goal = goal_of(workload, metric);
    let met = goal.map(|g| {
        if metric.higher_is_better() {
            ratio >= g.ratio
        } else {
            ratio <= g.ratio
        }
    });
    Row {
        workload,
        metric,
        rookery,
        zookeeper,
        ratio,
        advantage,
        goal,
        met,
    }
}

fn rows(r: &Side, z: &Side, workloads: &[Workload]) -> Vec<Row> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (r.startup_median_ms(), z.startup_median_ms()) {
        out.push(row(None, Metric::Startup, a, b));
    }
    if let (Some(a), Some(b)) = (r.idle_rss_kib, z.idle_rss_kib) {
        out.push(row(None, Metric::IdleRss, mib(a), mib(b)));
    }
    if let (Some(a), Some(b)) = (r.failover_write_median_ms(), z.failover_write_median_ms()) {
        out.push(row(None, Metric::FailoverWrite, a, b));
    }
    if let (Some(a), Some(b)) = (r.failover_leader_median_ms(), z.failover_leader_median_ms()) {
        out.push(row(None, Metric::FailoverLeader, a, b));
    }
    for &w in workloads {
        let (Some(a), Some(b)) = (r.result(w), z.result(w)) else {
            continue;
        };
        if let (Some(x), Some(y)) = (a.ops_per_sec, b.ops_per_sec) {
            out.push(row(Some(w), Metric::OpsPerSec, x, y));
        }
        let us = |v: u64| v as f64 / 1000.0;
        out.push(row(
            Some(w),
            Metric::P50,
            us(a.latency.p50_us),
            us(b.latency.p50_us),
        ));
        out.push(row(
            Some(w),
            Metric::P90,
            us(a.latency.p90_us),
            us(b.latency.p90_us),
        ));
        out.push(row(
            Some(w),
            Metric::P99,
            us(a.latency.p99_us),
            us(b.latency.p99_us),
        ));
        out.push(row(
            Some(w),
            Metric::Max,
            us(a.latency.max_us),
            us(b.latency.max_us),
        ));
        if let (Some(x), Some(y)) = (
            a.extra.get("server_cpu_us_per_op"),
            b.extra.get("server_cpu_us_per_op"),
        ) {
            out.push(row(Some(w), Metric::ServerCpu, *x, *y));
        }
        if w == Workload::Tree {
            if let (Some(x), Some(y)) = (a.rss_kib, b.rss_kib) {
                out.push(row(Some(w), Metric::Rss, mib(x), mib(y)));
            }
        }
    }
    out
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_goals_and_verdicts() {
        let r = row(
            Some(Workload::Create),
            Metric::OpsPerSec,
            30_000.0,
            10_000.0,
        );
        assert_eq!(r.ratio, 3.0);
        assert_eq!(r.advantage, 3.0);
        assert_eq!(r.goal.unwrap().ratio, 2.0);
        assert_eq!(r.met, Some(true));
        assert_eq!(r.label(), "create ops/s");

        let r = row(Some(Workload::Get), Metric::P99, 0.8, 1.0);
        assert!((r.ratio - 0.8).abs() < 1e-9);
        assert!((r.advantage - 1.25).abs() < 1e-9);
        assert_eq!(r.met, Some(false), "the p99 target is 0.5x");

        let r = row(Some(Workload::Watch), Metric::P99, 0.8, 1.0);
        assert_eq!(r.met, Some(true), "parity elsewhere");

        let r = row(Some(Workload::Expiry), Metric::P50, 4100.0, 4900.0);
        assert_eq!((r.goal, r.met), (None, None));

        let r = row(None, Metric::Startup, 5.0, 500.0);
        assert_eq!(r.met, Some(true));
        assert_eq!(r.label(), "start-up ms");

        assert_eq!(row(None, Metric::Startup, 0.0, 0.0).ratio, 1.0);
    }

    #[test]
    fn the_median_run_is_reported() {
        let run = |ops: f64| WorkloadResult {
            workload: Workload::Get,
            ops: ops as u64,
            seconds: 1.0,
            ops_per_sec: Some(ops),
            latency: Default::default(),
            rss_kib: None,
            extra: Default::default(),
        };
        let r = median_run(vec![run(30.0), run(10.0), run(20.0)]).unwrap();
        assert_eq!(r.ops_per_sec, Some(20.0));
        assert_eq!(r.extra["rounds_run"], 3.0);
        assert_eq!((r.extra["round_min"], r.extra["round_max"]), (10.0, 30.0));
        let one = median_run(vec![run(5.0)]).unwrap();
        assert!(one.extra.is_empty());
        assert!(median_run(vec![]).is_none());
    }

    #[test]
    fn machine_jiffies_read_and_quiet_wait_is_bounded() {
        let (busy, total) = machine_jiffies().unwrap();
        assert!(busy <= total && total > 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let q = rt.block_on(wait_for_quiet(Duration::ZERO));
        assert!(q.busy_cores.is_none() && q.waited.is_zero());
        let started = std::time::Instant::now();
        let q = rt.block_on(wait_for_quiet(Duration::from_secs(1)));
        assert!(q.busy_cores.is_some());
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
