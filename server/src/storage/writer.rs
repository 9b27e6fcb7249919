//! The log writer thread: group commit.
//!
//! One OS thread owns the [`TxnLog`]. It takes every append queued since its last sync, writes
//! them with one write and makes them durable with one `fdatasync`, then reports the last durable
//! zxid. Many concurrent writes therefore share one sync. After a failure it reports the error
//! once and stops: nothing after a failed sync is ever reported durable.

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::txn_log::TxnLog;
use super::StorageError;

/// The most appends folded into one sync, to bound the latency of a batch.
const MAX_BATCH: usize = 10_000;

enum Cmd {
    Append(i64, Vec<u8>),
    Roll,
}

/// Handle on the writer thread. Dropping it lets the thread finish its queue and exit.
pub struct LogWriter {
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the thread. `on_sync` gets `Ok(zxid)` after each durable batch, or the error that
    /// stopped the writer.
    pub fn spawn(
        mut log: TxnLog,
        mut on_sync: impl FnMut(Result<i64, StorageError>) + Send + 'static,
    ) -> LogWriter {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let thread = std::thread::Builder::new()
            .name("rookery-log".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut cmds = vec![first];
                    while cmds.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => cmds.push(c),
                            Err(_) => break,
                        }
                    }
                    let mut result = Ok(());
                    for cmd in cmds {
                        result = match cmd {
                            Cmd::Append(zxid, payload) => log.append(zxid, &payload),
                            Cmd::Roll => log.roll(),
                        };
                        if result.is_err() {
                            break;
                        }
                    }
                    match result.and_then(|()| log.sync()) {
                        Ok(zxid) => on_sync(Ok(zxid)),
                        Err(e) => {
                            on_sync(Err(e));
                            return;
                        }
                    }
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
    fn batches_share_syncs_and_failures_stop_the_writer() {
        let b = MemBackend::new();
        let log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = LogWriter::spawn(log, move |r| {
            s.lock().unwrap().push(r.map_err(|e| e.to_string()))
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
        let w = LogWriter::spawn(log, move |r| s.lock().unwrap().push(r.is_ok()));
        w.append(1, vec![1]);
        w.append(2, vec![1]);
        w.close();
        assert_eq!(*seen.lock().unwrap(), vec![false]);
    }
}
