//! A Java peer running the real Apache Curator 5.4 recipes (the Debian `libcurator-*-java` and
//! `zookeeper` jars), driven line by line over its stdin/stdout, so Rust recipes can be tested
//! for interoperability with Java services: same lock path, same election, and so on.
//!
//! `testkit/interop/CuratorPeer.java` (embedded here) is compiled once per source version into
//! `<target>/tmp/curator-peer-<hash>/`; each [`CuratorPeer`] is one JVM with one Curator client
//! (one session). Its commands and replies are documented in that file and in
//! [`CuratorPeer::call`]. Every wait is bounded, and dropping a peer kills its JVM.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The peer's source, embedded so the compiled classes always match this test binary.
const SOURCE: &str = include_str!("../interop/CuratorPeer.java");

/// The jars the peer needs (all from the Debian packages). The jars' manifests name more
/// (netty, jetty...), but the plain NIO client path uses none of them; Jackson (databind, core,
/// annotations) is for curator-x-discovery's `JsonInstanceSerializer`. `slf4j-nop` keeps
/// ZooKeeper's and Curator's logging (and slf4j's "no binding" warning) quiet.
pub const JARS: &[&str] = &[
    "/usr/share/java/curator-x-discovery.jar",
    "/usr/share/java/curator-recipes.jar",
    "/usr/share/java/curator-framework.jar",
    "/usr/share/java/curator-client.jar",
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/guava.jar",
    "/usr/share/java/jackson-databind.jar",
    "/usr/share/java/jackson-core.jar",
    "/usr/share/java/jackson-annotations.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-nop.jar",
];

/// The longest start-up (JVM start and first connection) may take.
pub const START_WAIT: Duration = Duration::from_secs(60);

/// The longest one command's reply may take (acquire timeouts must stay below this).
pub const CALL_WAIT: Duration = Duration::from_secs(60);

/// How long compiling the peer may take.
const COMPILE_WAIT: Duration = Duration::from_secs(180);

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Whether `javac`, `java` and the Curator/ZooKeeper jars are installed.
pub fn available() -> bool {
    on_path("javac") && on_path("java") && JARS.iter().all(|j| Path::new(j).exists())
}

/// The class path for running the peer from `classes`.
fn class_path(classes: &Path) -> String {
    let mut cp: Vec<String> = JARS.iter().map(|j| j.to_string()).collect();
    cp.push(classes.display().to_string());
    cp.join(":")
}

/// Runs `cmd` to completion within `max`, killing it on timeout; its combined output on failure.
fn run_bounded(mut cmd: std::process::Command, max: Duration) -> Result<(), String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + max;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {max:?}"));
            }
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut out = out;
    use std::io::{Read, Seek};
    let _ = out.rewind();
    let _ = out.read_to_string(&mut text);
    Err(format!("{cmd:?} failed ({status}):\n{text}"))
}

/// `<target>/tmp`, beside the test binary's `<target>/<profile>/deps/`.
fn target_tmp() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("tmp")))
        .unwrap_or_else(std::env::temp_dir)
}

/// Compiles the peer (once per source version): the directory holding `CuratorPeer.class`.
fn compile() -> Result<PathBuf, String> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    SOURCE.hash(&mut h);
    let base = target_tmp();
    let base = base.as_path();
    let dir = base.join(format!("curator-peer-{:016x}", h.finish()));
    if dir.join("CuratorPeer.class").exists() {
        return Ok(dir);
    }
    // Compile beside it and rename into place, so concurrent test binaries never see a
    // half-written directory.
    std::fs::create_dir_all(base).map_err(|e| e.to_string())?;
    let work = tempfile::Builder::new()
        .prefix("curator-peer-build-")
        .tempdir_in(base)
        .map_err(|e| e.to_string())?;
    let src = work.path().join("CuratorPeer.java");
    let classes = work.path().join("classes");
    std::fs::write(&src, SOURCE).map_err(|e| e.to_string())?;
    let mut javac = std::process::Command::new("javac");
    javac
        .arg("-nowarn")
        .arg("-encoding")
        .arg("UTF-8")
        .arg("-cp")
        .arg(JARS.join(":"))
        .arg("-d")
        .arg(&classes)
        .arg(&src);
    run_bounded(javac, COMPILE_WAIT)?;
    std::fs::copy(&src, classes.join("CuratorPeer.java")).map_err(|e| e.to_string())?;
    if std::fs::rename(&classes, &dir).is_err() && !dir.join("CuratorPeer.class").exists() {
        return Err(format!(
            "cannot move the compiled peer to {}",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The compiled peer's class directory (compiling it on first use); panics if javac fails.
async fn classes() -> PathBuf {
    static CLASSES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(r) = CLASSES.get() {
        return r
            .clone()
            .unwrap_or_else(|e| panic!("compiling CuratorPeer.java: {e}"));
    }
    let r = tokio::task::spawn_blocking(|| CLASSES.get_or_init(compile).clone())
        .await
        .expect("the compile task");
    r.unwrap_or_else(|e| panic!("compiling CuratorPeer.java: {e}"))
}

/// One JVM running `CuratorPeer` with one Curator client (one session).
pub struct CuratorPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// `event ` lines read while waiting for something else, oldest first.
    events: VecDeque<String>,
    stderr: tempfile::NamedTempFile,
    connect: String,
}

impl CuratorPeer {
    /// Starts a peer connected to `connect` with this session timeout; panics unless it
    /// reports `ready` within [`START_WAIT`].
    pub async fn start(connect: &str, session_timeout_ms: u64) -> CuratorPeer {
        assert!(
            available(),
            "javac, java or the Curator jars are missing (check curator::available() first)"
        );
        let classes = classes().await;
        let stderr = tempfile::NamedTempFile::new().expect("a file for the peer's stderr");
        let mut child = Command::new("java")
            .arg("-Xmx128m")
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Xshare:auto")
            .arg("-cp")
            .arg(class_path(&classes))
            .arg("CuratorPeer")
            .arg(connect)
            .arg(session_timeout_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen the stderr file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start java: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut peer = CuratorPeer {
            child,
            stdin,
            stdout,
            events: VecDeque::new(),
            stderr,
            connect: connect.to_string(),
        };
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let line = peer.next_line(deadline, "ready").await;
            if line == "ready" {
                return peer;
            }
            if line.starts_with("err") {
                panic!(
                    "the Curator peer could not connect to {}: {line}\n{}",
                    peer.connect,
                    peer.stderr_tail()
                );
            }
            eprintln!("curator peer (before ready): {line}");
        }
    }

    /// The end of the JVM's stderr (at most 8 KB).
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let mut start = text.len().saturating_sub(8 * 1024);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!("--- curator peer stderr ---\n{}", &text[start..])
    }

    /// The next stdout line before `deadline`; panics on timeout or end of output.
    async fn next_line(&mut self, deadline: tokio::time::Instant, what: &str) -> String {
        match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                panic!(
                    "the Curator peer exited ({status:?}) while waiting for {what}\n{}",
                    self.stderr_tail()
                )
            }
            Ok(Err(e)) => panic!("reading from the Curator peer: {e}\n{}", self.stderr_tail()),
            Err(_) => panic!(
                "timed out waiting for {what} from the Curator peer\n{}",
                self.stderr_tail()
            ),
        }
    }

    async fn send(&mut self, line: &str) {
        assert!(!line.contains('\n'), "a peer command is one line: {line:?}");
        let stdin = self.stdin.as_mut().expect("the peer's stdin is open");
        let res = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(10), res)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
        {
            panic!(
                "sending {line:?} to the Curator peer: {e}\n{}",
                self.stderr_tail()
            );
        }
    }

    /// Sends one command and waits (at most [`CALL_WAIT`]) for its reply: `Ok` with the text
    /// after `ok ` (empty for a bare `ok`), or `Err` with the text after `err ` (`<Java
    /// exception class>: <message>`). `event ` lines read meanwhile are kept for
    /// [`CuratorPeer::wait_event`].
    ///
    /// Commands: `mutex-acquire NAME PATH TIMEOUT_MS` (→ `true|false`), `mutex-release NAME`,
    /// `mutex-holds NAME` (→ `true|false`); `latch-start NAME PATH ID`, `latch-has NAME`,
    /// `latch-leader NAME` (→ participant id), `latch-close NAME` (events `latch NAME
    /// leader|notleader`); `sem-acquire NAME PATH MAXLEASES TIMEOUT_MS`, `sem-release NAME`;
    /// `rw-read-acquire|rw-write-acquire NAME PATH TIMEOUT_MS`, `rw-read-release|rw-write-release
    /// NAME`; `barrier-set PATH`, `barrier-remove PATH`, `barrier-wait PATH TIMEOUT_MS` (event
    /// `barrier PATH passed|timeout`); `dbarrier-enter NAME PATH COUNT TIMEOUT_MS`,
    /// `dbarrier-leave NAME TIMEOUT_MS` (events `dbarrier NAME entered|left true|false`);
    /// `session-id` (→ hex).
    ///
    /// Service discovery (curator-x-discovery, payload type `Object`, `JsonInstanceSerializer`):
    /// `disc-start NAME BASEPATH [compat|full]` (`compat`, the default, is the one-argument
    /// serializer, i.e. `compatibleSerializationMode` true: it writes no `enabled` field; `full`
    /// writes the whole `ServiceInstance`); `disc-register NAME SERVICE ID ADDRESS PORT` (a
    /// DYNAMIC instance, uriSpec `{scheme}://{address}:{port}`, payload the map `{"zone":"a"}`);
    /// `disc-unregister NAME SERVICE ID`; `disc-names NAME` (→ sorted comma-separated names);
    /// `disc-ids NAME SERVICE` (→ sorted ids); `disc-get NAME SERVICE ID` (→ the instance as
    /// one line of JSON from the same serializer, or `null`); `disc-raw PATH` (→ the znode's data
    /// as UTF-8, CR/LF escaped as `\r`/`\n`); `cache-start NAME SERVICE` (a started
    /// ServiceCache keyed by SERVICE; events `cache SERVICE changed <sorted ids>` on each
    /// `cacheChanged`); `cache-ids SERVICE` (→ sorted ids).
    ///
    /// NAMEs key the recipe objects inside the peer; mutexes and
    /// read-write locks each live on their own Java thread, as Curator locks are thread-owned.
    /// A command blocks the peer until it replies (an acquire waits up to its timeout).
    pub async fn call(&mut self, line: &str) -> Result<String, String> {
        self.send(line).await;
        let deadline = tokio::time::Instant::now() + CALL_WAIT;
        let what = format!("the reply to {line:?}");
        loop {
            let reply = self.next_line(deadline, &what).await;
            if reply.starts_with("event ") {
                self.events.push_back(reply);
            } else if reply == "ok" {
                return Ok(String::new());
            } else if let Some(rest) = reply.strip_prefix("ok ") {
                return Ok(rest.to_string());
            } else if reply == "err" {
                return Err(String::new());
            } else if let Some(rest) = reply.strip_prefix("err ") {
                return Err(rest.to_string());
            } else {
                eprintln!("curator peer (unexpected line): {reply}");
            }
        }
    }

    /// As [`CuratorPeer::call`], panicking (with the command) on an `err` reply.
    pub async fn ok(&mut self, line: &str) -> String {
        match self.call(line).await {
            Ok(v) => v,
            Err(e) => panic!("Curator peer: {line:?} failed: {e}"),
        }
    }

    /// The first buffered or new line starting with `event {prefix}` (the whole line), waiting
    /// at most `max`; other events stay buffered. Panics on timeout.
    pub async fn wait_event(&mut self, prefix: &str, max: Duration) -> String {
        let want = format!("event {prefix}");
        if let Some(i) = self.events.iter().position(|e| e.starts_with(&want)) {
            return self.events.remove(i).expect("the index is in range");
        }
        let deadline = tokio::time::Instant::now() + max;
        let what = format!("{want:?} (buffered: {:?})", self.events);
        loop {
            let line = self.next_line(deadline, &what).await;
            if line.starts_with(&want) {
                return line;
            }
            if line.starts_with("event ") {
                self.events.push_back(line);
            } else {
                eprintln!("curator peer (unexpected line): {line}");
            }
        }
    }

    /// The events buffered so far (not yet taken by [`CuratorPeer::wait_event`]).
    pub fn pending_events(&self) -> Vec<String> {
        self.events.iter().cloned().collect()
    }

    /// The peer's ZooKeeper session id.
    pub async fn session_id(&mut self) -> i64 {
        let hex = self.ok("session-id").await;
        u64::from_str_radix(&hex, 16).unwrap_or_else(|e| panic!("session id {hex:?}: {e}")) as i64
    }

    /// Sends `quit` (the peer closes its recipes and its session) and waits, bounded, for the
    /// JVM to exit; kills it if it does not.
    pub async fn quit(mut self) {
        self.send("quit").await;
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) => assert!(
                status.success(),
                "the Curator peer exited with {status}\n{}",
                self.stderr_tail()
            ),
            Ok(Err(e)) => panic!("waiting for the Curator peer: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "the Curator peer did not exit after quit\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    /// Kills the JVM at once (its session then expires on the server's schedule).
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Drop for CuratorPeer {
    fn drop(&mut self) {
        // kill_on_drop also does this; be explicit so the JVM never outlives the peer.
        let _ = self.child.start_kill();
    }
}

/// Whether `name` is a Curator protected name, `_c_<36-char uuid>-<rest>`; returns `<rest>`.
pub fn protected_suffix(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("_c_")?;
    let (uuid, rest) = (rest.get(..36)?, rest.get(36..)?);
    if !is_uuid(uuid) {
        return None;
    }
    rest.strip_prefix('-')
}

/// Whether `s` is a lower-case hyphenated UUID (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `name` is `_c_<uuid>-<lock_name><10-digit sequence>` (Curator's protected
/// sequential node, e.g. `lock-` for InterProcessMutex, `lease-` for InterProcessSemaphoreV2).
pub fn is_protected_sequential(name: &str, lock_name: &str) -> bool {
    protected_suffix(name)
        .and_then(|rest| rest.strip_prefix(lock_name))
        .is_some_and(|seq| seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()))
}
