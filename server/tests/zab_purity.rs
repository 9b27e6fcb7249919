//! The consensus core (`server/src/zab/`) must stay a pure state machine: no async runtime, no
//! sockets, no files, no threads, no clock, no unseeded randomness, no iteration order that
//! changes between runs. That is what lets the simulator replay a seed exactly and lets every
//! runtime (the server, the simulator) drive the same code. This test reads the sources and fails
//! on any forbidden path, and on any `use` of a crate or module outside a short allowlist.

use std::path::{Path, PathBuf};

/// Substrings that must not appear in the core's code (comments are ignored), and why.
const FORBIDDEN: &[(&str, &str)] = &[
    (
        "tokio",
        "an async runtime: the runtime drives the core, not the other way round",
    ),
    ("std::net", "sockets"),
    ("std::fs", "files"),
    ("std::io", "I/O"),
    ("std::thread", "threads"),
    ("std::time", "clocks: time arrives as ticks"),
    ("Instant", "a clock"),
    ("SystemTime", "the wall clock"),
    ("std::process", "processes"),
    ("std::env", "the environment"),
    (
        "std::sync",
        "shared state and locks: the core is single-threaded",
    ),
    (
        "HashMap",
        "iteration order that differs between runs (use BTreeMap)",
    ),
    (
        "HashSet",
        "iteration order that differs between runs (use BTreeSet)",
    ),
    ("rand::", "randomness other than the seeded generator"),
    ("thread_rng", "unseeded randomness"),
    ("getrandom", "unseeded randomness"),
    (
        "crate::storage",
        "storage: the core issues store operations, the runtime performs them",
    ),
    ("crate::server", "the request processor"),
    ("unsafe", "unsafe code"),
];

/// The crates and `std` modules the core may `use`.
const ALLOWED_USE_ROOTS: &[&str] = &[
    "super::",
    "self::",
    "crate::zab::",
    "bytes::",
    "thiserror::",
    "std::collections::",
    "std::fmt",
    "std::cmp",
    "std::mem",
    "std::iter",
];

fn zab_sources() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/zab");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
}

/// The code of a source line, without its `//` comment.
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every violation in `source`, as "line: what (why)". `local` are the core's own modules, which
/// `mod.rs` re-exports from.
fn violations(source: &str, local: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = code(line);
        for (bad, why) in FORBIDDEN {
            if code.contains(bad) {
                out.push(format!("line {}: `{bad}` ({why}): {}", n + 1, line.trim()));
            }
        }
        // The first line of a `use` names the root; continuation lines of a multi-line `use`
        // name items under it.
        let trimmed = code.trim_start();
        if trimmed.starts_with("use ") || trimmed.starts_with("pub use ") {
            let path = trimmed
                .trim_start_matches("pub ")
                .trim_start_matches("use ")
                .trim();
            let first = path.split("::").next().unwrap_or_default();
            let allowed = ALLOWED_USE_ROOTS.iter().any(|r| path.starts_with(r))
                || local.iter().any(|m| m == first);
            if !allowed {
                out.push(format!(
                    "line {}: `use` outside the allowlist: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    out
}

#[test]
fn the_consensus_core_does_no_io_and_reads_no_clock() {
    let files = zab_sources();
    assert!(
        files.len() >= 10,
        "expected the zab sources, found {files:?}"
    );
    let local: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
        .collect();
    let mut problems = Vec::new();
    for f in &files {
        let source = std::fs::read_to_string(f).unwrap();
        for v in violations(&source, &local) {
            problems.push(format!("{}: {v}", f.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "the consensus core must stay pure:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_catches_what_it_must() {
    let local = ["node".to_owned(), "zxid".to_owned()];
    for bad in [
        "use tokio::sync::mpsc;",
        "let s = std::net::TcpStream::connect(a);",
        "let f = std::fs::read(p);",
        "let t = std::time::Instant::now();",
        "let t = SystemTime::now();",
        "std::thread::spawn(f);",
        "let m: HashMap<u64, u64> = HashMap::new();",
        "let r = rand::thread_rng();",
        "use crate::storage::txn_log::TxnLog;",
        "use serde::Serialize;",
        "use std::sync::Mutex;",
    ] {
        assert!(!violations(bad, &local).is_empty(), "not caught: {bad}");
    }
    for fine in [
        "use std::collections::BTreeMap;",
        "use super::zxid::Zxid;",
        "use bytes::Bytes;",
        "// tokio drives this from outside",
        "let x = 1; // std::fs is not used here",
        "tracing::debug!(server = id, \"settled\");",
        "pub use node::{Action, Node};",
    ] {
        let found = violations(fine, &local);
        assert!(found.is_empty(), "false alarm: {fine}: {found:?}");
    }
}
