//! Running `rookery cli` as a subprocess, with every wait bounded.

#![allow(dead_code)] // Each test binary uses a different part.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rookery_testkit::rookery_bin;

/// The longest one `rookery cli` run may take before the test kills it and fails.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// `rookery cli --server ADDR ARGS...`, with `stdin` as its standard input (none: /dev/null).
pub(crate) fn cli(server: SocketAddr, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all = vec!["cli".to_owned(), "--server".to_owned(), server.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    rookery(&all, stdin)
}

/// `rookery ARGS...`, killed (and the test failed) after [`RUN_LIMIT`].
pub(crate) fn rookery(args: &[String], stdin: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let input = match stdin {
        Some(text) => {
            let p = dir.path().join("stdin");
            std::fs::write(&p, text).unwrap();
            Stdio::from(std::fs::File::open(p).unwrap())
        }
        None => Stdio::null(),
    };
    let mut child = Command::new(rookery_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env("ROOKERY_CLI_HISTORY", dir.path().join("history"))
        .stdin(input)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start rookery cli");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rookery {args:?} did not finish within {RUN_LIMIT:?}; stdout:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// As [`cli`], asserting that every command succeeded.
pub(crate) fn cli_ok(server: SocketAddr, args: &[&str]) -> String {
    let out = cli(server, args, None);
    assert_eq!(
        out.status, 0,
        "rookery cli {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stderr, "", "rookery cli {args:?} wrote to stderr");
    out.stdout
}
