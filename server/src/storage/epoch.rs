//! ZAB's durable epochs: `acceptedEpoch` (the newest epoch this server promised to follow, at
//! LEADERINFO) and `currentEpoch` (the epoch whose leader's history it adopted, at NEWLEADER).
//!
//! Each is its own file in the data directory, replaced atomically and durably
//! ([`super::atomic`]; payload: the epoch as a big-endian u32), as ZooKeeper keeps them. A server
//! must never forget either after acting on it: a forgotten accepted epoch lets it acknowledge an
//! older leader again, and a forgotten current epoch makes its vote look older than its log.
//!
//! The files are written accepted first, then current. Both values only grow and accepted is never
//! below current, so a crash between the two writes still leaves `accepted >= current`; recovery
//! refuses a pair that breaks this (ZOOKEEPER-2307/4269 family), naming the files.

use std::path::Path;

use super::atomic;
use super::backend::Backend;
use super::StorageError;

/// File name of the accepted epoch.
pub const ACCEPTED_EPOCH: &str = "acceptedEpoch";
/// File name of the current epoch.
pub const CURRENT_EPOCH: &str = "currentEpoch";
/// Magic of both files.
pub const MAGIC: &[u8; 4] = b"RKEP";

/// The pair of durable epochs. A fresh server has both at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epochs {
    /// The newest epoch promised (LEADERINFO acknowledged, or chosen as leader).
    pub accepted: u32,
    /// The epoch whose leader's history this server adopted (NEWLEADER acknowledged).
    pub current: u32,
}

/// Reads the epoch files in `dir`; a missing file reads as 0.
///
/// # Errors
/// An unreadable or damaged file, or `accepted < current`.
pub fn read(backend: &dyn Backend, dir: &Path) -> Result<Epochs, StorageError> {
    let one = |name: &str| -> Result<u32, StorageError> {
        match atomic::read(backend, dir, name, MAGIC)? {
            None => Ok(0),
            Some(p) => {
                let arr: [u8; 4] = p.as_slice().try_into().map_err(|_| {
                    StorageError::corrupt(
                        dir.join(name),
                        12,
                        format!("{} payload bytes, expected 4", p.len()),
                    )
                })?;
                Ok(u32::from_be_bytes(arr))
            }
        }
    };
    let epochs = Epochs {
        accepted: one(ACCEPTED_EPOCH)?,
        current: one(CURRENT_EPOCH)?,
    };
    if epochs.accepted < epochs.current {
        return Err(StorageError::corrupt(
            dir.join(CURRENT_EPOCH),
            0,
            format!(
                "current epoch {} is above the accepted epoch {} in {}",
                epochs.current,
                epochs.accepted,
                dir.join(ACCEPTED_EPOCH).display()
            ),
        ));
    }
    Ok(epochs)
}

/// Durably writes `new` over `old` (what the files hold now), accepted first, skipping a file whose
/// value does not change.
///
/// # Panics
/// If `new` goes backwards or has `accepted < current`: the caller's protocol state is broken.
///
/// # Errors
/// A failed write; the files then hold `old`, `new`, or `new.accepted` with `old.current`.
pub fn write(
    backend: &dyn Backend,
    dir: &Path,
    old: Epochs,
    new: Epochs,
) -> Result<(), StorageError> {
    assert!(new.accepted >= new.current, "accepted epoch below current");
    assert!(
        new.accepted >= old.accepted && new.current >= old.current,
        "epochs go backwards: {old:?} to {new:?}"
    );
    if new.accepted != old.accepted {
        atomic::replace(
            backend,
            dir,
            ACCEPTED_EPOCH,
            MAGIC,
            &new.accepted.to_be_bytes(),
        )?;
    }
    if new.current != old.current {
        atomic::replace(
            backend,
            dir,
            CURRENT_EPOCH,
            MAGIC,
            &new.current.to_be_bytes(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemBackend;
    use super::*;

    const DIR: &str = "/data";

    #[test]
    fn fresh_then_written_then_read_back() {
        let b = MemBackend::new();
        let d = Path::new(DIR);
        assert_eq!(read(&b, d).unwrap(), Epochs::default());
        let e = Epochs {
            accepted: 3,
            current: 2,
        };
        write(&b, d, Epochs::default(), e).unwrap();
        assert_eq!(read(&b, d).unwrap(), e);
        assert_eq!(read(&b.crash(1), d).unwrap(), e);
    }

    #[test]
    fn accepted_below_current_is_refused() {
        let b = MemBackend::new();
        let d = Path::new(DIR);
        atomic::replace(&b, d, ACCEPTED_EPOCH, MAGIC, &1u32.to_be_bytes()).unwrap();
        atomic::replace(&b, d, CURRENT_EPOCH, MAGIC, &2u32.to_be_bytes()).unwrap();
        let err = read(&b, d).unwrap_err().to_string();
        assert!(
            err.contains("currentEpoch") && err.contains("above"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_epoch_file_is_an_error_not_zero() {
        let b = MemBackend::new();
        let d = Path::new(DIR);
        let e = Epochs {
            accepted: 7,
            current: 7,
        };
        write(&b, d, Epochs::default(), e).unwrap();
        b.corrupt(&d.join(ACCEPTED_EPOCH), 13, &[0xff]);
        let err = read(&b, d).unwrap_err().to_string();
        assert!(err.contains("acceptedEpoch"), "{err}");
    }

    #[test]
    fn a_crash_at_every_step_keeps_a_valid_monotone_pair() {
        let old = Epochs {
            accepted: 4,
            current: 3,
        };
        let new = Epochs {
            accepted: 5,
            current: 5,
        };
        let mut seen = std::collections::BTreeSet::new();
        for fail_after in 0..12 {
            for seed in 0..4 {
                let b = MemBackend::new();
                let d = Path::new(DIR);
                write(&b, d, Epochs::default(), old).unwrap();
                b.fail_after_ops(fail_after);
                let done = write(&b, d, old, new).is_ok();
                let got = read(&b.crash(seed), d).expect("recoverable after any crash");
                // The old pair, the new pair, or the new accepted with the old current: never a
                // current epoch above the accepted one, and never anything older than `old`.
                assert!(
                    got == old
                        || got == new
                        || got
                            == (Epochs {
                                accepted: new.accepted,
                                current: old.current,
                            }),
                    "fail_after {fail_after}: {got:?}"
                );
                if done {
                    assert_eq!(got, new);
                }
                seen.insert((got.accepted, got.current));
            }
        }
        assert_eq!(
            seen.len(),
            3,
            "every intermediate state was reached: {seen:?}"
        );
    }
}
