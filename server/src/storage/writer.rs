//! The log writer thread: group commit.
//!
//! One OS thread owns the [`TxnLog`]. It takes every append queued since its last sync, writes
//! them with one write and makes them durable with one `fdatasync`, then reports the last durable
//! zxid. Many concurrent writes therefore share one sync. After a failure it reports the error
//! once and stops: nothing after a failed sync is ever reported durable.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::backend::Backend;
use super::epoch::{self, Epochs};
use super::txn_log::TxnLog;
use super::{snapshot, StorageError};

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
}

enum Cmd {
    Append(i64, Vec<u8>),
    Roll,
    Store(u64, StoreCmd),
}

/// What a durable batch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The last durable log record.
    pub zxid: i64,
    /// The last store operation now complete, if the batch held any.
    pub seq: Option<u64>,
}

/// Where the store operations that are not log appends write: snapshots and epoch files.
pub struct StoreDirs {
    /// The storage backend.
    pub backend: Arc<dyn Backend>,
    /// The snapshot (and epoch) directory.
    pub snap_dir: PathBuf,
    /// The epochs on disk when the writer starts.
    pub epochs: Epochs,
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
                // Drop the records after the snapshot first: a crash before the snapshot is
                // written then leaves an older, valid history, never records after the snapshot
                // point from another history that recovery would replay on top of it.
                self.log.truncate_after(zxid)?;
                let dirs = self.dirs();
                snapshot::write_encoded(dirs.backend.as_ref(), &dirs.snap_dir, zxid, &image)?;
                Ok(())
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
        }
    }

    fn dirs(&self) -> &StoreDirs {
        self.dirs
            .as_ref()
            .expect("snapshot installs need the store directories")
    }
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
                        let mut result = Ok(());
                        let mut seq = None;
                        for cmd in cmds {
                            let this = match &cmd {
                                Cmd::Store(s, _) => Some(*s),
                                _ => None,
                            };
                            result = state.run(cmd);
                            if result.is_err() {
                                break;
                            }
                            seq = this.or(seq);
                        }
                        match result.and_then(|()| state.log.sync()) {
                            Ok(zxid) => on_sync(Ok(Synced { zxid, seq })),
                            Err(e) => {
                                on_sync(Err(e));
                                return;
                            }
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

    /// Queues a record. Never blocks.
    pub fn append(&self, zxid: i64, payload: Vec<u8>) {
        // A send error means the thread stopped after a failure it has already reported.
        let _ = self.tx.send(Cmd::Append(zxid, payload));
    }

    /// Queues a ZAB store operation; its completion is reported as `Synced::seq`.
    pub fn store(&self, seq: u64, cmd: StoreCmd) {
        let _ = self.tx.send(Cmd::Store(seq, cmd));
    }

    /// Starts a new segment after the records queued so far.
    pub fn roll(&self) {
        let _ = self.tx.send(Cmd::Roll);
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::super::mem::MemBackend;
    use super::*;

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
}
