//! Durable storage: the transaction log, snapshots, recovery and retention.
//!
//! The byte layout, the order of fsyncs and what a crash at each step leaves behind are in
//! `docs/storage-format.md`. The rules: every record is checksummed (CRC32C); a write is
//! acknowledged only after `fdatasync`, with many writes sharing one sync (group commit); the
//! directory is fsynced after a file is created or renamed; recovery truncates a torn tail but
//! treats any other corruption as a loud error; and a failed sync poisons the log for good.
//!
//! All file I/O goes through [`Backend`], so tests run the same code over [`MemBackend`], which
//! models crashes and injects faults.
//!
//! For the ZAB ensemble: the log accepts epoch jumps in zxids ([`txn_log::zxid_follows`]) and can
//! drop a suffix durably ([`txn_log::TxnLog::truncate_after`]); [`recovery::replay_log`] reads a
//! log of opaque proposals; [`epoch`] keeps the durable accepted and current epochs; [`tail_cut`]
//! remembers that recovery cut a non-empty tail off a member's log, until it has synchronized.

pub mod atomic;
pub mod backend;
pub mod codec;
pub mod epoch;
pub mod mem;
pub mod purge;
pub mod recovery;
pub mod snapshot;
pub mod tail_cut;
pub mod txn_log;
pub mod writer;

use std::path::PathBuf;

pub use backend::{Backend, FileBackend, FileHandle};
pub use mem::MemBackend;
use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds something other than what was written: recovery must not guess.
    #[error("corrupt {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier sync failed, so nothing more may be acknowledged.
    #[error("the transaction log is poisoned by an earlier failure")]
    Poisoned,
}

impl StorageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
