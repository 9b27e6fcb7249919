//! [`Semaphore`]: Curator's `InterProcessSemaphoreV2` on the wire.

use std::time::Duration;

use rookery_proto::CreateMode;
use tokio::time::Instant;

use super::lock::{Lock, LockGuard};
use super::queue::{self, Cleanup};
use super::{join, LossPolicy};
use crate::client::Client;
use crate::error::{Error, Result};

/// Curator's lease node name.
const LEASE_NAME: &str = "lease-";

/// A held lease of a [`Semaphore`]: the same guard as a lock's (fence, `lost()`, release on
/// drop), on a node `leases/_c_<uuid>-lease-<seq>`.
pub type Lease = LockGuard;

/// A counting semaphore: at most `max_leases` leases held at once, across processes.
///
/// The layout is Curator's `InterProcessSemaphoreV2`: a [`Lock`] at `path/locks` is the gate
/// that one acquirer passes at a time; it creates its lease node under `path/leases` and holds
/// the gate until the number of leases is within `max_leases`. As in Curator, the maximum is a
/// convention between the participants: processes that disagree about it oversubscribe.
#[derive(Debug, Clone)]
pub struct Semaphore {
    client: Client,
    leases: String,
    gate: Lock,
    max_leases: usize,
    data: Vec<u8>,
    policy: LossPolicy,
}

impl Semaphore {
    /// A semaphore on `path` with `max_leases` leases (at least 1).
    pub fn new(client: &Client, path: &str, max_leases: usize) -> Self {
        Semaphore {
            client: client.clone(),
            leases: join(path, "leases"),
            gate: Lock::new(client, &join(path, "locks")).without_reentry_check(),
            max_leases: max_leases.max(1),
            data: Vec::new(),
            policy: LossPolicy::default(),
        }
    }

    /// The data of this process's lease nodes.
    pub fn with_data(mut self, data: &[u8]) -> Self {
        self.data = data.to_vec();
        self
    }

    /// When leases count as lost (default [`LossPolicy::SuspendedIsLost`]).
    pub fn with_loss_policy(mut self, policy: LossPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Waits for one lease.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future leaves neither a lease nor a gate node behind.
    pub async fn acquire(&self) -> Result<Lease> {
        self.acquire_one(None)
            .await?
            .ok_or_else(|| Error::Protocol("an acquire without deadline timed out".into()))
    }

    /// Waits at most `timeout` for one lease.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Semaphore::acquire`].
    pub async fn try_acquire(&self, timeout: Duration) -> Result<Option<Lease>> {
        self.acquire_one(Some(Instant::now() + timeout)).await
    }

    /// Waits at most `timeout` for `n` leases, all or nothing: on a timeout or an error the
    /// leases already taken are returned.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Semaphore::acquire`].
    pub async fn try_acquire_many(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<Lease>>> {
        let deadline = Instant::now() + timeout;
        let mut leases = Vec::with_capacity(n);
        for _ in 0..n {
            match self.acquire_one(Some(deadline)).await? {
                Some(l) => leases.push(l),
                // Dropping the leases taken so far returns them.
                None => return Ok(None),
            }
        }
        Ok(Some(leases))
    }

    /// The names of the lease nodes held now.
    ///
    /// # Errors
    /// The errors of `getChildren` (none yet is `Ok` and empty).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn participants(&self) -> Result<Vec<String>> {
        match queue::sorted_queue(&self.client, &self.leases, &[LEASE_NAME]).await {
            Err(Error::NoNode) => Ok(Vec::new()),
            other => other,
        }
    }

    async fn acquire_one(&self, deadline: Option<Instant>) -> Result<Option<Lease>> {
        let gate = match deadline {
            Some(d) => match self
                .gate
                .try_acquire(d.saturating_duration_since(Instant::now()))
                .await?
            {
                Some(g) => g,
                None => return Ok(None),
            },
            None => self.gate.acquire().await?,
        };
        let events = self.client.session_events();
        let generation = self.client.session_generation();
        let id = uuid::Uuid::new_v4().to_string();
        let mut cleanup = Cleanup::new(&self.client, &self.leases, &id);
        let node = queue::enqueue(
            &self.client,
            &self.leases,
            LEASE_NAME,
            &self.data,
            &id,
            CreateMode::EphemeralSequential,
        )
        .await?;
        cleanup.created(&node.path);
        loop {
            let (children, watch) =
                super::retried(|| self.client.get_children_watched(&self.leases)).await?;
            if !children.contains(&node.name) {
                // Our lease went with the session.
                return Err(Error::NoNode);
            }
            if children.len() <= self.max_leases {
                break;
            }
            if !super::until(watch, deadline).await? {
                return Ok(None);
            }
        }
        let lease = LockGuard::hold(&self.client, &node, generation, events, self.policy).await?;
        cleanup.disarm();
        drop(gate);
        Ok(Some(lease))
    }
}
