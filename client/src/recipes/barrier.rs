//! [`Barrier`]: Curator's `DistributedBarrier`: up while its node exists.

use std::time::Duration;

use tokio::time::Instant;

use super::queue::ensure_containers;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::CreateOptions;

/// A barrier that holds waiters while its node exists.
#[derive(Debug, Clone)]
pub struct Barrier {
    client: Client,
    path: String,
}

impl Barrier {
    /// A barrier on `path`.
    pub fn new(client: &Client, path: &str) -> Self {
        Barrier {
            client: client.clone(),
            path: path.to_owned(),
        }
    }

    /// Puts the barrier up (creates its node; already up is fine).
    ///
    /// # Errors
    /// The errors of `create`.
    ///
    /// # Cancellation safety
    /// The create is queued when this is called.
    pub async fn set(&self) -> Result<()> {
        let create = || {
            self.client
                .create(&self.path, b"", &CreateOptions::persistent())
        };
        match create().await {
            Ok(_) | Err(Error::NodeExists) => Ok(()),
            Err(Error::NoNode) => {
                let parent = rookery_proto::path::parent(&self.path).to_owned();
                ensure_containers(&self.client, &parent).await?;
                match create().await {
                    Ok(_) | Err(Error::NodeExists) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Takes the barrier down (deletes its node; already down is fine).
    ///
    /// # Errors
    /// The errors of `delete`.
    ///
    /// # Cancellation safety
    /// The delete is queued when this is called.
    pub async fn remove(&self) -> Result<()> {
        match self.client.delete(&self.path, None).await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is down: `Ok(true)`, or `Ok(false)` if `timeout` passed first.
    ///
    /// # Errors
    /// The session errors; a connection loss is retried (the watch is re-armed on the next
    /// connection).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let watch = match self.client.exists_watched(&self.path).await {
                Ok((None, _)) => return Ok(true),
                Ok((Some(_), w)) => w,
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e),
            };
            if !super::until(watch, deadline).await? {
                return Ok(false);
            }
        }
    }
}
