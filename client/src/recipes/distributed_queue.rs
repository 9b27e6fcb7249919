//! Queues: [`DistributedQueue`] (FIFO) and [`DistributedPriorityQueue`] with Apache Curator's
//! node layout and item format, and [`LockingQueue`] with kazoo's layout, where an item is
//! removed only once its consumer acknowledges it.
//!
//! | Queue | Shared with | Nodes under the queue's path | Data |
//! |---|---|---|---|
//! | [`DistributedQueue`] | Curator `DistributedQueue` | `queue-<seq>` (persistent sequential) | Curator's `ItemSerializer` format |
//! | [`DistributedPriorityQueue`] | Curator `DistributedPriorityQueue` | `queue-<priority><seq>` | as above |
//! | [`LockingQueue`] | kazoo `LockingQueue` | `entries/entry-<priority %03d>-<seq>`, `taken/<entry name>` (ephemeral) | the item's bytes; the taker's id |
//!
//! Curator's `ItemSerializer` writes a node's items as the big-endian int `0x00010001` (the
//! format's version), then per item the byte `0x01`, the item's length as a big-endian int and
//! its bytes, and at the end the byte `0x02`. Curator's `putMulti` puts several items in one
//! node; a take here returns them one by one.
//!
//! # Delivery
//! - [`DistributedQueue`] and [`DistributedPriorityQueue`] deliver **at most once**, as
//!   Curator's queue without a lock path does: a consumer reads the lowest item and deletes it
//!   (with the version it read); the one whose delete succeeds has it, the others go on to the
//!   next item. An item is lost if its consumer fails after the delete (or the delete's reply is
//!   lost for good and a repeat finds the node gone: then the take fails with the connection
//!   loss, the item possibly taken).
//! - [`LockingQueue`] delivers **at least once**: [`LockingQueue::take`] holds an entry with an
//!   ephemeral `taken/<name>` node, and only [`LockedItem::ack`] deletes the entry (with the
//!   taken node, in one `multi`). A consumer that crashes, closes its client or loses its
//!   session gives its entries back with its session; a consumer whose session was lost cannot
//!   ack (the ack is fenced on the session and the taken node's version).
//!
//! Every wait is as long as the caller wants: `take` waits for an item, `take_timeout` at most
//! a given time; reads are retried across a connection loss.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery_proto::CreateMode;
use tokio::time::Instant;

use super::{ensure_containers, join, retried, until};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::names::sort_by_sequence;
use crate::retry::RetryPolicy;
use crate::types::CreateOptions;

/// Curator's item node name (`DistributedQueue.QUEUE_ITEM_NAME`).
const QUEUE_ITEM_NAME: &str = "queue-";

/// `ItemSerializer.VERSION`.
const ITEM_FORMAT_VERSION: i32 = 0x0001_0001;
/// `ItemSerializer.ITEM_OPCODE`.
const ITEM_OPCODE: u8 = 0x01;
/// `ItemSerializer.EOF_OPCODE`.
const EOF_OPCODE: u8 = 0x02;

/// Attempts of a put whose parent may be reaped (a container) between creates.
const PUT_ATTEMPTS: usize = 5;

/// Makes `path` a persistent node (`NodeExists` is success) and its missing ancestors
/// containers, as Curator's `creatingParentContainersIfNeeded().forPath(queuePath)` does.
async fn ensure_persistent(client: &Client, path: &str) -> Result<()> {
    let parent = path.rfind('/').map_or("", |i| &path[..i]);
    for _ in 0..PUT_ATTEMPTS {
        if !parent.is_empty() {
            ensure_containers(client, parent).await?;
        }
        let create = || async {
            match client.create(path, b"", &CreateOptions::persistent()).await {
                Ok(_) | Err(Error::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        };
        // A container parent may be reaped between the two creates.
        match RetryPolicy::default().run_idempotent(create).await {
            Err(Error::NoNode) => continue,
            other => return other,
        }
    }
    Err(Error::NoNode)
}

/// Curator's `ItemSerializer.serialize`: version, then `ITEM len bytes` per item, then `EOF`.
fn serialize_items<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let len = items.iter().map(|i| 5 + i.as_ref().len()).sum::<usize>();
    let mut out = Vec::with_capacity(5 + len);
    out.extend_from_slice(&ITEM_FORMAT_VERSION.to_be_bytes());
    for item in items {
        let item = item.as_ref();
        out.push(ITEM_OPCODE);
        out.extend_from_slice(&(item.len() as i32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out.push(EOF_OPCODE);
    out
}

/// Curator's `ItemSerializer.deserialize` (bytes after the EOF opcode are ignored, as there).
fn deserialize_items(bytes: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    fn int(b: &[u8], at: &mut usize) -> std::result::Result<i32, String> {
        let v = b.get(*at..*at + 4).ok_or_else(|| "truncated".to_owned())?;
        *at += 4;
        Ok(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }
    let mut at = 0;
    let version = int(bytes, &mut at)?;
    if version != ITEM_FORMAT_VERSION {
        return Err(format!(
            "version {version:#x}, not {ITEM_FORMAT_VERSION:#x}"
        ));
    }
    let mut items = Vec::new();
    loop {
        let op = *bytes.get(at).ok_or_else(|| "truncated".to_owned())?;
        at += 1;
        match op {
            EOF_OPCODE => return Ok(items),
            ITEM_OPCODE => {
                let size = int(bytes, &mut at)?;
                let size = usize::try_from(size).map_err(|_| format!("bad size {size}"))?;
                let item = bytes
                    .get(at..at + size)
                    .ok_or_else(|| "truncated".to_owned())?;
                at += size;
                items.push(item.to_vec());
            }
            other => return Err(format!("opcode {other}, not {ITEM_OPCODE}")),
        }
    }
}

/// Curator's `DistributedPriorityQueue.priorityToString`: `1` and the priority as 8 upper-case
/// hex digits for `priority >= 0`, `0` and its two's complement for a negative one, so that
/// names sort by priority (`i32::MIN` is `080000000`, -1 `0FFFFFFFF`, 0 `100000000`).
fn priority_prefix(priority: i32) -> String {
    let sign = if priority >= 0 { '1' } else { '0' };
    format!("{sign}{:08X}", priority as u32)
}

/// How a queue orders its item nodes.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// By sequence (`queue-<seq>`).
    Fifo,
    /// By name, as Curator's `Collections.sort` does: the priority prefix, then the sequence.
    Priority,
}

/// What the Curator-layout queues share: the path, the ordering, and the items of multi-item
/// nodes this handle took but has not returned yet.
#[derive(Debug, Clone)]
struct CuratorQueue {
    client: Client,
    dir: String,
    order: Order,
    /// Items whose node this handle (or a clone) deleted, not yet returned by a take.
    buffer: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl CuratorQueue {
    fn new(client: &Client, path: &str, order: Order) -> Self {
        CuratorQueue {
            client: client.clone(),
            dir: path.to_owned(),
            order,
            buffer: Arc::default(),
        }
    }

    fn pop_buffered(&self) -> Option<Vec<u8>> {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Creates `dir/<name>` (persistent sequential) with `items` serialized.
    async fn put<T: AsRef<[u8]>>(&self, name: &str, items: &[T]) -> Result<String> {
        let data = serialize_items(items);
        let path = join(&self.dir, name);
        let options = CreateOptions::new(CreateMode::PersistentSequential);
        for _ in 0..PUT_ATTEMPTS {
            // Only what was never applied is retried: a sequential create is not idempotent.
            match retried(|| self.client.create(&path, &data, &options)).await {
                Err(Error::NoNode) => ensure_persistent(&self.client, &self.dir).await?,
                other => return other,
            }
        }
        Err(Error::NoNode)
    }

    /// The item names in the order they are taken: Curator's `queue-` nodes only (others are
    /// foreign and skipped, as Curator does).
    fn sorted(&self, children: Vec<String>) -> Vec<String> {
        let mut items: Vec<String> = children
            .into_iter()
            .filter(|c| c.starts_with(QUEUE_ITEM_NAME))
            .collect();
        match self.order {
            Order::Fifo => sort_by_sequence(&mut items),
            Order::Priority => items.sort(),
        }
        items
    }

    /// Tries the items in order; the first whose delete succeeds is ours.
    async fn take_from(&self, children: Vec<String>) -> Result<Option<Vec<u8>>> {
        for name in self.sorted(children) {
            if let Some(item) = self.take_node(&name).await? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Reads `name` and deletes it with the version read: `None` if another consumer got it
    /// first (or it is not in the item format: it is left in place and skipped).
    async fn take_node(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = join(&self.dir, name);
        let (data, stat) = match retried(|| self.client.get_data(&path)).await {
            Ok(found) => found,
            Err(Error::NoNode) => return Ok(None),
            Err(e) => return Err(e),
        };
        let items = match deserialize_items(&data) {
            Ok(items) => items,
            Err(why) => {
                tracing::warn!(%path, %why, "not a queue item (Curator's format); skipped");
                return Ok(None);
            }
        };
        // The delete and what follows run on their own: if this take is dropped meanwhile, the
        // items still land in the buffer, and the next take of this handle returns them.
        let first = self.client.delete(&path, Some(stat.version));
        let client = self.client.clone();
        let buffer = self.buffer.clone();
        let deleted = tokio::spawn(async move {
            let won = match first.await {
                Ok(()) => true,
                Err(Error::NoNode | Error::BadVersion) => false,
                Err(e) if e.is_connection_loss() => {
                    // Repeat the versioned delete: success is ours; NoNode may be our first
                    // delete or another consumer's, so the item may be taken (at most once).
                    match RetryPolicy::default()
                        .run_idempotent(|| client.delete(&path, Some(stat.version)))
                        .await
                    {
                        Ok(()) => true,
                        Err(Error::NoNode | Error::BadVersion) if e.is_outcome_unknown() => {
                            return Err(e)
                        }
                        Err(Error::NoNode | Error::BadVersion) => false,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if won {
                let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
                // Before anything buffered later, so that the order holds.
                for item in items.into_iter().rev() {
                    buffer.push_front(item);
                }
            }
            Ok(won)
        });
        let won = deleted
            .await
            .map_err(|e| Error::Protocol(format!("the delete task failed: {e}")))??;
        // A node may hold no item at all (an empty putMulti): then look further.
        Ok(if won { self.pop_buffered() } else { None })
    }

    async fn try_take(&self) -> Result<Option<Vec<u8>>> {
        if let Some(item) = self.pop_buffered() {
            return Ok(Some(item));
        }
        match retried(|| self.client.get_children(&self.dir)).await {
            Ok(children) => self.take_from(children).await,
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn take_until(&self, deadline: Option<Instant>) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(item) = self.pop_buffered() {
                return Ok(Some(item));
            }
            let (children, watch) =
                match retried(|| self.client.get_children_watched(&self.dir)).await {
                    Ok(found) => found,
                    Err(Error::NoNode) => {
                        // Curator's consumers make the queue's path at start.
                        ensure_persistent(&self.client, &self.dir).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            if let Some(item) = self.take_from(children).await? {
                return Ok(Some(item));
            }
            if !until(watch, deadline).await? {
                return Ok(None);
            }
        }
    }

    async fn len(&self) -> Result<usize> {
        match retried(|| self.client.get_children(&self.dir)).await {
            Ok(children) => Ok(children
                .iter()
                .filter(|c| c.starts_with(QUEUE_ITEM_NAME))
                .count()),
            Err(Error::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// A FIFO queue on a path, shared with Curator's `DistributedQueue` on the same path: items are
/// persistent sequential nodes `queue-<seq>` holding Curator's item format, so a Curator
/// consumer takes Rust's items and the other way round.
///
/// Delivery is **at most once** (see the module docs): the consumer whose delete succeeds has
/// the item. For at-least-once consumption use [`LockingQueue`].
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::DistributedQueue;
///
/// let queue = DistributedQueue::new(&client, "/queues/jobs");
/// queue.put(b"job 1").await?;
/// assert_eq!(queue.take().await?, b"job 1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DistributedQueue {
    inner: CuratorQueue,
}

impl DistributedQueue {
    /// A queue on `path`, made when first needed as Curator makes it: a persistent node whose
    /// missing parents are containers.
    pub fn new(client: &Client, path: &str) -> Self {
        DistributedQueue {
            inner: CuratorQueue::new(client, path, Order::Fifo),
        }
    }

    /// The queue's path.
    pub fn path(&self) -> &str {
        &self.inner.dir
    }

    /// Appends an item; returns its node's path.
    ///
    /// # Errors
    /// The errors of `create`. A connection loss with an unknown outcome is returned as is: the
    /// item may or may not be in the queue (a sequential create is not repeated).
    ///
    /// # Cancellation safety
    /// The create is queued when the future first runs; dropping it afterwards may or may not
    /// leave the item in the queue.
    pub async fn put(&self, item: &[u8]) -> Result<String> {
        self.inner.put(QUEUE_ITEM_NAME, &[item]).await
    }

    /// Appends several items in one node (Curator's `putMulti`): they are taken together, by
    /// one consumer, in this order.
    ///
    /// # Errors
    /// As [`DistributedQueue::put`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::put`].
    pub async fn put_multi<T: AsRef<[u8]>>(&self, items: &[T]) -> Result<String> {
        self.inner.put(QUEUE_ITEM_NAME, items).await
    }

    /// Takes the oldest item, waiting (on a children watch) until there is one.
    ///
    /// # Errors
    /// The session errors while waiting; the errors of `getChildren`, `getData` and `delete`
    /// (a delete whose outcome stays unknown is a connection loss: the item may be taken).
    ///
    /// # Cancellation safety
    /// Dropping the future while it waits loses nothing. Once an item's delete is sent, the
    /// item goes to this handle's buffer even if the future is dropped, and the next take
    /// through this handle (or a clone) returns it; dropping the handle then loses it.
    pub async fn take(&self) -> Result<Vec<u8>> {
        self.inner
            .take_until(None)
            .await?
            .ok_or_else(|| Error::Protocol("a take without deadline timed out".into()))
    }

    /// As [`DistributedQueue::take`], waiting at most `timeout`: `Ok(None)` if no item came.
    ///
    /// # Errors
    /// As [`DistributedQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::take`].
    pub async fn take_timeout(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.inner.take_until(Some(Instant::now() + timeout)).await
    }

    /// Takes the oldest item if there is one, without waiting.
    ///
    /// # Errors
    /// As [`DistributedQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::take`].
    pub async fn try_take(&self) -> Result<Option<Vec<u8>>> {
        self.inner.try_take().await
    }

    /// The number of item nodes (a multi-item node counts once; items already taken into this
    /// handle's buffer do not count).
    ///
    /// # Errors
    /// The errors of `getChildren`; a queue never used is empty.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn len(&self) -> Result<usize> {
        self.inner.len().await
    }

    /// Whether [`DistributedQueue::len`] is 0.
    ///
    /// # Errors
    /// As [`DistributedQueue::len`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}

/// A priority queue on a path, shared with Curator's `DistributedPriorityQueue`: items are
/// `queue-<priority><seq>` nodes in Curator's item format, where `<priority>` is Curator's
/// encoding (`1` and 8 hex digits for `priority >= 0`, `0` and the two's complement for a
/// negative one), so that names sort by priority. Lower priorities come out first, FIFO within
/// a priority; any `i32` is a priority.
///
/// Delivery is **at most once**, as for [`DistributedQueue`].
#[derive(Debug, Clone)]
pub struct DistributedPriorityQueue {
    inner: CuratorQueue,
}

impl DistributedPriorityQueue {
    /// A priority queue on `path`, made when first needed as for [`DistributedQueue::new`].
    pub fn new(client: &Client, path: &str) -> Self {
        DistributedPriorityQueue {
            inner: CuratorQueue::new(client, path, Order::Priority),
        }
    }

    /// The queue's path.
    pub fn path(&self) -> &str {
        &self.inner.dir
    }

    /// Adds an item with `priority` (lower comes out first); returns its node's path.
    ///
    /// # Errors
    /// As [`DistributedQueue::put`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::put`].
    pub async fn put(&self, item: &[u8], priority: i32) -> Result<String> {
        self.put_multi(&[item], priority).await
    }

    /// Adds several items in one node with `priority` (Curator's `putMulti`).
    ///
    /// # Errors
    /// As [`DistributedQueue::put`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::put`].
    pub async fn put_multi<T: AsRef<[u8]>>(&self, items: &[T], priority: i32) -> Result<String> {
        let name = format!("{QUEUE_ITEM_NAME}{}", priority_prefix(priority));
        self.inner.put(&name, items).await
    }

    /// Takes the item of the lowest priority (the oldest among equals), waiting until there is
    /// one.
    ///
    /// # Errors
    /// As [`DistributedQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::take`].
    pub async fn take(&self) -> Result<Vec<u8>> {
        self.inner
            .take_until(None)
            .await?
            .ok_or_else(|| Error::Protocol("a take without deadline timed out".into()))
    }

    /// As [`DistributedPriorityQueue::take`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`DistributedQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::take`].
    pub async fn take_timeout(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.inner.take_until(Some(Instant::now() + timeout)).await
    }

    /// Takes the first item if there is one, without waiting.
    ///
    /// # Errors
    /// As [`DistributedQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`DistributedQueue::take`].
    pub async fn try_take(&self) -> Result<Option<Vec<u8>>> {
        self.inner.try_take().await
    }

    /// The number of item nodes.
    ///
    /// # Errors
    /// As [`DistributedQueue::len`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn len(&self) -> Result<usize> {
        self.inner.len().await
    }

    /// Whether [`DistributedPriorityQueue::len`] is 0.
    ///
    /// # Errors
    /// As [`DistributedQueue::len`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}

/// kazoo's entry name prefix (`LockingQueue.entry`).
const ENTRY_NAME: &str = "entry";
/// kazoo's default priority.
const DEFAULT_PRIORITY: u16 = 100;

/// A queue with at-least-once consumption, shared with kazoo's `LockingQueue` on the same path.
///
/// Entries are persistent sequential nodes `entries/entry-<priority %03d>-<seq>` holding the
/// item's bytes as they are; a consumer holds one by creating the ephemeral node
/// `taken/<entry name>` (holding a random id of that take), and consumers skip held entries.
/// [`LockedItem::ack`] deletes the entry and its taken node in one `multi`;
/// [`LockedItem::release`] (or dropping the item, or losing the session) gives the entry back.
/// Entries are taken in name order: lower priority first (0 to 999, default 100), then FIFO.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::recipes::LockingQueue;
///
/// let queue = LockingQueue::new(&client, "/queues/work");
/// queue.put(b"job 1").await?;
/// let item = queue.take().await?;
/// // ... process item.data() ...
/// item.ack().await?; // only now is the entry gone
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LockingQueue {
    client: Client,
    dir: String,
    entries: String,
    taken: String,
    /// Whether the structure nodes were made (by this handle or a clone).
    ensured: Arc<AtomicBool>,
}

impl LockingQueue {
    /// A locking queue on `path`: `path`, `path/entries` and `path/taken` are made as
    /// persistent nodes (as kazoo does) and missing parents as containers, when first needed.
    pub fn new(client: &Client, path: &str) -> Self {
        LockingQueue {
            client: client.clone(),
            dir: path.to_owned(),
            entries: join(path, "entries"),
            taken: join(path, "taken"),
            ensured: Arc::default(),
        }
    }

    /// The queue's path.
    pub fn path(&self) -> &str {
        &self.dir
    }

    async fn ensure_paths(&self, force: bool) -> Result<()> {
        if !force && self.ensured.load(Ordering::SeqCst) {
            return Ok(());
        }
        ensure_persistent(&self.client, &self.dir).await?;
        for dir in [&self.taken, &self.entries] {
            ensure_persistent(&self.client, dir).await?;
        }
        self.ensured.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Appends an item with kazoo's default priority 100; returns the entry's path.
    ///
    /// # Errors
    /// As [`LockingQueue::put_with_priority`].
    ///
    /// # Cancellation safety
    /// As [`LockingQueue::put_with_priority`].
    pub async fn put(&self, item: &[u8]) -> Result<String> {
        self.put_with_priority(item, DEFAULT_PRIORITY).await
    }

    /// Appends an item with `priority` (0 to 999; lower comes out first).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a priority above 999; the errors of `create`. A
    /// connection loss with an unknown outcome is returned as is: the item may or may not be
    /// in the queue.
    ///
    /// # Cancellation safety
    /// The create is queued when the future reaches it; dropping the future afterwards may or
    /// may not leave the item in the queue.
    pub async fn put_with_priority(&self, item: &[u8], priority: u16) -> Result<String> {
        if priority > 999 {
            return Err(Error::InvalidArgument(format!(
                "a locking queue's priority is 0 to 999, not {priority}"
            )));
        }
        self.ensure_paths(false).await?;
        let path = join(&self.entries, &format!("{ENTRY_NAME}-{priority:03}-"));
        let options = CreateOptions::new(CreateMode::PersistentSequential);
        for _ in 0..PUT_ATTEMPTS {
            match retried(|| self.client.create(&path, item, &options)).await {
                Err(Error::NoNode) => self.ensure_paths(true).await?,
                other => return other,
            }
        }
        Err(Error::NoNode)
    }

    /// Takes and holds the first entry no one holds, waiting (on children watches of
    /// `entries` and `taken`) until there is one. The entry stays in the queue until
    /// [`LockedItem::ack`].
    ///
    /// # Errors
    /// The session errors while waiting; the errors of `getChildren`, `create` and `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe: dropping the future at any point holds nothing (a taken node it may
    /// have made is deleted in the background, found by the take's id).
    pub async fn take(&self) -> Result<LockedItem> {
        self.take_until(None)
            .await?
            .ok_or_else(|| Error::Protocol("a take without deadline timed out".into()))
    }

    /// As [`LockingQueue::take`], waiting at most `timeout`: `Ok(None)` if no entry came.
    ///
    /// # Errors
    /// As [`LockingQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`LockingQueue::take`].
    pub async fn take_timeout(&self, timeout: Duration) -> Result<Option<LockedItem>> {
        self.take_until(Some(Instant::now() + timeout)).await
    }

    /// Takes the first free entry if there is one, without waiting.
    ///
    /// # Errors
    /// As [`LockingQueue::take`].
    ///
    /// # Cancellation safety
    /// As [`LockingQueue::take`].
    pub async fn try_take(&self) -> Result<Option<LockedItem>> {
        self.ensure_paths(false).await?;
        let entries = match retried(|| self.client.get_children(&self.entries)).await {
            Ok(c) => c,
            Err(Error::NoNode) => return Ok(None),
            Err(e) => return Err(e),
        };
        let taken = match retried(|| self.client.get_children(&self.taken)).await {
            Ok(c) => c,
            Err(Error::NoNode) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.take_first(entries, taken).await
    }

    /// The number of entries, held ones included (kazoo's `len`).
    ///
    /// # Errors
    /// The errors of `getChildren`; a queue never used is empty.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn len(&self) -> Result<usize> {
        match retried(|| self.client.get_children(&self.entries)).await {
            Ok(c) => Ok(c.len()),
            Err(Error::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether [`LockingQueue::len`] is 0.
    ///
    /// # Errors
    /// As [`LockingQueue::len`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    async fn take_until(&self, deadline: Option<Instant>) -> Result<Option<LockedItem>> {
        self.ensure_paths(false).await?;
        loop {
            let listed = async {
                let (entries, w1) =
                    retried(|| self.client.get_children_watched(&self.entries)).await?;
                let (taken, w2) = retried(|| self.client.get_children_watched(&self.taken)).await?;
                Ok::<_, Error>((entries, w1, taken, w2))
            };
            let (entries, entries_watch, taken, taken_watch) = match listed.await {
                Ok(listed) => listed,
                Err(Error::NoNode) => {
                    self.ensure_paths(true).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(item) = self.take_first(entries, taken).await? {
                return Ok(Some(item));
            }
            // A new entry, or a held one given back.
            let changed = async {
                tokio::select! {
                    fired = entries_watch => fired,
                    fired = taken_watch => fired,
                }
            };
            if !until(changed, deadline).await? {
                return Ok(None);
            }
        }
    }

    /// Tries the free entries in name order (kazoo's `sorted`); the first held is returned.
    async fn take_first(
        &self,
        mut entries: Vec<String>,
        taken: Vec<String>,
    ) -> Result<Option<LockedItem>> {
        let taken: HashSet<String> = taken.into_iter().collect();
        entries.sort();
        for name in entries.into_iter().filter(|e| !taken.contains(e)) {
            if let Some(item) = self.hold(&name).await? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Holds entry `name` by creating `taken/<name>`: `None` if someone holds it or it is gone.
    async fn hold(&self, name: &str) -> Result<Option<LockedItem>> {
        let taken_path = join(&self.taken, name);
        let entry_path = join(&self.entries, name);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut claim = Claim {
            client: self.client.clone(),
            path: taken_path.clone(),
            id: id.clone(),
            armed: true,
        };
        let created = self
            .client
            .create2(&taken_path, id.as_bytes(), &CreateOptions::ephemeral())
            .await;
        let stat = match created {
            Ok((_, stat)) => stat,
            Err(Error::NodeExists | Error::NoNode) => {
                claim.armed = false;
                return Ok(None);
            }
            Err(e) if e.is_connection_loss() => {
                // Ours if it holds this take's id.
                match retried(|| self.client.get_data(&taken_path)).await {
                    Ok((data, stat)) if data == id.as_bytes() => stat,
                    Ok(_) | Err(Error::NoNode) => {
                        claim.armed = false;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => {
                claim.armed = false;
                return Err(e);
            }
        };
        // The node must be this session's: one made by a session that ended meanwhile is no
        // hold (and is gone with it).
        let generation = self.client.session_generation();
        if stat.ephemeral_owner != self.client.session_id() {
            return Ok(None);
        }
        match retried(|| self.client.get_data(&entry_path)).await {
            Ok((data, _)) => {
                claim.armed = false;
                Ok(Some(LockedItem {
                    client: self.client.clone(),
                    name: name.to_owned(),
                    entry: entry_path,
                    taken: taken_path,
                    data,
                    version: stat.version,
                    generation,
                    done: false,
                }))
            }
            // Acked meanwhile by the holder we raced with: the claim goes.
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Deletes a taken node made by a take that did not finish, if it holds that take's id.
#[derive(Debug)]
struct Claim {
    client: Client,
    path: String,
    id: String,
    armed: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Queued now, after the create: it sees the node if the create made one.
        let read = self.client.get_data(&self.path);
        let client = self.client.clone();
        let (path, id) = (self.path.clone(), self.id.clone());
        spawn(async move {
            let found = match read.await {
                Err(e) if e.is_retryable() => retried(|| client.get_data(&path)).await,
                other => other,
            };
            if let Ok((data, stat)) = found {
                if data == id.as_bytes() && stat.ephemeral_owner == client.session_id() {
                    let _ = RetryPolicy::default()
                        .run_idempotent(|| client.delete(&path, Some(stat.version)))
                        .await;
                }
            }
        });
    }
}

/// Runs `fut` on the current runtime, if there is one.
fn spawn(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(fut);
    }
}

/// Waits until the client is connected in session `generation`: [`Error::SessionExpired`] if
/// it is in another one (the taken node went with the old session), the terminal error if the
/// client ended.
async fn same_session(client: &Client, generation: u64) -> Result<()> {
    let mut state = client.state_watcher();
    loop {
        if client.session_generation() != generation {
            return Err(Error::SessionExpired);
        }
        let now = *state.borrow_and_update();
        if now.is_terminal() {
            return Err(now.terminal_error());
        }
        if now.is_connected() {
            return Ok(());
        }
        if state.changed().await.is_err() {
            return Err(Error::ClientClosed);
        }
    }
}

/// An entry held from a [`LockingQueue`]: [`LockedItem::ack`] removes it from the queue,
/// [`LockedItem::release`] gives it back; dropping it gives it back too (the delete of the
/// taken node is queued at once).
#[derive(Debug)]
#[must_use = "dropping the item gives it back to the queue; ack it once processed"]
pub struct LockedItem {
    client: Client,
    name: String,
    entry: String,
    taken: String,
    data: Vec<u8>,
    /// The taken node's version when it was made.
    version: i32,
    /// The session generation the taken node belongs to.
    generation: u64,
    done: bool,
}

impl LockedItem {
    /// The item's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The entry's node name (`entry-<priority>-<seq>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry's path.
    pub fn path(&self) -> &str {
        &self.entry
    }

    /// Whether the entry is still held by this consumer: the session it was taken in is the
    /// client's, and its taken node is there with this session as owner (kazoo's
    /// `holds_lock`).
    ///
    /// # Errors
    /// The errors of `exists`.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn is_held(&self) -> Result<bool> {
        if self.client.session_generation() != self.generation {
            return Ok(false);
        }
        let stat = retried(|| self.client.exists(&self.taken)).await?;
        Ok(stat.is_some_and(|s| {
            s.ephemeral_owner == self.client.session_id() && s.version == self.version
        }))
    }

    /// Acknowledges the item: deletes the entry and its taken node in one `multi` that first
    /// checks the taken node's version. Fenced: an ack in a session other than the one that
    /// took the entry is refused before anything is sent, so a consumer that lost its session
    /// (and whose entry another consumer may hold now) cannot ack.
    ///
    /// # Errors
    /// [`Error::SessionExpired`] (or the client's terminal error) when the session that took
    /// the entry is gone: nothing was deleted, and the entry is another consumer's to take.
    /// [`Error::MultiFailed`] when the taken node or the entry is gone (an administrator).
    /// A connection loss whose outcome cannot be settled (the session changed before the
    /// repeat could tell) is returned as is.
    ///
    /// # Cancellation safety
    /// Dropping the future before the `multi` is sent gives the entry back; after, the ack
    /// may or may not be applied.
    pub async fn ack(mut self) -> Result<()> {
        for _ in 0..RetryPolicy::default().max_attempts() {
            // Waits for a connection in the same session; fails when the session changed.
            same_session(&self.client, self.generation).await?;
            let commit = self
                .client
                .multi()
                .check(&self.taken, self.version)
                .delete(&self.entry, None)
                .delete(&self.taken, None)
                .commit();
            self.done = true;
            match commit.await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_connection_loss() => {
                    // Settle the outcome in the same session: only this ack removes the taken
                    // node while the session lives.
                    if same_session(&self.client, self.generation).await.is_err() {
                        return Err(e);
                    }
                    match retried(|| self.client.exists(&self.taken)).await {
                        Ok(None) => return Ok(()),
                        Ok(Some(_)) => self.done = false,
                        Err(_) => return Err(e),
                    }
                }
                Err(e) => {
                    if matches!(&e, Error::MultiFailed { index, .. } if *index > 0) {
                        // The entry went without us: give the hold up.
                        self.done = false;
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::ConnectionLoss {
            outcome_unknown: true,
        })
    }

    /// Gives the entry back to the queue (deletes its taken node), unprocessed. After the loss
    /// of the session that took it, there is nothing to give back: `Ok`.
    ///
    /// # Errors
    /// The errors of `delete` other than `NoNode` and `BadVersion` (the hold is gone either
    /// way); on a connection loss the delete goes on in the background.
    ///
    /// # Cancellation safety
    /// Dropping the future gives the entry back in the background.
    pub async fn release(mut self) -> Result<()> {
        if self.client.session_generation() != self.generation {
            self.done = true;
            return Ok(());
        }
        let delete = self.client.delete(&self.taken, Some(self.version));
        self.done = true;
        match delete.await {
            Ok(()) | Err(Error::NoNode | Error::BadVersion) => Ok(()),
            Err(e) if e.is_connection_loss() => {
                self.done = false; // Drop finishes it, fenced on the session.
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockedItem {
    fn drop(&mut self) {
        if self.done || self.client.session_generation() != self.generation {
            return;
        }
        let client = self.client.clone();
        let (path, version, generation) = (self.taken.clone(), self.version, self.generation);
        spawn(async move {
            let policy = RetryPolicy::default();
            for _ in 0..policy.max_attempts() {
                if same_session(&client, generation).await.is_err() {
                    return; // Gone with the session.
                }
                match client.delete(&path, Some(version)).await {
                    Err(e) if e.is_connection_loss() || e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => return,
                }
            }
        });
    }
}
