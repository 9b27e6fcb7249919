//! What every holder carries: a [`Fence`] (token and fenced writes), and how it learns that it
//! lost what it held ([`Loss`], [`LossPolicy`]).

use rookery_proto::{EventType, Stat};

use crate::client::Client;
use crate::events::SessionEvents;
use crate::multi::MultiBuilder;
use crate::types::{LossReason, SessionEventKind};
use crate::watcher::OneshotWatcher;
use crate::Error;

/// Proof of holding a node: the node, and its czxid as a fencing token.
///
/// The token is the zxid of the transaction that created the holder's node, so a later holder
/// of the same lock (or leadership) always has a larger token. A resource that remembers the
/// largest token it has seen can refuse an older holder; a ZooKeeper write can do better and
/// check the node itself in the same `multi` ([`Fence::guard`]): if the holder lost its node,
/// nothing of the multi is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    path: String,
    token: i64,
    version: i32,
}

impl Fence {
    pub(crate) fn new(path: String, stat: &Stat) -> Self {
        Fence {
            path,
            token: stat.czxid,
            version: stat.version,
        }
    }

    /// The fencing token: the czxid of the holder's node.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The holder's node.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Puts the check of the holder's node first in `multi`: the multi then fails with
    /// [`Error::MultiFailed`] (index 0, `NoNode`) once the node is gone, and none of its
    /// writes is applied.
    pub fn guard(&self, multi: MultiBuilder) -> MultiBuilder {
        multi.check(&self.path, self.version)
    }
}

/// Why a holder can no longer assume it holds what it acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Loss {
    /// The connection was lost (under [`LossPolicy::SuspendedIsLost`]): the session, and so the
    /// node, may still be there, but another holder may already act.
    Suspended,
    /// The session was lost for this reason, and the node with it.
    Session(LossReason),
    /// The session was replaced by a new one (a renewed or different session).
    NewSession,
    /// The node was deleted (by an administrator, or a session that ended meanwhile).
    NodeDeleted,
}

/// When a holder counts as having lost what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LossPolicy {
    /// On `Suspended` as well as on the loss of the session (the default; Curator's
    /// `StandardConnectionStateErrorPolicy`). Safe: a holder stops acting as soon as it cannot
    /// prove it is still connected.
    #[default]
    SuspendedIsLost,
    /// Only when the session is lost or the node deleted (Curator's
    /// `SessionConnectionStateErrorPolicy`): survives short disconnections, at the price of
    /// acting while another process may already hold the lock.
    SessionLossOnly,
}

/// The loss watch of one held node: session events since before the node was created, and a
/// watch on the node itself.
#[derive(Debug)]
pub(crate) struct Holding {
    client: Client,
    fence: Fence,
    generation: u64,
    events: SessionEvents,
    node_watch: Option<OneshotWatcher>,
    policy: LossPolicy,
    lost: Option<Loss>,
}

impl Holding {
    /// Starts watching the node of `fence` (created in `generation`; `events` subscribed
    /// before it was created, so that nothing in between is missed).
    pub(crate) async fn new(
        client: &Client,
        fence: Fence,
        generation: u64,
        events: SessionEvents,
        policy: LossPolicy,
    ) -> Result<Self, Error> {
        let (stat, watch) = super::retried(|| client.exists_watched(&fence.path)).await?;
        let mut h = Holding {
            client: client.clone(),
            fence,
            generation,
            events,
            node_watch: Some(watch),
            policy,
            lost: None,
        };
        if stat.is_none() {
            h.lost = Some(Loss::NodeDeleted);
        }
        Ok(h)
    }

    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether a loss has already been seen (without waiting).
    pub(crate) fn is_lost(&mut self) -> bool {
        while let Some(ev) = self.events.try_next() {
            self.note(ev.kind, ev.generation);
        }
        self.lost.is_some()
    }

    fn note(&mut self, kind: SessionEventKind, generation: u64) {
        if self.lost.is_some() {
            return;
        }
        self.lost = match kind {
            SessionEventKind::Suspended if self.policy == LossPolicy::SuspendedIsLost => {
                Some(Loss::Suspended)
            }
            SessionEventKind::Lost(r) => Some(Loss::Session(r)),
            SessionEventKind::Connected | SessionEventKind::Reconnected { .. }
                if generation != self.generation =>
            {
                Some(Loss::NewSession)
            }
            // Events were dropped: only a clean, connected, same-generation state is safe.
            SessionEventKind::Lagged
                if !self.client.state().is_connected()
                    || self.client.session_generation() != self.generation =>
            {
                Some(Loss::NewSession)
            }
            _ => None,
        };
    }

    /// Resolves when ownership can no longer be assumed; at once if it already was.
    ///
    /// Cancellation safe.
    pub(crate) async fn lost(&mut self) -> Loss {
        loop {
            if self.is_lost() {
                return self.lost.unwrap_or(Loss::NodeDeleted);
            }
            enum Woke {
                Event(Option<crate::types::SessionEvent>),
                Node(crate::Result<crate::WatchedEvent>),
            }
            let watch = &mut self.node_watch;
            let events = &mut self.events;
            let woke = tokio::select! {
                ev = events.next() => Woke::Event(ev),
                fired = async {
                    match watch {
                        Some(w) => w.await,
                        None => std::future::pending().await,
                    }
                } => Woke::Node(fired),
            };
            match woke {
                Woke::Event(Some(ev)) => self.note(ev.kind, ev.generation),
                Woke::Event(None) => self.lost = Some(Loss::Session(LossReason::Closed)),
                Woke::Node(fired) => {
                    self.node_watch = None;
                    match fired {
                        Ok(ev) if ev.event_type == EventType::NodeDeleted => {
                            self.lost = Some(Loss::NodeDeleted);
                        }
                        // Data changed (a revoke marker, say): watch again.
                        Ok(_) => match self.client.exists_watched(&self.fence.path).await {
                            Ok((Some(_), w)) => self.node_watch = Some(w),
                            Ok((None, _)) => self.lost = Some(Loss::NodeDeleted),
                            Err(e) => self.lost = Some(loss_of(&e)),
                        },
                        Err(e) => self.lost = Some(loss_of(&e)),
                    }
                }
            }
        }
    }
}

/// The loss an error from a watch or a request stands for.
fn loss_of(e: &Error) -> Loss {
    match e {
        Error::SessionExpired => Loss::Session(LossReason::Expired),
        Error::AuthFailed => Loss::Session(LossReason::AuthFailed),
        Error::ClientClosed => Loss::Session(LossReason::Closed),
        _ => Loss::NodeDeleted,
    }
}
