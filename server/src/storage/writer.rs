//! The log writer thread: group commit.
//!
//! One OS thread owns the [`TxnLog`]. It takes every append queued since its last sync, writes
//! them with one write and makes them durable with one `fdatasync`, then reports the last durable
//! zxid. Many concurrent writes therefore share one sync. After a failure it reports the error
//! once and stops: nothing after a failed sync is ever reported durable.
//!
//! Appends only buffer records; the batch (with its seal) is written by [`TxnLog::sync`], which
//! returns only once it is durable, and this one thread is the only caller. So a batch is never
//! written before the previous one is durable, which is what lets recovery tell a torn last batch
//! from damage mid-history (see [`super::txn_log`]); `TxnLog` asserts it.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::backend::Backend;
use super::epoch::{self, Epochs};
use super::txn_log::TxnLog;
use super::{snapshot, tail_cut, StorageError};

/// The most appends folded into one sync, to bound the latency of a batch.
const MAX_BATCH: usize = 10_000;

/// A ZAB store operation (`zab::StoreOp`, in the log's terms).
#[derive(Debug)]
pub enum StoreCmd {
    /// Append these records.
    Append(Vec<(i64, Bytes)>),
    /// Drop every record after this zxid.
    Truncate(i64),
    /// Drop records after `zxid`, write the snapshot, continue the log after `zxid`.
    Install {
        /// The snapshot's zxid.
        zxid: i64,
        /// The snapshot file's bytes, already verified.
        image: Bytes,
    },
    /// Write the epoch files.
    Epochs(Epochs),
    /// Durably remove the [`tail_cut`] marker: the member synchronized with a leader. Everything
    /// queued before it is made durable first.
    ClearTailCut,
}

enum Cmd {
    Append(i64, Vec<u8>),
    Roll,
    Store(u64, StoreCmd),
}

/// What a durable batch covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synced {
    /// The last durable log record.
    pub zxid: i64,
    /// The last store operation now complete, if the batch held any.
    pub seq: Option<u64>,
    /// How long the batch's fsync took, in ms.
    pub fsync_ms: f64,
}

/// Where the store operations that are not log appends write: snapshots, epoch files and the
/// tail-cut marker.
pub struct StoreDirs {
    /// The storage backend.
    pub backend: Arc<dyn Backend>,
    /// The snapshot (and epoch, and tail-cut marker) directory.
    pub snap_dir: PathBuf,
    /// The epochs on disk when the writer starts.
    pub epochs: Epochs,
}

/// Where the request processor sends what must become durable. Every method only queues: the
/// durable point comes back later as an event (`Durable`, or `Persisted` for a store operation),
/// in the order the commands were queued.
pub trait Journal: Send {
    /// Queues a record.
    fn append(&self, zxid: i64, payload: Vec<u8>);
    /// Queues a ZAB store operation; its completion is reported as [`Synced::seq`].
    fn store(&self, seq: u64, cmd: StoreCmd);
    /// Starts a new segment after the records queued so far.
    fn roll(&self);
    /// Writes out what is queued and stops.
    fn close(self: Box<Self>);
}

/// Handle on the writer thread. Dropping it lets the thread finish its queue and exit.
pub struct LogWriter {
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    log: TxnLog,
    dirs: Option<StoreDirs>,
}

impl State {
    fn run(&mut self, cmd: Cmd) -> Result<(), StorageError> {
        match cmd {
            Cmd::Append(zxid, payload) => self.log.append(zxid, &payload),
            Cmd::Roll => self.log.roll(),
            Cmd::Store(_, StoreCmd::Append(entries)) => {
                for (zxid, payload) in entries {
                    self.log.append(zxid, &payload)?;
                }
                Ok(())
            }
            Cmd::Store(_, StoreCmd::Truncate(zxid)) => self.log.truncate_after(zxid),
            Cmd::Store(_, StoreCmd::Install { zxid, image }) => {
                let dirs = self
                    .dirs
                    .as_ref()
                    .expect("snapshot installs need the store directories");
                install(&mut self.log, dirs, zxid, &image)
            }
            Cmd::Store(_, StoreCmd::Epochs(new)) => {
                // Everything logged so far must be durable before the epoch that vouches for it.
                self.log.sync()?;
                let dirs = self
                    .dirs
                    .as_mut()
                    .expect("epoch writes need the store directories");
                epoch::write(dirs.backend.as_ref(), &dirs.snap_dir, dirs.epochs, new)?;
                dirs.epochs = new;
                Ok(())
            }
            Cmd::Store(_, StoreCmd::ClearTailCut) => {
                // The synchronized history must be durable before the marker that says it may be
                // missing goes.
                self.log.sync()?;
                let dirs = self
                    .dirs
                    .as_ref()
                    .expect("clearing the tail-cut marker needs the store directories");
                tail_cut::clear(dirs.backend.as_ref(), &dirs.snap_dir)?;
                tracing::info!(
                    marker = %tail_cut::path(&dirs.snap_dir).display(),
                    "synchronized with the leader after a tail cut: marker removed"
                );
                Ok(())
            }
        }
    }

    /// Runs one batch of commands and makes it durable with one sync.
    fn batch(&mut self, cmds: Vec<Cmd>) -> Result<Synced, StorageError> {
        let mut seq = None;
        for cmd in cmds {
            let this = match &cmd {
                Cmd::Store(s, _) => Some(*s),
                _ => None,
            };
            self.run(cmd)?;
            seq = this.or(seq);
        }
        let started = std::time::Instant::now();
        let zxid = self.log.sync()?;
        Ok(Synced {
            zxid,
            seq,
            fsync_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// ZAB's SNAP: the leader's image, verified, replaces this member's whole history up to `zxid`.
fn install(
    log: &mut TxnLog,
    dirs: &StoreDirs,
    zxid: i64,
    image: &[u8],
) -> Result<(), StorageError> {
    // Drop the records after the snapshot first: a crash before the snapshot is written then
    // leaves an older, valid history, never records after the snapshot point from another
    // history that recovery would replay on top of it.
    log.truncate_after(zxid)?;
    snapshot::write_encoded(dirs.backend.as_ref(), &dirs.snap_dir, zxid, image)?;
    // What is left below the image may be another history: proposals of an earlier epoch that
    // never committed and that the leader's history does not hold. Recovery must never reach
    // them. The older snapshots go first, so that recovery cannot fall back past this image and
    // replay them; then every log segment (the image covers them). If this image is later found
    // damaged, recovery stops with an error instead of bringing back a divergent prefix.
    snapshot::remove_older(dirs.backend.as_ref(), &dirs.snap_dir, zxid)?;
    log.remove_segments()
}

impl LogWriter {
    /// Starts the thread. `on_sync` gets the durable point after each batch, or the error that
    /// stopped the writer. `dirs` is needed for ZAB's snapshot installs and epoch writes.
    pub fn spawn(
        log: TxnLog,
        dirs: Option<StoreDirs>,
        mut on_sync: impl FnMut(Result<Synced, StorageError>) + Send + 'static,
    ) -> LogWriter {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let mut state = State { log, dirs };
        let thread = std::thread::Builder::new()
            .name("rookery-log".into())
            .spawn(move || {
                // A panic (a broken invariant) must still stop the server: otherwise the core
                // would wait for a durable point that never comes.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    while let Ok(first) = rx.recv() {
                        let mut cmds = vec![first];
                        while cmds.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(c) => cmds.push(c),
                                Err(_) => break,
                            }
                        }
                        let result = state.batch(cmds);
                        let failed = result.is_err();
                        on_sync(result);
                        if failed {
                            return;
                        }
                    }
                }));
                if run.is_err() {
                    on_sync(Err(StorageError::Io {
                        op: "run the log writer",
                        path: PathBuf::new(),
                        source: std::io::Error::other("the log writer thread panicked"),
                    }));
                }
            })
            .expect("spawning the log writer thread");
        LogWriter {
            tx,
            thread: Some(thread),
        }
    }

    /// Waits for the thread to write out its queue and exit.
    pub fn close(mut self) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Journal for LogWriter {
    /// Never blocks.
    fn append(&self, zxid: i64, payload: Vec<u8>) {
        // A send error means the thread stopped after a failure it has already reported.
        let _ = self.tx.send(Cmd::Append(zxid, payload));
    }

    fn store(&self, seq: u64, cmd: StoreCmd) {
        let _ = self.tx.send(Cmd::Store(seq, cmd));
    }

    fn roll(&self) {
        let _ = self.tx.send(Cmd::Roll);
    }

    fn close(self: Box<Self>) {
        LogWriter::close(*self)
    }
}

/// A log writer run by its owner instead of a thread: commands queue through the
/// [`InlineJournal`] handle, and [`InlineWriter::flush`] writes and syncs them as one batch
/// when the owner (the simulator) decides. It shares the thread's code, so the simulator runs
/// the same group commit; commands still queued when the owner drops it were never durable,
/// like a crash before the sync.
pub struct InlineWriter {
    state: State,
    queue: Arc<std::sync::Mutex<Vec<Cmd>>>,
    failed: bool,
}

/// The request processor's end of an [`InlineWriter`].
pub struct InlineJournal {
    queue: Arc<std::sync::Mutex<Vec<Cmd>>>,
}

impl InlineWriter {
    /// A writer over `log`, and the journal the core queues into.
    pub fn new(log: TxnLog, dirs: Option<StoreDirs>) -> (InlineWriter, InlineJournal) {
        let queue = Arc::default();
        let writer = InlineWriter {
            state: State { log, dirs },
            queue: Arc::clone(&queue),
            failed: false,
        };
        (writer, InlineJournal { queue })
    }

    /// Commands queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queue.lock().expect("journal queue").len()
    }

    /// Writes and syncs everything queued as one batch. `None` if nothing was queued or an
    /// earlier batch failed (a failed writer reports once and stops, as the thread does).
    pub fn flush(&mut self) -> Option<Result<Synced, StorageError>> {
        if self.failed {
            return None;
        }
        let cmds = std::mem::take(&mut *self.queue.lock().expect("journal queue"));
        if cmds.is_empty() {
            return None;
        }
        let result = self.state.batch(cmds);
        self.failed = result.is_err();
        Some(result)
    }
}

impl Journal for InlineJournal {
    fn append(&self, zxid: i64, payload: Vec<u8>) {
        self.queue
            .lock()
            .expect("journal queue")
            .push(Cmd::Append(zxid, payload));
    }

    fn store(&self, seq: u64, cmd: StoreCmd) {
        self.queue
            .lock()
            .expect("journal queue")
            .push(Cmd::Store(seq, cmd));
    }

    fn roll(&self) {
        self.queue.lock().expect("journal queue").push(Cmd::Roll);
    }

    /// What is queued stays for the writer's owner to flush.
    fn close(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::super::mem::MemBackend;
    use super::*;

    /// Reliability defect 2: a SNAP install leaves nothing of the member's own history below the
    /// image. Before, its records stayed in the log under the image, and with the image damaged,
    /// recovery fell back to an older snapshot and handed back records of an old epoch that
    /// never committed as the member's history, followed by the leader's next epoch.
    #[test]
    fn an_installed_snapshot_leaves_no_divergent_prefix_to_fall_back_to() {
        use super::super::recovery::recover_unapplied;
        use super::super::snapshot::SnapshotImage;
        let z = |epoch: i64, counter: i64| (epoch << 32) | counter;
        let b = MemBackend::new();
        let dir = Path::new("/d");
        let image = |zxid| SnapshotImage {
            zxid,
            nodes: crate::tree::DataTree::new().image(),
            sessions: vec![],
        };
        // The member's own history: a snapshot at 1:4, and records up to 1:8 in the log, of
        // which 1:5..=1:8 are proposals that never committed.
        let mut log = TxnLog::open(Arc::new(b.clone()), dir, 8192, 0, None).unwrap();
        for c in 1..=8 {
            log.append(z(1, c), &[c as u8]).unwrap();
        }
        log.sync().unwrap();
        snapshot::write(&b, dir, &image(z(1, 4))).unwrap();
        // The leader's image at 1:10 (its epoch 1 went another way after 1:4) replaces it, and
        // its epoch 2 follows.
        let dirs = StoreDirs {
            backend: Arc::new(b.clone()),
            snap_dir: dir.to_owned(),
            epochs: Epochs::default(),
        };
        install(
            &mut log,
            &dirs,
            z(1, 10),
            &snapshot::encode(&image(z(1, 10))),
        )
        .unwrap();
        for c in 1..=2 {
            log.append(z(2, c), &[c as u8]).unwrap();
        }
        log.sync().unwrap();
        let r = recover_unapplied(&b, dir, dir).unwrap();
        assert_eq!(r.snapshot.map(|s| s.1), Some(z(1, 10)));
        let unapplied: Vec<i64> = r.unapplied.iter().map(|(zxid, _)| *zxid).collect();
        assert_eq!(unapplied, [z(2, 1), z(2, 2)]);
        // The image is damaged: there is nothing safe to start from, and recovery says so.
        let name = snapshot::snapshot_name(z(1, 10));
        b.corrupt(
            &super::super::backend::in_dir(dir, &name),
            20,
            &[0xff, 0xff],
        );
        match recover_unapplied(&b, dir, dir) {
            Err(e) => assert!(e.to_string().contains(&name), "{e}"),
            Ok(r) => panic!(
                "recovered a history from snapshot {:?} with {:x?}",
                r.snapshot,
                r.unapplied
                    .iter()
                    .map(|(zxid, _)| *zxid)
                    .collect::<Vec<_>>()
            ),
        }
    }

    #[test]
    fn a_panic_in_the_writer_is_reported_as_a_failure() {
        let b = MemBackend::new();
        let log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = LogWriter::spawn(log, None, move |r| s.lock().unwrap().push(r.is_ok()));
        // A zxid that does not follow the log's last one trips the log's invariant.
        w.append(7, vec![1]);
        w.close();
        assert_eq!(*seen.lock().unwrap(), vec![false]);
    }

    #[test]
    fn batches_share_syncs_and_failures_stop_the_writer() {
        let b = MemBackend::new();
        let log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = LogWriter::spawn(log, None, move |r| {
            s.lock()
                .unwrap()
                .push(r.map(|s| s.zxid).map_err(|e| e.to_string()))
        });
        for z in 1..=500 {
            w.append(z, vec![1, 2, 3]);
        }
        w.close();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.last().unwrap().as_ref().unwrap(), &500);
        assert!(seen.len() <= 500);
        assert!(seen
            .windows(2)
            .all(|p| p[0].as_ref().unwrap() < p[1].as_ref().unwrap()));

        let b = MemBackend::new();
        let log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        b.fail_syncs();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = LogWriter::spawn(log, None, move |r| s.lock().unwrap().push(r.is_ok()));
        w.append(1, vec![1]);
        w.append(2, vec![1]);
        w.close();
        assert_eq!(*seen.lock().unwrap(), vec![false]);
    }

    /// Reliability defect 4: the tail-cut marker goes only after everything queued before it is
    /// durable, and its removal is durable: a crash at any step leaves the marker, or the records
    /// with no marker.
    #[test]
    fn clearing_the_tail_cut_marker_follows_the_history_and_is_durable() {
        use super::super::recovery::replay_log;
        let dir = Path::new("/d");
        let mut outcomes = std::collections::BTreeSet::new();
        for fail_after in 0..10 {
            for seed in 0..3 {
                let b = MemBackend::new();
                tail_cut::mark(&b, dir, "cut").unwrap();
                let log = TxnLog::open(Arc::new(b.clone()), dir, 8192, 0, None).unwrap();
                let dirs = StoreDirs {
                    backend: Arc::new(b.clone()),
                    snap_dir: dir.to_owned(),
                    epochs: Epochs::default(),
                };
                b.fail_after_ops(fail_after);
                let seen = Arc::new(Mutex::new(Vec::new()));
                let s = seen.clone();
                let w = LogWriter::spawn(log, Some(dirs), move |r| {
                    s.lock().unwrap().push(r.map(|s| s.seq).ok())
                });
                w.store(
                    1,
                    StoreCmd::Append((1..=5).map(|z| (z, Bytes::from_static(b"p"))).collect()),
                );
                w.store(2, StoreCmd::ClearTailCut);
                w.close();
                let done = seen.lock().unwrap().last() == Some(&Some(Some(2)));
                let after = b.crash(seed);
                let mut zxids = Vec::new();
                replay_log(&after, dir, 0, false, |_, rec, _| {
                    zxids.push(rec.zxid);
                    Ok(())
                })
                .unwrap();
                let marked = tail_cut::read(&after, dir).unwrap().is_some();
                assert!(
                    marked || zxids == [1, 2, 3, 4, 5],
                    "fail_after {fail_after}: marker gone with {zxids:?}"
                );
                if done {
                    assert!(
                        !marked,
                        "fail_after {fail_after}: reported done, still marked"
                    );
                }
                outcomes.insert(marked);
            }
        }
        assert_eq!(outcomes.len(), 2, "both outcomes reached");
    }
}
