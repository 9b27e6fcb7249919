//! The `rookery` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rookery_server::Config;
use tokio_util::sync::CancellationToken;

mod bench_cli;
mod job;
mod probe;
mod recipe_cli;
mod sidecar_cli;

/// Rookery: a ZooKeeper-compatible coordination service.
#[derive(Parser)]
#[command(
    version,
    about = "Rookery: a ZooKeeper-compatible coordination service in one binary"
)]
struct Cli {
    /// How log lines are written to stderr: `text` (coloured on a terminal), or `json` (one
    /// object per line with the event's and its spans' fields, for a log pipeline).
    #[arg(long, global = true, env = "ROOKERY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server (standalone on 127.0.0.1:2181 with data in ./rookery-data by default).
    Server {
        /// A zoo.cfg-style configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// This ensemble member's id, instead of the `myid` file in dataDir; it must be one of
        /// the configuration's `server.N` lines.
        #[arg(long, env = "ROOKERY_MYID", value_name = "N")]
        myid: Option<u64>,
    },
    /// Benchmark any ZooKeeper-protocol server (`bench --server HOST:PORT`), or start Apache
    /// ZooKeeper and Rookery and compare them (`bench compare`).
    #[command(args_conflicts_with_subcommands = true)]
    Bench(Box<bench_cli::BenchCmd>),
    /// Run the sidecar: register the local service once healthy, watch the registry, and
    /// proxy HTTP to live instances (`sidecar --service NAME --app IP:PORT`, or a TOML file).
    Sidecar(Box<sidecar_cli::SidecarCmd>),
    /// Run a command while holding a distributed lock, or hold it until stdin closes
    /// (`lock PATH [--timeout D] [-- COMMAND [ARGS...]]`).
    Lock(recipe_cli::LockCmd),
    /// Join a leader election and print each change of leader; run a command while leader
    /// (`elect PATH PROPOSAL [-- COMMAND [ARGS...]]`).
    Elect(recipe_cli::ElectCmd),
    /// Check a server (`probe HOST:PORT`: ruok) or an HTTP endpoint (`probe http://...`: 2xx),
    /// as a container's health check; exit status 0 when healthy.
    Probe(probe::ProbeCmd),
    /// An interactive ZooKeeper shell with zkCli.sh's commands, or a script runner
    /// (`cli [--server HOST:PORT] [-c 'ls /'] [--json]`).
    Cli(Box<rookery_cli::Args>),
    /// Print and verify log segments, snapshots or a whole data directory.
    #[command(args_conflicts_with_subcommands = true)]
    Inspect {
        #[command(subcommand)]
        what: Option<Inspect>,
        /// A data directory: say which snapshot and log range recovery would use.
        dir: Option<PathBuf>,
        /// The log directory, if it is not the data directory (dataLogDir).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Inspect {
    /// Print every record of a log segment and verify its checksums.
    Log {
        /// The segment file (log.<zxid>).
        path: PathBuf,
    },
    /// Print a snapshot's nodes and sessions and verify its checksum.
    Snapshot {
        /// The snapshot file (snapshot.<zxid>).
        path: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    // zkCli's `-server host:port` and `-timeout ms` become clap's `--server` and `--timeout`.
    let cli = Cli::parse_from(rookery_cli::zkcli_args(std::env::args_os()));
    // The benchmark opens thousands of sessions: the client's per-session lines are noise there.
    let default_filter = match cli.command {
        Command::Bench(_) => "info,rookery_client=warn",
        // A script's stderr is for what happened to its lock or election, not per-session lines.
        Command::Lock(_) | Command::Elect(_) => "info,rookery_client=warn",
        // A shell's terminal is for its commands' output, not per-session lines.
        Command::Cli(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs
            .json()
            // Every span the event is in, outermost first (conn, peer, ...).
            .with_span_list(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => logs
            // Colour only for a person at a terminal, not in files, pipes or container logs.
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init(),
    }
    match cli.command {
        Command::Bench(cmd) => bench_cli::run(*cmd),
        Command::Sidecar(cmd) => std::process::exit(sidecar_cli::run(*cmd)?),
        Command::Probe(cmd) => std::process::exit(probe::run(cmd)),
        Command::Lock(cmd) => std::process::exit(recipe_cli::lock(cmd)),
        Command::Elect(cmd) => std::process::exit(recipe_cli::elect(cmd)),
        Command::Cli(args) => std::process::exit(rookery_cli::run(*args)),
        Command::Inspect { what, dir, log_dir } => {
            let backend = rookery_server::storage::FileBackend;
            let mut out = String::new();
            let result = match (what, dir) {
                (Some(Inspect::Log { path }), _) => {
                    rookery_server::inspect::log(&backend, &path, &mut out)
                }
                (Some(Inspect::Snapshot { path }), _) => {
                    rookery_server::inspect::snapshot(&backend, &path, &mut out)
                }
                (None, Some(dir)) => {
                    let log_dir = log_dir.unwrap_or_else(|| dir.clone());
                    rookery_server::inspect::dir(&backend, &dir, &log_dir, &mut out)
                }
                (None, None) => {
                    anyhow::bail!("give a data directory, or `log PATH` or `snapshot PATH`")
                }
            };
            print!("{out}");
            result?;
            Ok(())
        }
        Command::Server { config, myid } => {
            let mut cfg = match &config {
                Some(path) => Config::from_file(path)?,
                None => Config::default(),
            };
            match myid {
                Some(id) => cfg.set_myid(id)?,
                None => cfg.load_myid()?,
            }
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?
                .block_on(serve(cfg))
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = if cfg.plain_client_port {
        let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the client port {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, data_dir = %cfg.data_dir.display(), "rookery server listening");
        Some(listener)
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    rookery_server::run(cfg, listener, shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
