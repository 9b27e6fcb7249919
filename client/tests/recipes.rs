//! The recipes against both servers: mutual exclusion and fair hand-off, fencing tokens that
//! grow, a paused holder's fenced write refused, cancellation at every await point leaving no
//! node, a lost reply during acquire, read/write locks, semaphores, multi-locks, leader latches
//! and elections, barriers and double barriers. Every test checks that no two holders overlap.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::names::{protected_id, strip_protected};
use rookery_client::recipes::{
    Barrier, DoubleBarrier, LatchState, LeaderElection, LeaderLatch, Lock, Loss, MultiLock, RwLock,
    Semaphore,
};
use rookery_client::{Client, CreateOptions, Error, SessionEventKind};

/// Counts holders inside a critical section and remembers the most seen at once.
#[derive(Default)]
struct Occupancy {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Occupancy {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The lock's children (no leftover after cleanups), read by an observer.
async fn children(c: &Client, path: &str) -> Vec<String> {
    match c.get_children(path).await {
        Ok(k) => k,
        Err(Error::NoNode) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_lock_excludes_hands_off_in_order_and_its_tokens_grow() {
    each_server("lock", |kind, addr| async move {
        let path = unique_root("lock");
        let clients: Vec<Client> = futures::future::join_all((0..3).map(|_| connect(addr))).await;
        let occupancy = Arc::new(Occupancy::default());
        let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = clients
            .iter()
            .map(|c| {
                let lock = Lock::new(c, &path);
                let (occ, tokens) = (occupancy.clone(), tokens.clone());
                tokio::spawn(async move {
                    for _ in 0..5 {
                        let guard = lock.acquire().await.unwrap();
                        occ.enter();
                        tokens.lock().unwrap().push(guard.fencing_token());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        occ.leave();
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            bounded("contenders", t).await.unwrap();
        }
        assert_eq!(occupancy.max(), 1, "{kind:?}: two holders at once");
        let tokens = tokens.lock().unwrap().clone();
        assert_eq!(tokens.len(), 15);
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "tokens grow with every holder: {tokens:?}"
        );
        assert!(children(&clients[0], &path).await.is_empty());

        // Fair: contenders are served in the order they queued, each watching only its
        // predecessor.
        let first = Lock::new(&clients[0], &path).acquire().await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (i, c) in clients.iter().enumerate().skip(1) {
            let lock = Lock::new(c, &path);
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let g = lock.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                g.release().await.unwrap();
            }));
            // Queue the next one only once this one's node is there.
            let observer = clients[0].clone();
            let p = path.clone();
            eventually(WAIT, "the contender to queue", || {
                let (o, p) = (observer.clone(), p.clone());
                async move { children(&o, &p).await.len() == i + 1 }
            })
            .await;
        }
        let names = Lock::new(&clients[0], &path).participants().await.unwrap();
        assert_eq!(names.len(), 3);
        assert!(names
            .iter()
            .all(|n| strip_protected(n).starts_with("lock-")));
        first.release().await.unwrap();
        for w in waiters {
            bounded("the queue", w).await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
        for c in clients {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_paused_holder_sees_the_loss_and_its_fenced_write_is_refused() {
    each_server("fencing", |kind, addr| async move {
        let path = unique_root("fenced");
        let data = format!("{path}-data");
        let (proxy, old) = renewing_behind_proxy(addr).await;
        let other = connect(addr).await;
        other
            .create(&data, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        let mut guard = Lock::new(&old, &path).acquire().await.unwrap();
        guard
            .multi()
            .set_data(&data, b"old holder", None)
            .commit()
            .await
            .unwrap();

        // The holder is cut off (a GC pause, a partition) for longer than its session.
        let mut events = old.session_events();
        proxy.blackhole();
        assert_eq!(
            bounded("the loss", guard.lost()).await,
            Loss::Suspended,
            "the default policy gives up at Suspended"
        );
        let new_holder = bounded("the lock to pass", Lock::new(&other, &path).acquire())
            .await
            .unwrap();
        assert!(new_holder.fencing_token() > guard.fencing_token());

        // The old holder comes back with a new session and writes through its stale guard:
        // refused, while the new holder's fenced write goes through.
        proxy.restore();
        proxy.drop_all();
        loop {
            let e = bounded("a new session", events.next()).await.unwrap();
            if e.kind == SessionEventKind::Connected {
                break;
            }
        }
        let err = guard
            .multi()
            .set_data(&data, b"stale holder", None)
            .commit()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::MultiFailed { index: 0, .. }),
            "{kind:?}: {err:?}"
        );
        new_holder
            .multi()
            .set_data(&data, b"new holder", None)
            .commit()
            .await
            .unwrap();
        assert_eq!(other.get_data(&data).await.unwrap().0, b"new holder");
        drop(guard);
        new_holder.release().await.unwrap();
        other.delete(&data, None).await.unwrap();
        old.close().await.unwrap();
        other.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_acquire_dropped_at_any_point_leaves_no_node() {
    each_server("cancel", |kind, addr| async move {
        let path = unique_root("cancel");
        let holder_client = connect(addr).await;
        let c = connect(addr).await;
        let holder = Lock::new(&holder_client, &path).acquire().await.unwrap();
        let lock = Lock::new(&c, &path);
        // Dropped after 0, 1, 2, ... polls: before the create is sent, while it is in flight,
        // while listing, while watching the predecessor.
        for polls in 0..12 {
            let mut acquire = Box::pin(lock.acquire());
            for _ in 0..polls {
                let _ = futures::poll!(acquire.as_mut());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(acquire);
        }
        // Then a timeout, the ordinary way to give up.
        assert!(lock
            .try_acquire(Duration::from_millis(50))
            .await
            .unwrap()
            .is_none());
        // Only the holder's node remains once the cleanups ran.
        eventually(WAIT, "the cancelled contenders' nodes to go", || {
            let (o, p) = (holder_client.clone(), path.clone());
            async move { children(&o, &p).await.len() == 1 }
        })
        .await;
        c.sync(&path).await.unwrap();
        assert_eq!(children(&c, &path).await.len(), 1, "{kind:?}");
        holder.release().await.unwrap();
        // And the lock is free for the next.
        let g = bounded("the lock", lock.acquire()).await.unwrap();
        g.release().await.unwrap();

        // A semaphore has two nodes per acquire (the gate's and the lease): neither stays.
        let sem_path = unique_root("cancel-sem");
        let held = Semaphore::new(&holder_client, &sem_path, 1)
            .acquire()
            .await
            .unwrap();
        let sem = Semaphore::new(&c, &sem_path, 1);
        for polls in 0..16 {
            let mut acquire = Box::pin(sem.acquire());
            for _ in 0..polls {
                let _ = futures::poll!(acquire.as_mut());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(acquire);
        }
        let (leases, gate) = (format!("{sem_path}/leases"), format!("{sem_path}/locks"));
        eventually(WAIT, "the cancelled semaphore nodes to go", || {
            let (o, l, g) = (holder_client.clone(), leases.clone(), gate.clone());
            async move { children(&o, &l).await.len() == 1 && children(&o, &g).await.is_empty() }
        })
        .await;
        held.release().await.unwrap();
        bounded("the lease", sem.acquire())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        c.close().await.unwrap();
        holder_client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_reply_lost_during_acquire_makes_no_second_contender() {
    each_server("lost-acquire", |kind, addr| async move {
        let path = unique_root("lost-acquire");
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let observer = connect(addr).await;
        observer
            .create(&path, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        proxy.hold_replies();
        let lock = Lock::new(&c, &path);
        let acquire = tokio::spawn(async move { lock.acquire().await });
        eventually(WAIT, "the contender's node", || {
            let (o, p) = (observer.clone(), path.clone());
            async move { children(&o, &p).await.len() == 1 }
        })
        .await;
        proxy.drop_all();
        proxy.restore();
        let guard = bounded("the acquire", acquire).await.unwrap().unwrap();
        let kids = children(&observer, &path).await;
        assert_eq!(kids.len(), 1, "{kind:?}: {kids:?}");
        assert!(protected_id(&kids[0]).is_some());
        assert!(guard.path().ends_with(&kids[0]));
        guard.release().await.unwrap();
        observer.delete(&path, None).await.unwrap();
        c.close().await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn read_write_locks_semaphores_and_multi_locks() {
    each_server("rw-sem-multi", |kind, addr| async move {
        let a = connect(addr).await;
        let b = connect(addr).await;

        // Readers share; a writer waits for them and keeps later readers out.
        let rw_path = unique_root("rw");
        let (ra, rb) = (RwLock::new(&a, &rw_path), RwLock::new(&b, &rw_path));
        let r1 = ra.read().await.unwrap();
        let r2 = rb.read().await.unwrap();
        // Not re-entrant: an upgrade through the reader's handle is refused at once.
        assert_eq!(
            ra.try_write(Duration::from_secs(5)).await.unwrap_err(),
            Error::AlreadyHeld
        );
        let rc = RwLock::new(&a, &rw_path);
        assert!(rc
            .try_write(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none());
        // The timed-out writer's node goes (its cleanup is queued), so that the count below
        // is the real writer's.
        eventually(WAIT, "the timed-out writer's node to go", || {
            let (o, p) = (b.clone(), rw_path.clone());
            async move { children(&o, &p).await.len() == 2 }
        })
        .await;
        let writer = tokio::spawn({
            let rc = rc.clone();
            async move { rc.write().await }
        });
        eventually(WAIT, "the writer to queue", || {
            let (o, p) = (b.clone(), rw_path.clone());
            async move { children(&o, &p).await.len() == 3 }
        })
        .await;
        assert!(
            RwLock::new(&b, &rw_path)
                .try_read(Duration::from_millis(100))
                .await
                .unwrap()
                .is_none(),
            "{kind:?}: a reader behind a waiting writer waits"
        );
        drop((r1, r2));
        let w = bounded("the writer", writer).await.unwrap().unwrap();
        let names = children(&b, &rw_path).await;
        assert!(names.iter().any(|n| n.contains("__WRIT__")), "{names:?}");
        w.release().await.unwrap();

        // A semaphore of 2 among 4 contenders.
        let sem_path = unique_root("sem");
        let occupancy = Arc::new(Occupancy::default());
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let sem = Semaphore::new(if i % 2 == 0 { &a } else { &b }, &sem_path, 2);
                let occ = occupancy.clone();
                tokio::spawn(async move {
                    for _ in 0..3 {
                        let lease = sem.acquire().await.unwrap();
                        occ.enter();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        occ.leave();
                        lease.release().await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            bounded("the semaphore", t).await.unwrap();
        }
        assert_eq!(occupancy.max(), 2, "{kind:?}");
        let held = Semaphore::new(&a, &sem_path, 2);
        let leases = held
            .try_acquire_many(2, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.participants().await.unwrap().len(), 2);
        assert!(Semaphore::new(&b, &sem_path, 2)
            .try_acquire(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none());
        drop(leases);

        // Two multi-locks over the same paths in opposite orders cannot deadlock.
        let (p1, p2) = (unique_root("multi-a"), unique_root("multi-b"));
        let ma = MultiLock::new(&a, &[&p1, &p2]);
        let mb = MultiLock::new(&b, &[&p2, &p1]);
        let occupancy = Arc::new(Occupancy::default());
        let run = |m: MultiLock, occ: Arc<Occupancy>| {
            tokio::spawn(async move {
                for _ in 0..5 {
                    let g = m.acquire().await.unwrap();
                    assert_eq!(g.fences().len(), 2);
                    occ.enter();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    occ.leave();
                    g.release().await.unwrap();
                }
            })
        };
        let (ta, tb) = (run(ma, occupancy.clone()), run(mb, occupancy.clone()));
        bounded("multi-lock a", ta).await.unwrap();
        bounded("multi-lock b", tb).await.unwrap();
        assert_eq!(occupancy.max(), 1);
        a.close().await.unwrap();
        b.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn leader_latches_elect_exactly_one_and_hand_over() {
    each_server("latch", |kind, addr| async move {
        let path = unique_root("latch");
        let clients: Vec<Client> = futures::future::join_all((0..3).map(|_| connect(addr))).await;
        let mut latches: Vec<LeaderLatch> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| LeaderLatch::start(c, &path, &format!("p{i}")))
            .collect();
        eventually(WAIT, "every latch to settle with one leader", || {
            let settled = latches
                .iter()
                .all(|l| !matches!(l.state(), LatchState::Starting));
            let leaders = latches.iter().filter(|l| l.has_leadership()).count();
            async move { settled && leaders == 1 }
        })
        .await;
        let all = latches[1].participants().await.unwrap();
        assert_eq!(all.len(), 3, "{kind:?}");
        assert!(all[0].is_leader && !all[1].is_leader);
        let lead = all[0].id[1..].parse::<usize>().unwrap();
        assert!(latches[lead].has_leadership(), "{kind:?}: {all:?}");
        assert_eq!(latches[lead].leader().await.unwrap().unwrap().id, all[0].id);
        let first = latches[lead].await_leadership().await.unwrap();
        let follower = (lead + 1) % 3;
        // The leader's fenced write goes through; a follower's cannot.
        latches[lead]
            .multi()
            .create(
                &format!("{path}-by-leader"),
                b"",
                &CreateOptions::persistent(),
            )
            .commit()
            .await
            .unwrap();
        assert!(latches[follower].multi().commit().await.is_err());

        // The leader leaves: the next in line leads, with a larger token.
        let next_id = all[1].id.clone();
        let next = next_id[1..].parse::<usize>().unwrap();
        let old = latches.remove(lead);
        old.close().await.unwrap();
        let next = if next > lead { next - 1 } else { next };
        let token = bounded("the next leader", latches[next].await_leadership())
            .await
            .unwrap();
        assert!(token.token() > first.token());
        assert_eq!(latches.iter().filter(|l| l.has_leadership()).count(), 1);
        assert_eq!(latches[0].leader().await.unwrap().unwrap().id, next_id);
        for l in latches {
            l.close().await.unwrap();
        }
        clients[0]
            .delete(&format!("{path}-by-leader"), None)
            .await
            .unwrap();
        for c in clients {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn an_election_runs_one_leader_task_at_a_time_and_cancels_it_on_loss() {
    each_server("election", |kind, addr| async move {
        let path = unique_root("election");
        let proxy = Proxy::start(addr).await;
        let cut = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(4))
            .connect()
            .await
            .unwrap();
        let stays = connect(addr).await;
        let occupancy = Arc::new(Occupancy::default());
        let led = Arc::new(AtomicUsize::new(0));

        // The first participant leads forever, until its connection is cut.
        let e1 = LeaderElection::new(&cut, &path, "cut");
        let (occ, n) = (occupancy.clone(), led.clone());
        let t1 = tokio::spawn(async move {
            e1.run(|_leadership| {
                let occ = occ.clone();
                let n = n.clone();
                async move {
                    occ.enter();
                    n.fetch_add(1, Ordering::SeqCst);
                    // Leaves the section only when cancelled, by dropping this guard.
                    struct Leave(Arc<Occupancy>);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.leave();
                        }
                    }
                    let _leave = Leave(occ.clone());
                    std::future::pending::<()>().await;
                }
            })
            .await
        });
        eventually(WAIT, "the first leader", || {
            let n = led.clone();
            async move { n.load(Ordering::SeqCst) == 1 }
        })
        .await;
        let e2 = LeaderElection::new(&stays, &path, "stays");
        assert_eq!(e2.leader().await.unwrap().unwrap().id, "cut");
        proxy.blackhole();
        let (occ, n) = (occupancy.clone(), led.clone());
        let second = e2.run(|leadership| {
            let occ = occ.clone();
            let n = n.clone();
            async move {
                occ.enter();
                n.fetch_add(1, Ordering::SeqCst);
                assert!(leadership.token() > 0);
                occ.leave();
            }
        });
        bounded("the second leadership", second).await.unwrap();
        assert_eq!(led.load(Ordering::SeqCst), 2);
        assert_eq!(
            occupancy.max(),
            1,
            "{kind:?}: the first task was cancelled first"
        );
        // The first run returns (its leadership ended) once its session is gone.
        let _ = bounded("the first run", t1).await.unwrap();
        cut.close().await.unwrap();
        stays.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn barriers_and_double_barriers() {
    each_server("barriers", |kind, addr| async move {
        let a = connect(addr).await;
        let b = connect(addr).await;
        let path = unique_root("barrier");
        let barrier = Barrier::new(&a, &path);
        barrier.set().await.unwrap();
        assert!(!Barrier::new(&b, &path)
            .wait(Some(Duration::from_millis(100)))
            .await
            .unwrap());
        let waiter = tokio::spawn({
            let w = Barrier::new(&b, &path);
            async move { w.wait(None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        barrier.remove().await.unwrap();
        assert!(bounded("the barrier", waiter).await.unwrap().unwrap());

        // Three members enter together and leave together.
        let dpath = unique_root("double");
        let members: Vec<_> = (0..3)
            .map(|i| DoubleBarrier::new(if i == 0 { &a } else { &b }, &dpath, 3))
            .collect();
        let early = DoubleBarrier::new(&a, &format!("{dpath}-alone"), 2);
        assert!(!early.enter(Some(Duration::from_millis(100))).await.unwrap());
        assert!(early.leave(Some(Duration::from_secs(5))).await.unwrap());
        let entered = Arc::new(AtomicUsize::new(0));
        let members: Vec<_> = members
            .into_iter()
            .map(|m| {
                let entered = entered.clone();
                tokio::spawn(async move {
                    assert!(m.enter(Some(WAIT)).await.unwrap());
                    entered.fetch_add(1, Ordering::SeqCst);
                    assert!(m.leave(Some(WAIT)).await.unwrap());
                })
            })
            .collect();
        for m in members {
            bounded("a member", m).await.unwrap();
        }
        assert_eq!(entered.load(Ordering::SeqCst), 3, "{kind:?}");
        assert!(children(&a, &dpath).await.is_empty(), "ready is gone too");
        a.close().await.unwrap();
        b.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn every_recipe_survives_a_connection_drop_during_acquire() {
    each_server("drop-during-acquire", |kind, addr| async move {
        let proxy = Proxy::start(addr).await;
        let c = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let observer = connect(addr).await;
        // Replies are swallowed while the acquire runs, then the connection drops: the acquire
        // must finish on the next connection with exactly one node of its own.
        async fn cut(proxy: &Proxy) {
            proxy.hold_replies();
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.drop_all();
            proxy.restore();
        }

        let rw_path = unique_root("drop-rw");
        let rw = RwLock::new(&c, &rw_path);
        let (w, ()) = tokio::join!(rw.write(), cut(&proxy));
        let w = w.unwrap();
        assert_eq!(children(&observer, &rw_path).await.len(), 1, "{kind:?}");
        w.release().await.unwrap();

        let sem_path = unique_root("drop-sem");
        let sem = Semaphore::new(&c, &sem_path, 1);
        let (lease, ()) = tokio::join!(sem.acquire(), cut(&proxy));
        let lease = lease.unwrap();
        let leases = children(&observer, &format!("{sem_path}/leases")).await;
        assert_eq!(leases.len(), 1, "{kind:?}: {leases:?}");
        lease.release().await.unwrap();

        let latch_path = unique_root("drop-latch");
        let mut latch = LeaderLatch::start(&c, &latch_path, "only");
        let (fence, ()) = tokio::join!(
            async { bounded("leadership", latch.await_leadership()).await },
            cut(&proxy)
        );
        assert!(fence.unwrap().token() > 0);
        // Leadership may have been dropped at Suspended and retaken: it settles with one node.
        eventually(WAIT, "one latch node, leading", || {
            let (o, p) = (observer.clone(), latch_path.clone());
            let leading = latch.has_leadership();
            async move { leading && children(&o, &p).await.len() == 1 }
        })
        .await;
        latch.close().await.unwrap();

        let d_path = unique_root("drop-double");
        let member = DoubleBarrier::new(&c, &d_path, 1);
        let (entered, ()) = tokio::join!(member.enter(Some(WAIT)), cut(&proxy));
        assert!(entered.unwrap());
        assert!(member.leave(Some(WAIT)).await.unwrap());
        assert!(children(&observer, &d_path).await.is_empty());
        c.close().await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}

// === pitfalls of `recipes-anchors.md` section 3, by number ===

#[tokio::test]
async fn waiters_watch_only_their_predecessor_and_follow_a_leaving_one() {
    each_server("pitfalls-queue", |kind, addr| async move {
        let path = unique_root("queue");
        let clients: Vec<Client> = futures::future::join_all((0..4).map(|_| connect(addr))).await;
        let holder = Lock::new(&clients[0], &path).acquire().await.unwrap();
        // Three waiters, queued in order.
        let mut waiters = Vec::new();
        for (i, c) in clients.iter().enumerate().skip(1) {
            let lock = Lock::new(c, &path);
            waiters.push(tokio::spawn(async move { lock.acquire().await }));
            eventually(WAIT, "the waiter to queue", || {
                let (o, p) = (clients[0].clone(), path.clone());
                async move { children(&o, &p).await.len() == i + 1 }
            })
            .await;
        }
        let queue = Lock::new(&clients[0], &path).participants().await.unwrap();
        let node = |i: usize| format!("{path}/{}", queue[i]);
        // 9. No herd: waiter i watches node i-1 and no other contender's node.
        #[allow(clippy::needless_range_loop)] // i names a waiter and its node alike
        for i in 1..4 {
            eventually(WAIT, "the waiter's watch", || {
                let (c, n) = (clients[i].clone(), node(i - 1));
                async move {
                    c.check_watches(&n, rookery_client::WatcherType::Data)
                        .await
                        .is_ok()
                }
            })
            .await;
            // ZooKeeper 3.8.0's checkWatches answers OK for paths this session does not
            // watch, so only Rookery's answer tells the absence of a watch.
            if kind != Kind::Rookery {
                continue;
            }
            for j in (0..i - 1).chain(i + 1..4) {
                assert_eq!(
                    clients[i]
                        .check_watches(&node(j), rookery_client::WatcherType::Data)
                        .await,
                    Err(Error::NoWatcher),
                    "{kind:?}: waiter {i} watches node {j}"
                );
            }
        }
        // 10. The middle waiter leaves: the last one re-lists and waits on the holder, without
        // taking the lock.
        waiters.remove(0).abort();
        clients[1].close().await.unwrap();
        eventually(WAIT, "the last waiter to watch the new predecessor", || {
            let (c, n) = (clients[3].clone(), node(2));
            async move {
                c.check_watches(&n, rookery_client::WatcherType::Data)
                    .await
                    .is_ok()
            }
        })
        .await;
        // 7. Our own node deleted while waiting: the waiter fails at once.
        clients[0].delete(&node(3), None).await.unwrap();
        let last = waiters.pop().unwrap();
        assert_eq!(
            bounded("the orphaned waiter", last)
                .await
                .unwrap()
                .unwrap_err(),
            Error::NoNode,
            "{kind:?}"
        );
        holder.release().await.unwrap();
        let next = bounded("the remaining waiter", waiters.pop().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(next.path().ends_with(&queue[2]));
        next.release().await.unwrap();
        for c in clients
            .into_iter()
            .skip(2)
            .chain(std::iter::once(connect(addr).await))
        {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn reentry_is_refused_close_unblocks_waiters_and_multi_locks_give_back() {
    each_server("pitfalls-misc", |kind, addr| async move {
        let a = connect(addr).await;
        let b = connect(addr).await;
        // 17. Re-entry through the same handle fails at once, a second handle contends.
        let path = unique_root("reentry");
        let lock = Lock::new(&a, &path);
        let g = lock.acquire().await.unwrap();
        assert_eq!(lock.acquire().await.unwrap_err(), Error::AlreadyHeld);
        assert_eq!(
            lock.clone().try_acquire(WAIT).await.unwrap_err(),
            Error::AlreadyHeld
        );
        assert!(Lock::new(&a, &path)
            .try_acquire(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none());

        // 19. A multi-lock whose last lock is held elsewhere times out and gives back the rest.
        let (p1, p2) = (unique_root("ml-1"), unique_root("ml-2"));
        let ml = MultiLock::new(&b, &[&p1, &p2, &path]);
        assert!(ml
            .try_acquire(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none());
        for p in [&p1, &p2] {
            eventually(WAIT, "the multi-lock to give back", || {
                let (o, p) = (a.clone(), p.to_string());
                async move { children(&o, &p).await.is_empty() }
            })
            .await;
        }

        // 39. Closing the client ends a waiter at once with a terminal error.
        let waiter = tokio::spawn({
            let lock = Lock::new(&b, &path);
            async move { lock.acquire().await }
        });
        eventually(WAIT, "the waiter to queue", || {
            let (o, p) = (a.clone(), path.clone());
            async move { children(&o, &p).await.len() == 2 }
        })
        .await;
        b.close().await.unwrap();
        let err = bounded("the waiter after close", waiter)
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.is_session_terminated(), "{kind:?}: {err:?}");
        drop(g);
        eventually(WAIT, "the lock to be free", || {
            let (o, p) = (a.clone(), path.clone());
            async move { children(&o, &p).await.is_empty() }
        })
        .await;
        a.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_partitioned_latch_leader_steps_down_before_another_leads() {
    each_server("pitfalls-latch", |kind, addr| async move {
        let path = unique_root("latch-partition");
        let proxy = Proxy::start(addr).await;
        let cut = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(4))
            .connect()
            .await
            .unwrap();
        let stays = connect(addr).await;
        let mut first = LeaderLatch::start(&cut, &path, "cut");
        bounded("the first leader", first.await_leadership())
            .await
            .unwrap();
        let mut second = LeaderLatch::start(&stays, &path, "stays");
        eventually(WAIT, "the second latch to join", || {
            let p = second.participants();
            async move { p.await.unwrap().len() == 2 }
        })
        .await;
        // 20. Cut off: the old leader reports NotLeader at Suspended, long before the servers
        // expire its session and the new leader is granted.
        let mut states = first.states();
        proxy.blackhole();
        let stepped_down = tokio::time::Instant::now();
        bounded("the old leader to step down", async {
            while states.borrow_and_update().clone() != LatchState::NotLeader {
                states.changed().await.unwrap();
            }
        })
        .await;
        assert!(!second.has_leadership(), "{kind:?}: two leaders");
        bounded("the new leader", second.await_leadership())
            .await
            .unwrap();
        assert!(
            stepped_down.elapsed() >= Duration::from_secs(1),
            "the new leader waited for the old session"
        );
        assert!(!first.has_leadership());
        second.close().await.unwrap();
        drop(first);
        stays.close().await.unwrap();
        let _ = cut.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_election_requeues_after_each_leadership() {
    each_server("pitfalls-requeue", |_kind, addr| async move {
        let path = unique_root("requeue");
        let c = connect(addr).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let election = LeaderElection::new(&c, &path, "again").auto_requeue(true);
        let counted = runs.clone();
        let run = election.run(move |_| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        // 22. Each leadership ends when the task returns, and the participant queues again.
        let _ = tokio::time::timeout(Duration::from_millis(500), run).await;
        assert!(
            runs.load(Ordering::SeqCst) >= 2,
            "{} runs",
            runs.load(Ordering::SeqCst)
        );
        // Dropping the run gave up the place in the queue.
        eventually(WAIT, "no node left", || {
            let (o, p) = (c.clone(), path.clone());
            async move { children(&o, &p).await.is_empty() }
        })
        .await;
        c.close().await.unwrap();
    })
    .await;
}
