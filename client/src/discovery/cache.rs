//! [`ServiceCache`]: an always-current view of one service's instances, read without locks.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::instance::ServiceInstance;
use crate::client::Client;
use crate::error::Result;
use crate::recipes::{CacheEvent, ChildData, TreeCache};

/// One service's instances, kept current by a [`TreeCache`] on the service's node (as
/// Curator's `ServiceCache` is kept by a tree cache): one persistent recursive watch, a
/// `Resync`, a lagging watch or a renewed session reloading the whole service, so no change is
/// missed.
///
/// [`ServiceCache::instances`] is a lock-free load of an immutable snapshot (arc-swap), for
/// the hot path of a proxy; [`ServiceCache::updates`] wakes on every new snapshot. Nodes whose
/// data is not an instance are left out. Dropping the cache stops it and removes its watch.
#[derive(Debug)]
pub struct ServiceCache {
    snapshot: Arc<ArcSwap<Vec<ServiceInstance>>>,
    updates: watch::Receiver<Arc<Vec<ServiceInstance>>>,
    task: JoinHandle<()>,
}

/// The instances held, by node path (so, in id order).
type Instances = BTreeMap<String, ServiceInstance>;

impl ServiceCache {
    /// Watches `dir` (a service's node, `<base>/<name>`) and loads it.
    ///
    /// # Errors
    /// As [`TreeCache::start`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn start(client: &Client, dir: &str) -> Result<ServiceCache> {
        let tree = TreeCache::start(client, dir).await?;
        // A stream starts with the tree as it is (`Created`s, queued at once, then
        // `Initialized`): the first snapshot is exactly what the later events change.
        let mut events = tree.events();
        let mut held = Instances::new();
        while let Some(event) = events.try_next() {
            if event == CacheEvent::Initialized {
                break;
            }
            apply(&tree, &mut held, event);
        }
        let first = Arc::new(held.values().cloned().collect::<Vec<_>>());
        let snapshot = Arc::new(ArcSwap::new(first.clone()));
        let (tx, rx) = watch::channel(first);
        let published = snapshot.clone();
        // The task owns the tree cache: aborting it drops the cache, which removes the watch.
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut changed = apply(&tree, &mut held, event);
                // Everything already queued goes into the same snapshot.
                while let Some(Some(event)) = events.next().now_or_never() {
                    changed |= apply(&tree, &mut held, event);
                }
                if changed {
                    let next = Arc::new(held.values().cloned().collect::<Vec<_>>());
                    published.store(next.clone());
                    let _ = tx.send(next);
                }
            }
        });
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

/// The instances among the tree's children of the service's node.
fn instances_of(tree: &TreeCache) -> Instances {
    tree.children(tree.root())
        .iter()
        .filter_map(|node| Some((node.path.clone(), parse(tree, node)?)))
        .collect()
}

/// Applies one event of the tree to the instances held; `true` if they changed.
fn apply(tree: &TreeCache, held: &mut Instances, event: CacheEvent) -> bool {
    let is_instance = |node: &ChildData| {
        node.path
            .strip_prefix(tree.root())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
    };
    match event {
        CacheEvent::Created(node) | CacheEvent::Changed { new: node, .. } if is_instance(&node) => {
            match parse(tree, &node) {
                Some(instance) => held.insert(node.path, instance.clone()) != Some(instance),
                None => held.remove(&node.path).is_some(),
            }
        }
        CacheEvent::Deleted(node) => held.remove(&node.path).is_some(),
        // Events were dropped: read the tree's snapshot, which is current.
        CacheEvent::Lagged => {
            let now = instances_of(tree);
            let changed = now != *held;
            *held = now;
            changed
        }
        _ => false,
    }
}

fn parse(tree: &TreeCache, node: &ChildData) -> Option<ServiceInstance> {
    match ServiceInstance::from_json(&node.data) {
        Ok(instance) => Some(instance),
        Err(e) => {
            tracing::debug!(dir = %tree.root(), path = %node.path, error = %e, "skipping a node that is not an instance");
            None
        }
    }
}
