//! The consensus core (`server/src/zab/`) must stay a pure state machine: no async runtime, no
//! sockets, no files, no threads, no clock, no unseeded randomness, no iteration order that
//! changes between runs. That is what lets the simulator replay a seed exactly and lets every
//! runtime (the server, the simulator) drive the same code. This test reads the sources and fails
//! on any forbidden path, and on any `use` of a crate or module outside a short allowlist.
//!
//! The request processor around it (`server::Core` and the state it owns) is held to less, but
//! to the same end: it takes its time from its `Env`, its randomness from its seeded `StdRng` and
//! its threads from `Env::background`, so it reads no clock, draws no unseeded random number and
//! starts no thread or task of its own (outside its tests).

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

/// The request processor's files: the core and the state it owns.
const REQUEST_PROCESSOR: &[&str] = &[
    "server.rs",
    "ensemble.rs",
    "session.rs",
    "tree.rs",
    "prep.rs",
    "watch.rs",
    "txn.rs",
];

/// What the request processor must not do itself (outside `#[cfg(test)]`), and why. `Core::run`
/// (the driver's loop, with its `tokio::time::interval` ticks) and the latency statistics
/// (`Instant::elapsed` of when a request was read) are not forbidden.
const PROCESSOR_FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "a clock: time comes from the core's Env"),
    ("SystemTime", "the wall clock: Env::wall_ms"),
    ("thread_rng", "unseeded randomness: the core's StdRng"),
    ("rand::random", "unseeded randomness: the core's StdRng"),
    ("thread::spawn", "a thread: Env::background"),
    ("thread::Builder", "a thread: Env::background"),
    ("tokio::spawn", "a task: the driver runs the core"),
    ("tokio::time::sleep", "waiting on the clock"),
];

/// The change in brace depth over a line of code, not counting braces in string literals or
/// `'{'` / `'}'` character literals.
fn brace_delta(code: &str) -> (i64, bool) {
    let (mut delta, mut opened) = (0i64, false);
    let mut in_str = false;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
        } else if c == '\'' && matches!(chars.peek(), Some('{' | '}')) {
            // A character literal: skip the brace and the closing quote.
            chars.next();
            if chars.peek() == Some(&'\'') {
                chars.next();
            }
        } else if c == '{' {
            delta += 1;
            opened = true;
        } else if c == '}' {
            delta -= 1;
        }
    }
    (delta, opened)
}

/// The code lines of `source` (comments removed), numbered from 1, outside items marked
/// `#[cfg(test)]` (a test module, function or `use`).
fn non_test_code(source: &str) -> Vec<(usize, &str)> {
    /// Inside a `#[cfg(test)]` item: its brace depth, and whether its body has opened.
    struct Skip {
        depth: i64,
        opened: bool,
    }
    let mut out = Vec::new();
    let mut cfg_test = false;
    let mut skip: Option<Skip> = None;
    for (n, line) in source.lines().enumerate() {
        let mut code = code(line);
        if skip.is_none() && !cfg_test {
            let t = code.trim_start();
            match t.strip_prefix("#[cfg(test)]") {
                Some(rest) => {
                    cfg_test = true;
                    code = rest;
                }
                None => {
                    out.push((n + 1, code));
                    continue;
                }
            }
        }
        if cfg_test {
            let t = code.trim();
            if t.is_empty() || t.starts_with("#[") {
                // More attributes (or nothing yet) before the item.
                continue;
            }
            cfg_test = false;
            skip = Some(Skip {
                depth: 0,
                opened: false,
            });
        }
        let s = skip.as_mut().expect("skipping a test item");
        let (delta, opened) = brace_delta(code);
        s.depth += delta;
        s.opened |= opened;
        let ends = if s.opened {
            s.depth <= 0
        } else {
            code.trim_end().ends_with(';')
        };
        if ends {
            skip = None;
        }
    }
    out
}

/// Every use of a [`PROCESSOR_FORBIDDEN`] string in `source`'s non-test code, as
/// "line: what (why)".
fn processor_violations(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, code) in non_test_code(source) {
        for (bad, why) in PROCESSOR_FORBIDDEN {
            if code.contains(bad) {
                out.push(format!("line {n}: `{bad}` ({why}): {}", code.trim()));
            }
        }
    }
    out
}

#[test]
fn the_request_processor_reads_no_clock_draws_no_unseeded_randomness_and_starts_no_thread() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for name in REQUEST_PROCESSOR {
        let path = dir.join(name);
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code = non_test_code(&source);
        // The scan sees the file's code, not just its first lines: most of it is not tests.
        assert!(
            code.len() * 2 > source.lines().count(),
            "{}: only {} of {} lines scanned",
            path.display(),
            code.len(),
            source.lines().count()
        );
        for v in processor_violations(&source) {
            problems.push(format!("{}: {v}", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "the request processor takes time, randomness and threads from its Env and its RNG:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_processor_scanner_skips_tests_and_comments_only() {
    for bad in [
        "let t = std::time::Instant::now();",
        "let t = tokio::time::Instant::now();",
        "let w = SystemTime::now();",
        "let p: u64 = rand::random();",
        "rand::thread_rng().fill_bytes(&mut p);",
        "std::thread::spawn(job);",
        "std::thread::Builder::new().spawn(job);",
        "tokio::spawn(async move {});",
        "tokio::time::sleep(d).await;",
        // Code after a test module is scanned again.
        "#[cfg(test)]\nmod tests {\n    fn f() {\n        let _ = '}';\n    }\n}\nfn g() { tokio::spawn(f()); }",
        // A test-only `use` ends at its semicolon.
        "#[cfg(test)]\nuse std::time::SystemTime;\nfn g() { SystemTime::now(); }",
        // Braces in strings do not end a test module early.
        "#[cfg(test)]\nmod tests {\n    const S: &str = \"}}\";\n}\nfn g() { rand::random::<u8>(); }",
    ] {
        assert!(!processor_violations(bad).is_empty(), "not caught: {bad}");
    }
    for fine in [
        "let mut tick = tokio::time::interval(period);",
        "tokio::select! { _ = tick.tick() => self.tick() }",
        "let elapsed = received.elapsed();",
        "let now = self.env.now_ms();",
        "self.rng.fill_bytes(&mut passwd);",
        "// not tokio::spawn: the driver runs the core",
        "/// Never `Instant::now`.",
        "#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {\n        std::thread::spawn(|| {});\n        let _ = std::time::Instant::now();\n    }\n}",
        "#[cfg(test)]\n#[allow(dead_code)]\nfn helper(\n    x: u8,\n) {\n    tokio::spawn(async {});\n}",
        "#[cfg(test)] mod tests { fn t() { rand::random::<u8>(); } }",
    ] {
        let found = processor_violations(fine);
        assert!(found.is_empty(), "false alarm: {fine}: {found:?}");
    }
}
