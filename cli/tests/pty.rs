//! `rookery cli` at a real terminal, driven as a person would: tmux runs it in a
//! pseudo-terminal, `send-keys` types, `capture-pane` reads the screen.
//!
//! Needs tmux. Without it the test says so and passes, unless `CI` is set: CI must run it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cli_ok;
use rookery_testkit::{rookery_bin, start_rookery};

/// The longest the screen may take to show what a step expects.
const SCREEN_WAIT: Duration = Duration::from_secs(20);

/// A tmux server of this test's own (its socket name is unique), killed when dropped, so that
/// no session outlives the test, even when it fails.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let socket = format!("rookery-cli-test-{}", std::process::id());
        let tmux = Tmux { socket };
        let out = tmux.run(&["new-session", "-d", "-x", "200", "-y", "50", command]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types `text` literally (no key names), without Enter.
    fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-l", text]);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    /// Presses one key: `Enter`, `Tab`, `Up`, `C-d`.
    fn press(&self, key: &str) {
        let out = self.run(&["send-keys", key]);
        assert!(out.status.success(), "send-keys {key}: {out:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`, at most [`SCREEN_WAIT`]; returns it.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The line the cursor is on (the prompt and what is typed after it).
    fn prompt_line(&self) -> String {
        let screen = self.screen();
        screen
            .lines()
            .rev()
            .find(|l| l.starts_with("[zk: "))
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_for_prompt_line(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let line = self.prompt_line();
            if ok(&line) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&self) -> bool {
        self.run(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn a_person_at_a_terminal_edits_completes_recalls_and_sees_watches() {
    if !tmux_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing: CI must run the terminal test (apt-get install tmux)"
        );
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let server = start_rookery(&[]);
    let s = server.addr;
    cli_ok(
        s,
        &[
            "-c",
            "create /pty-completion-target completed-data; create /watched initial",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let command = format!(
        "env -u RUST_LOG TERM=xterm ROOKERY_CLI_HISTORY={} {} cli --server {s}",
        quoted(&history),
        quoted(&rookery_bin()),
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("the first prompt", |s| s.contains("(CONNECTED) 0]"));

    // A command and Enter: its output.
    tmux.type_text("ls /");
    tmux.press("Enter");
    tmux.wait_for("ls output", |s| {
        s.contains("[pty-completion-target, watched, zookeeper]")
    });

    // Tab completes a path from the live tree.
    tmux.type_text("get /pty-comp");
    tmux.press("Tab");
    tmux.wait_for_prompt_line("the completed path", |l| {
        l.ends_with("get /pty-completion-target")
    });
    tmux.press("Enter");
    tmux.wait_for("get output", |s| s.contains("\ncompleted-data\n"));

    // Up recalls the last command; Enter runs it again.
    tmux.press("Up");
    tmux.wait_for_prompt_line("the recalled command", |l| {
        l.contains("(CONNECTED) 2] get /pty-completion-target")
    });
    tmux.press("Enter");
    tmux.wait_for("the second get output", |s| {
        s.matches("\ncompleted-data\n").count() == 2
    });

    // A watch fires when another client changes the node, while this one waits at the prompt
    // with a line half typed.
    tmux.type_text("get -w /watched");
    tmux.press("Enter");
    tmux.wait_for("get -w output", |s| s.contains("\ninitial\n"));
    tmux.type_text("ls /wat");
    cli_ok(s, &["-c", "set /watched changed"]);
    let screen = tmux.wait_for("the watch event", |s| {
        s.contains("WatchedEvent state:SyncConnected type:NodeDataChanged path:/watched")
    });
    assert!(screen.contains("\nWATCHER::\n"), "{screen}");
    // The half-typed line is drawn again below the event.
    tmux.wait_for_prompt_line("the line being edited", |l| l.ends_with("ls /wat"));

    // Errors are one line; quit leaves, and the history file keeps what was typed.
    tmux.press("C-u");
    tmux.type_text("get /missing");
    tmux.press("Enter");
    tmux.wait_for("the error", |s| {
        s.contains("NoNode: /missing does not exist")
    });
    tmux.type_text("quit");
    tmux.press("Enter");
    let deadline = Instant::now() + SCREEN_WAIT;
    while tmux.is_running() {
        assert!(Instant::now() < deadline, "quit did not end the shell");
        std::thread::sleep(Duration::from_millis(50));
    }
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("get /pty-completion-target"), "{saved}");
    assert!(saved.contains("get -w /watched"), "{saved}");
}
