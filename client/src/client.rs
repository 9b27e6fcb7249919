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
use tokio::sync::{mpsc, oneshot, watch};

use crate::chroot::{check_path, Chroot};
use crate::error::{Error, Result};
use crate::multi::{MultiBuilder, MultiReadBuilder};
use crate::session::driver::{Command, SessionInfo};
use crate::session::state::{Effect, Outcome, Submission};
use crate::session::watch::{WatchKind, WatchSub};
use crate::types::{CreateOptions, SessionState};
use crate::watcher::{OneshotWatcher, PersistentWatcher};
use crate::ClientBuilder;

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    max_queued: usize,
    state: watch::Receiver<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
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

type Reply = Result<(Response, Option<WatchSub>)>;

impl Client {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        max_queued: usize,
        state: watch::Receiver<SessionState>,
        info: Arc<Mutex<SessionInfo>>,
        chroot: Chroot,
    ) -> Self {
        Client {
            inner: Arc::new(Inner {
                commands,
                max_queued,
                state,
                info,
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
            .info
            .lock()
            .map(|i| i.clone())
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

    /// Queues a command for the session task now, without waiting.
    fn enqueue(&self, cmd: Command) -> Result<()> {
        self.inner.commands.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::TooManyRequests {
                limit: self.inner.max_queued,
            },
            mpsc::error::TrySendError::Closed(_) => Self::terminal_error(&self.inner.state),
        })
    }

    /// Queues `request` now and returns the future of its reply.
    fn call(
        &self,
        request: Result<Request>,
        path: String,
        effect: Effect,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let state = self.inner.state.clone();
        let queued = request.and_then(|request| {
            let (tx, rx) = oneshot::channel();
            self.enqueue(Command::Submit(Submission {
                request,
                path,
                effect,
                completion: tx,
            }))?;
            Ok(rx)
        });
        async move {
            let rx = queued?;
            let Outcome { result, watch } = rx
                .await
                .unwrap_or_else(|_| Outcome::err(Self::terminal_error(&state)));
            result.map(|r| (r, watch))
        }
    }

    /// Queues a request whose reply may leave a watch, keeping the watch even on NONODE.
    fn call_watch(
        &self,
        request: Result<Request>,
        path: String,
        effect: Effect,
    ) -> impl Future<Output = (Result<Response>, Option<WatchSub>)> + Send + 'static {
        let state = self.inner.state.clone();
        let queued = request.and_then(|request| {
            let (tx, rx) = oneshot::channel();
            self.enqueue(Command::Submit(Submission {
                request,
                path,
                effect,
                completion: tx,
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

    fn oneshot(&self, sub: Option<WatchSub>) -> Result<OneshotWatcher> {
        match sub {
            Some(WatchSub::Oneshot { id, rx }) => Ok(OneshotWatcher::new(
                id,
                rx,
                self.inner.commands.downgrade(),
                self.chroot.clone(),
            )),
            _ => Err(Error::Protocol("the server reply left no watch".into())),
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
        let fut = self.call(request, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::Multi(results), _) => Ok(results),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let chroot = self.chroot.clone();
        let req = create_request(&self.chroot, path, data, options, false);
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::Create(r), _) => Ok(chroot.strip(&r.path)),
                (Response::Create2(r), _) => Ok(chroot.strip(&r.path)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let chroot = self.chroot.clone();
        let req = create_request(&self.chroot, path, data, options, true);
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::Create2(r), _) => Ok((chroot.strip(&r.path), r.stat)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move { fut.await.map(|_| ()) }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await {
                Ok((Response::Stat(s), _)) => Ok(Some(s.stat)),
                Ok((other, _)) => Err(unexpected(other)),
                Err(Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            }
        }
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
        let this = self.clone();
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req = server_path.map(|path| Request::Exists(PathWatchRequest { path, watch: true }));
        let fut = self.call_watch(req, sp, Effect::ExistsWatch);
        async move {
            let (result, watch) = fut.await;
            let stat = match result {
                Ok(Response::Stat(s)) => Some(s.stat),
                Ok(other) => return Err(unexpected(other)),
                Err(Error::NoNode) => None,
                Err(e) => return Err(e),
            };
            Ok((stat, this.oneshot(watch)?))
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::GetData(r), _) => Ok((r.data.unwrap_or_default(), r.stat)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let this = self.clone();
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req = server_path.map(|path| Request::GetData(PathWatchRequest { path, watch: true }));
        let fut = self.call(req, sp, Effect::Watch(WatchKind::Data));
        async move {
            match fut.await? {
                (Response::GetData(r), watch) => {
                    Ok((r.data.unwrap_or_default(), r.stat, this.oneshot(watch)?))
                }
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::Stat(s), _) => Ok(s.stat),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::GetAcl(r), _) => Ok((r.acl, r.stat)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::Stat(s), _) => Ok(s.stat),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::GetChildren(r), _) => Ok(sorted(r.children)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let this = self.clone();
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req =
            server_path.map(|path| Request::GetChildren(PathWatchRequest { path, watch: true }));
        let fut = self.call(req, sp, Effect::Watch(WatchKind::Child));
        async move {
            match fut.await? {
                (Response::GetChildren(r), watch) => Ok((sorted(r.children), this.oneshot(watch)?)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::GetChildren2(r), _) => Ok((sorted(r.children), r.stat)),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let this = self.clone();
        let server_path = self.server_path(path);
        let sp = server_path.clone().unwrap_or_default();
        let req =
            server_path.map(|path| Request::GetChildren2(PathWatchRequest { path, watch: true }));
        let fut = self.call(req, sp, Effect::Watch(WatchKind::Child));
        async move {
            match fut.await? {
                (Response::GetChildren2(r), watch) => {
                    Ok((sorted(r.children), r.stat, this.oneshot(watch)?))
                }
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::AllChildrenNumber(r), _) => Ok(r.total_number),
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::GetEphemerals(r), _) => {
                    let inside = |p: &String| match chroot.path() {
                        None => true,
                        Some(root) => {
                            p == root || p.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
                        }
                    };
                    Ok(sorted(
                        r.ephemerals
                            .iter()
                            .filter(|p| inside(p))
                            .map(|p| chroot.strip(p))
                            .collect(),
                    ))
                }
                (other, _) => Err(unexpected(other)),
            }
        }
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
        let fut = self.call(req, String::new(), Effect::None);
        async move { fut.await.map(|_| ()) }
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
        let fut = self.call(req, sp, Effect::Watch(kind));
        async move {
            match fut.await? {
                (_, Some(WatchSub::Persistent { id, rx })) => Ok(PersistentWatcher::new(
                    id,
                    rx,
                    this.inner.commands.downgrade(),
                    this.chroot.clone(),
                )),
                (other, _) => Err(unexpected(other)),
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
        let fut = self.call(req, String::new(), Effect::None);
        async move { fut.await.map(|_| ()) }
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
        let fut = self.call(req, sp, Effect::RemoveLocal(watcher_type));
        async move { fut.await.map(|_| ()) }
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
        let fut = self.call(Ok(Request::WhoAmI), String::new(), Effect::None);
        async move {
            match fut.await? {
                (Response::WhoAmI(r), _) => Ok(r.client_info),
                (other, _) => Err(unexpected(other)),
            }
        }
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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_queue_is_bounded() {
        // No session task reads this queue, so it fills up.
        let (tx, _rx) = mpsc::channel(2);
        let (_state_tx, state) = watch::channel(SessionState::Disconnected);
        let client = Client::new(tx, 2, state, Arc::default(), Chroot::new(None).unwrap());
        let _a = client.get_data("/a");
        let _b = client.get_data("/b");
        let err = client.get_data("/c").await.unwrap_err();
        assert_eq!(err, Error::TooManyRequests { limit: 2 });
        assert!(err.is_retryable());
    }
}
