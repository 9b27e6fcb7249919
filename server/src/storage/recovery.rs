//! Recovery on start: load the newest valid snapshot, then replay the log after it.
//!
//! - A torn last batch in the last segment is truncated with a warning, from the start of that
//!   batch: it was never acknowledged, because acknowledgement waits for the sync that would have
//!   completed it. A batch is torn when it has no seal, or when it is damaged and no later write
//!   follows it, even if some of its later records survived intact: a disk may persist an
//!   unsynced write's sectors in any order ([`txn_log`] explains the batch seals). In a version 1
//!   segment (no seals), a torn final record (short, or followed only by zeros) is truncated.
//! - Everything else is an error that names the file and the offset: damage in a batch that a
//!   later batch follows (it had been made durable), a bad checksum followed by valid records in a
//!   version 1 segment, a gap in zxids, a missing segment, or snapshots that are all unreadable.
//!   Recovery never silently shortens history.
//! - A cut that removes a **non-empty** tail is reported ([`CutTail`]): one that removes one or more
//!   valid-looking records, or any byte that is not zero, past the last kept batch seal (version
//!   1: past the last kept record). A tail of zeros (preallocated space, or a batch of which no
//!   sector reached the disk) is not a cut, and neither is removing a last segment that is all
//!   zeros. Such a cut is usually an unacknowledged torn write, but a disk that damaged or lost
//!   data after it was synced makes it remove acknowledged records, which an ensemble member must
//!   not forget ([`super::tail_cut`]): [`recover_unapplied`] marks the cut durably before making
//!   it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::backend::{in_dir, Backend};
use super::codec::decode_txn;
use super::snapshot::{self, SessionRecord};
use super::tail_cut;
use super::txn_log::{self, RecordRef, Tail};
use super::StorageError;
use crate::tree::DataTree;
use crate::txn::Txn;

/// The state recovery rebuilt, and how.
#[derive(Debug)]
pub struct Recovered {
    /// The tree.
    pub tree: DataTree,
    /// Live sessions.
    pub sessions: Vec<SessionRecord>,
    /// The last zxid in the recovered history (the log's last record).
    pub last_zxid: i64,
    /// The last zxid applied to `tree`: `last_zxid`, or for an ensemble member (which does not
    /// replay), the snapshot's.
    pub applied_zxid: i64,
    /// For an ensemble member: the log records after the snapshot, not applied. Which of them are
    /// committed is for the leader to say.
    pub unapplied: Vec<(i64, Vec<u8>)>,
    /// The snapshot loaded, if any.
    pub snapshot: Option<(PathBuf, i64)>,
    /// The zxid range replayed from the log, if any.
    pub replayed: Option<(i64, i64)>,
    /// Where appending continues.
    pub tail: Option<Tail>,
    /// Torn tails truncated, damaged snapshots skipped.
    pub warnings: Vec<String>,
    /// The non-empty tail cut off the log (or, without repair, that would be), if any.
    pub cut: Option<CutTail>,
}

/// A non-empty tail cut off the log's last segment (see the module docs for "non-empty").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The segment.
    pub path: PathBuf,
    /// Where the cut starts: everything from here on is gone.
    pub offset: u64,
    /// Why the tail was torn.
    pub why: String,
    /// The last zxid of the history the cut keeps.
    pub kept_zxid: i64,
}

impl std::fmt::Display for CutTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cut at offset {} ({}), keeping the history up to zxid {:#x}",
            self.path.display(),
            self.offset,
            self.why,
            self.kept_zxid
        )
    }
}

/// What recovery would use, without changing anything (for `rookery inspect`).
pub fn plan(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
) -> Result<Recovered, StorageError> {
    run(backend, snap_dir, log_dir, Repair::No, true)
}

/// Recovery for an ensemble member: loads the snapshot but does not replay the log. The records
/// after the snapshot come back in [`Recovered::unapplied`]: the log's tail may hold proposals
/// that were never committed, and only the leader knows which were.
///
/// Before cutting a non-empty torn tail ([`Recovered::cut`]), it durably sets the
/// [`tail_cut`](super::tail_cut) marker in `snap_dir` (the data directory): the cut may remove
/// records this member acknowledged, and a restart before the member has synchronized with a
/// leader must still know.
pub fn recover_unapplied(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
) -> Result<Recovered, StorageError> {
    run(
        backend,
        snap_dir,
        log_dir,
        Repair::MarkThenCut(snap_dir),
        false,
    )
}

/// Recovers, truncating a torn tail in place.
pub fn recover(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
) -> Result<Recovered, StorageError> {
    run(backend, snap_dir, log_dir, Repair::Cut, true)
}

/// What to do with a torn tail.
#[derive(Debug, Clone, Copy)]
enum Repair<'a> {
    /// Report it, change nothing.
    No,
    /// Truncate it in place.
    Cut,
    /// Durably set the [`tail_cut`](super::tail_cut) marker in this directory first if the tail
    /// is non-empty, then truncate it.
    MarkThenCut(&'a Path),
}

fn run(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
    repair: Repair<'_>,
    apply: bool,
) -> Result<Recovered, StorageError> {
    backend
        .create_dir_all(snap_dir)
        .map_err(StorageError::io("create directory", snap_dir))?;
    backend
        .create_dir_all(log_dir)
        .map_err(StorageError::io("create directory", log_dir))?;
    let mut warnings = Vec::new();
    let mut loaded = None;
    let mut first_error = None;
    for (zxid, name) in snapshot::list_snapshots(backend, snap_dir)? {
        let path = in_dir(snap_dir, &name);
        let result = backend
            .read(&path)
            .map_err(StorageError::io("read", &path))
            .and_then(|bytes| snapshot::read(&path, &bytes));
        match result {
            Ok(img) if img.zxid == zxid => {
                loaded = Some((path, img));
                break;
            }
            Ok(img) => {
                let e = StorageError::corrupt(
                    &path,
                    8,
                    format!("holds zxid {:#x}, name says {zxid:#x}", img.zxid),
                );
                warnings.push(format!("skipping snapshot: {e}"));
                first_error.get_or_insert(e);
            }
            Err(e) => {
                warnings.push(format!("skipping snapshot: {e}"));
                first_error.get_or_insert(e);
            }
        }
    }
    if loaded.is_none() {
        if let Some(e) = first_error {
            // Every snapshot is unreadable. Starting empty would silently drop history.
            return Err(e);
        }
    }
    let (mut tree, mut sessions, snap_zxid, snapshot) = match loaded {
        Some((path, img)) => {
            let sessions: BTreeMap<i64, SessionRecord> =
                img.sessions.iter().map(|s| (s.id, *s)).collect();
            (
                DataTree::from_image(img.nodes),
                sessions,
                img.zxid,
                Some((path, img.zxid)),
            )
        }
        None => (DataTree::new(), BTreeMap::new(), 0, None),
    };

    let mut events = Vec::new();
    let mut unapplied = Vec::new();
    let replay = replay(backend, log_dir, snap_zxid, repair, |path, rec, payload| {
        if !apply {
            unapplied.push((rec.zxid, payload.to_vec()));
            return Ok(());
        }
        let (hdr, txn) = decode_txn(rec.zxid, payload).map_err(|e| {
            StorageError::corrupt(
                path,
                rec.offset as u64,
                format!("undecodable transaction: {e}"),
            )
        })?;
        match &txn {
            Txn::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                sessions.insert(
                    *session_id,
                    SessionRecord {
                        id: *session_id,
                        timeout_ms: *timeout_ms,
                        passwd: *passwd,
                    },
                );
            }
            Txn::CloseSession { session_id } => {
                sessions.remove(session_id);
            }
            _ => {}
        }
        tree.apply(&hdr, &txn, &mut events);
        Ok(())
    })?;
    warnings.extend(replay.warnings);
    Ok(Recovered {
        tree,
        sessions: sessions.into_values().collect(),
        last_zxid: replay.last_zxid,
        applied_zxid: if apply { replay.last_zxid } else { snap_zxid },
        unapplied,
        snapshot,
        replayed: replay.replayed,
        tail: replay.tail,
        warnings,
        cut: replay.cut,
    })
}

/// What [`replay_log`] found.
#[derive(Debug)]
pub struct LogReplay {
    /// The last zxid of the history: the last record replayed, or `after_zxid` if none was.
    pub last_zxid: i64,
    /// The zxid range replayed, if any.
    pub replayed: Option<(i64, i64)>,
    /// Where appending continues, if the last segment ends at `last_zxid`.
    pub tail: Option<Tail>,
    /// Torn tails truncated, empty segments removed.
    pub warnings: Vec<String>,
    /// The non-empty tail cut off the last segment (or, without repair, that would be), if any.
    pub cut: Option<CutTail>,
}

/// Replays every log record after `after_zxid` (the snapshot the history continues from), in zxid
/// order, calling `apply` with the segment path, the record and its payload.
///
/// The records after `after_zxid` must form one history without holes ([`txn_log::zxid_follows`]):
/// the first must follow `after_zxid`, and each the one before. A torn tail of the last segment
/// (its last batch, see [`txn_log::scan`]) is truncated in place when `repair` is set (and
/// reported either way, in [`LogReplay::cut`] if it is non-empty); an empty last segment is
/// removed. Everything else is an error naming the file and offset. The standalone server's
/// recovery replays transactions through this; a ZAB node reads its log of opaque proposals with
/// it, or with [`replay_log_marking_cuts`].
pub fn replay_log(
    backend: &dyn Backend,
    log_dir: &Path,
    after_zxid: i64,
    repair: bool,
    apply: impl FnMut(&Path, &RecordRef, &[u8]) -> Result<(), StorageError>,
) -> Result<LogReplay, StorageError> {
    let repair = if repair { Repair::Cut } else { Repair::No };
    replay(backend, log_dir, after_zxid, repair, apply)
}

/// [`replay_log`] with repair, for an ensemble member: before cutting a non-empty torn tail, it
/// durably sets the [`tail_cut`](super::tail_cut) marker in `marker_dir`.
pub fn replay_log_marking_cuts(
    backend: &dyn Backend,
    log_dir: &Path,
    marker_dir: &Path,
    after_zxid: i64,
    apply: impl FnMut(&Path, &RecordRef, &[u8]) -> Result<(), StorageError>,
) -> Result<LogReplay, StorageError> {
    replay(
        backend,
        log_dir,
        after_zxid,
        Repair::MarkThenCut(marker_dir),
        apply,
    )
}

fn replay(
    backend: &dyn Backend,
    log_dir: &Path,
    after_zxid: i64,
    repair: Repair<'_>,
    mut apply: impl FnMut(&Path, &RecordRef, &[u8]) -> Result<(), StorageError>,
) -> Result<LogReplay, StorageError> {
    let repairing = !matches!(repair, Repair::No);
    backend
        .create_dir_all(log_dir)
        .map_err(StorageError::io("create directory", log_dir))?;
    let segments = txn_log::list_segments(backend, log_dir)?;
    let mut warnings = Vec::new();
    let mut last_zxid = after_zxid;
    let mut replayed: Option<(i64, i64)> = None;
    let mut tail = None;
    let mut cut = None;
    for (i, (first, name)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let path = in_dir(log_dir, name);
        let bytes = backend
            .read(&path)
            .map_err(StorageError::io("read", &path))?;
        let scan = txn_log::scan(&path, &bytes, *first)?;
        if scan.torn_header {
            if !is_last {
                return Err(StorageError::corrupt(
                    &path,
                    0,
                    "empty segment before the last one",
                ));
            }
            warnings.push(format!(
                "removing {} (created but never written)",
                path.display()
            ));
            if repairing {
                backend
                    .remove(&path)
                    .map_err(StorageError::io("remove", &path))?;
                backend
                    .sync_dir(log_dir)
                    .map_err(StorageError::io("fsync directory", log_dir))?;
            }
            continue;
        }
        if let Some((offset, why)) = &scan.torn {
            if !is_last {
                return Err(StorageError::corrupt(
                    &path,
                    *offset,
                    format!("{why} in a segment that is not the last"),
                ));
            }
            warnings.push(format!(
                "truncating torn tail of {} at offset {offset} ({why})",
                path.display()
            ));
            // The scan reports a torn tail only when something past `end` is not zero: records of
            // an unsealed batch, or any other byte (see `txn_log::Scan::torn`). So every torn
            // tail is a non-empty cut. The history kept is what precedes it.
            let kept_zxid = scan
                .records
                .iter()
                .rfind(|r| r.zxid > after_zxid)
                .map_or(last_zxid, |r| r.zxid);
            let this = CutTail {
                path: path.clone(),
                offset: *offset,
                why: why.clone(),
                kept_zxid,
            };
            match repair {
                Repair::No => {}
                Repair::Cut => txn_log::truncate_torn_tail(backend, &path, &bytes, scan.end)?,
                Repair::MarkThenCut(marker_dir) => {
                    // Marked first: a crash after the cut must not leave a clean log that forgot it.
                    tail_cut::mark(backend, marker_dir, &this.to_string())?;
                    txn_log::truncate_torn_tail(backend, &path, &bytes, scan.end)?;
                }
            }
            cut = Some(this);
        }
        for rec in &scan.records {
            if rec.zxid <= after_zxid {
                continue;
            }
            if !txn_log::zxid_follows(last_zxid, rec.zxid) {
                return Err(StorageError::corrupt(
                    &path,
                    rec.offset as u64,
                    format!("zxid {:#x} follows {last_zxid:#x}: transactions are missing (a lost segment?)", rec.zxid),
                ));
            }
            apply(&path, rec, rec.payload(&bytes))?;
            last_zxid = rec.zxid;
            replayed = Some((replayed.map_or(rec.zxid, |r| r.0), rec.zxid));
        }
        let seg_last = scan.records.last().map_or(first - 1, |r| r.zxid);
        // Appending continues only in a segment of the current format: seals must not be mixed
        // into a version 1 segment. After an older one, the next record starts a new segment.
        let current_format = scan.version == txn_log::VERSION;
        tail = (is_last && seg_last == last_zxid && current_format).then(|| Tail {
            path: path.clone(),
            end: scan.end,
            allocated: bytes.len() as u64,
        });
    }
    Ok(LogReplay {
        last_zxid,
        replayed,
        tail,
        warnings,
        cut,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::codec::encode_txn;
    use std::collections::BTreeSet;

    use super::super::mem::MemBackend;
    use super::super::snapshot::SnapshotImage;
    use super::super::txn_log::{segment_name, TxnLog, RECORD_HEADER_LEN};
    use super::*;
    use crate::txn::TxnHeader;
    use rookery_proto::Acl;

    const DIR: &str = "/data";

    fn create(i: i64) -> Txn {
        Txn::Create {
            path: format!("/n{i}"),
            data: Some(vec![i as u8]),
            acl: Acl::open_unsafe(),
            ephemeral_owner: 0,
            parent_cversion: i as i32,
        }
    }

    /// Writes zxids from..=to, one sync per `per_sync` records.
    fn write(log: &mut TxnLog, from: i64, to: i64, per_sync: i64) {
        for z in from..=to {
            let mut p = Vec::new();
            encode_txn(
                &TxnHeader {
                    session_id: 1,
                    cxid: 1,
                    zxid: z,
                    time_ms: 9,
                },
                &create(z),
                &mut p,
            );
            log.append(z, &p).unwrap();
            if z % per_sync == 0 {
                log.sync().unwrap();
            }
        }
        log.sync().unwrap();
    }

    fn open_log(b: &MemBackend, last: i64) -> TxnLog {
        TxnLog::open(Arc::new(b.clone()), Path::new(DIR), 16384, last, None).unwrap()
    }

    fn recover_mem(b: &MemBackend) -> Result<Recovered, StorageError> {
        recover(b, Path::new(DIR), Path::new(DIR))
    }

    fn seg(first: i64) -> PathBuf {
        in_dir(Path::new(DIR), &segment_name(first))
    }

    #[test]
    fn replays_the_whole_log() {
        let b = MemBackend::new();
        write(&mut open_log(&b, 0), 1, 50, 7);
        let r = recover_mem(&b).unwrap();
        assert_eq!(r.last_zxid, 50);
        assert_eq!(r.replayed, Some((1, 50)));
        assert!(r.tree.get("/n50").is_some());
        assert!(r.warnings.is_empty());
        assert_eq!(r.tail.unwrap().path, seg(1));
    }

    #[test]
    fn a_crash_keeps_every_synced_record_and_truncates_the_torn_tail() {
        for seed in 0..40 {
            let b = MemBackend::new();
            let mut log = open_log(&b, 0);
            write(&mut log, 1, 20, 5);
            // Unsynced appends: a crash may keep any sector-aligned prefix of them.
            let mut big = Vec::new();
            encode_txn(
                &TxnHeader {
                    session_id: 1,
                    cxid: 1,
                    zxid: 21,
                    time_ms: 9,
                },
                &Txn::SetData {
                    path: "/n1".into(),
                    data: Some(vec![7; 3000]),
                    version: 1,
                },
                &mut big,
            );
            log.append(21, &big).unwrap();
            let crashed = b.crash(seed);
            let r = recover_mem(&crashed).unwrap();
            assert!(
                r.last_zxid == 20 || r.last_zxid == 21,
                "seed {seed}: {}",
                r.last_zxid
            );
            // Recovery left a clean log: a second recovery agrees and warns of nothing.
            let again = recover_mem(&crashed).unwrap();
            assert_eq!(again.last_zxid, r.last_zxid);
            assert!(
                again.warnings.is_empty(),
                "seed {seed}: {:?}",
                again.warnings
            );
        }
    }

    #[test]
    fn a_bit_flip_mid_log_is_an_error_naming_file_and_offset() {
        let b = MemBackend::new();
        write(&mut open_log(&b, 0), 1, 30, 4);
        let bytes = b.read(&seg(1)).unwrap();
        let scan = txn_log::scan(&seg(1), &bytes, 1).unwrap();
        let victim = scan.records[10];
        b.corrupt(&seg(1), victim.offset + RECORD_HEADER_LEN + 2, &[0xee]);
        let err = recover_mem(&b).unwrap_err().to_string();
        assert!(
            err.contains("log.0000000000000001")
                && err.contains(&format!("offset {}", victim.offset)),
            "{err}"
        );
    }

    #[test]
    fn a_flip_in_the_last_record_is_a_torn_tail() {
        let b = MemBackend::new();
        write(&mut open_log(&b, 0), 1, 30, 4);
        let bytes = b.read(&seg(1)).unwrap();
        let last = *txn_log::scan(&seg(1), &bytes, 1)
            .unwrap()
            .records
            .last()
            .unwrap();
        b.corrupt(&seg(1), last.offset + RECORD_HEADER_LEN + 1, &[0xee]);
        let r = recover_mem(&b).unwrap();
        // The whole last batch (29 and 30, synced together) goes: a damaged last batch is cut
        // from its start, whatever part of it is damaged.
        assert_eq!(r.last_zxid, 28);
        assert_eq!(r.warnings.len(), 1);
    }

    fn snapshot_at(b: &MemBackend, zxid: i64) {
        let r = recover_mem(b).unwrap();
        assert_eq!(r.last_zxid, zxid);
        let img = SnapshotImage {
            zxid,
            nodes: r.tree.image(),
            sessions: vec![],
        };
        snapshot::write(b, Path::new(DIR), &img).unwrap();
    }

    #[test]
    fn snapshot_plus_log_and_fallback_to_an_older_snapshot() {
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        write(&mut log, 1, 10, 3);
        snapshot_at(&b, 10);
        log.roll().unwrap();
        write(&mut log, 11, 20, 3);
        snapshot_at(&b, 20);
        log.roll().unwrap();
        write(&mut log, 21, 25, 3);
        let r = recover_mem(&b).unwrap();
        assert_eq!(
            (r.last_zxid, r.replayed, r.snapshot.as_ref().unwrap().1),
            (25, Some((21, 25)), 20)
        );
        // A truncated newest snapshot: fall back to the older one and replay more log.
        let newest = in_dir(Path::new(DIR), &snapshot::snapshot_name(20));
        let len = b.read(&newest).unwrap().len();
        b.truncate(&newest, len / 2);
        let r = recover_mem(&b).unwrap();
        assert_eq!(
            (r.last_zxid, r.replayed, r.snapshot.as_ref().unwrap().1),
            (25, Some((11, 25)), 10)
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(r.tree.get("/n25").is_some());
        // With the older one damaged too, there is nothing safe to start from.
        let older = in_dir(Path::new(DIR), &snapshot::snapshot_name(10));
        b.corrupt(&older, 30, &[0xff, 0xff]);
        let err = recover_mem(&b).unwrap_err().to_string();
        assert!(err.contains("snapshot."), "{err}");
    }

    #[test]
    fn a_missing_segment_is_a_gap() {
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        write(&mut log, 1, 10, 3);
        log.roll().unwrap();
        write(&mut log, 11, 20, 3);
        log.roll().unwrap();
        write(&mut log, 21, 30, 3);
        b.remove(&seg(11)).unwrap();
        let err = recover_mem(&b).unwrap_err().to_string();
        assert!(
            err.contains("missing") && err.contains("log.0000000000000015"),
            "{err}"
        );
    }

    const E1: i64 = 1 << 32;
    const E2: i64 = 2 << 32;
    const E3: i64 = 3 << 32;

    /// Appends ZAB-style zxids with real transactions, so `recover` can replay them.
    fn write_zxids(log: &mut TxnLog, zxids: &[i64]) {
        for &z in zxids {
            log.append(z, &txn_payload(z)).unwrap();
        }
        log.sync().unwrap();
    }

    #[test]
    fn a_zab_history_with_epoch_jumps_recovers_across_segments() {
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        write_zxids(&mut log, &[E1 | 1, E1 | 2, E1 | 3]);
        log.roll().unwrap();
        write_zxids(&mut log, &[E2 | 1, E2 | 2]);
        write_zxids(&mut log, &[E3 | 1]);
        let r = recover_mem(&b).unwrap();
        assert_eq!(r.last_zxid, E3 | 1);
        assert_eq!(r.replayed, Some((E1 | 1, E3 | 1)));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.tail.unwrap().path, seg(E2 | 1));
    }

    #[test]
    fn a_hole_at_an_epoch_boundary_is_an_error() {
        // A lost segment whose successor starts an epoch at counter 2, or one that skips within
        // the epoch: both are holes.
        for second in [E2 | 2, E1 | 5] {
            let b = MemBackend::new();
            let mut log = open_log(&b, 0);
            write_zxids(&mut log, &[E1 | 1, E1 | 2, E1 | 3]);
            log.roll().unwrap();
            // Write the second segment with a log that believes it continues from `second - 1`.
            let mut other = open_log(&b, second - 1);
            write_zxids(&mut other, &[second]);
            let err = recover_mem(&b).unwrap_err().to_string();
            assert!(
                err.contains("missing") && err.contains(&segment_name(second)),
                "{err}"
            );
        }
    }

    #[test]
    fn replay_log_reads_opaque_records_after_a_snapshot_point() {
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        for z in [E1 | 1, E1 | 2, E2 | 1, E2 | 2, E2 | 3] {
            log.append(z, format!("p{z:x}").as_bytes()).unwrap();
        }
        log.sync().unwrap();
        let mut got = Vec::new();
        let r = replay_log(&b, Path::new(DIR), E2 | 1, true, |_, rec, payload| {
            got.push((rec.zxid, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(r.last_zxid, E2 | 3);
        assert_eq!(
            got,
            [
                (E2 | 2, format!("p{:x}", E2 | 2).into_bytes()),
                (E2 | 3, format!("p{:x}", E2 | 3).into_bytes())
            ]
        );
        // A snapshot past the whole log: nothing to replay, and appending starts a new segment.
        let r = replay_log(&b, Path::new(DIR), E3 | 9, true, |_, _, _| Ok(())).unwrap();
        assert_eq!((r.last_zxid, r.replayed), (E3 | 9, None));
        assert!(r.tail.is_none());
        // A log that starts after the snapshot it must continue is a hole.
        let err = replay_log(&b, Path::new(DIR), E1 | 1, true, |_, _, _| Ok(())).is_ok();
        assert!(err, "E1|2 follows E1|1");
        let b2 = MemBackend::new();
        let mut log2 = open_log(&b2, E2 | 1);
        log2.append(E2 | 2, b"x").unwrap();
        log2.sync().unwrap();
        let err = replay_log(&b2, Path::new(DIR), E1 | 4, true, |_, _, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn sessions_and_ephemerals_come_back() {
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        let txns = [
            Txn::CreateSession {
                session_id: 42,
                timeout_ms: 4000,
                passwd: [1; 16],
            },
            Txn::Create {
                path: "/e".into(),
                data: None,
                acl: Acl::open_unsafe(),
                ephemeral_owner: 42,
                parent_cversion: 1,
            },
            Txn::CreateSession {
                session_id: 43,
                timeout_ms: 4000,
                passwd: [2; 16],
            },
            Txn::CloseSession { session_id: 43 },
        ];
        for (i, t) in txns.iter().enumerate() {
            let z = i as i64 + 1;
            let mut p = Vec::new();
            encode_txn(
                &TxnHeader {
                    session_id: 42,
                    cxid: 0,
                    zxid: z,
                    time_ms: 1,
                },
                t,
                &mut p,
            );
            log.append(z, &p).unwrap();
        }
        log.sync().unwrap();
        let r = recover_mem(&b).unwrap();
        assert_eq!(r.sessions.len(), 1);
        assert_eq!(r.sessions[0].id, 42);
        assert_eq!(r.tree.ephemeral_count(), 1);
    }

    #[test]
    fn damage_gives_a_prefix_of_history_or_an_error_never_another_history() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let original = MemBackend::new();
        let mut log = open_log(&original, 0);
        write(&mut log, 1, 40, 5);
        snapshot_at(&original, 40);
        log.roll().unwrap();
        write(&mut log, 41, 60, 5);
        let files: Vec<PathBuf> = original
            .list(Path::new(DIR))
            .unwrap()
            .into_iter()
            .map(|n| in_dir(Path::new(DIR), &n))
            .collect();
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..300 {
            let b = original.crash(round);
            let victim = &files[rng.gen_range(0..files.len())];
            let len = b.read(victim).unwrap().len();
            match rng.gen_range(0..3) {
                0 => b.corrupt(victim, rng.gen_range(0..len), &[rng.gen()]),
                1 => b.truncate(victim, rng.gen_range(0..len)),
                _ => {
                    let at = rng.gen_range(0..len);
                    let junk: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
                    b.corrupt(victim, at, &junk);
                }
            }
            if let Ok(r) = recover_mem(&b) {
                // The recovered tree holds exactly /n1 ..= /n<last>: a prefix of what was written.
                for i in 1..=60 {
                    assert_eq!(
                        r.tree.get(&format!("/n{i}")).is_some(),
                        i <= r.last_zxid,
                        "round {round}: /n{i} with last zxid {}",
                        r.last_zxid
                    );
                }
                assert_eq!(
                    r.tree
                        .get(&format!("/n{}", r.last_zxid))
                        .map(|n| n.data.clone()),
                    Some(Some(vec![r.last_zxid as u8]))
                );
            }
        }
    }

    /// One transaction payload that `recover` can replay: creates `/n<zxid>`.
    fn txn_payload(z: i64) -> Vec<u8> {
        let mut p = Vec::new();
        let hdr = TxnHeader {
            session_id: 1,
            cxid: 1,
            zxid: z,
            time_ms: 9,
        };
        encode_txn(&hdr, &create(z), &mut p);
        p
    }

    /// Writes zxids from `first` on, one sync (one sealed batch) per entry of `sizes`; returns the
    /// last zxid.
    fn write_batches(log: &mut TxnLog, first: i64, sizes: &[i64]) -> i64 {
        let mut z = first - 1;
        for &n in sizes {
            for _ in 0..n {
                z += 1;
                log.append(z, &txn_payload(z)).unwrap();
            }
            log.sync().unwrap();
        }
        z
    }

    /// The byte ranges of the sealed batches of segment `first`.
    fn batch_ranges(b: &MemBackend, first: i64) -> Vec<(usize, usize)> {
        let bytes = b.read(&seg(first)).unwrap();
        let scan = txn_log::scan(&seg(first), &bytes, first).unwrap();
        let mut start = txn_log::HEADER_LEN as usize;
        scan.seals
            .iter()
            .map(|s| {
                let range = (start, s.end());
                start = s.end();
                range
            })
            .collect()
    }

    /// The first record of the batch starting at `start`: (offset, end).
    fn first_record_in(b: &MemBackend, start: usize) -> (usize, usize) {
        let bytes = b.read(&seg(1)).unwrap();
        let scan = txn_log::scan(&seg(1), &bytes, 1).unwrap();
        let rec = scan.records.iter().find(|r| r.offset == start).unwrap();
        (rec.offset, rec.end())
    }

    /// Ways the first record of an unsynced write may be left when later sectors reached the disk
    /// before it: never written (the preallocated zeros), or garbage.
    fn damage_first_record(b: &MemBackend, range: (usize, usize), zeros: bool) {
        let fill = if zeros { 0 } else { 0x5a };
        b.corrupt(&seg(1), range.0, &vec![fill; range.1 - range.0]);
    }

    /// Reliability defect 3: the last group-commit batch, written with one write and never
    /// synced, reached the disk out of order: its first record is lost, its later records (and
    /// seal) are intact. That is a torn write, not mid-history damage: recovery cuts the log back
    /// to the previous batch and starts. Before, the intact later records made it a loud error and
    /// the member refused to start.
    #[test]
    fn an_out_of_order_tear_of_the_last_batch_is_cut_back_to_the_previous_batch() {
        for zeros in [true, false] {
            let b = MemBackend::new();
            let mut log = open_log(&b, 0);
            assert_eq!(write_batches(&mut log, 1, &[4, 4, 5]), 13);
            let batches = batch_ranges(&b, 1);
            assert_eq!(batches.len(), 3);
            damage_first_record(&b, first_record_in(&b, batches[2].0), zeros);
            let r = recover_mem(&b).unwrap();
            assert_eq!(r.last_zxid, 8, "zeros {zeros}");
            assert!(r.tree.get("/n8").is_some());
            // Valid-looking records of the torn batch after the damage went with it.
            assert!((9..=13).all(|i| r.tree.get(&format!("/n{i}")).is_none()));
            assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
            assert!(
                r.warnings[0].contains(&format!("at offset {}", batches[2].0)),
                "{:?}",
                r.warnings
            );
            let tail = r.tail.unwrap();
            assert_eq!(tail.end, batches[2].0 as u64);
            // Recovery left a clean log, and appending continues where the torn batch started.
            let again = recover_mem(&b).unwrap();
            assert_eq!((again.last_zxid, again.warnings.len()), (8, 0));
            let mut log =
                TxnLog::open(Arc::new(b.clone()), Path::new(DIR), 16384, 8, again.tail).unwrap();
            write_batches(&mut log, 9, &[2]);
            let r = recover_mem(&b).unwrap();
            assert_eq!((r.last_zxid, r.warnings.len()), (10, 0));
        }
    }

    /// The same damage in a batch that a later batch follows is corruption: the later batch was
    /// written only after the damaged one was durable (and maybe acknowledged).
    #[test]
    fn the_same_damage_in_an_earlier_batch_is_corruption() {
        for zeros in [true, false] {
            let b = MemBackend::new();
            write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
            let batches = batch_ranges(&b, 1);
            let first = first_record_in(&b, batches[1].0);
            damage_first_record(&b, first, zeros);
            let err = recover_mem(&b).unwrap_err().to_string();
            assert!(
                err.contains("mid-history")
                    && err.contains("batch seal")
                    && err.contains(&format!("offset {}", first.0)),
                "{err}"
            );
        }
        // Also when the later batch is itself torn before its seal: the damaged batch's own seal
        // is intact, and a valid record after it can only come from a later write.
        let b = MemBackend::new();
        write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
        let batches = batch_ranges(&b, 1);
        let first = first_record_in(&b, batches[1].0);
        damage_first_record(&b, first, false);
        b.corrupt(
            &seg(1),
            batches[2].1 - txn_log::SEAL_LEN,
            &[0; txn_log::SEAL_LEN],
        );
        let err = recover_mem(&b).unwrap_err().to_string();
        assert!(
            err.contains("mid-history") && err.contains("a valid record (zxid 0x9) follows"),
            "{err}"
        );
    }

    /// A last batch whose records all arrived but whose seal did not was never completely written,
    /// so never acknowledged: it is cut, as a whole.
    #[test]
    fn a_last_batch_without_its_seal_is_cut() {
        for fill in [0u8, 0x77] {
            let b = MemBackend::new();
            write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
            let batches = batch_ranges(&b, 1);
            b.corrupt(
                &seg(1),
                batches[2].1 - txn_log::SEAL_LEN,
                &[fill; txn_log::SEAL_LEN],
            );
            let r = recover_mem(&b).unwrap();
            assert_eq!(r.last_zxid, 8, "fill {fill}");
            assert_eq!(r.warnings.len(), 1);
            if fill == 0 {
                assert!(r.warnings[0].contains("has no seal"), "{:?}", r.warnings);
            }
            assert_eq!(recover_mem(&b).unwrap().warnings.len(), 0);
        }
    }

    /// Segments written before batch seals (format version 1) are still read with their rules,
    /// and appending after them starts a new segment of the current format.
    #[test]
    fn a_version_1_segment_recovers_and_appending_moves_to_a_new_segment() {
        let b = MemBackend::new();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(txn_log::MAGIC);
        bytes.extend_from_slice(&txn_log::UNSEALED_VERSION.to_be_bytes());
        bytes.extend_from_slice(&1i64.to_be_bytes());
        let mut offsets = Vec::new();
        for z in 1..=6 {
            offsets.push(bytes.len());
            txn_log::encode_record(z, &txn_payload(z), &mut bytes);
        }
        bytes.resize(bytes.len() + 4096, 0);
        let mut f = b.create(&seg(1)).unwrap();
        f.write_at(0, &bytes).unwrap();
        f.sync_data().unwrap();
        b.sync_dir(Path::new(DIR)).unwrap();
        // Version 1 rule: a flip in the last record is a torn tail cut at that record.
        b.corrupt(&seg(1), offsets[5] + RECORD_HEADER_LEN + 3, &[0xee]);
        let r = recover_mem(&b).unwrap();
        assert_eq!((r.last_zxid, r.warnings.len()), (5, 1));
        assert!(
            r.tail.is_none(),
            "no seals may be added to a version 1 segment"
        );
        let mut log = TxnLog::open(Arc::new(b.clone()), Path::new(DIR), 16384, 5, r.tail).unwrap();
        write_batches(&mut log, 6, &[2, 3]);
        let r = recover_mem(&b).unwrap();
        assert_eq!((r.last_zxid, r.replayed), (10, Some((1, 10))));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let new = b.read(&seg(6)).unwrap();
        assert_eq!(&new[4..8], &txn_log::VERSION.to_be_bytes());
        assert_eq!(txn_log::scan(&seg(6), &new, 6).unwrap().seals.len(), 2);
    }

    /// Random batches; then the last one, written but never synced, reaches the disk as a random
    /// subset of its sectors (persisted in any order), the others left as they were before the
    /// write (zeros) or garbage. Recovery must always give exactly the batches before it, and
    /// leave a log that recovers cleanly and takes appends. Damage to an earlier batch instead is
    /// always an error.
    #[test]
    fn random_out_of_order_tears_of_the_last_batch_recover_exactly_the_sealed_prefix() {
        use super::super::mem::SECTOR;
        use rand::rngs::StdRng;
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(3);
        let replay = |b: &MemBackend| {
            let mut got = Vec::new();
            replay_log(b, Path::new(DIR), 0, true, |_, rec, payload| {
                got.push((rec.zxid, payload.to_vec()));
                Ok(())
            })
            .map(|r| (got, r))
        };
        let mut torn_rounds = 0;
        for round in 0..300 {
            let b = MemBackend::new();
            let mut log = open_log(&b, 0);
            let mut written: Vec<(i64, Vec<u8>)> = Vec::new();
            let mut sealed_counts = Vec::new();
            for _ in 0..rng.gen_range(1..=6) {
                for _ in 0..rng.gen_range(1..=12) {
                    let z = written.len() as i64 + 1;
                    // Non-zero bytes, so that a sector left unwritten always differs.
                    let p: Vec<u8> = (0..rng.gen_range(1..1500))
                        .map(|_| rng.gen_range(1..=255))
                        .collect();
                    log.append(z, &p).unwrap();
                    written.push((z, p));
                }
                log.sync().unwrap();
                sealed_counts.push(written.len());
            }
            let batches = batch_ranges(&b, 1);
            let original = b.read(&seg(1)).unwrap();
            let damage_earlier = batches.len() > 1 && round % 5 == 0;
            let (start, end) = if damage_earlier {
                batches[rng.gen_range(0..batches.len() - 1)]
            } else {
                batches[batches.len() - 1]
            };
            // The sectors the batch touches, persisted in a random order up to a random point.
            let mut sectors: Vec<usize> = (start / SECTOR..=(end - 1) / SECTOR).collect();
            sectors.shuffle(&mut rng);
            let persisted = rng.gen_range(0..sectors.len());
            for &s in &sectors[persisted..] {
                let from = (s * SECTOR).max(start);
                let to = ((s + 1) * SECTOR).min(end);
                let fill: Vec<u8> = if rng.gen() {
                    vec![0; to - from]
                } else {
                    original[from..to]
                        .iter()
                        .map(|&x| x ^ rng.gen_range(1..=255u8))
                        .collect()
                };
                b.corrupt(&seg(1), from, &fill);
            }
            if damage_earlier {
                assert!(
                    replay(&b).is_err(),
                    "round {round}: damage in a durable batch"
                );
                continue;
            }
            let now = b.read(&seg(1)).unwrap();
            let changed = now[start..end] != original[start..end];
            // A batch of which no sector arrived looks as if it had never been written: no warning.
            let warned = changed && now[start..end].iter().any(|&x| x != 0);
            let expect = if changed {
                torn_rounds += 1;
                sealed_counts
                    .len()
                    .checked_sub(2)
                    .map_or(0, |i| sealed_counts[i])
            } else {
                written.len()
            };
            let (got, r) = replay(&b).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(got, written[..expect], "round {round}");
            assert_eq!(r.warnings.len(), usize::from(warned), "round {round}");
            // A cut is reported exactly when it removes something that is not zeros.
            assert_eq!(r.cut.is_some(), warned, "round {round}");
            // A clean log now, which takes appends where the sealed prefix ends.
            let (again, r) = replay(&b).unwrap();
            assert_eq!(
                (again.len(), r.warnings.len()),
                (expect, 0),
                "round {round}"
            );
            let mut log = TxnLog::open(
                Arc::new(b.clone()),
                Path::new(DIR),
                16384,
                r.last_zxid,
                r.tail,
            )
            .unwrap();
            let next = expect as i64 + 1;
            log.append(next, b"after").unwrap();
            log.sync().unwrap();
            let (after, _) = replay(&b).unwrap();
            assert_eq!(after.len(), expect + 1, "round {round}");
        }
        assert!(torn_rounds > 200, "{torn_rounds}");
    }

    fn recover_member(b: &MemBackend) -> Result<Recovered, StorageError> {
        recover_unapplied(b, Path::new(DIR), Path::new(DIR))
    }

    fn marked(b: &MemBackend) -> bool {
        tail_cut::read(b, Path::new(DIR)).unwrap().is_some()
    }

    /// Reliability defect 4: a cut that removes something is reported, and for an ensemble member
    /// marked durably; the mark outlives the next start, which finds a clean log. A tail of zeros
    /// is no cut.
    #[test]
    fn a_non_empty_cut_is_reported_and_marked_and_a_zero_tail_is_not() {
        // Damage in the last batch (its first record garbage or zeros: valid-looking records of
        // the batch follow either way), and a last batch without its seal: all non-empty cuts.
        for case in 0..3 {
            let b = MemBackend::new();
            write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
            let batches = batch_ranges(&b, 1);
            match case {
                0 | 1 => damage_first_record(&b, first_record_in(&b, batches[2].0), case == 0),
                _ => b.corrupt(
                    &seg(1),
                    batches[2].1 - txn_log::SEAL_LEN,
                    &[0; txn_log::SEAL_LEN],
                ),
            }
            // Inspection reports it and changes nothing.
            let p = plan(&b, Path::new(DIR), Path::new(DIR)).unwrap();
            assert_eq!(p.cut.as_ref().map(|c| c.offset), Some(batches[2].0 as u64));
            assert!(!marked(&b));
            let r = recover_member(&b).unwrap();
            let cut = r.cut.expect("a non-empty cut is reported");
            assert_eq!(
                (cut.path, cut.offset, cut.kept_zxid),
                (seg(1), batches[2].0 as u64, 8)
            );
            assert_eq!(r.last_zxid, 8);
            assert!(marked(&b), "case {case}");
            let what = tail_cut::read(&b, Path::new(DIR)).unwrap().unwrap();
            assert!(what.contains(&format!("offset {}", batches[2].0)), "{what}");
            // The next start finds a clean log, and the mark.
            let b = b.crash(case);
            let again = recover_member(&b).unwrap();
            assert!(again.cut.is_none() && again.warnings.is_empty());
            assert!(marked(&b));
            // Only synchronizing with a leader removes it (`StoreCmd::ClearTailCut`).
            tail_cut::clear(&b, Path::new(DIR)).unwrap();
            assert!(!marked(&b.crash(9)));
        }
        // A last batch of which no sector reached the disk (all zeros), and a clean log with its
        // preallocated zeros: nothing is cut, and nothing is marked.
        for zero_last_batch in [true, false] {
            let b = MemBackend::new();
            write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
            let batches = batch_ranges(&b, 1);
            if zero_last_batch {
                let (start, end) = batches[2];
                b.corrupt(&seg(1), start, &vec![0; end - start]);
            }
            let r = recover_member(&b).unwrap();
            assert!(r.cut.is_none(), "{:?}", r.cut);
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
            assert_eq!(r.last_zxid, if zero_last_batch { 8 } else { 13 });
            assert!(!marked(&b));
        }
        // An all-zero last segment (created, never written) is removed, not cut.
        let b = MemBackend::new();
        let mut log = open_log(&b, 0);
        write_batches(&mut log, 1, &[3]);
        log.roll().unwrap();
        write_batches(&mut log, 4, &[2]);
        b.corrupt(&seg(4), 0, &vec![0; b.read(&seg(4)).unwrap().len()]);
        let r = recover_member(&b).unwrap();
        assert_eq!((r.last_zxid, r.cut.is_none(), marked(&b)), (3, true, false));
        // A standalone server's recovery reports the cut but writes no mark.
        let b = MemBackend::new();
        write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
        let batches = batch_ranges(&b, 1);
        damage_first_record(&b, first_record_in(&b, batches[2].0), false);
        let r = recover_mem(&b).unwrap();
        assert!(r.cut.is_some());
        assert!(!marked(&b));
    }

    /// The mark is durable before the cut: a crash at any step of the recovery that cuts leaves
    /// either the torn tail (to be found again) or the mark, never a clean log without it.
    #[test]
    fn a_crash_at_every_step_of_a_marked_cut_never_forgets_it() {
        let mut outcomes = BTreeSet::new();
        for fail_after in 0..12 {
            for seed in 0..4 {
                let b = MemBackend::new();
                write_batches(&mut open_log(&b, 0), 1, &[4, 4, 5]);
                let batches = batch_ranges(&b, 1);
                damage_first_record(&b, first_record_in(&b, batches[2].0), false);
                b.fail_after_ops(fail_after);
                let done = recover_member(&b).is_ok();
                let after = b.crash(seed);
                let found_again = plan(&after, Path::new(DIR), Path::new(DIR))
                    .unwrap()
                    .cut
                    .is_some();
                assert!(
                    found_again || marked(&after),
                    "fail_after {fail_after}, seed {seed}: the cut is forgotten"
                );
                if done {
                    assert!(marked(&after));
                }
                outcomes.insert((found_again, marked(&after)));
            }
        }
        // Crashes before the mark, between the mark and the end of the cut, and after.
        assert!(outcomes.contains(&(true, false)), "{outcomes:?}");
        assert!(outcomes.contains(&(false, true)), "{outcomes:?}");
    }
}
