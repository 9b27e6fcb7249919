//! Malformed and hostile input: each case gets ZooKeeper's error or a closed connection, never a
//! panic, and other sessions carry on unaffected.

mod common;

use std::time::Duration;

use common::*;
use rookery_proto::frame::write_frame;
use rookery_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |o| o.extend_from_slice(body));
    out
}

fn request_frame(xid: i32, op: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        RequestHeader { xid, op }.encode(o);
        o.extend_from_slice(body);
    });
    out
}

/// Reads until EOF (bounded); returns whether the server closed.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The server is still healthy: a bystander session works and the process is alive.
async fn still_healthy(server: &mut Proc, bystander: &mut Client) {
    assert!(server.is_running(), "server died:\n{}", server.log());
    let r = bystander.call(exists("/", false)).await;
    assert_eq!(r.err(), 0);
    let mut fresh = Client::connect(server.addr).await;
    assert_eq!(fresh.call(create("/healthy-", b"", 2)).await.err(), 0);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
async fn hostile_frames_close_only_their_connection() {
    let mut server = start_rookery(&[("jute.maxbuffer", "4096")]);
    let mut bystander = Client::connect(server.addr).await;
    bystander.call(create("/b", b"", 0)).await;
    assert_eq!(bystander.call(get_data("/b", true)).await.err(), 0);

    // A negative length, a length above jute.maxbuffer, and garbage before the handshake.
    for bytes in [
        vec![0xff, 0xff, 0xff, 0xf0],
        vec![0x00, 0x10, 0x00, 0x00],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        assert!(
            closed_by_server(&mut s).await,
            "{bytes:?} did not close the connection"
        );
    }
    // A handshake frame too short to be a ConnectRequest.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&frame(&[0, 0, 0, 0, 1])).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // After a good handshake: a frame shorter than a request header, then an oversized frame.
    let mut c = Client::connect(server.addr).await;
    c.send_raw(&frame(&[1, 2, 3])).await;
    assert!(c.is_closed().await);
    let mut c = Client::connect(server.addr).await;
    c.send_raw(&request_frame(1, OpCode::Create.code(), &vec![0u8; 8192]))
        .await;
    assert!(c.is_closed().await);

    // Oversized data in a well-formed create never reaches the tree.
    let mut c = Client::connect(server.addr).await;
    assert!(c.try_call(create("/big", &[1u8; 5000], 0)).await.is_none());
    assert_eq!(
        bystander.call(exists("/big", false)).await.err(),
        ErrorCode::NoNode.code()
    );

    // The bystander's watch still works.
    bystander.call(set_data("/b", b"x", -1)).await;
    let evs = bystander.flush_events().await;
    assert_eq!(evs.len(), 1);
    still_healthy(&mut server, &mut bystander).await;
}

#[tokio::test]
async fn bad_requests_get_zookeeper_errors() {
    let mut server = start_rookery(&[]);
    let mut bystander = Client::connect(server.addr).await;

    // A truncated body: MARSHALLINGERROR, and the connection stays up.
    let mut c = Client::connect(server.addr).await;
    c.send_raw(&request_frame(
        7,
        OpCode::Create.code(),
        &[0, 0, 0, 9, b'/'],
    ))
    .await;
    let f = c.read_frame().await.unwrap();
    let h: ReplyHeader = Jute::decode(&mut Reader::new(&f)).unwrap();
    assert_eq!((h.xid, h.err), (7, ErrorCode::MarshallingError.code()));
    assert_eq!(c.call(exists("/", false)).await.err(), 0);

    // A multi that mixes reads and writes.
    let mixed = Request::Multi(vec![
        MultiOp::GetData(PathWatchRequest {
            path: "/".into(),
            watch: false,
        }),
        MultiOp::Delete(DeleteRequest {
            path: "/x".into(),
            version: -1,
        }),
    ]);
    assert_eq!(
        c.call(mixed).await.err(),
        ErrorCode::MarshallingError.code()
    );

    // Invalid paths.
    for p in [
        "",
        "nope",
        "/a/",
        "/a//b",
        "/a/./b",
        "/\u{1F600}",
        "/a\u{0}b",
    ] {
        let r = c.call(create(p, b"", 0)).await;
        assert!(
            r.err() == ErrorCode::BadArguments.code() || r.err() == ErrorCode::NoNode.code(),
            "{p:?}: {r:?}"
        );
        let r = c.call(set_data(p, b"", -1)).await;
        assert!(
            r.err() == ErrorCode::BadArguments.code() || r.err() == ErrorCode::NoNode.code(),
            "{p:?}: {r:?}"
        );
    }

    // An unknown opcode: UNIMPLEMENTED, then the connection closes.
    let mut u = Client::connect(server.addr).await;
    u.send_raw(&request_frame(3, 10, &[])).await;
    let f = u.read_frame().await.unwrap();
    let h: ReplyHeader = Jute::decode(&mut Reader::new(&f)).unwrap();
    assert_eq!(
        (h.xid, h.zxid, h.err),
        (3, -1, ErrorCode::Unimplemented.code())
    );
    assert!(u.is_closed().await);

    // A top-level check (3.9.3+): UNIMPLEMENTED, then close.
    let mut k = Client::connect(server.addr).await;
    let r = k
        .try_call(Request::Check(CheckVersionRequest {
            path: "/".into(),
            version: 0,
        }))
        .await;
    assert_eq!(r.unwrap().err(), ErrorCode::Unimplemented.code());
    assert!(k.is_closed().await);

    // SASL is not offered: AUTHFAILED, then close.
    let mut s = Client::connect(server.addr).await;
    let r = s
        .try_call(Request::Sasl(SaslToken { token: vec![1, 2] }))
        .await;
    assert_eq!(r.unwrap().err(), ErrorCode::AuthFailed.code());
    assert!(s.is_closed().await);

    // Requests pipelined behind the handshake are answered in order.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = Vec::new();
    let req = ConnectRequest {
        timeout_ms: 5000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    write_frame(&mut bytes, |o| req.encode(o));
    bytes.extend(request_frame(
        1,
        OpCode::Exists.code(),
        &jute::to_vec(&PathWatchRequest {
            path: "/".into(),
            watch: false,
        }),
    ));
    stream.write_all(&bytes).await.unwrap();
    let mut got = vec![0u8; 4 + 37 + 4 + 16 + 68];
    tokio::time::timeout(WAIT, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got[45..49],
        &1i32.to_be_bytes(),
        "exists reply follows the ConnectResponse"
    );

    still_healthy(&mut server, &mut bystander).await;
}

#[tokio::test]
async fn connection_limits_hold() {
    let mut server = start_rookery(&[("maxClientCnxns", "3")]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(server.addr).await);
    }
    // The fourth connection from this address is closed at once.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(&mut s).await);
    drop(s);
    // Freeing one lets another in (the count drops once the server sees the close).
    drop(held.pop());
    let deadline = std::time::Instant::now() + WAIT;
    let mut replacement = loop {
        let req = ConnectRequest {
            timeout_ms: 5000,
            passwd: vec![0; 16],
            read_only: Some(false),
            ..Default::default()
        };
        if let Some(c) = Client::connect_with(server.addr, req).await {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(replacement.call(exists("/", false)).await.err(), 0);
    let mut first = held.remove(0);
    still_healthy_without_new(&mut server, &mut first).await;
}

async fn still_healthy_without_new(server: &mut Proc, c: &mut Client) {
    assert!(server.is_running());
    assert_eq!(c.call(exists("/", false)).await.err(), 0);
}

#[tokio::test]
async fn handshake_must_come_in_time() {
    // zookeeper.nio.sessionlessCnxnTimeout is 10 s; a silent socket is closed after it.
    let server = start_rookery(&[]);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let start = std::time::Instant::now();
    assert!(closed_by_server(&mut s).await);
    assert!(start.elapsed() >= Duration::from_secs(5));
}
