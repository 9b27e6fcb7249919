//! The transaction log: append-only, preallocated segment files of checksummed records.
//!
//! Segment `log.<first zxid, 16 hex digits>`:
//! ```text
//! header  "RKLG" | version:u32 = 1 | first_zxid:i64                      (16 bytes)
//! record  len:u32 | crc32c:u32 | zxid:i64 | payload[len]                 (16 + len bytes)
//!         crc32c covers the zxid bytes and the payload
//! tail    zeros (preallocated); a record with len 0 marks the end
//! ```
//! Records are appended in zxid order with no gaps (see [`zxid_follows`]: the counter goes up by one
//! within an epoch, and a new epoch starts at counter 1). A batch of records is written with one
//! write and made durable with one `fdatasync` (group commit). [`TxnLog::truncate_after`] removes
//! a suffix durably, for a ZAB follower told to drop proposals the new leader does not have.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use super::backend::{in_dir, Backend, FileHandle};
use super::StorageError;

/// Segment file magic.
pub const MAGIC: &[u8; 4] = b"RKLG";
/// Segment format version.
pub const VERSION: u32 = 1;
/// Segment header length.
pub const HEADER_LEN: u64 = 16;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 16;
/// Name of the file prepared ahead for the next segment (not a segment name: recovery, purge and
/// listing ignore it).
pub const SPARE_NAME: &str = "log.spare";

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
}

/// What a scan of one segment found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Valid records in order.
    pub records: Vec<RecordRef>,
    /// Offset just past the last valid record (where appending continues).
    pub end: u64,
    /// Set when the bytes after the last valid record are a torn write: (offset, why).
    pub torn: Option<(u64, String)>,
    /// The header itself was never completely written (an all-zero or short file).
    pub torn_header: bool,
}

fn parse_record(bytes: &[u8], off: usize) -> Result<RecordRef, &'static str> {
    let Some(h) = bytes.get(off..off + RECORD_HEADER_LEN) else {
        return Err("short record header");
    };
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len == 0 {
        return Err("end marker");
    }
    if len > MAX_RECORD_LEN {
        return Err("record length out of range");
    }
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let mut zb = [0u8; 8];
    zb.copy_from_slice(&h[8..16]);
    let start = off + RECORD_HEADER_LEN;
    let Some(payload) = bytes.get(start..start + len) else {
        return Err("record runs past the end of the file");
    };
    if crc32c::crc32c_append(crc32c::crc32c(&zb), payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(RecordRef {
        zxid: i64::from_be_bytes(zb),
        offset: off,
        len,
    })
}

/// Scans a segment's bytes. `expected_first` is the zxid the name promises.
///
/// After the last valid record the file must hold only zeros. If it does not, the bytes are a torn
/// write (reported in [`Scan::torn`]) unless a valid record with a later zxid follows them, which
/// means the damage is in the middle of the history: that is corruption, an error.
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
    let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(StorageError::corrupt(
            path,
            4,
            format!("unsupported log format version {version}"),
        ));
    }
    let mut zb = [0u8; 8];
    zb.copy_from_slice(&bytes[8..16]);
    let first = i64::from_be_bytes(zb);
    if first != expected_first {
        return Err(StorageError::corrupt(
            path,
            8,
            format!("header says first zxid {first:#x}, name says {expected_first:#x}"),
        ));
    }
    let mut out = Scan::default();
    let mut off = HEADER_LEN as usize;
    // The zxid of the previous record; the first record must be the one the header promises.
    let mut prev: Option<i64> = None;
    loop {
        match parse_record(bytes, off) {
            Ok(rec) => {
                let in_order = match prev {
                    None => rec.zxid == first,
                    Some(p) => zxid_follows(p, rec.zxid),
                };
                if !in_order {
                    let expected = match prev {
                        None => format!("the segment's first zxid {first:#x}"),
                        Some(p) => format!("a successor of {p:#x}"),
                    };
                    return Err(StorageError::corrupt(
                        path,
                        off as u64,
                        format!(
                            "zxid {:#x} where {expected} was expected (a gap in the history)",
                            rec.zxid
                        ),
                    ));
                }
                prev = Some(rec.zxid);
                off += RECORD_HEADER_LEN + rec.len;
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

    /// Writes the batch and makes it durable; returns the last durable zxid. On any error the log
    /// is poisoned: no later call succeeds, because after a failed fsync the kernel may have
    /// dropped the dirty pages and a retry would report success for data that is gone.
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
        let need = seg.write_pos + self.batch.len() as u64 + RECORD_HEADER_LEN as u64;
        if need > seg.allocated {
            let target = need.max(seg.allocated + self.prealloc_bytes);
            extend_with_zeros(seg.file.as_mut(), seg.allocated, target)
                .map_err(StorageError::io("preallocate", &seg.path))?;
            seg.allocated = target;
        }
        seg.file
            .write_at(seg.write_pos, &self.batch)
            .map_err(StorageError::io("write", &seg.path))?;
        seg.file
            .sync_data()
            .map_err(StorageError::io("fdatasync", &seg.path))?;
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
    /// `zxid` is cut just after that record and `fdatasync`ed. At every point a crash leaves a
    /// prefix of the old records that still reaches `zxid`, so recovery never sees a hole.
    ///
    /// The cut is a truncation of the file rather than zeros written over the tail: zeros written
    /// over several records can tear (a sector-aligned prefix of the write reaches the disk), which
    /// would leave valid records after zeros, and recovery rightly refuses that as mid-history
    /// damage. A file length change is atomic. The preallocation is redone by the next sync.
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
        let kept: Vec<&RecordRef> = scan.records.iter().filter(|r| r.zxid <= zxid).collect();
        let cut = kept.last().map_or(HEADER_LEN, |r| {
            (r.offset + RECORD_HEADER_LEN + r.len) as u64
        });
        let mut file = match self.current.take() {
            Some(seg) if seg.path == path => seg.file,
            _ => self
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
        // Appending continues in this segment only if it ends exactly at `zxid`; otherwise the
        // next record would not follow the segment's last one.
        if kept.last().map(|r| r.zxid) == Some(zxid) {
            self.current = Some(Segment {
                file,
                path,
                write_pos: cut,
                allocated: cut,
            });
        }
        Ok(())
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
}
