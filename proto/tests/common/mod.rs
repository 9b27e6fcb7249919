//! Shared proptest strategies and sample values for the proto integration tests.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod stream;

use proptest::collection::vec;
use proptest::prelude::*;
use rookery_proto::*;

/// How many cases a property runs: `default` unless `PROPTEST_CASES` says otherwise.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The default proptest config, with `cases(default)` cases.
pub(crate) fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        ..ProptestConfig::default()
    }
}

/// Any valid string, including NUL, newlines and non-ASCII characters. Strings decode lossily
/// and null decodes as "", so only valid strings round-trip exactly.
pub(crate) fn string() -> impl Strategy<Value = String> {
    "(?s).{0,24}"
}

pub(crate) fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(string(), 0..5)
}

pub(crate) fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48)
}

pub(crate) fn opt_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(bytes())
}

pub(crate) fn stat() -> impl Strategy<Value = Stat> {
    (
        any::<[i64; 4]>(),
        any::<[i32; 3]>(),
        any::<i64>(),
        any::<[i32; 2]>(),
        any::<i64>(),
    )
        .prop_map(
            |(
                [czxid, mzxid, ctime, mtime],
                [version, cversion, aversion],
                ephemeral_owner,
                [data_length, num_children],
                pzxid,
            )| {
                Stat {
                    czxid,
                    mzxid,
                    ctime,
                    mtime,
                    version,
                    cversion,
                    aversion,
                    ephemeral_owner,
                    data_length,
                    num_children,
                    pzxid,
                }
            },
        )
}

pub(crate) fn id() -> impl Strategy<Value = Id> {
    (string(), string()).prop_map(|(scheme, id)| Id { scheme, id })
}

pub(crate) fn acl() -> impl Strategy<Value = Acl> {
    (any::<i32>(), id()).prop_map(|(perms, id)| Acl { perms, id })
}

pub(crate) fn acls() -> impl Strategy<Value = Vec<Acl>> {
    vec(acl(), 0..4)
}

pub(crate) fn connect_request() -> impl Strategy<Value = ConnectRequest> {
    (
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        any::<Option<bool>>(),
    )
        .prop_map(
            |(protocol_version, last_zxid_seen, timeout_ms, session_id, passwd, read_only)| {
                ConnectRequest {
                    protocol_version,
                    last_zxid_seen,
                    timeout_ms,
                    session_id,
                    passwd,
                    read_only,
                }
            },
        )
}

pub(crate) fn connect_response() -> impl Strategy<Value = ConnectResponse> {
    (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        any::<Option<bool>>(),
    )
        .prop_map(
            |(protocol_version, timeout_ms, session_id, passwd, read_only)| ConnectResponse {
                protocol_version,
                timeout_ms,
                session_id,
                passwd,
                read_only,
            },
        )
}

pub(crate) fn request_header() -> impl Strategy<Value = RequestHeader> {
    any::<(i32, i32)>().prop_map(|(xid, op)| RequestHeader { xid, op })
}

pub(crate) fn reply_header() -> impl Strategy<Value = ReplyHeader> {
    any::<(i32, i64, i32)>().prop_map(|(xid, zxid, err)| ReplyHeader { xid, zxid, err })
}

pub(crate) fn watcher_event() -> impl Strategy<Value = WatcherEvent> {
    (any::<i32>(), any::<i32>(), string()).prop_map(|(event_type, state, path)| WatcherEvent {
        event_type,
        state,
        path,
    })
}

pub(crate) fn auth_packet() -> impl Strategy<Value = AuthPacket> {
    (any::<i32>(), string(), bytes()).prop_map(|(auth_type, scheme, auth)| AuthPacket {
        auth_type,
        scheme,
        auth,
    })
}

pub(crate) fn create_request() -> impl Strategy<Value = CreateRequest> {
    (string(), opt_bytes(), acls(), any::<i32>()).prop_map(|(path, data, acl, flags)| {
        CreateRequest {
            path,
            data,
            acl,
            flags,
        }
    })
}

pub(crate) fn create_ttl_request() -> impl Strategy<Value = CreateTtlRequest> {
    (string(), opt_bytes(), acls(), any::<i32>(), any::<i64>()).prop_map(
        |(path, data, acl, flags, ttl)| CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    )
}

pub(crate) fn create_response() -> impl Strategy<Value = CreateResponse> {
    string().prop_map(|path| CreateResponse { path })
}

pub(crate) fn create2_response() -> impl Strategy<Value = Create2Response> {
    (string(), stat()).prop_map(|(path, stat)| Create2Response { path, stat })
}

pub(crate) fn delete_request() -> impl Strategy<Value = DeleteRequest> {
    (string(), any::<i32>()).prop_map(|(path, version)| DeleteRequest { path, version })
}

pub(crate) fn path_watch_request() -> impl Strategy<Value = PathWatchRequest> {
    (string(), any::<bool>()).prop_map(|(path, watch)| PathWatchRequest { path, watch })
}

pub(crate) fn path_request() -> impl Strategy<Value = PathRequest> {
    string().prop_map(|path| PathRequest { path })
}

pub(crate) fn stat_response() -> impl Strategy<Value = StatResponse> {
    stat().prop_map(|stat| StatResponse { stat })
}

pub(crate) fn get_data_response() -> impl Strategy<Value = GetDataResponse> {
    (opt_bytes(), stat()).prop_map(|(data, stat)| GetDataResponse { data, stat })
}

pub(crate) fn set_data_request() -> impl Strategy<Value = SetDataRequest> {
    (string(), opt_bytes(), any::<i32>()).prop_map(|(path, data, version)| SetDataRequest {
        path,
        data,
        version,
    })
}

pub(crate) fn get_acl_response() -> impl Strategy<Value = GetAclResponse> {
    (acls(), stat()).prop_map(|(acl, stat)| GetAclResponse { acl, stat })
}

pub(crate) fn set_acl_request() -> impl Strategy<Value = SetAclRequest> {
    (string(), acls(), any::<i32>()).prop_map(|(path, acl, version)| SetAclRequest {
        path,
        acl,
        version,
    })
}

pub(crate) fn get_children_response() -> impl Strategy<Value = GetChildrenResponse> {
    strings().prop_map(|children| GetChildrenResponse { children })
}

pub(crate) fn get_children2_response() -> impl Strategy<Value = GetChildren2Response> {
    (strings(), stat()).prop_map(|(children, stat)| GetChildren2Response { children, stat })
}

pub(crate) fn path_response() -> impl Strategy<Value = PathResponse> {
    string().prop_map(|path| PathResponse { path })
}

pub(crate) fn check_version_request() -> impl Strategy<Value = CheckVersionRequest> {
    (string(), any::<i32>()).prop_map(|(path, version)| CheckVersionRequest { path, version })
}

pub(crate) fn reconfig_request() -> impl Strategy<Value = ReconfigRequest> {
    (string(), string(), string(), any::<i64>()).prop_map(
        |(joining_servers, leaving_servers, new_members, cur_config_id)| ReconfigRequest {
            joining_servers,
            leaving_servers,
            new_members,
            cur_config_id,
        },
    )
}

pub(crate) fn watches_request() -> impl Strategy<Value = WatchesRequest> {
    (string(), any::<i32>()).prop_map(|(path, watcher_type)| WatchesRequest { path, watcher_type })
}

pub(crate) fn set_watches() -> impl Strategy<Value = SetWatches> {
    (any::<i64>(), strings(), strings(), strings()).prop_map(
        |(relative_zxid, data_watches, exist_watches, child_watches)| SetWatches {
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
        },
    )
}

pub(crate) fn set_watches2() -> impl Strategy<Value = SetWatches2> {
    (
        any::<i64>(),
        strings(),
        strings(),
        strings(),
        strings(),
        strings(),
    )
        .prop_map(
            |(
                relative_zxid,
                data_watches,
                exist_watches,
                child_watches,
                persistent_watches,
                persistent_recursive_watches,
            )| SetWatches2 {
                relative_zxid,
                data_watches,
                exist_watches,
                child_watches,
                persistent_watches,
                persistent_recursive_watches,
            },
        )
}

pub(crate) fn sasl_token() -> impl Strategy<Value = SaslToken> {
    bytes().prop_map(|token| SaslToken { token })
}

pub(crate) fn get_ephemerals_response() -> impl Strategy<Value = GetEphemeralsResponse> {
    strings().prop_map(|ephemerals| GetEphemeralsResponse { ephemerals })
}

pub(crate) fn all_children_number_response() -> impl Strategy<Value = AllChildrenNumberResponse> {
    any::<i32>().prop_map(|total_number| AllChildrenNumberResponse { total_number })
}

pub(crate) fn add_watch_request() -> impl Strategy<Value = AddWatchRequest> {
    (string(), any::<i32>()).prop_map(|(path, mode)| AddWatchRequest { path, mode })
}

pub(crate) fn client_info() -> impl Strategy<Value = ClientInfo> {
    (string(), string()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user })
}

pub(crate) fn who_am_i_response() -> impl Strategy<Value = WhoAmIResponse> {
    vec(client_info(), 0..4).prop_map(|client_info| WhoAmIResponse { client_info })
}

pub(crate) fn error_response() -> impl Strategy<Value = ErrorResponse> {
    any::<i32>().prop_map(|err| ErrorResponse { err })
}

pub(crate) fn multi_header() -> impl Strategy<Value = MultiHeader> {
    any::<(i32, bool, i32)>().prop_map(|(op, done, err)| MultiHeader { op, done, err })
}

pub(crate) fn multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        create_request().prop_map(MultiOp::Create),
        create_request().prop_map(MultiOp::Create2),
        create_request().prop_map(MultiOp::CreateContainer),
        create_ttl_request().prop_map(MultiOp::CreateTtl),
        delete_request().prop_map(MultiOp::Delete),
        set_data_request().prop_map(MultiOp::SetData),
        check_version_request().prop_map(MultiOp::Check),
        path_watch_request().prop_map(MultiOp::GetData),
        path_watch_request().prop_map(MultiOp::GetChildren),
    ]
}

pub(crate) fn multi_ops() -> impl Strategy<Value = Vec<MultiOp>> {
    vec(multi_op(), 0..6)
}

/// Every `Request` variant.
pub(crate) fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        create_request().prop_map(Request::Create),
        create_request().prop_map(Request::Create2),
        create_request().prop_map(Request::CreateContainer),
        create_ttl_request().prop_map(Request::CreateTtl),
        delete_request().prop_map(Request::Delete),
        path_watch_request().prop_map(Request::Exists),
        path_watch_request().prop_map(Request::GetData),
        set_data_request().prop_map(Request::SetData),
        path_request().prop_map(Request::GetAcl),
        set_acl_request().prop_map(Request::SetAcl),
        path_watch_request().prop_map(Request::GetChildren),
        path_watch_request().prop_map(Request::GetChildren2),
        path_request().prop_map(Request::Sync),
        Just(Request::Ping),
        check_version_request().prop_map(Request::Check),
        multi_ops().prop_map(Request::Multi),
        multi_ops().prop_map(Request::MultiRead),
        reconfig_request().prop_map(Request::Reconfig),
        watches_request().prop_map(Request::CheckWatches),
        watches_request().prop_map(Request::RemoveWatches),
        path_request().prop_map(Request::DeleteContainer),
        auth_packet().prop_map(Request::Auth),
        set_watches().prop_map(Request::SetWatches),
        set_watches2().prop_map(Request::SetWatches2),
        sasl_token().prop_map(Request::Sasl),
        path_request().prop_map(Request::GetEphemerals),
        path_request().prop_map(Request::GetAllChildrenNumber),
        add_watch_request().prop_map(Request::AddWatch),
        Just(Request::WhoAmI),
        Just(Request::CloseSession),
    ]
}

pub(crate) fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        string().prop_map(MultiResult::Create),
        (string(), stat()).prop_map(|(p, s)| MultiResult::Create2(p, s)),
        Just(MultiResult::Delete),
        stat().prop_map(MultiResult::SetData),
        Just(MultiResult::Check),
        (opt_bytes(), stat()).prop_map(|(d, s)| MultiResult::GetData(d, s)),
        strings().prop_map(MultiResult::GetChildren),
        any::<i32>().prop_map(MultiResult::Error),
    ]
}

/// Every `Response` variant.
pub(crate) fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Empty),
        create_response().prop_map(Response::Create),
        create2_response().prop_map(Response::Create2),
        stat_response().prop_map(Response::Stat),
        get_data_response().prop_map(Response::GetData),
        get_acl_response().prop_map(Response::GetAcl),
        get_children_response().prop_map(Response::GetChildren),
        get_children2_response().prop_map(Response::GetChildren2),
        path_response().prop_map(Response::Path),
        vec(multi_result(), 0..6).prop_map(Response::Multi),
        get_ephemerals_response().prop_map(Response::GetEphemerals),
        all_children_number_response().prop_map(Response::AllChildrenNumber),
        error_response().prop_map(Response::Error),
        who_am_i_response().prop_map(Response::WhoAmI),
        sasl_token().prop_map(Response::Sasl),
    ]
}

/// The opcodes whose reply body decodes as this response's variant.
pub(crate) fn response_ops(resp: &Response) -> &'static [OpCode] {
    use OpCode::*;
    match resp {
        Response::Empty => &[
            Notification,
            Delete,
            Ping,
            Check,
            CheckWatches,
            RemoveWatches,
            DeleteContainer,
            Auth,
            SetWatches,
            SetWatches2,
            CreateSession,
            CloseSession,
            Error,
        ],
        Response::Create(_) => &[Create],
        Response::Create2(_) => &[Create2, CreateContainer, CreateTtl],
        Response::Stat(_) => &[Exists, SetData, SetAcl],
        Response::GetData(_) => &[GetData, Reconfig],
        Response::GetAcl(_) => &[GetAcl],
        Response::GetChildren(_) => &[GetChildren],
        Response::GetChildren2(_) => &[GetChildren2],
        Response::Path(_) => &[Sync],
        Response::Multi(_) => &[Multi, MultiRead],
        Response::GetEphemerals(_) => &[GetEphemerals],
        Response::AllChildrenNumber(_) => &[GetAllChildrenNumber],
        Response::Error(_) => &[AddWatch],
        Response::WhoAmI(_) => &[WhoAmI],
        Response::Sasl(_) => &[Sasl],
        other => panic!("a Response variant the tests do not know: {other:?}"),
    }
}

/// A small fixed value of every `Request` variant, in opcode order of the enum.
pub(crate) fn sample_requests() -> Vec<Request> {
    let create = CreateRequest {
        path: "/app/node".into(),
        data: Some(b"hello".to_vec()),
        acl: Acl::open_unsafe(),
        flags: 0,
    };
    let ttl = CreateTtlRequest {
        path: "/ttl/n-".into(),
        data: None,
        acl: Acl::creator_all(),
        flags: 6,
        ttl: 60_000,
    };
    let pw = |path: &str, watch| PathWatchRequest {
        path: path.into(),
        watch,
    };
    let p = |path: &str| PathRequest { path: path.into() };
    vec![
        Request::Create(create.clone()),
        Request::Create2(CreateRequest {
            flags: 3,
            ..create.clone()
        }),
        Request::CreateContainer(CreateRequest {
            flags: 4,
            data: Some(vec![]),
            ..create.clone()
        }),
        Request::CreateTtl(ttl.clone()),
        Request::Delete(DeleteRequest {
            path: "/app/node".into(),
            version: -1,
        }),
        Request::Exists(pw("/app", true)),
        Request::GetData(pw("/app/node", false)),
        Request::SetData(SetDataRequest {
            path: "/app/node".into(),
            data: Some(vec![0, 1, 2, 255]),
            version: 3,
        }),
        Request::GetAcl(p("/app")),
        Request::SetAcl(SetAclRequest {
            path: "/app".into(),
            acl: vec![
                Acl::new(perms::READ, "digest", "bob:hash="),
                Acl::new(31, "ip", "10.0.0.0/8"),
            ],
            version: -1,
        }),
        Request::GetChildren(pw("/", true)),
        Request::GetChildren2(pw("/app", false)),
        Request::Sync(p("/app")),
        Request::Ping,
        Request::Check(CheckVersionRequest {
            path: "/app".into(),
            version: 7,
        }),
        Request::Multi(vec![
            MultiOp::Create(create.clone()),
            MultiOp::Create2(create.clone()),
            MultiOp::CreateContainer(create.clone()),
            MultiOp::CreateTtl(ttl),
            MultiOp::SetData(SetDataRequest {
                path: "/app/node".into(),
                data: None,
                version: -1,
            }),
            MultiOp::Check(CheckVersionRequest {
                path: "/app".into(),
                version: 0,
            }),
            MultiOp::Delete(DeleteRequest {
                path: "/app/node".into(),
                version: 0,
            }),
        ]),
        Request::MultiRead(vec![
            MultiOp::GetData(pw("/app/node", false)),
            MultiOp::GetChildren(pw("/app", false)),
        ]),
        Request::Reconfig(ReconfigRequest {
            joining_servers: "server.4=127.0.0.1:2888:3888;2181".into(),
            leaving_servers: "2".into(),
            new_members: String::new(),
            cur_config_id: -1,
        }),
        Request::CheckWatches(WatchesRequest {
            path: "/app".into(),
            watcher_type: 2,
        }),
        Request::RemoveWatches(WatchesRequest {
            path: "/app".into(),
            watcher_type: 3,
        }),
        Request::DeleteContainer(p("/c")),
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b"bob:secret".to_vec(),
        }),
        Request::SetWatches(SetWatches {
            relative_zxid: 0x1_0000_0005,
            data_watches: vec!["/a".into()],
            exist_watches: vec!["/b".into(), "/c".into()],
            child_watches: vec![],
        }),
        Request::SetWatches2(SetWatches2 {
            relative_zxid: 42,
            data_watches: vec!["/a".into()],
            exist_watches: vec![],
            child_watches: vec!["/".into()],
            persistent_watches: vec!["/p".into()],
            persistent_recursive_watches: vec!["/r".into()],
        }),
        Request::Sasl(SaslToken {
            token: b"\x60\x82token".to_vec(),
        }),
        Request::GetEphemerals(p("/")),
        Request::GetAllChildrenNumber(p("/app")),
        Request::AddWatch(AddWatchRequest {
            path: "/app".into(),
            mode: 1,
        }),
        Request::WhoAmI,
        Request::CloseSession,
    ]
}

/// A ConnectRequest as a new C or Java client sends it.
pub(crate) fn new_session_connect() -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 30_000,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: Some(false),
    }
}
