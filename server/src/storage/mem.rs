//! An in-memory [`Backend`] that models crashes, for tests and the simulator.
//!
//! Each file keeps its durable image and the writes made since the last `sync_data`. Directory
//! entries (creates, renames, removes) become durable only at `sync_dir`. [`MemBackend::crash`]
//! returns what a power cut would leave: durable images, plus a random prefix of the unsynced
//! writes torn at a 512-byte boundary, and the durable directory. Faults can be injected: a failing
//! sync, a full disk, and a failure of every mutating call after the next N (so a test can stop a
//! multi-step operation at each of its steps and then crash).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::backend::{Backend, FileHandle};

/// Sector size at which an unsynced write may tear.
pub const SECTOR: usize = 512;

#[derive(Debug, Clone, Default)]
struct MemFile {
    /// What survives a crash.
    durable: Vec<u8>,
    /// The current contents, as reads see them.
    current: Vec<u8>,
    /// Unsynced writes in order: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    /// Files by id.
    files: Vec<MemFile>,
    /// The directory as the running process sees it: path to file id.
    live: BTreeMap<PathBuf, usize>,
    /// The directory as a crash would leave it.
    durable: BTreeMap<PathBuf, usize>,
    fail_sync: bool,
    capacity_bytes: Option<u64>,
    /// Mutating calls still allowed before every one fails with EIO; `None` is unlimited.
    ops_left: Option<u64>,
}

impl State {
    /// Counts one mutating call against [`MemBackend::fail_after_ops`].
    fn use_op(&mut self) -> io::Result<()> {
        match &mut self.ops_left {
            None => Ok(()),
            Some(0) => Err(eio()),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    /// The bytes all files hold now, unsynced writes included: what the capacity limits.
    fn used_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.current.len() as u64).sum()
    }
}

/// A crash-modelling in-memory file system. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemBackend {
    state: Arc<Mutex<State>>,
}

struct MemHandle {
    state: Arc<Mutex<State>>,
    id: usize,
}

impl MemBackend {
    /// An empty file system.
    pub fn new() -> Self {
        MemBackend::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every later `sync_data` and `sync_dir` fail with EIO.
    pub fn fail_syncs(&self) {
        self.lock().fail_sync = true;
    }

    /// Lets the next `n` mutating calls (write, sync, set_len, create, rename, remove, directory
    /// sync) succeed and makes every later one fail with EIO: a test stops an operation after each
    /// of its steps in turn, then calls [`MemBackend::crash`] to see what that step left.
    pub fn fail_after_ops(&self, n: u64) {
        self.lock().ops_left = Some(n);
    }

    /// Limits the total bytes all files may hold; writes past it fail with ENOSPC. The limit
    /// survives [`MemBackend::crash`] (the disk is still full after a restart).
    pub fn set_capacity(&self, bytes: u64) {
        self.lock().capacity_bytes = Some(bytes);
    }

    /// Lifts the limit of [`MemBackend::set_capacity`] (space was freed).
    pub fn clear_capacity(&self) {
        self.lock().capacity_bytes = None;
    }

    /// The bytes all files hold now, unsynced writes included (what [`MemBackend::set_capacity`]
    /// counts).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// What a crash at this moment leaves behind, as a fresh backend. `seed` decides how much of
    /// each file's unsynced writes survives (a prefix, torn at a sector boundary).
    pub fn crash(&self, seed: u64) -> MemBackend {
        let st = self.lock();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut files = Vec::with_capacity(st.files.len());
        for f in &st.files {
            let mut image = f.durable.clone();
            // Unsynced writes persist in order up to a random point, the last one torn.
            let keep = if f.pending.is_empty() {
                0
            } else {
                rng.gen_range(0..=f.pending.len())
            };
            for (i, (off, bytes)) in f.pending.iter().enumerate().take(keep) {
                let len = if i + 1 == keep {
                    let sectors = bytes.len().div_ceil(SECTOR);
                    (rng.gen_range(0..=sectors) * SECTOR).min(bytes.len())
                } else {
                    bytes.len()
                };
                let end = *off as usize + len;
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*off as usize..end].copy_from_slice(&bytes[..len]);
            }
            files.push(MemFile {
                durable: image.clone(),
                current: image,
                pending: Vec::new(),
            });
        }
        let state = State {
            files,
            live: st.durable.clone(),
            durable: st.durable.clone(),
            fail_sync: false,
            capacity_bytes: st.capacity_bytes,
            ops_left: None,
        };
        MemBackend {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The current contents of a file, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        st.live.get(path).map(|&id| st.files[id].current.clone())
    }

    /// Overwrites bytes of a file in place, durably (to model media corruption).
    pub fn corrupt(&self, path: &Path, offset: usize, bytes: &[u8]) {
        let mut st = self.lock();
        let id = st.live[path];
        let f = &mut st.files[id];
        for (i, b) in bytes.iter().enumerate() {
            if offset + i < f.current.len() {
                f.current[offset + i] = *b;
                f.durable[offset + i] = *b;
            }
        }
    }

    /// Truncates a file durably (to model a lost tail).
    pub fn truncate(&self, path: &Path, len: usize) {
        let mut st = self.lock();
        let id = st.live[path];
        let f = &mut st.files[id];
        f.current.truncate(len);
        f.durable.truncate(len);
    }
}

fn eio() -> io::Error {
    io::Error::other("injected EIO")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl FileHandle for MemHandle {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.use_op()?;
        let end = offset as usize + buf.len();
        if let Some(cap) = st.capacity_bytes {
            let used = st.used_bytes();
            let grow = end.saturating_sub(st.files[self.id].current.len()) as u64;
            if used + grow > cap {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected ENOSPC",
                ));
            }
        }
        let f = &mut st.files[self.id];
        if f.current.len() < end {
            f.current.resize(end, 0);
        }
        f.current[offset as usize..end].copy_from_slice(buf);
        f.pending.push((offset, buf.to_vec()));
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.use_op()?;
        if st.fail_sync {
            return Err(eio());
        }
        let f = &mut st.files[self.id];
        f.durable = f.current.clone();
        f.pending.clear();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(st.files[self.id].current.len() as u64)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.use_op()?;
        let f = &mut st.files[self.id];
        let old = f.current.len() as u64;
        if len > old {
            // Extension is a write of zeros, so it tears like one.
            let zeros = vec![0u8; (len - old) as usize];
            f.current.resize(len as usize, 0);
            f.pending.push((old, zeros));
        } else {
            // A shrink is modelled as durable at once (a metadata change that is atomic). Unsynced
            // writes past the new end are gone with it: a crash must not bring them back.
            f.current.truncate(len as usize);
            f.durable.truncate(len as usize);
            f.pending.retain_mut(|(off, bytes)| {
                if *off >= len {
                    return false;
                }
                bytes.truncate((len - *off).min(bytes.len() as u64) as usize);
                true
            });
        }
        Ok(())
    }
}

impl Backend for MemBackend {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        Ok(st
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let mut st = self.lock();
        st.use_op()?;
        st.files.push(MemFile::default());
        let id = st.files.len() - 1;
        st.live.insert(path.to_owned(), id);
        Ok(Box::new(MemHandle {
            state: self.state.clone(),
            id,
        }))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let st = self.lock();
        let id = *st.live.get(path).ok_or_else(|| not_found(path))?;
        Ok(Box::new(MemHandle {
            state: self.state.clone(),
            id,
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path).ok_or_else(|| not_found(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.use_op()?;
        let id = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_owned(), id);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.use_op()?;
        st.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.use_op()?;
        if st.fail_sync {
            return Err(eio());
        }
        let st = &mut *st;
        st.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, id) in &st.live {
            if p.parent() == Some(dir) {
                st.durable.insert(p.clone(), *id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_synced_and_drops_unsynced_entries() {
        let b = MemBackend::new();
        let dir = Path::new("/d");
        let mut f = b.create(&dir.join("a")).unwrap();
        f.write_at(0, b"hello").unwrap();
        f.sync_data().unwrap();
        // Not durable: the directory entry was never synced.
        assert!(b.crash(1).list(dir).unwrap().is_empty());
        b.sync_dir(dir).unwrap();
        f.write_at(5, &[7u8; 2000]).unwrap();
        let mut saw_torn = false;
        for seed in 0..50 {
            let c = b.crash(seed);
            let data = c.read(&dir.join("a")).unwrap();
            assert_eq!(&data[..5], b"hello");
            assert!(
                data.len() == 5 || (data.len() - 5).is_multiple_of(SECTOR) || data.len() == 2005
            );
            saw_torn |= data.len() > 5 && data.len() < 2005;
        }
        assert!(saw_torn);
    }

    #[test]
    fn a_shrink_drops_unsynced_writes_past_the_end() {
        let b = MemBackend::new();
        let dir = Path::new("/d");
        let mut f = b.create(&dir.join("a")).unwrap();
        b.sync_dir(dir).unwrap();
        f.write_at(0, &[1; 100]).unwrap();
        f.write_at(100, &[2; 100]).unwrap();
        f.set_len(50).unwrap();
        for seed in 0..20 {
            let data = b.crash(seed).read(&dir.join("a")).unwrap();
            assert!(data.len() <= 50, "seed {seed}: {} bytes", data.len());
        }
    }

    #[test]
    fn fail_after_ops_stops_at_the_nth_call() {
        let b = MemBackend::new();
        let mut f = b.create(Path::new("/d/a")).unwrap();
        b.fail_after_ops(2);
        f.write_at(0, b"x").unwrap();
        f.sync_data().unwrap();
        assert!(f.write_at(1, b"y").is_err());
        assert!(b.sync_dir(Path::new("/d")).is_err());
        // The crash image is a fresh backend without the fault.
        let c = b.crash(1);
        c.create(Path::new("/d/b")).unwrap();
    }

    #[test]
    fn faults() {
        let b = MemBackend::new();
        let mut f = b.create(Path::new("/d/a")).unwrap();
        b.set_capacity(10);
        assert_eq!(
            f.write_at(0, &[0; 11]).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        b.fail_syncs();
        f.write_at(0, b"x").unwrap();
        assert!(f.sync_data().is_err());
    }
}
