//! The server's test support: the processes, ensembles and fault proxy of `rookery-testkit`, and
//! a small raw-protocol client built on `rookery-proto` to talk to them.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use rookery_testkit::*;

/// A `rookery-client` session on `connect` (a member or a list of members), with the short
/// timeouts the ensemble tests use; panics if it cannot connect.
pub async fn ensemble_client(connect: &str) -> rookery_client::Client {
    rookery_client::Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {connect}: {e}"))
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
        Client::handshake(stream, req).await
    }

    /// Opens a session over a connected stream (for example one bound to a chosen local
    /// address); `None` if the server refused or closed.
    pub async fn handshake(stream: TcpStream, req: ConnectRequest) -> Option<Client> {
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
