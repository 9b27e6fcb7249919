//! [`PersistentNode`]: Curator's `PersistentNode`: a node (typically ephemeral or TTL) that
//! this process keeps in place: made again after it is deleted and after a new session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::queue::{delete_in_background, ensure_containers};
use super::retried;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::{CreateOptions, SessionEventKind};

/// A node that is recreated whenever it goes: deleted by someone, gone with an expired
/// session (a client built with [`crate::ClientBuilder::renew_session`]), or its parent reaped.
/// Its data is the last given to [`PersistentNode::set_data`]. Closing (or dropping) it
/// deletes the node.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use std::time::Duration;
/// use rookery_client::CreateOptions;
/// use rookery_client::recipes::PersistentNode;
///
/// let node = PersistentNode::start(&client, "/workers/w1", b"idle", CreateOptions::ephemeral());
/// node.wait_for_initial_create(Duration::from_secs(5)).await?;
/// node.set_data(b"busy").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PersistentNode {
    client: Client,
    path: String,
    data: Arc<Mutex<Vec<u8>>>,
    created: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PersistentNode {
    /// Keeps a node at `path` with `data`, made with `options` (its mode and ACL).
    pub fn start(client: &Client, path: &str, data: &[u8], options: CreateOptions) -> Self {
        let data = Arc::new(Mutex::new(data.to_vec()));
        let (created_tx, created) = watch::channel(false);
        let (stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(keep(
            client.clone(),
            path.to_owned(),
            data.clone(),
            options,
            created_tx,
            stop,
        ));
        PersistentNode {
            client: client.clone(),
            path: path.to_owned(),
            data,
            created,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits until the node has been made once: `Ok(false)` if `timeout` passed first.
    ///
    /// # Errors
    /// [`Error::ClientClosed`] if the node was closed.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn wait_for_initial_create(&self, timeout: Duration) -> Result<bool> {
        let mut created = self.created.clone();
        let wait = async {
            while !*created.borrow_and_update() {
                if created.changed().await.is_err() {
                    return Err(Error::ClientClosed);
                }
            }
            Ok(true)
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Ok(false))
    }

    /// Sets the node's data now and for every later re-creation.
    ///
    /// # Errors
    /// The errors of `setData` (`NoNode` is not one: the node gets the data when remade).
    ///
    /// # Cancellation safety
    /// The data is kept when this is called.
    pub async fn set_data(&self, data: &[u8]) -> Result<()> {
        if let Ok(mut d) = self.data.lock() {
            *d = data.to_vec();
        }
        match retried(|| self.client.set_data(&self.path, data, None)).await {
            Ok(_) | Err(Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops keeping the node and deletes it.
    ///
    /// # Errors
    /// None in practice (a failed task is [`Error::Protocol`]).
    ///
    /// # Cancellation safety
    /// The stop is sent when this is called.
    pub async fn close(mut self) -> Result<()> {
        self.shutdown();
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| Error::Protocol(format!("the persistent node task failed: {e}")))?;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for PersistentNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Makes the node, then waits for it to go (or a new session) and makes it again.
async fn keep(
    client: Client,
    path: String,
    data: Arc<Mutex<Vec<u8>>>,
    options: CreateOptions,
    created: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut events = client.session_events();
    loop {
        if client.state().is_terminal() {
            return;
        }
        let bytes = data.lock().map(|d| d.clone()).unwrap_or_default();
        let made = tokio::select! {
            _ = &mut stop => break,
            made = make(&client, &path, &bytes, &options, false) => made,
        };
        if let Err(e) = made {
            tracing::debug!(%path, error = %e, "persistent node: not made yet");
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
        }
        created.send_replace(true);
        let watch = match client.exists_watched(&path).await {
            Ok((Some(_), w)) => w,
            Ok((None, _)) => continue,
            Err(_) => continue,
        };
        let generation = client.session_generation();
        tokio::pin!(watch);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    delete_in_background(&client, path.clone());
                    return;
                }
                fired = &mut watch => {
                    // Deleted: make it again; changed: watch again (the outer loop checks).
                    let _ = fired;
                    break;
                }
                ev = events.next() => match ev {
                    None => return,
                    Some(e) => match e.kind {
                        SessionEventKind::Connected | SessionEventKind::Reconnected { .. }
                            if client.session_generation() != generation =>
                        {
                            break
                        }
                        SessionEventKind::Reconnected { .. } | SessionEventKind::Lagged => break,
                        _ => {}
                    },
                },
            }
        }
    }
    delete_in_background(&client, path);
}

/// Creates the node at `path`, or makes sure the one there is ours: a node of this session
/// (or any node, for a mode that is not ephemeral) is kept, its data rewritten when `rewrite`;
/// an ephemeral of another session (an earlier one of this client, not yet expired) is
/// replaced, as Curator does. Missing parents are made as containers.
pub(crate) async fn make(
    client: &Client,
    path: &str,
    data: &[u8],
    options: &CreateOptions,
    rewrite: bool,
) -> Result<()> {
    let ephemeral = options.mode.is_ephemeral();
    // Bounded: each round creates, adopts, or deletes a node of another session.
    for _ in 0..5 {
        match client.create(path, data, options).await {
            Ok(_) => return Ok(()),
            Err(Error::NoNode) => {
                ensure_containers(client, rookery_proto::path::parent(path)).await?
            }
            Err(Error::NodeExists) | Err(Error::ConnectionLoss { .. }) => {
                match retried(|| client.exists(path)).await? {
                    None => continue,
                    Some(stat) if !ephemeral || stat.ephemeral_owner == client.session_id() => {
                        if rewrite {
                            retried(|| client.set_data(path, data, None)).await?;
                        }
                        return Ok(());
                    }
                    // Another (earlier) session's node: replaced in one `multi`, so that
                    // watchers never see a gap between the delete and the create, and a node
                    // that changed meanwhile (another version) is not removed.
                    Some(stat) => match client
                        .multi()
                        .delete(path, Some(stat.version))
                        .create(path, data, options)
                        .commit()
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(Error::MultiFailed { source, .. })
                            if matches!(
                                *source,
                                Error::NoNode | Error::BadVersion | Error::NodeExists
                            ) =>
                        {
                            continue
                        }
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => return Err(e),
                    },
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::NodeExists)
}
