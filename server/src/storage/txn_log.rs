//! The transaction log: append-only, preallocated segment files of checksummed records, grouped
//! in sealed batches.
//!
//! Segment `log.<first zxid, 16 hex digits>`, format version 2:
//! ```text
//! header  "RKLG" | version:u32 = 2 | first_zxid:i64                                  (16 bytes)
//! batch   record, record, ..., seal        written with one write, made durable by one fdatasync
//! record  len:u32 | crc32c:u32 | zxid:i64 | payload[len]                             (16 + len bytes)
//!         len is 1..=MAX_RECORD_LEN; crc32c covers the zxid bytes and the payload
//! seal    0xffff_ffff:u32 | crc32c:u32 | batch_start:u64 | last_zxid:i64               (24 bytes)
//!         batch_start: offset of the batch's first record; last_zxid: zxid of its last record;
//!         crc32c covers "RKSL", batch_start and last_zxid
//! tail    zeros (preallocated); a len of 0 marks the end
//!
//! offset  16                     b1                  b2
//!         | rec rec rec seal(16) | rec seal(b1)      | rec rec seal(b2) | 0 0 0 0 ...
//! ```
//! Records are appended in zxid order with no gaps (see [`zxid_follows`]: the counter goes up by one
//! within an epoch, and a new epoch starts at counter 1). Each group-commit batch is written with
//! one write, its seal included, and made durable with one `fdatasync`. [`TxnLog::truncate_after`]
//! removes a suffix durably, for a ZAB follower told to drop proposals the new leader does not have.
//!
//! # Why batches are sealed
//!
//! A disk may persist the sectors of an unsynced write in any order: after a power cut, the last
//! batch can have its first records damaged and its later records intact. Without batch framing
//! that reads exactly like a bit flip in the middle of the history, and recovery would refuse to
//! start. The seals tell the two apart, from one invariant of the writer: **batch N+1 is written
//! only after the `fdatasync` of batch N has returned** (asserted in [`TxnLog::sync`]). So:
//!
//! - A valid seal of a *later* batch after some damage proves that the damaged batch had been made
//!   durable (and possibly acknowledged): the damage is corruption, a loud error.
//! - Damage in the last batch written, the one no later write follows, is the tear of a write whose
//!   `fdatasync` never returned, so none of it was acknowledged: the scan cuts the log at the start
//!   of that batch (just past the previous seal), dropping also the valid-looking records of the
//!   batch that follow the damage. A last batch whose records are intact but whose seal is missing
//!   was not completely written either, and is cut the same way.
//!
//! The seal is written in the same write as its batch, so a valid seal alone does not prove that
//! its batch reached the disk (its sector may have been persisted before the batch's first ones):
//! the scan accepts a seal only after every record from `batch_start` up to it has checked out, and
//! a seal's own evidence is only ever used against *earlier* batches. A seal written after the
//! batch's `fdatasync` would prove the batch durable by itself, at the cost of a second sync per
//! batch; the next batch proves it for free.
//!
//! Every kept record is therefore followed by its batch's seal, and where appending continues
//! ([`Scan::end`]) is always just past a seal (or the header). A truncation that cuts inside a batch
//! writes a new seal for the kept part (see [`TxnLog::truncate_after`]).
//!
//! What the rule cannot tell apart: damage to the log's last batch after it was made durable (a
//! media fault, with no later write) looks like a tear and is cut, as a flip in the last record
//! was before; likewise a damaged seal of the durable last batch followed by a next batch torn
//! before its own seal. A checksummed log without a second copy cannot do better; replication is
//! the answer.
//!
//! # Version 1
//!
//! Version 1 segments (written before seals existed) have the same header and records and no
//! seals. They are still read, with their rule: damage followed only by zeros (or the end of the
//! file) is a torn tail, cut at the damaged record; damage followed by a valid record with a later
//! zxid is corruption. Appending never continues in a version 1 segment: the next record starts a
//! new (version 2) segment.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use super::backend::{in_dir, Backend, FileHandle};
use super::StorageError;

/// Segment file magic.
pub const MAGIC: &[u8; 4] = b"RKLG";
/// Segment format version written: records grouped in sealed batches.
pub const VERSION: u32 = 2;
/// The previous segment format version: records without batch seals (still read).
pub const UNSEALED_VERSION: u32 = 1;
/// Segment header length.
pub const HEADER_LEN: u64 = 16;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 16;
/// The value of a seal's first four bytes, where a record holds its length: above
/// [`MAX_RECORD_LEN`], so no record can be mistaken for a seal.
pub const SEAL_MARK: u32 = u32::MAX;
/// Batch seal length, in bytes.
pub const SEAL_LEN: usize = 24;
/// Mixed into a seal's checksum, so that a seal's checksum is never a record's.
const SEAL_TAG: &[u8; 4] = b"RKSL";
/// Name of the file prepared ahead for the next segment (not a segment name: recovery, purge and
/// listing ignore it).
pub const SPARE_NAME: &str = "log.spare";
/// Name of the file a truncation inside a batch writes before renaming it over the segment (not a
/// segment name either).
pub const TRUNCATING_NAME: &str = "log.truncating";

/// The largest payload a record may hold; anything larger is corruption.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// The epoch of a zxid: its high 32 bits.
pub fn zxid_epoch(zxid: i64) -> u32 {
    ((zxid as u64) >> 32) as u32
}

/// The counter of a zxid: its low 32 bits.
pub fn zxid_counter(zxid: i64) -> u32 {
    zxid as u64 as u32
}

/// Whether the record `next` may directly follow the record `prev` in the log.
///
/// Zxids strictly increase. Within an epoch the counter goes up by one; a new epoch starts at
/// counter 1, which is where a ZAB leader of that epoch starts proposing (after
/// `0x1_0000_0005` may come `0x2_0000_0001`). `prev + 1` is always allowed: it is the rule within
/// an epoch, and it also lets a standalone server (epoch 0) count past 2^32 into the next epoch,
/// as ZooKeeper's standalone server does. Anything else is a hole in the history.
pub fn zxid_follows(prev: i64, next: i64) -> bool {
    if next <= prev {
        return false;
    }
    prev.checked_add(1) == Some(next)
        || (zxid_epoch(next) > zxid_epoch(prev) && zxid_counter(next) == 1)
}

/// The file name of the segment whose first record is `first_zxid`.
pub fn segment_name(first_zxid: i64) -> String {
    format!("log.{first_zxid:016x}")
}

/// The first zxid a segment name promises.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix("log.")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(|v| v as i64)
}

/// Segments in `dir`, sorted by first zxid.
pub fn list_segments(
    backend: &dyn Backend,
    dir: &Path,
) -> Result<Vec<(i64, String)>, StorageError> {
    let mut segs: Vec<(i64, String)> = backend
        .list(dir)
        .map_err(StorageError::io("list", dir))?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|z| (z, n)))
        .collect();
    segs.sort();
    Ok(segs)
}

/// Encodes one record.
pub fn encode_record(zxid: i64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= MAX_RECORD_LEN,
        "record of {} bytes",
        payload.len()
    );
    let zb = zxid.to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&zb), payload);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&zb);
    out.extend_from_slice(payload);
}

fn seal_crc(batch_start: u64, last_zxid: i64) -> u32 {
    let crc = crc32c::crc32c_append(crc32c::crc32c(SEAL_TAG), &batch_start.to_be_bytes());
    crc32c::crc32c_append(crc, &last_zxid.to_be_bytes())
}

/// Encodes the seal of the batch whose first record is at offset `batch_start` and whose last
/// record is `last_zxid`.
pub fn encode_seal(batch_start: u64, last_zxid: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&SEAL_MARK.to_be_bytes());
    out.extend_from_slice(&seal_crc(batch_start, last_zxid).to_be_bytes());
    out.extend_from_slice(&batch_start.to_be_bytes());
    out.extend_from_slice(&last_zxid.to_be_bytes());
}

fn header(first_zxid: i64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&first_zxid.to_be_bytes());
    h
}

/// One valid record found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Its zxid.
    pub zxid: i64,
    /// Offset of the record header.
    pub offset: usize,
    /// Payload length.
    pub len: usize,
}

impl RecordRef {
    /// The payload within the segment bytes.
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let start = self.offset + RECORD_HEADER_LEN;
        &bytes[start..start + self.len]
    }

    /// Offset just past the record.
    pub fn end(&self) -> usize {
        self.offset + RECORD_HEADER_LEN + self.len
    }
}

/// One valid batch seal found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealRef {
    /// Offset of the seal.
    pub offset: usize,
    /// Offset of its batch's first record, as the seal says. Read from the file: only ever
    /// compared, never used to index.
    pub batch_start: u64,
    /// Zxid of its batch's last record, as the seal says.
    pub last_zxid: i64,
}

impl SealRef {
    /// Offset just past the seal: where the next batch starts.
    pub fn end(&self) -> usize {
        self.offset + SEAL_LEN
    }
}

/// What a scan of one segment found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Valid records in order (in a version 2 segment, only those of sealed batches).
    pub records: Vec<RecordRef>,
    /// The seals of the batches kept, in order (none in a version 1 segment).
    pub seals: Vec<SealRef>,
    /// Offset where appending continues: just past the last seal (version 2) or the last valid
    /// record (version 1). A torn tail starts here.
    pub end: u64,
    /// Set when the bytes from [`Scan::end`] on are a torn write: (that offset, why). Never set
    /// when those bytes are all zeros: a torn tail always holds valid-looking records of an
    /// unsealed batch or some byte that is not zero, so cutting it removes something.
    pub torn: Option<(u64, String)>,
    /// The header itself was never completely written (an all-zero or short file).
    pub torn_header: bool,
    /// The segment's format version (0 if the header was never written).
    pub version: u32,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn parse_record(bytes: &[u8], off: usize) -> Result<RecordRef, &'static str> {
    let (Some(len), Some(crc), Some(zxid)) = (
        be_u32(bytes, off),
        be_u32(bytes, off + 4),
        be_u64(bytes, off + 8),
    ) else {
        return Err("short record header");
    };
    let len = len as usize;
    if len == 0 {
        return Err("end marker");
    }
    if len > MAX_RECORD_LEN {
        return Err("record length out of range");
    }
    let start = off + RECORD_HEADER_LEN;
    let Some(payload) = bytes.get(start..start + len) else {
        return Err("record runs past the end of the file");
    };
    if crc32c::crc32c_append(crc32c::crc32c(&zxid.to_be_bytes()), payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(RecordRef {
        zxid: zxid as i64,
        offset: off,
        len,
    })
}

/// A valid seal at `off`, if there is one. Fixed size: a hostile `batch_start` costs nothing.
fn parse_seal(bytes: &[u8], off: usize) -> Option<SealRef> {
    if be_u32(bytes, off)? != SEAL_MARK {
        return None;
    }
    let crc = be_u32(bytes, off + 4)?;
    let batch_start = be_u64(bytes, off + 8)?;
    let last_zxid = be_u64(bytes, off + 16)? as i64;
    (seal_crc(batch_start, last_zxid) == crc).then_some(SealRef {
        offset: off,
        batch_start,
        last_zxid,
    })
}

/// What a version 2 segment holds at an offset.
enum Item {
    Record(RecordRef),
    Seal(SealRef),
}

fn parse_item(bytes: &[u8], off: usize) -> Result<Item, &'static str> {
    if be_u32(bytes, off) == Some(SEAL_MARK) {
        return parse_seal(bytes, off)
            .map(Item::Seal)
            .ok_or("damaged batch seal");
    }
    parse_record(bytes, off).map(Item::Record)
}

/// Checks that `rec` may follow `prev` (or, first in the segment, is the zxid the header promises).
fn check_order(
    path: &Path,
    first: i64,
    prev: Option<i64>,
    rec: &RecordRef,
) -> Result<(), StorageError> {
    let in_order = match prev {
        None => rec.zxid == first,
        Some(p) => zxid_follows(p, rec.zxid),
    };
    if in_order {
        return Ok(());
    }
    let expected = match prev {
        None => format!("the segment's first zxid {first:#x}"),
        Some(p) => format!("a successor of {p:#x}"),
    };
    Err(StorageError::corrupt(
        path,
        rec.offset as u64,
        format!(
            "zxid {:#x} where {expected} was expected (a gap in the history)",
            rec.zxid
        ),
    ))
}

/// Scans a segment's bytes. `expected_first` is the zxid the name promises.
///
/// Version 2 (sealed batches): damage in the last batch written is a torn write, and the scan
/// stops just past the previous seal, reporting it in [`Scan::torn`]; damage in a batch that a
/// later write follows is corruption, an error. Version 1: after the last valid record the file
/// must hold only zeros; if it does not, the bytes are a torn write unless a valid record with a
/// later zxid follows them, which means the damage is in the middle of the history: an error. See
/// the module docs for why.
pub fn scan(path: &Path, bytes: &[u8], expected_first: i64) -> Result<Scan, StorageError> {
    if bytes.len() < HEADER_LEN as usize || bytes[..HEADER_LEN as usize].iter().all(|&b| b == 0) {
        if bytes.iter().all(|&b| b == 0) {
            return Ok(Scan {
                torn_header: true,
                ..Scan::default()
            });
        }
        return Err(StorageError::corrupt(path, 0, "segment header is damaged"));
    }
    if &bytes[..4] != MAGIC {
        return Err(StorageError::corrupt(
            path,
            0,
            "not a Rookery log segment (bad magic)",
        ));
    }
    let version = be_u32(bytes, 4).unwrap_or_default();
    if version != VERSION && version != UNSEALED_VERSION {
        return Err(StorageError::corrupt(
            path,
            4,
            format!("unsupported log format version {version}"),
        ));
    }
    let first = be_u64(bytes, 8).unwrap_or_default() as i64;
    if first != expected_first {
        return Err(StorageError::corrupt(
            path,
            8,
            format!("header says first zxid {first:#x}, name says {expected_first:#x}"),
        ));
    }
    if version == UNSEALED_VERSION {
        scan_unsealed(path, bytes, first)
    } else {
        scan_sealed(path, bytes, first)
    }
}

/// The version 2 scan: records in sealed batches.
fn scan_sealed(path: &Path, bytes: &[u8], first: i64) -> Result<Scan, StorageError> {
    let mut out = Scan {
        version: VERSION,
        ..Scan::default()
    };
    let mut off = HEADER_LEN as usize;
    // Where the batch being read starts: just past the last seal (or the header).
    let mut batch_start = off;
    // How many of `out.records` are in sealed batches.
    let mut sealed = 0;
    // The zxid of the previous record; the first record must be the one the header promises.
    let mut prev: Option<i64> = None;
    loop {
        match parse_item(bytes, off) {
            Ok(Item::Record(rec)) => {
                check_order(path, first, prev, &rec)?;
                prev = Some(rec.zxid);
                off = rec.end();
                out.records.push(rec);
            }
            Ok(Item::Seal(seal)) => {
                // The writer seals exactly the records it wrote since the last seal, so a valid
                // seal that says otherwise is not a tear: nothing writes such a seal.
                if seal.batch_start != batch_start as u64
                    || out.records.len() == sealed
                    || prev != Some(seal.last_zxid)
                {
                    return Err(StorageError::corrupt(
                        path,
                        off as u64,
                        format!(
                            "batch seal for offset {} and zxid {:#x} does not match the batch it \
                             closes ({} records from offset {batch_start}, last zxid {})",
                            seal.batch_start,
                            seal.last_zxid,
                            out.records.len() - sealed,
                            prev.map_or("none".to_owned(), |p| format!("{p:#x}")),
                        ),
                    ));
                }
                off = seal.end();
                batch_start = off;
                sealed = out.records.len();
                out.seals.push(seal);
            }
            Err(why) => {
                out.end = batch_start as u64;
                let unsealed = out.records.len() - sealed;
                if bytes[off..].iter().all(|&b| b == 0) {
                    if unsealed == 0 {
                        return Ok(out);
                    }
                    out.torn = Some((
                        batch_start as u64,
                        format!(
                            "the last batch ({unsealed} records) has no seal: its write never \
                             completed"
                        ),
                    ));
                } else {
                    let min_later = prev.map_or(first, |p| p.saturating_add(1));
                    if let Some(evidence) = later_write(bytes, off, batch_start, min_later) {
                        return Err(StorageError::corrupt(
                            path,
                            off as u64,
                            format!(
                                "{why}, but {evidence}: the batch from offset {batch_start} had \
                                 been made durable, so the log is damaged mid-history"
                            ),
                        ));
                    }
                    out.torn = Some((
                        batch_start as u64,
                        format!(
                            "{why} at offset {off}, in the last batch written (from offset \
                             {batch_start})"
                        ),
                    ));
                }
                // The whole last batch goes, valid-looking records before and after the damage
                // alike: it was never completely written, so none of it was acknowledged.
                out.records.truncate(sealed);
                return Ok(out);
            }
        }
    }
}

/// Evidence that something was written after the batch that starts at `batch_start` and is
/// damaged at `damage`; `min_later` is the first zxid a later record could have. Such a write
/// started only after that batch's `fdatasync` returned (see the module docs).
///
/// The evidence is a valid seal of a later batch, or a valid record past the damaged batch's own
/// seal. Without its own seal, the damaged batch's extent is unknown, and valid records after the
/// damage may be its own, persisted before its first sectors: they prove nothing.
fn later_write(bytes: &[u8], damage: usize, batch_start: usize, min_later: i64) -> Option<String> {
    let mut own_end = None;
    // `damage` itself holds no valid seal: the scan failed to parse anything there.
    for p in damage + 1..bytes.len().saturating_sub(SEAL_LEN - 1) {
        let Some(seal) = parse_seal(bytes, p) else {
            continue;
        };
        if seal.batch_start == batch_start as u64 && own_end.is_none() {
            own_end = Some(seal.end());
            continue;
        }
        // A seal of a later batch, or one no writer could have put here: either way not a tear.
        return Some(format!(
            "a batch seal (at offset {p}, for the batch from offset {}) follows",
            seal.batch_start
        ));
    }
    let own_end = own_end?;
    find_later_record(bytes, own_end, min_later).map(|z| {
        format!(
            "the batch's seal ends at offset {own_end} and a valid record (zxid {z:#x}) follows it"
        )
    })
}

/// The version 1 scan: records, no seals.
fn scan_unsealed(path: &Path, bytes: &[u8], first: i64) -> Result<Scan, StorageError> {
    let mut out = Scan {
        version: UNSEALED_VERSION,
        ..Scan::default()
    };
    let mut off = HEADER_LEN as usize;
    // The zxid of the previous record; the first record must be the one the header promises.
    let mut prev: Option<i64> = None;
    loop {
        match parse_record(bytes, off) {
            Ok(rec) => {
                check_order(path, first, prev, &rec)?;
                prev = Some(rec.zxid);
                off = rec.end();
                out.records.push(rec);
            }
            Err(why) => {
                out.end = off as u64;
                if bytes[off..].iter().all(|&b| b == 0) {
                    return Ok(out);
                }
                // Any valid record with a later zxid than the last good one means the damage is
                // in the middle of the history.
                let min_later = prev.map_or(first, |p| p.saturating_add(1));
                if let Some(later) = find_later_record(bytes, off + 1, min_later) {
                    return Err(StorageError::corrupt(
                        path,
                        off as u64,
                        format!("{why}, but a valid record (zxid {later:#x}) follows: the log is damaged mid-history"),
                    ));
                }
                out.torn = Some((off as u64, why.to_owned()));
                return Ok(out);
            }
        }
    }
}

/// Looks for any valid record at or after `from` whose zxid is at least `min_zxid`.
fn find_later_record(bytes: &[u8], from: usize, min_zxid: i64) -> Option<i64> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN))
        // The zxid first: it is cheap, and most offsets fail it before a checksum is computed.
        .filter(|&p| be_u64(bytes, p + 8).is_some_and(|z| z as i64 >= min_zxid))
        .filter_map(|p| parse_record(bytes, p).ok())
        .map(|r| r.zxid)
        .find(|&z| z >= min_zxid)
}

/// Where appending continues after recovery.
#[derive(Debug, Clone)]
pub struct Tail {
    /// The segment file.
    pub path: PathBuf,
    /// Offset just past the last valid record.
    pub end: u64,
    /// The file's length (preallocated space included).
    pub allocated: u64,
}

struct Segment {
    file: Box<dyn FileHandle>,
    path: PathBuf,
    write_pos: u64,
    allocated: u64,
}

/// The log writer. Not thread-safe by design: one thread owns it (see `log_writer`).
pub struct TxnLog {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    prealloc_bytes: u64,
    current: Option<Segment>,
    batch: Vec<u8>,
    batch_first: Option<i64>,
    last_zxid: i64,
    poisoned: bool,
    /// Set from the write of a batch until its `fdatasync` returns. Recovery tells a torn last
    /// batch from damage mid-history by the rule that no batch is written while another is in
    /// flight (see the module docs); [`TxnLog::sync`] asserts it.
    batch_in_flight: bool,
    /// The next segment's file, being preallocated on another thread ([`TxnLog::prepare_ahead`]).
    spare: Option<mpsc::Receiver<std::io::Result<Box<dyn FileHandle>>>>,
    prepare_ahead: bool,
    /// Segments started from a prepared file (for tests).
    from_spare: u64,
}

impl TxnLog {
    /// A writer for `dir` whose last durable record is `last_zxid`; if `tail` is given, appending
    /// continues in that segment.
    pub fn open(
        backend: Arc<dyn Backend>,
        dir: &Path,
        prealloc_bytes: u64,
        last_zxid: i64,
        tail: Option<Tail>,
    ) -> Result<TxnLog, StorageError> {
        backend
            .create_dir_all(dir)
            .map_err(StorageError::io("create directory", dir))?;
        let current = match tail {
            Some(t) => {
                let file = backend
                    .open_rw(&t.path)
                    .map_err(StorageError::io("open", &t.path))?;
                Some(Segment {
                    file,
                    path: t.path,
                    write_pos: t.end,
                    allocated: t.allocated,
                })
            }
            None => None,
        };
        Ok(TxnLog {
            backend,
            dir: dir.to_owned(),
            prealloc_bytes: prealloc_bytes.max(4096),
            current,
            batch: Vec::new(),
            batch_first: None,
            last_zxid,
            poisoned: false,
            batch_in_flight: false,
            spare: None,
            prepare_ahead: false,
            from_spare: 0,
        })
    }

    /// Preallocates the next segment on a background thread from now on, so that starting a
    /// segment (after each snapshot) does not stall acknowledgements for the time it takes to
    /// write `prealloc_bytes` of zeros. Off by default: tests that count storage operations to
    /// crash at each one need them in a fixed order.
    pub fn prepare_ahead(&mut self) {
        self.prepare_ahead = true;
        self.start_spare();
    }

    fn start_spare(&mut self) {
        if !self.prepare_ahead || self.spare.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (backend, path, len) = (
            self.backend.clone(),
            in_dir(&self.dir, SPARE_NAME),
            self.prealloc_bytes,
        );
        let spawned = std::thread::Builder::new()
            .name("rookery-log-prealloc".into())
            .spawn(move || {
                let r = (|| {
                    let mut file = backend.create(&path)?;
                    extend_with_zeros(file.as_mut(), 0, len)?;
                    file.sync_data()?;
                    Ok(file)
                })();
                let _ = tx.send(r);
            });
        if spawned.is_ok() {
            self.spare = Some(rx);
        }
    }

    /// The prepared spare file, if it is ready (never waits for it).
    fn take_spare(&mut self) -> Option<Box<dyn FileHandle>> {
        let rx = self.spare.take()?;
        match rx.try_recv() {
            Ok(Ok(file)) => Some(file),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "preparing the next log segment failed; creating it inline");
                None
            }
            Err(mpsc::TryRecvError::Empty) => {
                self.spare = Some(rx);
                None
            }
            Err(mpsc::TryRecvError::Disconnected) => None,
        }
    }

    /// The last zxid appended (durable or not).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Adds a record to the current batch. Zxids must follow on without gaps ([`zxid_follows`]).
    ///
    /// # Panics
    /// If `zxid` does not follow the last record: a caller that skips or repeats a zxid has lost
    /// track of the history, and writing on would make the log unrecoverable.
    pub fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        assert!(
            zxid_follows(self.last_zxid, zxid),
            "log append of zxid {zxid:#x} does not follow {:#x}",
            self.last_zxid
        );
        if self.current.is_none() && self.batch_first.is_none() {
            self.batch_first = Some(zxid);
        }
        encode_record(zxid, payload, &mut self.batch);
        self.last_zxid = zxid;
        Ok(())
    }

    /// Writes the batch, sealed, with one write and makes it durable with one `fdatasync`; returns
    /// the last durable zxid. On any error the log is poisoned: no later call succeeds, because
    /// after a failed fsync the kernel may have dropped the dirty pages and a retry would report
    /// success for data that is gone. That also keeps the invariant recovery relies on: a batch is
    /// written only after the previous one is durable.
    ///
    /// # Panics
    /// If a batch is still in flight (written, not yet durable): nothing may be written after it
    /// until its sync has returned.
    pub fn sync(&mut self) -> Result<i64, StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let r = self.sync_inner();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn sync_inner(&mut self) -> Result<i64, StorageError> {
        if self.batch.is_empty() {
            return Ok(self.last_zxid);
        }
        if self.current.is_none() {
            let first = self
                .batch_first
                .take()
                .expect("a batch without a segment has a first zxid");
            self.current = Some(self.create_segment(first)?);
        }
        let seg = self.current.as_mut().expect("segment exists");
        // The seal goes in the same write as its records: a seal alone proves nothing about its
        // batch (recovery checks the records too), so a second write and sync would buy nothing
        // the next batch does not prove anyway (see the module docs).
        encode_seal(seg.write_pos, self.last_zxid, &mut self.batch);
        let need = seg.write_pos + self.batch.len() as u64 + RECORD_HEADER_LEN as u64;
        if need > seg.allocated {
            let target = need.max(seg.allocated + self.prealloc_bytes);
            extend_with_zeros(seg.file.as_mut(), seg.allocated, target)
                .map_err(StorageError::io("preallocate", &seg.path))?;
            seg.allocated = target;
        }
        assert!(
            !self.batch_in_flight,
            "a log batch written before the previous one was durable"
        );
        self.batch_in_flight = true;
        seg.file
            .write_at(seg.write_pos, &self.batch)
            .map_err(StorageError::io("write", &seg.path))?;
        seg.file
            .sync_data()
            .map_err(StorageError::io("fdatasync", &seg.path))?;
        // Only now may anything be written after this batch. (On an error the flag stays set, and
        // the log is poisoned: nothing is written again.)
        self.batch_in_flight = false;
        seg.write_pos += self.batch.len() as u64;
        self.batch.clear();
        Ok(self.last_zxid)
    }

    /// Starts a new segment at the next append (after a snapshot). Syncs the current batch first.
    pub fn roll(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        self.current = None;
        Ok(())
    }

    /// Durably removes every segment, and continues after the last zxid in a new one: for a
    /// snapshot install, whose image (already durable) replaces the whole history up to there.
    pub fn remove_segments(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        self.current = None;
        let r = (|| {
            for (_, name) in list_segments(self.backend.as_ref(), &self.dir)? {
                let path = in_dir(&self.dir, &name);
                self.backend
                    .remove(&path)
                    .map_err(StorageError::io("remove", &path))?;
            }
            self.backend
                .sync_dir(&self.dir)
                .map_err(StorageError::io("fsync directory", &self.dir))
        })();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Durably removes every record after `zxid` (ZAB's TRUNC), and continues appending after it.
    ///
    /// The pending batch is synced first. Then segments that start after `zxid` are removed newest
    /// first, each removal made durable (directory fsync) before the next, and the segment holding
    /// `zxid` is cut just after that record (and its batch's seal) and `fdatasync`ed. At every
    /// point a crash leaves a prefix of the old records that still reaches `zxid`, so recovery
    /// never sees a hole.
    ///
    /// The cut is a truncation of the file rather than zeros written over the tail: zeros written
    /// over several records can tear (a sector-aligned prefix of the write reaches the disk), which
    /// would leave valid records after zeros, and recovery rightly refuses that as mid-history
    /// damage. A file length change is atomic. The preallocation is redone by the next sync. When
    /// `zxid` is not the last record of its batch, the kept records need a seal of their own, and
    /// the segment is rewritten up to the cut and renamed into place instead
    /// ([`TxnLog::rewrite_sealed`] says why).
    ///
    /// If the log holds no record `zxid` (the caller has installed a snapshot at `zxid` that covers
    /// what came before, possibly past the last record), the next append starts a new segment, so
    /// no segment has a hole.
    pub fn truncate_after(&mut self, zxid: i64) -> Result<(), StorageError> {
        self.sync()?;
        if zxid >= self.last_zxid {
            if zxid > self.last_zxid {
                // Nothing to remove, but the history now continues after `zxid`: a new segment.
                self.current = None;
                self.last_zxid = zxid;
            }
            return Ok(());
        }
        let r = self.truncate_inner(zxid);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn truncate_inner(&mut self, zxid: i64) -> Result<(), StorageError> {
        let segments = list_segments(self.backend.as_ref(), &self.dir)?;
        let mut keep = None;
        for (first, name) in segments.into_iter().rev() {
            let path = in_dir(&self.dir, &name);
            if first <= zxid {
                keep = Some((first, path));
                break;
            }
            if self.current.as_ref().is_some_and(|c| c.path == path) {
                self.current = None;
            }
            self.backend
                .remove(&path)
                .map_err(StorageError::io("remove", &path))?;
            self.backend
                .sync_dir(&self.dir)
                .map_err(StorageError::io("fsync directory", &self.dir))?;
            tracing::debug!(path = %path.display(), "truncation removed a log segment");
        }
        self.last_zxid = zxid;
        let Some((first, path)) = keep else {
            self.current = None;
            return Ok(());
        };
        let bytes = self
            .backend
            .read(&path)
            .map_err(StorageError::io("read", &path))?;
        let scan = scan(&path, &bytes, first)?;
        let last_kept = scan.records.iter().rfind(|r| r.zxid <= zxid).copied();
        let old_file = match self.current.take() {
            Some(seg) if seg.path == path => Some(seg.file),
            _ => None,
        };
        let (file, end) = match last_kept {
            // Inside a sealed batch: the kept records need a seal of their own, which cannot be
            // written in place (`rewrite_sealed` says why).
            Some(rec)
                if scan.version == VERSION && !scan.seals.iter().any(|s| s.offset == rec.end()) =>
            {
                drop(old_file);
                let batch_start = scan
                    .seals
                    .iter()
                    .rfind(|s| s.offset < rec.offset)
                    .map_or(HEADER_LEN as usize, SealRef::end);
                let end = rec.end() + SEAL_LEN;
                let file =
                    self.rewrite_sealed(&path, &bytes[..rec.end()], batch_start, rec.zxid)?;
                (file, end as u64)
            }
            _ => {
                // At a batch boundary (just past the last kept record's seal, or the header), or
                // in a version 1 segment (no seals): a plain cut.
                let cut = match last_kept {
                    Some(rec) if scan.version == VERSION => (rec.end() + SEAL_LEN) as u64,
                    Some(rec) => rec.end() as u64,
                    None => HEADER_LEN,
                };
                let mut file = match old_file {
                    Some(f) => f,
                    None => self
                        .backend
                        .open_rw(&path)
                        .map_err(StorageError::io("open", &path))?,
                };
                if cut < bytes.len() as u64 {
                    file.set_len(cut)
                        .map_err(StorageError::io("truncate", &path))?;
                    file.sync_data()
                        .map_err(StorageError::io("fdatasync", &path))?;
                }
                (file, cut)
            }
        };
        // Appending continues in this segment only if it ends exactly at `zxid` (otherwise the
        // next record would not follow the segment's last one) and it has the current format (a
        // version 1 segment must not get seals).
        if last_kept.map(|r| r.zxid) == Some(zxid) && scan.version == VERSION {
            self.current = Some(Segment {
                file,
                path,
                write_pos: end,
                allocated: end,
            });
        }
        Ok(())
    }

    /// Replaces the segment at `path`, atomically, with `prefix` (whole sealed batches, then the
    /// records kept of one more batch, which starts at offset `batch_start`) followed by a new
    /// seal for those records, the last of which is `last_zxid`. Returns the new file.
    ///
    /// A cut inside a batch cannot be made in place. After a plain cut the kept records would
    /// have no seal, and recovery would drop them as a torn batch, though they were durable (and
    /// maybe acknowledged); a seal written over the first dropped record first can tear, and then
    /// the old seal of the batch, or later batches, make that tear look like damage mid-history.
    /// So the new contents go to a separate file, made durable, and renamed over the segment: a
    /// crash leaves the old segment or the new one, both reaching `last_zxid`. This copies the
    /// segment up to the cut, which a ZAB truncation (rare: a leader change) can afford.
    fn rewrite_sealed(
        &mut self,
        path: &Path,
        prefix: &[u8],
        batch_start: usize,
        last_zxid: i64,
    ) -> Result<Box<dyn FileHandle>, StorageError> {
        let tmp = in_dir(&self.dir, TRUNCATING_NAME);
        let mut seal = Vec::with_capacity(SEAL_LEN);
        encode_seal(batch_start as u64, last_zxid, &mut seal);
        let mut file = self
            .backend
            .create(&tmp)
            .map_err(StorageError::io("create", &tmp))?;
        file.write_at(0, prefix)
            .map_err(StorageError::io("write", &tmp))?;
        file.write_at(prefix.len() as u64, &seal)
            .map_err(StorageError::io("write", &tmp))?;
        file.sync_data()
            .map_err(StorageError::io("fdatasync", &tmp))?;
        self.backend
            .rename(&tmp, path)
            .map_err(StorageError::io("rename", &tmp))?;
        self.backend
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync directory", &self.dir))?;
        tracing::debug!(path = %path.display(), "truncation inside a batch rewrote the segment");
        Ok(file)
    }

    fn create_segment(&mut self, first_zxid: i64) -> Result<Segment, StorageError> {
        let path = in_dir(&self.dir, &segment_name(first_zxid));
        if let Some(mut file) = self.take_spare() {
            // Already preallocated and synced: rename it into place, then write the header. A
            // crash before the header is durable leaves a segment of zeros, which recovery
            // removes as never written, exactly as for a segment created inline.
            let spare = in_dir(&self.dir, SPARE_NAME);
            self.backend
                .rename(&spare, &path)
                .map_err(StorageError::io("rename", &spare))?;
            file.write_at(0, &header(first_zxid))
                .map_err(StorageError::io("write", &path))?;
            file.sync_data()
                .map_err(StorageError::io("fdatasync", &path))?;
            self.backend
                .sync_dir(&self.dir)
                .map_err(StorageError::io("fsync directory", &self.dir))?;
            tracing::debug!(path = %path.display(), "new log segment (prepared ahead)");
            self.from_spare += 1;
            self.start_spare();
            return Ok(Segment {
                file,
                path,
                write_pos: HEADER_LEN,
                allocated: self.prealloc_bytes.max(HEADER_LEN),
            });
        }
        let mut file = self
            .backend
            .create(&path)
            .map_err(StorageError::io("create", &path))?;
        file.write_at(0, &header(first_zxid))
            .map_err(StorageError::io("write", &path))?;
        extend_with_zeros(file.as_mut(), HEADER_LEN, self.prealloc_bytes)
            .map_err(StorageError::io("preallocate", &path))?;
        file.sync_data()
            .map_err(StorageError::io("fdatasync", &path))?;
        // The new file's directory entry must be durable before any record in it is acknowledged.
        self.backend
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync directory", &self.dir))?;
        tracing::debug!(path = %path.display(), "new log segment");
        self.start_spare();
        Ok(Segment {
            file,
            path,
            write_pos: HEADER_LEN,
            allocated: self.prealloc_bytes.max(HEADER_LEN),
        })
    }
}

/// Writes zeros over `[from, to)`: real allocation, so later fdatasyncs need not update
/// the file's block map.
fn extend_with_zeros(file: &mut dyn FileHandle, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(CHUNK);
        file.write_at(pos, &zeros[..n])?;
        pos += n as u64;
    }
    Ok(())
}

/// Zeroes a torn tail from `end` so the segment again ends in zeros, and makes that durable.
pub fn truncate_torn_tail(
    backend: &dyn Backend,
    path: &Path,
    bytes: &[u8],
    end: u64,
) -> Result<(), StorageError> {
    let last_nonzero = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1) as u64;
    if last_nonzero <= end {
        return Ok(());
    }
    let mut file = backend
        .open_rw(path)
        .map_err(StorageError::io("open", path))?;
    extend_with_zeros(file.as_mut(), end, last_nonzero).map_err(StorageError::io("write", path))?;
    file.sync_data()
        .map_err(StorageError::io("fdatasync", path))
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;

    #[test]
    fn segments_prepared_ahead_replace_inline_creation() {
        let b = MemBackend::new();
        let dir = Path::new("/l");
        let mut log = TxnLog::open(Arc::new(b.clone()), dir, 8192, 0, None).unwrap();
        log.prepare_ahead();
        let mut z = 0;
        for _ in 0..4 {
            // Give the preparing thread time to finish, so the roll takes its file.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !b.list(dir).unwrap().iter().any(|n| n == SPARE_NAME) {
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            for _ in 0..3 {
                z += 1;
                log.append(z, b"payload").unwrap();
            }
            log.sync().unwrap();
            log.roll().unwrap();
        }
        let segments = list_segments(&b, dir).unwrap();
        assert_eq!(
            segments.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 4, 7, 10]
        );
        let mut seen = Vec::new();
        for (first, name) in segments {
            let path = in_dir(dir, &name);
            let bytes = b.read(&path).unwrap();
            assert!(bytes.len() >= 8192, "the segment was preallocated");
            let scan = scan(&path, &bytes, first).unwrap();
            seen.extend(scan.records.iter().map(|r| r.zxid));
        }
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());
        assert_eq!(log.from_spare, 4, "every segment came from a prepared file");
    }

    fn log_with(b: &MemBackend, n: i64) -> PathBuf {
        let mut log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        for z in 1..=n {
            log.append(z, format!("payload {z}").as_bytes()).unwrap();
            if z % 3 == 0 {
                log.sync().unwrap();
            }
        }
        log.sync().unwrap();
        in_dir(Path::new("/l"), &segment_name(1))
    }

    #[test]
    fn records_scan_back() {
        let b = MemBackend::new();
        let path = log_with(&b, 10);
        let bytes = b.read(&path).unwrap();
        assert_eq!(bytes.len(), 8192);
        let s = scan(&path, &bytes, 1).unwrap();
        assert_eq!(s.records.len(), 10);
        assert_eq!(s.records[9].payload(&bytes), b"payload 10");
        assert!(s.torn.is_none());
    }

    #[test]
    fn torn_tail_is_reported_not_an_error() {
        let b = MemBackend::new();
        let path = log_with(&b, 10);
        let bytes = b.read(&path).unwrap();
        let s = scan(&path, &bytes, 1).unwrap();
        // Tear the last record: keep only part of it.
        let last = s.records[9];
        let mut torn = bytes.clone();
        for byte in torn.iter_mut().skip(last.offset + 20) {
            *byte = 0;
        }
        let s2 = scan(&path, &torn, 1).unwrap();
        assert_eq!(s2.records.len(), 9);
        assert_eq!(s2.torn.as_ref().unwrap().0, last.offset as u64);
    }

    #[test]
    fn mid_history_damage_is_an_error() {
        let b = MemBackend::new();
        let path = log_with(&b, 10);
        let mut bytes = b.read(&path).unwrap();
        let s = scan(&path, &bytes, 1).unwrap();
        bytes[s.records[4].offset + RECORD_HEADER_LEN] ^= 0x40;
        let err = scan(&path, &bytes, 1).unwrap_err().to_string();
        assert!(
            err.contains("mid-history") && err.contains(&format!("offset {}", s.records[4].offset)),
            "{err}"
        );
    }

    #[test]
    fn failed_sync_poisons() {
        let b = MemBackend::new();
        let mut log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        log.append(1, b"a").unwrap();
        log.sync().unwrap();
        b.fail_syncs();
        log.append(2, b"b").unwrap();
        assert!(log.sync().is_err());
        assert!(matches!(log.append(3, b"c"), Err(StorageError::Poisoned)));
        assert!(matches!(log.sync(), Err(StorageError::Poisoned)));
    }

    const E1: i64 = 1 << 32;
    const E2: i64 = 2 << 32;
    const E5: i64 = 5 << 32;

    #[test]
    fn the_zxid_rule() {
        // Standalone: epoch 0, plain counting, also past 2^32 (ZooKeeper's standalone rollover).
        assert!(zxid_follows(0, 1));
        assert!(zxid_follows(41, 42));
        assert!(zxid_follows(0xffff_ffff, E1));
        // ZAB: the counter goes up by one within an epoch; a new epoch starts at counter 1.
        assert!(zxid_follows(E1 | 5, E1 | 6));
        assert!(zxid_follows(E1 | 5, E2 | 1));
        assert!(zxid_follows(E1 | 5, E5 | 1));
        assert!(zxid_follows(0, E2 | 1));
        // Holes, repeats, reversals, and a new epoch that does not start at 1.
        assert!(!zxid_follows(E1 | 5, E1 | 7));
        assert!(!zxid_follows(E1 | 5, E1 | 5));
        assert!(!zxid_follows(E1 | 5, E1 | 4));
        assert!(!zxid_follows(E1 | 5, E2 | 2));
        assert!(!zxid_follows(E1 | 5, E2));
        assert!(!zxid_follows(E2 | 1, E1 | 6));
        assert!(!zxid_follows(E2 | 1, -1));
    }

    #[test]
    fn the_log_accepts_every_history_zab_produces() {
        use crate::zab::Zxid;
        let zxids = [
            Zxid::ZERO,
            Zxid::new(1, 1),
            Zxid::new(1, 2),
            Zxid::new(3, 1),
            Zxid::new(3, 2),
            Zxid::new(4, 1),
        ];
        for prev in zxids {
            for next in zxids {
                if next.follows(prev) {
                    assert!(zxid_follows(prev.to_i64(), next.to_i64()), "{prev} {next}");
                }
            }
        }
    }

    fn zab_log(b: &MemBackend, zxids: &[i64]) -> TxnLog {
        let mut log = TxnLog::open(Arc::new(b.clone()), Path::new("/l"), 8192, 0, None).unwrap();
        for &z in zxids {
            log.append(z, format!("payload {z:#x}").as_bytes()).unwrap();
        }
        log.sync().unwrap();
        log
    }

    fn zxids_in(b: &MemBackend) -> Vec<i64> {
        let mut out = Vec::new();
        for (first, name) in list_segments(b, Path::new("/l")).unwrap() {
            let path = in_dir(Path::new("/l"), &name);
            let bytes = b.read(&path).unwrap();
            let s = scan(&path, &bytes, first).unwrap();
            assert!(s.torn.is_none(), "{name}: {:?}", s.torn);
            out.extend(s.records.iter().map(|r| r.zxid));
        }
        out
    }

    #[test]
    fn epoch_jumps_scan_back_and_holes_are_errors() {
        let b = MemBackend::new();
        let zxids = [E1 | 1, E1 | 2, E2 | 1, E2 | 2, E2 | 3, E5 | 1];
        zab_log(&b, &zxids);
        assert_eq!(zxids_in(&b), zxids);

        // A record whose zxid skips within an epoch, or starts an epoch past counter 1, is a hole.
        for bad in [E2 | 3, E5 | 2] {
            let b = MemBackend::new();
            let path = in_dir(Path::new("/l"), &segment_name(E1 | 1));
            zab_log(&b, &[E1 | 1]);
            let mut bytes = b.read(&path).unwrap();
            let mut rec = Vec::new();
            encode_record(E1 | 2, b"x", &mut rec);
            encode_record(bad, b"y", &mut rec);
            let at = scan(&path, &bytes, E1 | 1).unwrap().end as usize;
            bytes[at..at + rec.len()].copy_from_slice(&rec);
            let err = scan(&path, &bytes, E1 | 1).unwrap_err().to_string();
            assert!(err.contains("gap in the history"), "{err}");
        }
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn an_append_that_skips_panics() {
        let b = MemBackend::new();
        let mut log = zab_log(&b, &[E1 | 1]);
        let _ = log.append(E1 | 3, b"x");
    }

    #[test]
    fn truncate_after_drops_the_suffix_across_segments_and_appending_continues() {
        let b = MemBackend::new();
        let mut log = zab_log(&b, &[E1 | 1, E1 | 2, E1 | 3]);
        log.roll().unwrap();
        for z in [E1 | 4, E1 | 5] {
            log.append(z, b"second").unwrap();
        }
        log.roll().unwrap();
        log.append(E2 | 1, b"third").unwrap();
        // Unsynced: truncation syncs it first, then removes it with the rest.
        log.append(E2 | 2, b"third").unwrap();
        log.truncate_after(E1 | 4).unwrap();
        assert_eq!(log.last_zxid(), E1 | 4);
        assert_eq!(zxids_in(&b), [E1 | 1, E1 | 2, E1 | 3, E1 | 4]);
        assert_eq!(list_segments(&b, Path::new("/l")).unwrap().len(), 2);
        // The new leader's proposals follow, in the truncated segment.
        log.append(E5 | 1, b"new").unwrap();
        log.sync().unwrap();
        assert_eq!(zxids_in(&b), [E1 | 1, E1 | 2, E1 | 3, E1 | 4, E5 | 1]);
        // And it is all durable: a crash keeps exactly this.
        assert_eq!(
            zxids_in(&b.crash(7)),
            [E1 | 1, E1 | 2, E1 | 3, E1 | 4, E5 | 1]
        );
    }

    #[test]
    fn truncate_after_everything_and_past_the_end() {
        let b = MemBackend::new();
        let mut log = zab_log(&b, &[E1 | 1, E1 | 2]);
        log.truncate_after(0).unwrap();
        assert!(zxids_in(&b).is_empty());
        assert!(list_segments(&b.crash(1), Path::new("/l"))
            .unwrap()
            .is_empty());
        log.append(E2 | 1, b"a").unwrap();
        log.sync().unwrap();
        assert_eq!(zxids_in(&b), [E2 | 1]);
        // Past the end (a snapshot at E2|7 covers what is missing): the next record starts a new
        // segment, so neither segment has a hole.
        log.truncate_after(E2 | 7).unwrap();
        log.append(E2 | 8, b"b").unwrap();
        log.sync().unwrap();
        assert_eq!(zxids_in(&b), [E2 | 1, E2 | 8]);
        assert_eq!(list_segments(&b, Path::new("/l")).unwrap().len(), 2);
    }

    #[test]
    fn a_crash_at_every_step_of_a_truncation_leaves_a_prefix_reaching_the_cut() {
        let full = [E1 | 1, E1 | 2, E1 | 3, E1 | 4, E2 | 1, E2 | 2];
        let mut saw = std::collections::BTreeSet::new();
        for fail_after in 0..12 {
            let b = MemBackend::new();
            let mut log = zab_log(&b, &full[..3]);
            log.roll().unwrap();
            for &z in &full[3..] {
                log.append(z, b"later").unwrap();
            }
            log.sync().unwrap();
            b.fail_after_ops(fail_after);
            let done = log.truncate_after(E1 | 2).is_ok();
            for seed in 0..4 {
                let got = zxids_in(&b.crash(seed));
                assert!(
                    got.len() >= 2 && full.starts_with(&got),
                    "fail_after {fail_after}: {got:x?}"
                );
                if done {
                    assert_eq!(got, [E1 | 1, E1 | 2], "fail_after {fail_after}");
                }
                saw.insert(got.len());
            }
        }
        // The crash points covered the whole operation: untouched, half done and done.
        assert!(
            saw.contains(&2) && saw.contains(&3) && saw.contains(&6),
            "{saw:?}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(segment_name(0x1a), "log.000000000000001a");
        assert_eq!(parse_segment_name("log.000000000000001a"), Some(0x1a));
        assert_eq!(parse_segment_name("log.1a"), None);
        assert_eq!(parse_segment_name("snapshot.000000000000001a"), None);
    }

    /// A version 1 segment (records, no seals) as written before batch seals existed.
    fn version_1_segment(zxids: std::ops::RangeInclusive<i64>) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&UNSEALED_VERSION.to_be_bytes());
        bytes.extend_from_slice(&zxids.start().to_be_bytes());
        let mut offsets = Vec::new();
        for z in zxids {
            offsets.push(bytes.len());
            encode_record(z, format!("payload {z}").as_bytes(), &mut bytes);
        }
        bytes.resize(bytes.len() + 1000, 0);
        (bytes, offsets)
    }

    #[test]
    fn version_1_segments_scan_as_before() {
        let path = Path::new("/l/log.0000000000000001");
        let (bytes, offsets) = version_1_segment(1..=10);
        let s = scan(path, &bytes, 1).unwrap();
        assert_eq!((s.version, s.records.len(), s.seals.len()), (1, 10, 0));
        assert_eq!(s.records[9].payload(&bytes), b"payload 10");
        assert_eq!(s.end as usize, offsets[9] + RECORD_HEADER_LEN + 10);
        assert!(s.torn.is_none());
        // A torn last record is cut at that record, not at a batch: there are none.
        let mut torn = bytes.clone();
        torn[offsets[9] + RECORD_HEADER_LEN + 2] ^= 1;
        let s = scan(path, &torn, 1).unwrap();
        assert_eq!(s.records.len(), 9);
        assert_eq!(s.torn.unwrap().0, offsets[9] as u64);
        // Damage followed by a valid later record is mid-history, as before.
        let mut mid = bytes.clone();
        mid[offsets[4] + RECORD_HEADER_LEN] ^= 1;
        let err = scan(path, &mid, 1).unwrap_err().to_string();
        assert!(
            err.contains("mid-history") && err.contains(&format!("offset {}", offsets[4])),
            "{err}"
        );
        // Other versions are refused.
        let mut v3 = bytes;
        v3[4..8].copy_from_slice(&3u32.to_be_bytes());
        let err = scan(path, &v3, 1).unwrap_err().to_string();
        assert!(err.contains("unsupported log format version 3"), "{err}");
    }

    #[test]
    fn every_batch_is_sealed_and_a_seal_that_does_not_match_its_batch_is_corruption() {
        let b = MemBackend::new();
        let path = log_with(&b, 10);
        let bytes = b.read(&path).unwrap();
        let s = scan(&path, &bytes, 1).unwrap();
        assert_eq!(s.version, VERSION);
        // log_with syncs after 3, 6, 9 and 10.
        let ends: Vec<i64> = s.seals.iter().map(|s| s.last_zxid).collect();
        assert_eq!(ends, [3, 6, 9, 10]);
        assert_eq!(s.end as usize, s.seals[3].end());
        for (seal, start) in s.seals.iter().zip([HEADER_LEN as usize, s.seals[0].end()]) {
            assert_eq!(seal.batch_start, start as u64);
        }
        // Valid seals with the wrong batch start, the wrong last zxid, or closing no record.
        let second = s.seals[1];
        for (batch_start, last_zxid, at) in [
            (second.batch_start + 1, 6, second.offset),
            (second.batch_start, 5, second.offset),
            (second.end() as u64, 6, second.end()),
        ] {
            let mut bad = bytes.clone();
            let mut seal = Vec::new();
            encode_seal(batch_start, last_zxid, &mut seal);
            bad.splice(at..at, seal);
            let err = scan(&path, &bad, 1).unwrap_err().to_string();
            assert!(err.contains("does not match the batch"), "{err}");
        }
    }

    #[test]
    fn a_truncation_inside_a_batch_seals_the_kept_records_and_appending_continues() {
        let b = MemBackend::new();
        let mut log = zab_log(&b, &[E1 | 1, E1 | 2, E1 | 3]);
        for z in [E1 | 4, E1 | 5] {
            log.append(z, b"later").unwrap();
        }
        log.sync().unwrap();
        // Inside the first batch, with a later batch in the same segment.
        log.truncate_after(E1 | 2).unwrap();
        let path = in_dir(Path::new("/l"), &segment_name(E1 | 1));
        let bytes = b.read(&path).unwrap();
        let s = scan(&path, &bytes, E1 | 1).unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.seals.len(), 1);
        assert_eq!(s.seals[0].offset, s.records[1].end());
        assert!(!b
            .list(Path::new("/l"))
            .unwrap()
            .contains(&TRUNCATING_NAME.to_owned()));
        log.append(E2 | 1, b"new").unwrap();
        log.sync().unwrap();
        assert_eq!(zxids_in(&b.crash(1)), [E1 | 1, E1 | 2, E2 | 1]);
        // At a batch boundary: a plain cut just past the seal.
        log.truncate_after(E1 | 2).unwrap();
        assert_eq!(b.read(&path).unwrap().len(), s.seals[0].end());
        assert_eq!(zxids_in(&b.crash(2)), [E1 | 1, E1 | 2]);
    }

    #[test]
    fn a_crash_at_every_step_of_a_truncation_inside_a_batch_keeps_the_old_log_or_the_new() {
        let full = [E1 | 1, E1 | 2, E1 | 3, E1 | 4, E1 | 5];
        let mut saw = std::collections::BTreeSet::new();
        for fail_after in 0..8 {
            let b = MemBackend::new();
            let mut log = zab_log(&b, &full[..3]);
            for &z in &full[3..] {
                log.append(z, b"later").unwrap();
            }
            log.sync().unwrap();
            b.fail_after_ops(fail_after);
            let done = log.truncate_after(E1 | 2).is_ok();
            for seed in 0..4 {
                let got = zxids_in(&b.crash(seed));
                assert!(
                    got == full || got == full[..2],
                    "fail_after {fail_after}: {got:x?}"
                );
                if done {
                    assert_eq!(got, full[..2], "fail_after {fail_after}");
                }
                saw.insert(got.len());
            }
        }
        assert_eq!(saw, [2, 5].into(), "both outcomes were reached");
    }

    proptest::proptest! {
        /// Whatever follows a valid header, in either version, a scan returns or fails: it never
        /// panics, and hostile lengths and seals allocate nothing.
        #[test]
        fn scanning_arbitrary_bytes_never_panics(
            version in 1u32..=2,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            seals in proptest::collection::vec((0usize..600, proptest::num::u64::ANY, 0i64..4), 0..4),
            records in proptest::collection::vec((0usize..600, 1i64..4, 0usize..64), 0..4),
        ) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&version.to_be_bytes());
            bytes.extend_from_slice(&1i64.to_be_bytes());
            bytes.extend_from_slice(&body);
            // Plant valid records and valid seals (with any batch start) at random offsets.
            for (at, zxid, len) in records {
                let mut r = Vec::new();
                encode_record(zxid, &vec![7; len], &mut r);
                let at = (HEADER_LEN as usize + at).min(bytes.len());
                bytes.splice(at..at, r);
            }
            for (at, start, last) in seals {
                let mut r = Vec::new();
                encode_seal(start, last, &mut r);
                let at = (HEADER_LEN as usize + at).min(bytes.len());
                bytes.splice(at..at, r);
            }
            if let Ok(s) = scan(Path::new("/l/x"), &bytes, 1) {
                proptest::prop_assert!(s.end as usize <= bytes.len());
                for r in &s.records {
                    proptest::prop_assert!(r.end() <= s.end as usize);
                    let _ = r.payload(&bytes);
                }
            }
        }
    }
}
