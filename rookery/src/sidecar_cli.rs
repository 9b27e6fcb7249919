//! `rookery sidecar`: flags and `ROOKERY_SIDECAR_*` variables over a TOML file, the runtime,
//! and SIGTERM/SIGINT as the start of the lame-duck shutdown.
//!
//! With a COMMAND (after `--`) the sidecar also starts the service and supervises it, so that
//! one container (one network namespace, one PID 1) holds both and scales as one: the service
//! starts first (it is registered once its health checks pass); on SIGTERM the sidecar's lame
//! duck runs to its end (deregistered, the removal propagated, in-flight requests drained)
//! while the service still serves, and only then is the service sent SIGTERM; if the service
//! exits by itself, the sidecar deregisters it and exits with its status.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rookery_bench::parse_duration;
use rookery_sidecar::{Config, Override};
use tokio_util::sync::CancellationToken;

use crate::job::{Job, Signals};

/// Flags of `rookery sidecar`. Each has an environment variable; any other setting of the TOML
/// file is reachable with `--set KEY=VALUE`.
#[derive(clap::Args)]
pub(crate) struct SidecarCmd {
    /// A TOML configuration file (see docs/sidecar.md).
    #[arg(long, short, env = "ROOKERY_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    /// The ensemble's connect string.
    #[arg(long, env = "ROOKERY_SIDECAR_ZOOKEEPER", value_name = "HOST:PORT,...")]
    zookeeper: Option<String>,
    /// Register the local service under this name.
    #[arg(long, env = "ROOKERY_SIDECAR_SERVICE", value_name = "NAME")]
    service: Option<String>,
    /// The instance id (default: a random UUID).
    #[arg(long, env = "ROOKERY_SIDECAR_ID")]
    id: Option<String>,
    /// The local service's address (health-checked; the inbound listener's target).
    #[arg(long, env = "ROOKERY_SIDECAR_APP", value_name = "IP:PORT")]
    app: Option<String>,
    /// The address written into the registry (default: the app's IP; `auto`: the host's first
    /// non-loopback address).
    #[arg(long, env = "ROOKERY_SIDECAR_ADVERTISE", value_name = "HOST")]
    advertise: Option<String>,
    /// Health-check with an HTTP GET of this path (default: a TCP connect).
    #[arg(long, env = "ROOKERY_SIDECAR_HEALTH_HTTP", value_name = "PATH")]
    health_http: Option<String>,
    /// The outbound listener (default 127.0.0.1:15001).
    #[arg(long, env = "ROOKERY_SIDECAR_OUTBOUND", value_name = "IP:PORT")]
    outbound: Option<String>,
    /// An inbound listener in front of the local service.
    #[arg(long, env = "ROOKERY_SIDECAR_INBOUND", value_name = "IP:PORT")]
    inbound: Option<String>,
    /// The admin listener (default 127.0.0.1:15000).
    #[arg(long, env = "ROOKERY_SIDECAR_ADMIN", value_name = "IP:PORT")]
    admin: Option<String>,
    /// A route: `HOST=SERVICE` (by Host header) or `/PREFIX=SERVICE` (by path). Repeatable.
    #[arg(
        long = "route",
        env = "ROOKERY_SIDECAR_ROUTES",
        value_delimiter = ',',
        value_name = "RULE"
    )]
    routes: Vec<String>,
    /// Keep the last good view here, to route from it if the ensemble is down at start.
    #[arg(long, env = "ROOKERY_SIDECAR_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The balancer: p2c (default), peak-ewma or round-robin.
    #[arg(long, env = "ROOKERY_SIDECAR_BALANCER")]
    balancer: Option<String>,
    /// Any setting of the file, as a dotted key and a TOML value (`health.interval_ms=500`).
    /// Repeatable; in the environment, separated by ';'.
    #[arg(
        long = "set",
        env = "ROOKERY_SIDECAR_SET",
        value_delimiter = ';',
        value_name = "KEY=VALUE"
    )]
    set: Vec<String>,
    /// With a COMMAND: how long it has to exit after SIGTERM before it is sent SIGKILL.
    #[arg(long, env = "ROOKERY_SIDECAR_GRACE", default_value = "10s", value_parser = parse_duration)]
    grace: Duration,
    /// The service to start and supervise (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl SidecarCmd {
    /// The configuration: the file, then the flags.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let mut o = Vec::new();
        let mut string = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                o.push(Override::string(key, v));
            }
        };
        string("zookeeper", &self.zookeeper);
        string("service.name", &self.service);
        string("service.id", &self.id);
        string("service.app", &self.app);
        string("service.advertise", &self.advertise);
        string("health.http_path", &self.health_http);
        string("outbound.listen", &self.outbound);
        string("inbound.listen", &self.inbound);
        string("admin.listen", &self.admin);
        string("upstream.balancer", &self.balancer);
        let state_dir = self.state_dir.as_ref().map(|p| p.display().to_string());
        string("state_dir", &state_dir);
        for route in &self.routes {
            o.push(Override::route(route));
        }
        for assignment in &self.set {
            o.push(Override::parse(assignment)?);
        }
        Ok(Config::load(self.config.as_deref(), &o)?)
    }
}

/// Runs the sidecar until SIGTERM or SIGINT (or until its COMMAND exits), then its lame-duck
/// shutdown; returns the exit status.
pub(crate) fn run(cmd: SidecarCmd) -> anyhow::Result<i32> {
    let config = cmd.config()?;
    let mut runtime = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.workers);
        b
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(supervise(config, cmd.command, cmd.grace))
}

async fn supervise(config: Config, command: Vec<String>, grace: Duration) -> anyhow::Result<i32> {
    let mut signals = Signals::new().context("installing the SIGTERM and SIGINT handlers")?;
    let mut job = match command.is_empty() {
        true => None,
        false => match Job::spawn(&command, &[], "sidecar") {
            Ok(job) => Some(job),
            Err(code) => return Ok(code),
        },
    };
    let stop = CancellationToken::new();
    let sidecar = rookery_sidecar::run(config, stop.clone());
    tokio::pin!(sidecar);
    // The command's status once it has exited by itself.
    let mut exited = None;
    tokio::select! {
        result = &mut sidecar => {
            // Only a failure ends the sidecar before it is told to stop.
            if let Some(job) = job {
                job.stop(grace, &mut signals).await;
            }
            result?;
            return Ok(0);
        }
        sig = signals.next() => tracing::info!(signal = sig, "lame duck: shutting down"),
        code = async { job.as_mut().expect("guarded").wait().await }, if job.is_some() => {
            tracing::warn!(status = code, "the service exited: deregistering it");
            exited = Some(code);
            job = None;
        }
    }
    stop.cancel();
    // A second signal during the lame duck cuts it short.
    let result = tokio::select! {
        result = &mut sidecar => result,
        sig = signals.next() => {
            tracing::warn!(signal = sig, "signalled again: leaving without draining");
            Ok(())
        }
    };
    let code = match (job, exited) {
        (Some(job), _) => job.stop(grace, &mut signals).await.0,
        (None, Some(code)) => code,
        (None, None) => 0,
    };
    result?;
    Ok(code)
}
