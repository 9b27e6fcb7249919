//! The decode path of the `decode_request` fuzz target, shared with the tests that replay its
//! seed corpus: `fuzz/fuzz_targets/decode_request.rs` includes this file with `#[path]`, so
//! `cargo test -p rookery-proto` runs exactly what the fuzzer runs.
//!
//! The input is a client's byte stream: length-prefixed frames, the first a `ConnectRequest`,
//! every later one a `RequestHeader` and a request body. Decoding must never panic, and whatever
//! decodes must decode to itself again after re-encoding (`decode(encode(decode(x))) ==
//! decode(x)`); a violation panics, which the fuzzer reports as a crash.

use rookery_proto::frame::{parse_frame, DEFAULT_MAX_FRAME_LEN, PREFIX_LEN};
use rookery_proto::jute::{Jute, Reader};
use rookery_proto::{ConnectRequest, Request, RequestHeader};

/// What one stream decoded to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StreamSummary {
    /// Complete frames taken off the stream.
    pub(crate) frames: usize,
    /// The first frame, if it decoded.
    pub(crate) connect: Option<ConnectRequest>,
    /// Every later frame that decoded.
    pub(crate) requests: Vec<(RequestHeader, Request)>,
    /// Frames that did not decode (bad header, unknown opcode, short body).
    pub(crate) errors: usize,
    /// Bytes left over after a decoded record, summed over frames (the server tolerates them).
    pub(crate) trailing: usize,
    /// Whether the stream stopped at a frame prefix that is negative or too large.
    pub(crate) bad_prefix: bool,
    /// Bytes of an incomplete last frame.
    pub(crate) leftover: usize,
}

/// Splits `data` into frames and decodes them as a client session's stream.
pub(crate) fn decode_stream(data: &[u8]) -> StreamSummary {
    let mut out = StreamSummary::default();
    let mut rest = data;
    loop {
        let len = match parse_frame(rest, DEFAULT_MAX_FRAME_LEN) {
            Ok(Some(len)) => len,
            Ok(None) => {
                out.leftover = rest.len();
                return out;
            }
            Err(_) => {
                out.bad_prefix = true;
                return out;
            }
        };
        assert!(len <= DEFAULT_MAX_FRAME_LEN && PREFIX_LEN + len <= rest.len());
        let body = &rest[PREFIX_LEN..PREFIX_LEN + len];
        rest = &rest[PREFIX_LEN + len..];
        let first = out.frames == 0;
        out.frames += 1;
        let mut r = Reader::new(body);
        if first {
            match ConnectRequest::decode(&mut r) {
                Ok(c) => {
                    out.trailing += r.remaining();
                    check_connect(&c);
                    out.connect = Some(c);
                }
                Err(_) => out.errors += 1,
            }
            continue;
        }
        let Ok(header) = RequestHeader::decode(&mut r) else {
            out.errors += 1;
            continue;
        };
        match Request::decode(header.op, &mut r) {
            Ok(req) => {
                out.trailing += r.remaining();
                check_request(header.op, &req);
                out.requests.push((header, req));
            }
            Err(_) => out.errors += 1,
        }
    }
}

/// Re-encodes a decoded ConnectRequest and checks that it decodes to itself, using every byte.
fn check_connect(c: &ConnectRequest) {
    let mut buf = Vec::new();
    c.encode(&mut buf);
    let mut r = Reader::new(&buf);
    let again = ConnectRequest::decode(&mut r).expect("a re-encoded ConnectRequest must decode");
    assert_eq!(
        &again, c,
        "ConnectRequest changed through encode and decode"
    );
    assert!(
        r.is_empty(),
        "re-encoded ConnectRequest left {} bytes",
        r.remaining()
    );
}

/// Re-encodes a decoded request and checks that it decodes to itself, using every byte.
fn check_request(op: i32, req: &Request) {
    assert_eq!(
        req.op_code().code(),
        op,
        "request decoded under another opcode"
    );
    let mut buf = Vec::new();
    req.encode(&mut buf);
    let mut r = Reader::new(&buf);
    let again = Request::decode(op, &mut r).expect("a re-encoded request must decode");
    assert_eq!(&again, req, "request changed through encode and decode");
    assert!(
        r.is_empty(),
        "re-encoded request left {} bytes",
        r.remaining()
    );
}

/// Frames a ConnectRequest and requests into one client stream, as the seed corpus holds them.
pub(crate) fn encode_stream(connect: &ConnectRequest, requests: &[(i32, Request)]) -> Vec<u8> {
    let mut out = Vec::new();
    rookery_proto::frame::write_frame(&mut out, |o| connect.encode(o));
    for (xid, req) in requests {
        rookery_proto::frame::write_frame(&mut out, |o| {
            RequestHeader {
                xid: *xid,
                op: req.op_code().code(),
            }
            .encode(o);
            req.encode(o);
        });
    }
    out
}
