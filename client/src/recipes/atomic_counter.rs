//! [`AtomicCounter`]: Curator's `DistributedAtomicLong`: an `i64` in one node (8 bytes,
//! big-endian), changed optimistically with versioned writes, with an optional lock fallback.

use rookery_proto::CreateMode;

use super::lock::Lock;
use super::queue::ensure_containers;
use super::retried;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::types::CreateOptions;

/// The values before and after a successful change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicValue {
    /// The value the change started from.
    pub pre: i64,
    /// The value it left.
    pub post: i64,
}

/// A distributed counter, with Curator's `DistributedAtomicLong` layout (so a Java service
/// increments the same counter).
///
/// Each change reads the value and writes the result with the version it read; on a conflict
/// it tries again under its [`RetryPolicy`] and then, if a lock path was given (Curator's
/// `PromotedToLock`), once more while holding that lock. A write whose reply is lost is **not**
/// tried again: it is reported as [`Error::ConnectionLoss`] with `outcome_unknown`, so a delta
/// is never applied twice; read the value back to find out.
#[derive(Debug, Clone)]
pub struct AtomicCounter {
    client: Client,
    path: String,
    policy: RetryPolicy,
    promoted: Option<Lock>,
}

impl AtomicCounter {
    /// The counter at `path` (a missing node reads as 0 and is created by the first change).
    pub fn new(client: &Client, path: &str) -> Self {
        AtomicCounter {
            client: client.clone(),
            path: path.to_owned(),
            policy: RetryPolicy::default(),
            promoted: None,
        }
    }

    /// How often an optimistic change is tried on conflicts (default [`RetryPolicy::default`]).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// After the optimistic tries, try once more holding a [`Lock`] at `lock_path`.
    pub fn with_lock_fallback(mut self, lock_path: &str) -> Self {
        self.promoted = Some(Lock::new(&self.client, lock_path).without_reentry_check());
        self
    }

    /// The value now (0 when the node does not exist).
    ///
    /// # Errors
    /// The errors of `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn get(&self) -> Result<i64> {
        Ok(self.read().await?.0)
    }

    /// Adds `delta`.
    ///
    /// # Errors
    /// [`Error::BadVersion`] when every try lost to another writer (with no lock fallback);
    /// [`Error::ConnectionLoss`] with `outcome_unknown` when the write may or may not have
    /// been applied; the errors of `getData`, `setData` and `create`.
    ///
    /// # Cancellation safety
    /// A write may have been sent when the future is dropped.
    pub async fn add(&self, delta: i64) -> Result<AtomicValue> {
        self.change(|v| Some(v.wrapping_add(delta))).await
    }

    /// Adds 1.
    ///
    /// # Errors
    /// As [`AtomicCounter::add`].
    ///
    /// # Cancellation safety
    /// As [`AtomicCounter::add`].
    pub async fn increment(&self) -> Result<AtomicValue> {
        self.add(1).await
    }

    /// Sets `new` if the value is `expected`: `Ok(None)` when it is not.
    ///
    /// # Errors
    /// As [`AtomicCounter::add`].
    ///
    /// # Cancellation safety
    /// As [`AtomicCounter::add`].
    pub async fn compare_and_set(&self, expected: i64, new: i64) -> Result<Option<AtomicValue>> {
        match self.change(|v| (v == expected).then_some(new)).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::RuntimeInconsistency) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads, applies `f` (`None`: do not change, reported as `RuntimeInconsistency`) and
    /// writes with the version read, under the retry policy, then the lock.
    async fn change(&self, f: impl Fn(i64) -> Option<i64>) -> Result<AtomicValue> {
        let mut attempts = 0;
        let optimistic = self
            .policy
            .run_while(
                || {
                    attempts += 1;
                    self.try_once(&f)
                },
                |e| *e == Error::BadVersion || *e == Error::NodeExists || e.is_retryable(),
            )
            .await;
        match (optimistic, &self.promoted) {
            (Err(Error::BadVersion | Error::NodeExists), Some(lock)) => {
                tracing::debug!(path = %self.path, attempts, "counter: promoting to the lock");
                let guard = lock.acquire().await?;
                let result = self.try_once(&f).await;
                let _ = guard.release().await;
                result
            }
            (result, _) => result,
        }
    }

    async fn try_once(&self, f: &impl Fn(i64) -> Option<i64>) -> Result<AtomicValue> {
        let (pre, version) = self.read().await?;
        let post = f(pre).ok_or(Error::RuntimeInconsistency)?;
        let data = post.to_be_bytes();
        match version {
            Some(v) => self.client.set_data(&self.path, &data, Some(v)).await?,
            None => {
                let create = self.client.create(
                    &self.path,
                    &data,
                    &CreateOptions::new(CreateMode::Persistent),
                );
                match create.await {
                    Ok(_) => {}
                    Err(Error::NoNode) => {
                        ensure_containers(&self.client, rookery_proto::path::parent(&self.path))
                            .await?;
                        return Err(Error::BadVersion);
                    }
                    Err(e) => return Err(e),
                }
                return Ok(AtomicValue { pre, post });
            }
        };
        Ok(AtomicValue { pre, post })
    }

    /// The value and its version (`None` when the node does not exist).
    async fn read(&self) -> Result<(i64, Option<i32>)> {
        match retried(|| self.client.get_data(&self.path)).await {
            Ok((data, stat)) => {
                let value = <[u8; 8]>::try_from(data.as_slice()).map_or(0, i64::from_be_bytes);
                Ok((value, Some(stat.version)))
            }
            Err(Error::NoNode) => Ok((0, None)),
            Err(e) => Err(e),
        }
    }
}
