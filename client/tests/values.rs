//! Shared values and counts, atomic counters, persistent nodes and group membership, against
//! both servers: compare-and-set, change streams judged by mzxid, concurrent increments that
//! lose nothing, a lost increment reply reported rather than applied twice, nodes remade after a
//! delete and after a renewed session.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::recipes::{
    AtomicCounter, GroupMember, PersistentNode, SharedCount, SharedValue,
};
use rookery_client::{Client, CreateOptions, Error, RetryPolicy, SessionEventKind};

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test]
async fn shared_values_and_counts_compare_and_set_and_follow_changes() {
    each_server("shared", |kind, addr| async move {
        let (a, b) = (connect(addr).await, connect(addr).await);
        let path = unique_root("shared");
        let va = SharedValue::start(&a, &path, b"seed").await.unwrap();
        let vb = SharedValue::start(&b, &path, b"ignored").await.unwrap();
        assert_eq!(vb.get().value, b"seed", "the first seed wins");
        let seen = va.get();
        assert!(vb.try_set(&vb.get(), b"from b").await.unwrap());
        assert!(
            !va.try_set(&seen, b"stale").await.unwrap(),
            "{kind:?}: a stale version loses"
        );
        let mut updates = va.updates();
        bounded("a's view of b's write", async {
            while updates.borrow_and_update().value != b"from b" {
                updates.changed().await.unwrap();
            }
        })
        .await;

        // Deleted and re-created with the same version: still a change (mzxid).
        let before = va.get();
        b.delete(&path, None).await.unwrap();
        b.create(&path, b"from b", &CreateOptions::persistent())
            .await
            .unwrap();
        b.set_data(&path, b"again", None).await.unwrap();
        bounded("the re-created value", async {
            while updates.borrow_and_update().value != b"again" {
                updates.changed().await.unwrap();
            }
        })
        .await;
        assert!(va.get().mzxid > before.mzxid);

        let count_path = unique_root("count");
        let ca = SharedCount::start(&a, &count_path, 5).await.unwrap();
        assert_eq!(ca.get().value, 5);
        assert_eq!(a.get_data(&count_path).await.unwrap().0, 5i32.to_be_bytes());
        assert!(ca.try_set(&ca.get(), 6).await.unwrap());
        ca.set(-7).await.unwrap();
        let cb = SharedCount::start(&b, &count_path, 0).await.unwrap();
        assert_eq!(cb.get().value, -7);
        drop((va, vb, ca, cb));
        a.close().await.unwrap();
        b.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn atomic_counters_lose_no_increment_and_report_an_unknown_one() {
    each_server("counter", |kind, addr| async move {
        let path = unique_root("counter");
        let clients: Vec<Client> = futures::future::join_all((0..3).map(|_| connect(addr))).await;
        // Concurrent increments: optimistic with a lock fallback, nothing lost.
        let tasks: Vec<_> = clients
            .iter()
            .map(|c| {
                let counter = AtomicCounter::new(c, &path)
                    .with_retry(RetryPolicy::exponential(
                        Duration::from_millis(1),
                        Duration::from_millis(20),
                    ))
                    .with_lock_fallback(&format!("{path}-lock"));
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let v = counter.increment().await.unwrap();
                        assert_eq!(v.post, v.pre + 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            bounded("the incrementers", t).await.unwrap();
        }
        let counter = AtomicCounter::new(&clients[0], &path);
        assert_eq!(counter.get().await.unwrap(), 30, "{kind:?}");
        // Curator's layout: 8 bytes, big-endian.
        assert_eq!(
            clients[0].get_data(&path).await.unwrap().0,
            30i64.to_be_bytes()
        );
        assert_eq!(counter.compare_and_set(29, 0).await.unwrap(), None);
        assert_eq!(
            counter
                .compare_and_set(30, 100)
                .await
                .unwrap()
                .map(|v| v.post),
            Some(100)
        );

        // The reply of an increment is lost after the server applied it: reported, not retried.
        let proxy = Proxy::start(addr).await;
        let cut = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let via_proxy = AtomicCounter::new(&cut, &path);
        assert_eq!(via_proxy.get().await.unwrap(), 100);
        // The read's reply passes; the versioned write's is swallowed.
        proxy.hold_replies_after(1);
        let inc = tokio::spawn(async move { via_proxy.add(5).await });
        eventually(WAIT, "the increment to be applied", || {
            let c = AtomicCounter::new(&clients[1], &path);
            async move { c.get().await.unwrap() == 105 }
        })
        .await;
        proxy.drop_all();
        proxy.restore();
        let err = bounded("the increment", inc).await.unwrap().unwrap_err();
        assert!(err.is_outcome_unknown(), "{kind:?}: {err:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            counter.get().await.unwrap(),
            105,
            "applied once, never twice"
        );
        cut.close().await.unwrap();
        for c in clients {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn persistent_nodes_and_group_members_come_back() {
    each_server("persistent-node", |kind, addr| async move {
        let group = unique_root("group");
        let (proxy, member_client) = renewing_behind_proxy(addr).await;
        let other = connect(addr).await;
        let me = GroupMember::start(&member_client, &group, "m1", b"p1");
        let them = GroupMember::start(&other, &group, "m2", b"p2");
        assert!(me.wait_joined(WAIT).await.unwrap());
        assert!(them.wait_joined(WAIT).await.unwrap());
        let members = them.current_members().await.unwrap();
        assert_eq!(members.len(), 2, "{kind:?}: {members:?}");
        assert_eq!(members["m1"], b"p1");
        me.set_payload(b"p1'").await.unwrap();
        assert_eq!(them.current_members().await.unwrap()["m1"], b"p1'");

        // Deleted by someone: made again, with the latest data.
        let node = format!("{group}/m1");
        other.delete(&node, None).await.unwrap();
        eventually(WAIT, "the member node to come back", || {
            let (o, n) = (other.clone(), node.clone());
            async move { o.get_data(&n).await.is_ok_and(|(d, _)| d == b"p1'") }
        })
        .await;

        // Its session expires: made again in the new session.
        let mut events = member_client.session_events();
        proxy.refuse();
        loop {
            let e = bounded("the loss", events.next()).await.unwrap();
            if matches!(e.kind, SessionEventKind::Lost(_)) {
                break;
            }
        }
        proxy.restore();
        eventually(WAIT, "the member in the new session", || {
            let (o, n) = (other.clone(), node.clone());
            let session = member_client.session_id();
            async move {
                o.exists(&n)
                    .await
                    .unwrap()
                    .is_some_and(|s| s.ephemeral_owner == session)
            }
        })
        .await;

        // A plain persistent node too, and closing deletes it.
        let kept = PersistentNode::start(
            &other,
            &format!("{group}-kept"),
            b"k",
            CreateOptions::ephemeral(),
        );
        assert!(kept.wait_for_initial_create(WAIT).await.unwrap());
        kept.close().await.unwrap();
        eventually(WAIT, "the closed node to go", || {
            let o = other.clone();
            let p = format!("{group}-kept");
            async move { o.exists(&p).await.unwrap().is_none() }
        })
        .await;
        me.close().await.unwrap();
        them.close().await.unwrap();
        // Closing queued the deletes: the group empties (or its container goes).
        eventually(WAIT, "the group to empty", || {
            let (o, g) = (other.clone(), group.clone());
            async move {
                match o.get_children(&g).await {
                    Ok(c) => c.is_empty(),
                    Err(e) => e == Error::NoNode,
                }
            }
        })
        .await;
        member_client.close().await.unwrap();
        other.close().await.unwrap();
    })
    .await;
}
