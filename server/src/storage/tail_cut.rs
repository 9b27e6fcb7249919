//! The `tailCut` marker of an ensemble member: "recovery cut a non-empty tail off this member's
//! log, and the member has not synchronized with a leader since".
//!
//! A torn tail is normally a write whose `fdatasync` never returned, so never acknowledged. But a
//! disk that damages or loses data *after* it was synced makes the same cut remove records this
//! member had acknowledged to its leader. If the member then voted, its shorter log could help
//! elect a leader that lacks a committed write (the FAST'18 paper "Protocol-Aware Recovery for
//! Consensus-Based Storage" describes the family). So a member that cut a non-empty tail abstains
//! from elections (it neither votes nor leads; see `zab::DurableState::tail_cut`) until it has
//! synchronized with an established leader, whose history then holds every committed write.
//!
//! That fact must survive restarts: the second start finds a clean log. So recovery writes this
//! marker, durably, *before* it truncates the tail ([`super::recovery::recover_unapplied`]), and
//! the runtime reads it at every start. It is removed, durably, only by the store operation the
//! core issues once the member has synchronized (`StoreCmd::ClearTailCut`), after everything
//! logged before it is durable.
//!
//! File `dir/tailCut`, written with [`super::atomic`] (temporary file, `fdatasync`, rename,
//! directory fsync), magic `RKTC`; the payload is a UTF-8 description of the cut, for operators.
//! Only the file's presence matters: a damaged marker still counts as set.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::atomic;
use super::backend::{in_dir, Backend};
use super::StorageError;

/// File name of the marker, in the data directory (beside the epoch files).
pub const MARKER: &str = "tailCut";
/// Magic of the marker file.
pub const MAGIC: &[u8; 4] = b"RKTC";

/// The marker's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    in_dir(dir, MARKER)
}

/// Durably sets the marker in `dir`, describing the cut as `what`.
///
/// # Errors
/// A failed write, sync or rename: the marker may then be missing, so the caller must not cut.
pub fn mark(backend: &dyn Backend, dir: &Path, what: &str) -> Result<(), StorageError> {
    atomic::replace(backend, dir, MARKER, MAGIC, what.as_bytes())
}

/// Whether the marker is set in `dir`: its description, if so. A damaged marker reads as set
/// (with a description saying so): it only ever makes the member more careful.
///
/// # Errors
/// The file exists but cannot be read.
pub fn read(backend: &dyn Backend, dir: &Path) -> Result<Option<String>, StorageError> {
    match atomic::read(backend, dir, MARKER, MAGIC) {
        Ok(None) => Ok(None),
        Ok(Some(payload)) => Ok(Some(String::from_utf8_lossy(&payload).into_owned())),
        Err(e @ StorageError::Corrupt { .. }) => Ok(Some(format!("(the marker is damaged: {e})"))),
        Err(e) => Err(e),
    }
}

/// Durably removes the marker from `dir` (nothing to do if it is missing).
///
/// # Errors
/// A failed remove or directory fsync: the marker may still be there, which is safe.
pub fn clear(backend: &dyn Backend, dir: &Path) -> Result<(), StorageError> {
    let path = path(dir);
    match backend.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("remove", &path)(e)),
    }
    backend
        .sync_dir(dir)
        .map_err(StorageError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;

    #[test]
    fn marked_survives_a_crash_and_clearing_is_durable() {
        let b = MemBackend::new();
        let d = Path::new("/data");
        assert_eq!(read(&b, d).unwrap(), None);
        clear(&b, d).unwrap();
        mark(&b, d, "log.1 at offset 16").unwrap();
        let b = b.crash(1);
        assert_eq!(read(&b, d).unwrap().as_deref(), Some("log.1 at offset 16"));
        clear(&b, d).unwrap();
        assert_eq!(read(&b, d).unwrap(), None);
        assert_eq!(read(&b.crash(2), d).unwrap(), None);
    }

    #[test]
    fn a_damaged_marker_still_counts() {
        let b = MemBackend::new();
        let d = Path::new("/data");
        mark(&b, d, "cut").unwrap();
        b.corrupt(&path(d), 13, &[0xff]);
        let what = read(&b, d).unwrap().unwrap();
        assert!(what.contains("damaged"), "{what}");
    }

    #[test]
    fn a_crash_while_marking_or_clearing_leaves_it_set_or_not_never_broken() {
        for fail_after in 0..8 {
            for seed in 0..4 {
                let b = MemBackend::new();
                let d = Path::new("/data");
                b.fail_after_ops(fail_after);
                let done = mark(&b, d, "cut").is_ok();
                let after = b.crash(seed);
                let got = read(&after, d).unwrap();
                assert!(got.is_none() || got.as_deref() == Some("cut"));
                if done {
                    assert!(
                        got.is_some(),
                        "fail_after {fail_after}: a completed mark is durable"
                    );
                }
                let b = MemBackend::new();
                mark(&b, d, "cut").unwrap();
                b.fail_after_ops(fail_after);
                let done = clear(&b, d).is_ok();
                let got = read(&b.crash(seed), d).unwrap();
                if done {
                    assert!(
                        got.is_none(),
                        "fail_after {fail_after}: a completed clear is durable"
                    );
                }
            }
        }
    }
}
