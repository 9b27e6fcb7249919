//! Test support: start real `rookery` and Apache ZooKeeper processes on free loopback ports, and
//! talk to them with a small raw-protocol client built on `rookery-proto`.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod ensemble;
/// The fault proxy the client's tests use (one copy; a shared test-support crate is a follow-up).
#[path = "../../../client/tests/common/proxy.rs"]
pub mod proxy;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A free port on 127.0.0.1 (bound and released; the caller retries if it is taken meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server child process with its own data directory; killed on drop.
pub struct Proc {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub kind: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// Sends a four-letter word and returns the whole answer.
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

/// Whether a session can be opened (ZooKeeper answers `ruok` before it serves sessions).
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
    // closeSession right behind the handshake, so the probe leaves no session behind.
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
                "{} exited during start-up ({status}):\n{}",
                proc.kind,
                proc.log()
            );
        }
        // Any answer (imok, or the not-whitelisted text) means the port is served.
        if !four_letter(proc.addr, "ruok").is_empty() && session_opens(proc.addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not become ready:\n{}", proc.kind, proc.log());
}

/// The rookery binary: `$ROOKERY_BIN`, else `<target>/debug/rookery` (the binary is in the
/// `rookery` crate: `cargo build --workspace` makes it).
pub fn rookery_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ROOKERY_BIN") {
        return PathBuf::from(p);
    }
    // CARGO_TARGET_TMPDIR is <target>/tmp, whatever CARGO_TARGET_DIR says.
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug")
        .join("rookery");
    assert!(
        bin.exists(),
        "the rookery binary is missing at {}: run `cargo build --workspace` first (or set ROOKERY_BIN)",
        bin.display()
    );
    bin
}

/// Starts `rookery server` with tickTime 2000, every 4lw allowed, TTLs on and a 1 s container
/// check, plus `extra` zoo.cfg lines.
pub fn start_rookery(extra: &[(&str, &str)]) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\nzookeeper.extendedTypesEnabled=true\n\
         znode.container.checkIntervalMs=1000\npreAllocSize=1024\n",
        dir.path().join("data").display()
    );
    for (k, v) in extra {
        cfg.push_str(&format!("{k}={v}\n"));
    }
    let cfg_path = dir.path().join("zoo.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = spawn_rookery(dir.path());
    let mut proc = Proc {
        child,
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: "rookery",
    };
    wait_ready(&mut proc);
    proc
}

fn spawn_rookery(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    Command::new(rookery_bin())
        .args(["server", "--config"])
        .arg(dir.join("zoo.cfg"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Proc {
    /// `kill -9`, then start again on the same port with the same data directory.
    pub fn crash_and_restart(&mut self) {
        assert_eq!(self.kind, "rookery");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_rookery(self.dir.path());
        wait_ready(self);
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Whether the Debian `zookeeper` package is installed.
pub fn zookeeper_installed() -> bool {
    Path::new("/usr/share/java/zookeeper.jar").exists()
}

/// Starts Apache ZooKeeper 3.8 (Debian package) standalone with the same settings as
/// [`start_rookery`]; `sysprops` are extra `-D` properties.
pub fn start_zookeeper(sysprops: &[(&str, &str)]) -> Proc {
    assert!(
        zookeeper_installed(),
        "Apache ZooKeeper is not installed: run `apt-get install zookeeper` (the .ci/run script does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\nadmin.enableServer=false\n",
        dir.path().join("data").display()
    );
    let cfg_path = dir.path().join("zoo.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut cmd = Command::new("java");
    cmd.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-Dzookeeper.extendedTypesEnabled=true")
        .arg("-Dznode.container.checkIntervalMs=1000")
        .arg(format!(
            "-Dorg.slf4j.simpleLogger.logFile={}",
            dir.path().join("server.log").display()
        ));
    for (k, v) in sysprops {
        cmd.arg(format!("-D{k}={v}"));
    }
    let child = cmd
        .args([
            "-cp",
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
        ])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("java must be installed");
    let mut proc = Proc {
        child,
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: "zookeeper",
    };
    wait_ready(&mut proc);
    proc
}

/// A reply: its header and, when err is 0, its body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Option<Response>,
}

impl Reply {
    pub fn err(&self) -> i32 {
        self.header.err
    }
}

/// A raw protocol client: one request at a time, notifications queued in arrival order.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    next_xid: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    pub events: VecDeque<WatcherEvent>,
    pub last_zxid: i64,
}

impl Client {
    /// Connects and opens a new session.
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_with(
            addr,
            ConnectRequest {
                timeout_ms: 10_000,
                passwd: vec![0; 16],
                read_only: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("session refused")
    }

    /// Connects with an explicit ConnectRequest; `None` if the server refused or closed.
    pub async fn connect_with(addr: SocketAddr, req: ConnectRequest) -> Option<Client> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let _ = stream.set_nodelay(true);
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
            next_xid: 1,
            session_id: 0,
            passwd: vec![],
            timeout_ms: 0,
            events: VecDeque::new(),
            last_zxid: 0,
        };
        let mut out = Vec::new();
        write_frame(&mut out, |o| req.encode(o));
        c.stream.write_all(&out).await.ok()?;
        let frame = c.read_frame().await?;
        let resp = jute::from_slice::<ConnectResponse>(&frame).ok()?;
        if resp.timeout_ms <= 0 {
            return None;
        }
        c.session_id = resp.session_id;
        c.passwd = resp.passwd;
        c.timeout_ms = resp.timeout_ms;
        Some(c)
    }

    /// Reads one frame; `None` when the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Ok(Some(len)) = parse_frame(&self.buf, 64 << 20) {
                self.buf.advance(4);
                return Some(self.buf.split_to(len).to_vec());
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("timed out waiting for the server")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Whether the server has closed the connection (waits up to `WAIT`).
    pub async fn is_closed(&mut self) -> bool {
        loop {
            match self.read_frame().await {
                None => return true,
                Some(f) => self.note_frame(&f),
            }
        }
    }

    fn note_frame(&mut self, f: &[u8]) {
        let mut r = Reader::new(f);
        if let Ok(h) = ReplyHeader::decode(&mut r) {
            if h.xid == xid::NOTIFICATION {
                self.events.push_back(WatcherEvent::decode(&mut r).unwrap());
            }
        }
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends a request with the next xid and waits for its reply; `None` if the connection
    /// closed first.
    pub async fn try_call(&mut self, req: Request) -> Option<Reply> {
        let xid = match req.op_code() {
            OpCode::Ping => xid::PING,
            OpCode::Auth => xid::AUTH,
            OpCode::SetWatches | OpCode::SetWatches2 => xid::SET_WATCHES,
            _ => {
                let x = self.next_xid;
                self.next_xid += 1;
                x
            }
        };
        let op = req.op_code();
        let mut out = Vec::new();
        write_frame(&mut out, |o| {
            RequestHeader { xid, op: op.code() }.encode(o);
            req.encode(o);
        });
        self.stream.write_all(&out).await.ok()?;
        loop {
            let frame = self.read_frame().await?;
            let mut r = Reader::new(&frame);
            let header = ReplyHeader::decode(&mut r).unwrap();
            if header.xid == xid::NOTIFICATION {
                self.events.push_back(WatcherEvent::decode(&mut r).unwrap());
                continue;
            }
            assert_eq!(header.xid, xid, "replies must come back in request order");
            if header.zxid > 0 {
                self.last_zxid = self.last_zxid.max(header.zxid);
            }
            let body = (header.err == 0).then(|| Response::decode(op, &mut r).unwrap());
            return Some(Reply { header, body });
        }
    }

    pub async fn call(&mut self, req: Request) -> Reply {
        self.try_call(req)
            .await
            .expect("connection closed unexpectedly")
    }

    /// Round-trips a sync so that every notification queued before it has arrived.
    pub async fn flush_events(&mut self) -> Vec<WatcherEvent> {
        self.call(Request::Sync(PathRequest { path: "/".into() }))
            .await;
        self.events.drain(..).collect()
    }

    /// Waits (bounded) until at least `n` events have arrived, then returns them all.
    pub async fn wait_events(&mut self, n: usize, max: Duration) -> Vec<WatcherEvent> {
        let deadline = Instant::now() + max;
        while self.events.len() < n && Instant::now() < deadline {
            let _ = self.flush_more().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.events.drain(..).collect()
    }

    async fn flush_more(&mut self) {
        let evs = self.flush_events().await;
        self.events.extend(evs);
    }
}

// === request builders ===

pub fn create(path: &str, data: &[u8], flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        flags,
    })
}

pub fn create2(path: &str, data: &[u8], flags: i32) -> Request {
    Request::Create2(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        flags,
    })
}

pub fn create_acl(path: &str, acl: Vec<Acl>) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(vec![]),
        acl,
        flags: 0,
    })
}

pub fn delete(path: &str, version: i32) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version,
    })
}

pub fn get_data(path: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn exists(path: &str, watch: bool) -> Request {
    Request::Exists(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn get_children(path: &str, watch: bool) -> Request {
    Request::GetChildren(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn get_children2(path: &str, watch: bool) -> Request {
    Request::GetChildren2(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn set_data(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    })
}

pub fn digest_auth(user_password: &str) -> Request {
    Request::Auth(AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: user_password.as_bytes().to_vec(),
    })
}

/// `user:BASE64(SHA1(user:password))`.
pub fn digest_id(user_password: &str) -> String {
    rookery_server::acl::digest(user_password)
}
