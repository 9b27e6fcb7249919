//! A raw protocol session for the expiry workload: it opens a session and creates an ephemeral
//! node, and can then be dropped without a closeSession, which `rookery-client` never does (it
//! closes the session when its last handle goes).

use std::time::Duration;

use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::{
    Acl, ConnectRequest, ConnectResponse, CreateMode, CreateRequest, Jute, OpCode, Reader,
    ReplyHeader, Request, RequestHeader,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;

/// One session on one socket, used one request at a time.
#[derive(Debug)]
pub(crate) struct RawSession {
    stream: TcpStream,
    buf: Vec<u8>,
    next_xid: i32,
    /// The timeout the server granted, in ms.
    pub(crate) timeout_ms: i32,
    /// The session id.
    pub(crate) session_id: i64,
    chroot: String,
    wait: Duration,
}

/// The first host of a connect string (with the default port added) and its chroot.
pub(crate) fn first_host(connect: &str) -> Result<(String, String), BenchError> {
    let (hosts, chroot) = match connect.find('/') {
        Some(i) => (&connect[..i], connect[i..].trim_end_matches('/').to_owned()),
        None => (connect, String::new()),
    };
    let host = hosts
        .split(',')
        .map(str::trim)
        .find(|h| !h.is_empty())
        .ok_or_else(|| BenchError::InvalidOption(format!("no host in {connect:?}")))?;
    // host, host:port, [v6], [v6]:port
    let with_port = if host.starts_with('[') {
        if host.contains("]:") {
            host.to_owned()
        } else {
            format!("{host}:2181")
        }
    } else if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:2181")
    };
    Ok((with_port, chroot))
}

impl RawSession {
    /// Connects to the first host of `connect` and opens a session asking for `timeout`.
    pub(crate) async fn open(
        connect: &str,
        timeout: Duration,
        wait: Duration,
    ) -> Result<RawSession, BenchError> {
        let (host, chroot) = first_host(connect)?;
        let stream = tokio::time::timeout(wait, TcpStream::connect(&host))
            .await
            .map_err(|_| BenchError::Timeout {
                context: format!("connecting to {host}"),
                after: wait,
            })?
            .map_err(|e| BenchError::io(format!("connecting to {host}"), e))?;
        let _ = stream.set_nodelay(true);
        let mut s = RawSession {
            stream,
            buf: Vec::new(),
            next_xid: 1,
            timeout_ms: 0,
            session_id: 0,
            chroot,
            wait,
        };
        let req = ConnectRequest {
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            passwd: vec![0; 16],
            read_only: Some(false),
            ..ConnectRequest::default()
        };
        let mut out = Vec::new();
        write_frame(&mut out, |o| req.encode(o));
        s.send(&out).await?;
        let frame = s.read_frame().await?;
        let resp = rookery_proto::jute::from_slice::<ConnectResponse>(&frame)
            .map_err(|e| BenchError::Protocol(format!("bad ConnectResponse: {e}")))?;
        if resp.timeout_ms <= 0 || resp.session_id == 0 {
            return Err(BenchError::Protocol(
                "the server refused the session".into(),
            ));
        }
        s.timeout_ms = resp.timeout_ms;
        s.session_id = resp.session_id;
        Ok(s)
    }

    /// Creates an ephemeral node (the chroot of the connect string applies).
    pub(crate) async fn create_ephemeral(
        &mut self,
        path: &str,
        data: &[u8],
    ) -> Result<(), BenchError> {
        let xid = self.next_xid;
        self.next_xid += 1;
        let req = Request::Create(CreateRequest {
            path: format!("{}{path}", self.chroot),
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            flags: CreateMode::Ephemeral.code(),
        });
        let mut out = Vec::new();
        write_frame(&mut out, |o| {
            RequestHeader {
                xid,
                op: OpCode::Create.code(),
            }
            .encode(o);
            req.encode(o);
        });
        self.send(&out).await?;
        // A bounded number of frames: this session sets no watches, so the reply is next.
        for _ in 0..16 {
            let frame = self.read_frame().await?;
            let header = ReplyHeader::decode(&mut Reader::new(&frame))
                .map_err(|e| BenchError::Protocol(format!("bad reply header: {e}")))?;
            if header.xid != xid {
                continue;
            }
            if header.err != 0 {
                return Err(BenchError::client(
                    format!("creating the ephemeral {path}"),
                    rookery_client::Error::from_code(header.err),
                ));
            }
            return Ok(());
        }
        Err(BenchError::Protocol(format!(
            "no reply to the create of {path}"
        )))
    }

    /// Ends the session with closeSession and waits for the reply.
    pub(crate) async fn close(mut self) -> Result<(), BenchError> {
        let xid = self.next_xid;
        let mut out = Vec::new();
        write_frame(&mut out, |o| {
            RequestHeader {
                xid,
                op: OpCode::CloseSession.code(),
            }
            .encode(o);
        });
        self.send(&out).await?;
        for _ in 0..16 {
            let frame = self.read_frame().await?;
            let header = ReplyHeader::decode(&mut Reader::new(&frame))
                .map_err(|e| BenchError::Protocol(format!("bad reply header: {e}")))?;
            if header.xid == xid {
                return Ok(());
            }
        }
        Err(BenchError::Protocol("no reply to closeSession".into()))
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        let wait = self.wait;
        tokio::time::timeout(wait, self.stream.write_all(bytes))
            .await
            .map_err(|_| BenchError::Timeout {
                context: "writing to a raw session".into(),
                after: wait,
            })?
            .map_err(|e| BenchError::io("writing to a raw session", e))
    }

    async fn read_frame(&mut self) -> Result<Vec<u8>, BenchError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(len) = parse_frame(&self.buf, 1 << 20)
                .map_err(|e| BenchError::Protocol(format!("bad frame: {e}")))?
            {
                let frame = self.buf[4..4 + len].to_vec();
                self.buf.drain(..4 + len);
                return Ok(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| BenchError::Timeout {
                    context: "reading from a raw session".into(),
                    after: self.wait,
                })?
                .map_err(|e| BenchError::io("reading from a raw session", e))?;
            if n == 0 {
                return Err(BenchError::Protocol(
                    "the server closed a raw session".into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_of_connect_strings() {
        let f = |s: &str| first_host(s).unwrap();
        assert_eq!(
            f("127.0.0.1:2191"),
            ("127.0.0.1:2191".into(), String::new())
        );
        assert_eq!(f("zk1,zk2:2182/app"), ("zk1:2181".into(), "/app".into()));
        assert_eq!(f("[::1]"), ("[::1]:2181".into(), String::new()));
        assert_eq!(f("[::1]:2000/a/b/"), ("[::1]:2000".into(), "/a/b".into()));
        assert!(first_host("/chroot-only").is_err());
    }
}
