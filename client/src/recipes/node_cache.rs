//! [`NodeCache`]: Curator's `NodeCache`, one node kept current by a persistent watch.

use super::tree_cache::{CacheEvents, ChildData, Core, Scope};
use crate::client::Client;
use crate::error::Result;

/// One node (which need not exist), kept current by a persistent watch on its path: Curator's
/// `NodeCache`.
///
/// [`NodeCache::current`] is a lock-free load of the node as last read (`None` while it does
/// not exist); [`NodeCache::events`] streams its `Created`, `Changed` and `Deleted`, judged as
/// [`TreeCache`](super::TreeCache) judges them (a node deleted and created again is a
/// `Deleted` and a `Created`), with the same reload after a reconnect, a lagging watch or a
/// renewed session, so a change made meanwhile is reported once. Changes to the node's
/// children are not events. Dropping the cache stops its task and removes its watch.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::{CacheEvent, NodeCache};
///
/// let cache = NodeCache::start(&client, "/config/limits").await?;
/// if let Some(node) = cache.current() {
///     println!("{} bytes, version {}", node.data.len(), node.stat.version);
/// }
/// let mut events = cache.events();
/// while let Some(event) = events.next().await {
///     if let CacheEvent::Changed { new, .. } = event {
///         println!("now version {}", new.stat.version);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NodeCache {
    core: Core,
}

impl NodeCache {
    /// Watches `path` and reads it.
    ///
    /// # Errors
    /// The errors of `addWatch` and of the first `getData` (retried on connection loss under
    /// the default policy; `NoNode` is no error).
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future removes the watch.
    pub async fn start(client: &Client, path: &str) -> Result<NodeCache> {
        let core = Core::start(client, path, Scope::Node).await?;
        Ok(NodeCache { core })
    }

    /// The watched path.
    pub fn path(&self) -> &str {
        self.core.path()
    }

    /// The node now, or `None` if it does not exist: a lock-free load.
    pub fn current(&self) -> Option<ChildData> {
        self.core.get(self.core.path())
    }

    /// A new event stream: a `Created` if the node exists now, then
    /// [`CacheEvent::Initialized`](super::CacheEvent::Initialized), then every change after
    /// that. Bounded as [`CacheEvents`] says: a slow reader gets a `Lagged` marker, and
    /// [`NodeCache::current`] stays current.
    pub fn events(&self) -> CacheEvents {
        self.core.events()
    }
}
