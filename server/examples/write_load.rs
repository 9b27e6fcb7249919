//! Durable write throughput against any ZooKeeper-protocol server, by number of concurrent
//! clients: each client does one synchronous create after another, so throughput above one
//! fsync per write means writes share fsyncs (group commit).
//!
//! Run with: `cargo run --release -p rookery-server --example write_load -- 127.0.0.1:2181 5 1,4,16,64`
//! (address, seconds per step, client counts).

use std::time::{Duration, Instant};

use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    loop {
        if let Ok(Some(len)) = parse_frame(buf, 64 << 20) {
            let frame = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            return Ok(frame);
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn client(addr: String, prefix: String, until: Instant) -> std::io::Result<u64> {
    let mut s = TcpStream::connect(&addr).await?;
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let req = ConnectRequest {
        timeout_ms: 30_000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    write_frame(&mut out, |o| req.encode(o));
    s.write_all(&out).await?;
    read_frame(&mut s, &mut buf).await?;
    let mut done = 0u64;
    let mut xid = 1;
    while Instant::now() < until {
        out.clear();
        let create = Request::Create(CreateRequest {
            path: format!("{prefix}-"),
            data: Some(vec![b'x'; 100]),
            acl: Acl::open_unsafe(),
            flags: CreateMode::PersistentSequential.code(),
        });
        write_frame(&mut out, |o| {
            RequestHeader {
                xid,
                op: OpCode::Create.code(),
            }
            .encode(o);
            create.encode(o);
        });
        xid += 1;
        s.write_all(&out).await?;
        let reply = read_frame(&mut s, &mut buf).await?;
        let h: ReplyHeader =
            Jute::decode(&mut Reader::new(&reply)).map_err(std::io::Error::other)?;
        assert_eq!(h.err, 0, "create failed");
        done += 1;
    }
    Ok(done)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let counts: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    let run = std::process::id();
    println!("clients\twrites/s");
    for n in counts {
        let until = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..n)
            .map(|i| tokio::spawn(client(addr.clone(), format!("/load-{run}-{n}-{i}"), until)))
            .collect();
        let start = Instant::now();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client task").expect("client I/O");
        }
        println!("{n}\t{:.0}", total as f64 / start.elapsed().as_secs_f64());
    }
}
