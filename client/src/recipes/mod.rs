//! Coordination recipes on the public [`Client`](crate::Client) API, one file per recipe, with
//! Apache Curator's node layouts, so that a Java service on Curator 5 and a Rust service on
//! `rookery-client` share one lock, one election or one barrier on the same path.
//!
//! | Recipe | Curator | Nodes under the recipe's path |
//! |---|---|---|
//! | [`Lock`] | `InterProcessMutex` | `_c_<uuid>-lock-<seq>` (ephemeral sequential) |
//! | [`RwLock`] | `InterProcessReadWriteLock` | `_c_<uuid>-__READ__<seq>`, `_c_<uuid>-__WRIT__<seq>` |
//! | [`Semaphore`] | `InterProcessSemaphoreV2` | `locks/_c_<uuid>-lock-<seq>` (the gate), `leases/_c_<uuid>-lease-<seq>` |
//! | [`MultiLock`] | `InterProcessMultiLock` | one [`Lock`] per path, taken in sorted order |
//! | [`LeaderLatch`] | `LeaderLatch` | `_c_<uuid>-latch-<seq>`, data = participant id |
//! | [`LeaderElection`] | `LeaderSelector` | `_c_<uuid>-lock-<seq>`, data = participant id |
//! | [`Barrier`] | `DistributedBarrier` | the path itself |
//! | [`DoubleBarrier`] | `DistributedDoubleBarrier` | `<uuid>` per member (ephemeral), `ready` |
//! | [`DistributedQueue`], [`DistributedPriorityQueue`] | `DistributedQueue`, `DistributedPriorityQueue` | `queue-<seq>`, `queue-<priority><seq>` (Curator's item format) |
//! | [`LockingQueue`] | kazoo's `LockingQueue` | `entries/entry-<priority>-<seq>`, `taken/<entry>` |
//! | [`SharedValue`], [`SharedCount`] | `SharedValue`, `SharedCount` | the path itself |
//! | [`AtomicCounter`] | `DistributedAtomicLong` | the path itself (8 bytes, big-endian) |
//! | [`PersistentNode`], [`GroupMember`] | `PersistentNode`, `GroupMember` | the node; `<group>/<id>` |
//! | [`TreeCache`], [`NodeCache`] | `CuratorCache`, `NodeCache` | none (one persistent watch, recursive for the tree) |
//!
//! Missing parents are created as container nodes, as Curator's
//! `creatingParentContainersIfNeeded` does.
//!
//! What Curator does not give:
//! - **Fencing.** Every lock guard, lease and leadership carries a [`Fence`]: its node's czxid as
//!   a token that grows with every new holder, and fenced writes (a `multi` whose first
//!   operation checks the holder's node), so a holder that lost its lock cannot write.
//! - **Loss is explicit.** `lost()` on a guard resolves when ownership can no longer be assumed:
//!   always when the session is lost or the node deleted, and on `Suspended` under
//!   [`LossPolicy::SuspendedIsLost`], the default (Curator's default for leader latches).
//! - **Cancellation safety.** Dropping an acquire at any await point leaves no node behind: its
//!   cleanup is queued on the session at once (a delete, or a listing that finds the node by its
//!   protected prefix), and a protected create makes a lost reply harmless.
//!
//! No recipe here is re-entrant. An acquire through a [`Lock`] or [`RwLock`] handle (or a
//! clone of it) whose guard is still alive fails at once with
//! [`Error::AlreadyHeld`](crate::Error::AlreadyHeld) instead of waiting on itself; separate
//! handles are separate contenders, even in one process. Pass the guard instead.

mod atomic_counter;
mod barrier;
mod distributed_queue;
mod double_barrier;
mod fence;
mod group_member;
mod leader_election;
mod leader_latch;
mod lock;
mod multi_lock;
mod node_cache;
mod persistent_node;
mod queue;
mod rw_lock;
mod semaphore;
mod shared_value;
mod tree_cache;

pub use atomic_counter::{AtomicCounter, AtomicValue};
pub use barrier::Barrier;
pub use distributed_queue::{DistributedPriorityQueue, DistributedQueue, LockedItem, LockingQueue};
pub use double_barrier::DoubleBarrier;
pub use fence::{Fence, Loss, LossPolicy};
pub use group_member::GroupMember;
pub use leader_election::{LeaderElection, Leadership};
pub use leader_latch::{LatchState, LeaderLatch, Participant};
pub use lock::{Lock, LockGuard};
pub use multi_lock::{MultiLock, MultiLockGuard};
pub use node_cache::NodeCache;
pub use persistent_node::PersistentNode;
pub use rw_lock::RwLock;
pub use semaphore::{Lease, Semaphore};
pub use shared_value::{SharedCount, SharedValue, VersionedValue};
pub use tree_cache::{CacheEvent, CacheEvents, ChildData, TreeCache};

pub(crate) use persistent_node::make;
pub(crate) use queue::ensure_containers;

/// Runs a read (or another request safe to repeat as is) under the default retry policy: a
/// connection loss during a recipe waits for the next connection instead of failing it.
pub(crate) async fn retried<T, F, Fut>(op: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    crate::RetryPolicy::default().run(op).await
}

/// Waits for `fired` (a watch, or anything that fails like one) until `deadline`: `Ok(true)`
/// when it fired, `Ok(false)` on the deadline.
pub(crate) async fn until<T>(
    fired: impl std::future::Future<Output = crate::Result<T>>,
    deadline: Option<tokio::time::Instant>,
) -> crate::Result<bool> {
    match deadline {
        Some(d) => match tokio::time::timeout_at(d, fired).await {
            Err(_) => Ok(false),
            Ok(fired) => fired.map(|_| true),
        },
        None => fired.await.map(|_| true),
    }
}

/// `dir/name`, for a `dir` that may be `/`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}
