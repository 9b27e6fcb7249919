//! [`ServiceCache`]: an always-current view of one service's instances, read without locks.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rookery_proto::EventType;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::instance::ServiceInstance;
use super::service_discovery::read_all;
use crate::client::Client;
use crate::error::Result;
use crate::types::PersistentEvent;
use crate::AddWatchMode;

/// One service's instances, kept current by a persistent recursive watch on the service's
/// node (as Curator's `ServiceCache` is kept by a tree cache).
///
/// [`ServiceCache::instances`] is a lock-free load of an immutable snapshot (arc-swap), for
/// the hot path of a proxy; [`ServiceCache::updates`] wakes on every new snapshot. A node event
/// re-reads that instance; a `Resync` (after a reconnect), a `Lagged` stream or a new session
/// reloads the whole service, so no change is missed. Dropping the cache stops it.
#[derive(Debug)]
pub struct ServiceCache {
    snapshot: Arc<ArcSwap<Vec<ServiceInstance>>>,
    updates: watch::Receiver<Arc<Vec<ServiceInstance>>>,
    task: JoinHandle<()>,
}

impl ServiceCache {
    /// Watches `dir` (a service's node, `<base>/<name>`) and loads it.
    ///
    /// # Errors
    /// The errors of `addWatch`, `getChildren` and `getData` for the first load.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn start(client: &Client, dir: &str) -> Result<ServiceCache> {
        // The watch first, then the load: nothing between the two is missed.
        let watch = client
            .add_watch(dir, AddWatchMode::PersistentRecursive)
            .await?;
        let first = Arc::new(read_all(client, dir).await?);
        let snapshot = Arc::new(ArcSwap::new(first.clone()));
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(follow(
            client.clone(),
            dir.to_owned(),
            watch,
            snapshot.clone(),
            tx,
        ));
        Ok(ServiceCache {
            snapshot,
            updates: rx,
            task,
        })
    }

    /// The instances now, sorted by id: a lock-free load.
    pub fn instances(&self) -> Arc<Vec<ServiceInstance>> {
        self.snapshot.load_full()
    }

    /// Every new snapshot (a watch channel: a slow reader sees the latest).
    pub fn updates(&self) -> watch::Receiver<Arc<Vec<ServiceInstance>>> {
        self.updates.clone()
    }
}

impl Drop for ServiceCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What to do after an item of the watch.
enum Next {
    /// The snapshot is current.
    Done,
    /// Read the whole service again.
    Reload,
    /// The watch ended: add it again (a renewed session), or stop.
    Rewatch,
}

async fn follow(
    client: Client,
    dir: String,
    mut watch: crate::PersistentWatcher,
    snapshot: Arc<ArcSwap<Vec<ServiceInstance>>>,
    tx: watch::Sender<Arc<Vec<ServiceInstance>>>,
) {
    let publish = |next: Vec<ServiceInstance>| {
        if **snapshot.load() != next {
            let next = Arc::new(next);
            snapshot.store(next.clone());
            let _ = tx.send(next);
        }
    };
    loop {
        let next = match watch.next().await {
            Some(PersistentEvent::Node(ev)) => {
                apply(&client, &dir, &ev.path, ev.event_type, &snapshot, &publish).await
            }
            Some(PersistentEvent::Ended(_)) | None => Next::Rewatch,
            // Resync, Lagged: events were missed.
            Some(_) => Next::Reload,
        };
        match next {
            Next::Done => {}
            Next::Reload => reload(&client, &dir, &publish).await,
            Next::Rewatch => {
                // The session ended: with a renewing client, watch again in the new one.
                loop {
                    if client.state().is_terminal() {
                        return;
                    }
                    match client
                        .add_watch(&dir, AddWatchMode::PersistentRecursive)
                        .await
                    {
                        Ok(w) => {
                            watch = w;
                            break;
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                    }
                }
                reload(&client, &dir, &publish).await;
            }
        }
    }
}

/// Applies one node event under `dir` to the snapshot.
async fn apply(
    client: &Client,
    dir: &str,
    path: &str,
    event: EventType,
    snapshot: &ArcSwap<Vec<ServiceInstance>>,
    publish: &impl Fn(Vec<ServiceInstance>),
) -> Next {
    let Some(id) = path
        .strip_prefix(dir)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|id| !id.contains('/'))
    else {
        // The service's node itself (created or deleted) or something deeper.
        return if path == dir {
            Next::Reload
        } else {
            Next::Done
        };
    };
    let mut next: Vec<ServiceInstance> = snapshot.load().as_ref().clone();
    next.retain(|i| i.id != id);
    if event != EventType::NodeDeleted {
        match client.get_data(path).await {
            Ok((data, _)) => {
                if let Ok(i) = ServiceInstance::from_json(&data) {
                    next.push(i);
                    next.sort_by(|a, b| a.id.cmp(&b.id));
                }
            }
            Err(crate::Error::NoNode) => {}
            // Unsure what the node holds now: read everything again.
            Err(_) => return Next::Reload,
        }
    }
    publish(next);
    Next::Done
}

/// Reads the whole service again (bounded retries; a failure leaves the snapshot as it is
/// until the next event).
async fn reload(client: &Client, dir: &str, publish: &impl Fn(Vec<ServiceInstance>)) {
    match read_all(client, dir).await {
        Ok(all) => publish(all),
        Err(e) => tracing::warn!(%dir, error = %e, "service cache: reload failed"),
    }
}
