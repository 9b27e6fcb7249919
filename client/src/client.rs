//! The [`Client`] handle: every ZooKeeper operation, queued at call time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery_proto::consts::MAX_TTL_MS;
use rookery_proto::{
    Acl, AddWatchMode, AddWatchRequest, AuthPacket, ClientInfo, CreateMode, CreateRequest,
    CreateTtlRequest, DeleteRequest, PathRequest, PathWatchRequest, Request, Response,
    SetAclRequest, SetDataRequest, Stat, WatcherType, WatchesRequest,
};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::chroot::{check_path, Chroot};
use crate::error::{Error, Result};
use crate::events::SessionEvents;
use crate::multi::{MultiBuilder, MultiReadBuilder};
use crate::session::driver::{Command, SessionInfo, Shared};
use crate::session::state::{Effect, Outcome, Submission};
use crate::session::watch::{WatchKind, WatchSub};
use crate::types::{CreateOptions, SessionState};
use crate::watcher::{OneshotWatcher, PersistentWatcher};
use crate::ClientBuilder;

#[derive(Debug)]
struct Inner {
    /// Unbounded, so that control commands (close, a dropped watcher) always get through;
    /// requests are bounded by `permits`.
    commands: mpsc::UnboundedSender<Command>,
    /// One permit per request the client holds (queued, waiting for a connection, or in
    /// flight): `max_queued_requests` of them.
    permits: Arc<Semaphore>,
    max_queued: usize,
    state: watch::Receiver<SessionState>,
    shared: Arc<Mutex<Shared>>,
}

/// A handle to one ZooKeeper session. Cheap to clone; every clone shares the session.
///
/// # Ordering
/// Each operation is queued when the method is **called**, not when its future is first
/// polled, and requests are pipelined: the server runs them in call order, with many in flight
/// at once. So
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// let a = client.set_data("/n", b"1", None);
/// let b = client.get_data("/n");
/// let (_, (data, _)) = tokio::try_join!(a, b)?; // b sees a's write
/// assert_eq!(data, b"1");
/// # Ok(()) }
/// ```
///
/// # Errors
/// Every operation can fail with [`Error::ConnectionLoss`] (the connection broke before the
/// reply; `outcome_unknown` tells whether a write may have happened), with a terminal
/// [`Error::SessionExpired`], [`Error::AuthFailed`] or [`Error::ClientClosed`], or with
/// [`Error::InvalidArgument`] for a path that is not valid (checked before anything is sent).
/// Each method lists the server errors worth handling.
///
/// # Cancellation safety
/// Dropping an operation's future does **not** cancel the request: it was queued at call time
/// and still runs on the server; only its result is discarded. A watch that the dropped request
/// would have set is removed again.
///
/// Operations requested while the client is disconnected wait for the next connection (or fail
/// when the session expires).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    chroot: Chroot,
}

/// A reply and the watch it left, if any.
type Reply = (Result<Response>, Option<WatchSub>);

impl Client {
    pub(crate) fn new(
        commands: mpsc::UnboundedSender<Command>,
        max_queued: usize,
        state: watch::Receiver<SessionState>,
        shared: Arc<Mutex<Shared>>,
        chroot: Chroot,
    ) -> Self {
        Client {
            inner: Arc::new(Inner {
                commands,
                permits: Arc::new(Semaphore::new(max_queued)),
                max_queued,
                state,
                shared,
            }),
            chroot,
        }
    }

    /// A builder for a client of `connect_string` (`host1:2181,host2:2181/optional/chroot`).
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder::new(connect_string)
    }

    /// Connects with default settings (10 s session timeout); see [`ClientBuilder`].
    ///
    /// # Errors
    /// See [`ClientBuilder::connect`].
    ///
    /// # Cancellation safety
    /// See [`ClientBuilder::connect`].
    pub async fn connect(connect_string: &str) -> Result<Client> {
        ClientBuilder::new(connect_string).connect().await
    }

    // === session ===

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// A watch channel of the session state: `borrow()` is the current state, and
    /// `changed().await` wakes on each transition after this call (Connected, Disconnected,
    /// ConnectedReadOnly, Expired, AuthFailed, Closed). Intermediate states can be coalesced
    /// if the receiver is not polled in time, as with any watch channel.
    pub fn state_watcher(&self) -> watch::Receiver<SessionState> {
        let mut rx = self.inner.state.clone();
        // Only transitions after this call count as changes.
        rx.mark_unchanged();
        rx
    }

    /// A lossless stream of what happens to the connection and the session from this call on:
    /// `Connected`, `Suspended`, `Reconnected { same_session }`, `ReadOnly` and `Lost(reason)`,
    /// each with its session generation (see [`crate::SessionEvent`]). Unlike
    /// [`Client::state_watcher`], nothing is coalesced: a stream more than 1,024 events behind
    /// gets one `Lagged` event where the rest were dropped. The stream ends when the session
    /// task finishes (after the final `Lost`).
    pub fn session_events(&self) -> SessionEvents {
        let rx = match self.inner.shared.lock() {
            Ok(mut sh) => sh.subscribe(),
            Err(_) => mpsc::channel(1).1,
        };
        SessionEvents::new(rx)
    }

    /// The current session generation: 0 before the first session, 1 for the first, one more
    /// for each new session after it (a renewed session, or a different session given on a
    /// reconnect).
    pub fn session_generation(&self) -> u64 {
        self.info().generation
    }

    /// How long the client has been without a connection, or `None` while it is connected
    /// (or finished).
    pub fn disconnected_for(&self) -> Option<Duration> {
        self.info().disconnected_since.map(|t| t.elapsed())
    }

    /// The session id (0 before the first connection).
    pub fn session_id(&self) -> i64 {
        self.info().session_id
    }

    /// The session password, for [`ClientBuilder::resume_session`].
    pub fn session_password(&self) -> Vec<u8> {
        self.info().password
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Option<Duration> {
        self.info().timeout
    }

    /// The highest zxid seen in a reply.
    pub fn last_zxid(&self) -> i64 {
        self.info().last_zxid
    }

    /// The chroot of this handle, if any.
    pub fn chroot(&self) -> Option<&str> {
        self.chroot.path()
    }

    /// A handle on the same session with another chroot (`None` or `/` for none).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the chroot is not a valid path.
    ///
    /// # Cancellation safety
    /// Not async.
    pub fn with_chroot(&self, chroot: Option<&str>) -> Result<Client> {
        Ok(Client {
            inner: self.inner.clone(),
            chroot: Chroot::new(chroot)?,
        })
    }

    fn info(&self) -> SessionInfo {
        self.inner
            .shared
            .lock()
            .map(|sh| sh.info.clone())
            .unwrap_or_default()
    }

    fn terminal_error(state: &watch::Receiver<SessionState>) -> Error {
        let s = *state.borrow();
        if s.is_terminal() {
            s.terminal_error()
        } else {
            Error::ClientClosed
        }
    }

    /// Queues a control command for the session task now (never refused for room).
    fn enqueue(&self, cmd: Command) -> Result<()> {
        self.inner
            .commands
            .send(cmd)
            .map_err(|_| Self::terminal_error(&self.inner.state))
    }

    /// Queues `request` now (if the client holds fewer than `max_queued_requests`) and
    /// returns the future of its reply and the watch it left.
    fn submit(
        &self,
        request: Result<Request>,
        path: String,
        effect: Effect,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let state = self.inner.state.clone();
        let queued = request.and_then(|request| {
            let permit = self
                .inner
                .permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| Error::TooManyRequests {
                    limit: self.inner.max_queued,
                })?;
            let (tx, rx) = oneshot::channel();
            self.enqueue(Command::Submit(Submission {
                request,
                path,
                effect,
                completion: tx,
                permit: Some(permit),
            }))?;
            Ok(rx)
        });
        async move {
            let rx = match queued {
                Ok(rx) => rx,
                Err(e) => return (Err(e), None),
            };
            let Outcome { result, watch } = rx
                .await
                .unwrap_or_else(|_| Outcome::err(Self::terminal_error(&state)));
            (result, watch)
        }
    }

    /// Queues `request` now; a reply that `map` does not recognise (`None`) is a protocol
    /// error.
    fn call<T: Send + 'static>(
        &self,
        request: Result<Request>,
        map: impl FnOnce(Response) -> Option<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let fut = self.submit(request, String::new(), Effect::None);
        async move { expect(fut.await.0?, map) }
    }

    /// Queues a request that leaves a one-shot watch on `path` (`Err` for no path); `map`
    /// turns its result into the caller's value (so exists can keep its watch on NONODE).
    fn call_watched<T: Send + 'static>(
        &self,
        path: Result<String>,
        request: impl FnOnce(String) -> Request,
        effect: Effect,
        map: impl FnOnce(Result<Response>) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<(T, OneshotWatcher)>> + Send + 'static {
        let this = self.clone();
        let sp = path.clone().unwrap_or_default();
        let fut = self.submit(path.map(request), sp, effect);
        async move {
            let (result, watch) = fut.await;
            let value = map(result)?;
            match watch {
                Some(WatchSub::Oneshot { id, rx }) => Ok((
                    value,
                    OneshotWatcher::new(
                        id,
                        rx,
                        this.inner.commands.downgrade(),
                        this.chroot.clone(),
                    ),
                )),
                _ => Err(Error::Protocol("the server reply left no watch".into())),
            }
        }
    }

    fn server_path(&self, path: &str) -> Result<String> {
        check_path(path, false)?;
        Ok(self.chroot.apply(path))
    }

    pub(crate) fn chroot_ref(&self) -> &Chroot {
        &self.chroot
    }

    pub(crate) fn submit_multi(
        &self,
        request: Result<Request>,
    ) -> impl Future<Output = Result<Vec<rookery_proto::MultiResult>>> + Send + 'static {
        self.call(request, |r| match r {
            Response::Multi(results) => Some(results),
            _ => None,
        })
    }

    // === create and delete ===

    /// Creates a node and returns its path (with the sequence suffix for sequential modes).
    /// Plain modes use `create` (opcode 1), [`CreateMode::Container`] uses `createContainer`
    /// (19), the TTL modes use `createTTL` (21) and need [`CreateOptions::with_ttl`].
    ///
    /// # Errors
    /// [`Error::NodeExists`]; [`Error::NoNode`] (no parent);
    /// [`Error::NoChildrenForEphemerals`]; [`Error::NoAuth`]; [`Error::InvalidAcl`];
    /// [`Error::Unimplemented`] for TTL nodes on a server without extended types;
    /// [`Error::InvalidArgument`] for a bad path or a TTL that is missing, out of range or given
    /// for a non-TTL mode; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn create(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> impl Future<Output = Result<String>> + Send + 'static {
        let fut = self.create_node(path, data, options, false);
        async move { fut.await.map(|(path, _)| path) }
    }

    /// Creates a node and returns its path and [`Stat`] (`create2`, opcode 15; containers and
    /// TTL nodes as in [`Client::create`]).
    ///
    /// # Errors
    /// As [`Client::create`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn create2(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> impl Future<Output = Result<(String, Stat)>> + Send + 'static {
        let fut = self.create_node(path, data, options, true);
        async move {
            match fut.await? {
                (path, Some(stat)) => Ok((path, stat)),
                (_, None) => Err(Error::Protocol("create2 reply without a Stat".into())),
            }
        }
    }

    /// One create attempt, queued now: the path created (chroot stripped) and, for `create2`,
    /// its Stat.
    pub(crate) fn create_once(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
        with_stat: bool,
    ) -> impl Future<Output = Result<(String, Option<Stat>)>> + Send + 'static {
        let chroot = self.chroot.clone();
        let req = create_request(&self.chroot, path, data, options, with_stat);
        self.call(req, move |r| match r {
            Response::Create(r) => Some((chroot.strip(&r.path), None)),
            Response::Create2(r) => Some((chroot.strip(&r.path), Some(r.stat))),
            _ => None,
        })
    }

    /// Deletes a node if its version matches (`None`: any version).
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::BadVersion`]; [`Error::NotEmpty`]; [`Error::NoAuth`];
    /// [`Error::BadArguments`] for the system nodes; and the session errors listed on
    /// [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn delete(
        &self,
        path: &str,
        version: Option<i32>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let req = self.server_path(path).map(|path| {
            Request::Delete(DeleteRequest {
                path,
                version: version.unwrap_or(-1),
            })
        });
        self.call(req, |_| Some(()))
    }

    // === reads ===

    /// The node's [`Stat`], or `None` if it does not exist.
    ///
    /// # Errors
    /// [`Error::NoAuth`] (servers 3.8.4+/3.9.2+ check READ); and the session errors listed on
    /// [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn exists(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Stat>>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::Exists(PathWatchRequest { path, watch: false }));
        let fut = self.submit(req, String::new(), Effect::None);
        async move { exists_result(fut.await.0) }
    }

    /// As [`Client::exists`], and leaves a one-shot watch whether or not the node exists: it
    /// fires on `NodeCreated` when the node was missing, else on `NodeDataChanged` or
    /// `NodeDeleted`.
    ///
    /// # Errors
    /// As [`Client::exists`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result and
    /// removes the watch.
    pub fn exists_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Option<Stat>, OneshotWatcher)>> + Send + 'static {
        self.call_watched(
            self.server_path(path),
            |path| Request::Exists(PathWatchRequest { path, watch: true }),
            Effect::ExistsWatch,
            exists_result,
        )
    }

    /// The node's data and [`Stat`] (null data reads as empty).
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::NoAuth`]; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_data(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, Stat)>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::GetData(PathWatchRequest { path, watch: false }));
        self.call(req, data_of)
    }

    /// As [`Client::get_data`], and leaves a one-shot watch that fires on `NodeDataChanged` or
    /// `NodeDeleted`. No watch is left when the node does not exist.
    ///
    /// # Errors
    /// As [`Client::get_data`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result and
    /// removes the watch.
    pub fn get_data_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, Stat, OneshotWatcher)>> + Send + 'static {
        let fut = self.call_watched(
            self.server_path(path),
            |path| Request::GetData(PathWatchRequest { path, watch: true }),
            Effect::Watch(WatchKind::Data),
            |r| expect(r?, data_of),
        );
        async move { fut.await.map(|((data, stat), w)| (data, stat, w)) }
    }

    /// Sets the node's data if its version matches (`None`: any version); returns the new
    /// [`Stat`].
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::BadVersion`]; [`Error::NoAuth`]; and the session errors
    /// listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn set_data(
        &self,
        path: &str,
        data: &[u8],
        version: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let data = data.to_vec();
        let req = self.server_path(path).map(|path| {
            Request::SetData(SetDataRequest {
                path,
                data: Some(data),
                version: version.unwrap_or(-1),
            })
        });
        self.call(req, stat_of)
    }

    /// The node's ACL and [`Stat`]. Without ADMIN permission, digest ids come back masked.
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::NoAuth`]; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_acl(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<Acl>, Stat)>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::GetAcl(PathRequest { path }));
        self.call(req, |r| match r {
            Response::GetAcl(r) => Some((r.acl, r.stat)),
            _ => None,
        })
    }

    /// Replaces the node's ACL if its ACL version (`aversion`) matches (`None`: any).
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::BadVersion`]; [`Error::NoAuth`] (needs ADMIN);
    /// [`Error::InvalidAcl`]; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn set_acl(
        &self,
        path: &str,
        acl: Vec<Acl>,
        version: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let req = self.server_path(path).map(|path| {
            Request::SetAcl(SetAclRequest {
                path,
                acl,
                version: version.unwrap_or(-1),
            })
        });
        self.call(req, stat_of)
    }

    /// The names of the node's children (`getChildren`), sorted.
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::NoAuth`]; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_children(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::GetChildren(PathWatchRequest { path, watch: false }));
        self.call(req, children_of)
    }

    /// As [`Client::get_children`], and leaves a one-shot watch that fires on
    /// `NodeChildrenChanged` or `NodeDeleted`. No watch is left when the node does not exist.
    ///
    /// # Errors
    /// As [`Client::get_children`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result and
    /// removes the watch.
    pub fn get_children_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, OneshotWatcher)>> + Send + 'static {
        self.call_watched(
            self.server_path(path),
            |path| Request::GetChildren(PathWatchRequest { path, watch: true }),
            Effect::Watch(WatchKind::Child),
            |r| expect(r?, children_of),
        )
    }

    /// The children (sorted) and the node's own [`Stat`] (`getChildren2`).
    ///
    /// # Errors
    /// As [`Client::get_children`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_children2(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat)>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::GetChildren2(PathWatchRequest { path, watch: false }));
        self.call(req, children2_of)
    }

    /// As [`Client::get_children2`], with a one-shot child watch.
    ///
    /// # Errors
    /// As [`Client::get_children`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result and
    /// removes the watch.
    pub fn get_children2_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat, OneshotWatcher)>> + Send + 'static {
        let fut = self.call_watched(
            self.server_path(path),
            |path| Request::GetChildren2(PathWatchRequest { path, watch: true }),
            Effect::Watch(WatchKind::Child),
            |r| expect(r?, children2_of),
        );
        async move { fut.await.map(|((children, stat), w)| (children, stat, w)) }
    }

    /// The number of all descendants of the node (not only its children).
    ///
    /// # Errors
    /// [`Error::NoNode`]; [`Error::NoAuth`]; and the session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_all_children_number(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<i32>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::GetAllChildrenNumber(PathRequest { path }));
        self.call(req, |r| match r {
            Response::AllChildrenNumber(r) => Some(r.total_number),
            _ => None,
        })
    }

    /// The paths of this session's ephemeral nodes whose path starts with `prefix` (a plain
    /// string prefix, as the server compares; `/` for all), sorted, within the chroot.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `prefix` does not start with `/`; and the session errors
    /// listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn get_ephemerals(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let chroot = self.chroot.clone();
        let req = if prefix.starts_with('/') {
            Ok(Request::GetEphemerals(PathRequest {
                path: self.chroot.apply(prefix),
            }))
        } else {
            Err(Error::InvalidArgument(format!(
                "ephemeral prefix {prefix:?} must start with /"
            )))
        };
        self.call(req, move |r| {
            let Response::GetEphemerals(r) = r else {
                return None;
            };
            let inside = |p: &String| match chroot.path() {
                None => true,
                Some(root) => p == root || p.strip_prefix(root).is_some_and(|r| r.starts_with('/')),
            };
            Some(sorted(
                r.ephemerals
                    .iter()
                    .filter(|p| inside(p))
                    .map(|p| chroot.strip(p))
                    .collect(),
            ))
        })
    }

    /// Waits until the server this client is connected to has caught up with the leader for
    /// `path`, so that a read issued after it sees every write committed before it.
    ///
    /// # Errors
    /// The session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn sync(&self, path: &str) -> impl Future<Output = Result<()>> + Send + 'static {
        let req = self
            .server_path(path)
            .map(|path| Request::Sync(PathRequest { path }));
        self.call(req, |_| Some(()))
    }

    /// Makes the read that `read` issues linearizable: a `sync` of `path` is queued first and the
    /// read right behind it on the same session, so the read sees every write acknowledged to
    /// any client before this call, for one round trip. Against Rookery this holds under faults
    /// too, because its `sync` is answered only after the leader confirmed with a quorum round
    /// that it still leads; Apache ZooKeeper's `sync` has no such round (ZOOKEEPER-1675), so
    /// there a deposed leader can still answer stale.
    ///
    /// `read` must issue exactly one request with a method of this client that queues its
    /// request when called (every read method here does), such as `|c| c.get_data(path)`.
    ///
    /// # Errors
    /// The errors of `sync`, then of the read.
    ///
    /// # Cancellation safety
    /// Both requests are queued when this is called; dropping the future discards the result.
    pub fn linearizable<F, T>(
        &self,
        path: &str,
        read: impl FnOnce(&Client) -> F,
    ) -> impl Future<Output = Result<T>> + Send + 'static
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let synced = self.sync(path);
        let read = read(self);
        async move {
            synced.await?;
            read.await
        }
    }

    // === watches ===

    /// Adds a persistent watch on `path` (the node need not exist): `Persistent` reports
    /// created, deleted, data-changed and children-changed events of the node itself;
    /// `PersistentRecursive` reports created, deleted and data-changed events of the node and
    /// every descendant. Needs ZooKeeper 3.6+.
    ///
    /// # Errors
    /// [`Error::Unimplemented`] or [`Error::MarshallingError`] from servers before 3.6; and the
    /// session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result and
    /// removes the watch.
    pub fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> impl Future<Output = Result<PersistentWatcher>> + Send + 'static {
        let this = self.clone();
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req = server_path.map(|path| {
            Request::AddWatch(AddWatchRequest {
                path,
                mode: mode.code(),
            })
        });
        let kind = match mode {
            AddWatchMode::Persistent => WatchKind::Persistent,
            AddWatchMode::PersistentRecursive => WatchKind::Recursive,
        };
        let fut = self.submit(req, sp, Effect::Watch(kind));
        async move {
            match fut.await {
                (Err(e), _) => Err(e),
                (Ok(_), Some(WatchSub::Persistent { id, rx })) => Ok(PersistentWatcher::new(
                    id,
                    rx,
                    this.inner.commands.downgrade(),
                    this.chroot.clone(),
                )),
                (Ok(other), _) => Err(unexpected(other)),
            }
        }
    }

    /// Asks the server whether this session has a watch of `watcher_type` on `path`
    /// (`checkWatches`).
    ///
    /// # Errors
    /// [`Error::NoWatcher`] if it has none; [`Error::MarshallingError`] for the persistent
    /// types on servers before ZOOKEEPER-4472 (3.8.x); and the session errors listed on
    /// [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn check_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let req = self.server_path(path).map(|path| {
            Request::CheckWatches(WatchesRequest {
                path,
                watcher_type: watcher_type.code(),
            })
        });
        self.call(req, |_| Some(()))
    }

    /// Removes every watch of `watcher_type` this session has on `path`, on the server
    /// (`removeWatches`) and locally: each affected [`OneshotWatcher`] resolves with
    /// `DataWatchRemoved` or `ChildWatchRemoved`, each affected [`PersistentWatcher`] yields
    /// `PersistentWatchRemoved` and ends. (Dropping a watcher handle removes just that one.)
    ///
    /// # Errors
    /// [`Error::NoWatcher`] if the server has no such watch; [`Error::MarshallingError`] for the
    /// persistent types on servers before ZOOKEEPER-4472 (3.8.x); and the session errors listed
    /// on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn remove_all_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req = server_path.map(|path| {
            Request::RemoveWatches(WatchesRequest {
                path,
                watcher_type: watcher_type.code(),
            })
        });
        let fut = self.submit(req, sp, Effect::RemoveLocal(watcher_type));
        async move { fut.await.0.map(|_| ()) }
    }

    // === multi ===

    /// A builder for an atomic `multi` of creates, deletes, setData and version checks.
    pub fn multi(&self) -> MultiBuilder {
        MultiBuilder::new(self.clone())
    }

    /// A builder for a `multiRead` of getData and getChildren (not atomic; each read has its
    /// own result).
    pub fn multi_read(&self) -> MultiReadBuilder {
        MultiReadBuilder::new(self.clone())
    }

    // === auth and identity ===

    /// Adds credentials to the connection (`auth` packet): they are sent now if connected, and
    /// again, first of all, after every reconnect.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] if the server refuses them: the server then closes the connection
    /// and the session state becomes [`SessionState::AuthFailed`] (terminal); and the session
    /// errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The credentials are queued when this is called; dropping the future does not withdraw
    /// them.
    pub fn add_auth(
        &self,
        scheme: &str,
        auth: &[u8],
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let state = self.inner.state.clone();
        let (tx, rx) = oneshot::channel();
        let packet = AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.to_vec(),
        };
        let sent = self.enqueue(Command::Auth(packet, tx));
        async move {
            sent?;
            let out = rx
                .await
                .unwrap_or_else(|_| Outcome::err(Self::terminal_error(&state)));
            out.result.map(|_| ())
        }
    }

    /// Digest authentication as `user` with `password` (scheme `digest`, `user:password`).
    ///
    /// # Errors
    /// As [`Client::add_auth`].
    ///
    /// # Cancellation safety
    /// As [`Client::add_auth`].
    pub fn add_digest_auth(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.add_auth("digest", format!("{user}:{password}").as_bytes())
    }

    /// Every identity the server holds for this connection (`whoAmI`, ZooKeeper 3.7+), the
    /// automatic `ip` one included.
    ///
    /// # Errors
    /// [`Error::Unimplemented`] or [`Error::MarshallingError`] from servers before 3.7; and the
    /// session errors listed on [`Client`].
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn who_am_i(&self) -> impl Future<Output = Result<Vec<ClientInfo>>> + Send + 'static {
        self.call(Ok(Request::WhoAmI), |r| match r {
            Response::WhoAmI(r) => Some(r.client_info),
            _ => None,
        })
    }

    /// Closes the session: requests queued before this call are answered first, then
    /// `closeSession` is sent and the state becomes [`SessionState::Closed`]; ephemeral nodes
    /// go away at once. When disconnected, the client closes locally and the server expires the
    /// session after its timeout. Every handle shares the session, so this closes it for all.
    ///
    /// Dropping every [`Client`] handle also closes the session.
    ///
    /// # Errors
    /// None in practice: closing an already finished session (expired, closed) succeeds.
    ///
    /// # Cancellation safety
    /// The close is queued when this is called; dropping the future does not cancel it.
    pub fn close(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.enqueue(Command::Close(tx));
        async move {
            if sent.is_ok() {
                // An error only means the task finished first: the session is closed either way.
                let _ = rx.await;
            }
            Ok(())
        }
    }
}

/// Builds the create request for `options` (validated), with chroot applied.
pub(crate) fn create_request(
    chroot: &Chroot,
    path: &str,
    data: &[u8],
    options: &CreateOptions,
    with_stat: bool,
) -> Result<Request> {
    let mode = options.mode;
    check_path(path, mode.is_sequential())?;
    if options.protected {
        return Err(Error::InvalidArgument(
            "protected creates are for create and create2, not multi".into(),
        ));
    }
    let path = chroot.apply(path);
    let data = Some(data.to_vec());
    let acl = options.acl.clone();
    let flags = mode.code();
    if mode.is_ttl() {
        let ttl = options
            .ttl
            .ok_or_else(|| Error::InvalidArgument(format!("{mode:?} needs a TTL")))?;
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if !(1..=MAX_TTL_MS).contains(&ttl) {
            return Err(Error::InvalidArgument(format!(
                "TTL {ttl} ms is outside 1..={MAX_TTL_MS}"
            )));
        }
        return Ok(Request::CreateTtl(CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        }));
    }
    if options.ttl.is_some() {
        return Err(Error::InvalidArgument(format!("{mode:?} takes no TTL")));
    }
    let req = CreateRequest {
        path,
        data,
        acl,
        flags,
    };
    Ok(match mode {
        CreateMode::Container => Request::CreateContainer(req),
        _ if with_stat => Request::Create2(req),
        _ => Request::Create(req),
    })
}

pub(crate) fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected reply {r:?}"))
}

/// `map(response)`, or a protocol error for a reply of the wrong type.
fn expect<T>(response: Response, map: impl FnOnce(Response) -> Option<T>) -> Result<T> {
    let op = response_kind(&response);
    map(response).ok_or_else(|| Error::Protocol(format!("unexpected {op} reply")))
}

/// The variant name of a reply, for errors (without formatting its contents).
fn response_kind(r: &Response) -> &'static str {
    match r {
        Response::Empty => "empty",
        Response::Create(_) => "create",
        Response::Create2(_) => "create2",
        Response::Stat(_) => "stat",
        Response::GetData(_) => "getData",
        Response::GetAcl(_) => "getACL",
        Response::GetChildren(_) => "getChildren",
        Response::GetChildren2(_) => "getChildren2",
        Response::Path(_) => "path",
        Response::Multi(_) => "multi",
        Response::GetEphemerals(_) => "getEphemerals",
        Response::AllChildrenNumber(_) => "getAllChildrenNumber",
        Response::Error(_) => "error",
        Response::WhoAmI(_) => "whoAmI",
        Response::Sasl(_) => "sasl",
        _ => "other",
    }
}

fn exists_result(result: Result<Response>) -> Result<Option<Stat>> {
    match result {
        Ok(Response::Stat(s)) => Ok(Some(s.stat)),
        Ok(other) => Err(unexpected(other)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

fn data_of(r: Response) -> Option<(Vec<u8>, Stat)> {
    match r {
        Response::GetData(r) => Some((r.data.unwrap_or_default(), r.stat)),
        _ => None,
    }
}

fn stat_of(r: Response) -> Option<Stat> {
    match r {
        Response::Stat(s) => Some(s.stat),
        _ => None,
    }
}

fn children_of(r: Response) -> Option<Vec<String>> {
    match r {
        Response::GetChildren(r) => Some(sorted(r.children)),
        _ => None,
    }
}

fn children2_of(r: Response) -> Option<(Vec<String>, Stat)> {
    match r {
        Response::GetChildren2(r) => Some((sorted(r.children), r.stat)),
        _ => None,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose session task never runs: whatever it queues stays queued.
    fn unserved(limit: usize) -> (Client, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (_state_tx, state) = watch::channel(SessionState::Disconnected);
        let client = Client::new(tx, limit, state, Arc::default(), Chroot::new(None).unwrap());
        (client, rx)
    }

    #[tokio::test]
    async fn the_limit_counts_every_request_held_not_only_the_channel() {
        let (client, mut rx) = unserved(2);
        let a = client.get_data("/a");
        let b = client.get_data("/b");
        // The session task drains the channel (as the driver does while disconnected), but the
        // requests are still held: the bound stays.
        let held: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(held.len(), 2);
        let err = client.get_data("/c").await.unwrap_err();
        assert_eq!(err, Error::TooManyRequests { limit: 2 });
        assert!(err.is_retryable());
        // Answering (or failing) one gives its place back.
        let mut held = held.into_iter();
        let Some(Command::Submit(first)) = held.next() else {
            panic!("expected a request");
        };
        first.completion.send(Outcome::err(Error::NoNode)).unwrap();
        drop(first.permit);
        assert_eq!(a.await.unwrap_err(), Error::NoNode);
        let _c = client.get_data("/c");
        assert_eq!(
            client.get_data("/d").await.unwrap_err(),
            Error::TooManyRequests { limit: 2 }
        );
        drop(b);
    }

    #[tokio::test]
    async fn a_dropped_watcher_is_removed_even_when_the_client_is_full() {
        let (client, mut rx) = unserved(1);
        let _a = client.get_data("/a");
        let (_tx, watch_rx) = oneshot::channel();
        let w = OneshotWatcher::new(
            7,
            watch_rx,
            client.inner.commands.downgrade(),
            Chroot::new(None).unwrap(),
        );
        assert!(client.get_data("/b").await.is_err(), "the client is full");
        drop(w);
        let cmds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(
            matches!(cmds.last(), Some(Command::RemoveWatcher(7))),
            "{cmds:?}"
        );
    }

    #[tokio::test]
    async fn close_gets_through_a_full_client() {
        let (client, mut rx) = unserved(1);
        let _a = client.get_data("/a");
        assert!(client.get_data("/b").await.is_err());
        let close = client.close();
        let cmds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(cmds.last(), Some(Command::Close(_))), "{cmds:?}");
        drop(cmds);
        close.await.unwrap();
    }
}
