//! `rookery lock` and `rookery elect` as processes against a real server: mutual exclusion,
//! exit statuses, signals and leadership hand-over.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rookery_testkit::*;

/// A `rookery lock` or `rookery elect` process: its stdout lines arrive on a channel and its
/// stderr is kept for failure messages; killed on drop.
struct Cli {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    name: String,
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rookery(server: &Proc, args: &[&str], env: &[(&str, &Path)]) -> Cli {
    // Options after `--` would be the command's: --connect goes before it.
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut command = Command::new(rookery_bin());
    command
        .args(&args[..split])
        .args(["--connect", &server.addr.to_string()])
        .args(&args[split..])
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Cli {
        child,
        lines,
        stderr,
        name: args.join(" "),
    }
}

impl Cli {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line for which `pred` holds (earlier ones are skipped).
    fn line(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!(
                    "`{}`: no expected line ({e:?}); stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits until every one of `expected` has been printed, in any order: `elect` prints the
    /// role and the leader from two independent observations, so either may come first.
    fn lines(&self, expected: &[&str]) {
        let mut missing: Vec<&str> = expected.to_vec();
        while !missing.is_empty() {
            let line = self.line(|l| missing.contains(&l));
            missing.retain(|m| *m != line);
        }
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the rest of stderr.
                std::thread::sleep(Duration::from_millis(20));
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("`{}` did not exit; stderr:\n{}", self.name, self.stderr());
    }

    /// Waits for the exit and returns the status code.
    fn code(&mut self) -> i32 {
        let status = self.wait();
        status
            .code()
            .unwrap_or_else(|| panic!("`{}` was killed: {status}", self.name))
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.child.id());
    }

    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }
}

#[test]
fn two_commands_under_one_lock_do_not_overlap_and_get_growing_tokens() {
    let server = start_rookery(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = r#"echo "start $$ $ROOKERY_LOCK_TOKEN $ROOKERY_LOCK_PATH" >> "$OUT"; sleep 0.5; echo "end $$" >> "$OUT""#;
    let args = ["lock", "/cli/mutex", "--", "sh", "-c", script];
    let mut a = rookery(&server, &args, &[("OUT", &out)]);
    let mut b = rookery(&server, &args, &[("OUT", &out)]);
    assert_eq!(a.code(), 0, "{}", a.stderr());
    assert_eq!(b.code(), 0, "{}", b.stderr());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0][0], "start", "{text}");
    assert_eq!(lines[1], ["end", lines[0][1]], "{text}");
    assert_eq!(lines[2][0], "start", "{text}");
    assert_eq!(lines[3], ["end", lines[2][1]], "{text}");
    assert_ne!(lines[0][1], lines[2][1], "{text}");
    let first: i64 = lines[0][2].parse().unwrap();
    let second: i64 = lines[2][2].parse().unwrap();
    assert!(second > first, "{text}");
    for l in [&lines[0], &lines[2]] {
        assert!(l[3].starts_with("/cli/mutex/"), "{text}");
    }
}

#[test]
fn a_timeout_exits_2_and_closing_the_holders_stdin_releases() {
    let server = start_rookery(&[]);
    let mut holder = rookery(&server, &["lock", "/cli/timeout"], &[]);
    let token = holder.line(|l| l.starts_with("token "));
    let fields: Vec<&str> = token.split(' ').collect();
    assert_eq!(fields.len(), 3, "{token}");
    assert!(fields[1].parse::<i64>().is_ok(), "{token}");
    assert!(fields[2].starts_with("/cli/timeout/"), "{token}");

    let started = Instant::now();
    let mut late = rookery(
        &server,
        &["lock", "/cli/timeout", "--timeout", "300ms", "--", "true"],
        &[],
    );
    assert_eq!(late.code(), 2, "{}", late.stderr());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(late.stderr().contains("timed out"), "{}", late.stderr());

    holder.close_stdin();
    assert_eq!(holder.code(), 0, "{}", holder.stderr());
    let mut next = rookery(
        &server,
        &["lock", "/cli/timeout", "--timeout", "10s", "--", "true"],
        &[],
    );
    assert_eq!(next.code(), 0, "{}", next.stderr());
}

#[test]
fn the_commands_exit_status_is_passed_through() {
    let server = start_rookery(&[]);
    let mut seven = rookery(
        &server,
        &["lock", "/cli/status", "--", "sh", "-c", "exit 7"],
        &[],
    );
    assert_eq!(seven.code(), 7, "{}", seven.stderr());
    // Killed by a signal: 128 + the signal, as shells say.
    let mut killed = rookery(
        &server,
        &["lock", "/cli/status", "--", "sh", "-c", "kill -KILL $$"],
        &[],
    );
    assert_eq!(killed.code(), 128 + 9, "{}", killed.stderr());
    let mut missing = rookery(
        &server,
        &["lock", "/cli/status", "--", "/nonexistent/command"],
        &[],
    );
    assert_eq!(missing.code(), 127, "{}", missing.stderr());
}

#[test]
fn sigterm_releases_a_held_lock() {
    let server = start_rookery(&[]);
    let mut holder = rookery(&server, &["lock", "/cli/term"], &[]);
    holder.line(|l| l.starts_with("token "));
    holder.sigterm();
    assert_eq!(holder.code(), 0, "{}", holder.stderr());
    let started = Instant::now();
    let mut next = rookery(
        &server,
        &["lock", "/cli/term", "--timeout", "5s", "--", "true"],
        &[],
    );
    assert_eq!(next.code(), 0, "{}", next.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigterm_is_forwarded_to_the_command_and_exits_143() {
    let server = start_rookery(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script =
        r#"trap 'echo got-term >> "$OUT"; exit 0' TERM; echo ready; while :; do sleep 0.1; done"#;
    let mut holder = rookery(
        &server,
        &["lock", "/cli/forward", "--", "sh", "-c", script],
        &[("OUT", &out)],
    );
    holder.line(|l| l == "ready");
    holder.sigterm();
    assert_eq!(holder.code(), 143, "{}", holder.stderr());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "got-term\n");
    let mut next = rookery(
        &server,
        &["lock", "/cli/forward", "--timeout", "5s", "--", "true"],
        &[],
    );
    assert_eq!(next.code(), 0, "{}", next.stderr());
}

#[test]
fn a_deleted_node_is_a_lost_lock_exit_3() {
    let server = start_rookery(&[]);
    let mut holder = rookery(&server, &["lock", "/cli/lost"], &[]);
    let token = holder.line(|l| l.starts_with("token "));
    let node = token.split(' ').nth(2).unwrap().to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let zk = rookery_client::Client::builder(&server.addr.to_string())
                .connect()
                .await
                .unwrap();
            zk.delete(&node, None).await.unwrap();
            zk.close().await.unwrap();
        });
    assert_eq!(holder.code(), 3, "{}", holder.stderr());
    assert!(
        holder.stderr().contains("lock lost: "),
        "{}",
        holder.stderr()
    );
}

#[test]
fn a_connection_failure_exits_1() {
    let port = free_port();
    let mut cmd = Command::new(rookery_bin());
    let mut child = cmd
        .args(["lock", "/cli/none", "--session-timeout", "2s"])
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args(["--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not give up connecting");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn the_second_participant_leads_when_the_first_is_stopped() {
    let server = start_rookery(&[]);
    let mut a = rookery(&server, &["elect", "/cli/election", "a"], &[]);
    a.lines(&["state leader", "leader a"]);
    let b = rookery(&server, &["elect", "/cli/election", "b"], &[]);
    b.line(|l| l == "state follower");
    a.sigterm();
    assert_eq!(a.code(), 0, "{}", a.stderr());
    b.lines(&["state leader", "leader b"]);
}

#[test]
fn an_elected_command_runs_only_while_leading() {
    let server = start_rookery(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = r#"trap 'echo "stop $0" >> "$OUT"; exit 0' TERM; echo "run $0 $ROOKERY_LEADER_TOKEN" >> "$OUT"; while :; do sleep 0.1; done"#;
    let mut a = rookery(
        &server,
        &["elect", "/cli/run", "a", "--", "sh", "-c", script, "a"],
        &[("OUT", &out)],
    );
    a.line(|l| l == "state leader");
    let b = rookery(
        &server,
        &["elect", "/cli/run", "b", "--", "sh", "-c", script, "b"],
        &[("OUT", &out)],
    );
    b.line(|l| l == "state follower");
    a.sigterm();
    assert_eq!(a.code(), 0, "{}", a.stderr());
    b.line(|l| l == "state leader");
    // b's command starts once it leads.
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("run b") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("run a "), "{text}");
    assert_eq!(lines[1], "stop a", "{text}");
    assert!(lines[2].starts_with("run b "), "{text}");
}
