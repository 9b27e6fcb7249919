//! [`TreeCache`]: Curator's `CuratorCache`, a whole subtree kept current by one persistent
//! recursive watch; and the machinery it shares with [`NodeCache`](super::NodeCache): the
//! event type [`CacheEvent`], its stream [`CacheEvents`] and the node record [`ChildData`].
//!
//! How a cache stays exact:
//! - The watch is added **before** the first load, so every change after the load's reads has
//!   an event queued behind them.
//! - A node event does not carry the node's state, so the cache reads the node (`getData`, the
//!   reads of one batch of events pipelined) and compares the read with what it holds: a
//!   different **czxid** is another node (the one held was deleted: `Deleted`, then
//!   `Created`), the same czxid with a larger **mzxid** is a `Changed`, the same mzxid is
//!   nothing (the change was already seen). `NoNode` removes the node and everything held
//!   below it. Reads of one session are never older than an earlier one, so an event whose
//!   change an earlier read already showed yields nothing: no duplicate.
//! - `Resync` (after a reconnect: ZooKeeper replays nothing for persistent watches), `Lagged`
//!   (the watch stream dropped events) and the end of the watch (a renewed session: the watch
//!   is added again first) reload everything and emit the *difference* between the snapshot
//!   held and the one read, then a [`CacheEvent::Resynced`] marker: a change made while
//!   disconnected is reported once, not missed. Several quick changes to one node may be
//!   reported as one; the marker says where that may have happened.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::{FutureExt, Stream};
use rookery_proto::{EventType, Stat};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{join, retried};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::feed::{feed, FeedTx, Sent};
use crate::types::{PersistentEvent, WatchedEvent};
use crate::{AddWatchMode, PersistentWatcher};

/// One node as a cache holds it: its path (relative to the client's chroot), data and
/// [`Stat`]. Cheap to clone (the data is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildData {
    /// The node's path.
    pub path: String,
    /// The node's data (empty for null data).
    pub data: Arc<[u8]>,
    /// The node's Stat as last read.
    pub stat: Stat,
}

/// One item of a [`CacheEvents`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheEvent {
    /// A node appeared (or, before [`CacheEvent::Initialized`], was there when the stream
    /// began).
    Created(ChildData),
    /// A node's data changed: same czxid, larger mzxid.
    Changed {
        /// The node as held before.
        old: ChildData,
        /// The node now.
        new: ChildData,
    },
    /// A node went away (its last state as held). A node deleted and created again is a
    /// `Deleted` of the old one, then a `Created` of the new one.
    Deleted(ChildData),
    /// Every node that was in the cache when the stream began has been reported (as
    /// `Created`); what follows are changes. Once per stream, always its first non-`Created`
    /// item.
    Initialized,
    /// The stream was not read fast enough: events were dropped here (the stream holds 1,024
    /// unread changes). The cache itself is current, so read its snapshot again, or call
    /// `events()` again for a new exact stream; later events follow.
    Lagged,
    /// The cache read the whole subtree again (after a reconnect, a lagging watch or a renewed
    /// session) and the events just before this marker were the difference: every change is
    /// there, but several changes to one node made meanwhile may have been reported as one.
    Resynced,
}

/// The events of a cache, from [`TreeCache::events`] or
/// [`NodeCache::events`](super::NodeCache::events). Bounded: a reader 1,024 changes behind
/// gets one [`CacheEvent::Lagged`] where the rest were dropped (the cache's snapshot is
/// current all the same). The stream ends when the cache is dropped or stops (its client
/// closed, or its session ended without renewal).
///
/// # Cancellation safety
/// [`CacheEvents::next`] is cancellation safe: no event is lost if it is dropped unfinished.
#[derive(Debug)]
#[must_use = "a stream does nothing unless read"]
pub struct CacheEvents {
    rx: mpsc::Receiver<CacheEvent>,
}

impl CacheEvents {
    /// The next event, or `None` once the cache has stopped.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn next(&mut self) -> Option<CacheEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<CacheEvent> {
        self.rx.try_recv().ok()
    }
}

impl Stream for CacheEvents {
    type Item = CacheEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CacheEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// Unread changes a [`CacheEvents`] stream holds before it lags.
const EVENTS_CAPACITY: usize = 1024;
/// Node events read from the watch, at most, before their reads are sent (pipelined) and the
/// snapshot is published once for all of them.
const BATCH: usize = 256;
/// Requests a load keeps in flight, at most.
const LOAD_CHUNK: usize = 128;

/// The nodes of a cache, by path.
type Tree = BTreeMap<String, ChildData>;

/// What a cache watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The node and its whole subtree, at most this many nodes.
    Tree(usize),
    /// The node alone.
    Node,
}

impl Scope {
    fn mode(self) -> AddWatchMode {
        match self {
            Scope::Tree(_) => AddWatchMode::PersistentRecursive,
            Scope::Node => AddWatchMode::Persistent,
        }
    }

    fn max_nodes(self) -> usize {
        match self {
            Scope::Tree(max) => max,
            Scope::Node => 1,
        }
    }
}

/// The subscribers of a cache's events.
#[derive(Debug, Default)]
struct Subscribers {
    feeds: Vec<FeedTx<CacheEvent>>,
    /// The cache's task is over: new streams get the contents and end.
    stopped: bool,
}

/// What a cache's handle and its task share.
#[derive(Debug)]
struct Shared {
    snapshot: ArcSwap<Tree>,
    /// Held while a snapshot is published with its events, so that a new stream starts from
    /// exactly one snapshot.
    subscribers: Mutex<Subscribers>,
}

impl Shared {
    fn subscribers(&self) -> MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine of both caches: the snapshot, the subscribers and the task that follows the
/// watch. Dropping it stops the task, which drops the watch (and so removes it).
#[derive(Debug)]
pub(super) struct Core {
    path: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Core {
    /// Adds the watch, loads, and starts following.
    pub(super) async fn start(client: &Client, path: &str, scope: Scope) -> Result<Core> {
        // The watch first, then the load: nothing between the two is missed.
        let watch = client.add_watch(path, scope.mode()).await?;
        let tree = load(client, path, scope).await?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(tree.clone()),
            subscribers: Mutex::default(),
        });
        let follower = Follower {
            client: client.clone(),
            path: path.to_owned(),
            scope,
            tree,
            pending: Vec::new(),
            dirty: false,
            shared: shared.clone(),
        };
        let task = tokio::spawn(follower.run(watch));
        Ok(Core {
            path: path.to_owned(),
            shared,
            task,
        })
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn snapshot(&self) -> Arc<Tree> {
        self.shared.snapshot.load_full()
    }

    pub(super) fn get(&self, path: &str) -> Option<ChildData> {
        self.shared.snapshot.load().get(path).cloned()
    }

    /// A new stream: `Created` for each node held now (parents first), `Initialized`, then
    /// every change after this snapshot.
    pub(super) fn events(&self) -> CacheEvents {
        let mut subs = self.shared.subscribers();
        let now = self.shared.snapshot.load_full();
        let (mut tx, rx) = feed(EVENTS_CAPACITY + now.len() + 1);
        for node in now.values() {
            tx.send(CacheEvent::Created(node.clone()), || CacheEvent::Lagged);
        }
        tx.send(CacheEvent::Initialized, || CacheEvent::Lagged);
        if !subs.stopped {
            subs.feeds.push(tx);
        }
        CacheEvents { rx }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A whole subtree (its root included), kept current by a persistent recursive watch:
/// Curator's `CuratorCache`.
///
/// [`TreeCache::snapshot`] is a lock-free load of an immutable `BTreeMap` from path to
/// [`ChildData`]; [`TreeCache::events`] streams `Created`, `Changed` and `Deleted`. Changes are
/// judged by czxid and mzxid: a node deleted and created again is reported as a `Deleted`
/// and a `Created`, never as a `Changed`. After a reconnect, a lagging watch stream or a
/// renewed session the cache reloads the subtree and reports the difference, so a change made
/// meanwhile is reported exactly once (see the module docs).
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::{CacheEvent, TreeCache};
///
/// let cache = TreeCache::start(&client, "/config").await?;
/// let mut events = cache.events();
/// while let Some(event) = events.next().await {
///     match event {
///         CacheEvent::Created(node) => println!("+ {}", node.path),
///         CacheEvent::Changed { new, .. } => println!("~ {}", new.path),
///         CacheEvent::Deleted(node) => println!("- {}", node.path),
///         CacheEvent::Initialized => println!("{} nodes", cache.snapshot().len()),
///         _ => {} // Lagged: re-read cache.snapshot()
///     }
/// }
/// # Ok(()) }
/// ```
///
/// The root need not exist: it appears in the cache when it is created. The cache holds at
/// most [`TreeCache::MAX_NODES`] nodes (or the limit given to
/// [`TreeCache::start_with_limit`]): a first load beyond it fails; later, a reload beyond it
/// or a create that would pass it is not applied (a warning is logged, and the reload is
/// tried again with back-off, so the cache is behind until the tree shrinks). Each batch of
/// changes publishes a new snapshot, a copy of the map: cheap per node (data is shared), but
/// linear in the tree's size.
///
/// Dropping the cache stops its task and removes its watch.
#[derive(Debug)]
pub struct TreeCache {
    core: Core,
}

impl TreeCache {
    /// The most nodes a cache from [`TreeCache::start`] holds.
    pub const MAX_NODES: usize = 100_000;

    /// Watches `root` and its subtree, and loads them (at most [`TreeCache::MAX_NODES`]
    /// nodes).
    ///
    /// # Errors
    /// The errors of `addWatch`, `getData` and `getChildren` for the first load (reads are
    /// retried on connection loss under the default policy);
    /// [`Error::InvalidArgument`] when the subtree has more than [`TreeCache::MAX_NODES`]
    /// nodes.
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future removes the watch.
    pub async fn start(client: &Client, root: &str) -> Result<TreeCache> {
        Self::start_with_limit(client, root, Self::MAX_NODES).await
    }

    /// As [`TreeCache::start`], holding at most `max_nodes` nodes.
    ///
    /// # Errors
    /// As [`TreeCache::start`], with `max_nodes` for the limit.
    ///
    /// # Cancellation safety
    /// As [`TreeCache::start`].
    pub async fn start_with_limit(
        client: &Client,
        root: &str,
        max_nodes: usize,
    ) -> Result<TreeCache> {
        let core = Core::start(client, root, Scope::Tree(max_nodes.max(1))).await?;
        Ok(TreeCache { core })
    }

    /// The root of the cached subtree.
    pub fn root(&self) -> &str {
        self.core.path()
    }

    /// The whole subtree now, by path: a lock-free load of an immutable snapshot.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, ChildData>> {
        self.core.snapshot()
    }

    /// The node at `path` now, if the cache holds it.
    pub fn get(&self, path: &str) -> Option<ChildData> {
        self.core.get(path)
    }

    /// The children of `path` now, in name order (empty if the cache does not hold it).
    pub fn children(&self, path: &str) -> Vec<ChildData> {
        let tree = self.core.snapshot();
        below(&tree, path)
            .filter(|(k, _)| !k[prefix_len(path)..].contains('/'))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A new event stream: a `Created` for each node held now (parents first), then
    /// [`CacheEvent::Initialized`], then every change after that snapshot. Each call is a
    /// separate stream.
    pub fn events(&self) -> CacheEvents {
        self.core.events()
    }
}

/// `path/` (or `/` for the root): what the paths below `path` start with.
fn prefix_len(path: &str) -> usize {
    if path == "/" {
        1
    } else {
        path.len() + 1
    }
}

/// The nodes strictly below `path`, in path order (each after its ancestors).
fn below<'a>(tree: &'a Tree, path: &str) -> impl Iterator<Item = (&'a String, &'a ChildData)> {
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    tree.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| k.as_str() != "/")
}

/// Reads what `scope` covers under `path`: the node alone, or the subtree level by level
/// (requests pipelined, `LOAD_CHUNK` at a time). Nodes that vanish during the walk are left
/// out; the watch reports whatever changes after their reads.
async fn load(client: &Client, path: &str, scope: Scope) -> Result<Tree> {
    let max = scope.max_nodes();
    let mut tree = Tree::new();
    let mut level = vec![path.to_owned()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(LOAD_CHUNK) {
            let reads = futures::future::join_all(
                chunk.iter().map(|p| retried(move || client.get_data(p))),
            )
            .await;
            let mut parents = Vec::new();
            for (p, read) in chunk.iter().zip(reads) {
                match read {
                    Ok((data, stat)) => {
                        if tree.len() >= max {
                            return Err(too_many(path, max));
                        }
                        if stat.num_children > 0 {
                            parents.push(p.as_str());
                        }
                        tree.insert(p.clone(), node(p, data, stat));
                    }
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            if scope == Scope::Node {
                return Ok(tree);
            }
            let listings = futures::future::join_all(
                parents
                    .iter()
                    .map(|p| retried(move || client.get_children(p))),
            )
            .await;
            for (p, listing) in parents.iter().zip(listings) {
                match listing {
                    Ok(mut names) => {
                        names.sort();
                        next.extend(names.iter().map(|n| join(p, n)));
                    }
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
                if tree.len() + next.len() > max {
                    return Err(too_many(path, max));
                }
            }
        }
        level = next;
    }
    Ok(tree)
}

fn too_many(path: &str, max: usize) -> Error {
    Error::InvalidArgument(format!(
        "tree cache: more than {max} nodes under {path} (the cache's limit)"
    ))
}

fn node(path: &str, data: Vec<u8>, stat: Stat) -> ChildData {
    ChildData {
        path: path.to_owned(),
        data: data.into(),
        stat,
    }
}

/// The task of a cache: applies the watch's events to its own copy of the tree, and
/// publishes a snapshot with the events after each batch.
struct Follower {
    client: Client,
    path: String,
    scope: Scope,
    tree: Tree,
    /// Events not yet published.
    pending: Vec<CacheEvent>,
    /// The tree differs from the published snapshot.
    dirty: bool,
    shared: Arc<Shared>,
}

/// What a batch of watch items asks for, beyond its node events.
#[derive(Default)]
struct Batch {
    nodes: Vec<WatchedEvent>,
    /// Events were missed (`Resync`, `Lagged`): read everything again.
    reload: bool,
    /// The watch ended: add it again (a renewed session), or stop.
    rewatch: bool,
}

impl Follower {
    async fn run(mut self, mut watch: PersistentWatcher) {
        let mut retry_at: Option<Instant> = None;
        let mut delay = Duration::from_millis(500);
        loop {
            let mut batch = Batch::default();
            let first = match retry_at {
                Some(at) => tokio::select! {
                    item = watch.next() => Some(item),
                    _ = tokio::time::sleep_until(at) => None,
                },
                None => Some(watch.next().await),
            };
            match first {
                // The back-off of a failed reload is over.
                None => batch.reload = true,
                Some(mut item) => loop {
                    match item {
                        Some(PersistentEvent::Node(ev)) => batch.nodes.push(ev),
                        Some(PersistentEvent::Ended(_)) | None => {
                            batch.rewatch = true;
                            break;
                        }
                        Some(_) => batch.reload = true,
                    }
                    if batch.nodes.len() >= BATCH {
                        break;
                    }
                    match watch.next().now_or_never() {
                        Some(next) => item = next,
                        None => break,
                    }
                },
            }
            // A reload reads everything after these events: applying them first is not needed.
            if !batch.reload && !batch.rewatch && !self.apply(batch.nodes).await {
                batch.reload = true;
            }
            if batch.rewatch {
                match self.rewatch().await {
                    Some(w) => watch = w,
                    None => break,
                }
                batch.reload = true;
            }
            if batch.reload {
                match load(&self.client, &self.path, self.scope).await {
                    Ok(tree) => {
                        self.replace(tree);
                        self.pending.push(CacheEvent::Resynced);
                        retry_at = None;
                        delay = Duration::from_millis(500);
                    }
                    Err(e) => {
                        tracing::warn!(path = %self.path, error = %e, "cache: reload failed; retrying in {delay:?}");
                        retry_at = Some(Instant::now() + delay);
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
            self.publish();
        }
        self.publish();
        let mut subs = self.shared.subscribers();
        subs.stopped = true;
        subs.feeds.clear();
    }

    /// The watch ended (the session was lost): with a renewing client, watch again in the new
    /// session; `None` once the client is finished.
    async fn rewatch(&self) -> Option<PersistentWatcher> {
        loop {
            if self.client.state().is_terminal() {
                return None;
            }
            match self.client.add_watch(&self.path, self.scope.mode()).await {
                Ok(w) => return Some(w),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Whether a node event concerns this cache.
    fn covers(&self, ev: &WatchedEvent) -> bool {
        let kind = matches!(
            ev.event_type,
            EventType::NodeCreated | EventType::NodeDataChanged | EventType::NodeDeleted
        );
        kind && (ev.path == self.path
            || (matches!(self.scope, Scope::Tree(_))
                && ev.path.len() > prefix_len(&self.path)
                && ev.path.starts_with(&self.path)
                && (self.path == "/" || ev.path.as_bytes()[self.path.len()] == b'/')))
    }

    /// Reads the node of each event (pipelined, in order) and applies what it finds; `false`
    /// when the cache must reload (a read failed, or the node limit was reached).
    async fn apply(&mut self, events: Vec<WatchedEvent>) -> bool {
        let reads: Vec<_> = events
            .into_iter()
            .filter(|ev| self.covers(ev))
            .map(|ev| {
                let read = self.client.get_data(&ev.path);
                (ev.path, read)
            })
            .collect();
        for (path, read) in reads {
            match read.await {
                Ok((data, stat)) => {
                    if !self.put(node(&path, data, stat)) {
                        return false;
                    }
                }
                Err(Error::NoNode) => self.remove(&path),
                Err(e) => {
                    tracing::debug!(%path, error = %e, "cache: read failed; reloading");
                    return false;
                }
            }
        }
        true
    }

    /// Applies a read of one node; `false` if it is new and the tree is full.
    fn put(&mut self, new: ChildData) -> bool {
        match self.tree.get(&new.path).cloned() {
            None => {
                if self.tree.len() >= self.scope.max_nodes() {
                    tracing::warn!(path = %self.path, max = self.scope.max_nodes(), "cache: node limit reached");
                    return false;
                }
                self.pending.push(CacheEvent::Created(new.clone()));
            }
            Some(old) if old.stat.czxid != new.stat.czxid => {
                // Another node: the one held, and what was held below it from before the new
                // one's creation, are gone.
                let gone: Vec<String> = below(&self.tree, &new.path)
                    .filter(|(_, c)| c.stat.czxid < new.stat.czxid)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone.iter().rev() {
                    if let Some(c) = self.tree.remove(k) {
                        self.pending.push(CacheEvent::Deleted(c));
                    }
                }
                self.pending.push(CacheEvent::Deleted(old));
                self.pending.push(CacheEvent::Created(new.clone()));
            }
            Some(old) if new.stat.mzxid > old.stat.mzxid => {
                self.pending.push(CacheEvent::Changed {
                    old,
                    new: new.clone(),
                });
            }
            // The same data (the change was already seen); the Stat may differ otherwise (its
            // children), which is no event.
            Some(old) if new.stat.mzxid == old.stat.mzxid && old != new => {}
            Some(_) => return true,
        }
        self.dirty = true;
        self.tree.insert(new.path.clone(), new);
        true
    }

    /// The node at `path` is gone: so is everything held below it (deepest first).
    fn remove(&mut self, path: &str) {
        let mut gone: Vec<String> = below(&self.tree, path).map(|(k, _)| k.clone()).collect();
        gone.insert(0, path.to_owned());
        for k in gone.iter().rev() {
            if let Some(c) = self.tree.remove(k) {
                self.dirty = true;
                self.pending.push(CacheEvent::Deleted(c));
            }
        }
    }

    /// Takes a fresh load, with the difference from the tree held as events: deletes first
    /// (deepest first), then creates and changes (parents first).
    fn replace(&mut self, new: Tree) {
        let old = std::mem::take(&mut self.tree);
        for (k, o) in old.iter().rev() {
            match new.get(k) {
                Some(n) if n.stat.czxid == o.stat.czxid => {}
                _ => self.pending.push(CacheEvent::Deleted(o.clone())),
            }
        }
        for (k, n) in &new {
            match old.get(k) {
                Some(o) if o.stat.czxid == n.stat.czxid => {
                    if n.stat.mzxid > o.stat.mzxid {
                        self.pending.push(CacheEvent::Changed {
                            old: o.clone(),
                            new: n.clone(),
                        });
                    }
                }
                _ => self.pending.push(CacheEvent::Created(n.clone())),
            }
        }
        self.dirty |= old != new;
        self.tree = new;
    }

    /// Stores the snapshot and sends its events, under the subscribers' lock.
    fn publish(&mut self) {
        if !self.dirty && self.pending.is_empty() {
            return;
        }
        let snapshot = Arc::new(self.tree.clone());
        let events = std::mem::take(&mut self.pending);
        let mut subs = self.shared.subscribers();
        self.shared.snapshot.store(snapshot);
        subs.feeds.retain_mut(|tx| {
            events
                .iter()
                .all(|ev| tx.send(ev.clone(), || CacheEvent::Lagged) != Sent::Closed)
        });
        self.dirty = false;
    }
}
