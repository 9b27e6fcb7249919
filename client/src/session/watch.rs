//! The client's watch registry: which local watchers wait on which server path.
//!
//! The server keeps at most one watch per (session, path, table); the client fans each
//! notification out to every local watcher that it concerns, as the Java client's
//! `ZKWatchManager` does. Paths here are server paths (chroot applied).

use std::collections::HashMap;

use rookery_proto::{EventType, WatcherEvent, WatcherType};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::feed::{feed, FeedTx, Sent};
use crate::types::{PersistentEvent, SessionState, WatchedEvent};

/// Events a persistent or recursive watcher may have waiting. A watcher that falls further
/// behind (its stream is not being read) loses the events that do not fit, and its stream
/// says so with one [`PersistentEvent::Lagged`] where they would have been; the watch stays.
pub(crate) const MAX_PENDING_EVENTS: usize = 4096;

type OneshotTx = oneshot::Sender<Result<WatchedEvent>>;

/// The kinds of local watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WatchKind {
    /// Set by getData, or by exists on a node that exists.
    Data,
    /// Set by exists on a node that does not exist.
    Exist,
    /// Set by getChildren / getChildren2.
    Child,
    /// addWatch PERSISTENT.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE.
    Recursive,
}

/// The receiving end of a new registration, handed to the caller.
#[derive(Debug)]
pub(crate) enum WatchSub {
    /// A one-shot watch.
    Oneshot {
        id: u64,
        rx: oneshot::Receiver<Result<WatchedEvent>>,
    },
    /// A persistent (or persistent recursive) watch.
    Persistent {
        id: u64,
        rx: mpsc::Receiver<PersistentEvent>,
    },
}

#[derive(Debug, Default)]
struct PathWatches {
    data: Vec<(u64, OneshotTx)>,
    exist: Vec<(u64, OneshotTx)>,
    child: Vec<(u64, OneshotTx)>,
    persistent: Vec<(u64, FeedTx<PersistentEvent>)>,
    recursive: Vec<(u64, FeedTx<PersistentEvent>)>,
}

/// The marker a persistent stream gets where events were dropped.
fn lagged() -> PersistentEvent {
    PersistentEvent::Lagged
}

/// Ends every watcher of `w` with `err`.
fn end_all(w: PathWatches, err: &Error) {
    for (_, tx) in w.data.into_iter().chain(w.exist).chain(w.child) {
        let _ = tx.send(Err(err.clone()));
    }
    for (_, tx) in w.persistent.into_iter().chain(w.recursive) {
        tx.send_last(PersistentEvent::Ended(err.clone()));
    }
}

impl PathWatches {
    /// Moves the watchers of `kind` out into a value of their own.
    fn take(&mut self, kind: WatchKind) -> PathWatches {
        let mut out = PathWatches::default();
        match kind {
            WatchKind::Data => out.data = std::mem::take(&mut self.data),
            WatchKind::Exist => out.exist = std::mem::take(&mut self.exist),
            WatchKind::Child => out.child = std::mem::take(&mut self.child),
            WatchKind::Persistent => out.persistent = std::mem::take(&mut self.persistent),
            WatchKind::Recursive => out.recursive = std::mem::take(&mut self.recursive),
        }
        out
    }

    fn ids(&self) -> Vec<u64> {
        let oneshot = self.data.iter().chain(&self.exist).chain(&self.child);
        let streams = self.persistent.iter().chain(&self.recursive);
        oneshot
            .map(|(id, _)| *id)
            .chain(streams.map(|(id, _)| *id))
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }

    fn remove_id(&mut self, id: u64, kind: WatchKind) -> bool {
        fn take<T>(v: &mut Vec<(u64, T)>, id: u64) -> bool {
            let before = v.len();
            v.retain(|(i, _)| *i != id);
            v.len() != before
        }
        match kind {
            WatchKind::Data => take(&mut self.data, id),
            WatchKind::Exist => take(&mut self.exist, id),
            WatchKind::Child => take(&mut self.child, id),
            WatchKind::Persistent => take(&mut self.persistent, id),
            WatchKind::Recursive => take(&mut self.recursive, id),
        }
    }
}

/// The watch lists to re-arm after a reconnect, as setWatches/setWatches2 carry them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WatchLists {
    pub(crate) data: Vec<String>,
    pub(crate) exist: Vec<String>,
    pub(crate) child: Vec<String>,
    pub(crate) persistent: Vec<String>,
    pub(crate) recursive: Vec<String>,
}

/// Every local watcher, by server path.
#[derive(Debug, Default)]
pub(crate) struct WatchRegistry {
    next_id: u64,
    paths: HashMap<String, PathWatches>,
    by_id: HashMap<u64, (String, WatchKind)>,
}

impl WatchRegistry {
    fn alloc_id(&mut self, path: &str, kind: WatchKind) -> u64 {
        self.next_id += 1;
        self.by_id.insert(self.next_id, (path.to_owned(), kind));
        self.next_id
    }

    /// Registers a watcher of `kind` on `path`.
    pub(crate) fn add(&mut self, path: &str, kind: WatchKind) -> WatchSub {
        let id = self.alloc_id(path, kind);
        let entry = self.paths.entry(path.to_owned()).or_default();
        match kind {
            WatchKind::Data | WatchKind::Exist | WatchKind::Child => {
                let (tx, rx) = oneshot::channel();
                let list = match kind {
                    WatchKind::Data => &mut entry.data,
                    WatchKind::Exist => &mut entry.exist,
                    _ => &mut entry.child,
                };
                list.push((id, tx));
                WatchSub::Oneshot { id, rx }
            }
            WatchKind::Persistent | WatchKind::Recursive => {
                let (tx, rx) = feed(MAX_PENDING_EVENTS);
                if kind == WatchKind::Persistent {
                    entry.persistent.push((id, tx));
                } else {
                    entry.recursive.push((id, tx));
                }
                WatchSub::Persistent { id, rx }
            }
        }
    }

    /// Removes the watcher `id`; returns its path and kind, or `None` if it is not registered
    /// (it fired already, or was removed).
    pub(crate) fn remove(&mut self, id: u64) -> Option<(String, WatchKind)> {
        let (path, kind) = self.by_id.remove(&id)?;
        if let Some(entry) = self.paths.get_mut(&path) {
            entry.remove_id(id, kind);
            if entry.is_empty() {
                self.paths.remove(&path);
            }
        }
        Some((path, kind))
    }

    /// The removeWatches type to send after the last watcher of `kind` on `path` went away, or
    /// `None` while some other local watcher still needs the server-side watch.
    ///
    /// Servers before ZOOKEEPER-4472 (3.8.x) remove every mode of a table at once, so a
    /// standard watch is only removed when no persistent one shares the path, and the other
    /// way round the caller falls back to `Any` only when the path has no watcher left.
    pub(crate) fn server_removal(&self, path: &str, kind: WatchKind) -> Option<WatcherType> {
        let empty = PathWatches::default();
        let w = self.paths.get(path).unwrap_or(&empty);
        let persistent_free = w.persistent.is_empty() && w.recursive.is_empty();
        match kind {
            WatchKind::Data | WatchKind::Exist => {
                (w.data.is_empty() && w.exist.is_empty() && persistent_free)
                    .then_some(WatcherType::Data)
            }
            WatchKind::Child => {
                (w.child.is_empty() && persistent_free).then_some(WatcherType::Children)
            }
            WatchKind::Persistent => w.persistent.is_empty().then_some(WatcherType::Persistent),
            WatchKind::Recursive => w
                .recursive
                .is_empty()
                .then_some(WatcherType::PersistentRecursive),
        }
    }

    /// Whether no local watcher at all is left on `path`.
    pub(crate) fn path_is_free(&self, path: &str) -> bool {
        self.paths.get(path).is_none_or(PathWatches::is_empty)
    }

    /// Delivers a server notification to every watcher it concerns. One-shot watchers that
    /// fire are removed; persistent watchers whose stream was dropped are removed too, and
    /// returned (path, kind) so that the caller can clean up the server side.
    pub(crate) fn dispatch(
        &mut self,
        ev: &WatcherEvent,
        zxid: i64,
    ) -> Vec<(u64, String, WatchKind)> {
        let Some(ty) = EventType::from_code(ev.event_type) else {
            return Vec::new();
        };
        let event = WatchedEvent {
            event_type: ty,
            state: SessionState::Connected,
            path: ev.path.clone(),
            zxid,
        };
        let mut fired: Vec<(u64, OneshotTx)> = Vec::new();
        let mut dead = Vec::new();
        if let Some(w) = self.paths.get_mut(&ev.path) {
            match ty {
                EventType::NodeCreated | EventType::NodeDataChanged => {
                    fired.append(&mut w.data);
                    fired.append(&mut w.exist);
                }
                EventType::NodeDeleted => {
                    fired.append(&mut w.data);
                    fired.append(&mut w.exist);
                    fired.append(&mut w.child);
                }
                EventType::NodeChildrenChanged => fired.append(&mut w.child),
                _ => {}
            }
            for (id, tx) in &mut w.persistent {
                if tx.send(PersistentEvent::Node(event.clone()), lagged) == Sent::Closed {
                    dead.push((*id, WatchKind::Persistent));
                }
            }
        }
        if ty != EventType::NodeChildrenChanged {
            for ancestor in ancestors_and_self(&ev.path) {
                if let Some(w) = self.paths.get_mut(ancestor) {
                    for (id, tx) in &mut w.recursive {
                        if tx.send(PersistentEvent::Node(event.clone()), lagged) == Sent::Closed {
                            dead.push((*id, WatchKind::Recursive));
                        }
                    }
                }
            }
        }
        for (id, tx) in fired {
            self.by_id.remove(&id);
            // A receiver dropped before its watch fired: nothing to deliver, nothing to remove.
            let _ = tx.send(Ok(event.clone()));
        }
        if self.paths.get(&ev.path).is_some_and(PathWatches::is_empty) {
            self.paths.remove(&ev.path);
        }
        dead.into_iter()
            .filter_map(|(id, _)| self.remove(id).map(|(p, k)| (id, p, k)))
            .collect()
    }

    /// Removes every watcher of `ty` on `path` after a successful removeWatches, and tells each
    /// with a `*WatchRemoved` event (persistent streams then end).
    pub(crate) fn remove_all(&mut self, path: &str, ty: WatcherType) {
        let Some(w) = self.paths.get_mut(path) else {
            return;
        };
        let removed = |t: EventType| WatchedEvent {
            event_type: t,
            state: SessionState::Connected,
            path: path.to_owned(),
            zxid: -1,
        };
        let mut oneshots = Vec::new();
        let mut streams = Vec::new();
        let (data, child, persistent, recursive) = match ty {
            WatcherType::Data => (true, false, false, false),
            WatcherType::Children => (false, true, false, false),
            WatcherType::Any => (true, true, true, true),
            WatcherType::Persistent => (false, false, true, false),
            WatcherType::PersistentRecursive => (false, false, false, true),
        };
        if data {
            oneshots.extend(
                w.data
                    .drain(..)
                    .chain(w.exist.drain(..))
                    .map(|x| (x, EventType::DataWatchRemoved)),
            );
        }
        if child {
            oneshots.extend(w.child.drain(..).map(|x| (x, EventType::ChildWatchRemoved)));
        }
        if persistent {
            streams.append(&mut w.persistent);
        }
        if recursive {
            streams.append(&mut w.recursive);
        }
        if w.is_empty() {
            self.paths.remove(path);
        }
        for ((id, tx), t) in oneshots {
            self.by_id.remove(&id);
            let _ = tx.send(Ok(removed(t)));
        }
        for (id, tx) in streams {
            self.by_id.remove(&id);
            tx.send_last(PersistentEvent::Node(removed(
                EventType::PersistentWatchRemoved,
            )));
        }
    }

    /// The lists to re-arm with setWatches, sorted for determinism.
    pub(crate) fn lists(&self) -> WatchLists {
        let mut l = WatchLists::default();
        for (path, w) in &self.paths {
            if !w.data.is_empty() {
                l.data.push(path.clone());
            }
            if !w.exist.is_empty() {
                l.exist.push(path.clone());
            }
            if !w.child.is_empty() {
                l.child.push(path.clone());
            }
            if !w.persistent.is_empty() {
                l.persistent.push(path.clone());
            }
            if !w.recursive.is_empty() {
                l.recursive.push(path.clone());
            }
        }
        for v in [
            &mut l.data,
            &mut l.exist,
            &mut l.child,
            &mut l.persistent,
            &mut l.recursive,
        ] {
            v.sort();
        }
        l
    }

    /// Ends every watcher with `err` (the session is over).
    pub(crate) fn terminate(&mut self, err: &Error) {
        for (_, w) in self.paths.drain() {
            end_all(w, err);
        }
        self.by_id.clear();
    }

    /// Tells every persistent and recursive watcher that the connection is back (their events
    /// of the time without one are lost); returns the watchers whose stream was dropped.
    pub(crate) fn resync(&mut self) -> Vec<(u64, String, WatchKind)> {
        let mut dead = Vec::new();
        for w in self.paths.values_mut() {
            for (id, tx) in w.persistent.iter_mut().chain(w.recursive.iter_mut()) {
                if tx.send(PersistentEvent::Resync, lagged) == Sent::Closed {
                    dead.push(*id);
                }
            }
        }
        dead.into_iter()
            .filter_map(|id| self.remove(id).map(|(p, k)| (id, p, k)))
            .collect()
    }

    /// The server refused to re-arm `lists` (a failed setWatches): those watchers can never
    /// fire, so each is removed and ends with `err`.
    pub(crate) fn fail(&mut self, lists: &WatchLists, err: &Error) {
        let tables = [
            (&lists.data, WatchKind::Data),
            (&lists.exist, WatchKind::Exist),
            (&lists.child, WatchKind::Child),
            (&lists.persistent, WatchKind::Persistent),
            (&lists.recursive, WatchKind::Recursive),
        ];
        for (paths, kind) in tables {
            for path in paths {
                let Some(w) = self.paths.get_mut(path) else {
                    continue;
                };
                let failed = w.take(kind);
                if w.is_empty() {
                    self.paths.remove(path);
                }
                for id in failed.ids() {
                    self.by_id.remove(&id);
                }
                tracing::warn!(%path, error = %err, "the server refused to re-arm a watch");
                end_all(failed, err);
            }
        }
    }

    /// Number of registered watchers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// `path` and each of its ancestors up to `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = match cur {
            "/" => None,
            _ => Some(rookery_proto::path::parent(cur)),
        };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ty: EventType, path: &str) -> WatcherEvent {
        WatcherEvent {
            event_type: ty.code(),
            state: 3,
            path: path.into(),
        }
    }

    type OneshotRx = oneshot::Receiver<Result<WatchedEvent>>;

    fn oneshot_rx(sub: WatchSub) -> OneshotRx {
        match sub {
            WatchSub::Oneshot { rx, .. } => rx,
            WatchSub::Persistent { .. } => panic!("expected a one-shot watch"),
        }
    }

    fn stream_rx(sub: WatchSub) -> mpsc::Receiver<PersistentEvent> {
        match sub {
            WatchSub::Persistent { rx, .. } => rx,
            WatchSub::Oneshot { .. } => panic!("expected a persistent watch"),
        }
    }

    /// The one-shot event that fired.
    fn fired(rx: &mut OneshotRx) -> WatchedEvent {
        rx.try_recv()
            .expect("fired")
            .expect("an event, not an error")
    }

    /// The next node event of a stream.
    fn node(rx: &mut mpsc::Receiver<PersistentEvent>) -> WatchedEvent {
        match rx.try_recv() {
            Ok(PersistentEvent::Node(e)) => e,
            other => panic!("expected a node event, got {other:?}"),
        }
    }

    #[test]
    fn a_persistent_watcher_that_is_not_read_lags_and_stays() {
        let mut w = WatchRegistry::default();
        let mut rx = stream_rx(w.add("/p", WatchKind::Persistent));
        for zxid in 0..MAX_PENDING_EVENTS as i64 {
            assert!(w
                .dispatch(&ev(EventType::NodeDataChanged, "/p"), zxid)
                .is_empty());
        }
        // More than the stream holds: the rest are dropped behind one Lagged marker, and the
        // watcher stays registered.
        for zxid in 0..10 {
            assert!(w
                .dispatch(&ev(EventType::NodeDataChanged, "/p"), 10_000 + zxid)
                .is_empty());
        }
        assert!(!w.path_is_free("/p"));
        assert_eq!(rx.len(), MAX_PENDING_EVENTS + 1);
        for zxid in 0..MAX_PENDING_EVENTS as i64 {
            assert_eq!(node(&mut rx).zxid, zxid);
        }
        assert_eq!(rx.try_recv().unwrap(), PersistentEvent::Lagged);
        // Read again: later events flow.
        w.dispatch(&ev(EventType::NodeDeleted, "/p"), 20_000);
        let e = node(&mut rx);
        assert_eq!((e.event_type, e.zxid), (EventType::NodeDeleted, 20_000));
    }

    #[test]
    fn ancestors() {
        let v: Vec<_> = ancestors_and_self("/a/b/c").collect();
        assert_eq!(v, ["/a/b/c", "/a/b", "/a", "/"]);
        let v: Vec<_> = ancestors_and_self("/").collect();
        assert_eq!(v, ["/"]);
    }

    #[test]
    fn oneshot_fanout_follows_zookeeper() {
        let mut r = WatchRegistry::default();
        let mut data = oneshot_rx(r.add("/a", WatchKind::Data));
        let mut data2 = oneshot_rx(r.add("/a", WatchKind::Data));
        let mut child = oneshot_rx(r.add("/a", WatchKind::Child));
        let mut exist = oneshot_rx(r.add("/b", WatchKind::Exist));
        assert_eq!(r.len(), 4);

        r.dispatch(&ev(EventType::NodeChildrenChanged, "/a"), 5);
        let c = fired(&mut child);
        assert_eq!((c.event_type, c.zxid), (EventType::NodeChildrenChanged, 5));
        assert!(data.try_recv().is_err());

        r.dispatch(&ev(EventType::NodeDataChanged, "/a"), 6);
        assert_eq!(fired(&mut data).path, "/a");
        assert_eq!(fired(&mut data2).event_type, EventType::NodeDataChanged);

        r.dispatch(&ev(EventType::NodeCreated, "/b"), 7);
        assert_eq!(fired(&mut exist).event_type, EventType::NodeCreated);
        assert_eq!(r.len(), 0);
        assert!(r.lists() == WatchLists::default());
    }

    #[test]
    fn persistent_and_recursive() {
        let mut r = WatchRegistry::default();
        let mut p = stream_rx(r.add("/p", WatchKind::Persistent));
        let mut rec = stream_rx(r.add("/", WatchKind::Recursive));
        r.dispatch(&ev(EventType::NodeChildrenChanged, "/p"), 1);
        r.dispatch(&ev(EventType::NodeDataChanged, "/p/x"), 2);
        r.dispatch(&ev(EventType::NodeCreated, "/p"), 3);
        assert_eq!(node(&mut p).event_type, EventType::NodeChildrenChanged);
        assert_eq!(node(&mut p).event_type, EventType::NodeCreated);
        assert!(p.try_recv().is_err());
        // The recursive watch never sees NodeChildrenChanged, but sees descendants.
        assert_eq!(node(&mut rec).path, "/p/x");
        assert_eq!(node(&mut rec).path, "/p");
        assert!(rec.try_recv().is_err());
        assert_eq!(r.len(), 2);
        let lists = r.lists();
        assert_eq!(lists.persistent, ["/p"]);
        assert_eq!(lists.recursive, ["/"]);

        // A reconnect puts a Resync marker in every stream.
        assert!(r.resync().is_empty());
        assert_eq!(p.try_recv().unwrap(), PersistentEvent::Resync);
        assert_eq!(rec.try_recv().unwrap(), PersistentEvent::Resync);

        // A dropped stream is found at the next event and reported for server-side cleanup.
        drop(p);
        let dead = r.dispatch(&ev(EventType::NodeDataChanged, "/p"), 4);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1, "/p");
        assert_eq!(dead[0].2, WatchKind::Persistent);
        assert_eq!(r.len(), 1);
        drop(rec);
        assert_eq!(r.resync().len(), 1);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn removal_waits_for_the_last_local_watcher() {
        let mut r = WatchRegistry::default();
        let a = r.add("/a", WatchKind::Data);
        let b = r.add("/a", WatchKind::Exist);
        let p = r.add("/a", WatchKind::Persistent);
        let id = |s: &WatchSub| match s {
            WatchSub::Oneshot { id, .. } | WatchSub::Persistent { id, .. } => *id,
        };
        assert_eq!(r.remove(id(&a)), Some(("/a".into(), WatchKind::Data)));
        assert_eq!(r.server_removal("/a", WatchKind::Data), None);
        r.remove(id(&b));
        // The persistent watch shares the data table: keep the server watch (3.8 semantics).
        assert_eq!(r.server_removal("/a", WatchKind::Exist), None);
        r.remove(id(&p));
        assert_eq!(
            r.server_removal("/a", WatchKind::Persistent),
            Some(WatcherType::Persistent)
        );
        assert!(r.path_is_free("/a"));
        assert_eq!(r.remove(id(&p)), None);
    }

    #[test]
    fn remove_all_and_terminate() {
        let mut r = WatchRegistry::default();
        let mut d = oneshot_rx(r.add("/a", WatchKind::Data));
        let mut c = oneshot_rx(r.add("/a", WatchKind::Child));
        let mut p = stream_rx(r.add("/a", WatchKind::Persistent));
        r.remove_all("/a", WatcherType::Data);
        assert_eq!(fired(&mut d).event_type, EventType::DataWatchRemoved);
        assert!(c.try_recv().is_err());
        r.terminate(&Error::SessionExpired);
        assert_eq!(c.try_recv().unwrap(), Err(Error::SessionExpired));
        assert_eq!(
            p.try_recv().unwrap(),
            PersistentEvent::Ended(Error::SessionExpired)
        );
        assert!(matches!(
            p.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_refused_rearm_ends_exactly_the_watchers_it_named() {
        let mut r = WatchRegistry::default();
        let mut d = oneshot_rx(r.add("/a", WatchKind::Data));
        let mut c = oneshot_rx(r.add("/a", WatchKind::Child));
        let mut p = stream_rx(r.add("/b", WatchKind::Recursive));
        let mut other = oneshot_rx(r.add("/c", WatchKind::Data));
        let lists = WatchLists {
            data: vec!["/a".into()],
            recursive: vec!["/b".into()],
            ..WatchLists::default()
        };
        r.fail(&lists, &Error::NoAuth);
        assert_eq!(d.try_recv().unwrap(), Err(Error::NoAuth));
        assert_eq!(p.try_recv().unwrap(), PersistentEvent::Ended(Error::NoAuth));
        assert!(
            c.try_recv().is_err(),
            "the child watch was not in the batch"
        );
        assert!(other.try_recv().is_err());
        assert_eq!(r.len(), 2);
        assert_eq!(r.lists().child, ["/a"]);
        assert!(r.path_is_free("/b"));
    }
}
