//! Decoding never panics, whatever the bytes: random byte vectors, random mutations of valid
//! encodings, and every file of the fuzzer's seed corpus go through framing, the handshake, every
//! request opcode in -20..=120 and every response opcode.
//!
//! Runs 1000 cases per property by default (about a second); set `PROPTEST_CASES` for more, e.g.
//! `PROPTEST_CASES=20000 cargo test -p rookery-proto --test garbage --release`.

mod common;

use std::path::PathBuf;

use common::stream::{decode_stream, encode_stream};
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rookery_proto::frame::{parse_frame, DEFAULT_MAX_FRAME_LEN};
use rookery_proto::jute::Jute;
use rookery_proto::*;

/// Decodes one value of `T` from `data`; the result is thrown away, only panics matter.
fn try_decode<T: Jute>(data: &[u8]) {
    let mut r = Reader::new(data);
    if T::decode(&mut r).is_ok() {
        assert!(r.remaining() <= data.len());
    }
}

/// Runs `data` through every decoder there is. Panics only if a decoder does.
fn decode_everything(data: &[u8]) {
    for max in [0, 8, 1024, DEFAULT_MAX_FRAME_LEN, usize::MAX] {
        if let Ok(Some(len)) = parse_frame(data, max) {
            assert!(len <= max && len + 4 <= data.len());
        }
    }
    decode_stream(data);
    try_decode::<ConnectRequest>(data);
    try_decode::<ConnectResponse>(data);
    try_decode::<RequestHeader>(data);
    try_decode::<ReplyHeader>(data);
    try_decode::<WatcherEvent>(data);
    try_decode::<MultiHeader>(data);
    try_decode::<Stat>(data);
    try_decode::<Vec<Acl>>(data);
    try_decode::<Vec<String>>(data);
    try_decode::<Option<Vec<u8>>>(data);
    for op in -20..=120 {
        let mut r = Reader::new(data);
        if let Ok(req) = Request::decode(op, &mut r) {
            assert_eq!(req.op_code().code(), op);
        }
    }
    for &op in OpCode::ALL {
        let _ = Response::decode(op, &mut Reader::new(data));
    }
}

/// One edit of a byte string. Positions are indices scaled to the current length.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace one byte.
    Set(Index, u8),
    /// XOR one byte with a one-bit mask.
    Flip(Index, u8),
    /// Insert a byte.
    Insert(Index, u8),
    /// Delete a byte.
    Delete(Index),
    /// Cut the tail off.
    Truncate(Index),
    /// Overwrite four bytes with a hostile length or count.
    Int(Index, i32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile = prop_oneof![
        Just(-1i32),
        Just(-2),
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0),
        Just(1),
        Just(0xFFFFF),
        Just(0x100000),
        any::<i32>(),
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), hostile).prop_map(|(i, v)| Mutation::Int(i, v)),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            if let Mutation::Insert(_, b) = m {
                data.push(*b);
            }
            continue;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(data.len());
                data[i] = *b;
            }
            Mutation::Flip(i, mask) => {
                let i = i.index(data.len());
                data[i] ^= mask;
            }
            Mutation::Insert(i, b) => data.insert(i.index(data.len() + 1), *b),
            Mutation::Delete(i) => {
                data.remove(i.index(data.len()));
            }
            Mutation::Truncate(i) => data.truncate(i.index(data.len())),
            Mutation::Int(i, v) => {
                let i = i.index(data.len());
                let end = (i + 4).min(data.len());
                data[i..end].copy_from_slice(&v.to_be_bytes()[..end - i]);
            }
        }
    }
    data
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..6)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..512)) {
        decode_everything(&data);
    }

    /// Random bytes behind a plausible frame prefix, so that the frame is complete and the
    /// decoders see the body.
    #[test]
    fn random_frames_never_panic(body in vec(any::<u8>(), 0..256), extra in vec(any::<u8>(), 0..16)) {
        let mut data = Vec::new();
        frame::write_frame(&mut data, |o| o.extend_from_slice(&body));
        data.extend_from_slice(&extra);
        decode_everything(&data);
        decode_everything(&body);
    }

    #[test]
    fn mutated_requests_never_panic(req in request(), edits in mutations()) {
        let mut body = Vec::new();
        req.encode(&mut body);
        let body = mutate(body, &edits);
        decode_everything(&body);
    }

    #[test]
    fn mutated_responses_never_panic(resp in response(), edits in mutations()) {
        let mut body = Vec::new();
        resp.encode(&mut body);
        let body = mutate(body, &edits);
        decode_everything(&body);
    }

    #[test]
    fn mutated_handshakes_never_panic(
        c in connect_request(),
        s in connect_response(),
        edits in mutations(),
    ) {
        decode_everything(&mutate(jute::to_vec(&c), &edits));
        decode_everything(&mutate(jute::to_vec(&s), &edits));
    }

    /// Whole client streams (handshake plus framed requests), mutated, through the fuzz
    /// target's decode path.
    #[test]
    fn mutated_streams_never_panic(
        c in connect_request(),
        reqs in vec((any::<i32>(), request()), 0..4),
        edits in mutations(),
    ) {
        let stream = encode_stream(&c, &reqs);
        let clean = decode_stream(&stream);
        prop_assert_eq!(clean.errors, 0);
        prop_assert_eq!(clean.frames, reqs.len() + 1);
        prop_assert_eq!(clean.connect, Some(c));
        prop_assert_eq!(clean.requests.len(), reqs.len());
        decode_everything(&mutate(stream, &edits));
    }

    /// The seed corpus, mutated: the closest thing to the fuzzer that `cargo test` runs.
    #[test]
    fn mutated_seeds_never_panic(seed in any::<Index>(), edits in mutations()) {
        let seeds = seed_files();
        let (_, data) = &seeds[seed.index(seeds.len())];
        decode_everything(&mutate(data.clone(), &edits));
    }
}

// ---- the fuzzer's seed corpus ---------------------------------------------------------------

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus-seed/decode_request")
}

/// Every file in the seed corpus, sorted by name.
fn seed_files() -> Vec<(String, Vec<u8>)> {
    let dir = seed_dir();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            let data = std::fs::read(entry.path()).unwrap();
            (entry.file_name().to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    files
}

/// The generated seeds: valid client streams that together use every request opcode.
fn generated_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let connect = new_session_connect();
    let resume = ConnectRequest {
        last_zxid_seen: 0x1_0000_0010,
        session_id: 0x0100_0a3b_5c00_0001,
        passwd: (1u8..=16).collect(),
        ..new_session_connect()
    };
    let old_client = ConnectRequest {
        read_only: None,
        timeout_ms: 10_000,
        ..new_session_connect()
    };
    let all = sample_requests();
    let pick = |ops: &[OpCode]| -> Vec<(i32, Request)> {
        let mut xid = 0;
        ops.iter()
            .map(|op| {
                let req = all.iter().find(|r| r.op_code() == *op).unwrap().clone();
                let x = match op {
                    OpCode::Ping => xid::PING,
                    OpCode::Auth => xid::AUTH,
                    OpCode::SetWatches | OpCode::SetWatches2 => xid::SET_WATCHES,
                    _ => {
                        xid += 1;
                        xid
                    }
                };
                (x, req)
            })
            .collect()
    };
    use OpCode::*;
    vec![
        ("01-connect-only", encode_stream(&connect, &[])),
        (
            "02-crud",
            encode_stream(
                &connect,
                &pick(&[
                    Create,
                    Exists,
                    GetData,
                    SetData,
                    GetChildren,
                    Delete,
                    Ping,
                    CloseSession,
                ]),
            ),
        ),
        (
            "03-multi",
            encode_stream(&connect, &pick(&[Create2, Multi, MultiRead, Check, Sync])),
        ),
        (
            "04-resume-watches",
            encode_stream(
                &resume,
                &pick(&[Auth, SetWatches, SetWatches2, AddWatch, CheckWatches]),
            ),
        ),
        (
            "05-old-client",
            encode_stream(
                &old_client,
                &pick(&[GetChildren2, GetAcl, SetAcl, Sasl, WhoAmI]),
            ),
        ),
        (
            "06-containers-ttl",
            encode_stream(
                &connect,
                &pick(&[
                    CreateContainer,
                    CreateTtl,
                    DeleteContainer,
                    GetEphemerals,
                    GetAllChildrenNumber,
                    RemoveWatches,
                    Reconfig,
                ]),
            ),
        ),
    ]
}

/// Replays every seed file through the fuzz target's decode path, and checks that the
/// generated seeds are present, unchanged, and decode cleanly.
#[test]
fn seed_corpus_replays() {
    let files = seed_files();
    for (_, data) in &files {
        decode_everything(data);
    }
    let mut ops_seen = std::collections::BTreeSet::new();
    for (name, expected) in generated_seeds() {
        let found = files.iter().find(|(n, _)| n == name).map(|(_, d)| d);
        assert_eq!(
            found,
            Some(&expected),
            "seed {name} is missing or stale: regenerate with \
             `cargo test -p rookery-proto --test garbage -- --ignored write_seed_corpus`"
        );
        let s = decode_stream(&expected);
        assert!(s.connect.is_some(), "{name}: {s:?}");
        assert_eq!(
            (s.errors, s.trailing, s.leftover, s.bad_prefix),
            (0, 0, 0, false),
            "{name}"
        );
        assert_eq!(s.frames, s.requests.len() + 1, "{name}");
        ops_seen.extend(s.requests.iter().map(|(h, _)| h.op));
    }
    let expected_ops: std::collections::BTreeSet<i32> = sample_requests()
        .iter()
        .map(|r| r.op_code().code())
        .collect();
    assert_eq!(
        ops_seen, expected_ops,
        "the seeds should use every request opcode"
    );
}

/// Writes the generated seeds into `fuzz/corpus-seed/decode_request/`.
#[test]
#[ignore = "writes files; run by hand to regenerate the seed corpus"]
fn write_seed_corpus() {
    let dir = seed_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in generated_seeds() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}
