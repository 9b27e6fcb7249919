//! [`LeaderLatch`]: Curator's `LeaderLatch` on the wire: leadership as a state, held by the
//! participant with the lowest `latch-` node.

use std::time::Duration;

use rookery_proto::CreateMode;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::fence::Fence;
use super::queue::{self, Cleanup};
use super::{join, LossPolicy};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::events::SessionEvents;
use crate::multi::MultiBuilder;
use crate::types::SessionEventKind;
use crate::watcher::OneshotWatcher;

/// Curator's latch node name.
const LATCH_NAME: &str = "latch-";

/// Where a [`LeaderLatch`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LatchState {
    /// Not yet in the election (connecting, or making its node).
    Starting,
    /// This participant leads; the fence is its leadership token.
    Leader(Fence),
    /// Another participant leads (or this one cannot assume it does).
    NotLeader,
    /// Closed, or the session ended for good: the latch takes no further part.
    Closed,
}

/// One participant of an election, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The participant's id (its node's data).
    pub id: String,
    /// Whether it is the leader (the first in the queue).
    pub is_leader: bool,
    /// Its node's name.
    pub node: String,
}

/// A leader latch: every participant keeps a `_c_<uuid>-latch-<seq>` node holding its id,
/// and the lowest one leads. It interoperates with Curator's `LeaderLatch` on the same path.
///
/// Leadership is a state ([`LeaderLatch::state`], [`LeaderLatch::states`]) kept by a task:
/// - `Leader(fence)` only after the node is checked to belong to the current session
///   (CURATOR-696); the fence's token grows with every new leader;
/// - `NotLeader` on `Suspended` under [`LossPolicy::SuspendedIsLost`] (the default, as
///   Curator's), and on the loss of the session; after a reconnect of the same session the
///   latch re-checks its place instead of making a new node (CURATOR-644); after a new
///   session (a renewing client) it makes a new node;
/// - a predecessor gone while it was being watched means "list again", not "start over"
///   (CURATOR-645); its own node or the latch's path gone means start over (CURATOR-724).
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::LeaderLatch;
///
/// let mut latch = LeaderLatch::start(&client, "/services/billing/leader", "worker-1");
/// let fence = latch.await_leadership().await?;
/// println!("leading with token {}", fence.token());
/// latch.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaderLatch {
    client: Client,
    dir: String,
    state: watch::Receiver<LatchState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaderLatch {
    /// Joins the election on `path` as `id`, with the default loss policy.
    pub fn start(client: &Client, path: &str, id: &str) -> Self {
        Self::start_with(client, path, id, LossPolicy::default())
    }

    /// Joins the election on `path` as `id`, losing leadership as `policy` says.
    pub fn start_with(client: &Client, path: &str, id: &str, policy: LossPolicy) -> Self {
        let (tx, rx) = watch::channel(LatchState::Starting);
        let (stop_tx, stop_rx) = oneshot::channel();
        let runner = Runner {
            client: client.clone(),
            dir: path.to_owned(),
            id: id.to_owned(),
            policy,
            state: tx,
            events: client.session_events(),
        };
        let span = tracing::info_span!("leader_latch", path = %path, id = %id);
        let task = tokio::spawn(tracing::Instrument::instrument(runner.run(stop_rx), span));
        LeaderLatch {
            client: client.clone(),
            dir: path.to_owned(),
            state: rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The current state.
    pub fn state(&self) -> LatchState {
        self.state.borrow().clone()
    }

    /// Whether this participant leads now.
    pub fn has_leadership(&self) -> bool {
        matches!(*self.state.borrow(), LatchState::Leader(_))
    }

    /// The states as they change (a watch channel: a reader that falls behind sees the latest).
    pub fn states(&self) -> watch::Receiver<LatchState> {
        self.state.clone()
    }

    /// Waits until this participant leads, and returns its leadership token.
    ///
    /// # Errors
    /// [`Error::ClientClosed`] if the latch closes (or its session ends for good) first.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn await_leadership(&mut self) -> Result<Fence> {
        loop {
            match &*self.state.borrow_and_update() {
                LatchState::Leader(f) => return Ok(f.clone()),
                LatchState::Closed => return Err(Error::ClientClosed),
                _ => {}
            }
            if self.state.changed().await.is_err() {
                return Err(Error::ClientClosed);
            }
        }
    }

    /// As [`LeaderLatch::await_leadership`], for at most `timeout`: `Ok(None)` when it did not
    /// come.
    ///
    /// # Errors
    /// As [`LeaderLatch::await_leadership`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn await_leadership_for(&mut self, timeout: Duration) -> Result<Option<Fence>> {
        match tokio::time::timeout(timeout, self.await_leadership()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A `multi` that first checks this participant's latch node: it commits only while the
    /// participant leads.
    ///
    /// # Errors
    /// [`Error::NoNode`] (in the multi) when not leading now.
    pub fn multi(&self) -> MultiBuilder {
        match &*self.state.borrow() {
            LatchState::Leader(f) => f.guard(self.client.multi()),
            // A check that cannot pass: nothing of the multi is applied.
            _ => self
                .client
                .multi()
                .check(&join(&self.dir, "_not_leader_"), 0),
        }
    }

    /// The current leader, if any.
    ///
    /// # Errors
    /// The errors of `getChildren` and `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn leader(&self) -> Result<Option<Participant>> {
        Ok(participants(&self.client, &self.dir, LATCH_NAME)
            .await?
            .into_iter()
            .next())
    }

    /// Every participant, leader first.
    ///
    /// # Errors
    /// The errors of `getChildren` and `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        participants(&self.client, &self.dir, LATCH_NAME).await
    }

    /// Leaves the election: stops the task and deletes this participant's node.
    ///
    /// # Errors
    /// None in practice (a task that panicked is reported as [`Error::Protocol`]).
    ///
    /// # Cancellation safety
    /// The stop is sent when this is called; the node is deleted by the task either way.
    pub async fn close(mut self) -> Result<()> {
        self.shutdown();
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| Error::Protocol(format!("the latch task failed: {e}")))?;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for LeaderLatch {
    fn drop(&mut self) {
        // The task deletes the node when it sees the stop.
        self.shutdown();
    }
}

/// The participants of the queue of `lock_name` nodes under `dir`, leader first.
pub(crate) async fn participants(
    client: &Client,
    dir: &str,
    lock_name: &str,
) -> Result<Vec<Participant>> {
    let queue = match queue::sorted_queue(client, dir, &[lock_name]).await {
        Ok(q) => q,
        Err(Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let reads: Vec<_> = queue
        .iter()
        .map(|n| client.get_data(&join(dir, n)))
        .collect();
    let mut out = Vec::with_capacity(queue.len());
    for (name, read) in queue.into_iter().zip(reads) {
        match read.await {
            Ok((data, _)) => out.push(Participant {
                id: String::from_utf8_lossy(&data).into_owned(),
                is_leader: out.is_empty(),
                node: name,
            }),
            // Gone since the listing.
            Err(Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The latch's task.
struct Runner {
    client: Client,
    dir: String,
    id: String,
    policy: LossPolicy,
    state: watch::Sender<LatchState>,
    events: SessionEvents,
}

/// What woke the task while it waited.
enum Woke {
    Stop,
    Watch,
    Session(Option<SessionEventKind>),
}

/// What the task does next with its node.
enum Next {
    /// List the queue again.
    Check,
    /// Make a new node (ours is gone, or the session is new).
    Reset,
    /// Stop for good.
    Stop,
}

impl Runner {
    fn set(&self, state: LatchState) {
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        'node: loop {
            if self.client.state().is_terminal() {
                break;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let mut cleanup = Cleanup::new(&self.client, &self.dir, &id);
            let node = tokio::select! {
                _ = &mut stop => break 'node,
                n = queue::enqueue(&self.client, &self.dir, LATCH_NAME, self.id.as_bytes(), &id, CreateMode::EphemeralSequential) => n,
            };
            let node = match node {
                Ok(n) => n,
                Err(e) if e.is_session_terminated() && self.client.state().is_terminal() => break,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot join the election yet");
                    tokio::select! {
                        _ = &mut stop => break 'node,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue 'node,
                    }
                }
            };
            cleanup.created(&node.path);
            loop {
                let next = self.check(&node, &mut stop).await;
                match next {
                    Next::Check => continue,
                    Next::Reset => {
                        self.set(LatchState::NotLeader);
                        continue 'node;
                    }
                    Next::Stop => break 'node,
                }
            }
        }
        self.set(LatchState::Closed);
    }

    /// One look at the queue, and the wait that follows it.
    async fn check(&mut self, node: &queue::Node, stop: &mut oneshot::Receiver<()>) -> Next {
        let queue = match queue::sorted_queue(&self.client, &self.dir, &[LATCH_NAME]).await {
            Ok(q) => q,
            // The latch's path is gone (CURATOR-724): start over.
            Err(Error::NoNode) => return Next::Reset,
            Err(e) => return self.after_error(&e, stop).await,
        };
        let Some(index) = queue.iter().position(|c| *c == node.name) else {
            return Next::Reset;
        };
        let (watch, leading) = if index == 0 {
            // Lowest: lead, but only with a node of this very session (CURATOR-696).
            match self.client.exists_watched(&node.path).await {
                Ok((Some(stat), w)) if stat.ephemeral_owner == self.client.session_id() => {
                    self.set(LatchState::Leader(Fence::new(node.path.clone(), &stat)));
                    (w, true)
                }
                Ok(_) => return Next::Reset,
                Err(e) => return self.after_error(&e, stop).await,
            }
        } else {
            self.set(LatchState::NotLeader);
            match self
                .client
                .get_data_watched(&join(&self.dir, &queue[index - 1]))
                .await
            {
                Ok((_, _, w)) => (w, false),
                // The predecessor went meanwhile: list again, do not start over (CURATOR-645).
                Err(Error::NoNode) => return Next::Check,
                Err(e) => return self.after_error(&e, stop).await,
            }
        };
        self.wait(watch, leading, stop).await
    }

    /// Waits on `watch` (our node when `leading`, else the predecessor) and the session.
    async fn wait(
        &mut self,
        mut watch: OneshotWatcher,
        leading: bool,
        stop: &mut oneshot::Receiver<()>,
    ) -> Next {
        let generation = self.client.session_generation();
        loop {
            let woke = tokio::select! {
                _ = &mut *stop => Woke::Stop,
                _ = &mut watch => Woke::Watch,
                ev = self.events.next() => Woke::Session(ev.map(|e| e.kind)),
            };
            match woke {
                Woke::Stop => return Next::Stop,
                Woke::Watch => return Next::Check,
                Woke::Session(None) => return Next::Stop,
                Woke::Session(Some(kind)) => match kind {
                    SessionEventKind::Suspended
                        if leading && self.policy == LossPolicy::SuspendedIsLost =>
                    {
                        self.set(LatchState::NotLeader);
                    }
                    SessionEventKind::Reconnected { same_session: true }
                        if self.client.session_generation() == generation =>
                    {
                        // Re-check the place rather than make a new node (CURATOR-644).
                        return Next::Check;
                    }
                    SessionEventKind::Lost(_) => {
                        self.set(LatchState::NotLeader);
                        return if self.client.state().is_terminal() {
                            Next::Stop
                        } else {
                            Next::Reset
                        };
                    }
                    SessionEventKind::Lagged => return Next::Check,
                    SessionEventKind::Connected | SessionEventKind::Reconnected { .. } => {
                        return Next::Reset
                    }
                    _ => {}
                },
            }
        }
    }

    /// After a failed request: stop if the session is over for good, else check again after
    /// the connection is back (requests wait for it by themselves).
    async fn after_error(&mut self, e: &Error, stop: &mut oneshot::Receiver<()>) -> Next {
        if self.client.state().is_terminal() {
            return Next::Stop;
        }
        if *e == Error::SessionExpired {
            return Next::Reset;
        }
        tracing::debug!(error = %e, "leader latch: retrying");
        tokio::select! {
            _ = &mut *stop => Next::Stop,
            _ = tokio::time::sleep(Duration::from_millis(100)) => Next::Check,
        }
    }
}
