//! Retention (`autopurge.snapRetainCount`): keep the newest N snapshots and the log segments
//! that recovery from the oldest of them needs; remove the rest.

use std::path::{Path, PathBuf};

use super::backend::{in_dir, Backend};
use super::snapshot::list_snapshots;
use super::txn_log::list_segments;
use super::StorageError;

/// Removes old snapshots and segments, keeping `retain` snapshots (at least 3, as ZooKeeper
/// insists). Returns the files removed.
pub fn purge(
    backend: &dyn Backend,
    snap_dir: &Path,
    log_dir: &Path,
    retain: usize,
) -> Result<Vec<PathBuf>, StorageError> {
    let retain = retain.max(3);
    let snaps = list_snapshots(backend, snap_dir)?;
    if snaps.len() <= retain {
        return Ok(Vec::new());
    }
    let oldest_kept = snaps[retain - 1].0;
    let mut removed = Vec::new();
    for (_, name) in &snaps[retain..] {
        let p = in_dir(snap_dir, name);
        backend.remove(&p).map_err(StorageError::io("remove", &p))?;
        removed.push(p);
    }
    // A segment may go only if the next segment starts at or before oldest_kept + 1: then every
    // record in it is covered by the oldest snapshot kept.
    let segs = list_segments(backend, log_dir)?;
    for pair in segs.windows(2) {
        let (_, name) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first <= oldest_kept + 1 {
            let p = in_dir(log_dir, name);
            backend.remove(&p).map_err(StorageError::io("remove", &p))?;
            removed.push(p);
        }
    }
    backend
        .sync_dir(snap_dir)
        .map_err(StorageError::io("fsync directory", snap_dir))?;
    if log_dir != snap_dir {
        backend
            .sync_dir(log_dir)
            .map_err(StorageError::io("fsync directory", log_dir))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;

    #[test]
    fn keeps_what_the_oldest_retained_snapshot_needs() {
        let b = MemBackend::new();
        let d = Path::new("/d");
        for name in [
            "snapshot.0000000000000010",
            "snapshot.0000000000000020",
            "snapshot.0000000000000030",
            "snapshot.0000000000000040",
            "log.0000000000000001",
            "log.0000000000000011",
            "log.0000000000000019",
            "log.0000000000000031",
        ] {
            b.create(&d.join(name)).unwrap();
        }
        let removed = purge(&b, d, d, 3).unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        // Oldest kept snapshot: 0x20. log.01 holds up to 0x10: gone. log.11 holds 0x11..0x18: gone.
        // log.19 may hold 0x21: kept.
        assert_eq!(
            names,
            [
                "snapshot.0000000000000010",
                "log.0000000000000001",
                "log.0000000000000011"
            ]
        );
        assert!(purge(&b, d, d, 3).unwrap().is_empty());
    }
}
