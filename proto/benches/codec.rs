//! Codec micro-benchmarks: encoding and decoding the requests and replies that dominate real
//! traffic (getData, setData, create, their replies, a 100-create multi, and framing).
//!
//! Run with `cargo bench -p rookery-proto --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rookery_proto::frame::{parse_frame, write_frame, write_reply};
use rookery_proto::*;

fn stat() -> Stat {
    Stat {
        czxid: 0x1_0000_0042,
        mzxid: 0x1_0000_0099,
        ctime: 1_764_000_000_000,
        mtime: 1_764_000_000_500,
        version: 7,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 100,
        num_children: 0,
        pzxid: 0x1_0000_0042,
    }
}

/// A request frame (header and body), as a client sends it.
fn request_frame(xid: i32, req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        RequestHeader {
            xid,
            op: req.op_code().code(),
        }
        .encode(o);
        req.encode(o);
    });
    out
}

/// Decodes a request frame the way the server does: header, then the body by opcode.
fn decode_request(frame: &[u8]) -> Request {
    let mut r = Reader::new(&frame[4..]);
    let h = RequestHeader::decode(&mut r).expect("header");
    Request::decode(h.op, &mut r).expect("body")
}

fn requests(c: &mut Criterion) {
    let value = vec![b'x'; 100];
    let cases = [
        (
            "getData",
            Request::GetData(PathWatchRequest {
                path: "/app/config/service-0042".into(),
                watch: false,
            }),
        ),
        (
            "setData",
            Request::SetData(SetDataRequest {
                path: "/app/config/service-0042".into(),
                data: Some(value.clone()),
                version: -1,
            }),
        ),
        (
            "create",
            Request::Create(CreateRequest {
                path: "/app/queue/item-".into(),
                data: Some(value.clone()),
                acl: Acl::open_unsafe(),
                flags: CreateMode::PersistentSequential.code(),
            }),
        ),
        (
            "multi-100-creates",
            Request::Multi(
                (0..100)
                    .map(|i| {
                        MultiOp::Create2(CreateRequest {
                            path: format!("/bench/tree/p0/n{i}"),
                            data: Some(value.clone()),
                            acl: Acl::open_unsafe(),
                            flags: 0,
                        })
                    })
                    .collect(),
            ),
        ),
    ];
    let mut g = c.benchmark_group("request");
    for (name, req) in &cases {
        let frame = request_frame(1, req);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("encode/{name}"), |b| {
            let mut out = Vec::with_capacity(frame.len());
            b.iter(|| {
                out.clear();
                write_frame(&mut out, |o| {
                    RequestHeader {
                        xid: 1,
                        op: req.op_code().code(),
                    }
                    .encode(o);
                    black_box(req).encode(o);
                });
                black_box(out.len())
            })
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_request(black_box(&frame)))
        });
    }
    g.finish();
}

fn replies(c: &mut Criterion) {
    let header = ReplyHeader {
        xid: 1,
        zxid: 0x1_0000_0099,
        err: 0,
    };
    let cases = [
        (
            "getData",
            OpCode::GetData,
            Response::GetData(GetDataResponse {
                data: Some(vec![b'x'; 100]),
                stat: stat(),
            }),
        ),
        (
            "setData",
            OpCode::SetData,
            Response::Stat(StatResponse { stat: stat() }),
        ),
        (
            "create",
            OpCode::Create,
            Response::Create(CreateResponse {
                path: "/app/queue/item-0000000042".into(),
            }),
        ),
    ];
    let mut g = c.benchmark_group("reply");
    for (name, op, resp) in &cases {
        let mut frame = Vec::new();
        write_reply(&mut frame, &header, resp);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("encode/{name}"), |b| {
            let mut out = Vec::with_capacity(frame.len());
            b.iter(|| {
                out.clear();
                write_reply(&mut out, black_box(&header), black_box(resp));
                black_box(out.len())
            })
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| {
                let mut r = Reader::new(&black_box(&frame)[4..]);
                let h = ReplyHeader::decode(&mut r).expect("header");
                (h, Response::decode(*op, &mut r).expect("body"))
            })
        });
    }
    g.finish();
}

fn framing(c: &mut Criterion) {
    // 64 pipelined getData frames in one read buffer, split as the server's reader does.
    let req = Request::GetData(PathWatchRequest {
        path: "/app/config/service-0042".into(),
        watch: false,
    });
    let mut buf = Vec::new();
    for xid in 0..64 {
        buf.extend_from_slice(&request_frame(xid, &req));
    }
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(64));
    g.bench_function("split-64-frames", |b| {
        b.iter(|| {
            let mut at = 0;
            let mut n = 0;
            while let Ok(Some(len)) = parse_frame(&black_box(&buf)[at..], 1 << 20) {
                at += 4 + len;
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, requests, replies, framing);
criterion_main!(benches);
