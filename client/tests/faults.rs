//! Fault tests through the in-repo TCP proxy (`common/proxy.rs`): a lost reply, a blackhole
//! longer than the session timeout, failover to another server, session takeover, and a server
//! restart.
//!
//! The restart test needs a server that keeps sessions and data across a restart: both do
//! (ZooKeeper and Rookery log every transaction, session creation included, before they
//! answer), so it kills the server with SIGKILL and starts it again on the same data directory
//! and port. The failover test covers "another server of the ensemble": two proxies in front of
//! one server look like two servers to the client.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::acl::CREATOR_ALL_ACL;
use rookery_client::{
    AddWatchMode, Client, CreateOptions, Error, EventType, PersistentEvent, PersistentWatcher,
    SessionState,
};

async fn event<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .expect("timed out waiting for a watch event")
}

/// The event a one-shot watch fired with (bounded wait).
async fn fired(w: rookery_client::OneshotWatcher) -> rookery_client::WatchedEvent {
    event(w).await.expect("the watch fired with an event")
}

/// Reads the stream (at most 10 items) until `ty` on `path` arrives; a reconnect before it
/// must have put a `Resync` marker in the stream.
async fn expect_event(w: &mut PersistentWatcher, ty: EventType, path: &str) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let item = event(w.next()).await.expect("the stream ended");
        if let PersistentEvent::Node(ev) = &item {
            if ev.event_type == ty && ev.path == path {
                assert!(
                    seen.contains(&PersistentEvent::Resync),
                    "no Resync before the event of the new connection: {seen:?}"
                );
                return;
            }
        }
        seen.push(item);
    }
    panic!("no {ty:?} on {path}; got {seen:?}");
}

#[tokio::test]
async fn lost_reply_is_outcome_unknown_and_the_session_survives() {
    each_server("lost-reply", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let observer = connect(addr).await;
        let root = unique_root("lost");
        c.create(&root, b"old", &CreateOptions::persistent())
            .await
            .unwrap();
        let eph = format!("{root}-eph");
        c.create(&eph, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        let session = c.session_id();

        // The write reaches the server, but its reply is swallowed; then the connection drops.
        proxy.hold_replies();
        let write = c.set_data(&root, b"new", None);
        let read = c.get_data(&root);
        eventually(WAIT, "the write to be applied", || {
            let o = observer.clone();
            let r = root.clone();
            async move { o.get_data(&r).await.unwrap().0 == b"new" }
        })
        .await;
        proxy.drop_all();
        proxy.restore();
        let err = write.await.unwrap_err();
        assert_eq!(
            err,
            Error::ConnectionLoss {
                outcome_unknown: true
            },
            "{kind:?}"
        );
        assert!(err.is_outcome_unknown());
        assert_eq!(
            read.await.unwrap_err(),
            Error::ConnectionLoss {
                outcome_unknown: false
            }
        );

        // The client reconnects by itself, to the same session.
        wait_state(&c, SessionState::Connected, WAIT).await;
        assert_eq!(c.session_id(), session);
        assert_eq!(c.get_data(&root).await.unwrap().0, b"new");
        assert!(
            observer.exists(&eph).await.unwrap().is_some(),
            "the ephemeral survived"
        );
        c.close().await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn blackhole_longer_than_the_timeout_expires_the_session_client_side() {
    each_server("blackhole", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(4))
            .connect()
            .await
            .unwrap();
        let timeout = c.session_timeout().unwrap();
        assert_eq!(
            timeout,
            Duration::from_secs(4),
            "{kind:?} negotiated timeout"
        );
        let (_, watch) = c.exists_watched("/never-created").await.unwrap();
        let mut states = c.state_watcher();
        states.borrow_and_update();

        proxy.blackhole();
        let start = tokio::time::Instant::now();
        // Sent into the blackhole: lost with the connection.
        let lost = c.get_data("/");
        let mut queued = None;
        let mut seen = Vec::new();
        let expired = tokio::time::timeout(timeout + Duration::from_secs(6), async {
            while states.changed().await.is_ok() {
                let s = *states.borrow_and_update();
                seen.push(s);
                if s == SessionState::Disconnected {
                    // Made while disconnected: waits for a connection that never comes.
                    queued = Some(c.get_data("/"));
                }
                if s == SessionState::Expired {
                    return;
                }
            }
        })
        .await;
        let elapsed = start.elapsed();
        assert!(
            expired.is_ok(),
            "{kind:?}: not expired after {elapsed:?}; states {seen:?}"
        );
        assert_eq!(
            seen,
            vec![SessionState::Disconnected, SessionState::Expired]
        );
        // Expiry is declared one timeout after the last reply (a ping at most T/3 earlier).
        assert!(elapsed >= timeout / 2, "{elapsed:?}");
        assert!(
            elapsed <= timeout + Duration::from_millis(1500),
            "{elapsed:?}"
        );
        // Nothing came from a server: the proxy forwarded nothing since the blackhole began.
        assert!(
            proxy.connections() >= 1,
            "the blackholed connections are still open"
        );
        assert_eq!(
            lost.await.unwrap_err(),
            Error::ConnectionLoss {
                outcome_unknown: false
            }
        );
        assert_eq!(queued.unwrap().await.unwrap_err(), Error::SessionExpired);
        assert_eq!(event(watch).await, Err(Error::SessionExpired));
        assert_eq!(c.get_data("/").await.unwrap_err(), Error::SessionExpired);
    })
    .await;
}

#[tokio::test]
async fn failover_to_another_server_keeps_the_session_and_misses_no_event() {
    each_server("failover", |kind, addr| async move {
        let p1 = Proxy::start(addr).await;
        let p2 = Proxy::start(addr).await;
        let c = Client::builder(&format!("{},{}", p1.addr, p2.addr))
            .session_timeout(Duration::from_secs(10))
            .rng_seed(7)
            .connect()
            .await
            .unwrap();
        let observer = connect(addr).await;
        let root = unique_root("failover");
        observer
            .create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let a = format!("{root}/a");
        observer
            .create(&a, b"0", &CreateOptions::persistent())
            .await
            .unwrap();
        let eph = format!("{root}/eph");
        c.create(&eph, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        // Credentials live on the connection: the client must send them again after failover.
        c.add_digest_auth("failover", "pw").await.unwrap();
        let private = format!("{root}/private");
        let mine = CreateOptions::persistent().with_acl(CREATOR_ALL_ACL.clone());
        c.create(&private, b"mine", &mine).await.unwrap();
        let (_, _, data_w) = c.get_data_watched(&a).await.unwrap();
        let (_, child_w) = c.get_children_watched(&root).await.unwrap();
        let (_, exist_w) = c.exists_watched(&format!("{root}/b")).await.unwrap();
        let mut rec = c
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        let session = c.session_id();
        let (active, standby) = if p1.connections() > 0 {
            (&p1, &p2)
        } else {
            (&p2, &p1)
        };
        assert_eq!(active.connections(), 1);

        // Cut the client off, change what it watches, then let it back in through the other
        // "server".
        standby.refuse();
        active.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;
        observer.set_data(&a, b"1", None).await.unwrap();
        observer
            .create(&format!("{root}/b"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
        standby.restore();
        wait_state(&c, SessionState::Connected, WAIT).await;
        assert_eq!(
            c.session_id(),
            session,
            "{kind:?}: same session after failover"
        );
        assert_eq!(standby.connections(), 1);
        assert_eq!(
            c.get_data(&private).await.unwrap().0,
            b"mine",
            "auth re-sent"
        );
        assert_eq!(observer.get_data(&private).await, Err(Error::NoAuth));

        // setWatches with the last zxid seen delivers what happened meanwhile.
        let ev = fired(data_w).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeDataChanged, a.as_str())
        );
        let ev = fired(child_w).await;
        assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
        let ev = fired(exist_w).await;
        assert_eq!(ev.event_type, EventType::NodeCreated);
        // The recursive watch is re-armed: it sees the next change. (setWatches2 has no
        // catch-up events of its own for persistent watches; the catch-up events of the
        // one-shot watches under it reach it too, as in the Java client.)
        let after = format!("{root}/after");
        observer
            .create(&after, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        expect_event(&mut rec, EventType::NodeCreated, &after).await;
        assert!(observer.exists(&eph).await.unwrap().is_some());
        c.close().await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn another_client_can_resume_the_session() {
    each_server("resume", |_kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .connect()
            .await
            .unwrap();
        let eph = unique_root("resume");
        c.create(&eph, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        // Cut the first client off so that it does not take the session back.
        proxy.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;
        let taken = Client::builder(&addr.to_string())
            .resume_session(c.session_id(), c.session_password())
            .connect()
            .await
            .unwrap();
        assert_eq!(taken.session_id(), c.session_id());
        assert_eq!(taken.get_ephemerals("/").await.unwrap(), vec![eph.clone()]);
        taken.close().await.unwrap();
        let gone = Client::builder(&addr.to_string())
            .resume_session(c.session_id(), c.session_password())
            .connect()
            .await;
        assert_eq!(gone.map(|_| ()), Err(Error::SessionExpired));
        c.close().await.unwrap();
        assert_eq!(c.state(), SessionState::Closed);
    })
    .await;
}

#[tokio::test]
async fn server_restart_resumes_the_session_and_re_arms_watches() {
    for kind in selected() {
        eprintln!("--- restart against {kind:?}");
        restart(kind).await;
    }
}

async fn restart(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let start =
        |dir: std::path::PathBuf| tokio::task::spawn_blocking(move || start_in(kind, &dir, port));
    let server = start(dir.path().to_path_buf()).await.unwrap();
    let proxy = Proxy::start(server.addr).await;
    let c = Client::builder(&proxy.addr.to_string())
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let writer = Client::builder(&server.addr.to_string())
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let root = "/restart";
    writer
        .create(root, b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let a = format!("{root}/a");
    writer
        .create(&a, b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    let eph = format!("{root}/eph");
    c.create(&eph, b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, data_w) = c.get_data_watched(&a).await.unwrap();
    let (_, child_w) = c.get_children_watched(root).await.unwrap();
    let (_, exist_w) = c.exists_watched(&format!("{root}/b")).await.unwrap();
    let mut rec = c
        .add_watch(root, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let session = c.session_id();

    // Keep the client away while the server restarts and things change.
    proxy.refuse();
    wait_state(&c, SessionState::Disconnected, WAIT).await;
    server.kill();
    let server = start(dir.path().to_path_buf()).await.unwrap();
    wait_state(&writer, SessionState::Connected, WAIT).await;
    writer.set_data(&a, b"1", None).await.unwrap();
    writer
        .create(&format!("{root}/b"), b"", &CreateOptions::persistent())
        .await
        .unwrap();
    proxy.restore();
    wait_state(&c, SessionState::Connected, WAIT).await;
    assert_eq!(
        c.session_id(),
        session,
        "{kind:?}: the session survived the restart"
    );
    assert!(
        writer.exists(&eph).await.unwrap().is_some(),
        "{kind:?}: and so did its ephemeral"
    );

    // No event since the last zxid the client saw is missed.
    let ev = fired(data_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, a.as_str())
    );
    assert_eq!(
        fired(child_w).await.event_type,
        EventType::NodeChildrenChanged
    );
    assert_eq!(fired(exist_w).await.event_type, EventType::NodeCreated);
    let after = format!("{root}/after");
    writer
        .create(&after, b"", &CreateOptions::persistent())
        .await
        .unwrap();
    expect_event(&mut rec, EventType::NodeCreated, &after).await;
    c.close().await.unwrap();
    writer.close().await.unwrap();
    drop(server);
}
