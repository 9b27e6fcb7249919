//! [`MultiLock`]: several locks, all or nothing (Curator's `InterProcessMultiLock`, with the
//! paths sorted so that every process takes them in the same order).

use std::time::Duration;

use tokio::time::Instant;

use super::fence::{Fence, Loss};
use super::lock::{Lock, LockGuard};
use super::LossPolicy;
use crate::client::Client;
use crate::error::Result;
use crate::multi::MultiBuilder;

/// A set of [`Lock`]s taken together. The paths are sorted (and deduplicated) before they are
/// taken, so two processes asking for the same paths in any order cannot deadlock; on a
/// timeout or an error the locks already taken are released.
#[derive(Debug, Clone)]
pub struct MultiLock {
    client: Client,
    locks: Vec<Lock>,
}

impl MultiLock {
    /// Locks on `paths`, one [`Lock`] each.
    pub fn new(client: &Client, paths: &[&str]) -> Self {
        let mut paths: Vec<&str> = paths.to_vec();
        paths.sort_unstable();
        paths.dedup();
        MultiLock {
            client: client.clone(),
            locks: paths.into_iter().map(|p| Lock::new(client, p)).collect(),
        }
    }

    /// When the guard counts as lost (default [`LossPolicy::SuspendedIsLost`]).
    pub fn with_loss_policy(self, policy: LossPolicy) -> Self {
        MultiLock {
            client: self.client,
            locks: self
                .locks
                .into_iter()
                .map(|l| l.with_loss_policy(policy))
                .collect(),
        }
    }

    /// Waits for every lock.
    ///
    /// # Errors
    /// As [`Lock::acquire`], for any of the locks.
    ///
    /// # Cancellation safety
    /// Cancellation safe: the locks already taken are released, and the one being acquired
    /// leaves no node.
    pub async fn acquire(&self) -> Result<MultiLockGuard> {
        let mut guards = Vec::with_capacity(self.locks.len());
        for lock in &self.locks {
            guards.push(lock.acquire().await?);
        }
        Ok(self.guard(guards))
    }

    fn guard(&self, guards: Vec<LockGuard>) -> MultiLockGuard {
        MultiLockGuard {
            client: self.client.clone(),
            guards,
        }
    }

    /// Waits at most `timeout` for every lock: `Ok(None)` (and nothing held) if they did not
    /// all come.
    ///
    /// # Errors
    /// As [`Lock::acquire`], for any of the locks.
    ///
    /// # Cancellation safety
    /// As [`MultiLock::acquire`].
    pub async fn try_acquire(&self, timeout: Duration) -> Result<Option<MultiLockGuard>> {
        let deadline = Instant::now() + timeout;
        let mut guards = Vec::with_capacity(self.locks.len());
        for lock in &self.locks {
            let left = deadline.saturating_duration_since(Instant::now());
            match lock.try_acquire(left).await? {
                Some(g) => guards.push(g),
                None => return Ok(None),
            }
        }
        Ok(Some(self.guard(guards)))
    }
}

/// Every lock of a [`MultiLock`], held. Dropping it releases them (in reverse order).
#[derive(Debug)]
#[must_use = "dropping the guard releases the locks"]
pub struct MultiLockGuard {
    client: Client,
    guards: Vec<LockGuard>,
}

impl MultiLockGuard {
    /// The fences of the locks, in path order.
    pub fn fences(&self) -> Vec<&Fence> {
        self.guards.iter().map(LockGuard::fence).collect()
    }

    /// A `multi` that first checks every lock's node.
    pub fn multi(&self) -> MultiBuilder {
        self.guards
            .iter()
            .fold(self.client.multi(), |m, g| g.fence().guard(m))
    }

    /// Resolves when any of the locks can no longer be assumed held.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn lost(&mut self) -> Loss {
        if self.guards.is_empty() {
            return std::future::pending().await;
        }
        let losses = self.guards.iter_mut().map(|g| Box::pin(g.lost()));
        futures::future::select_all(losses).await.0
    }

    /// Releases every lock, in reverse order.
    ///
    /// # Errors
    /// The first error of the deletes (the others are still attempted).
    ///
    /// # Cancellation safety
    /// The deletes are queued when this is called.
    pub async fn release(mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(g) = self.guards.pop() {
            if let Err(e) = g.release().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for MultiLockGuard {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}
