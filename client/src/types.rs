//! Public value types: session states, watch events and create options.

use std::time::Duration;

use rookery_proto::{Acl, CreateMode, EventType};

use crate::acl::OPEN_ACL_UNSAFE;

/// The state of the client's session, as [`crate::Client::state_watcher`] reports it.
///
/// `Disconnected`, `Connected` and `ConnectedReadOnly` come and go; `Expired`, `AuthFailed` and
/// `Closed` are terminal: once reached, the client stays there and every call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// No server connection right now ("suspended"). The session may still be alive: the client
    /// is reconnecting, and requests made now wait until it is back (or the session expires).
    /// This is also the state before the first connection.
    Disconnected,
    /// Connected to a server that accepts reads and writes.
    Connected,
    /// Connected to a read-only server (only when the builder allowed it): reads work, writes
    /// fail with [`crate::Error::NotReadOnly`].
    ConnectedReadOnly,
    /// The session expired. Terminal.
    Expired,
    /// The server refused an authentication packet. Terminal.
    AuthFailed,
    /// The client closed the session. Terminal.
    Closed,
}

impl SessionState {
    /// Whether a server connection is up (read-write or read-only).
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            SessionState::Connected | SessionState::ConnectedReadOnly
        )
    }

    /// Whether the state is final (`Expired`, `AuthFailed` or `Closed`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }

    /// The error that calls fail with in this terminal state.
    pub(crate) fn terminal_error(self) -> crate::Error {
        match self {
            SessionState::Expired => crate::Error::SessionExpired,
            SessionState::AuthFailed => crate::Error::AuthFailed,
            _ => crate::Error::ClientClosed,
        }
    }
}

/// One watch notification from the server.
///
/// `state` is [`SessionState::Connected`] and `path` is the node that changed (relative to the
/// client's chroot). `zxid` is the transaction that fired the event, as the server sends it in
/// the notification's header (ZooKeeper 3.6+ and Rookery; -1 from servers that do not).
/// [`crate::Client::remove_all_watches`] resolves the watchers it removes with
/// `DataWatchRemoved`, `ChildWatchRemoved` or `PersistentWatchRemoved` (zxid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The session state when it happened.
    pub state: SessionState,
    /// The node's path.
    pub path: String,
    /// The zxid of the transaction that fired the event (-1 when unknown).
    pub zxid: i64,
}

/// One item of a [`crate::PersistentWatcher`] stream.
///
/// A cache built on a persistent watch applies [`PersistentEvent::Node`] items, and re-reads
/// what it watches on [`PersistentEvent::Resync`] and [`PersistentEvent::Lagged`]: ZooKeeper
/// sends no catch-up events for persistent watches, so changes made while the client was
/// disconnected, or dropped because the stream was not read, are only found by reading.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersistentEvent {
    /// A node event.
    Node(WatchedEvent),
    /// The connection was re-established (the watch is re-armed on it): events of the time
    /// without a connection are not delivered, so read the state again.
    Resync,
    /// The stream was not read fast enough and events were dropped here. The watch stays
    /// armed and later events follow; read the state again.
    Lagged,
    /// The watch can no longer fire: the session ended ([`crate::Error::SessionExpired`],
    /// [`crate::Error::AuthFailed`], [`crate::Error::ClientClosed`]) or the server refused to
    /// re-arm it after a reconnect (its error). The stream ends after this item.
    Ended(crate::Error),
}

/// Why a session was lost ([`SessionEventKind::Lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// A server said the session had expired.
    Expired,
    /// No server was heard from for the client-side expiry time
    /// ([`crate::ClientBuilder::client_expiry_factor`] times the session timeout), so the
    /// client declared the session expired itself.
    ClientExpired,
    /// A server refused the credentials.
    AuthFailed,
    /// The client was closed.
    Closed,
}

/// What happened to the connection or the session ([`crate::Client::session_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A new session was established (the first one, or a renewed one after
    /// [`SessionEventKind::Lost`] with [`crate::ClientBuilder::renew_session`]).
    Connected,
    /// The connection was lost; the session may still be alive on the servers. Requests wait
    /// for the next connection. Anything that depends on holding the session (a lock, a
    /// leadership) can no longer be assumed until `Reconnected { same_session: true }`.
    Suspended,
    /// A connection is back. `same_session` is false when the server gave a different session
    /// (a read-only client that reached a read-write server, for instance): the old session's
    /// ephemeral nodes and watches are gone.
    Reconnected {
        /// Whether the session is the one held before the connection was lost.
        same_session: bool,
    },
    /// The connection is to a read-only server (follows `Connected` or `Reconnected`).
    ReadOnly,
    /// The session is gone, for the reason given. Final, unless the client renews sessions.
    Lost(LossReason),
    /// The stream was not read fast enough and events were dropped here; read
    /// [`crate::Client::state`] and [`crate::Client::session_generation`] for the present.
    Lagged,
}

/// One item of the [`crate::Client::session_events`] stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionEvent {
    /// What happened.
    pub kind: SessionEventKind,
    /// The session generation it happened in: 1 for the client's first session, one more for
    /// each new session after it. Events of one session share a generation, so "same session"
    /// is a comparison, not a race against the next reconnect.
    pub generation: u64,
}

/// How to create a node: its mode, ACL and (for TTL modes) time to live.
///
/// ```
/// use std::time::Duration;
/// use rookery_client::{acl, CreateMode, CreateOptions};
///
/// let plain = CreateOptions::new(CreateMode::Persistent);
/// let locked = CreateOptions::new(CreateMode::Ephemeral).with_acl(acl::CREATOR_ALL_ACL.clone());
/// let ttl = CreateOptions::new(CreateMode::PersistentWithTtl).with_ttl(Duration::from_secs(60));
/// # let _ = (plain, locked, ttl);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The create mode.
    pub mode: CreateMode,
    /// The node's ACL (default: [`OPEN_ACL_UNSAFE`]).
    pub acl: Vec<Acl>,
    /// Time to live, for the TTL modes only.
    pub ttl: Option<Duration>,
    /// Curator's protected mode ([`CreateOptions::protected`]).
    pub protected: bool,
}

impl CreateOptions {
    /// Options for `mode` with the open ACL and no TTL.
    pub fn new(mode: CreateMode) -> Self {
        CreateOptions {
            mode,
            acl: OPEN_ACL_UNSAFE.clone(),
            ttl: None,
            protected: false,
        }
    }

    /// A persistent node with the open ACL.
    pub fn persistent() -> Self {
        Self::new(CreateMode::Persistent)
    }

    /// An ephemeral node with the open ACL.
    pub fn ephemeral() -> Self {
        Self::new(CreateMode::Ephemeral)
    }

    /// Replaces the ACL.
    pub fn with_acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }

    /// Curator's protected mode: the node's name gets the prefix `_c_<uuid>-` (so
    /// `/locks/lock-` becomes `/locks/_c_<uuid>-lock-0000000007` for a sequential node), and
    /// when the connection breaks before the reply, [`crate::Client::create`] looks for the
    /// node by that prefix (and, for an ephemeral node, by its owner session) instead of
    /// creating a second one. It is what makes a lost reply harmless for sequential and
    /// ephemeral nodes. For `create` and `create2` (not inside `multi`).
    pub fn protected(mut self) -> Self {
        self.protected = true;
        self
    }

    /// An ephemeral sequential node with the open ACL.
    pub fn ephemeral_sequential() -> Self {
        Self::new(CreateMode::EphemeralSequential)
    }

    /// Sets the time to live (needed by, and only allowed with, the TTL modes).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self::persistent()
    }
}
