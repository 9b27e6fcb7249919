//! Test support shared by the workspace's integration tests (not published): real `rookery`
//! and Apache ZooKeeper 3.8 processes on free loopback ports, real ensembles
//! ([`ensemble`]), a fault-injection TCP proxy ([`proxy`]), and skewed clocks for a process
//! through libfaketime ([`faketime`]).
//!
//! The rookery binary is `$ROOKERY_BIN`, else `<target>/debug/rookery`
//! (`cargo build --workspace` makes it). Every server runs under a small `sh` guard that kills
//! it when the test process's pipe to the guard closes, so servers shared by a whole test
//! binary die with it, even on a panic.

pub mod curator;
pub mod ensemble;
pub mod faketime;
pub mod pki;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rookery_proto::frame::write_frame;
use rookery_proto::{jute, ConnectRequest, ConnectResponse, Jute, OpCode, RequestHeader};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Which server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rookery,
    ZooKeeper,
    /// Any other program ([`start_program`]): a sidecar, a demo service.
    Program,
}

/// The servers chosen by `ROOKERY_TEST_SERVER`.
pub fn selected() -> Vec<Kind> {
    match std::env::var("ROOKERY_TEST_SERVER").as_deref() {
        Ok("rookery") => vec![Kind::Rookery],
        Ok("zookeeper") => vec![Kind::ZooKeeper],
        Ok("both") | Err(_) => vec![Kind::Rookery, Kind::ZooKeeper],
        Ok(other) => {
            panic!("ROOKERY_TEST_SERVER must be rookery, zookeeper or both, not {other:?}")
        }
    }
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the server in place of this shell (so the child's pid is the server's: signals and
/// `try_wait` reach it) and kills it when the pipe to the guard closes: a server dies with the
/// test process that started it, even on a panic or an abort. (`$$` in the subshell is the
/// outer shell's pid, which the server takes over by `exec`.)
const GUARD: &str = r#"exec 3<&0
(read _ <&3; kill -9 $$ 2>/dev/null) &
exec "$@" </dev/null 3<&-"#;

/// A server process with its own directory; killed on drop.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    pub kind: Kind,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Proc {
    /// The end of the server's log (at most 8 KB).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let mut start = log.len().saturating_sub(8 * 1024);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    /// Kills the server and waits until it is gone.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's exit status, waiting at most `max` for it.
    pub fn wait_exit(&mut self, max: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + max;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, then start the same Rookery server again (same configuration, port and data
    /// directory).
    pub fn crash_and_restart(&mut self) {
        assert_eq!(
            self.kind,
            Kind::Rookery,
            "only a Rookery server is restarted this way"
        );
        let _ = self.child.kill();
        self.stop();
        let (child, stdin) = spawn_rookery(&self.dir);
        self.child = child;
        self.stdin = stdin;
        wait_ready(self);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_guarded(program: &str, args: &[String], dir: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(GUARD).arg("sh").arg(program).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// Sends a four-letter word and returns the answer.
pub fn four_letter(addr: SocketAddr, cmd: &str) -> String {
    let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(cmd.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `GET path` over HTTP/1.0: the status code and the body (status 0 if the server cannot be
/// reached or answers nothing HTTP-like).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

/// One HTTP/1.0 request without a body: the status code and the body.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let Some((head, body)) = out.split_once("\r\n\r\n") else {
        return (0, out);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// Whether a session can be opened (and is closed again at once).
fn session_opens(addr: SocketAddr) -> bool {
    let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = ConnectRequest {
        timeout_ms: 4000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let mut out = Vec::new();
    write_frame(&mut out, |o| req.encode(o));
    write_frame(&mut out, |o| {
        RequestHeader {
            xid: 1,
            op: OpCode::CloseSession.code(),
        }
        .encode(o)
    });
    if s.write_all(&out).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; i32::from_be_bytes(len).clamp(0, 64) as usize];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    jute::from_slice::<ConnectResponse>(&body).is_ok_and(|r| r.timeout_ms > 0)
}

fn wait_ready(proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!(
                "{:?} exited during start-up ({status}):\n{}",
                proc.kind,
                proc.log()
            );
        }
        if !four_letter(proc.addr, "ruok").is_empty() && session_opens(proc.addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{:?} did not become ready:\n{}", proc.kind, proc.log());
}

/// The rookery binary: `$ROOKERY_BIN`, else `rookery` beside the test's own `deps/` folder
/// (`<target>/debug/rookery`, whatever `CARGO_TARGET_DIR` says).
pub fn rookery_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ROOKERY_BIN") {
        return PathBuf::from(p);
    }
    workspace_bin("rookery")
}

/// `<target>/<profile>`, where the test binary (`<target>/<profile>/deps/<test>-<hash>`) was
/// built.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// `path`, which `build` must have made.
fn built(path: PathBuf, build: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `{build}` first",
        path.display()
    );
    path
}

/// A binary of the workspace, built beside the test binary (`cargo build --workspace`).
pub fn workspace_bin(name: &str) -> PathBuf {
    built(profile_dir().join(name), "cargo build --workspace")
}

/// An example program of the workspace, built in `<target>/<profile>/examples/`.
pub fn workspace_example(name: &str) -> PathBuf {
    built(
        profile_dir().join("examples").join(name),
        "cargo build --workspace --bins --examples",
    )
}

/// Starts `program args` under the kill-on-exit guard, with its stderr in `<dir>/server.log`,
/// and waits until it accepts connections on `addr`.
pub fn start_program(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    addr: SocketAddr,
) -> Proc {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut child = spawn_guarded(&program.display().to_string(), args, &dir, env);
    let stdin = child.stdin.take();
    let mut proc = Proc {
        child,
        stdin,
        addr,
        kind: Kind::Program,
        dir,
        _tmp: Some(tmp),
    };
    let deadline = Instant::now() + WAIT;
    while StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if !proc.is_running() || Instant::now() >= deadline {
            panic!(
                "{} did not listen on {addr}:\n{}",
                program.display(),
                proc.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

impl Proc {
    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.pid().to_string()])
            .status();
    }
}

/// Starts `rookery server` (tickTime 2000, every 4lw, TTLs on, 1 s container checks, no
/// per-IP connection limit) plus `extra` zoo.cfg lines.
pub fn start_rookery(extra: &[(&str, &str)]) -> Proc {
    start_rookery_at(None, None, extra)
}

/// As [`start_rookery`], in `dir` (reused: a restart) and on `port` when given.
pub fn start_rookery_at(dir: Option<&Path>, port: Option<u16>, extra: &[(&str, &str)]) -> Proc {
    let bin = rookery_bin();
    assert!(
        bin.exists(),
        "the rookery binary is missing at {}: run `cargo build --workspace` first (or set ROOKERY_BIN)",
        bin.display()
    );
    let (tmp, dir) = match dir {
        Some(d) => (None, d.to_path_buf()),
        None => {
            let t = tempfile::tempdir().unwrap();
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let port = port.unwrap_or_else(free_port);
    let mut cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\nzookeeper.extendedTypesEnabled=true\n\
         znode.container.checkIntervalMs=1000\nmaxClientCnxns=0\npreAllocSize=1024\n\
         admin.enableServer=false\n",
        dir.join("data").display()
    );
    for (k, v) in extra {
        cfg.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
    let (child, stdin) = spawn_rookery(&dir);
    let mut proc = Proc {
        child,
        stdin,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: Kind::Rookery,
        dir,
        _tmp: tmp,
    };
    wait_ready(&mut proc);
    proc
}

/// `rookery server --config <dir>/zoo.cfg` under the guard.
fn spawn_rookery(dir: &Path) -> (Child, Option<ChildStdin>) {
    let args = vec![
        "server".to_string(),
        "--config".to_string(),
        dir.join("zoo.cfg").display().to_string(),
    ];
    let mut child = spawn_guarded(
        &rookery_bin().display().to_string(),
        &args,
        dir,
        &[("RUST_LOG", "info")],
    );
    let stdin = child.stdin.take();
    (child, stdin)
}

/// Whether the Debian `zookeeper` package is installed.
pub fn zookeeper_installed() -> bool {
    Path::new("/usr/share/java/zookeeper.jar").exists()
}

/// How to start ZooKeeper.
#[derive(Default)]
pub struct ZkOptions<'a> {
    /// Reuse this directory (data and config) instead of a fresh one: a restart.
    pub dir: Option<&'a Path>,
    /// Use this client port instead of a free one.
    pub port: Option<u16>,
    /// Extra zoo.cfg lines.
    pub cfg: Vec<(String, String)>,
    /// Extra JVM system properties.
    pub sysprops: Vec<(String, String)>,
}

/// Starts Apache ZooKeeper 3.8 (the Debian package) standalone, with the same settings as
/// [`start_rookery`].
pub fn start_zookeeper(opts: ZkOptions<'_>) -> Proc {
    assert!(
        zookeeper_installed(),
        "Apache ZooKeeper is not installed: run `apt-get install zookeeper` (the .ci/run script \
         does), or set ROOKERY_TEST_SERVER=rookery"
    );
    let (tmp, dir) = match opts.dir {
        Some(d) => (None, d.to_path_buf()),
        None => {
            let t = tempfile::tempdir().unwrap();
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let port = opts.port.unwrap_or_else(free_port);
    let mut cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\nadmin.enableServer=false\nmaxClientCnxns=0\n",
        dir.join("data").display()
    );
    for (k, v) in &opts.cfg {
        cfg.push_str(&format!("{k}={v}\n"));
    }
    let cfg_path = dir.join("zoo.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut args: Vec<String> = vec![
        "-Xmx256m".into(),
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-Dzookeeper.extendedTypesEnabled=true".into(),
        "-Dznode.container.checkIntervalMs=1000".into(),
        format!(
            "-Dorg.slf4j.simpleLogger.logFile={}",
            dir.join("server.log").display()
        ),
    ];
    for (k, v) in &opts.sysprops {
        args.push(format!("-D{k}={v}"));
    }
    args.extend([
        "-cp".into(),
        // netty-codec and netty-resolver are missing from the Debian jar's Class-Path; the
        // Netty connection factory (needed for TLS) loads classes from them.
        [
            "/usr/share/java/zookeeper.jar",
            "/usr/share/java/slf4j-simple.jar",
            "/usr/share/java/netty-codec.jar",
            "/usr/share/java/netty-resolver.jar",
            "/usr/share/java/netty-transport-native-unix-common.jar",
            // The AdminServer's Jetty needs the servlet API, also missing from the Class-Path.
            "/usr/share/java/servlet-api.jar",
        ]
        .join(":"),
        "org.apache.zookeeper.server.ZooKeeperServerMain".into(),
        cfg_path.display().to_string(),
    ]);
    let child = spawn_guarded("java", &args, &dir, &[]);
    let mut proc = Proc {
        child,
        stdin: None,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: Kind::ZooKeeper,
        dir,
        _tmp: tmp,
    };
    proc.stdin = proc.child.stdin.take();
    wait_ready(&mut proc);
    proc
}

/// Starts a server of `kind` whose data lives in `dir`, on `port`: starting it again with the
/// same arguments is a restart.
pub fn start_in(kind: Kind, dir: &Path, port: u16) -> Proc {
    match kind {
        Kind::Program => panic!("start_in starts servers only"),
        Kind::Rookery => start_rookery_at(Some(dir), Some(port), &[]),
        Kind::ZooKeeper => start_zookeeper(ZkOptions {
            dir: Some(dir),
            port: Some(port),
            ..Default::default()
        }),
    }
}

/// Polls `cond` every 50 ms until it holds, at most `max`.
pub async fn eventually<F, Fut>(max: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + max;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {max:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
