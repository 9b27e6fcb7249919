//! The transaction log: append-only, preallocated segment files of checksummed records.
//!
//! Segment `log.<first zxid, 16 hex digits>`:
//! ```text
//! header  "RKLG" | version:u32 = 1 | first_zxid:i64                      (16 bytes)
//! record  len:u32 | crc32c:u32 | zxid:i64 | payload[len]                 (16 + len bytes)
//!         crc32c covers the zxid bytes and the payload
//! tail    zeros (preallocated); a record with len 0 marks the end
//! ```
//! Records are appended in zxid order with no gaps. A batch of records is written with one write
//! and made durable with one `fdatasync` (group commit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// The largest payload a record may hold; anything larger is corruption.
pub const MAX_RECORD_LEN: usize = 64 << 20;

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
    let mut next = first;
    loop {
        match parse_record(bytes, off) {
            Ok(rec) => {
                if rec.zxid != next {
                    return Err(StorageError::corrupt(
                        path,
                        off as u64,
                        format!(
                            "zxid {:#x} where {next:#x} was expected (a gap in the history)",
                            rec.zxid
                        ),
                    ));
                }
                next += 1;
                off += RECORD_HEADER_LEN + rec.len;
                out.records.push(rec);
            }
            Err(why) => {
                out.end = off as u64;
                if bytes[off..].iter().all(|&b| b == 0) {
                    return Ok(out);
                }
                if let Some(later) = find_later_record(bytes, off + 1, next) {
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
        })
    }

    /// The last zxid appended (durable or not).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Adds a record to the current batch. Zxids must follow on without gaps.
    pub fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        assert_eq!(zxid, self.last_zxid + 1, "log appends must be consecutive");
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

    fn create_segment(&mut self, first_zxid: i64) -> Result<Segment, StorageError> {
        let path = in_dir(&self.dir, &segment_name(first_zxid));
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

    #[test]
    fn names() {
        assert_eq!(segment_name(0x1a), "log.000000000000001a");
        assert_eq!(parse_segment_name("log.000000000000001a"), Some(0x1a));
        assert_eq!(parse_segment_name("log.1a"), None);
        assert_eq!(parse_segment_name("snapshot.000000000000001a"), None);
    }
}
