//! Watcher handles: a one-shot watch is a future, a persistent watch is a stream. Dropping a
//! handle removes its registration (and, once no other local watcher needs it, the server-side
//! watch).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::chroot::Chroot;
use crate::session::driver::Command;
use crate::types::{SessionState, WatchedEvent};

/// Removes the registration when the handle goes away before its watch is done.
#[derive(Debug)]
struct Guard {
    id: u64,
    commands: mpsc::WeakSender<Command>,
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
                // If the queue is full the server-side watch stays until the session ends; the
                // local watcher is gone either way.
                let _ = tx.try_send(Command::RemoveWatcher(self.id));
            }
        }
    }
}

/// A one-shot watch: a future that resolves with the event that fired it.
///
/// It resolves with the first matching server event (`NodeCreated`, `NodeDeleted`,
/// `NodeDataChanged` or `NodeChildrenChanged`), or with a session event
/// ([`rookery_proto::EventType::None`]) when the session ends (`Expired`, `AuthFailed`,
/// `Closed`). Disconnections do not resolve it: the watch is re-armed on the next connection.
///
/// # Cancellation safety
/// Dropping it (or the future awaiting it) removes the watch; the server-side watch is removed
/// too once no other watcher of this client needs it.
#[derive(Debug)]
#[must_use = "a watch does nothing unless awaited; dropping it removes the watch"]
pub struct OneshotWatcher {
    rx: oneshot::Receiver<WatchedEvent>,
    guard: Guard,
}

impl OneshotWatcher {
    pub(crate) fn new(
        id: u64,
        rx: oneshot::Receiver<WatchedEvent>,
        commands: mpsc::WeakSender<Command>,
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
    type Output = WatchedEvent;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WatchedEvent> {
        let this = &mut *self;
        if !this.guard.armed {
            return Poll::Pending;
        }
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(Ok(ev)) => {
                this.guard.armed = false;
                Poll::Ready(this.guard.finish(ev))
            }
            Poll::Ready(Err(_)) => {
                // The session task is gone without a word: the client was closed.
                this.guard.armed = false;
                Poll::Ready(WatchedEvent::session(SessionState::Closed))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A persistent (or persistent recursive) watch from [`crate::Client::add_watch`]: a stream of
/// events.
///
/// It yields every event the server sends for the watch (a recursive watch reports the path of
/// the node that changed, and never `NodeChildrenChanged`). When the session ends it yields one
/// session event and then ends; after [`crate::Client::remove_all_watches`] it yields
/// `PersistentWatchRemoved` and ends. Events are buffered without limit until read.
///
/// Events that happen while the client is disconnected are not replayed for persistent
/// watches: ZooKeeper's setWatches re-registers them without catch-up events.
///
/// # Cancellation safety
/// [`PersistentWatcher::next`] is cancellation safe: no event is lost if it is dropped
/// unfinished. Dropping the watcher removes the watch.
#[derive(Debug)]
#[must_use = "dropping a watcher removes the watch"]
pub struct PersistentWatcher {
    rx: mpsc::Receiver<WatchedEvent>,
    guard: Guard,
}

impl PersistentWatcher {
    pub(crate) fn new(
        id: u64,
        rx: mpsc::Receiver<WatchedEvent>,
        commands: mpsc::WeakSender<Command>,
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

    /// The next event, or `None` once the watch has ended.
    ///
    /// # Errors
    /// None: the end of the session is an event (type `None`), then the end of the stream.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn next(&mut self) -> Option<WatchedEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for PersistentWatcher {
    type Item = WatchedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchedEvent>> {
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => Poll::Ready(Some(this.guard.finish(ev))),
            Poll::Ready(None) => {
                this.guard.armed = false;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
