//! Read-only mode end to end. Neither Rookery nor a standalone ZooKeeper serves read-only
//! sessions (ZooKeeper only falls back to read-only when an ensemble member loses its quorum),
//! so a scripted server answers here: it checks that the client asks with `readOnly=true`,
//! grants a read-only session, serves a read and refuses a write with NOTREADONLY.

use std::time::Duration;

use rookery_client::{Client, CreateOptions, Error, SessionState};
use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::{
    ConnectRequest, ConnectResponse, GetDataResponse, Jute, OpCode, Reader, ReplyHeader,
    RequestHeader, Stat,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Ok(Some(len)) = parse_frame(buf, 1 << 20) {
            let frame = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            return Some(frame);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one connection: a read-only session, getData answered, writes refused.
async fn read_only_server(listener: TcpListener) -> ConnectRequest {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let first = read_frame(&mut s, &mut buf).await.unwrap();
    let req = ConnectRequest::decode(&mut Reader::new(&first)).unwrap();
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 0x55,
            passwd: vec![1; 16],
            read_only: Some(true),
        }
        .encode(o)
    });
    s.write_all(&out).await.unwrap();
    // Bounded: the client sends a handful of requests, then closes.
    for _ in 0..16 {
        let Some(frame) = read_frame(&mut s, &mut buf).await else {
            break;
        };
        let h = RequestHeader::decode(&mut Reader::new(&frame)).unwrap();
        let mut out = Vec::new();
        write_frame(&mut out, |o| match OpCode::from_code(h.op) {
            Some(OpCode::GetData) => {
                ReplyHeader {
                    xid: h.xid,
                    zxid: 7,
                    err: 0,
                }
                .encode(o);
                GetDataResponse {
                    data: Some(b"ro".to_vec()),
                    stat: Stat::default(),
                }
                .encode(o);
            }
            Some(OpCode::Ping | OpCode::CloseSession) => ReplyHeader {
                xid: h.xid,
                zxid: 7,
                err: 0,
            }
            .encode(o),
            _ => ReplyHeader {
                xid: h.xid,
                zxid: 7,
                err: -119,
            }
            .encode(o),
        });
        s.write_all(&out).await.unwrap();
    }
    req
}

#[tokio::test]
async fn read_only_session_is_reported_and_writes_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(read_only_server(listener));

    let client = Client::builder(&addr.to_string())
        .read_only(true)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.state(), SessionState::ConnectedReadOnly);
    assert_eq!(client.session_id(), 0x55);
    assert_eq!(client.get_data("/x").await.unwrap().0, b"ro");
    assert_eq!(
        client
            .create("/x", b"", &CreateOptions::persistent())
            .await
            .unwrap_err(),
        Error::NotReadOnly
    );
    client.close().await.unwrap();
    let req = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.read_only, Some(true), "the client asked for read-only");
    assert_eq!(req.session_id, 0);
}
