//! Watcher handles: a one-shot watch is a future, a persistent watch is a stream. Dropping a
//! handle removes its registration (and, once no other local watcher needs it, the server-side
//! watch).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::chroot::Chroot;
use crate::error::{Error, Result};
use crate::session::driver::Command;
use crate::types::{PersistentEvent, WatchedEvent};

/// Removes the registration when the handle goes away before its watch is done.
#[derive(Debug)]
struct Guard {
    id: u64,
    commands: mpsc::WeakUnboundedSender<Command>,
    chroot: Chroot,
    armed: bool,
}

impl Guard {
    fn finish(&mut self, mut ev: WatchedEvent) -> WatchedEvent {
        if !ev.path.is_empty() {
            ev.path = self.chroot.strip(&ev.path);
        }
        ev
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(tx) = self.commands.upgrade() {
                // The command channel has no bound (requests are bounded by permits), so the
                // removal always reaches the session task while it runs.
                let _ = tx.send(Command::RemoveWatcher(self.id));
            }
        }
    }
}

/// A one-shot watch: a future that resolves with the event that fired it.
///
/// It resolves with `Ok` and the first matching server event (`NodeCreated`, `NodeDeleted`,
/// `NodeDataChanged` or `NodeChildrenChanged`), or with `Err` when the watch can no longer fire:
/// the session ended ([`Error::SessionExpired`], [`Error::AuthFailed`],
/// [`Error::ClientClosed`]), or the server refused to re-arm it after a reconnect (the
/// setWatches error). Disconnections do not resolve it: the watch is re-armed on the next
/// connection, and fires there if the node changed meanwhile.
///
/// # Cancellation safety
/// Dropping it (or the future awaiting it) removes the watch; the server-side watch is removed
/// too once no other watcher of this client needs it.
#[derive(Debug)]
#[must_use = "a watch does nothing unless awaited; dropping it removes the watch"]
pub struct OneshotWatcher {
    rx: oneshot::Receiver<Result<WatchedEvent>>,
    guard: Guard,
}

impl OneshotWatcher {
    pub(crate) fn new(
        id: u64,
        rx: oneshot::Receiver<Result<WatchedEvent>>,
        commands: mpsc::WeakUnboundedSender<Command>,
        chroot: Chroot,
    ) -> Self {
        OneshotWatcher {
            rx,
            guard: Guard {
                id,
                commands,
                chroot,
                armed: true,
            },
        }
    }
}

impl Future for OneshotWatcher {
    type Output = Result<WatchedEvent>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<WatchedEvent>> {
        let this = &mut *self;
        if !this.guard.armed {
            return Poll::Pending;
        }
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(Ok(ev)) => {
                this.guard.armed = false;
                Poll::Ready(ev.map(|ev| this.guard.finish(ev)))
            }
            Poll::Ready(Err(_)) => {
                // The session task is gone without a word: the client was closed.
                this.guard.armed = false;
                Poll::Ready(Err(Error::ClientClosed))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A persistent (or persistent recursive) watch from [`crate::Client::add_watch`]: a stream of
/// events.
///
/// It yields [`PersistentEvent::Node`] for every event the server sends for the watch (a
/// recursive watch reports the path of the node that changed, and never
/// `NodeChildrenChanged`), each with the zxid that fired it. Besides:
/// - [`PersistentEvent::Resync`] after each reconnect: events that happened while the client
///   was disconnected are not replayed (ZooKeeper's setWatches re-registers persistent
///   watches without catch-up events), so a cache re-reads here;
/// - [`PersistentEvent::Lagged`] where events were dropped because the stream held 4,096
///   unread ones; the watch stays armed;
/// - [`PersistentEvent::Ended`] when the session ends or the server refuses to re-arm the
///   watch, then the end of the stream. After [`crate::Client::remove_all_watches`] it yields
///   a `PersistentWatchRemoved` node event and ends.
///
/// # Cancellation safety
/// [`PersistentWatcher::next`] is cancellation safe: no event is lost if it is dropped
/// unfinished. Dropping the watcher removes the watch.
#[derive(Debug)]
#[must_use = "dropping a watcher removes the watch"]
pub struct PersistentWatcher {
    rx: mpsc::Receiver<PersistentEvent>,
    guard: Guard,
}

impl PersistentWatcher {
    pub(crate) fn new(
        id: u64,
        rx: mpsc::Receiver<PersistentEvent>,
        commands: mpsc::WeakUnboundedSender<Command>,
        chroot: Chroot,
    ) -> Self {
        PersistentWatcher {
            rx,
            guard: Guard {
                id,
                commands,
                chroot,
                armed: true,
            },
        }
    }

    /// The next item, or `None` once the watch has ended.
    ///
    /// # Errors
    /// None: the end of the watch is an item ([`PersistentEvent::Ended`]), then the end of the
    /// stream.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn next(&mut self) -> Option<PersistentEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for PersistentWatcher {
    type Item = PersistentEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PersistentEvent>> {
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(PersistentEvent::Node(ev))) => {
                Poll::Ready(Some(PersistentEvent::Node(this.guard.finish(ev))))
            }
            Poll::Ready(Some(other)) => Poll::Ready(Some(other)),
            Poll::Ready(None) => {
                this.guard.armed = false;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
