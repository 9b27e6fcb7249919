//! Differential tests: the same operation sequences against Rookery and Apache ZooKeeper 3.8 (the
//! Debian package), with results compared after masking zxids, times and session ids.
//!
//! Where Rookery knowingly follows 3.9 rather than 3.8.0 (docs/compatibility.md), the rendering
//! below maps both to one form, and a Rookery-only test pins the 3.9 behaviour.

mod common;

use std::time::Duration;

use common::*;
use rookery_proto::*;

/// Renders a stat without zxids, times or session ids.
fn stat(s: &Stat) -> String {
    format!(
        "v={} cv={} av={} eph={} len={} kids={} czxid==mzxid:{} pzxid>=czxid:{}",
        s.version,
        s.cversion,
        s.aversion,
        if s.ephemeral_owner == 0 { "0" } else { "S" },
        s.data_length,
        s.num_children,
        s.czxid == s.mzxid,
        s.pzxid >= s.czxid
    )
}

fn data(d: &Option<Vec<u8>>) -> String {
    match d {
        None => "null".into(),
        Some(d) => format!("{:?}", String::from_utf8_lossy(d)),
    }
}

fn acls(a: &[Acl]) -> String {
    a.iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
        .collect::<Vec<_>>()
        .join(",")
}

fn multi(results: &[MultiResult]) -> String {
    results
        .iter()
        .map(|r| match r {
            MultiResult::Create(p) => format!("create {p}"),
            // 3.8.0 answers a create2 sub-op as a plain create; 3.9 adds the stat.
            MultiResult::Create2(p, _) => format!("create {p}"),
            MultiResult::Delete => "delete".into(),
            MultiResult::SetData(s) => format!("set {}", stat(s)),
            MultiResult::Check => "check".into(),
            MultiResult::GetData(d, s) => format!("get {} {}", data(d), stat(s)),
            MultiResult::GetChildren(c) => {
                let mut c = c.clone();
                c.sort();
                format!("children {c:?}")
            }
            MultiResult::Error(e) => format!("err {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn show(r: &Option<Reply>) -> String {
    let Some(r) = r else { return "CLOSED".into() };
    if r.err() != 0 {
        return format!("err {}", r.err());
    }
    match r.body.as_ref().unwrap() {
        Response::Empty => "ok".into(),
        Response::Create(c) => format!("created {}", c.path),
        Response::Create2(c) => format!("created {} {}", c.path, stat(&c.stat)),
        Response::Stat(s) => stat(&s.stat),
        Response::GetData(g) => format!("{} {}", data(&g.data), stat(&g.stat)),
        Response::GetAcl(g) => format!("[{}] {}", acls(&g.acl), stat(&g.stat)),
        Response::GetChildren(g) => {
            let mut c = g.children.clone();
            c.sort();
            format!("{c:?}")
        }
        Response::GetChildren2(g) => {
            let mut c = g.children.clone();
            c.sort();
            format!("{c:?} {}", stat(&g.stat))
        }
        Response::Path(p) => format!("path {}", p.path),
        Response::Multi(m) => multi(m),
        Response::GetEphemerals(e) => {
            let mut e = e.ephemerals.clone();
            e.sort();
            format!("{e:?}")
        }
        Response::AllChildrenNumber(n) => format!("count {}", n.total_number),
        Response::Error(e) => format!("body err {}", e.err),
        Response::WhoAmI(w) => {
            // ZooKeeper keeps a connection's ids in no particular order.
            let mut ids: Vec<String> = w
                .client_info
                .iter()
                .map(|c| format!("{}={}", c.auth_scheme, c.user))
                .collect();
            ids.sort();
            ids.join(",")
        }
        other => format!("{other:?}"),
    }
}

fn events(evs: &[WatcherEvent]) -> String {
    let mut v: Vec<String> = evs
        .iter()
        .map(|e| format!("{}@{}", e.event_type, e.path))
        .collect();
    // Events for different paths of one transaction have no defined order between tables.
    v.sort();
    format!("events [{}]", v.join(" "))
}

/// A transcript of one scenario against one server.
struct Log {
    lines: Vec<String>,
}

impl Log {
    async fn run(&mut self, c: &mut Client, label: &str, req: Request) -> Option<Reply> {
        let r = c.try_call(req).await;
        self.lines.push(format!("{label}: {}", show(&r)));
        r
    }

    async fn events(&mut self, c: &mut Client, label: &str) {
        let evs = c.flush_events().await;
        self.lines.push(format!("{label}: {}", events(&evs)));
    }
}

fn multi_req(ops: Vec<MultiOp>) -> Request {
    Request::Multi(ops)
}

fn cr(path: &str) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(b"m".to_vec()),
        acl: Acl::open_unsafe(),
        flags: 0,
    }
}

async fn crud_and_errors(addr: std::net::SocketAddr, log: &mut Log) {
    let mut c = Client::connect(addr).await;
    log.run(&mut c, "create", create("/d", b"hello", 0)).await;
    log.run(&mut c, "create again", create("/d", b"x", 0)).await;
    log.run(&mut c, "create2 child", create2("/d/c1", b"", 0))
        .await;
    log.run(&mut c, "missing parent", create("/d/x/y", b"", 0))
        .await;
    for (label, p) in [
        ("trailing slash", "/d/"),
        ("double slash", "/d//x"),
        ("ctrl char", "/d/a\u{1}b"),
        ("no slash", "noslash"),
        ("dot", "/d/."),
        ("dotdot", "/d/../d"),
        ("root", "/"),
    ] {
        log.run(&mut c, label, create(p, b"", 0)).await;
    }
    log.run(&mut c, "bad flags", create("/d/f", b"", 7)).await;
    log.run(&mut c, "ttl flag on create", create("/d/f", b"", 5))
        .await;
    log.run(&mut c, "get", get_data("/d", false)).await;
    log.run(&mut c, "get missing", get_data("/nope", false))
        .await;
    log.run(&mut c, "get no slash", get_data("nope", false))
        .await;
    log.run(&mut c, "set bad version", set_data("/d", b"v", 5))
        .await;
    log.run(&mut c, "set", set_data("/d", b"world", 0)).await;
    log.run(&mut c, "set any version", set_data("/d", b"again", -1))
        .await;
    log.run(&mut c, "set missing", set_data("/nope", b"", -1))
        .await;
    log.run(&mut c, "set bad path", set_data("/d/", b"", -1))
        .await;
    log.run(&mut c, "exists", exists("/d", false)).await;
    log.run(&mut c, "exists missing", exists("/nope", false))
        .await;
    log.run(&mut c, "delete non-empty", delete("/d", -1)).await;
    log.run(&mut c, "delete bad version", delete("/d/c1", 3))
        .await;
    log.run(&mut c, "delete", delete("/d/c1", 0)).await;
    log.run(&mut c, "delete missing", delete("/d/c1", -1)).await;
    log.run(&mut c, "delete missing parent", delete("/x/y/z", -1))
        .await;
    for p in ["/", "/zookeeper", "/zookeeper/quota"] {
        log.run(&mut c, &format!("get {p}"), get_data(p, false))
            .await;
    }
    for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        log.run(&mut c, &format!("delete {p}"), delete(p, -1)).await;
    }
    log.run(&mut c, "children2", get_children2("/d", false))
        .await;
    log.run(&mut c, "children missing", get_children("/nope", false))
        .await;
    log.run(&mut c, "stat /zookeeper", exists("/zookeeper", false))
        .await;
    log.run(
        &mut c,
        "get /zookeeper/config",
        get_data("/zookeeper/config", false),
    )
    .await;
    log.run(
        &mut c,
        "acl /zookeeper/config",
        Request::GetAcl(PathRequest {
            path: "/zookeeper/config".into(),
        }),
    )
    .await;
    log.run(
        &mut c,
        "children /zookeeper",
        get_children("/zookeeper", false),
    )
    .await;
    let null = Request::Create(CreateRequest {
        path: "/d/null".into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags: 0,
    });
    log.run(&mut c, "create null data", null).await;
    log.run(&mut c, "get null data", get_data("/d/null", false))
        .await;
    log.run(&mut c, "ephemeral", create("/d/eph", b"e", 1))
        .await;
    log.run(&mut c, "child of ephemeral", create("/d/eph/x", b"", 0))
        .await;
    log.run(&mut c, "ephemeral seq", create("/d/es-", b"e", 3))
        .await;
    log.run(
        &mut c,
        "getEphemerals all",
        Request::GetEphemerals(PathRequest { path: "/".into() }),
    )
    .await;
    log.run(
        &mut c,
        "getEphemerals prefix",
        Request::GetEphemerals(PathRequest {
            path: "/d/e".into(),
        }),
    )
    .await;
    log.run(
        &mut c,
        "getEphemerals none",
        Request::GetEphemerals(PathRequest {
            path: "/zzz".into(),
        }),
    )
    .await;
    log.run(
        &mut c,
        "all children number",
        Request::GetAllChildrenNumber(PathRequest { path: "/d".into() }),
    )
    .await;
    log.run(
        &mut c,
        "all children missing",
        Request::GetAllChildrenNumber(PathRequest {
            path: "/nope".into(),
        }),
    )
    .await;
    log.run(
        &mut c,
        "sync",
        Request::Sync(PathRequest {
            path: "/whatever".into(),
        }),
    )
    .await;
    log.run(&mut c, "ping", Request::Ping).await;
    log.run(&mut c, "whoami", Request::WhoAmI).await;
    log.run(&mut c, "big data", create("/d/big", &vec![7u8; 500_000], 0))
        .await;
    log.run(&mut c, "get big", exists("/d/big", false)).await;
    log.run(
        &mut c,
        "reconfig",
        Request::Reconfig(ReconfigRequest::default()),
    )
    .await;
    log.run(&mut c, "close", Request::CloseSession).await;
    log.lines.push(format!(
        "closed after closeSession: {}",
        c.is_closed().await
    ));
    let mut c = Client::connect(addr).await;
    log.run(&mut c, "ephemerals gone", get_children("/d", false))
        .await;
}

async fn sequential(addr: std::net::SocketAddr, log: &mut Log) {
    let mut c = Client::connect(addr).await;
    log.run(&mut c, "parent", create("/q", b"", 0)).await;
    for i in 0..3 {
        log.run(&mut c, &format!("seq {i}"), create("/q/s-", b"", 2))
            .await;
    }
    log.run(&mut c, "plain child", create("/q/plain", b"", 0))
        .await;
    log.run(&mut c, "delete one", delete("/q/s-0000000001", -1))
        .await;
    log.run(&mut c, "seq after delete", create2("/q/s-", b"", 2))
        .await;
    log.run(&mut c, "seq trailing slash", create("/q/", b"", 2))
        .await;
    log.run(&mut c, "seq in root-level", create("/qs-", b"", 2))
        .await;
    log.run(&mut c, "stat parent", exists("/q", false)).await;
    log.run(&mut c, "children", get_children("/q", false)).await;
}

async fn multi_ops(addr: std::net::SocketAddr, log: &mut Log) {
    let mut c = Client::connect(addr).await;
    log.run(&mut c, "base", create("/m", b"", 0)).await;
    let ok = multi_req(vec![
        MultiOp::Create(cr("/m/a")),
        MultiOp::Create2(cr("/m/a/b")),
        MultiOp::SetData(SetDataRequest {
            path: "/m/a".into(),
            data: Some(b"z".to_vec()),
            version: 0,
        }),
        MultiOp::Check(CheckVersionRequest {
            path: "/m/a".into(),
            version: 1,
        }),
        MultiOp::Create(CreateRequest {
            flags: 2,
            ..cr("/m/s-")
        }),
        MultiOp::Delete(DeleteRequest {
            path: "/m/a/b".into(),
            version: -1,
        }),
    ]);
    log.run(&mut c, "multi ok", ok).await;
    let fail = multi_req(vec![
        MultiOp::Create(cr("/m/x")),
        MultiOp::Delete(DeleteRequest {
            path: "/m/missing".into(),
            version: -1,
        }),
        MultiOp::Create(cr("/m/y")),
    ]);
    log.run(&mut c, "multi fail", fail).await;
    log.run(&mut c, "nothing applied", exists("/m/x", false))
        .await;
    let bad_check = multi_req(vec![
        MultiOp::Check(CheckVersionRequest {
            path: "/m/a".into(),
            version: 7,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/m/a".into(),
            data: None,
            version: -1,
        }),
    ]);
    log.run(&mut c, "multi bad check", bad_check).await;
    let bad_path = multi_req(vec![
        MultiOp::Create(cr("/m/bad/")),
        MultiOp::Create(cr("/m/c")),
    ]);
    log.run(&mut c, "multi bad path", bad_path).await;
    let exists_fail = multi_req(vec![
        MultiOp::Create(cr("/m/n")),
        MultiOp::Create(cr("/m/n")),
    ]);
    log.run(&mut c, "multi create twice", exists_fail).await;
    log.run(&mut c, "multi empty", multi_req(vec![])).await;
    let read = Request::MultiRead(vec![
        MultiOp::GetData(PathWatchRequest {
            path: "/m/a".into(),
            watch: false,
        }),
        MultiOp::GetData(PathWatchRequest {
            path: "/m/missing".into(),
            watch: false,
        }),
        MultiOp::GetChildren(PathWatchRequest {
            path: "/m".into(),
            watch: false,
        }),
    ]);
    log.run(&mut c, "multiRead", read).await;
    log.run(&mut c, "after", get_children2("/m", false)).await;
    log.run(&mut c, "still alive", Request::Ping).await;
}

async fn watches(addr: std::net::SocketAddr, log: &mut Log) {
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    log.run(&mut b, "base", create("/w", b"", 0)).await;
    log.run(&mut b, "child", create("/w/k", b"", 0)).await;
    log.run(&mut a, "data watch", get_data("/w", true)).await;
    log.run(&mut a, "child watch", get_children("/w", true))
        .await;
    log.run(&mut a, "exists watch missing", exists("/w/new", true))
        .await;
    log.run(&mut a, "getData watch missing", get_data("/w/none", true))
        .await;
    log.run(
        &mut a,
        "children watch missing",
        get_children("/w/none", true),
    )
    .await;
    log.run(&mut b, "set", set_data("/w", b"1", -1)).await;
    log.events(&mut a, "after set").await;
    log.run(
        &mut b,
        "set again (one-shot spent)",
        set_data("/w", b"2", -1),
    )
    .await;
    log.events(&mut a, "after set again").await;
    log.run(&mut b, "create new", create("/w/new", b"", 0))
        .await;
    log.events(&mut a, "after create").await;
    log.run(&mut b, "create none", create("/w/none", b"", 0))
        .await;
    log.events(&mut a, "nothing for failed getData/getChildren watches")
        .await;
    log.run(&mut a, "all three on k", get_data("/w/k", true))
        .await;
    log.run(&mut a, "exists k", exists("/w/k", true)).await;
    log.run(&mut a, "children k", get_children("/w/k", true))
        .await;
    log.run(&mut a, "children w", get_children("/w", true))
        .await;
    log.run(&mut b, "delete k", delete("/w/k", -1)).await;
    log.events(&mut a, "after delete").await;
    log.run(&mut a, "watch own write", get_data("/w", true))
        .await;
    log.run(&mut a, "own set", set_data("/w", b"3", -1)).await;
    log.lines.push(format!(
        "event before own reply: {}",
        events(&a.events.drain(..).collect::<Vec<_>>())
    ));
    log.run(
        &mut a,
        "check data watch none",
        Request::CheckWatches(WatchesRequest {
            path: "/w".into(),
            watcher_type: 2,
        }),
    )
    .await;
    log.run(&mut a, "data watch again", get_data("/w", true))
        .await;
    log.run(
        &mut a,
        "check data watch",
        Request::CheckWatches(WatchesRequest {
            path: "/w".into(),
            watcher_type: 2,
        }),
    )
    .await;
    log.run(
        &mut a,
        "check child watch",
        Request::CheckWatches(WatchesRequest {
            path: "/w".into(),
            watcher_type: 1,
        }),
    )
    .await;
    log.run(
        &mut a,
        "remove data watch",
        Request::RemoveWatches(WatchesRequest {
            path: "/w".into(),
            watcher_type: 2,
        }),
    )
    .await;
    log.run(
        &mut a,
        "remove again",
        Request::RemoveWatches(WatchesRequest {
            path: "/w".into(),
            watcher_type: 2,
        }),
    )
    .await;
    log.run(&mut b, "set after remove", set_data("/w", b"4", -1))
        .await;
    log.events(&mut a, "after removed watch").await;
    log.run(&mut b, "ephemeral", create("/w/e", b"", 1)).await;
    log.run(&mut a, "watch ephemeral", exists("/w/e", true))
        .await;
    log.run(&mut b, "close b", Request::CloseSession).await;
    log.events(&mut a, "after session close").await;
}

async fn persistent_watches(addr: std::net::SocketAddr, log: &mut Log) {
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    log.run(&mut b, "base p", create("/p", b"", 0)).await;
    log.run(&mut b, "base r", create("/r", b"", 0)).await;
    log.run(
        &mut a,
        "persistent",
        Request::AddWatch(AddWatchRequest {
            path: "/p".into(),
            mode: 0,
        }),
    )
    .await;
    log.run(
        &mut a,
        "recursive",
        Request::AddWatch(AddWatchRequest {
            path: "/r".into(),
            mode: 1,
        }),
    )
    .await;
    log.run(
        &mut a,
        "persistent on missing",
        Request::AddWatch(AddWatchRequest {
            path: "/later".into(),
            mode: 0,
        }),
    )
    .await;
    for (label, req) in [
        ("p child", create("/p/x", b"", 0)),
        ("p set", set_data("/p", b"1", -1)),
        ("p child set", set_data("/p/x", b"1", -1)),
        ("p child delete", delete("/p/x", -1)),
        ("r child", create("/r/a", b"", 0)),
        ("r grandchild", create("/r/a/b", b"", 0)),
        ("r grandchild set", set_data("/r/a/b", b"1", -1)),
        ("r grandchild delete", delete("/r/a/b", -1)),
        ("r set", set_data("/r", b"1", -1)),
        ("later create", create("/later", b"", 0)),
        ("p delete", delete("/p", -1)),
        ("p recreate", create("/p", b"", 0)),
    ] {
        log.run(&mut b, label, req).await;
        log.events(&mut a, &format!("after {label}")).await;
    }
    // checkWatches/removeWatches of types 4 and 5 are 3.9 features (3.8.0 answers -5); the
    // Rookery-only suite covers them. Type 3 (any) works on both.
    log.run(
        &mut a,
        "remove any",
        Request::RemoveWatches(WatchesRequest {
            path: "/p".into(),
            watcher_type: 3,
        }),
    )
    .await;
    log.run(&mut b, "p after remove", set_data("/p", b"2", -1))
        .await;
    log.events(&mut a, "after persistent removed").await;
    log.run(
        &mut a,
        "bad watcher type",
        Request::CheckWatches(WatchesRequest {
            path: "/p".into(),
            watcher_type: 9,
        }),
    )
    .await;
    log.run(
        &mut a,
        "bad mode",
        Request::AddWatch(AddWatchRequest {
            path: "/p".into(),
            mode: 9,
        }),
    )
    .await;
}

async fn acl_and_auth(addr: std::net::SocketAddr, log: &mut Log) {
    let mut owner = Client::connect(addr).await;
    let mut other = Client::connect(addr).await;
    log.run(&mut owner, "auth bob", digest_auth("bob:secret"))
        .await;
    log.run(&mut owner, "whoami", Request::WhoAmI).await;
    let bob = digest_id("bob:secret");
    log.run(
        &mut owner,
        "create read-only-for-bob",
        create_acl(
            "/acl",
            vec![Acl::new(perms::READ | perms::ADMIN, "digest", &bob)],
        ),
    )
    .await;
    log.run(&mut owner, "bob reads", get_data("/acl", false))
        .await;
    log.run(&mut owner, "bob cannot write", set_data("/acl", b"x", -1))
        .await;
    log.run(
        &mut owner,
        "bob cannot create child",
        create("/acl/c", b"", 0),
    )
    .await;
    log.run(&mut other, "other cannot read", get_data("/acl", false))
        .await;
    log.run(&mut other, "other cannot list", get_children("/acl", false))
        .await;
    log.run(
        &mut other,
        "other getACL",
        Request::GetAcl(PathRequest {
            path: "/acl".into(),
        }),
    )
    .await;
    log.run(
        &mut owner,
        "bob getACL",
        Request::GetAcl(PathRequest {
            path: "/acl".into(),
        }),
    )
    .await;
    log.run(
        &mut other,
        "other cannot setACL",
        Request::SetAcl(SetAclRequest {
            path: "/acl".into(),
            acl: Acl::open_unsafe(),
            version: -1,
        }),
    )
    .await;
    log.run(
        &mut owner,
        "creator all",
        Request::Create(CreateRequest {
            path: "/ca".into(),
            data: None,
            acl: Acl::creator_all(),
            flags: 0,
        }),
    )
    .await;
    log.run(
        &mut owner,
        "creator all acl",
        Request::GetAcl(PathRequest { path: "/ca".into() }),
    )
    .await;
    log.run(
        &mut other,
        "auth with no ids",
        Request::Create(CreateRequest {
            path: "/cb".into(),
            data: None,
            acl: Acl::creator_all(),
            flags: 0,
        }),
    )
    .await;
    for (label, acl) in [
        ("empty acl", vec![]),
        ("world other", vec![Acl::new(31, "world", "me")]),
        ("unknown scheme", vec![Acl::new(31, "nope", "x")]),
        ("bad digest", vec![Acl::new(31, "digest", "nocolon")]),
        ("bad ip", vec![Acl::new(31, "ip", "999.1.1.1")]),
    ] {
        log.run(&mut owner, label, create_acl("/bad", acl)).await;
    }
    log.run(
        &mut owner,
        "ip allowed",
        create_acl("/ip", vec![Acl::new(31, "ip", "127.0.0.0/8")]),
    )
    .await;
    log.run(&mut other, "ip read", get_data("/ip", false)).await;
    log.run(
        &mut owner,
        "ip denied",
        create_acl("/ip2", vec![Acl::new(31, "ip", "10.0.0.0/8")]),
    )
    .await;
    log.run(&mut other, "ip2 read", get_data("/ip2", false))
        .await;
    log.run(
        &mut owner,
        "setACL bad version",
        Request::SetAcl(SetAclRequest {
            path: "/ca".into(),
            acl: Acl::open_unsafe(),
            version: 3,
        }),
    )
    .await;
    log.run(
        &mut owner,
        "setACL",
        Request::SetAcl(SetAclRequest {
            path: "/ca".into(),
            acl: Acl::read_unsafe(),
            version: 0,
        }),
    )
    .await;
    log.run(
        &mut owner,
        "setACL again no admin",
        Request::SetAcl(SetAclRequest {
            path: "/ca".into(),
            acl: Acl::open_unsafe(),
            version: -1,
        }),
    )
    .await;
    log.run(
        &mut owner,
        "no-delete parent",
        create_acl(
            "/nd",
            vec![Acl::new(perms::ALL & !perms::DELETE, "world", "anyone")],
        ),
    )
    .await;
    log.run(&mut owner, "child of no-delete", create("/nd/c", b"", 0))
        .await;
    log.run(&mut owner, "delete denied", delete("/nd/c", -1))
        .await;
    log.run(
        &mut owner,
        "delete missing denied first",
        delete("/nd/missing", -1),
    )
    .await;
    let mut su = Client::connect(addr).await;
    log.run(&mut su, "super auth", digest_auth("super:letmein"))
        .await;
    log.run(&mut su, "super reads", get_data("/acl", false))
        .await;
    log.run(&mut su, "super deletes", delete("/ip2", -1)).await;
    log.run(
        &mut other,
        "ip auth",
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "ip".into(),
            auth: vec![],
        }),
    )
    .await;
    log.run(
        &mut other,
        "bad scheme auth",
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "kerberos".into(),
            auth: b"x".to_vec(),
        }),
    )
    .await;
    log.lines.push(format!(
        "closed after auth failure: {}",
        other.is_closed().await
    ));
}

async fn sessions(addr: std::net::SocketAddr, log: &mut Log) {
    let short = ConnectRequest {
        timeout_ms: 1000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let c = Client::connect_with(addr, short).await.unwrap();
    log.lines.push(format!("negotiated low: {}", c.timeout_ms));
    let long = ConnectRequest {
        timeout_ms: 1_000_000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let mut c = Client::connect_with(addr, long).await.unwrap();
    log.lines.push(format!("negotiated high: {}", c.timeout_ms));
    log.run(&mut c, "eph", create("/s-eph", b"", 1)).await;
    let resume = ConnectRequest {
        timeout_ms: 10_000,
        session_id: c.session_id,
        passwd: c.passwd.clone(),
        last_zxid_seen: c.last_zxid,
        read_only: Some(false),
        ..Default::default()
    };
    let mut c2 = Client::connect_with(addr, resume.clone()).await.unwrap();
    log.lines.push(format!(
        "resumed same id: {}",
        c2.session_id == c.session_id
    ));
    log.lines
        .push(format!("old connection closed: {}", c.is_closed().await));
    log.run(&mut c2, "eph still there", exists("/s-eph", false))
        .await;
    let wrong = ConnectRequest {
        passwd: vec![1; 16],
        ..resume.clone()
    };
    log.lines.push(format!(
        "wrong password refused: {}",
        Client::connect_with(addr, wrong).await.is_none()
    ));
    // Apache ZooKeeper closes the owner's connection before it checks the password; Rookery checks
    // first (docs/compatibility.md). Either way the owner can come back with the right password.
    drop(c2);
    let ahead = ConnectRequest {
        last_zxid_seen: 1 << 40,
        ..resume.clone()
    };
    log.lines.push(format!(
        "client ahead refused: {}",
        Client::connect_with(addr, ahead).await.is_none()
    ));
    let mut c2 = Client::connect_with(addr, resume.clone()).await.unwrap();
    log.run(&mut c2, "close", Request::CloseSession).await;
    log.lines.push(format!(
        "closed session refused: {}",
        Client::connect_with(addr, resume).await.is_none()
    ));
    let mut c3 = Client::connect(addr).await;
    log.run(&mut c3, "eph gone", exists("/s-eph", false)).await;
    let no_ro = ConnectRequest {
        timeout_ms: 10_000,
        passwd: vec![0; 16],
        read_only: None,
        ..Default::default()
    };
    let mut c4 = Client::connect_with(addr, no_ro).await.unwrap();
    log.run(&mut c4, "old client works", exists("/", false))
        .await;
}

async fn containers_and_ttl(addr: std::net::SocketAddr, log: &mut Log) {
    let mut c = Client::connect(addr).await;
    let container = |p: &str| {
        Request::CreateContainer(CreateRequest {
            path: p.into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            flags: 4,
        })
    };
    log.run(&mut c, "container", container("/ct")).await;
    log.run(&mut c, "container stat", exists("/ct", false))
        .await;
    log.run(&mut c, "ephemeral child", create("/ct/e", b"", 1))
        .await;
    log.run(&mut c, "seq child", create("/ct/s-", b"", 2)).await;
    log.run(&mut c, "delete child", delete("/ct/s-0000000001", -1))
        .await;
    log.run(&mut c, "delete eph", delete("/ct/e", -1)).await;
    log.run(&mut c, "never-used container", container("/ct2"))
        .await;
    let ttl = |p: &str, flags: i32, ttl: i64| {
        Request::CreateTtl(CreateTtlRequest {
            path: p.into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            flags,
            ttl,
        })
    };
    log.run(&mut c, "ttl", ttl("/ttl", 5, 300)).await;
    log.run(&mut c, "ttl seq", ttl("/ttls-", 6, 300)).await;
    log.run(&mut c, "ttl bad flags", ttl("/ttlx", 0, 300)).await;
    log.run(&mut c, "ttl zero", ttl("/ttlx", 5, 0)).await;
    log.run(&mut c, "ttl too big", ttl("/ttlx", 5, 1 << 41))
        .await;
    log.run(&mut c, "ttl with child", ttl("/ttlp", 5, 300))
        .await;
    log.run(&mut c, "child of ttl", create("/ttlp/c", b"", 0))
        .await;
    log.run(
        &mut c,
        "deleteContainer normal",
        Request::DeleteContainer(PathRequest {
            path: "/ttlp/c".into(),
        }),
    )
    .await;
    // Containers are checked every second here; wait (bounded) for the reaper.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let gone = c.call(exists("/ct", false)).await.err() == ErrorCode::NoNode.code()
            && c.call(exists("/ttl", false)).await.err() == ErrorCode::NoNode.code();
        if gone || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log.run(&mut c, "container reaped", exists("/ct", false))
        .await;
    log.run(&mut c, "ttl reaped", exists("/ttl", false)).await;
    log.run(&mut c, "never-used kept", exists("/ct2", false))
        .await;
    log.run(&mut c, "ttl with child kept", exists("/ttlp", false))
        .await;
}

async fn set_watches_catch_up(addr: std::net::SocketAddr, log: &mut Log) {
    let mut w = Client::connect(addr).await;
    log.run(&mut w, "base", create("/sw", b"", 0)).await;
    log.run(&mut w, "k", create("/sw/k", b"", 0)).await;
    log.run(&mut w, "gone", create("/sw/gone", b"", 0)).await;
    let rel = w.call(exists("/sw/gone", false)).await;
    let Some(Response::Stat(s)) = rel.body else {
        panic!("stat")
    };
    let rel_zxid = s.stat.czxid;
    log.run(&mut w, "delete gone", delete("/sw/gone", -1)).await;
    log.run(&mut w, "set k", set_data("/sw/k", b"1", -1)).await;
    let sw = Request::SetWatches(SetWatches {
        relative_zxid: rel_zxid,
        data_watches: vec!["/sw/gone".into(), "/sw/k".into(), "/sw".into()],
        exist_watches: vec!["/sw/k".into(), "/sw/missing".into()],
        child_watches: vec!["/sw".into()],
    });
    log.run(&mut w, "setWatches", sw).await;
    log.events(&mut w, "catch-up").await;
    log.run(&mut w, "create missing", create("/sw/missing", b"", 0))
        .await;
    log.events(&mut w, "after create").await;
    log.run(&mut w, "set base", set_data("/sw", b"", -1)).await;
    log.events(&mut w, "after set base").await;
}

/// Runs every scenario; between `first_half` scenarios and the rest, calls `between`.
async fn run_all(
    addr: std::net::SocketAddr,
    mut between: impl FnMut(),
) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    macro_rules! scenario {
        ($name:ident) => {{
            let mut log = Log { lines: Vec::new() };
            $name(addr, &mut log).await;
            out.push((stringify!($name), log.lines));
        }};
    }
    scenario!(crud_and_errors);
    scenario!(sequential);
    scenario!(multi_ops);
    scenario!(watches);
    between();
    scenario!(persistent_watches);
    scenario!(acl_and_auth);
    scenario!(sessions);
    scenario!(containers_and_ttl);
    scenario!(set_watches_catch_up);
    out
}

fn compare(expected: &[(&str, Vec<String>)], actual: &[(&str, Vec<String>)]) {
    if std::env::var_os("ROOKERY_DIFF_PRINT").is_some() {
        for (name, lines) in actual {
            println!("== {name}\n{}", lines.join("\n"));
        }
    }
    let mut failures = Vec::new();
    for ((name, want), (_, got)) in expected.iter().zip(actual) {
        assert!(!want.is_empty(), "scenario {name} recorded nothing");
        if want != got {
            let mut diff = format!("scenario {name} differs (- zookeeper, + rookery):\n");
            for i in 0..want.len().max(got.len()) {
                let (w, g) = (want.get(i), got.get(i));
                if w != g {
                    diff.push_str(&format!(
                        "- {}\n+ {}\n",
                        w.map_or("", |s| s),
                        g.map_or("", |s| s)
                    ));
                }
            }
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const SUPER: &str = "super:letmein";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rookery_matches_apache_zookeeper() {
    let super_digest = digest_id(SUPER);
    let zk = start_zookeeper(ZkOptions {
        sysprops: vec![(
            "zookeeper.DigestAuthenticationProvider.superDigest".into(),
            super_digest.clone(),
        )],
        ..Default::default()
    });
    let rk = start_rookery(&[(
        "zookeeper.DigestAuthenticationProvider.superDigest",
        &super_digest,
    )]);
    let (expected, actual) = tokio::join!(run_all(zk.addr, || {}), run_all(rk.addr, || {}));
    compare(&expected, &actual);
}

/// The same suite, with Rookery killed (SIGKILL) and restarted halfway: the second half runs on
/// top of recovered state, and the transcripts must still match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rookery_matches_apache_zookeeper_across_a_restart() {
    let super_digest = digest_id(SUPER);
    let zk = start_zookeeper(ZkOptions {
        sysprops: vec![(
            "zookeeper.DigestAuthenticationProvider.superDigest".into(),
            super_digest.clone(),
        )],
        ..Default::default()
    });
    let mut rk = start_rookery(&[
        (
            "zookeeper.DigestAuthenticationProvider.superDigest",
            &super_digest,
        ),
        ("snapCount", "40"),
    ]);
    let addr = rk.addr;
    let expected = run_all(zk.addr, || {}).await;
    let actual = run_all(addr, || rk.crash_and_restart()).await;
    compare(&expected, &actual);
    assert!(rk.log().contains("recovered"), "{}", rk.log());
}

/// The same suite against a follower of a 3-member ensemble: writes are forwarded to the leader
/// and answered at their commit, sessions are global, and the transcripts must still match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_ensemble_matches_apache_zookeeper() {
    let super_digest = digest_id(SUPER);
    let zk = start_zookeeper(ZkOptions {
        sysprops: vec![(
            "zookeeper.DigestAuthenticationProvider.superDigest".into(),
            super_digest.clone(),
        )],
        ..Default::default()
    });
    let mut opts = common::ensemble::Options::new(3);
    opts.tick_ms = 2000;
    opts.extra.push((
        "zookeeper.DigestAuthenticationProvider.superDigest".into(),
        super_digest.clone(),
    ));
    let ens = common::ensemble::Ensemble::start(opts).await;
    let follower = (0..3)
        .find(|&i| ens.members[i].mode().as_deref() == Some("follower"))
        .expect("a follower");
    let (expected, actual) = tokio::join!(
        run_all(zk.addr, || {}),
        run_all(ens.members[follower].client, || {})
    );
    compare(&expected, &actual);
}
