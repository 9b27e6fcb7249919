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

/// One watch notification.
///
/// A server notification has `state` [`SessionState::Connected`] and the path of the node that
/// changed (relative to the client's chroot). When the session ends, every outstanding watcher
/// gets one last event with `event_type` [`EventType::None`], the terminal `state` and an empty
/// path. [`crate::Client::remove_all_watches`] resolves the watchers it removes with
/// `DataWatchRemoved`, `ChildWatchRemoved` or `PersistentWatchRemoved`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The session state when it happened.
    pub state: SessionState,
    /// The node's path (empty for session events).
    pub path: String,
}

impl WatchedEvent {
    pub(crate) fn session(state: SessionState) -> Self {
        WatchedEvent {
            event_type: EventType::None,
            state,
            path: String::new(),
        }
    }
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
}

impl CreateOptions {
    /// Options for `mode` with the open ACL and no TTL.
    pub fn new(mode: CreateMode) -> Self {
        CreateOptions {
            mode,
            acl: OPEN_ACL_UNSAFE.clone(),
            ttl: None,
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
