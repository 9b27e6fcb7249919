//! Watch events: the tasks that wait for them and print them as zkCli does, above the line
//! being edited when the shell is interactive.
//!
//! zkCli gives every watch one default watcher, so an event is printed once however many
//! watches it fires (a `get -w` and an `addWatch` on the same node), and a second `get -w` on a
//! node adds nothing. The shell keeps both properties: duplicate registrations are dropped, and
//! an event already printed (same type, path and zxid) is not printed again.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rookery_client::{
    EventType, OneshotWatcher, PersistentEvent, PersistentWatcher, SessionState, WatchedEvent,
};
use rustyline::ExternalPrinter;
use serde_json::json;

/// How many recent events are remembered to print each only once.
const RECENT_EVENTS: usize = 256;

/// Events without a zxid (the client's `...WatchRemoved`) count as repeats only this soon
/// after the first: one `removewatches` ends several watchers at once.
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// What makes two events the same: type, path and zxid.
type EventKey = (EventType, String, i64);

/// The kinds of watch the shell sets; one of each per node and session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `get -w`, `stat -w`, `config -w`.
    Data,
    /// `ls -w`.
    Child,
    /// `addWatch -m PERSISTENT`.
    Persistent,
    /// `addWatch -m PERSISTENT_RECURSIVE`.
    Recursive,
}

/// Where events go.
enum Sink {
    Stdout,
    /// rustyline's printer: the event appears above the prompt, and the line being edited is
    /// drawn again below it.
    Printer(Box<dyn ExternalPrinter + Send>),
}

/// The shell's watches and how their events are printed.
pub(crate) struct Watches {
    sink: Mutex<Sink>,
    /// `printwatches on|off`.
    enabled: AtomicBool,
    json: bool,
    /// (type, path, zxid) of the events printed last, and when.
    recent: Mutex<VecDeque<(EventKey, Instant)>>,
    /// (session generation, kind, path) of the watches armed now.
    armed: Mutex<HashSet<(u64, Kind, String)>>,
}

impl Watches {
    pub(crate) fn new(json: bool) -> Arc<Watches> {
        Arc::new(Watches {
            sink: Mutex::new(Sink::Stdout),
            enabled: AtomicBool::new(true),
            json,
            recent: Mutex::new(VecDeque::new()),
            armed: Mutex::new(HashSet::new()),
        })
    }

    /// Prints events through rustyline from now on.
    pub(crate) fn use_printer(&self, printer: Box<dyn ExternalPrinter + Send>) {
        *lock(&self.sink) = Sink::Printer(printer);
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Waits (in a task) for a one-shot watch to fire and prints its event. A watch of the
    /// same kind already armed on the node makes this one redundant: it is dropped, which
    /// removes it (the server keeps the one the other watcher needs).
    ///
    /// Must be called inside the tokio runtime.
    pub(crate) fn oneshot(
        self: &Arc<Self>,
        generation: u64,
        kind: Kind,
        path: &str,
        w: OneshotWatcher,
    ) {
        let key = (generation, kind, path.to_owned());
        if !lock(&self.armed).insert(key.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let fired = w.await;
            lock(&this.armed).remove(&key);
            // An error means the session ended (closed, expired): nothing to report.
            if let Ok(ev) = fired {
                this.node_event(&ev);
            }
        });
    }

    /// Prints a persistent watch's events until it ends (removed, or the session gone).
    ///
    /// Must be called inside the tokio runtime.
    pub(crate) fn persistent(
        self: &Arc<Self>,
        generation: u64,
        kind: Kind,
        path: &str,
        mut w: PersistentWatcher,
    ) {
        let key = (generation, kind, path.to_owned());
        if !lock(&self.armed).insert(key.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(item) = w.next().await {
                match item {
                    PersistentEvent::Node(ev) => {
                        this.node_event(&ev);
                        if ev.event_type == EventType::PersistentWatchRemoved {
                            break;
                        }
                    }
                    // Events of the time without a connection are not replayed; zkCli says
                    // nothing about that either, and the session events tell of the gap.
                    PersistentEvent::Resync | PersistentEvent::Lagged => {}
                    // Ended: the session is gone or the server refused to re-arm the watch.
                    _ => break,
                }
            }
            lock(&this.armed).remove(&key);
        });
    }

    /// Prints a node event once: `WATCHER::`, a blank line, then `WatchedEvent state:... type:...
    /// path:...` (zkCli's lines).
    pub(crate) fn node_event(&self, ev: &WatchedEvent) {
        if self.is_repeat(ev) {
            return;
        }
        let state = state_name(ev.state);
        let kind = format!("{:?}", ev.event_type);
        let text = format!(
            "\nWATCHER::\n\nWatchedEvent state:{state} type:{kind} path:{}",
            ev.path
        );
        let json = json!({
            "event": "watch",
            "state": state,
            "type": kind,
            "path": ev.path,
            "zxid": ev.zxid,
        });
        self.emit(text, json);
    }

    /// Whether `ev` was printed already (and remembers it if not). An event with a zxid is the
    /// same event whichever watch it fired; one without is a repeat only within
    /// [`REPEAT_WINDOW`].
    fn is_repeat(&self, ev: &WatchedEvent) -> bool {
        let key: EventKey = (ev.event_type, ev.path.clone(), ev.zxid);
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        let seen = recent
            .iter()
            .any(|(k, at)| *k == key && (ev.zxid >= 0 || now.duration_since(*at) < REPEAT_WINDOW));
        if !seen {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back((key, now));
        }
        seen
    }

    /// Prints a change of the session's state as zkCli does (`type:None path:null`).
    pub(crate) fn session_event(&self, state: &str) {
        let text = format!("\nWATCHER::\n\nWatchedEvent state:{state} type:None path:null");
        let json = json!({"event": "session", "state": state});
        self.emit(text, json);
    }

    fn emit(&self, text: String, json: serde_json::Value) {
        if !self.enabled() {
            return;
        }
        let line = if self.json { json.to_string() } else { text };
        let mut sink = lock(&self.sink);
        if let Sink::Printer(p) = &mut *sink {
            if p.print(format!("{line}\n")).is_ok() {
                return;
            }
            // The editor is gone (the shell is closing): plain stdout from now on.
            *sink = Sink::Stdout;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// zkCli's name for a session state in an event (`KeeperState`).
pub(crate) fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Connected => "SyncConnected",
        SessionState::ConnectedReadOnly => "ConnectedReadOnly",
        SessionState::Disconnected => "Disconnected",
        SessionState::Expired => "Expired",
        SessionState::AuthFailed => "AuthFailed",
        _ => "Closed",
    }
}

/// Locks a mutex, ignoring poisoning: every value guarded here stays consistent between
/// statements, so a panic elsewhere leaves nothing half-done.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
