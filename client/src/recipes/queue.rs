//! The sequential queue under Curator's lock recipes (`LockInternals`): a contender creates a
//! protected ephemeral sequential node, lists the children sorted by sequence, and either holds
//! or watches the one node it waits for (no herd).
//!
//! A contender whose acquire is dropped cleans up through [`Cleanup`]: it queues the delete of
//! its node on the session at once, or, while the create's outcome is unknown, queues a listing
//! that finds the node by its protected prefix. The session runs requests in order, so that
//! listing sees the create.

use rookery_proto::{CreateMode, Stat};
use tokio::time::Instant;

use super::{join, retried};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::names::{protected_prefix, sequence_number, sort_by_sequence};
use crate::retry::RetryPolicy;
use crate::types::CreateOptions;
use crate::watcher::OneshotWatcher;

/// A contender's node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its full path.
    pub(crate) path: String,
    /// Its name under the queue's directory.
    pub(crate) name: String,
    /// Its Stat at creation.
    pub(crate) stat: Stat,
}

/// Creates the missing ancestors of `path` (and `path`) as containers.
pub(crate) async fn ensure_containers(client: &Client, path: &str) -> Result<()> {
    let mut at = 0;
    while at < path.len() {
        let next = path[at + 1..].find('/').map_or(path.len(), |i| at + 1 + i);
        let prefix = &path[..next];
        // NodeExists is success, so a create whose reply was lost may run again.
        let create = || async {
            let options = CreateOptions::new(CreateMode::Container);
            match client.create(prefix, b"", &options).await {
                Ok(_) | Err(Error::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        };
        RetryPolicy::default().run_idempotent(create).await?;
        at = next;
    }
    Ok(())
}

/// Creates `dir/_c_<id>-<lock_name><seq>` with `data` (ephemeral sequential unless `mode`
/// says otherwise), creating `dir` first if needed.
pub(crate) async fn enqueue(
    client: &Client,
    dir: &str,
    lock_name: &str,
    data: &[u8],
    id: &str,
    mode: CreateMode,
) -> Result<Node> {
    let path = join(dir, lock_name);
    let options = CreateOptions::new(mode);
    // Bounded: a container parent can be reaped between our create and the next.
    for _ in 0..5 {
        match client
            .create_protected(&path, data, &options, true, id)
            .await
        {
            Ok((path, Some(stat))) => {
                let name = path.rsplit('/').next().unwrap_or_default().to_owned();
                return Ok(Node { path, name, stat });
            }
            Ok((_, None)) => return Err(Error::Protocol("create2 reply without a Stat".into())),
            Err(Error::NoNode) => ensure_containers(client, dir).await?,
            Err(e) => return Err(e),
        }
    }
    Err(Error::NoNode)
}

/// Deletes a contender's node if the acquire that made it does not finish.
#[derive(Debug)]
pub(crate) struct Cleanup {
    client: Client,
    dir: String,
    prefix: String,
    node: Option<String>,
    armed: bool,
}

impl Cleanup {
    /// Armed for the node that `id` will name under `dir`.
    pub(crate) fn new(client: &Client, dir: &str, id: &str) -> Self {
        Cleanup {
            client: client.clone(),
            dir: dir.to_owned(),
            prefix: protected_prefix(id),
            node: None,
            armed: true,
        }
    }

    /// The node is known now.
    pub(crate) fn created(&mut self, path: &str) {
        self.node = Some(path.to_owned());
    }

    /// The acquire finished: the node is someone else's to delete.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match self.node.take() {
            Some(path) => delete_in_background(&self.client, path),
            None => {
                // Queued now, after the create: it sees the node if the create made one.
                let listing = self.client.get_children(&self.dir);
                let client = self.client.clone();
                let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
                spawn(async move {
                    let children = match listing.await {
                        Ok(c) => c,
                        Err(Error::NoNode) => return,
                        Err(_) => match RetryPolicy::default()
                            .run(|| client.get_children(&dir))
                            .await
                        {
                            Ok(c) => c,
                            Err(_) => return,
                        },
                    };
                    for name in children.into_iter().filter(|c| c.starts_with(&prefix)) {
                        delete_retried(&client, &join(&dir, &name)).await;
                    }
                });
            }
        }
    }
}

/// Queues the delete of `path` now and, where a runtime runs, retries it on connection loss.
pub(crate) fn delete_in_background(client: &Client, path: String) {
    let first = client.delete(&path, None);
    let client = client.clone();
    spawn(async move {
        match first.await {
            Ok(()) | Err(Error::NoNode) => {}
            Err(e) if e.is_connection_loss() || e.is_retryable() => {
                delete_retried(&client, &path).await
            }
            Err(e) => tracing::debug!(%path, error = %e, "could not delete a recipe node"),
        }
    });
}

/// Deletes `path`, retrying what is safe; `NoNode` counts as done.
pub(crate) async fn delete_retried(client: &Client, path: &str) {
    let result = RetryPolicy::default()
        .run_idempotent(|| {
            let f = client.delete(path, None);
            async move {
                match f.await {
                    Err(Error::NoNode) => Ok(()),
                    other => other,
                }
            }
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(%path, error = %e, "could not delete a recipe node; it goes with the session");
    }
}

/// Runs `fut` on the current runtime, if there is one (a drop outside a runtime only gets the
/// request it already queued).
fn spawn(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(fut);
    }
}

/// What a contender does at its place in the sorted queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// It holds the lock.
    Acquired,
    /// It waits for this node (a name in the queue) to go.
    Wait(String),
}

/// The queue under `dir`: the sequential children whose name contains one of `lock_names`,
/// sorted by sequence. "Contains", as Curator's `fixForSorting` reads names: so nodes of other
/// clients with the same lock name after a prefix of their own (kazoo's `<hex>-lock-<seq>` when
/// it is given Curator's name) queue too.
pub(crate) async fn sorted_queue(
    client: &Client,
    dir: &str,
    lock_names: &[&str],
) -> Result<Vec<String>> {
    let mut children: Vec<String> = retried(|| client.get_children(dir))
        .await?
        .into_iter()
        .filter(|c| lock_names.iter().any(|n| c.contains(n)) && sequence_number(c).is_some())
        .collect();
    sort_by_sequence(&mut children);
    Ok(children)
}

/// Waits until `decide` says `our` node holds, or `deadline` passes (`Ok(false)`). `decide`
/// gets the sorted queue and our index in it. Our node missing from the queue is `NoNode`.
pub(crate) async fn wait_for_turn(
    client: &Client,
    dir: &str,
    our: &str,
    lock_names: &[&str],
    decide: impl Fn(&[String], usize) -> Turn,
    deadline: Option<Instant>,
) -> Result<bool> {
    let ours = join(dir, our);
    // Our own node is watched too, so that its deletion (an administrator, the session) ends
    // the wait at once instead of leaving it behind a predecessor that never goes.
    let mut own: Option<OneshotWatcher> = None;
    loop {
        let queue = sorted_queue(client, dir, lock_names).await?;
        let Some(index) = queue.iter().position(|c| c == our) else {
            return Err(Error::NoNode);
        };
        let Turn::Wait(before) = decide(&queue, index) else {
            return Ok(true);
        };
        if own.is_none() {
            match retried(|| client.get_data_watched(&ours)).await {
                Ok((_, _, w)) => own = Some(w),
                Err(Error::NoNode) => return Err(Error::NoNode),
                Err(e) => return Err(e),
            }
        }
        // getData rather than exists: no watch is left on a node that is already gone.
        let watch = match retried(|| client.get_data_watched(&join(dir, &before))).await {
            Ok((_, _, w)) => w,
            Err(Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        let Some(own_watch) = own.as_mut() else {
            continue;
        };
        let woke = async {
            tokio::select! {
                fired = watch => fired.map(|_| false),
                fired = own_watch => fired.map(|_| true),
            }
        };
        let own_fired = match deadline {
            Some(d) => match tokio::time::timeout_at(d, woke).await {
                Err(_) => return Ok(false),
                Ok(fired) => fired?,
            },
            None => woke.await?,
        };
        if own_fired {
            // Deleted (the listing says so) or changed (watch again).
            own = None;
        }
    }
}

/// The standard mutex decision with `max_leases` holders (Curator's
/// `StandardLockInternalsDriver`): hold within the first `max_leases`, else wait for the node
/// `max_leases` places ahead.
pub(crate) fn standard(queue: &[String], index: usize, max_leases: usize) -> Turn {
    if index < max_leases {
        Turn::Acquired
    } else {
        Turn::Wait(queue[index - max_leases].clone())
    }
}
