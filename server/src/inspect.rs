//! `rookery inspect`: print and verify log segments, snapshots and whole data directories, like
//! ZooKeeper's zkTxnLogToolkit and zkSnapShotToolkit.

use std::fmt::Write as _;
use std::path::Path;

use crate::storage::backend::Backend;
use crate::storage::codec::decode_txn;
use crate::storage::recovery;
use crate::storage::snapshot;
use crate::storage::tail_cut;
use crate::storage::txn_log;
use crate::storage::StorageError;
use crate::txn::Txn;

fn short(data: &Option<Vec<u8>>) -> String {
    match data {
        None => "null".into(),
        Some(d) if d.len() <= 32 => format!("{:?}", String::from_utf8_lossy(d)),
        Some(d) => format!("<{} bytes>", d.len()),
    }
}

/// One line describing a transaction.
pub fn describe(txn: &Txn) -> String {
    match txn {
        Txn::CreateSession {
            session_id,
            timeout_ms,
            ..
        } => {
            format!("createSession 0x{session_id:x} timeout={timeout_ms}")
        }
        Txn::CloseSession { session_id } => format!("closeSession 0x{session_id:x}"),
        Txn::Create {
            path,
            data,
            ephemeral_owner,
            parent_cversion,
            ..
        } => format!(
            "create {path} data={} owner=0x{ephemeral_owner:x} parentCversion={parent_cversion}",
            short(data)
        ),
        Txn::Delete { path } => format!("delete {path}"),
        Txn::SetData {
            path,
            data,
            version,
        } => {
            format!("setData {path} data={} version={version}", short(data))
        }
        Txn::SetAcl { path, acl, version } => {
            format!("setACL {path} entries={} aversion={version}", acl.len())
        }
        Txn::Check { path } => format!("check {path}"),
        Txn::Multi(txns) => {
            let parts: Vec<String> = txns.iter().map(describe).collect();
            format!("multi [{}]", parts.join("; "))
        }
        Txn::Error(code) => format!("error {code}"),
    }
}

/// Prints every record of a log segment and verifies the checksums.
pub fn log(backend: &dyn Backend, path: &Path, out: &mut String) -> Result<(), StorageError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let first = txn_log::parse_segment_name(name)
        .ok_or_else(|| StorageError::corrupt(path, 0, "not named log.<16 hex digits>"))?;
    let bytes = backend.read(path).map_err(StorageError::io("read", path))?;
    let scan = txn_log::scan(path, &bytes, first)?;
    for rec in &scan.records {
        let (hdr, txn) = decode_txn(rec.zxid, rec.payload(&bytes)).map_err(|e| {
            StorageError::corrupt(
                path,
                rec.offset as u64,
                format!("undecodable transaction: {e}"),
            )
        })?;
        let _ = writeln!(
            out,
            "zxid=0x{:x} session=0x{:x} cxid={} time={} {}",
            hdr.zxid,
            hdr.session_id,
            hdr.cxid,
            hdr.time_ms,
            describe(&txn)
        );
    }
    let _ = writeln!(
        out,
        "{}: {} records, checksums OK, end at offset {} of {}",
        path.display(),
        scan.records.len(),
        scan.end,
        bytes.len()
    );
    if let Some((offset, why)) = scan.torn {
        let _ = writeln!(
            out,
            "torn tail at offset {offset} ({why}); recovery would truncate it"
        );
    }
    if scan.torn_header {
        let _ = writeln!(
            out,
            "header never written; recovery would remove this segment"
        );
    }
    Ok(())
}

/// Prints a snapshot's nodes and sessions and verifies its checksum.
pub fn snapshot(backend: &dyn Backend, path: &Path, out: &mut String) -> Result<(), StorageError> {
    let bytes = backend.read(path).map_err(StorageError::io("read", path))?;
    let img = snapshot::read(path, &bytes)?;
    let mut paths: Vec<&String> = img.nodes.keys().collect();
    paths.sort();
    for p in paths {
        let n = &img.nodes[p];
        let s = n.stat();
        let _ = writeln!(
            out,
            "{p} data={} version={} cversion={} aversion={} owner=0x{:x} czxid=0x{:x} mzxid=0x{:x} pzxid=0x{:x}",
            short(&n.data),
            s.version,
            s.cversion,
            s.aversion,
            n.ephemeral_owner,
            s.czxid,
            s.mzxid,
            s.pzxid
        );
    }
    for s in &img.sessions {
        let _ = writeln!(out, "session 0x{:x} timeout={}", s.id, s.timeout_ms);
    }
    let _ = writeln!(
        out,
        "{}: zxid 0x{:x}, {} nodes, {} sessions, checksum OK",
        path.display(),
        img.zxid,
        img.nodes.len(),
        img.sessions.len()
    );
    Ok(())
}

/// Says which snapshot and which log range recovery would use, without changing anything.
pub fn dir(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
    out: &mut String,
) -> Result<(), StorageError> {
    for (zxid, name) in snapshot::list_snapshots(backend, snap_dir)? {
        let _ = writeln!(out, "snapshot {name} (zxid 0x{zxid:x})");
    }
    for (first, name) in txn_log::list_segments(backend, log_dir)? {
        let _ = writeln!(out, "log segment {name} (from zxid 0x{first:x})");
    }
    let plan = recovery::plan(backend, snap_dir, log_dir)?;
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if let Some(cut) = &plan.cut {
        let _ = writeln!(
            out,
            "recovery would cut a non-empty tail: {cut} (an ensemble member then abstains from \
             elections until it has synchronized with a leader)"
        );
    }
    if let Some(what) = tail_cut::read(backend, snap_dir)? {
        let _ = writeln!(
            out,
            "tail-cut marker {}: {what} (an ensemble member abstains from elections until it has \
             synchronized with a leader)",
            tail_cut::path(snap_dir).display()
        );
    }
    match &plan.snapshot {
        Some((path, zxid)) => {
            let _ = writeln!(
                out,
                "recovery would load {} (zxid 0x{zxid:x})",
                path.display()
            );
        }
        None => {
            let _ = writeln!(out, "recovery would start from an empty tree");
        }
    }
    match plan.replayed {
        Some((a, b)) => {
            let _ = writeln!(out, "then replay zxids 0x{a:x}..=0x{b:x} from the log");
        }
        None => {
            let _ = writeln!(out, "then replay nothing from the log");
        }
    }
    let _ = writeln!(
        out,
        "recovered state: last zxid 0x{:x}, {} nodes, {} sessions",
        plan.last_zxid,
        plan.tree.node_count(),
        plan.sessions.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::codec::encode_txn;
    use crate::storage::mem::MemBackend;
    use crate::storage::txn_log::TxnLog;
    use crate::txn::TxnHeader;

    #[test]
    fn prints_and_verifies() {
        let b = MemBackend::new();
        let mut log = TxnLog::open(Arc::new(b.clone()), Path::new("/d"), 8192, 0, None).unwrap();
        let mut p = Vec::new();
        encode_txn(
            &TxnHeader {
                session_id: 5,
                cxid: 1,
                zxid: 1,
                time_ms: 7,
            },
            &Txn::Delete { path: "/x".into() },
            &mut p,
        );
        log.append(1, &p).unwrap();
        log.sync().unwrap();
        let mut out = String::new();
        super::log(&b, Path::new("/d/log.0000000000000001"), &mut out).unwrap();
        assert!(
            out.contains("zxid=0x1 session=0x5 cxid=1 time=7 delete /x"),
            "{out}"
        );
        assert!(out.contains("1 records, checksums OK"), "{out}");
        let mut out = String::new();
        super::dir(&b, Path::new("/d"), Path::new("/d"), &mut out).unwrap();
        assert!(out.contains("replay zxids 0x1..=0x1"), "{out}");
        assert!(!out.contains("tail-cut marker"), "{out}");
        tail_cut::mark(&b, Path::new("/d"), "log.1 cut at offset 16").unwrap();
        let mut out = String::new();
        super::dir(&b, Path::new("/d"), Path::new("/d"), &mut out).unwrap();
        assert!(
            out.contains("tail-cut marker /d/tailCut: log.1 cut at offset 16"),
            "{out}"
        );
        b.corrupt(Path::new("/d/log.0000000000000001"), 2, b"XX");
        assert!(super::log(&b, Path::new("/d/log.0000000000000001"), &mut String::new()).is_err());
    }
}
