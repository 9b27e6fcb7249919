//! `rookery lock` and `rookery elect`: the client's [`Lock`] and [`LeaderLatch`] recipes as
//! commands for shell scripts, as `etcdctl lock` and `etcdctl elect` are.
//!
//! Standard output carries only the lines documented in `--help` (`token ...`, `state ...`,
//! `leader ...`); logs and error messages go to standard error.
//!
//! A command runs in a process group of its own ([`Job`]): a lock must not outlive its holder's
//! processes.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures::future::BoxFuture;
use rookery_bench::parse_duration;
use rookery_client::recipes::{LatchState, LeaderLatch, Lock, LockGuard, Loss, Participant};
use rookery_client::{Client, LossReason, OneshotWatcher};

use crate::job::{Job, Signals, EXIT_ERROR};

/// `--timeout` passed before the lock came.
const EXIT_TIMEOUT: i32 = 2;
/// The lock (or the session an election needs) was lost.
const EXIT_LOST: i32 = 3;

/// How long releasing the lock or closing the session may take on the way out (a server that is
/// gone expires the session by itself).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

const LOCK_HELP: &str = "\
With a COMMAND: acquires the lock, runs the command with ROOKERY_LOCK_TOKEN (the fencing token: \
the holder node's czxid, larger for every later holder) and ROOKERY_LOCK_PATH (the holder's \
node) in its environment, releases the lock when it exits, and exits with its status \
(128+N when signal N killed it). If the lock is lost meanwhile (the session or its connection \
lost, the node deleted), the command is sent SIGTERM, `lock lost: <reason>` is printed on \
stderr, and rookery exits with 3.

Without a COMMAND: prints `token <fencing token> <node path>` on stdout, then holds the lock \
until stdin reaches end of file (or SIGTERM/SIGINT), releases it and exits 0.

On SIGTERM or SIGINT the command (its whole process group) is sent SIGTERM, waited for (killed \
after --grace, or at a second signal), the lock is released, and rookery exits with 143 or 130 \
as shells do.

Exit status:
  0        released cleanly (without a command), or the command's own status
  1        no connection to the servers, or another error
  2        --timeout passed before the lock came (also clap's status for a usage error)
  3        the lock was lost while held
  126/127  the command cannot be run / was not found
  130/143  interrupted by SIGINT / SIGTERM";

const ELECT_HELP: &str = "\
Joins the leader election on PATH (Curator's LeaderLatch layout) as PROPOSAL, and prints on \
stdout `state leader` or `state follower` each time this participant's role changes and \
`leader <id>` each time the leader changes.

With a COMMAND: runs it each time this participant becomes leader, with ROOKERY_LEADER_TOKEN \
(the leadership's fencing token) and ROOKERY_LEADER_PATH (this participant's node) in its \
environment, and sends it (its whole process group) SIGTERM when leadership is lost (SIGKILL \
after --grace). A command that exits by itself is not restarted before the next leadership.

On SIGTERM or SIGINT: stops the command, leaves the election and exits 0.

Exit status:
  0  left the election on SIGTERM or SIGINT
  1  no connection to the servers, or another error
  3  the session ended for good (expired): the election was left";

/// Connecting, and how commands are stopped: shared by `lock` and `elect`.
#[derive(Args)]
pub(crate) struct CommonArgs {
    /// The servers' connect string (host:port[,host:port...][/chroot]).
    #[arg(long, default_value = "127.0.0.1:2181")]
    connect: String,
    /// The session timeout to ask for; it also bounds the wait for the first connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// How long a command has to exit after SIGTERM before it is sent SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace: Duration,
}

/// `rookery lock PATH [--timeout D] [-- COMMAND [ARGS...]]`.
#[derive(Args)]
#[command(after_help = LOCK_HELP)]
pub(crate) struct LockCmd {
    /// The lock's path (Curator's InterProcessMutex layout).
    path: String,
    /// Give up if the lock has not come within this time (500ms, 10s, 1m): exit status 2.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    common: CommonArgs,
    /// The command to run while holding the lock (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `rookery elect PATH PROPOSAL [-- COMMAND [ARGS...]]`.
#[derive(Args)]
#[command(after_help = ELECT_HELP)]
pub(crate) struct ElectCmd {
    /// The election's path.
    path: String,
    /// This participant's id, as the other participants see it.
    proposal: String,
    #[command(flatten)]
    common: CommonArgs,
    /// The command to run while leader (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `rookery lock`; returns the exit status.
pub(crate) fn lock(cmd: LockCmd) -> i32 {
    in_runtime(run_lock(cmd))
}

/// Runs `rookery elect`; returns the exit status.
pub(crate) fn elect(cmd: ElectCmd) -> i32 {
    in_runtime(run_elect(cmd))
}

fn in_runtime(work: impl Future<Output = i32>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rookery: starting the tokio runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let code = runtime.block_on(work);
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Prints one line on stdout at once (stdout may be a pipe another program reads line by line).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn connect(common: &CommonArgs, what: &str) -> Result<Client, i32> {
    Client::builder(&common.connect)
        .session_timeout(common.session_timeout)
        .connect_timeout(common.session_timeout)
        .connect()
        .await
        .map_err(|e| {
            eprintln!("rookery {what}: cannot connect to {}: {e}", common.connect);
            EXIT_ERROR
        })
}

async fn close(client: &Client) {
    if tokio::time::timeout(CLOSE_WAIT, client.close())
        .await
        .is_err()
    {
        tracing::warn!("the session did not close in time; the servers will expire it");
    }
}

/// Why a holder lost what it held, in words.
fn describe(loss: Loss) -> String {
    match loss {
        Loss::Suspended => "the connection to the servers was lost".to_owned(),
        Loss::Session(LossReason::Expired | LossReason::ClientExpired) => {
            "the session expired".to_owned()
        }
        Loss::Session(reason) => format!("the session ended ({reason:?})"),
        Loss::NewSession => "the session was replaced by a new one".to_owned(),
        Loss::NodeDeleted => "the lock's node was deleted".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Resolves when stdin reaches end of file (or fails). A thread of its own, since a blocking
/// read cannot be cancelled and must not hold up the runtime's shutdown.
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    rx
}

async fn run_lock(cmd: LockCmd) -> i32 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rookery lock: catching signals: {e}");
            return EXIT_ERROR;
        }
    };
    let client = tokio::select! {
        c = connect(&cmd.common, "lock") => match c {
            Ok(c) => c,
            Err(code) => return code,
        },
        sig = signals.next() => return 128 + sig,
    };
    let lock = Lock::new(&client, &cmd.path);
    let acquire = async {
        match cmd.timeout {
            Some(t) => lock.try_acquire(t).await,
            None => lock.acquire().await.map(Some),
        }
    };
    // Dropping the acquire on a signal leaves no node behind (it is cancellation safe).
    let acquired = tokio::select! {
        r = acquire => r,
        sig = signals.next() => {
            close(&client).await;
            return 128 + sig;
        }
    };
    let mut guard = match acquired {
        Ok(Some(g)) => g,
        Ok(None) => {
            eprintln!(
                "rookery lock: timed out after {:?} waiting for the lock {}",
                cmd.timeout.unwrap_or_default(),
                cmd.path
            );
            close(&client).await;
            return EXIT_TIMEOUT;
        }
        Err(e) => {
            eprintln!("rookery lock: cannot acquire the lock {}: {e}", cmd.path);
            close(&client).await;
            return EXIT_ERROR;
        }
    };
    tracing::info!(
        path = %cmd.path,
        node = %guard.path(),
        token = guard.fencing_token(),
        "lock acquired"
    );
    let code = if cmd.command.is_empty() {
        hold(&mut guard, &mut signals).await
    } else {
        run_holding(&cmd, &mut guard, &mut signals).await
    };
    match tokio::time::timeout(CLOSE_WAIT, guard.release()).await {
        Ok(Ok(())) => tracing::info!(path = %cmd.path, "lock released"),
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lock"),
        Err(_) => tracing::warn!("releasing the lock took too long"),
    }
    close(&client).await;
    code
}

/// Without a command: print the token, hold until stdin closes, a signal, or the loss.
async fn hold(guard: &mut LockGuard, signals: &mut Signals) -> i32 {
    say(&format!("token {} {}", guard.fencing_token(), guard.path()));
    let eof = stdin_closed();
    tokio::select! {
        _ = eof => 0,
        _ = signals.next() => 0,
        loss = guard.lost() => {
            eprintln!("lock lost: {}", describe(loss));
            EXIT_LOST
        }
    }
}

/// With a command: run it while holding the lock.
async fn run_holding(cmd: &LockCmd, guard: &mut LockGuard, signals: &mut Signals) -> i32 {
    let env = [
        ("ROOKERY_LOCK_TOKEN", guard.fencing_token().to_string()),
        ("ROOKERY_LOCK_PATH", guard.path().to_owned()),
    ];
    let mut job = match Job::spawn(&cmd.command, &env, "lock") {
        Ok(j) => j,
        Err(code) => return code,
    };
    tokio::select! {
        code = job.wait() => code,
        loss = guard.lost() => {
            eprintln!("lock lost: {}", describe(loss));
            job.stop(cmd.common.grace, signals).await;
            EXIT_LOST
        }
        sig = signals.next() => {
            tracing::info!(signal = sig, "stopping the command");
            job.stop(cmd.common.grace, signals).await;
            128 + sig
        }
    }
}

/// What `elect` has printed, so that only changes are printed.
#[derive(Default)]
struct Shown {
    leading: Option<bool>,
    leader_node: Option<String>,
}

impl Shown {
    fn role(&mut self, leading: bool) {
        if self.leading != Some(leading) {
            self.leading = Some(leading);
            say(if leading {
                "state leader"
            } else {
                "state follower"
            });
        }
    }

    fn leader(&mut self, leader: Option<Participant>) {
        if let Some(p) = leader {
            if self.leader_node.as_deref() != Some(p.node.as_str()) {
                say(&format!("leader {}", p.id));
                self.leader_node = Some(p.node);
            }
        }
    }
}

/// One look at the leader, arming a watch on the election's children first when `arm` (so that
/// a change after the look fires it).
type LeaderPoll<'a> = BoxFuture<
    'a,
    (
        Option<OneshotWatcher>,
        rookery_client::Result<Option<Participant>>,
    ),
>;

fn poll_leader<'a>(
    latch: &'a LeaderLatch,
    client: &Client,
    path: &str,
    arm: bool,
) -> LeaderPoll<'a> {
    let watch = arm.then(|| client.get_children_watched(path));
    Box::pin(async move {
        let watch = match watch {
            // No path yet: the watch is armed again at the next change of this latch's state.
            Some(w) => w.await.ok().map(|(_, w)| w),
            None => None,
        };
        (watch, latch.leader().await)
    })
}

async fn run_elect(cmd: ElectCmd) -> i32 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rookery elect: catching signals: {e}");
            return EXIT_ERROR;
        }
    };
    let client = tokio::select! {
        c = connect(&cmd.common, "elect") => match c {
            Ok(c) => c,
            Err(code) => return code,
        },
        sig = signals.next() => return 128 + sig,
    };
    let latch = LeaderLatch::start(&client, &cmd.path, &cmd.proposal);
    let mut states = latch.states();
    let code = elect_loop(&cmd, &client, &latch, &mut states, &mut signals).await;
    if tokio::time::timeout(CLOSE_WAIT, latch.close())
        .await
        .is_err()
    {
        tracing::warn!("leaving the election took too long");
    }
    close(&client).await;
    code
}

async fn elect_loop(
    cmd: &ElectCmd,
    client: &Client,
    latch: &LeaderLatch,
    states: &mut tokio::sync::watch::Receiver<LatchState>,
    signals: &mut Signals,
) -> i32 {
    let grace = cmd.common.grace;
    let mut shown = Shown::default();
    let mut job: Option<Job> = None;
    // The leadership (its token) the command was last started for: not restarted within it.
    let mut started_for: Option<i64> = None;
    let mut watch: Option<OneshotWatcher> = None;
    let mut poll: Option<LeaderPoll<'_>> = None;
    let mut state_changed = true;
    loop {
        if state_changed {
            state_changed = false;
            let state = states.borrow_and_update().clone();
            match state {
                LatchState::Leader(fence) => {
                    shown.role(true);
                    tracing::info!(token = fence.token(), node = %fence.path(), "leading");
                    if !cmd.command.is_empty()
                        && job.is_none()
                        && started_for != Some(fence.token())
                    {
                        started_for = Some(fence.token());
                        let env = [
                            ("ROOKERY_LEADER_TOKEN", fence.token().to_string()),
                            ("ROOKERY_LEADER_PATH", fence.path().to_owned()),
                        ];
                        // A command that cannot run is reported and tried again at the next
                        // leadership.
                        job = Job::spawn(&cmd.command, &env, "elect").ok();
                    }
                }
                LatchState::NotLeader => {
                    shown.role(false);
                    if let Some(j) = job.take() {
                        tracing::info!("leadership lost: stopping the command");
                        if let (_, Some(_)) = j.stop(grace, signals).await {
                            return 0;
                        }
                    }
                }
                LatchState::Closed => {
                    if let Some(j) = job.take() {
                        j.stop(grace, signals).await;
                    }
                    eprintln!("rookery elect: the session ended; left the election");
                    return EXIT_LOST;
                }
                _ => {}
            }
            poll = Some(poll_leader(latch, client, &cmd.path, watch.is_none()));
        }
        tokio::select! {
            r = states.changed() => {
                if r.is_err() {
                    eprintln!("rookery elect: the latch stopped; left the election");
                    return EXIT_LOST;
                }
                state_changed = true;
            }
            (w, leader) = async { poll.as_mut().expect("guarded").await }, if poll.is_some() => {
                poll = None;
                if w.is_some() {
                    watch = w;
                }
                match leader {
                    Ok(l) => shown.leader(l),
                    Err(e) => tracing::debug!(error = %e, "looking up the leader"),
                }
            }
            _ = async { watch.as_mut().expect("guarded").await }, if watch.is_some() => {
                watch = None;
                poll = Some(poll_leader(latch, client, &cmd.path, true));
            }
            _ = async { job.as_mut().expect("guarded").wait().await }, if job.is_some() => {
                job = None;
                tracing::info!("the command exited while leading: it is started again at the next leadership");
            }
            sig = signals.next() => {
                tracing::info!(signal = sig, "leaving the election");
                if let Some(j) = job.take() {
                    j.stop(grace, signals).await;
                }
                return 0;
            }
        }
    }
}
