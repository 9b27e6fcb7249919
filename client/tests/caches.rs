//! NodeCache and TreeCache against both servers: the initial load and `Initialized`; create,
//! change and delete events; a node deleted and created again read as `Deleted` then
//! `Created`; changes made while the cache's client was disconnected caught by the resync and
//! reported exactly once; the node limit; and a dropped cache ending its streams.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::recipes::{CacheEvent, CacheEvents, ChildData, NodeCache, TreeCache};
use rookery_client::{Client, CreateOptions, Error, SessionEventKind, SessionState};

/// The next event, waited for at most [`WAIT`].
async fn next(events: &mut CacheEvents) -> CacheEvent {
    match tokio::time::timeout(WAIT, events.next()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the event stream ended"),
        Err(_) => panic!("no cache event within {WAIT:?}"),
    }
}

/// Asserts that no event comes within `quiet`.
async fn nothing_more(events: &mut CacheEvents, quiet: Duration) {
    if let Ok(ev) = tokio::time::timeout(quiet, events.next()).await {
        panic!("unexpected cache event {ev:?}");
    }
}

/// An event as a short comparable line: `+ path data`, `~ path old>new`, `- path data`.
fn line(ev: &CacheEvent) -> String {
    let text = |c: &ChildData| String::from_utf8_lossy(&c.data).into_owned();
    match ev {
        CacheEvent::Created(c) => format!("+ {} {}", c.path, text(c)),
        CacheEvent::Changed { old, new } => {
            assert_eq!(old.path, new.path);
            assert_eq!(old.stat.czxid, new.stat.czxid, "a change keeps the czxid");
            assert!(
                new.stat.mzxid > old.stat.mzxid,
                "a change has a larger mzxid"
            );
            format!("~ {} {}>{}", new.path, text(old), text(new))
        }
        CacheEvent::Deleted(c) => format!("- {} {}", c.path, text(c)),
        CacheEvent::Initialized => "initialized".to_owned(),
        CacheEvent::Lagged => "lagged".to_owned(),
        CacheEvent::Resynced => "resynced".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The next `n` events as lines.
async fn lines(events: &mut CacheEvents, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(line(&next(events).await));
    }
    out
}

async fn mk(c: &Client, path: &str, data: &str) {
    c.create(path, data.as_bytes(), &CreateOptions::persistent())
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}

#[tokio::test]
async fn tree_cache_loads_then_reports_creates_changes_and_deletes() {
    each_server("tree-cache-events", |kind, addr| async move {
        let root = unique_root("tree");
        let c = connect(addr).await;
        mk(&c, &root, "r").await;
        mk(&c, &format!("{root}/a"), "1").await;
        mk(&c, &format!("{root}/a/b"), "x").await;
        mk(&c, &format!("{root}/c"), "y").await;

        let cache = TreeCache::start(&c, &root).await.unwrap();
        assert_eq!(cache.root(), root);
        let snap = cache.snapshot();
        let paths: Vec<&str> = snap.keys().map(String::as_str).collect();
        let want = [
            root.clone(),
            format!("{root}/a"),
            format!("{root}/a/b"),
            format!("{root}/c"),
        ];
        assert_eq!(paths, want, "{kind:?}: the initial load");
        assert_eq!(&*cache.get(&format!("{root}/a")).unwrap().data, b"1");
        let kids: Vec<String> = cache.children(&root).into_iter().map(|c| c.path).collect();
        assert_eq!(kids, [format!("{root}/a"), format!("{root}/c")]);
        assert!(cache.get(&format!("{root}/zz")).is_none());

        // A stream starts with the contents, parents first, then Initialized.
        let mut events = cache.events();
        assert_eq!(
            lines(&mut events, 5).await,
            [
                format!("+ {root} r"),
                format!("+ {root}/a 1"),
                format!("+ {root}/a/b x"),
                format!("+ {root}/c y"),
                "initialized".to_owned(),
            ],
            "{kind:?}"
        );
        nothing_more(&mut events, Duration::from_millis(200)).await;

        mk(&c, &format!("{root}/d"), "new").await;
        assert_eq!(lines(&mut events, 1).await, [format!("+ {root}/d new")]);
        c.set_data(&format!("{root}/a"), b"2", None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("~ {root}/a 1>2")]);
        c.delete(&format!("{root}/a/b"), None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("- {root}/a/b x")]);
        c.delete(&format!("{root}/a"), None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("- {root}/a 2")]);
        // Deep creates, in order.
        mk(&c, &format!("{root}/d/e"), "").await;
        mk(&c, &format!("{root}/d/e/f"), "deep").await;
        assert_eq!(
            lines(&mut events, 2).await,
            [format!("+ {root}/d/e "), format!("+ {root}/d/e/f deep")]
        );
        nothing_more(&mut events, Duration::from_millis(300)).await;
        let paths: Vec<String> = cache.snapshot().keys().cloned().collect();
        assert_eq!(
            paths,
            [
                root.clone(),
                format!("{root}/c"),
                format!("{root}/d"),
                format!("{root}/d/e"),
                format!("{root}/d/e/f"),
            ]
        );
        assert_eq!(&*cache.get(&format!("{root}/d/e/f")).unwrap().data, b"deep");

        // A second stream starts from the present.
        let mut second = cache.events();
        assert_eq!(lines(&mut second, 6).await.last().unwrap(), "initialized");
        c.set_data(&root, b"r2", None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("~ {root} r>r2")]);
        assert_eq!(lines(&mut second, 1).await, [format!("~ {root} r>r2")]);
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_node_deleted_and_created_again_is_a_delete_and_a_create() {
    each_server("tree-cache-recreate", |kind, addr| async move {
        let root = unique_root("recreate");
        let c = connect(addr).await;
        let x = format!("{root}/x");
        mk(&c, &root, "").await;
        mk(&c, &x, "same").await;
        let cache = TreeCache::start(&c, &root).await.unwrap();
        let first = cache.get(&x).unwrap();
        let mut events = cache.events();
        assert_eq!(lines(&mut events, 3).await[2], "initialized");

        // In one transaction, with the same data: only the czxid tells them apart.
        c.multi()
            .delete(&x, None)
            .create(&x, b"same", &CreateOptions::persistent())
            .commit()
            .await
            .unwrap();
        let (deleted, created) = (next(&mut events).await, next(&mut events).await);
        let (CacheEvent::Deleted(old), CacheEvent::Created(new)) = (&deleted, &created) else {
            panic!("{kind:?}: want Deleted then Created, got {deleted:?}, {created:?}");
        };
        assert_eq!(old.stat.czxid, first.stat.czxid);
        assert!(new.stat.czxid > old.stat.czxid);
        assert_eq!(
            (old.path.as_str(), new.path.as_str()),
            (x.as_str(), x.as_str())
        );
        nothing_more(&mut events, Duration::from_millis(300)).await;

        // In quick succession, with a child below the old node.
        mk(&c, &format!("{x}/k"), "kid").await;
        assert_eq!(lines(&mut events, 1).await, [format!("+ {x}/k kid")]);
        c.delete(&format!("{x}/k"), None).await.unwrap();
        c.delete(&x, None).await.unwrap();
        mk(&c, &x, "again").await;
        assert_eq!(
            lines(&mut events, 3).await,
            [
                format!("- {x}/k kid"),
                format!("- {x} same"),
                format!("+ {x} again")
            ],
            "{kind:?}"
        );
        nothing_more(&mut events, Duration::from_millis(300)).await;
        assert_eq!(&*cache.get(&x).unwrap().data, b"again");
        assert!(cache.get(&format!("{x}/k")).is_none());
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn changes_made_while_disconnected_are_reported_once_after_the_resync() {
    each_server("tree-cache-resync", |kind, addr| async move {
        let root = unique_root("resync");
        let writer = connect(addr).await;
        mk(&writer, &root, "").await;
        for (name, data) in [("a", "1"), ("c", "gone"), ("r", "old"), ("s", "same")] {
            mk(&writer, &format!("{root}/{name}"), data).await;
        }
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let cache = TreeCache::start(&c, &root).await.unwrap();
        let node = NodeCache::start(&c, &format!("{root}/a")).await.unwrap();
        let mut events = cache.events();
        let mut node_events = node.events();
        assert_eq!(lines(&mut events, 6).await[5], "initialized");
        assert_eq!(lines(&mut node_events, 2).await[1], "initialized");

        // The cache's client is cut off; another client writes meanwhile.
        proxy.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;
        writer
            .set_data(&format!("{root}/a"), b"2", None)
            .await
            .unwrap();
        writer.delete(&format!("{root}/c"), None).await.unwrap();
        writer.delete(&format!("{root}/r"), None).await.unwrap();
        mk(&writer, &format!("{root}/r"), "new").await;
        mk(&writer, &format!("{root}/n"), "born").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            events.try_next().is_none(),
            "{kind:?}: nothing can arrive while disconnected"
        );
        proxy.restore();
        wait_state(&c, SessionState::Connected, WAIT).await;

        // The difference, each change once: deletes (deepest first), then creates and changes,
        // then the marker.
        let got = lines(&mut events, 6).await;
        assert_eq!(
            got,
            [
                format!("- {root}/r old"),
                format!("- {root}/c gone"),
                format!("~ {root}/a 1>2"),
                format!("+ {root}/n born"),
                format!("+ {root}/r new"),
                "resynced".to_owned(),
            ],
            "{kind:?}"
        );
        assert_eq!(
            lines(&mut node_events, 2).await,
            [format!("~ {root}/a 1>2"), "resynced".to_owned()]
        );
        nothing_more(&mut events, Duration::from_millis(500)).await;
        nothing_more(&mut node_events, Duration::from_millis(100)).await;
        assert_eq!(&*node.current().unwrap().data, b"2");

        // Later changes still flow, once.
        writer
            .set_data(&format!("{root}/s"), b"changed", None)
            .await
            .unwrap();
        assert_eq!(
            lines(&mut events, 1).await,
            [format!("~ {root}/s same>changed")]
        );
        nothing_more(&mut events, Duration::from_millis(300)).await;
        drop((cache, node));
        c.close().await.unwrap();
        writer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn node_cache_follows_create_change_and_delete_of_its_node() {
    each_server("node-cache", |kind, addr| async move {
        let root = unique_root("node");
        let c = connect(addr).await;
        mk(&c, &root, "").await;
        let path = format!("{root}/n");
        let cache = NodeCache::start(&c, &path).await.unwrap();
        assert_eq!(cache.path(), path);
        assert!(cache.current().is_none());
        let mut events = cache.events();
        assert_eq!(lines(&mut events, 1).await, ["initialized"], "{kind:?}");

        mk(&c, &path, "v1").await;
        assert_eq!(lines(&mut events, 1).await, [format!("+ {path} v1")]);
        assert_eq!(&*cache.current().unwrap().data, b"v1");
        c.set_data(&path, b"v2", None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("~ {path} v1>v2")]);
        assert_eq!(cache.current().unwrap().stat.version, 1);
        // A child of the node, or a sibling, is no event.
        mk(&c, &format!("{path}/kid"), "").await;
        mk(&c, &format!("{root}/sibling"), "").await;
        nothing_more(&mut events, Duration::from_millis(300)).await;
        c.delete(&format!("{path}/kid"), None).await.unwrap();
        c.delete(&path, None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("- {path} v2")]);
        assert!(cache.current().is_none());
        mk(&c, &path, "v3").await;
        assert_eq!(lines(&mut events, 1).await, [format!("+ {path} v3")]);

        // A stream made now starts with the node.
        let mut later = cache.events();
        assert_eq!(
            lines(&mut later, 2).await,
            [format!("+ {path} v3"), "initialized".to_owned()]
        );
        nothing_more(&mut events, Duration::from_millis(200)).await;
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_missing_root_appears_the_limit_holds_and_a_dropped_cache_ends_its_streams() {
    each_server("tree-cache-limits", |kind, addr| async move {
        let root = unique_root("limits");
        let c = connect(addr).await;

        // A root that does not exist yet.
        let cache = TreeCache::start(&c, &root).await.unwrap();
        assert!(cache.snapshot().is_empty());
        let mut events = cache.events();
        assert_eq!(lines(&mut events, 1).await, ["initialized"]);
        mk(&c, &root, "here").await;
        mk(&c, &format!("{root}/a"), "").await;
        mk(&c, &format!("{root}/b"), "").await;
        assert_eq!(
            lines(&mut events, 3).await,
            [
                format!("+ {root} here"),
                format!("+ {root}/a "),
                format!("+ {root}/b ")
            ],
            "{kind:?}"
        );

        // Beyond the limit, the first load fails clearly.
        match TreeCache::start_with_limit(&c, &root, 2).await {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("more than 2"), "{why}"),
            other => panic!("{kind:?}: want the limit's error, got {other:?}"),
        }
        TreeCache::start_with_limit(&c, &root, 3).await.unwrap();

        // Dropping the cache stops it: its streams end.
        drop(cache);
        let ended =
            tokio::time::timeout(WAIT, async { while events.next().await.is_some() {} }).await;
        assert!(ended.is_ok(), "{kind:?}: the stream ended with the cache");
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_slow_reader_gets_one_lagged_marker_and_the_snapshot_stays_current() {
    each_server("tree-cache-lag", |kind, addr| async move {
        let root = unique_root("lag");
        let c = connect(addr).await;
        mk(&c, &root, "").await;
        let cache = TreeCache::start(&c, &root).await.unwrap();
        let mut events = cache.events();
        assert_eq!(
            lines(&mut events, 2).await,
            [format!("+ {root} "), "initialized".to_owned()]
        );

        // More creates than the stream holds, none read meanwhile (pipelined, in order).
        const N: usize = 1100;
        let creates: Vec<_> = (0..N)
            .map(|i| {
                c.create(
                    &format!("{root}/n{i:04}"),
                    b"",
                    &CreateOptions::persistent(),
                )
            })
            .collect();
        for done in futures::future::join_all(creates).await {
            done.unwrap();
        }
        eventually(WAIT, "the snapshot to hold every node", || {
            let n = cache.snapshot().len();
            async move { n == N + 1 }
        })
        .await;

        // The stream has the first 1,024 creates in order, then one Lagged where the rest were
        // dropped; later changes follow.
        let mut created = 0;
        loop {
            match next(&mut events).await {
                CacheEvent::Created(node) => {
                    assert_eq!(node.path, format!("{root}/n{created:04}"), "{kind:?}");
                    created += 1;
                }
                CacheEvent::Lagged => break,
                other => panic!("{kind:?}: unexpected {other:?}"),
            }
        }
        assert!(
            (1000..N).contains(&created),
            "{kind:?}: {created} creates before the marker"
        );
        while events.try_next().is_some() {}
        c.set_data(&root, b"later", None).await.unwrap();
        assert_eq!(lines(&mut events, 1).await, [format!("~ {root} >later")]);
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_renewed_session_watches_again_and_reports_the_difference() {
    each_server("tree-cache-renew", |kind, addr| async move {
        let root = unique_root("renew");
        let writer = connect(addr).await;
        mk(&writer, &root, "").await;
        mk(&writer, &format!("{root}/keep"), "1").await;
        mk(&writer, &format!("{root}/drop"), "").await;
        let (proxy, c) = renewing_behind_proxy(addr).await;
        let mut session = c.session_events();
        let cache = TreeCache::start(&c, &root).await.unwrap();
        let mut events = cache.events();
        assert_eq!(lines(&mut events, 4).await[3], "initialized");

        // Cut off past the session timeout: the session is lost, the client starts a new one,
        // and the cache adds its watch again in it and reloads.
        proxy.refuse();
        wait_state(&c, SessionState::Disconnected, WAIT).await;
        writer.delete(&format!("{root}/drop"), None).await.unwrap();
        writer
            .set_data(&format!("{root}/keep"), b"2", None)
            .await
            .unwrap();
        let lost = tokio::time::timeout(WAIT, async {
            while let Some(e) = session.next().await {
                if matches!(e.kind, SessionEventKind::Lost(_)) {
                    return;
                }
            }
        });
        assert!(lost.await.is_ok(), "{kind:?}: the session is lost");
        proxy.restore();
        assert_eq!(
            lines(&mut events, 3).await,
            [
                format!("- {root}/drop "),
                format!("~ {root}/keep 1>2"),
                "resynced".to_owned()
            ],
            "{kind:?}"
        );

        assert_eq!(c.session_generation(), 2);
        // The watch works in the new session.
        mk(&writer, &format!("{root}/new"), "x").await;
        assert_eq!(lines(&mut events, 1).await, [format!("+ {root}/new x")]);
        nothing_more(&mut events, Duration::from_millis(300)).await;
        c.close().await.unwrap();
        writer.close().await.unwrap();
    })
    .await;
}
