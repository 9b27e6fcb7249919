//! [`SharedValue`] and [`SharedCount`]: Curator's `SharedValue` / `SharedCount`: a value in
//! one node, changed by versioned compare-and-set, with a stream of changes.

use std::sync::Arc;

use rookery_proto::Stat;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::queue::ensure_containers;
use super::retried;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::types::{CreateOptions, PersistentEvent};
use crate::AddWatchMode;

/// A value and the Stat it was read with: the version for compare-and-set, the zxids to tell
/// changes apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue<T> {
    /// The value.
    pub value: T,
    /// The node's data version when it was read.
    pub version: i32,
    /// The node's mzxid when it was read (grows with every change, even across a delete and
    /// re-create, unlike the version).
    pub mzxid: i64,
}

/// Bytes in one node, shared by every process that opens the same path, as Curator's
/// `SharedValue`. [`SharedValue::updates`] follows every change (a persistent watch, re-read
/// after a reconnect, so a change made while disconnected is seen once the connection is back;
/// changes are judged by mzxid, so a node deleted and re-created with the same version still
/// counts as a change).
#[derive(Debug)]
pub struct SharedValue {
    client: Client,
    path: String,
    current: watch::Receiver<VersionedValue<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl SharedValue {
    /// Opens the value at `path`, creating it with `seed` if it does not exist.
    ///
    /// # Errors
    /// The errors of `create`, `addWatch` and `getData`.
    ///
    /// # Cancellation safety
    /// Cancellation safe (the node may have been created).
    pub async fn start(client: &Client, path: &str, seed: &[u8]) -> Result<SharedValue> {
        let create = || async {
            match client
                .create(path, seed, &CreateOptions::persistent())
                .await
            {
                Ok(_) | Err(Error::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match RetryPolicy::default().run_idempotent(create).await {
            Err(Error::NoNode) => {
                ensure_containers(client, rookery_proto::path::parent(path)).await?;
                RetryPolicy::default().run_idempotent(create).await?;
            }
            other => other?,
        }
        let watch = client.add_watch(path, AddWatchMode::Persistent).await?;
        let first = read(client, path).await?;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(follow(client.clone(), path.to_owned(), watch, tx));
        Ok(SharedValue {
            client: client.clone(),
            path: path.to_owned(),
            current: rx,
            task,
        })
    }

    /// The value as last seen.
    pub fn get(&self) -> VersionedValue<Vec<u8>> {
        self.current.borrow().clone()
    }

    /// Every change (a watch channel: a slow reader sees the latest).
    pub fn updates(&self) -> watch::Receiver<VersionedValue<Vec<u8>>> {
        self.current.clone()
    }

    /// Sets the value if the node is still at `expected`'s version: `Ok(false)` when someone
    /// changed it first.
    ///
    /// # Errors
    /// The errors of `setData` other than `BadVersion`; a connection loss after sending is
    /// returned as is (`outcome_unknown`), never retried: the caller reads back.
    ///
    /// # Cancellation safety
    /// The request is queued when this is called.
    pub async fn try_set(&self, expected: &VersionedValue<Vec<u8>>, value: &[u8]) -> Result<bool> {
        match self
            .client
            .set_data(&self.path, value, Some(expected.version))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::BadVersion) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the value whatever it is.
    ///
    /// # Errors
    /// The errors of `setData`.
    ///
    /// # Cancellation safety
    /// The request is queued when this is called.
    pub async fn set(&self, value: &[u8]) -> Result<()> {
        RetryPolicy::default()
            .run_idempotent(|| self.client.set_data(&self.path, value, None))
            .await
            .map(|_| ())
    }
}

impl Drop for SharedValue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(client: &Client, path: &str) -> Result<VersionedValue<Vec<u8>>> {
    let (value, stat): (Vec<u8>, Stat) = retried(|| client.get_data(path)).await?;
    Ok(VersionedValue {
        value,
        version: stat.version,
        mzxid: stat.mzxid,
    })
}

async fn follow(
    client: Client,
    path: String,
    mut watch: crate::PersistentWatcher,
    tx: watch::Sender<VersionedValue<Vec<u8>>>,
) {
    loop {
        match watch.next().await {
            Some(PersistentEvent::Ended(_)) | None => {
                if client.state().is_terminal() {
                    return;
                }
                // A renewed session: watch again.
                match client.add_watch(&path, AddWatchMode::Persistent).await {
                    Ok(w) => watch = w,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            // A node event, a Resync after a reconnect or a Lagged stream: read it again.
            Some(_) => {}
        }
        match read(&client, &path).await {
            Ok(v) => {
                tx.send_if_modified(|cur| {
                    let changed = cur.mzxid != v.mzxid || cur.value != v.value;
                    if changed {
                        *cur = v;
                    }
                    changed
                });
            }
            Err(Error::NoNode) => {}
            Err(e) => tracing::debug!(%path, error = %e, "shared value: re-read failed"),
        }
    }
}

/// An `i32` in one node as Curator's `SharedCount` keeps it (4 bytes, big-endian).
#[derive(Debug)]
pub struct SharedCount {
    value: Arc<SharedValue>,
}

impl SharedCount {
    /// Opens the count at `path`, creating it with `seed` if it does not exist.
    ///
    /// # Errors
    /// As [`SharedValue::start`].
    ///
    /// # Cancellation safety
    /// As [`SharedValue::start`].
    pub async fn start(client: &Client, path: &str, seed: i32) -> Result<SharedCount> {
        Ok(SharedCount {
            value: Arc::new(SharedValue::start(client, path, &seed.to_be_bytes()).await?),
        })
    }

    /// The count as last seen (0 for data that is not 4 bytes).
    pub fn get(&self) -> VersionedValue<i32> {
        decode(self.value.get())
    }

    /// Every change.
    pub fn updates(&self) -> watch::Receiver<VersionedValue<Vec<u8>>> {
        self.value.updates()
    }

    /// Sets the count if it is still at `expected`'s version: `Ok(false)` when someone changed
    /// it first.
    ///
    /// # Errors
    /// As [`SharedValue::try_set`].
    ///
    /// # Cancellation safety
    /// As [`SharedValue::try_set`].
    pub async fn try_set(&self, expected: &VersionedValue<i32>, count: i32) -> Result<bool> {
        let expected = VersionedValue {
            value: expected.value.to_be_bytes().to_vec(),
            version: expected.version,
            mzxid: expected.mzxid,
        };
        self.value.try_set(&expected, &count.to_be_bytes()).await
    }

    /// Sets the count whatever it is.
    ///
    /// # Errors
    /// As [`SharedValue::set`].
    ///
    /// # Cancellation safety
    /// As [`SharedValue::set`].
    pub async fn set(&self, count: i32) -> Result<()> {
        self.value.set(&count.to_be_bytes()).await
    }
}

/// The count in a value's bytes (Curator: `ByteBuffer.getInt`, big-endian).
pub(crate) fn decode(v: VersionedValue<Vec<u8>>) -> VersionedValue<i32> {
    let value = <[u8; 4]>::try_from(v.value.as_slice()).map_or(0, i32::from_be_bytes);
    VersionedValue {
        value,
        version: v.version,
        mzxid: v.mzxid,
    }
}
