//! The client against real servers: Rookery and Apache ZooKeeper 3.8 (chosen by
//! `ROOKERY_TEST_SERVER`, default both). Each test runs its scenario against each server in
//! turn, under its own root path on a server shared by this test binary.

mod common;

use std::time::Duration;

use common::*;
use rookery_client::acl::{self, perms};
use rookery_client::{
    Acl, AddWatchMode, Client, CreateMode, CreateOptions, Error, EventType, OpResult,
    PersistentEvent, ReadResult, SessionState, WatcherType,
};

const EVENT_WAIT: Duration = Duration::from_secs(10);

async fn event<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(EVENT_WAIT, f)
        .await
        .expect("timed out waiting for a watch event")
}

/// The event a one-shot watch fired with (bounded wait).
async fn fired(w: rookery_client::OneshotWatcher) -> rookery_client::WatchedEvent {
    event(w).await.expect("the watch fired with an event")
}

/// The next node event of a persistent stream (bounded wait).
async fn node(w: &mut rookery_client::PersistentWatcher) -> rookery_client::WatchedEvent {
    match event(w.next()).await {
        Some(rookery_client::PersistentEvent::Node(ev)) => ev,
        other => panic!("expected a node event, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_versions_and_errors() {
    each_server("crud", |kind, addr| async move {
        let c = connect(addr).await;
        let root = unique_root("crud");
        assert_eq!(
            c.create(&root, b"", &CreateOptions::persistent())
                .await
                .unwrap(),
            root
        );
        let a = format!("{root}/a");
        let (path, stat) = c
            .create2(&a, b"one", &CreateOptions::persistent())
            .await
            .unwrap();
        assert_eq!(path, a);
        assert_eq!(stat.version, 0);
        assert_eq!(stat.data_length, 3);
        assert_eq!(
            c.create(&a, b"", &CreateOptions::persistent()).await,
            Err(Error::NodeExists)
        );
        assert_eq!(
            c.create(
                &format!("{root}/no/parent"),
                b"",
                &CreateOptions::persistent()
            )
            .await,
            Err(Error::NoNode)
        );
        let (data, stat) = c.get_data(&a).await.unwrap();
        assert_eq!(data, b"one");
        let stat2 = c.set_data(&a, b"two", Some(stat.version)).await.unwrap();
        assert_eq!(stat2.version, 1);
        assert_eq!(c.set_data(&a, b"x", Some(0)).await, Err(Error::BadVersion));
        assert_eq!(c.exists(&a).await.unwrap().unwrap().version, 1);
        assert_eq!(c.exists(&format!("{root}/missing")).await, Ok(None));
        assert_eq!(
            c.get_data(&format!("{root}/missing")).await,
            Err(Error::NoNode)
        );

        // Sequential and ephemeral nodes.
        let s1 = c
            .create(
                &format!("{root}/s-"),
                b"",
                &CreateOptions::new(CreateMode::PersistentSequential),
            )
            .await
            .unwrap();
        assert!(
            s1.starts_with(&format!("{root}/s-")) && s1.len() == root.len() + 3 + 10,
            "{s1}"
        );
        let e = format!("{root}/eph");
        let (_, estat) = c
            .create2(&e, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        assert_eq!(estat.ephemeral_owner, c.session_id());
        assert_eq!(
            c.create(&format!("{e}/child"), b"", &CreateOptions::persistent())
                .await,
            Err(Error::NoChildrenForEphemerals)
        );
        assert_eq!(c.get_ephemerals(&root).await.unwrap(), vec![e.clone()]);

        // Children, counts, sync.
        let kids = c.get_children(&root).await.unwrap();
        assert_eq!(kids.len(), 3);
        assert!(kids.windows(2).all(|w| w[0] <= w[1]), "sorted: {kids:?}");
        let (kids2, parent) = c.get_children2(&root).await.unwrap();
        assert_eq!(kids2, kids);
        assert_eq!(parent.num_children, 3);
        c.create(&format!("{a}/deep"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
        assert_eq!(c.get_all_children_number(&root).await.unwrap(), 4);
        c.sync(&root).await.unwrap();

        // Delete.
        assert_eq!(c.delete(&a, None).await, Err(Error::NotEmpty));
        c.delete(&format!("{a}/deep"), None).await.unwrap();
        assert_eq!(c.delete(&a, Some(0)).await, Err(Error::BadVersion));
        c.delete(&a, Some(1)).await.unwrap();
        assert_eq!(c.delete(&a, None).await, Err(Error::NoNode));

        // Client-side validation: nothing is sent.
        assert!(matches!(
            c.get_data("no-slash").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            c.create("/a/", b"", &CreateOptions::persistent()).await,
            Err(Error::InvalidArgument(_))
        ));

        // whoAmI lists the automatic ip identity.
        let ids = c.who_am_i().await.unwrap();
        assert!(
            ids.iter().any(|i| i.auth_scheme == "ip"),
            "{kind:?}: {ids:?}"
        );
        c.close().await.unwrap();
        assert_eq!(c.state(), SessionState::Closed);
    })
    .await;
}

#[tokio::test]
async fn containers_and_ttl_nodes() {
    each_server("containers", |_kind, addr| async move {
        let c = connect(addr).await;
        let root = unique_root("containers");
        c.create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let box_path = format!("{root}/box");
        let (_, stat) = c
            .create2(&box_path, b"", &CreateOptions::new(CreateMode::Container))
            .await
            .unwrap();
        assert_eq!(stat.ephemeral_owner, 0);
        let item = format!("{box_path}/item");
        c.create(&item, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        c.delete(&item, None).await.unwrap();
        // The container manager (1 s period on both servers) removes the emptied container.
        eventually(
            Duration::from_secs(10),
            "the container to be reaped",
            || {
                let c = c.clone();
                let p = box_path.clone();
                async move { c.exists(&p).await.unwrap().is_none() }
            },
        )
        .await;

        let ttl = format!("{root}/ttl");
        let opts =
            CreateOptions::new(CreateMode::PersistentWithTtl).with_ttl(Duration::from_millis(200));
        let created = c.create(&ttl, b"", &opts).await.unwrap();
        assert_eq!(created, ttl);
        let seq = c
            .create2(
                &format!("{root}/ttlseq-"),
                b"",
                &CreateOptions::new(CreateMode::PersistentSequentialWithTtl)
                    .with_ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        assert_eq!(seq.1.ephemeral_owner, 0);
        eventually(Duration::from_secs(10), "the TTL node to expire", || {
            let c = c.clone();
            let p = ttl.clone();
            async move { c.exists(&p).await.unwrap().is_none() }
        })
        .await;
        assert!(matches!(
            c.create(
                &ttl,
                b"",
                &CreateOptions::persistent().with_ttl(Duration::from_secs(1))
            )
            .await,
            Err(Error::InvalidArgument(_))
        ));
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn acls_and_digest_auth() {
    each_server("acl", |kind, addr| async move {
        let owner = Client::builder(&addr.to_string())
            .digest_auth("alice", "secret")
            .connect()
            .await
            .unwrap();
        let other = connect(addr).await;
        let root = unique_root("acl");
        owner
            .create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let private = format!("{root}/private");
        owner
            .create(
                &private,
                b"s3cret",
                &CreateOptions::persistent().with_acl(acl::CREATOR_ALL_ACL.clone()),
            )
            .await
            .unwrap();
        assert_eq!(other.get_data(&private).await, Err(Error::NoAuth));
        assert_eq!(owner.get_data(&private).await.unwrap().0, b"s3cret");
        let (acl_list, stat) = owner.get_acl(&private).await.unwrap();
        assert_eq!(
            acl_list,
            vec![acl::digest_acl(perms::ALL, "alice", "secret")]
        );
        assert_eq!(stat.aversion, 0);

        // A second identity added later also works, and whoAmI shows it.
        other.add_digest_auth("alice", "secret").await.unwrap();
        assert_eq!(other.get_data(&private).await.unwrap().0, b"s3cret");
        let ids = other.who_am_i().await.unwrap();
        assert!(
            ids.iter()
                .any(|i| i.auth_scheme == "digest" && i.user == "alice"),
            "{ids:?}"
        );

        // setACL checks the ACL version.
        let open_read = vec![Acl::new(perms::READ, "world", "anyone")];
        assert_eq!(
            owner.set_acl(&private, open_read.clone(), Some(5)).await,
            Err(Error::BadVersion)
        );
        let stat = owner.set_acl(&private, open_read, Some(0)).await.unwrap();
        assert_eq!(stat.aversion, 1);
        let anon = connect(addr).await;
        assert_eq!(anon.get_data(&private).await.unwrap().0, b"s3cret");
        assert_eq!(
            anon.set_data(&private, b"no", None).await,
            Err(Error::NoAuth)
        );
        assert_eq!(
            anon.create(
                &format!("{root}/x"),
                b"",
                &CreateOptions::persistent().with_acl(acl::CREATOR_ALL_ACL.clone())
            )
            .await,
            Err(Error::InvalidAcl),
            "{kind:?}: auth ACL without credentials"
        );

        // Bad credentials end the session: AuthFailed is terminal.
        let bad = connect(addr).await;
        assert_eq!(
            bad.add_auth("nosuchscheme", b"x").await,
            Err(Error::AuthFailed)
        );
        wait_state(&bad, SessionState::AuthFailed, WAIT).await;
        assert_eq!(bad.get_data("/").await, Err(Error::AuthFailed));
        for c in [owner, other, anon] {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn multi_and_multi_read() {
    each_server("multi", |_kind, addr| async move {
        let c = connect(addr).await;
        let root = unique_root("multi");
        c.create(&root, b"", &CreateOptions::persistent()).await.unwrap();
        let a = format!("{root}/a");
        let results = c
            .multi()
            .create(&a, b"1", &CreateOptions::persistent())
            .create(&format!("{root}/seq-"), b"", &CreateOptions::new(CreateMode::PersistentSequential))
            .set_data(&a, b"2", Some(0))
            .check(&a, 1)
            .commit()
            .await
            .unwrap();
        assert_eq!(results.len(), 4);
        assert!(matches!(&results[0], OpResult::Create { path, .. } if *path == a));
        assert!(matches!(&results[1], OpResult::Create { path, .. } if path.starts_with(&format!("{root}/seq-"))));
        assert!(matches!(&results[2], OpResult::SetData(s) if s.version == 1));
        assert_eq!(results[3], OpResult::Check);

        // A failing multi applies nothing and names the operation that failed.
        let b = format!("{root}/b");
        let err = c
            .multi()
            .create(&b, b"", &CreateOptions::persistent())
            .delete(&format!("{root}/missing"), None)
            .set_data(&a, b"3", None)
            .commit()
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Error::MultiFailed {
                index: 1,
                source: Box::new(Error::NoNode)
            }
        );
        assert_eq!(c.exists(&b).await.unwrap(), None);
        assert_eq!(c.get_data(&a).await.unwrap().0, b"2");
        assert!(c.multi().delete("bad", None).commit().await.is_err());

        // multiRead: each read has its own result.
        let reads = c
            .multi_read()
            .get_data(&a)
            .get_data(&format!("{root}/missing"))
            .get_children(&root)
            .execute()
            .await
            .unwrap();
        assert_eq!(reads.len(), 3);
        assert!(matches!(&reads[0], Ok(ReadResult::Data { data, .. }) if data == b"2"));
        assert_eq!(reads[1], Err(Error::NoNode));
        assert!(matches!(&reads[2], Ok(ReadResult::Children(k)) if k.len() == 2));
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn oneshot_watches() {
    each_server("oneshot", |_kind, addr| async move {
        let c = connect(addr).await;
        let writer = connect(addr).await;
        let root = unique_root("oneshot");
        c.create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let n = format!("{root}/n");

        // exists on a missing node: fires on create.
        let (stat, created) = c.exists_watched(&n).await.unwrap();
        assert!(stat.is_none());
        writer
            .create(&n, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let ev = fired(created).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeCreated, n.as_str())
        );
        assert_eq!(ev.state, SessionState::Connected);

        // getData: fires on setData; two watchers on one path both fire.
        let (_, _, w1) = c.get_data_watched(&n).await.unwrap();
        let (_, _, w2) = c.get_data_watched(&n).await.unwrap();
        writer.set_data(&n, b"x", None).await.unwrap();
        assert_eq!(fired(w1).await.event_type, EventType::NodeDataChanged);
        assert_eq!(fired(w2).await.event_type, EventType::NodeDataChanged);

        // getChildren: fires on a child create; delete fires data and child watches.
        let (kids, child_w) = c.get_children_watched(&root).await.unwrap();
        assert_eq!(kids, vec!["n".to_string()]);
        writer
            .create(&format!("{root}/m"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let ev = fired(child_w).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeChildrenChanged, root.as_str())
        );
        let (_, _, data_w) = c.get_data_watched(&n).await.unwrap();
        let (_, _, child2_w) = c.get_children2_watched(&n).await.unwrap();
        writer.delete(&n, None).await.unwrap();
        assert_eq!(fired(data_w).await.event_type, EventType::NodeDeleted);
        assert_eq!(fired(child2_w).await.event_type, EventType::NodeDeleted);
        // No watch is left by a failed getData.
        assert_eq!(c.get_data_watched(&n).await.map(|_| ()), Err(Error::NoNode));

        // Dropping the only watcher removes the watch on the server.
        let m = format!("{root}/m");
        let (_, _, w) = c.get_data_watched(&m).await.unwrap();
        c.check_watches(&m, WatcherType::Data).await.unwrap();
        drop(w);
        eventually(
            WAIT,
            "the dropped watch to be removed on the server",
            || {
                let c = c.clone();
                let m = m.clone();
                async move { c.check_watches(&m, WatcherType::Data).await == Err(Error::NoWatcher) }
            },
        )
        .await;

        // remove_all_watches resolves the local watchers with DataWatchRemoved.
        let (_, _, w) = c.get_data_watched(&m).await.unwrap();
        c.remove_all_watches(&m, WatcherType::Data).await.unwrap();
        assert_eq!(fired(w).await.event_type, EventType::DataWatchRemoved);
        assert_eq!(
            c.remove_all_watches(&m, WatcherType::Data).await,
            Err(Error::NoWatcher)
        );

        // Closing the session ends pending watchers with a session event.
        let (_, pending) = c.exists_watched(&format!("{root}/never")).await.unwrap();
        c.close().await.unwrap();
        assert_eq!(event(pending).await, Err(Error::ClientClosed));
        writer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn persistent_and_recursive_watches() {
    each_server("persistent", |kind, addr| async move {
        let c = connect(addr).await;
        let writer = connect(addr).await;
        let root = unique_root("persistent");
        writer
            .create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let p = format!("{root}/p");
        let mut pw = c.add_watch(&p, AddWatchMode::Persistent).await.unwrap();
        let mut rw = c
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await
            .unwrap();

        writer
            .create(&p, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        writer
            .create(&format!("{p}/x"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
        writer
            .set_data(&format!("{p}/x"), b"1", None)
            .await
            .unwrap();
        writer.set_data(&p, b"1", None).await.unwrap();
        writer.delete(&format!("{p}/x"), None).await.unwrap();

        let mut got = Vec::new();
        for _ in 0..4 {
            let ev = node(&mut pw).await;
            got.push((ev.event_type, ev.path));
        }
        assert_eq!(
            got,
            vec![
                (EventType::NodeCreated, p.clone()),
                (EventType::NodeChildrenChanged, p.clone()),
                (EventType::NodeDataChanged, p.clone()),
                (EventType::NodeChildrenChanged, p.clone()),
            ],
            "{kind:?}"
        );
        let px = format!("{p}/x");
        let mut got = Vec::new();
        for _ in 0..5 {
            let ev = node(&mut rw).await;
            got.push((ev.event_type, ev.path));
        }
        assert_eq!(
            got,
            vec![
                (EventType::NodeCreated, p.clone()),
                (EventType::NodeCreated, px.clone()),
                (EventType::NodeDataChanged, px.clone()),
                (EventType::NodeDataChanged, p.clone()),
                (EventType::NodeDeleted, px.clone()),
            ],
            "{kind:?}"
        );

        // Dropping the streams removes the server-side watches (type 4/5, or Any on 3.8.0).
        drop(pw);
        drop(rw);
        for path in [p.clone(), root.clone()] {
            eventually(
                WAIT,
                "persistent watches to be removed on the server",
                || {
                    let c = c.clone();
                    let path = path.clone();
                    async move {
                        c.check_watches(&path, WatcherType::Any).await == Err(Error::NoWatcher)
                    }
                },
            )
            .await;
        }

        // remove_all_watches ends a persistent stream with PersistentWatchRemoved, where the
        // server supports removing persistent watches (ZOOKEEPER-4472; not 3.8.0).
        let mut pw = c.add_watch(&p, AddWatchMode::Persistent).await.unwrap();
        match c.remove_all_watches(&p, WatcherType::Persistent).await {
            Ok(()) => {
                assert_eq!(
                    node(&mut pw).await.event_type,
                    EventType::PersistentWatchRemoved
                );
                assert!(event(pw.next()).await.is_none());
            }
            Err(Error::MarshallingError) if kind == Kind::ZooKeeper => {
                c.remove_all_watches(&p, WatcherType::Any).await.unwrap();
                assert_eq!(
                    node(&mut pw).await.event_type,
                    EventType::PersistentWatchRemoved
                );
            }
            Err(e) => panic!("{kind:?}: {e}"),
        }

        // The end of the session ends the stream.
        let mut rw = c
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        c.close().await.unwrap();
        assert_eq!(
            event(rw.next()).await,
            Some(PersistentEvent::Ended(Error::ClientClosed))
        );
        assert!(event(rw.next()).await.is_none());
        writer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn chroot_is_applied_and_stripped() {
    each_server("chroot", |_kind, addr| async move {
        let plain = connect(addr).await;
        let root = unique_root("chroot");
        plain
            .create(&root, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let c = Client::builder(&format!("{addr}{root}"))
            .connect()
            .await
            .unwrap();
        assert_eq!(c.chroot(), Some(root.as_str()));
        assert_eq!(
            c.create("/x", b"1", &CreateOptions::persistent())
                .await
                .unwrap(),
            "/x"
        );
        assert_eq!(plain.get_data(&format!("{root}/x")).await.unwrap().0, b"1");
        assert_eq!(c.get_children("/").await.unwrap(), vec!["x".to_string()]);
        let seq = c
            .create(
                "/s-",
                b"",
                &CreateOptions::new(CreateMode::EphemeralSequential),
            )
            .await
            .unwrap();
        assert!(seq.starts_with("/s-"), "{seq}");
        assert_eq!(c.get_ephemerals("/").await.unwrap(), vec![seq.clone()]);

        let (_, _, w) = c.get_data_watched("/x").await.unwrap();
        let mut rw = c
            .add_watch("/", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        plain
            .set_data(&format!("{root}/x"), b"2", None)
            .await
            .unwrap();
        assert_eq!(fired(w).await.path, "/x");
        assert_eq!(node(&mut rw).await.path, "/x");

        let r = c
            .multi()
            .create("/m", b"", &CreateOptions::persistent())
            .commit()
            .await
            .unwrap();
        assert!(matches!(&r[0], OpResult::Create { path, .. } if path == "/m"));
        // A handle with another chroot shares the session.
        let sub = c.with_chroot(Some(&format!("{root}/m"))).unwrap();
        assert_eq!(sub.session_id(), c.session_id());
        sub.create("/inner", b"", &CreateOptions::persistent())
            .await
            .unwrap();
        assert!(plain
            .exists(&format!("{root}/m/inner"))
            .await
            .unwrap()
            .is_some());
        c.close().await.unwrap();
        plain.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn requests_are_ordered_at_call_time_and_pipelined() {
    each_server("ordering", |_kind, addr| async move {
        let c = connect(addr).await;
        let root = unique_root("ordering");
        // Futures made in order, awaited in reverse: the server still runs them in call order.
        let create = c.create(&root, b"0", &CreateOptions::persistent());
        let set = c.set_data(&root, b"1", None);
        let get = c.get_data(&root);
        assert_eq!(get.await.unwrap().0, b"1");
        assert_eq!(set.await.unwrap().version, 1);
        create.await.unwrap();

        // Many requests in flight at once.
        let futs: Vec<_> = (0..300)
            .map(|i| {
                c.create(
                    &format!("{root}/n{i:03}"),
                    b"",
                    &CreateOptions::persistent(),
                )
            })
            .collect();
        for (i, r) in futures::future::join_all(futs)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.unwrap(), format!("{root}/n{i:03}"));
        }
        assert_eq!(c.get_children(&root).await.unwrap().len(), 300);

        // A dropped future's request still runs.
        drop(c.create(
            &format!("{root}/dropped"),
            b"",
            &CreateOptions::persistent(),
        ));
        assert!(c
            .exists(&format!("{root}/dropped"))
            .await
            .unwrap()
            .is_some());
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn host_lists_and_names_resolved_by_hickory() {
    each_server("hosts", |_kind, addr| async move {
        // A dead host in the list, a name that only the extra hosts file knows, and
        // `localhost` from /etc/hosts: names are resolved by hickory (no DNS query is made:
        // both names are in hosts files).
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 zk.rookery.test\n").unwrap();
        let dead = free_port();
        let port = addr.port();
        let cs = format!("127.0.0.1:{dead},zk.rookery.test:{port},localhost:{port}/");
        for seed in 0..3 {
            let c = Client::builder(&cs)
                .hosts_file(&hosts)
                .rng_seed(seed)
                .attempt_timeout(Duration::from_secs(2))
                .connect()
                .await
                .unwrap();
            assert_eq!(c.state(), SessionState::Connected);
            assert_eq!(c.chroot(), None);
            c.close().await.unwrap();
        }
        // Only the dead host: the initial connect gives up after its timeout.
        let res = Client::builder(&format!("127.0.0.1:{dead}"))
            .connect_timeout(Duration::from_millis(800))
            .connect()
            .await;
        assert!(matches!(res, Err(Error::Timeout(_))), "{res:?}");
    })
    .await;
}

#[tokio::test]
async fn state_watcher_and_drop_closes_the_session() {
    each_server("state", |_kind, addr| async move {
        let observer = connect(addr).await;
        let c = connect(addr).await;
        let mut states = c.state_watcher();
        assert_eq!(*states.borrow_and_update(), SessionState::Connected);
        let root = unique_root("state");
        c.create(&root, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
        // Dropping every handle closes the session: the ephemeral goes at once.
        drop(c);
        tokio::time::timeout(WAIT, states.changed())
            .await
            .unwrap()
            .ok();
        assert_eq!(*states.borrow(), SessionState::Closed);
        assert_eq!(observer.exists(&root).await.unwrap(), None);
        observer.close().await.unwrap();
        assert_eq!(observer.get_data("/").await, Err(Error::ClientClosed));
    })
    .await;
}
