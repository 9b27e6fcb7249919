//! The storage seam: every file operation the log and snapshots make goes through [`Backend`], so
//! tests can swap the real file system for [`MemBackend`](super::mem::MemBackend), which models
//! what a crash keeps: synced bytes and directory entries survive, unsynced ones may not.
//!
//! # To ensure correctness, an implementation must guarantee
//! - `write_at` followed by `sync_data` makes those bytes durable, with the file length;
//! - `create` and `rename` are durable only after `sync_dir` on the directory;
//! - every error is reported, never swallowed: callers treat a failed sync as fatal.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open file.
pub trait FileHandle: Send {
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes written data (and the length) durable: `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// The current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A directory of files.
pub trait Backend: Send + Sync {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Opens an existing file for writing at any offset.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creates, renames and removes in `dir` durable: fsync of the directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileBackend;

struct RealFile(File);

impl FileHandle for RealFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Backend for FileBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(RealFile(
            OpenOptions::new().read(true).write(true).open(path)?,
        )))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// `dir/name`.
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
