//! A command run under rookery (`rookery lock|elect|sidecar -- COMMAND`): a process group of its
//! own, so that the signals sent to it (SIGTERM, then SIGKILL after a grace period) reach the
//! children of `sh -c '...'` too; and the SIGTERM and SIGINT that rookery itself receives.
//!
//! Signals are sent with rustix's safe `kill` (the workspace forbids `unsafe`); tokio's
//! `Child::start_kill` only sends SIGKILL, which leaves the command no chance to clean up.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

/// Any error: the command could not be waited for.
pub(crate) const EXIT_ERROR: i32 = 1;
/// The shells' status for a command that cannot be run, and for one that is not found.
const EXIT_CANNOT_RUN: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;
pub(crate) const SIGINT: i32 = 2;
pub(crate) const SIGTERM: i32 = 15;

/// SIGTERM and SIGINT, caught from the start so that neither kills rookery before it releases.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT: its number.
    pub(crate) async fn next(&mut self) -> i32 {
        tokio::select! {
            Some(()) = self.term.recv() => SIGTERM,
            Some(()) = self.int.recv() => SIGINT,
            else => std::future::pending().await,
        }
    }
}

/// The exit status a shell would give for `status`.
pub(crate) fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A running command, in a process group of its own.
pub(crate) struct Job {
    child: tokio::process::Child,
    group: Option<Pid>,
}

impl Job {
    /// Starts `argv` with `env` added; on failure, the message is printed and the shell's exit
    /// status returned.
    pub(crate) fn spawn(argv: &[String], env: &[(&str, String)], what: &str) -> Result<Job, i32> {
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .process_group(0)
            // Should rookery fail on the way, the command must not run on without what rookery
            // holds for it (a lock, a leadership, a sidecar).
            .kill_on_drop(true);
        match command.spawn() {
            Ok(child) => {
                let group = child
                    .id()
                    .and_then(|id| i32::try_from(id).ok())
                    .and_then(Pid::from_raw);
                tracing::info!(command = %argv.join(" "), pid = ?child.id(), "command started");
                Ok(Job { child, group })
            }
            Err(e) => {
                eprintln!("rookery {what}: cannot run {}: {e}", argv[0]);
                Err(match e.kind() {
                    std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                    _ => EXIT_CANNOT_RUN,
                })
            }
        }
    }

    pub(crate) fn signal(&self, sig: Signal) {
        if let Some(group) = self.group {
            // ESRCH: the whole group is gone already.
            if let Err(e) = kill_process_group(group, sig) {
                tracing::debug!(error = %e, ?sig, "signalling the command's process group");
            }
        }
    }

    /// Waits for the command to exit (cancel-safe); its status as a shell gives it.
    pub(crate) async fn wait(&mut self) -> i32 {
        let status = self.child.wait().await;
        self.exited(&status);
        status.map_or(EXIT_ERROR, code_of)
    }

    /// After the command exited: its leftovers in the group are told to stop too.
    fn exited(&self, status: &std::io::Result<ExitStatus>) {
        self.signal(Signal::TERM);
        match status {
            Ok(s) if s.success() => tracing::info!("command exited"),
            Ok(s) => tracing::info!(status = %s, "command exited"),
            Err(e) => tracing::warn!(error = %e, "waiting for the command"),
        }
    }

    /// SIGTERM, then SIGKILL after `grace` or at the next signal to rookery. Returns the
    /// command's exit status (1 when it could not be waited for) and the signal that came
    /// meanwhile, if one did.
    pub(crate) async fn stop(
        mut self,
        grace: Duration,
        signals: &mut Signals,
    ) -> (i32, Option<i32>) {
        self.signal(Signal::TERM);
        let mut interrupted = None;
        let status = tokio::select! {
            s = self.child.wait() => Some(s),
            () = tokio::time::sleep(grace) => {
                tracing::warn!(?grace, "the command is still running after SIGTERM: killing it");
                None
            }
            sig = signals.next() => {
                tracing::warn!("signalled again: killing the command");
                interrupted = Some(sig);
                None
            }
        };
        let status = match status {
            Some(s) => s,
            None => {
                self.signal(Signal::KILL);
                self.child.wait().await
            }
        };
        self.exited(&status);
        (status.map_or(EXIT_ERROR, code_of), interrupted)
    }
}
