//! Small files replaced atomically and durably: ZAB's epoch files, and any other little piece of
//! state that must be either the old value or the new one after a crash, never a mix or nothing.
//!
//! File layout:
//! ```text
//! magic:[u8; 4] | version:u32 = 1 | len:u32 | payload[len] | crc32c:u32 over everything before it
//! ```
//! Replacing `name`: write `name.tmp`, `fdatasync` it, rename it over `name`, fsync the directory.
//! A crash before the rename leaves the old file (and a stale `.tmp`, which is ignored and
//! overwritten next time); after the rename, the new one. The checksum catches media damage, which
//! is then an error rather than a guess: these files hold promises a server made to its peers.

use std::io::ErrorKind;
use std::path::Path;

use super::backend::{in_dir, Backend};
use super::StorageError;

/// Format version of the framing.
pub const VERSION: u32 = 1;
/// Framing bytes around the payload: magic, version, length, checksum.
pub const OVERHEAD: usize = 16;

/// Atomically and durably replaces `dir/name` with `payload`, framed with `magic`.
///
/// # Errors
/// Any failed write, sync or rename. The file then holds the old value or the new one.
pub fn replace(
    backend: &dyn Backend,
    dir: &Path,
    name: &str,
    magic: &[u8; 4],
    payload: &[u8],
) -> Result<(), StorageError> {
    let mut bytes = Vec::with_capacity(payload.len() + OVERHEAD);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    let len = u32::try_from(payload.len()).expect("small files are small");
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());

    backend
        .create_dir_all(dir)
        .map_err(StorageError::io("create directory", dir))?;
    let tmp = in_dir(dir, &format!("{name}.tmp"));
    let path = in_dir(dir, name);
    let mut file = backend
        .create(&tmp)
        .map_err(StorageError::io("create", &tmp))?;
    file.write_at(0, &bytes)
        .map_err(StorageError::io("write", &tmp))?;
    file.sync_data()
        .map_err(StorageError::io("fdatasync", &tmp))?;
    drop(file);
    backend
        .rename(&tmp, &path)
        .map_err(StorageError::io("rename", &tmp))?;
    // Without this the rename may not survive a crash, and the old value would come back after
    // the new one was acted upon.
    backend
        .sync_dir(dir)
        .map_err(StorageError::io("fsync directory", dir))
}

/// Reads `dir/name`, checking its framing; `Ok(None)` if it does not exist.
///
/// # Errors
/// A read failure, or a file that is not a complete, checksummed file with `magic` (`Corrupt`,
/// naming the file).
pub fn read(
    backend: &dyn Backend,
    dir: &Path,
    name: &str,
    magic: &[u8; 4],
) -> Result<Option<Vec<u8>>, StorageError> {
    let path = in_dir(dir, name);
    let bytes = match backend.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", &path)(e)),
    };
    let bad = |offset: usize, why: &str| StorageError::corrupt(&path, offset as u64, why);
    if bytes.len() < OVERHEAD {
        return Err(bad(0, "file is shorter than its framing"));
    }
    if &bytes[..4] != magic {
        return Err(bad(0, "bad magic"));
    }
    let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(bad(4, &format!("unsupported version {version}")));
    }
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if bytes.len() != len + OVERHEAD {
        return Err(bad(
            8,
            &format!(
                "length says {len} payload bytes, file has {}",
                bytes.len() - OVERHEAD
            ),
        ));
    }
    let body = &bytes[..12 + len];
    let stored = u32::from_be_bytes([
        bytes[12 + len],
        bytes[13 + len],
        bytes[14 + len],
        bytes[15 + len],
    ]);
    if crc32c::crc32c(body) != stored {
        return Err(bad(12 + len, "checksum mismatch"));
    }
    Ok(Some(body[12..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;

    const MAGIC: &[u8; 4] = b"TEST";

    #[test]
    fn round_trip_missing_and_damage() {
        let b = MemBackend::new();
        let d = Path::new("/d");
        assert_eq!(read(&b, d, "f", MAGIC).unwrap(), None);
        replace(&b, d, "f", MAGIC, b"hello").unwrap();
        assert_eq!(read(&b, d, "f", MAGIC).unwrap().unwrap(), b"hello");
        replace(&b, d, "f", MAGIC, b"").unwrap();
        assert_eq!(read(&b, d, "f", MAGIC).unwrap().unwrap(), b"");
        assert!(read(&b, d, "f", b"ELSE").is_err());
        replace(&b, d, "f", MAGIC, b"hello").unwrap();
        b.corrupt(&d.join("f"), 13, b"J");
        let err = read(&b, d, "f", MAGIC).unwrap_err().to_string();
        assert!(err.contains("checksum") && err.contains("/d/f"), "{err}");
        b.truncate(&d.join("f"), 10);
        assert!(read(&b, d, "f", MAGIC).is_err());
    }

    #[test]
    fn a_crash_at_every_step_leaves_the_old_or_the_new_value() {
        for fail_after in 0..8 {
            for seed in 0..4 {
                let b = MemBackend::new();
                let d = Path::new("/d");
                replace(&b, d, "f", MAGIC, b"old").unwrap();
                b.fail_after_ops(fail_after);
                let done = replace(&b, d, "f", MAGIC, b"new").is_ok();
                let after = b.crash(seed);
                let got = read(&after, d, "f", MAGIC).unwrap().unwrap();
                assert!(
                    got == b"old" || got == b"new",
                    "fail_after {fail_after}: {got:?}"
                );
                if done {
                    assert_eq!(got, b"new", "completed, so durable");
                }
            }
        }
    }
}
