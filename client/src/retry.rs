//! [`RetryPolicy`]: how often and how long to retry, as a value, and a helper that retries
//! only what is safe to repeat.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::session::backoff::Backoff;

/// Exponential back-off with jitter, bounded by a number of attempts and by a deadline.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use std::time::Duration;
/// use rookery_client::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(50), Duration::from_secs(2))
///     .with_max_attempts(10)
///     .with_deadline(Duration::from_secs(30));
/// // A read: retried on connection loss and throttling.
/// let (data, _) = policy.run(|| client.get_data("/config")).await?;
/// // A versioned write may be repeated even when its outcome is unknown: if the first try
/// // applied, the repeat fails with BadVersion, which the caller reads as "maybe mine".
/// let stat = policy.run_idempotent(|| client.set_data("/config", b"v2", Some(4))).await;
/// # let _ = (data, stat); Ok(()) }
/// ```
///
/// Sleeps use tokio's clock, so tests with paused time run them at once; the jitter is drawn
/// from a seeded generator ([`RetryPolicy::with_seed`]) when one is given.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial: Duration,
    max_delay: Duration,
    max_attempts: u32,
    deadline: Option<Duration>,
    seed: Option<u64>,
}

impl Default for RetryPolicy {
    /// 50 ms doubling to 2 s, at most 10 attempts, no deadline.
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_millis(50), Duration::from_secs(2))
            .with_max_attempts(10)
    }
}

impl RetryPolicy {
    /// Delays drawn from `[b/2, b]`, `b` starting at `initial` and doubling up to `max_delay`;
    /// at most 10 attempts.
    pub fn exponential(initial: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            initial,
            max_delay,
            max_attempts: 10,
            deadline: None,
            seed: None,
        }
    }

    /// One attempt, no retry.
    pub fn never() -> Self {
        RetryPolicy::default().with_max_attempts(1)
    }

    /// At most `n` attempts in all (the first one included; at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// No retry starts later than `deadline` after the first attempt, and no sleep runs past it.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Seeds the jitter, for reproducible runs.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The attempts allowed in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Runs `op` until it succeeds, fails with an error that is not safe to retry, or the
    /// policy is spent (then the last error is returned). Retried: errors where nothing was
    /// applied ([`Error::is_retryable`]: a connection loss of a read or of an unsent request,
    /// `THROTTLEDOP`, a full client). A write whose outcome is unknown is **not** retried; see
    /// [`RetryPolicy::run_idempotent`].
    ///
    /// # Errors
    /// The error of the last attempt.
    ///
    /// # Cancellation safety
    /// Dropping the future stops retrying; a request already queued still runs.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_while(op, Error::is_retryable).await
    }

    /// As [`RetryPolicy::run`], and also retries a connection loss whose outcome is unknown:
    /// for operations that are safe to repeat (reads, versioned writes, deletes that accept
    /// `NoNode`, protected creates).
    ///
    /// # Errors
    /// The error of the last attempt.
    ///
    /// # Cancellation safety
    /// As [`RetryPolicy::run`].
    pub async fn run_idempotent<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_while(op, |e| e.is_retryable() || e.is_connection_loss())
            .await
    }

    /// Runs `op`, retrying the errors `retry` accepts while the policy allows.
    pub(crate) async fn run_while<T, F, Fut>(
        &self,
        mut op: F,
        retry: impl Fn(&Error) -> bool,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut backoff = Backoff::new(self.initial, self.max_delay);
        let mut rng = StdRng::seed_from_u64(self.seed.unwrap_or_else(rand::random));
        let mut attempt = 1;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt >= self.max_attempts || !retry(&err) {
                return Err(err);
            }
            let delay = backoff.next_delay(&mut rng);
            if let Some(limit) = self.deadline {
                if start.elapsed() + delay > limit {
                    return Err(err);
                }
            }
            tracing::debug!(attempt, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const LOST_WRITE: Error = Error::ConnectionLoss {
        outcome_unknown: true,
    };
    const LOST_READ: Error = Error::ConnectionLoss {
        outcome_unknown: false,
    };

    /// Runs `policy` over an operation that fails with `errors` in turn, then succeeds;
    /// returns the result and the number of attempts.
    async fn attempts(
        policy: &RetryPolicy,
        idempotent: bool,
        errors: Vec<Error>,
    ) -> (Result<u32>, u32) {
        let calls = AtomicU32::new(0);
        let op = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let r = errors.get(n as usize).cloned().map_or(Ok(n), Err);
            async move { r }
        };
        let r = if idempotent {
            policy.run_idempotent(op).await
        } else {
            policy.run(op).await
        };
        (r, calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_retried_and_unknown_writes_are_not() {
        let p = RetryPolicy::default().with_seed(1);
        assert_eq!(
            attempts(&p, false, vec![LOST_READ, Error::ThrottledOp]).await,
            (Ok(2), 3)
        );
        assert_eq!(
            attempts(&p, false, vec![LOST_WRITE]).await,
            (Err(LOST_WRITE), 1)
        );
        assert_eq!(attempts(&p, true, vec![LOST_WRITE]).await, (Ok(1), 2));
        // Errors that say what happened are never retried.
        assert_eq!(
            attempts(&p, true, vec![Error::BadVersion]).await,
            (Err(Error::BadVersion), 1)
        );
        assert_eq!(
            attempts(&p, true, vec![Error::SessionExpired]).await,
            (Err(Error::SessionExpired), 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_and_deadline_bound_the_retries() {
        let p = RetryPolicy::default().with_max_attempts(3).with_seed(2);
        assert_eq!(
            attempts(&p, false, vec![LOST_READ; 10]).await,
            (Err(LOST_READ), 3)
        );
        assert_eq!(
            attempts(&RetryPolicy::never(), false, vec![LOST_READ]).await,
            (Err(LOST_READ), 1)
        );
        // 100 ms doubling: sleeps of at most 100, 200, 400 ms fit in 1 s; the deadline stops it
        // long before 50 attempts.
        let start = Instant::now();
        let p = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(10))
            .with_max_attempts(50)
            .with_deadline(Duration::from_secs(1))
            .with_seed(3);
        let (r, n) = attempts(&p, false, vec![LOST_READ; 50]).await;
        assert_eq!(r, Err(LOST_READ));
        assert!((3..=6).contains(&n), "{n} attempts");
        assert!(start.elapsed() <= Duration::from_secs(1));
    }
}
