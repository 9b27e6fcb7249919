//! [`Lock`]: a fair distributed mutex, Curator's `InterProcessMutex` on the wire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rookery_proto::CreateMode;
use tokio::time::Instant;

use super::fence::{Fence, Holding, Loss, LossPolicy};
use super::queue::{self, delete_in_background, Cleanup};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::multi::MultiBuilder;

/// Curator's lock name.
pub(crate) const LOCK_NAME: &str = "lock-";

/// A distributed mutex on a path, shared with Curator's `InterProcessMutex` on the same path.
///
/// Contenders queue as `_c_<uuid>-lock-<seq>` nodes and each waits only for the one before it
/// (fair, no herd). Not re-entrant: each acquire is a new contender (see the module docs).
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::Lock;
///
/// let lock = Lock::new(&client, "/locks/orders");
/// let mut guard = lock.acquire().await?;
/// // Writes that must not happen once the lock is lost go through the guard's fence.
/// guard.multi().set_data("/orders/next", b"42", None).commit().await?;
/// tokio::select! {
///     loss = guard.lost() => println!("lost the lock: {loss:?}"),
///     _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    client: Client,
    dir: String,
    data: Vec<u8>,
    policy: LossPolicy,
    lock_name: &'static str,
    /// Guards alive from this handle and its clones (`None`: no re-entry check, for the
    /// recipes' internal gates).
    held: Option<Arc<AtomicUsize>>,
}

impl Lock {
    /// A lock on `path` (its parents are made as containers when first needed).
    pub fn new(client: &Client, path: &str) -> Self {
        Lock {
            client: client.clone(),
            dir: path.to_owned(),
            data: Vec::new(),
            policy: LossPolicy::default(),
            lock_name: LOCK_NAME,
            held: Some(Arc::default()),
        }
    }

    /// The lock without the re-entry check (a semaphore's gate is taken by concurrent
    /// acquires of one handle).
    pub(crate) fn without_reentry_check(mut self) -> Self {
        self.held = None;
        self
    }

    /// This lock sharing `other`'s re-entry count (the two sides of a read/write lock).
    pub(crate) fn sharing_holds_with(mut self, other: &Lock) -> Self {
        self.held = other.held.clone();
        self
    }

    /// The lock with another node name (Curator's `LeaderSelector` and semaphore gates use
    /// `lock-`; the read/write lock uses its own names through [`super::RwLock`]).
    pub(crate) fn with_lock_name(mut self, name: &'static str) -> Self {
        self.lock_name = name;
        self
    }

    /// The data of this contender's node (default empty; `LeaderSelector` participants put
    /// their id here).
    pub fn with_data(mut self, data: &[u8]) -> Self {
        self.data = data.to_vec();
        self
    }

    /// When a guard counts as lost (default [`LossPolicy::SuspendedIsLost`]).
    pub fn with_loss_policy(mut self, policy: LossPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The lock's path.
    pub fn path(&self) -> &str {
        &self.dir
    }

    /// Waits for the lock.
    ///
    /// # Errors
    /// [`Error::AlreadyHeld`] at once if a guard acquired through this handle (or a clone of
    /// it) is still alive: the lock is not re-entrant, and waiting would wait on itself.
    /// [`Error::SessionExpired`] (or the other session errors) if the session ends while
    /// waiting; [`Error::NoNode`] if this contender's node vanished while it waited; the
    /// errors of `create` and `getChildren` on the lock's path.
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future at any point leaves no node behind (the cleanup
    /// is queued on the session when the future is dropped).
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.acquire_until(None, &[], |q, i| queue::standard(q, i, 1))
            .await?
            .ok_or_else(|| Error::Protocol("an acquire without deadline timed out".into()))
    }

    /// Waits at most `timeout` for the lock: `Ok(None)` if it did not come.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Lock::acquire`].
    pub async fn try_acquire(&self, timeout: Duration) -> Result<Option<LockGuard>> {
        self.acquire_until(Some(Instant::now() + timeout), &[], |q, i| {
            queue::standard(q, i, 1)
        })
        .await
    }

    /// The contenders' node names in queue order (the first holds the lock).
    ///
    /// # Errors
    /// The errors of `getChildren`; a lock never used has no contenders (`Ok` and empty).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn participants(&self) -> Result<Vec<String>> {
        match queue::sorted_queue(&self.client, &self.dir, &[self.lock_name]).await {
            Err(Error::NoNode) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The acquire shared by the lock recipes: enqueue under this lock's name, wait for
    /// `decide` (over the children carrying this lock's name or one of `names`), then watch
    /// the node for loss.
    pub(crate) async fn acquire_until(
        &self,
        deadline: Option<Instant>,
        names: &[&str],
        decide: impl Fn(&[String], usize) -> queue::Turn,
    ) -> Result<Option<LockGuard>> {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.load(Ordering::SeqCst) > 0)
        {
            return Err(Error::AlreadyHeld);
        }
        // Subscribed first, so that a loss between the create and the hold is seen.
        let events = self.client.session_events();
        let generation = self.client.session_generation();
        let id = uuid::Uuid::new_v4().to_string();
        let mut cleanup = Cleanup::new(&self.client, &self.dir, &id);
        let node = queue::enqueue(
            &self.client,
            &self.dir,
            self.lock_name,
            &self.data,
            &id,
            CreateMode::EphemeralSequential,
        )
        .await?;
        cleanup.created(&node.path);
        let names: Vec<&str> = if names.contains(&self.lock_name) {
            names.to_vec()
        } else {
            [names, &[self.lock_name]].concat()
        };
        if !queue::wait_for_turn(
            &self.client,
            &self.dir,
            &node.name,
            &names,
            decide,
            deadline,
        )
        .await?
        {
            return Ok(None);
        }
        let mut guard =
            LockGuard::hold(&self.client, &node, generation, events, self.policy).await?;
        cleanup.disarm();
        if let Some(held) = &self.held {
            held.fetch_add(1, Ordering::SeqCst);
            guard.held = Some(held.clone());
        }
        Ok(Some(guard))
    }
}

/// A held [`Lock`] (or read/write lock side). Dropping it releases the lock (the delete is
/// queued at once); [`LockGuard::release`] does the same and reports errors.
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    holding: Holding,
    released: bool,
    /// The re-entry count of the handle it came from, given back on drop.
    held: Option<Arc<AtomicUsize>>,
}

impl LockGuard {
    /// Holds `node`, created in `generation` with `events` subscribed before it.
    pub(crate) async fn hold(
        client: &Client,
        node: &queue::Node,
        generation: u64,
        events: crate::SessionEvents,
        policy: LossPolicy,
    ) -> Result<LockGuard> {
        // The node must be this session's (CURATOR-696): a renewed session's old node is not
        // a hold.
        if node.stat.ephemeral_owner != client.session_id()
            || client.session_generation() != generation
        {
            return Err(Error::SessionExpired);
        }
        let fence = Fence::new(node.path.clone(), &node.stat);
        let holding = Holding::new(client, fence, generation, events, policy).await?;
        Ok(LockGuard {
            holding,
            released: false,
            held: None,
        })
    }

    /// The holder's node.
    pub fn path(&self) -> &str {
        self.holding.fence().path()
    }

    /// The fencing token: the czxid of the holder's node; a later holder's is larger.
    pub fn fencing_token(&self) -> i64 {
        self.holding.fence().token()
    }

    /// The fence, for writes elsewhere.
    pub fn fence(&self) -> &Fence {
        self.holding.fence()
    }

    /// A `multi` that first checks this guard's node: it commits only while the lock is held.
    pub fn multi(&self) -> MultiBuilder {
        self.holding.fence().guard(self.holding.client().multi())
    }

    /// Resolves when the lock can no longer be assumed held: the session lost, the node
    /// deleted, a new session, or `Suspended` under [`LossPolicy::SuspendedIsLost`].
    ///
    /// # Cancellation safety
    /// Cancellation safe; once lost, it resolves at once with the same reason.
    pub async fn lost(&mut self) -> Loss {
        self.holding.lost().await
    }

    /// Whether a loss has already been seen (without waiting).
    pub fn is_lost(&mut self) -> bool {
        self.holding.is_lost()
    }

    /// Releases the lock: deletes the node.
    ///
    /// # Errors
    /// The errors of `delete` other than `NoNode` (already gone counts as released).
    ///
    /// # Cancellation safety
    /// The delete is queued when this is called.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        let client = self.holding.client().clone();
        let path = self.path().to_owned();
        match client.delete(&path, None).await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) if e.is_connection_loss() => {
                // The session keeps trying; the node goes with the session at the latest.
                delete_in_background(&client, path);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.fetch_sub(1, Ordering::SeqCst);
        }
        if !self.released {
            delete_in_background(self.holding.client(), self.path().to_owned());
        }
    }
}
