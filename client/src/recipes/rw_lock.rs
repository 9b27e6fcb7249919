//! [`RwLock`]: Curator's `InterProcessReadWriteLock` on the wire.

use std::time::Duration;

use tokio::time::Instant;

use super::lock::{Lock, LockGuard};
use super::queue::{self, Turn};
use super::LossPolicy;
use crate::client::Client;
use crate::error::{Error, Result};

/// Curator's read lock name (as long as the write lock's: sorting relies on it).
const READ: &str = "__READ__";
/// Curator's write lock name.
const WRITE: &str = "__WRIT__";

/// A distributed read/write lock: any number of readers, or one writer.
///
/// Writers queue as `_c_<uuid>-__WRIT__<seq>` and behave as a [`Lock`]; readers queue as
/// `_c_<uuid>-__READ__<seq>` and hold as soon as no writer is ahead of them, waiting for the
/// first writer otherwise (Curator's `readLockPredicate`). Fair: a waiting writer keeps later
/// readers out. Not re-entrant: while a guard of this handle (or a clone) lives, another
/// acquire through it fails with [`Error::AlreadyHeld`] at once, so an upgrade from read to
/// write (or a downgrade) is refused instead of deadlocking. Take several read locks through
/// separate handles.
#[derive(Debug, Clone)]
pub struct RwLock {
    read: Lock,
    write: Lock,
}

impl RwLock {
    /// A read/write lock on `path`.
    pub fn new(client: &Client, path: &str) -> Self {
        let read = Lock::new(client, path).with_lock_name(READ);
        let write = Lock::new(client, path)
            .with_lock_name(WRITE)
            .sharing_holds_with(&read);
        RwLock { read, write }
    }

    /// When guards count as lost (default [`LossPolicy::SuspendedIsLost`]).
    pub fn with_loss_policy(self, policy: LossPolicy) -> Self {
        RwLock {
            read: self.read.with_loss_policy(policy),
            write: self.write.with_loss_policy(policy),
        }
    }

    /// Waits for a read lock.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Lock::acquire`].
    pub async fn read(&self) -> Result<LockGuard> {
        self.read_until(None).await?.ok_or_else(never)
    }

    /// Waits at most `timeout` for a read lock.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Lock::acquire`].
    pub async fn try_read(&self, timeout: Duration) -> Result<Option<LockGuard>> {
        self.read_until(Some(Instant::now() + timeout)).await
    }

    /// Waits for the write lock.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Lock::acquire`].
    pub async fn write(&self) -> Result<LockGuard> {
        self.write_until(None).await?.ok_or_else(never)
    }

    /// Waits at most `timeout` for the write lock.
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    ///
    /// # Cancellation safety
    /// As [`Lock::acquire`].
    pub async fn try_write(&self, timeout: Duration) -> Result<Option<LockGuard>> {
        self.write_until(Some(Instant::now() + timeout)).await
    }

    async fn read_until(&self, deadline: Option<Instant>) -> Result<Option<LockGuard>> {
        self.read
            .acquire_until(deadline, &[WRITE], read_predicate)
            .await
    }

    async fn write_until(&self, deadline: Option<Instant>) -> Result<Option<LockGuard>> {
        self.write
            .acquire_until(deadline, &[READ], |q, i| queue::standard(q, i, 1))
            .await
    }
}

fn never() -> Error {
    Error::Protocol("an acquire without deadline timed out".into())
}

/// A reader holds while no writer is ahead of it, else waits for the first writer.
fn read_predicate(queue: &[String], index: usize) -> Turn {
    match queue[..index].iter().find(|n| n.contains(WRITE)) {
        None => Turn::Acquired,
        Some(writer) => Turn::Wait(writer.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_and_wait_only_for_the_first_writer() {
        let q: Vec<String> = ["a-__READ__0000000001", "b-__READ__0000000002"]
            .map(String::from)
            .to_vec();
        assert_eq!(read_predicate(&q, 1), Turn::Acquired);
        let q: Vec<String> = [
            "a-__READ__0000000001",
            "w-__WRIT__0000000002",
            "x-__WRIT__0000000003",
            "b-__READ__0000000004",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(read_predicate(&q, 0), Turn::Acquired);
        assert_eq!(read_predicate(&q, 3), Turn::Wait(q[1].clone()));
        assert_eq!(queue::standard(&q, 2, 1), Turn::Wait(q[1].clone()));
    }
}
