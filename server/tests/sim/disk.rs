//! One simulated server's disk: the real transaction log ([`TxnLog`]), the real epoch files and a
//! snapshot file, all over a crash-modelling [`MemBackend`]. Store operations from the core are
//! executed here, in order, each durable before the next; a crash keeps only what was synced
//! (plus, possibly, torn fragments of what was being written), and recovery reads it all back
//! with the same code the server uses.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rookery_server::storage::epoch::{self, Epochs};
use rookery_server::storage::txn_log::{self, TxnLog};
use rookery_server::storage::{atomic, recovery, tail_cut, MemBackend, StorageError};
use rookery_server::zab::{DurableState, Entry, StoreOp, Zxid};

const DATA: &str = "/data";
const LOG: &str = "/log";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"RKSS";
/// Small, so that segments are extended often (each extension is a write that can tear).
const PREALLOC: u64 = 4096;

/// The simulator's state machine image: the committed history itself, entry after entry.
pub(crate) fn encode_history(entries: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.zxid.raw().to_be_bytes());
        out.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.payload);
    }
    out.into()
}

pub(crate) fn decode_history(mut b: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 12 {
            return Err("truncated image".into());
        }
        let zxid = Zxid::from_raw(u64::from_be_bytes(b[..8].try_into().unwrap()));
        let len = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        if b.len() < 12 + len {
            return Err("truncated image entry".into());
        }
        out.push(Entry {
            zxid,
            payload: Bytes::copy_from_slice(&b[12..12 + len]),
        });
        b = &b[12 + len..];
    }
    Ok(out)
}

/// The open disk of a running server.
pub(crate) struct Disk {
    pub(crate) backend: MemBackend,
    log: TxnLog,
    epochs: Epochs,
}

/// What recovery found on a disk.
pub(crate) struct Recovered {
    pub(crate) disk: Disk,
    pub(crate) durable: DurableState,
    /// The state machine image (the snapshot's history).
    pub(crate) image: Vec<Entry>,
}

impl Disk {
    /// Recovers a server's state from its disk, as the runtime would at start.
    pub(crate) fn recover(backend: MemBackend) -> Result<Recovered, StorageError> {
        let data = Path::new(DATA);
        let epochs = epoch::read(&backend, data)?;
        let image = match atomic::read(&backend, data, SNAPSHOT, SNAPSHOT_MAGIC)? {
            Some(bytes) => decode_history(&bytes).map_err(|e| StorageError::Corrupt {
                path: data.join(SNAPSHOT),
                offset: 0,
                reason: e,
            })?,
            None => Vec::new(),
        };
        let snapshot_zxid = image.last().map_or(Zxid::ZERO, |e| e.zxid);
        let mut entries = Vec::new();
        // As the runtime does: a non-empty tail is marked (durably) before it is cut, and the
        // mark, from this start or an earlier one, makes the member abstain until it synchronizes.
        let replay = recovery::replay_log_marking_cuts(
            &backend,
            Path::new(LOG),
            data,
            snapshot_zxid.to_i64(),
            |_, rec, payload| {
                entries.push(Entry {
                    zxid: Zxid::from_i64(rec.zxid),
                    payload: Bytes::copy_from_slice(payload),
                });
                Ok(())
            },
        )?;
        let tail_cut = tail_cut::read(&backend, data)?.is_some();
        let log = TxnLog::open(
            Arc::new(backend.clone()),
            Path::new(LOG),
            PREALLOC,
            replay.last_zxid,
            replay.tail,
        )?;
        Ok(Recovered {
            disk: Disk {
                backend,
                log,
                epochs,
            },
            durable: DurableState {
                accepted_epoch: epochs.accepted,
                current_epoch: epochs.current,
                snapshot_zxid,
                entries,
                tail_cut,
            },
            image,
        })
    }

    /// Executes store operations in order, each durable before the next (one fsync for a run of
    /// appends). Stops at the first error.
    pub(crate) fn execute(&mut self, ops: &[StoreOp]) -> Result<(), StorageError> {
        let data = Path::new(DATA);
        for op in ops {
            match op {
                StoreOp::Append { entries } => {
                    for e in entries {
                        self.log.append(e.zxid.to_i64(), &e.payload)?;
                    }
                }
                StoreOp::Truncate { after } => self.log.truncate_after(after.to_i64())?,
                StoreOp::InstallSnapshot { zxid, snapshot } => {
                    // First drop the log past the snapshot (those proposals are not in the
                    // leader's history), then make the snapshot durable. A crash in between
                    // leaves an older but valid history; never records after the snapshot that
                    // recovery would replay on top of it.
                    self.log.truncate_after(zxid.to_i64())?;
                    atomic::replace(&self.backend, data, SNAPSHOT, SNAPSHOT_MAGIC, snapshot)?;
                }
                StoreOp::Epochs { accepted, current } => {
                    // Everything logged before must be durable before the epoch files change.
                    self.log.sync()?;
                    let new = Epochs {
                        accepted: *accepted,
                        current: *current,
                    };
                    epoch::write(&self.backend, data, self.epochs, new)?;
                    self.epochs = new;
                }
                StoreOp::ClearTailCut => {
                    // After everything logged before it, as the runtime's writer does.
                    self.log.sync()?;
                    tail_cut::clear(&self.backend, data)?;
                }
            }
        }
        self.log.sync()?;
        Ok(())
    }
}

/// Damages the last batch of the log on `backend` after it was synced (a disk that loses or
/// garbles data it had reported durable): the batch's first record is overwritten with garbage,
/// so recovery takes the batch for a torn write and cuts it, though it may hold acknowledged
/// records. Only when the log ends cleanly (a torn tail after it would make the damage look like
/// mid-history corruption). Returns the zxids of the batch, if it damaged one.
pub(crate) fn damage_last_synced_batch(backend: &MemBackend) -> Option<(Zxid, Zxid)> {
    let dir = Path::new(LOG);
    let (first, name) = txn_log::list_segments(backend, dir).ok()?.pop()?;
    let path = dir.join(&name);
    let bytes = backend.contents(&path)?;
    let scan = txn_log::scan(&path, &bytes, first).ok()?;
    if scan.torn.is_some() || scan.torn_header {
        return None;
    }
    let last = scan.seals.last()?;
    let start = last.batch_start as usize;
    let records: Vec<_> = scan
        .records
        .iter()
        .filter(|r| r.offset >= start && r.offset < last.offset)
        .collect();
    let (head, tail) = (records.first()?, records.last()?);
    backend.corrupt(&path, head.offset, &vec![0x5a; head.end() - head.offset]);
    Some((Zxid::from_i64(head.zxid), Zxid::from_i64(tail.zxid)))
}

/// Removes the tail-cut mark from `backend`, as an operator would by hand; whether there was one.
pub(crate) fn clear_tail_cut_mark(backend: &MemBackend) -> bool {
    let data = Path::new(DATA);
    let marked = tail_cut::read(backend, data)
        .expect("the mark reads")
        .is_some();
    if marked {
        tail_cut::clear(backend, data).expect("the mark is removed");
    }
    marked
}
