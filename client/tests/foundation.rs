//! What recipes build on, against both servers through the fault proxy: session events with
//! generations, renewed sessions, the request bound while the server is unreachable, persistent
//! watch markers (Resync, Lagged) and zxids, and protected creates whose reply is lost after the
//! server applied them.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::names::{protected_id, sequence_number};
use rookery_client::{
    AddWatchMode, Client, CreateMode, CreateOptions, Error, EventType, LossReason, PersistentEvent,
    SessionEvent, SessionEventKind, SessionEvents, SessionState,
};

/// The next session event (bounded wait).
async fn next_event(events: &mut SessionEvents) -> SessionEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("timed out waiting for a session event")
        .expect("the event stream ended")
}

#[tokio::test]
async fn session_events_tell_suspension_reconnection_and_loss_with_generations() {
    each_server("events", |kind, addr| async move {
        let (proxy, c) = renewing_behind_proxy(addr).await;
        let mut events = c.session_events();
        assert_eq!(c.session_generation(), 1);
        assert_eq!(c.disconnected_for(), None);
        let first_session = c.session_id();
        let eph = unique_root("renewed-eph");
        c.create(&eph, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();

        // A dropped connection: Suspended, then the same session back.
        proxy.drop_all();
        let e = next_event(&mut events).await;
        assert_eq!((e.kind, e.generation), (SessionEventKind::Suspended, 1));
        let e = next_event(&mut events).await;
        assert_eq!(
            (e.kind, e.generation),
            (SessionEventKind::Reconnected { same_session: true }, 1),
            "{kind:?}"
        );
        assert_eq!(c.session_id(), first_session);

        // Cut off for longer than the session timeout: the client declares the session lost,
        // the servers expire it, and the renewing client starts generation 2.
        proxy.refuse();
        let e = next_event(&mut events).await;
        assert_eq!(e.kind, SessionEventKind::Suspended);
        assert!(c.disconnected_for().is_some());
        let e = next_event(&mut events).await;
        assert_eq!(
            (e.kind, e.generation),
            (SessionEventKind::Lost(LossReason::ClientExpired), 1)
        );
        proxy.restore();
        let e = next_event(&mut events).await;
        assert_eq!((e.kind, e.generation), (SessionEventKind::Connected, 2));
        assert_eq!(c.session_generation(), 2);
        assert_ne!(c.session_id(), first_session);
        assert_eq!(c.state(), SessionState::Connected);
        // The old session's ephemeral is gone (the servers expired it) and the same handle
        // works in the new session.
        let observer = connect(addr).await;
        eventually(WAIT, "the old ephemeral to go", || {
            let o = observer.clone();
            let p = eph.clone();
            async move { o.exists(&p).await.unwrap().is_none() }
        })
        .await;
        c.create(&eph, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        let stat = observer.exists(&eph).await.unwrap().unwrap();
        assert_eq!(stat.ephemeral_owner, c.session_id());

        c.close().await.unwrap();
        let e = next_event(&mut events).await;
        assert_eq!(
            (e.kind, e.generation),
            (SessionEventKind::Lost(LossReason::Closed), 2)
        );
        assert!(
            tokio::time::timeout(WAIT, events.next())
                .await
                .unwrap()
                .is_none(),
            "the stream ends with the session task"
        );
        observer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_request_bound_holds_while_the_server_is_unreachable() {
    each_server("bound", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .max_queued_requests(50)
            .connect()
            .await
            .unwrap();
        let root = unique_root("bound");
        c.create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        proxy.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;

        // 50 requests wait for a connection; the 51st is refused at once, however long the
        // driver has been draining its channel.
        let held: Vec<_> = (0..50)
            .map(|i| c.create(&format!("{root}/n{i}"), b"", &CreateOptions::persistent()))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            c.get_data(&root).await.unwrap_err(),
            Error::TooManyRequests { limit: 50 },
            "{kind:?}"
        );

        // The server comes back: every held request is answered, and the places come back.
        proxy.restore();
        for (i, r) in futures::future::join_all(held)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.unwrap(), format!("{root}/n{i}"));
        }
        assert_eq!(c.get_children(&root).await.unwrap().len(), 50);

        // A full client still closes.
        proxy.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;
        let _held: Vec<_> = (0..50).map(|_| c.exists(&root)).collect();
        assert!(c.exists(&root).await.is_err());
        tokio::time::timeout(WAIT, c.close())
            .await
            .expect("close gets through a full client")
            .unwrap();
        assert_eq!(c.state(), SessionState::Closed);
        let cleanup = connect(addr).await;
        for i in 0..50 {
            cleanup.delete(&format!("{root}/n{i}"), None).await.unwrap();
        }
        cleanup.delete(&root, None).await.unwrap();
        cleanup.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn persistent_watches_carry_zxids_resync_after_reconnects_and_report_lag() {
    each_server("persistent-markers", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let writer = connect(addr).await;
        let root = unique_root("markers");
        writer
            .create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let mut w = c
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await
            .unwrap();

        // The zxid of the transaction that fired the event: Rookery and ZooKeeper 3.9 send it;
        // 3.8 sends -1 in the notification header (ZOOKEEPER-4655 came in 3.9).
        let stat = writer.set_data(&root, b"1", None).await.unwrap();
        let ev = match tokio::time::timeout(WAIT, w.next()).await.unwrap() {
            Some(PersistentEvent::Node(ev)) => ev,
            other => panic!("{other:?}"),
        };
        assert_eq!(ev.event_type, EventType::NodeDataChanged);
        match kind {
            Kind::Rookery => assert_eq!(ev.zxid, stat.mzxid),
            Kind::ZooKeeper => assert!(ev.zxid == stat.mzxid || ev.zxid == -1, "{ev:?}"),
            Kind::Program => unreachable!(),
        }

        // A reconnect: the stream says Resync before any event of the new connection.
        let mut events = c.session_events();
        proxy.drop_all();
        loop {
            let e = next_event(&mut events).await;
            if let SessionEventKind::Reconnected { same_session } = e.kind {
                assert!(same_session);
                break;
            }
        }
        // The re-arming setWatches went out before this request on c's connection, so once it
        // is answered the watch is armed again (a change before that is what Resync tells).
        c.exists(&root).await.unwrap();
        writer.set_data(&root, b"2", None).await.unwrap();
        assert_eq!(
            tokio::time::timeout(WAIT, w.next()).await.unwrap(),
            Some(PersistentEvent::Resync)
        );
        match tokio::time::timeout(WAIT, w.next()).await.unwrap() {
            Some(PersistentEvent::Node(ev)) => {
                assert_eq!(ev.event_type, EventType::NodeDataChanged)
            }
            other => panic!("{other:?}"),
        }

        // Not read: more events than the stream holds. Everything up to the gap, then one
        // Lagged, then the watch goes on.
        let n = 4096 + 100;
        let writes: Vec<_> = (0..n).map(|_| writer.set_data(&root, b"x", None)).collect();
        let last = futures::future::try_join_all(writes)
            .await
            .unwrap()
            .pop()
            .unwrap();
        // The server queued every notification on c's connection before it answered the
        // writer, so once c's own read is answered, all of them have reached the client.
        c.get_data(&root).await.unwrap();
        let mut nodes = 0;
        let mut lagged = false;
        for _ in 0..n {
            match tokio::time::timeout(WAIT, w.next()).await.unwrap() {
                Some(PersistentEvent::Node(_)) => nodes += 1,
                Some(PersistentEvent::Lagged) => {
                    lagged = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(lagged, "{kind:?}: no Lagged after {nodes} events");
        assert_eq!(nodes, 4096);
        writer.set_data(&root, b"after", None).await.unwrap();
        match tokio::time::timeout(WAIT, w.next()).await.unwrap() {
            Some(PersistentEvent::Node(ev)) => {
                assert!(kind == Kind::ZooKeeper || ev.zxid > last.mzxid, "{ev:?}")
            }
            other => panic!("{other:?}"),
        }
        drop(w);
        c.close().await.unwrap();
        writer.delete(&root, None).await.unwrap();
        writer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_protected_create_whose_reply_is_lost_finds_its_node() {
    each_server("protected", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let observer = connect(addr).await;
        let root = unique_root("protected");
        c.create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();

        // Applied by the server, reply swallowed, connection dropped: without protection a
        // retry would make a second sequential node.
        proxy.hold_replies();
        let create = c.create(
            &format!("{root}/lock-"),
            b"me",
            &CreateOptions::new(CreateMode::EphemeralSequential).protected(),
        );
        eventually(WAIT, "the create to be applied", || {
            let o = observer.clone();
            let r = root.clone();
            async move { o.get_children(&r).await.unwrap().len() == 1 }
        })
        .await;
        proxy.drop_all();
        proxy.restore();
        let path = tokio::time::timeout(WAIT, create)
            .await
            .expect("the protected create finishes")
            .unwrap();
        let children = observer.get_children(&root).await.unwrap();
        assert_eq!(children.len(), 1, "{kind:?}: {children:?}");
        assert_eq!(path, format!("{root}/{}", children[0]));
        let id = protected_id(&children[0]).expect("a protected name");
        assert_eq!(id.len(), 36);
        assert!(
            children[0].ends_with(&format!("-lock-{:010}", 0)),
            "{children:?}"
        );
        assert_eq!(sequence_number(&children[0]), Some(0));
        let stat = observer.exists(&path).await.unwrap().unwrap();
        assert_eq!(stat.ephemeral_owner, c.session_id());
        assert_eq!(c.get_data(&path).await.unwrap().0, b"me");

        // Inside multi a protected create is refused before anything is sent.
        let err = c
            .multi()
            .create(
                &format!("{root}/x"),
                b"",
                &CreateOptions::persistent().protected(),
            )
            .commit()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

        c.close().await.unwrap();
        observer.delete(&root, None).await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connect_returns_with_the_session_facts_in_place() {
    each_server("connect-facts", |kind, addr| async move {
        // The state used to be published before the session id and generation: a recipe
        // started right after connect() then saw generation 0 and failed.
        for _ in 0..40 {
            let c = connect(addr).await;
            assert_ne!(c.session_id(), 0, "{kind:?}");
            assert_eq!(c.session_generation(), 1, "{kind:?}");
            assert!(c.session_timeout().is_some());
            c.close().await.unwrap();
        }
    })
    .await;
}
