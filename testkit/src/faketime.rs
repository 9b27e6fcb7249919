//! Skewed clocks for a child process through libfaketime (Debian's `faketime` package), for
//! clock-skew tests (the test plan's C1) without clock-faking code in the server.
//!
//! The library is preloaded (`LD_PRELOAD`) with `FAKETIME` set to an offset and a rate, such as
//! `+1h x1.5` (an hour ahead, running half again as fast as the real clock) or `-30m x0.7`. It
//! replaces libc's `clock_gettime`, `gettimeofday` and `time`, for `CLOCK_REALTIME` and (with
//! `FAKETIME_DONT_FAKE_MONOTONIC=0`, which [`env`] sets) `CLOCK_MONOTONIC` too, which Rust's
//! `Instant` and tokio's timers read; and it scales the waits of `epoll_wait`, `nanosleep`,
//! `poll` and the like by the rate. A process under `x1.5` fires a 3 s timer after 2 s of real
//! time, and its wall clock reads an hour ahead.
//!
//! It works only for a dynamically linked program (glibc's `rookery`, as `cargo build` makes
//! it): a static binary (a musl build) ignores `LD_PRELOAD`; [`dynamically_linked`] tells, and
//! [`loaded_in`] checks a running process.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Overrides where the library is looked for.
pub const LIBRARY_VAR: &str = "ROOKERY_LIBFAKETIME";

/// The library's file name: the single-threaded-lock build (the `MT` build serializes every
/// clock read of a process behind one mutex).
const LIBRARY: &str = "libfaketime.so.1";

/// The installed libfaketime: `$ROOKERY_LIBFAKETIME`, else `libfaketime.so.1` in
/// `/usr/lib/<triplet>/faketime/` (Debian's place), `/usr/lib/faketime/` or
/// `/usr/local/lib/faketime/`. `None` when it is not installed (`apt-get install faketime`).
pub fn library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(LIBRARY_VAR) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime"))
        .collect();
    dirs.sort();
    dirs.push("/usr/lib/faketime".into());
    dirs.push("/usr/local/lib/faketime".into());
    dirs.into_iter()
        .map(|d| d.join(LIBRARY))
        .find(|p| p.is_file())
}

/// Whether `program` is an ELF executable with an interpreter (the dynamic loader honours
/// `LD_PRELOAD`); false for a static executable or anything that is not ELF.
pub fn dynamically_linked(program: &Path) -> std::io::Result<bool> {
    let mut head = Vec::new();
    std::fs::File::open(program)?
        .take(64 * 1024)
        .read_to_end(&mut head)?;
    // ELF64, little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    Ok((0..count).any(|i| {
        let o = phoff + i * size;
        head.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == PT_INTERP)
    }))
}

/// Checks a `FAKETIME` value of the relative form this module uses: a signed offset with an
/// optional unit (`s`, `m`, `h`, `d`, `y`), then optionally ` x<rate>`: `+1h x1.5`, `-30m x0.7`,
/// `+0 x2`. (libfaketime reads other forms too; an absolute date would make every restart of
/// the process jump back to it.)
pub fn check_spec(spec: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "FAKETIME {spec:?}: expected an offset and an optional rate, such as \"+1h x1.5\""
        ))
    };
    let mut parts = spec.split_whitespace();
    let Some(offset) = parts.next() else {
        return bad();
    };
    let Some(offset) = offset.strip_prefix(['+', '-']) else {
        return bad();
    };
    let number = offset.trim_end_matches(['s', 'm', 'h', 'd', 'y']);
    if number.len() + 1 < offset.len() || number.parse::<f64>().is_err() {
        return bad();
    }
    if let Some(rate) = parts.next() {
        match rate.strip_prefix('x').map(str::parse::<f64>) {
            Some(Ok(r)) if r > 0.0 && r.is_finite() => {}
            _ => return bad(),
        }
    }
    if parts.next().is_some() {
        return bad();
    }
    Ok(())
}

/// The environment that runs a process under `library` with the clock `spec` (see
/// [`check_spec`]), monotonic clock included.
pub fn env(library: &Path, spec: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME".into(), spec.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "0".into()),
    ]
}

/// Whether the running process `pid` has libfaketime mapped (from `/proc/<pid>/maps`).
pub fn loaded_in(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|maps| maps.lines().any(|l| l.contains("libfaketime")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    #[test]
    fn specs_are_checked() {
        for ok in ["+1h x1.5", "-30m x0.7", "+0 x2", "+90s", "-1.5d"] {
            assert!(check_spec(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1h",
            "+1h x",
            "+1h x0",
            "+1h x-1",
            "@2020-01-01 00:00:00",
            "+1w",
        ] {
            assert!(check_spec(bad).is_err(), "{bad:?}");
        }
        assert!(check_spec("+1h x1.5 extra").is_err());
    }

    #[test]
    fn a_test_binary_is_dynamically_linked_and_a_script_is_not() {
        let me = std::env::current_exe().unwrap();
        assert!(dynamically_linked(&me).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert!(!dynamically_linked(&script).unwrap());
    }

    /// A faked child's wall clock is ahead, its sleeps shorter in real time, and it has the
    /// library mapped. Skipped (with a note) when libfaketime is not installed.
    #[test]
    fn a_child_under_faketime_runs_ahead_and_fast() {
        let Some(lib) = library() else {
            eprintln!("libfaketime is not installed (apt-get install faketime): skipped");
            return;
        };
        let out = Command::new("date")
            .arg("+%s")
            .envs(env(&lib, "+1h"))
            .output()
            .unwrap();
        let faked: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(faked.abs_diff(real + 3600) < 60, "{faked} vs {real}");

        // `sleep 3` at four times the speed: about 0.75 s.
        let started = Instant::now();
        let status = Command::new("sleep")
            .arg("3")
            .envs(env(&lib, "+0 x4"))
            .status()
            .unwrap();
        assert!(status.success());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");

        let mut child = Command::new("sleep")
            .arg("10")
            .envs(env(&lib, "+0"))
            .spawn()
            .unwrap();
        let mut seen = false;
        for _ in 0..100 {
            seen = loaded_in(child.id());
            if seen {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen, "libfaketime not mapped in the child");
    }
}
