//! Behaviour Rookery takes from ZooKeeper 3.9 (where 3.8.0 differs), sessions that expire, and
//! the four-letter words. These run against Rookery alone.

mod common;

use std::time::Duration;

use common::*;
use rookery_proto::*;

#[tokio::test]
async fn three_nine_watch_types_and_acl_checks() {
    let server = start_rookery(&[]);
    let mut a = Client::connect(server.addr).await;
    let mut b = Client::connect(server.addr).await;
    b.call(create("/r", b"", 0)).await;
    assert_eq!(
        a.call(Request::AddWatch(AddWatchRequest {
            path: "/r".into(),
            mode: 1
        }))
        .await
        .err(),
        0
    );
    assert_eq!(
        a.call(Request::AddWatch(AddWatchRequest {
            path: "/p".into(),
            mode: 0
        }))
        .await
        .err(),
        0
    );
    let check = |path: &str, t| {
        Request::CheckWatches(WatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    assert_eq!(a.call(check("/r", 5)).await.err(), 0);
    assert_eq!(
        a.call(check("/r", 4)).await.err(),
        ErrorCode::NoWatcher.code()
    );
    assert_eq!(a.call(check("/p", 4)).await.err(), 0);
    let remove = Request::RemoveWatches(WatchesRequest {
        path: "/r".into(),
        watcher_type: 5,
    });
    assert_eq!(a.call(remove).await.err(), 0);
    b.call(create("/r/x", b"", 0)).await;
    assert!(
        a.flush_events().await.is_empty(),
        "the recursive watch was removed"
    );

    // exists checks READ on an existing node (3.8.4+/3.9.2+), and watch events are filtered by it.
    b.call(digest_auth("bob:pw")).await;
    let bob_only = vec![Acl::new(perms::ALL, "digest", &digest_id("bob:pw"))];
    assert_eq!(b.call(create_acl("/secret", bob_only)).await.err(), 0);
    assert_eq!(
        a.call(exists("/secret", true)).await.err(),
        ErrorCode::NoAuth.code()
    );
    assert_eq!(
        a.call(exists("/secret/none", true)).await.err(),
        ErrorCode::NoNode.code()
    );
    a.call(Request::AddWatch(AddWatchRequest {
        path: "/secret".into(),
        mode: 0,
    }))
    .await;
    b.call(set_data("/secret", b"x", -1)).await;
    assert!(a.flush_events().await.is_empty(), "no READ, no event");

    // create2 inside multi returns its stat (3.9).
    let r = a
        .call(Request::Multi(vec![MultiOp::Create2(CreateRequest {
            path: "/m".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        })]))
        .await;
    let Some(Response::Multi(res)) = r.body else {
        panic!("{r:?}")
    };
    assert!(matches!(&res[0], MultiResult::Create2(p, s) if p == "/m" && s.czxid > 0));
}

#[tokio::test]
async fn expired_sessions_lose_their_ephemerals() {
    let server = start_rookery(&[("tickTime", "200"), ("minSessionTimeout", "400")]);
    let mut watcher = Client::connect(server.addr).await;
    let req = ConnectRequest {
        timeout_ms: 400,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let mut dying = Client::connect_with(server.addr, req.clone())
        .await
        .unwrap();
    assert_eq!(dying.timeout_ms, 400);
    assert_eq!(dying.call(create("/eph", b"", 1)).await.err(), 0);
    assert_eq!(watcher.call(exists("/eph", true)).await.err(), 0);
    let resume = ConnectRequest {
        session_id: dying.session_id,
        passwd: dying.passwd.clone(),
        ..req
    };
    // Go silent: no pings. The server expires the session and closes the socket.
    assert!(dying.is_closed().await);
    let evs = watcher.wait_events(1, Duration::from_secs(10)).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(
        (evs[0].event_type, evs[0].path.as_str()),
        (EventType::NodeDeleted.code(), "/eph")
    );
    assert_eq!(
        watcher.call(exists("/eph", false)).await.err(),
        ErrorCode::NoNode.code()
    );
    // Reattaching to the dead session gets timeout 0 (SESSIONEXPIRED to the client).
    assert!(Client::connect_with(server.addr, resume).await.is_none());
}

#[tokio::test]
async fn pings_keep_a_session_alive() {
    let server = start_rookery(&[("tickTime", "200"), ("minSessionTimeout", "600")]);
    let req = ConnectRequest {
        timeout_ms: 600,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let mut c = Client::connect_with(server.addr, req).await.unwrap();
    c.call(create("/alive", b"", 1)).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = c.call(Request::Ping).await;
        assert_eq!((r.header.xid, r.err()), (xid::PING, 0));
    }
    assert_eq!(c.call(exists("/alive", false)).await.err(), 0);
}

#[tokio::test]
async fn four_letter_words_honour_the_whitelist() {
    let open = start_rookery(&[]);
    assert_eq!(four_letter(open.addr, "ruok"), "imok");
    let mut c = Client::connect(open.addr).await;
    c.call(create("/x", b"", 1)).await;
    c.call(get_data("/x", true)).await;
    let srvr = four_letter(open.addr, "srvr");
    assert!(
        srvr.contains("Mode: standalone") && srvr.contains("Node count: 6"),
        "{srvr}"
    );
    let stat = four_letter(open.addr, "stat");
    assert!(
        stat.contains("Clients:") && stat.contains("Mode: standalone"),
        "{stat}"
    );
    let mntr = four_letter(open.addr, "mntr");
    assert!(
        mntr.contains("zk_server_state\tstandalone") && mntr.contains("zk_ephemerals_count\t1"),
        "{mntr}"
    );
    assert!(four_letter(open.addr, "conf").contains("tickTime=2000"));
    assert!(four_letter(open.addr, "cons").contains(&format!("sid=0x{:x}", c.session_id)));
    assert_eq!(four_letter(open.addr, "crst"), "Connection stats reset.\n");
    assert!(four_letter(open.addr, "dump").contains("\t/x"));
    assert!(four_letter(open.addr, "envi").starts_with("Environment:"));
    assert!(four_letter(open.addr, "wchs").contains("Total watches:1"));
    assert!(four_letter(open.addr, "wchc").contains("\t/x"));
    assert!(four_letter(open.addr, "wchp").starts_with("/x\n"));
    assert!(four_letter(open.addr, "dirs").contains("datadir_size:"));
    assert_eq!(four_letter(open.addr, "isro"), "rw");

    let strict = start_rookery(&[("4lw.commands.whitelist", "srvr")]);
    assert_eq!(
        four_letter(strict.addr, "mntr"),
        "mntr is not executed because it is not in the whitelist.\n"
    );
    assert!(four_letter(strict.addr, "srvr").contains("Zookeeper version:"));
}

#[tokio::test]
async fn wrong_password_does_not_kick_the_owner() {
    let server = start_rookery(&[]);
    let mut owner = Client::connect(server.addr).await;
    let wrong = ConnectRequest {
        timeout_ms: 10_000,
        session_id: owner.session_id,
        passwd: vec![9; 16],
        read_only: Some(false),
        ..Default::default()
    };
    assert!(Client::connect_with(server.addr, wrong).await.is_none());
    assert_eq!(owner.call(exists("/", false)).await.err(), 0);
}
