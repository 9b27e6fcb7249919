//! `rookery bench` and `rookery bench compare`: arguments, output files, and stopping cleanly
//! (every server the comparison started is killed on Ctrl-C or SIGTERM).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use rookery_bench::compare::{self, CompareOptions};
use rookery_bench::process::{Flavor, Settings};
use rookery_bench::{self as bench, parse_duration, report, Options, Report, Workload};

/// `rookery bench`: the arguments after the word.
#[derive(Args)]
pub(crate) struct BenchCmd {
    #[command(subcommand)]
    sub: Option<BenchSub>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Subcommand)]
enum BenchSub {
    /// Start Apache ZooKeeper 3.8 and Rookery with the same configuration, run the same
    /// workloads against both, and print the side-by-side table with ratios.
    Compare(CompareArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// The server's connect string (host:port[,host:port...][/chroot]).
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// The server's process id, when it runs on this machine: its RSS (from /proc) is reported
    /// after each workload. Several (comma-separated) are summed.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct LoadArgs {
    /// Workloads to run, comma-separated: create, set, get, mixed, watch, churn, expiry, tree.
    /// Default: all but tree for `bench`, all for `bench compare`.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Sessions issuing requests (and opening/closing at once in churn).
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Requests each session keeps in flight (pipelining).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Measured time per workload (500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time per workload before measuring starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Percentage of reads in the mixed workload.
    #[arg(long, default_value_t = 90)]
    read_pct: u8,
    /// Nodes in the key set of set, get and mixed.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Sessions watching one node in the watch workload.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Sessions killed at once per expiry round.
    #[arg(long, default_value_t = 10)]
    expiry_sessions: usize,
    /// Session timeout asked for by the expiry workload (the server clamps it to 2 to 20
    /// ticks).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Nodes loaded by the tree workload.
    #[arg(long, default_value_t = 1_000_000)]
    tree_nodes: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl LoadArgs {
    fn options(&self, server_pids: Vec<u32>) -> Options {
        Options {
            sessions: self.sessions,
            in_flight: self.in_flight,
            duration: self.duration,
            warmup: self.warmup,
            value_size: self.value_size,
            read_pct: self.read_pct,
            keys: self.keys,
            watchers: self.watchers,
            expiry_sessions: self.expiry_sessions,
            session_timeout: self.session_timeout,
            tree_nodes: self.tree_nodes,
            server_pids,
            ..Options::default()
        }
    }
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Draw the ratios as an SVG bar chart to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Compare 3-member ensembles instead of standalone servers (member N on 127.0.0.N; the
    /// clients connect to all three), and time the failover after the leader is killed.
    #[arg(long)]
    ensemble: bool,
    /// With --ensemble: fresh ensembles per server whose leader is killed with SIGKILL under a
    /// steady writer, to time the failover; the median is compared (0: skip).
    #[arg(long, default_value_t = 3)]
    failover_runs: usize,
    /// Which servers to run, comma-separated (one alone gives its figures without ratios).
    #[arg(long, value_delimiter = ',', default_value = "rookery,zookeeper")]
    servers: Vec<Flavor>,
    /// Fresh starts whose start-up time is measured; the median is compared.
    #[arg(long, default_value_t = 3)]
    startup_runs: usize,
    /// Runs of each timed workload per server, alternating servers; the median run is reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Before each run, wait up to this long for the rest of the machine to be idle (0: do not
    /// wait). Each result records how busy the machine was before it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    quiet_wait: Duration,
    /// tickTime for both servers, in ms.
    #[arg(long, default_value_t = 2000)]
    tick_time: u64,
    /// The rookery binary to start (default: this one).
    #[arg(long)]
    rookery_bin: Option<PathBuf>,
    /// The java binary.
    #[arg(long, default_value = "java")]
    java: PathBuf,
    /// ZooKeeper's class path (the Debian package's jars by default).
    #[arg(
        long,
        default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
    )]
    zookeeper_classpath: String,
    /// ZooKeeper's heap limit in MiB (-Xmx; zkEnv.sh's default is 1000).
    #[arg(long, default_value_t = 1000)]
    zookeeper_heap_mb: u32,
    /// Where the servers' data directories go (default: the temp directory). Use a disk, not
    /// tmpfs: fsync is part of what is measured.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Runs `rookery bench ...`.
pub(crate) fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let command = command_line();
    runtime.block_on(async {
        let work = async {
            match cmd.sub {
                Some(BenchSub::Compare(args)) => run_compare(args, command).await,
                None => run_bench(cmd.target).await,
            }
        };
        // Dropping `work` on a signal drops every server process it started, which kills them.
        tokio::select! {
            r = work => r,
            () = crate::wait_for_signal() => anyhow::bail!("interrupted; every server started was stopped"),
        }
    })
}

async fn run_bench(args: TargetArgs) -> anyhow::Result<()> {
    let opts = args.load.options(args.server_pid.clone());
    let workloads = if args.load.workloads.is_empty() {
        Workload::DEFAULT.to_vec()
    } else {
        args.load.workloads.clone()
    };
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let results = bench::run(&args.server, &workloads, &opts).await?;
    let report = Report {
        server: args.server.clone(),
        unix_time,
        options: opts,
        results,
    };
    print!("{}", report::bench_report(&report));
    if let Some(path) = &args.load.json {
        write_file(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

async fn run_compare(args: CompareArgs, command: String) -> anyhow::Result<()> {
    let rookery_bin = match args.rookery_bin {
        Some(p) => p,
        None => std::env::current_exe().context("finding this rookery binary")?,
    };
    let opts = CompareOptions {
        bench: args.load.options(Vec::new()),
        workloads: if args.load.workloads.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.load.workloads.clone()
        },
        servers: args.servers,
        ensemble: args.ensemble,
        startup_runs: args.startup_runs,
        failover_runs: args.failover_runs,
        rounds: args.rounds,
        quiet_wait: args.quiet_wait,
        settings: Settings {
            tick_time_ms: args.tick_time,
            rookery_bin,
            java: args.java,
            zookeeper_classpath: args.zookeeper_classpath,
            zookeeper_heap_mb: args.zookeeper_heap_mb,
            work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
            ready_timeout: Duration::from_secs(60),
        },
    };
    let mut c = compare::compare(&opts).await?;
    c.command = command;
    print!("{}", report::comparison_report(&c));
    if let Some(path) = &args.load.json {
        write_file(path, &serde_json::to_string_pretty(&c)?)?;
    }
    if let Some(path) = &args.svg {
        if c.rows.is_empty() {
            tracing::warn!("no ratios to draw: the SVG needs both servers");
        } else {
            write_file(path, &report::svg(&c))?;
        }
    }
    let failed: Vec<String> = c
        .sides
        .iter()
        .filter(|s| s.failover.iter().any(|r| r.error.is_some()))
        .map(|s| s.flavor.to_string())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "failover failed for {} (see FAILOVER FAILED above)",
            failed.join(" and ")
        );
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(file = %path.display(), "written");
    Ok(())
}

/// The command line, with the binary as `rookery`.
fn command_line() -> String {
    let mut args = std::env::args();
    let _ = args.next();
    std::iter::once("rookery".to_owned())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
