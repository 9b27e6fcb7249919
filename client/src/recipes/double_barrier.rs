//! [`DoubleBarrier`]: Curator's `DistributedDoubleBarrier`: members enter together and leave
//! together.

use std::time::Duration;

use rookery_proto::CreateMode;
use tokio::time::Instant;

use super::queue::ensure_containers;
use super::{join, retried, until};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::types::CreateOptions;

/// Curator's ready node.
const READY: &str = "ready";

/// A double barrier for `count` members: [`DoubleBarrier::enter`] returns once `count` members
/// have entered, [`DoubleBarrier::leave`] once all of them have left.
///
/// The layout is Curator's: each member is an ephemeral node `path/<uuid>`, and the member that
/// completes the count creates `path/ready`, which releases the others; leaving follows the
/// ZooKeeper recipe (the lowest member waits for the highest, the others delete themselves and
/// wait for the lowest), and the last one out deletes `ready`, so the barrier can be used again.
/// One value is one member: enter and leave it once each.
#[derive(Debug)]
pub struct DoubleBarrier {
    client: Client,
    path: String,
    count: usize,
    name: String,
}

impl DoubleBarrier {
    /// A member of the double barrier on `path` for `count` members.
    pub fn new(client: &Client, path: &str, count: usize) -> Self {
        DoubleBarrier {
            client: client.clone(),
            path: path.to_owned(),
            count: count.max(1),
            name: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// This member's node.
    pub fn member_path(&self) -> String {
        join(&self.path, &self.name)
    }

    /// Enters, and waits until `count` members have: `Ok(true)`, or `Ok(false)` when
    /// `timeout` passed first (this member stays entered; call [`DoubleBarrier::leave`]).
    ///
    /// # Errors
    /// The errors of `create`, `exists` and `getChildren`; the session errors.
    ///
    /// # Cancellation safety
    /// Not cancellation safe: this member's node may stay until [`DoubleBarrier::leave`] or
    /// the end of the session.
    pub async fn enter(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let ready = join(&self.path, READY);
        let (ready_stat, mut ready_watch) = retried(|| self.client.exists_watched(&ready)).await?;
        let member = self.member_path();
        // The member's name is unique: NodeExists after a lost reply means it is ours.
        let create = || async {
            let options = CreateOptions::new(CreateMode::Ephemeral);
            match self.client.create(&member, b"", &options).await {
                Ok(_) | Err(Error::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match RetryPolicy::default().run_idempotent(create).await {
            Ok(()) => {}
            Err(Error::NoNode) => {
                ensure_containers(&self.client, &self.path).await?;
                RetryPolicy::default().run_idempotent(create).await?;
            }
            Err(e) => return Err(e),
        }
        if ready_stat.is_some() {
            return Ok(true);
        }
        // Re-counted after every wake-up: a spurious one must not let a member through (the
        // bug behind Curator's GH-1290).
        loop {
            let members = retried(|| self.client.get_children(&self.path)).await?;
            let count = members.iter().filter(|m| *m != READY).count();
            if count >= self.count || members.iter().any(|m| m == READY) {
                let create = || async {
                    let options = CreateOptions::persistent();
                    match self.client.create(&ready, b"", &options).await {
                        Ok(_) | Err(Error::NodeExists) => Ok(()),
                        Err(e) => Err(e),
                    }
                };
                RetryPolicy::default().run_idempotent(create).await?;
                return Ok(true);
            }
            if !until(ready_watch, deadline).await? {
                return Ok(false);
            }
            let (stat, w) = retried(|| self.client.exists_watched(&ready)).await?;
            if stat.is_some() {
                return Ok(true);
            }
            ready_watch = w;
        }
    }

    /// Leaves, and waits until every member has: `Ok(true)`, or `Ok(false)` when `timeout`
    /// passed first.
    ///
    /// # Errors
    /// [`Error::NoNode`] if this member's node is missing (it never entered, or its session
    /// ended); the errors of `getChildren`, `exists` and `delete`.
    ///
    /// # Cancellation safety
    /// Not cancellation safe: this member's node may stay until the end of the session.
    pub async fn leave(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut ours_should_exist = true;
        let mut result = true;
        loop {
            let mut members = match retried(|| self.client.get_children(&self.path)).await {
                Ok(m) => m,
                Err(Error::NoNode) => Vec::new(),
                Err(e) => return Err(e),
            };
            members.retain(|m| m != READY);
            members.sort();
            if members.is_empty() {
                break;
            }
            let ours = members.iter().position(|m| *m == self.name);
            if ours.is_none() && ours_should_exist {
                return Err(Error::NoNode);
            }
            if members.len() == 1 {
                if ours_should_exist {
                    self.delete_ours().await?;
                }
                break;
            }
            let watch = if ours == Some(0) {
                // The lowest waits for the highest to go.
                let highest = join(&self.path, &members[members.len() - 1]);
                retried(|| self.client.exists_watched(&highest)).await?
            } else {
                let lowest = join(&self.path, &members[0]);
                let w = retried(|| self.client.exists_watched(&lowest)).await?;
                if ours_should_exist {
                    self.delete_ours().await?;
                    ours_should_exist = false;
                }
                w
            };
            if let (Some(_), w) = watch {
                if !until(w, deadline).await? {
                    result = false;
                    break;
                }
            }
        }
        delete_idempotent(&self.client, &join(&self.path, READY)).await?;
        Ok(result)
    }

    async fn delete_ours(&self) -> Result<()> {
        delete_idempotent(&self.client, &self.member_path()).await
    }
}

/// Deletes `path`, retried; `NoNode` (already gone, or deleted by a lost try) is success.
async fn delete_idempotent(client: &Client, path: &str) -> Result<()> {
    let delete = || async {
        match client.delete(path, None).await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    };
    RetryPolicy::default().run_idempotent(delete).await
}
