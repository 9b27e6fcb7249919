//! Snapshots: a consistent image of the data tree and the session table at one zxid.
//!
//! File `snapshot.<zxid, 16 hex digits>`:
//! ```text
//! header   "RKSN" | version:u32 = 1 | zxid:i64                                     (16 bytes)
//! nodes    count:i64, then per node:
//!          path:ustring data:buffer acl:vector<ACL> czxid:i64 mzxid:i64 ctime:i64
//!          mtime:i64 version:i32 cversion:i32 aversion:i32 ephemeralOwner:i64 pzxid:i64
//! sessions count:i32, then per session: id:i64 timeout:i32 passwd:buffer(16)
//! trailer  crc32c:u32 over every byte before it
//! ```
//! Children lists are not stored; loading rebuilds them from the paths.
//!
//! Writing: a `.tmp` file is written and fsynced, renamed into place, and the directory fsynced.
//! A crash at any step leaves either no snapshot or a complete one under its final name.

use std::path::{Path, PathBuf};

use rookery_proto::jute::{write_buffer, write_i32, write_i64, write_string, Jute, Reader};
use rookery_proto::Acl;

use super::backend::{in_dir, Backend, FileHandle};
use super::StorageError;
use crate::tree::{Image, Node};

/// Snapshot file magic.
pub const MAGIC: &[u8; 4] = b"RKSN";
/// Snapshot format version.
pub const VERSION: u32 = 1;

/// A session as a snapshot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    /// Id.
    pub id: i64,
    /// Negotiated timeout.
    pub timeout_ms: i32,
    /// Password.
    pub passwd: [u8; 16],
}

/// What a snapshot holds.
#[derive(Debug, Clone)]
pub struct SnapshotImage {
    /// Every transaction up to and including this zxid is in the image, and none after it.
    pub zxid: i64,
    /// The nodes.
    pub nodes: Image,
    /// The sessions.
    pub sessions: Vec<SessionRecord>,
}

/// The file name of the snapshot at `zxid`.
pub fn snapshot_name(zxid: i64) -> String {
    format!("snapshot.{zxid:016x}")
}

/// The zxid a snapshot name carries.
pub fn parse_snapshot_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix("snapshot.")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(|v| v as i64)
}

/// Snapshots in `dir`, newest first.
pub fn list_snapshots(
    backend: &dyn Backend,
    dir: &Path,
) -> Result<Vec<(i64, String)>, StorageError> {
    let mut snaps: Vec<(i64, String)> = backend
        .list(dir)
        .map_err(StorageError::io("list", dir))?
        .into_iter()
        .filter_map(|n| parse_snapshot_name(&n).map(|z| (z, n)))
        .collect();
    snaps.sort_by(|a, b| b.cmp(a));
    Ok(snaps)
}

/// Encodes `image` in chunks of about 1 MiB, handing each to `emit`; returns the CRC32C of
/// everything emitted (the trailer, which the caller appends).
fn stream(
    image: &SnapshotImage,
    mut emit: impl FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<u32, StorageError> {
    let mut crc = 0u32;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut flush = |buf: &mut Vec<u8>| -> Result<(), StorageError> {
        crc = crc32c::crc32c_append(crc, buf);
        emit(buf)?;
        buf.clear();
        Ok(())
    };
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_be_bytes());
    write_i64(&mut buf, image.zxid);
    write_i64(&mut buf, image.nodes.len() as i64);
    for (path, node) in image.nodes.iter() {
        encode_node(path, node, &mut buf);
        if buf.len() >= 1 << 20 {
            flush(&mut buf)?;
        }
    }
    write_i32(&mut buf, image.sessions.len() as i32);
    for s in &image.sessions {
        write_i64(&mut buf, s.id);
        write_i32(&mut buf, s.timeout_ms);
        write_buffer(&mut buf, Some(&s.passwd));
    }
    flush(&mut buf)?;
    Ok(crc)
}

/// The whole file's bytes in memory: what a leader sends a learner by SNAP.
pub fn encode(image: &SnapshotImage) -> Vec<u8> {
    let mut out = Vec::new();
    let crc = stream(image, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .expect("encoding into memory cannot fail");
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn encode_node(path: &str, n: &Node, out: &mut Vec<u8>) {
    write_string(out, path);
    write_buffer(out, n.data.as_deref());
    n.acl.as_slice().to_vec().encode(out);
    for v in [n.czxid, n.mzxid, n.ctime, n.mtime] {
        write_i64(out, v);
    }
    for v in [n.version, n.cversion, n.aversion] {
        write_i32(out, v);
    }
    write_i64(out, n.ephemeral_owner);
    write_i64(out, n.pzxid);
}

/// Writes `image` into `dir` (temp file, fsync, rename, fsync directory); returns its path.
pub fn write(
    backend: &dyn Backend,
    dir: &Path,
    image: &SnapshotImage,
) -> Result<PathBuf, StorageError> {
    write_file(backend, dir, image.zxid, |file, tmp| {
        let mut pos = 0u64;
        let crc = stream(image, |chunk| {
            file.write_at(pos, chunk)
                .map_err(StorageError::io("write", tmp))?;
            pos += chunk.len() as u64;
            Ok(())
        })?;
        file.write_at(pos, &crc.to_be_bytes())
            .map_err(StorageError::io("write", tmp))
    })
}

/// Writes a snapshot received as bytes ([`encode`]'s output, already verified by [`read`]) as
/// `snapshot.<zxid>`, durably, in the same steps as [`write`].
pub fn write_encoded(
    backend: &dyn Backend,
    dir: &Path,
    zxid: i64,
    bytes: &[u8],
) -> Result<PathBuf, StorageError> {
    write_file(backend, dir, zxid, |file, tmp| {
        file.write_at(0, bytes)
            .map_err(StorageError::io("write", tmp))
    })
}

/// Durably removes the snapshots older than `zxid`.
pub fn remove_older(backend: &dyn Backend, dir: &Path, zxid: i64) -> Result<(), StorageError> {
    for (z, name) in list_snapshots(backend, dir)? {
        if z < zxid {
            let path = in_dir(dir, &name);
            backend
                .remove(&path)
                .map_err(StorageError::io("remove", &path))?;
        }
    }
    backend
        .sync_dir(dir)
        .map_err(StorageError::io("fsync directory", dir))
}

/// Creates `snapshot.<zxid>.tmp`, lets `fill` write it, then fsyncs it, renames it into place and
/// fsyncs the directory: a crash leaves no snapshot or a complete one under its final name.
fn write_file(
    backend: &dyn Backend,
    dir: &Path,
    zxid: i64,
    fill: impl FnOnce(&mut dyn FileHandle, &Path) -> Result<(), StorageError>,
) -> Result<PathBuf, StorageError> {
    backend
        .create_dir_all(dir)
        .map_err(StorageError::io("create directory", dir))?;
    let name = snapshot_name(zxid);
    let final_path = in_dir(dir, &name);
    let tmp = in_dir(dir, &format!("{name}.tmp"));
    let mut file = backend
        .create(&tmp)
        .map_err(StorageError::io("create", &tmp))?;
    fill(file.as_mut(), &tmp)?;
    file.sync_data()
        .map_err(StorageError::io("fdatasync", &tmp))?;
    drop(file);
    backend
        .rename(&tmp, &final_path)
        .map_err(StorageError::io("rename", &tmp))?;
    backend
        .sync_dir(dir)
        .map_err(StorageError::io("fsync directory", dir))?;
    Ok(final_path)
}

/// Reads and verifies a snapshot; children sets are rebuilt.
pub fn read(path: &Path, bytes: &[u8]) -> Result<SnapshotImage, StorageError> {
    let bad = |offset: usize, why: &str| StorageError::corrupt(path, offset as u64, why);
    if bytes.len() < 16 + 8 + 4 + 4 {
        return Err(bad(0, "snapshot is truncated"));
    }
    if &bytes[..4] != MAGIC {
        return Err(bad(0, "not a Rookery snapshot (bad magic)"));
    }
    let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(bad(
            4,
            &format!("unsupported snapshot format version {version}"),
        ));
    }
    let body_end = bytes.len() - 4;
    let stored = u32::from_be_bytes([
        bytes[body_end],
        bytes[body_end + 1],
        bytes[body_end + 2],
        bytes[body_end + 3],
    ]);
    if crc32c::crc32c(&bytes[..body_end]) != stored {
        return Err(bad(
            body_end,
            "checksum mismatch (truncated or damaged snapshot)",
        ));
    }
    let mut r = Reader::new(&bytes[8..body_end]);
    let parse = |r: &mut Reader<'_>| -> Result<SnapshotImage, rookery_proto::DecodeError> {
        let zxid = r.read_i64()?;
        let count = r.read_i64()?;
        let mut nodes = Image::new();
        let mut paths = Vec::new();
        for _ in 0..count.max(0) {
            let path = r.read_string()?;
            let node = Node {
                data: r.read_buffer()?,
                acl: std::sync::Arc::new(Vec::<Acl>::decode(r)?),
                czxid: r.read_i64()?,
                mzxid: r.read_i64()?,
                ctime: r.read_i64()?,
                mtime: r.read_i64()?,
                version: r.read_i32()?,
                cversion: r.read_i32()?,
                aversion: r.read_i32()?,
                ephemeral_owner: r.read_i64()?,
                pzxid: r.read_i64()?,
                children: Default::default(),
            };
            paths.push(path.clone());
            nodes.insert(path, node);
        }
        for path in paths.iter().filter(|p| p.as_str() != "/") {
            let parent = rookery_proto::path::parent(path);
            if let Some(p) = nodes.get_mut(parent) {
                p.children
                    .insert(rookery_proto::path::name(path).to_owned());
            }
        }
        let n = r.read_i32()?;
        let mut sessions = Vec::new();
        for _ in 0..n.max(0) {
            let id = r.read_i64()?;
            let timeout_ms = r.read_i32()?;
            let pw = r.read_buffer()?.unwrap_or_default();
            let passwd = pw
                .try_into()
                .map_err(|_| rookery_proto::DecodeError::InvalidValue {
                    field: "passwd",
                    value: -1,
                })?;
            sessions.push(SessionRecord {
                id,
                timeout_ms,
                passwd,
            });
        }
        Ok(SnapshotImage {
            zxid,
            nodes,
            sessions,
        })
    };
    let image = parse(&mut r).map_err(|e| bad(8, &format!("undecodable snapshot: {e}")))?;
    if !r.is_empty() {
        return Err(bad(
            body_end - r.remaining(),
            "unexpected bytes after the session table",
        ));
    }
    for path in image.nodes.keys() {
        if path != "/" && !image.nodes.contains_key(rookery_proto::path::parent(path)) {
            return Err(bad(
                8,
                &format!("node {path} has no parent in the snapshot"),
            ));
        }
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;
    use crate::tree::DataTree;
    use crate::txn::{Txn, TxnHeader};

    fn image() -> SnapshotImage {
        let mut tree = DataTree::new();
        let mut ev = Vec::new();
        for (i, p) in ["/a", "/a/b", "/c"].iter().enumerate() {
            let hdr = TxnHeader {
                session_id: 1,
                cxid: 0,
                zxid: i as i64 + 1,
                time_ms: 5,
            };
            let txn = Txn::Create {
                path: p.to_string(),
                data: Some(vec![1, 2]),
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: 1,
            };
            tree.apply(&hdr, &txn, &mut ev);
        }
        SnapshotImage {
            zxid: 3,
            nodes: tree.image(),
            sessions: vec![SessionRecord {
                id: 7,
                timeout_ms: 4000,
                passwd: [3; 16],
            }],
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let b = MemBackend::new();
        let img = image();
        let path = write(&b, Path::new("/s"), &img).unwrap();
        assert_eq!(path, Path::new("/s/snapshot.0000000000000003"));
        let bytes = b.read(&path).unwrap();
        let back = read(&path, &bytes).unwrap();
        assert_eq!(back.zxid, 3);
        assert_eq!(back.sessions, img.sessions);
        assert_eq!(back.nodes.len(), img.nodes.len());
        assert_eq!(back.nodes["/a"].children.len(), 1);
        assert_eq!(back.nodes["/"].children.len(), 3);
        assert_eq!(back.nodes["/a/b"].stat(), img.nodes["/a/b"].stat());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&path, &bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(read(&path, &flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }

    /// A snapshot's counts are checksummed but still input (a learner takes its snapshot from
    /// the leader): counts no file could hold are errors at the end of the bytes, not
    /// reservations (SEC-11 in docs/security.md).
    #[test]
    fn hostile_counts_are_errors_not_allocations() {
        for (nodes, sessions) in [(i64::MAX, 0), (-1, i32::MAX), (0, i32::MAX)] {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&VERSION.to_be_bytes());
            write_i64(&mut bytes, 3);
            write_i64(&mut bytes, nodes);
            write_i32(&mut bytes, sessions);
            let crc = crc32c::crc32c(&bytes);
            bytes.extend_from_slice(&crc.to_be_bytes());
            let err = read(Path::new("/s/snapshot.3"), &bytes)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains("undecodable"), "{nodes} {sessions}: {err}");
        }
    }

    #[test]
    fn a_crash_before_the_rename_leaves_no_snapshot() {
        let b = MemBackend::new();
        write(&b, Path::new("/s"), &image()).unwrap();
        // The directory was synced after the rename, so the crash image has the final name.
        let after = b.crash(3);
        assert_eq!(list_snapshots(&after, Path::new("/s")).unwrap().len(), 1);
    }
}
