//! [`LeaderElection`]: Curator's `LeaderSelector`: run a task while leader, cancelled when
//! leadership is lost, and optionally requeue.

use std::future::Future;

use super::fence::{Fence, Loss};
use super::leader_latch::{participants, Participant};
use super::lock::{Lock, LOCK_NAME};
use super::LossPolicy;
use crate::client::Client;
use crate::error::Result;
use crate::multi::MultiBuilder;

/// What the leader's task gets: its leadership token and fenced writes.
#[derive(Debug, Clone)]
pub struct Leadership {
    client: Client,
    fence: Fence,
}

impl Leadership {
    /// The leadership token: the czxid of the leader's node; a later leader's is larger.
    pub fn token(&self) -> i64 {
        self.fence.token()
    }

    /// The fence of the leadership.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// A `multi` that first checks the leader's node: it commits only while this leadership
    /// lasts.
    pub fn multi(&self) -> MultiBuilder {
        self.fence.guard(self.client.multi())
    }
}

/// A leader election that runs a task while leader. The layout is Curator's `LeaderSelector`
/// (a mutex at the path: `_c_<uuid>-lock-<seq>` nodes holding the participant ids), so Curator
/// selectors and Rookery elections on the same path take turns.
///
/// The task is cancelled (its future dropped) as soon as leadership can no longer be assumed
/// (see [`LossPolicy`]); when it returns, leadership is given up. With
/// [`LeaderElection::auto_requeue`] the participant then joins the queue again.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::LeaderElection;
///
/// let election = LeaderElection::new(&client, "/services/billing/election", "worker-1");
/// election
///     .run(|leadership| async move {
///         // Fenced: refused once this participant is no longer leader.
///         let _ = leadership.multi().set_data("/billing/owner", b"worker-1", None).commit().await;
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeaderElection {
    client: Client,
    lock: Lock,
    requeue: bool,
}

impl LeaderElection {
    /// Joins the election on `path` as `id` when [`LeaderElection::run`] is called.
    pub fn new(client: &Client, path: &str, id: &str) -> Self {
        LeaderElection {
            client: client.clone(),
            lock: Lock::new(client, path).with_data(id.as_bytes()),
            requeue: false,
        }
    }

    /// Whether to join again after each leadership ends (default false: `run` returns after
    /// one leadership).
    pub fn auto_requeue(mut self, requeue: bool) -> Self {
        self.requeue = requeue;
        self
    }

    /// When leadership counts as lost (default [`LossPolicy::SuspendedIsLost`]).
    pub fn with_loss_policy(mut self, policy: LossPolicy) -> Self {
        self.lock = self.lock.with_loss_policy(policy);
        self
    }

    /// Waits for leadership, runs `lead` with it, and gives it up when `lead` returns or when
    /// leadership is lost (then `lead`'s future is dropped). With auto-requeue it goes on
    /// until an error.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future drops the task and gives up leadership (or the
    /// place in the queue).
    pub async fn run<F, Fut>(&self, mut lead: F) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let mut guard = self.lock.acquire().await?;
            let leadership = Leadership {
                client: self.client.clone(),
                fence: guard.fence().clone(),
            };
            let lost: Option<Loss> = tokio::select! {
                () = lead(leadership) => None,
                loss = guard.lost() => Some(loss),
            };
            if let Some(loss) = lost {
                tracing::info!(
                    ?loss,
                    path = self.lock.path(),
                    "leadership lost; leader task cancelled"
                );
            }
            // A failed delete is retried in the background; the node goes with the session
            // at the latest.
            let _ = guard.release().await;
            if !self.requeue {
                return Ok(());
            }
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
        Ok(self.participants().await?.into_iter().next())
    }

    /// Every participant, leader first.
    ///
    /// # Errors
    /// The errors of `getChildren` and `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        participants(&self.client, self.lock.path(), LOCK_NAME).await
    }
}
