//! Round trips: every record, every `Request` variant and every `Response` variant encodes to
//! bytes that decode to the same value, using every byte. Plus golden bytes for a few messages
//! as real clients and servers put them on the wire.

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rookery_proto::jute::to_vec;
use rookery_proto::*;

/// Encodes `v`, decodes it back, and checks the value, that every byte was used, and that the
/// encoding is at least `MIN_LEN` (vector counts are bounded with it, so an overestimate would
/// reject valid vectors).
fn round_trip<T: Jute + PartialEq + Debug>(v: &T) -> Result<(), TestCaseError> {
    let bytes = to_vec(v);
    prop_assert!(
        bytes.len() >= T::MIN_LEN,
        "{} bytes < MIN_LEN {}",
        bytes.len(),
        T::MIN_LEN
    );
    let mut r = Reader::new(&bytes);
    let back = T::decode(&mut r).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(r.remaining(), 0, "bytes left over");
    prop_assert_eq!(&back, v);
    Ok(())
}

/// `round_trip`, and also followed by more bytes, as inside a record, a vector or a multi: the
/// decoder must stop at the value's end. (Not for the handshake records: they take the whole
/// frame, since the optional read-only byte is recognised by being there.)
fn round_trip_embedded<T: Jute + PartialEq + Debug>(v: &T) -> Result<(), TestCaseError> {
    round_trip(v)?;
    let bytes = to_vec(v);
    let mut doubled = bytes.clone();
    doubled.extend_from_slice(&bytes);
    let mut r = Reader::new(&doubled);
    let first = T::decode(&mut r).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(
        r.remaining(),
        bytes.len(),
        "decode over-read into the next value"
    );
    prop_assert_eq!(&first, v);
    Ok(())
}

/// Encodes a request body and decodes it under the request's own opcode.
fn request_round_trip(req: &Request) -> Result<(), TestCaseError> {
    let mut bytes = Vec::new();
    req.encode(&mut bytes);
    let op = req.op_code().code();
    let mut r = Reader::new(&bytes);
    let back = Request::decode(op, &mut r)
        .map_err(|e| TestCaseError::fail(format!("decode op {op}: {e}")))?;
    prop_assert_eq!(r.remaining(), 0, "bytes left over");
    prop_assert_eq!(&back, req);
    prop_assert_eq!(back.op_code(), req.op_code());
    Ok(())
}

/// Encodes a response body and decodes it under every opcode whose reply has that shape.
fn response_round_trip(resp: &Response) -> Result<(), TestCaseError> {
    let mut bytes = Vec::new();
    resp.encode(&mut bytes);
    let ops = response_ops(resp);
    prop_assert!(!ops.is_empty());
    for &op in ops {
        let mut r = Reader::new(&bytes);
        let back = Response::decode(op, &mut r)
            .map_err(|e| TestCaseError::fail(format!("decode {op:?}: {e}")))?;
        prop_assert_eq!(r.remaining(), 0, "bytes left over for {:?}", op);
        prop_assert_eq!(&back, resp, "under {:?}", op);
    }
    Ok(())
}

macro_rules! record_round_trips {
    ($( $name:ident: $strategy:expr ),* $(,)?) => {
        proptest! {
            #![proptest_config(config(256))]
            $(
                #[test]
                fn $name(v in $strategy) {
                    round_trip_embedded(&v)?;
                }
            )*
        }
    };
}

record_round_trips! {
    stat_rt: stat(),
    id_rt: id(),
    acl_rt: acl(),
    request_header_rt: request_header(),
    reply_header_rt: reply_header(),
    watcher_event_rt: watcher_event(),
    auth_packet_rt: auth_packet(),
    create_request_rt: create_request(),
    create_ttl_request_rt: create_ttl_request(),
    create_response_rt: create_response(),
    create2_response_rt: create2_response(),
    delete_request_rt: delete_request(),
    path_watch_request_rt: path_watch_request(),
    path_request_rt: path_request(),
    stat_response_rt: stat_response(),
    get_data_response_rt: get_data_response(),
    set_data_request_rt: set_data_request(),
    get_acl_response_rt: get_acl_response(),
    set_acl_request_rt: set_acl_request(),
    get_children_response_rt: get_children_response(),
    get_children2_response_rt: get_children2_response(),
    path_response_rt: path_response(),
    check_version_request_rt: check_version_request(),
    reconfig_request_rt: reconfig_request(),
    watches_request_rt: watches_request(),
    set_watches_rt: set_watches(),
    set_watches2_rt: set_watches2(),
    sasl_token_rt: sasl_token(),
    get_ephemerals_response_rt: get_ephemerals_response(),
    all_children_number_response_rt: all_children_number_response(),
    add_watch_request_rt: add_watch_request(),
    client_info_rt: client_info(),
    who_am_i_response_rt: who_am_i_response(),
    error_response_rt: error_response(),
    multi_header_rt: multi_header(),
    acl_vec_rt: acls(),
    string_vec_rt: strings(),
    string_rt: string(),
    buffer_rt: bytes(),
    nullable_buffer_rt: opt_bytes(),
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn connect_request_rt(v in connect_request()) {
        round_trip(&v)?;
    }

    #[test]
    fn connect_response_rt(v in connect_response()) {
        round_trip(&v)?;
    }

    #[test]
    fn request_rt(req in request()) {
        request_round_trip(&req)?;
    }

    #[test]
    fn response_rt(resp in response()) {
        response_round_trip(&resp)?;
    }

    /// A request inside a whole frame, header included, as a client sends it.
    #[test]
    fn request_frame_rt(xid in any::<i32>(), req in request()) {
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, |o| {
            RequestHeader { xid, op: req.op_code().code() }.encode(o);
            req.encode(o);
        });
        let len = frame::parse_frame(&frame, frame::DEFAULT_MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(len, Some(frame.len() - 4));
        // Every strict prefix is incomplete, never an error.
        for cut in [0, 1, 3, 4, frame.len() / 2, frame.len() - 1] {
            prop_assert_eq!(frame::parse_frame(&frame[..cut], frame::DEFAULT_MAX_FRAME_LEN), Ok(None));
        }
        let mut r = Reader::new(&frame[4..]);
        let h = RequestHeader::decode(&mut r).unwrap();
        prop_assert_eq!(h.xid, xid);
        let back = Request::decode(h.op, &mut r).unwrap();
        prop_assert!(r.is_empty());
        prop_assert_eq!(back, req);
    }

    /// A reply frame via `write_reply`: the body is present only when `err` is 0.
    #[test]
    fn reply_frame_rt(header in reply_header(), zero_err in any::<bool>(), resp in response()) {
        let header = if zero_err { ReplyHeader { err: 0, ..header } } else { header };
        let mut frame = Vec::new();
        frame::write_reply(&mut frame, &header, &resp);
        prop_assert_eq!(
            frame::parse_frame(&frame, frame::DEFAULT_MAX_FRAME_LEN),
            Ok(Some(frame.len() - 4))
        );
        let mut r = Reader::new(&frame[4..]);
        prop_assert_eq!(ReplyHeader::decode(&mut r).unwrap(), header);
        if header.err == 0 {
            let back = Response::decode(response_ops(&resp)[0], &mut r).unwrap();
            prop_assert_eq!(back, resp);
        }
        prop_assert!(r.is_empty());
    }
}

#[test]
fn get_data_response_null_and_non_null() {
    let stat = Stat {
        version: 2,
        data_length: 3,
        ..Stat::default()
    };
    for data in [None, Some(vec![]), Some(b"abc".to_vec())] {
        let v = GetDataResponse {
            data: data.clone(),
            stat,
        };
        round_trip(&v).unwrap();
        response_round_trip(&Response::GetData(v)).unwrap();
        response_round_trip(&Response::Multi(vec![MultiResult::GetData(data, stat)])).unwrap();
    }
    // Null is -1, empty is 0: they stay distinct.
    assert_eq!(
        to_vec(&GetDataResponse { data: None, stat }.data)[..],
        [0xff; 4]
    );
    assert_eq!(to_vec(&Some(Vec::<u8>::new()))[..], [0; 4]);
}

#[test]
fn connect_request_with_and_without_read_only() {
    for read_only in [None, Some(false), Some(true)] {
        let c = ConnectRequest {
            read_only,
            ..new_session_connect()
        };
        round_trip(&c).unwrap();
        let len = to_vec(&c).len();
        assert_eq!(len, if read_only.is_some() { 45 } else { 44 });
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 77,
            passwd: vec![9; 16],
            read_only,
        };
        round_trip(&resp).unwrap();
        assert_eq!(
            to_vec(&resp).len(),
            if read_only.is_some() { 37 } else { 36 }
        );
    }
}

#[test]
fn every_request_variant_round_trips() {
    let samples = sample_requests();
    for req in &samples {
        request_round_trip(req).unwrap();
    }
    // The samples cover every opcode a client may send.
    let covered: BTreeSet<i32> = samples.iter().map(|r| r.op_code().code()).collect();
    let client_ops: BTreeSet<i32> = OpCode::ALL
        .iter()
        .filter(|op| {
            !matches!(
                op,
                OpCode::Notification | OpCode::CreateSession | OpCode::Error
            )
        })
        .map(|op| op.code())
        .collect();
    assert_eq!(covered, client_ops);
    // And Request::decode refuses every other opcode, whatever the body.
    for op in (-20..=120).filter(|op| !client_ops.contains(op)) {
        let res = Request::decode(op, &mut Reader::new(&[0; 64]));
        assert_eq!(res, Err(RequestError::UnknownOpCode(op)));
    }
}

#[test]
fn every_multi_op_and_result_kind_round_trips() {
    let stat = Stat {
        czxid: 5,
        mzxid: 6,
        pzxid: 7,
        version: 1,
        ..Stat::default()
    };
    let results = vec![
        MultiResult::Create("/a".into()),
        MultiResult::Create2("/b0000000001".into(), stat),
        MultiResult::Delete,
        MultiResult::SetData(stat),
        MultiResult::Check,
        MultiResult::GetData(Some(b"x".to_vec()), stat),
        MultiResult::GetData(None, stat),
        MultiResult::GetChildren(vec!["a".into(), "b".into()]),
        MultiResult::Error(0),
        MultiResult::Error(ErrorCode::NoNode.code()),
        MultiResult::Error(ErrorCode::RuntimeInconsistency.code()),
    ];
    response_round_trip(&Response::Multi(results.clone())).unwrap();
    response_round_trip(&Response::Multi(vec![])).unwrap();
    for res in results {
        response_round_trip(&Response::Multi(vec![res])).unwrap();
    }
}

#[test]
fn every_response_variant_covers_every_opcode() {
    let responses = vec![
        Response::Empty,
        Response::Create(CreateResponse { path: "/a".into() }),
        Response::Create2(Create2Response::default()),
        Response::Stat(StatResponse::default()),
        Response::GetData(GetDataResponse::default()),
        Response::GetAcl(GetAclResponse {
            acl: Acl::open_unsafe(),
            stat: Stat::default(),
        }),
        Response::GetChildren(GetChildrenResponse {
            children: vec!["x".into()],
        }),
        Response::GetChildren2(GetChildren2Response::default()),
        Response::Path(PathResponse { path: "/".into() }),
        Response::Multi(vec![MultiResult::Check]),
        Response::GetEphemerals(GetEphemeralsResponse {
            ephemerals: vec!["/e".into()],
        }),
        Response::AllChildrenNumber(AllChildrenNumberResponse { total_number: 3 }),
        Response::Error(ErrorResponse { err: 0 }),
        Response::WhoAmI(WhoAmIResponse {
            client_info: vec![ClientInfo {
                auth_scheme: "ip".into(),
                user: "127.0.0.1".into(),
            }],
        }),
        Response::Sasl(SaslToken { token: vec![1, 2] }),
    ];
    let mut covered = BTreeSet::new();
    for resp in &responses {
        response_round_trip(resp).unwrap();
        covered.extend(response_ops(resp).iter().map(|op| op.code()));
    }
    let all: BTreeSet<i32> = OpCode::ALL.iter().map(|op| op.code()).collect();
    assert_eq!(covered, all);
}

// ---- golden bytes -------------------------------------------------------------------------

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden<T: Jute + PartialEq + Debug>(v: &T, expected: &str) {
    let expected = hex(expected);
    assert_eq!(to_vec(v), expected, "encoding of {v:?}");
    assert_eq!(&jute::from_slice::<T>(&expected).unwrap(), v);
}

/// The C client's (and Java client's) first frame for a new session: 45 bytes.
#[test]
fn golden_connect_request() {
    let c = new_session_connect();
    golden(
        &c,
        "00000000 0000000000000000 00007530 0000000000000000
         00000010 00000000000000000000000000000000 00",
    );
    let mut framed = Vec::new();
    frame::write_frame(&mut framed, |o| c.encode(o));
    assert_eq!(framed.len(), 49);
    assert_eq!(framed[..4], [0, 0, 0, 45]);
    assert_eq!(
        frame::parse_frame(&framed, frame::DEFAULT_MAX_FRAME_LEN),
        Ok(Some(45))
    );
    // A 3.3-era client leaves the read-only byte out: 44 bytes, and no byte is invented.
    let old = jute::from_slice::<ConnectRequest>(&hex(
        "00000000 0000000000000010 00001770 0000000000000000 00000000",
    ))
    .unwrap();
    assert_eq!(old.read_only, None);
    assert_eq!(old.last_zxid_seen, 16);
    assert_eq!(old.timeout_ms, 6000);
    assert!(old.passwd.is_empty());
}

/// The server's answer: 37 bytes with the read-only byte.
#[test]
fn golden_connect_response() {
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: 30_000,
        session_id: 0x0100_0a3b_5c00_0001,
        passwd: (0u8..16).collect(),
        read_only: Some(false),
    };
    golden(
        &resp,
        "00000000 00007530 01000a3b5c000001
         00000010 000102030405060708090a0b0c0d0e0f 00",
    );
    assert_eq!(to_vec(&resp).len(), 37);
}

/// A Stat is 68 bytes, fields in `zookeeper.jute` order.
#[test]
fn golden_stat() {
    let stat = Stat {
        czxid: 0x1_0000_0002,
        mzxid: 0x1_0000_0003,
        ctime: 1_700_000_000_000,
        mtime: 1_700_000_000_001,
        version: 1,
        cversion: 2,
        aversion: 3,
        ephemeral_owner: 0x0100_0000_0000_00ff,
        data_length: 5,
        num_children: 6,
        pzxid: 0x1_0000_0004,
    };
    golden(
        &stat,
        "0000000100000002 0000000100000003 0000018bcfe56800 0000018bcfe56801
         00000001 00000002 00000003 01000000000000ff 00000005 00000006
         0000000100000004",
    );
    assert_eq!(to_vec(&stat).len(), 68);
}

/// A multi whose second op failed with NoNode: the first is rolled back (0), the third was never
/// run (RuntimeInconsistency), then the terminator, as the Java server writes it.
#[test]
fn golden_failed_multi_response() {
    let resp = Response::Multi(vec![
        MultiResult::Error(0),
        MultiResult::Error(-101),
        MultiResult::Error(-2),
    ]);
    let expected = hex("ffffffff 00 00000000 00000000
         ffffffff 00 ffffff9b ffffff9b
         ffffffff 00 fffffffe fffffffe
         ffffffff 01 ffffffff");
    let mut bytes = Vec::new();
    resp.encode(&mut bytes);
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), 48);
    for op in [OpCode::Multi, OpCode::MultiRead] {
        let mut r = Reader::new(&expected);
        assert_eq!(Response::decode(op, &mut r).unwrap(), resp);
        assert!(r.is_empty());
    }
}

/// A create of `/a` with data `x` and OPEN_ACL_UNSAFE, whole frame with its header.
#[test]
fn golden_create_request_frame() {
    let req = Request::Create(CreateRequest {
        path: "/a".into(),
        data: Some(b"x".to_vec()),
        acl: Acl::open_unsafe(),
        flags: 0,
    });
    let mut frame = Vec::new();
    frame::write_frame(&mut frame, |o| {
        RequestHeader { xid: 1, op: 1 }.encode(o);
        req.encode(o);
    });
    let expected = hex("00000032 00000001 00000001
         00000002 2f61 00000001 78
         00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65
         00000000");
    assert_eq!(frame, expected);
    let mut r = Reader::new(&expected[4..]);
    assert_eq!(
        RequestHeader::decode(&mut r).unwrap(),
        RequestHeader { xid: 1, op: 1 }
    );
    assert_eq!(Request::decode(1, &mut r).unwrap(), req);
    assert!(r.is_empty());
}

/// A watch notification frame: xid -1, zxid -1, err 0, then NodeDataChanged on `/a`.
#[test]
fn golden_notification_frame() {
    let header = ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid: -1,
        err: 0,
    };
    let event = WatcherEvent {
        event_type: EventType::NodeDataChanged.code(),
        state: KeeperState::SyncConnected.code(),
        path: "/a".into(),
    };
    let mut frame = Vec::new();
    frame::write_frame(&mut frame, |o| {
        header.encode(o);
        event.encode(o);
    });
    assert_eq!(
        frame,
        hex("0000001e ffffffff ffffffffffffffff 00000000 00000003 00000003 00000002 2f61")
    );
}
