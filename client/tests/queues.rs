//! The queues against both servers: FIFO order and Curator's item bytes, priority order with
//! negative priorities, and the locking queue's at-least-once consumption: concurrent
//! consumers across a consumer crash ack every item exactly once, a released or dropped item
//! comes back, and a consumer that lost its session cannot ack. Interoperability with the
//! real Curator 5.4 queues (Java) and kazoo's `LockingQueue` (Python) when they are installed.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rookery_client::recipes::{DistributedPriorityQueue, DistributedQueue, LockingQueue};
use rookery_client::{Client, CreateMode, CreateOptions, Error, SessionState};
use tokio::sync::oneshot;

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Curator's `ItemSerializer` bytes, written out by hand: version 0x00010001, then
/// `0x01 <len> <bytes>` per item, then 0x02.
fn curator_bytes(items: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0x00, 0x01];
    for item in items {
        out.push(0x01);
        out.extend_from_slice(&(item.len() as u32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out.push(0x02);
    out
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

fn is_seq(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

async fn children(c: &Client, path: &str) -> Vec<String> {
    match c.get_children(path).await {
        Ok(mut k) => {
            k.sort();
            k
        }
        Err(Error::NoNode) => Vec::new(),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn a_fifo_queue_keeps_order_in_curators_item_format() {
    each_server("fifo", |kind, addr| async move {
        let root = unique_root("fifo");
        let path = format!("{root}/q");
        let c = connect(addr).await;
        let q = DistributedQueue::new(&c, &path);
        assert_eq!(q.len().await.unwrap(), 0);
        assert_eq!(q.try_take().await.unwrap(), None);
        assert_eq!(
            q.take_timeout(Duration::from_millis(200)).await.unwrap(),
            None
        );
        // Made as Curator makes it: the queue persistent, its parent a container.
        let (_, stat) = c.get_data(&path).await.unwrap();
        assert_eq!(stat.ephemeral_owner, 0);

        let a = q.put(b"a").await.unwrap();
        let empty = q.put(b"").await.unwrap();
        let ccc = q.put(b"ccc").await.unwrap();
        let multi = q.put_multi(&[&b"m1"[..], b"m2"]).await.unwrap();
        for p in [&a, &empty, &ccc, &multi] {
            let name = name_of(p);
            assert!(
                name.starts_with("queue-") && is_seq(&name[6..]),
                "{kind:?}: {name}"
            );
        }
        assert_eq!(c.get_data(&a).await.unwrap().0, curator_bytes(&[b"a"]));
        assert_eq!(
            c.get_data(&a).await.unwrap().0,
            [0, 1, 0, 1, 1, 0, 0, 0, 1, b'a', 2]
        );
        assert_eq!(c.get_data(&empty).await.unwrap().0, curator_bytes(&[b""]));
        assert_eq!(
            c.get_data(&multi).await.unwrap().0,
            curator_bytes(&[b"m1", b"m2"])
        );
        // A foreign node and a node not in the item format are skipped, as Curator skips them.
        c.create(&format!("{path}/other"), b"x", &CreateOptions::persistent())
            .await
            .unwrap();
        let junk = c
            .create(
                &format!("{path}/queue-"),
                b"junk",
                &CreateOptions::new(CreateMode::PersistentSequential),
            )
            .await
            .unwrap();
        q.put(b"d").await.unwrap();
        assert_eq!(q.len().await.unwrap(), 6, "queue- nodes only");

        let mut got = Vec::new();
        while let Some(item) = q.try_take().await.unwrap() {
            got.push(text(item));
        }
        assert_eq!(got, ["a", "", "ccc", "m1", "m2", "d"], "{kind:?}");
        assert_eq!(
            children(&c, &path).await,
            vec!["other".to_owned(), name_of(&junk).to_owned()]
        );

        // A take waits for the next put, from another client.
        let c2 = connect(addr).await;
        let waiting = {
            let q2 = DistributedQueue::new(&c2, &path);
            tokio::spawn(async move { q2.take().await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        q.put(b"late").await.unwrap();
        assert_eq!(
            bounded("the waiting take", waiting).await.unwrap().unwrap(),
            b"late"
        );

        // Three consumers on their own clients: each item once, each consumer in order.
        for i in 0..30 {
            q.put(format!("{i:02}").as_bytes()).await.unwrap();
        }
        let consumers: Vec<Client> = futures::future::join_all((0..3).map(|_| connect(addr))).await;
        let tasks: Vec<_> = consumers
            .iter()
            .map(|cc| {
                let q = DistributedQueue::new(cc, &path);
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while let Some(item) = q.take_timeout(Duration::from_millis(500)).await? {
                        mine.push(text(item).parse::<u32>().unwrap());
                    }
                    Ok::<_, Error>(mine)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            let mine = bounded("a consumer", t).await.unwrap().unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{kind:?}: {mine:?}");
            all.extend(mine);
        }
        all.sort();
        assert_eq!(all, (0..30).collect::<Vec<_>>(), "{kind:?}: each item once");
        for cc in consumers {
            cc.close().await.unwrap();
        }
        c2.close().await.unwrap();
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_priority_queue_takes_the_lowest_priority_first_negatives_included() {
    each_server("priority", |kind, addr| async move {
        let path = unique_root("prio");
        let c = connect(addr).await;
        let q = DistributedPriorityQueue::new(&c, &path);
        let puts: &[(&str, i32)] = &[
            ("p5a", 5),
            ("m1a", -1),
            ("zero", 0),
            ("min", i32::MIN),
            ("max", i32::MAX),
            ("p5b", 5),
            ("m1b", -1),
            ("m300", -300),
            ("p16", 16),
        ];
        let mut names = BTreeMap::new();
        for (label, priority) in puts {
            let p = q.put(label.as_bytes(), *priority).await.unwrap();
            assert_eq!(
                c.get_data(&p).await.unwrap().0,
                curator_bytes(&[label.as_bytes()])
            );
            names.insert(*label, name_of(&p).to_owned());
        }
        // Curator's priorityToString: "1" + %08X for >= 0, "0" + the two's complement below.
        for (label, prefix) in [
            ("min", "queue-080000000"),
            ("m300", "queue-0FFFFFED4"),
            ("m1a", "queue-0FFFFFFFF"),
            ("zero", "queue-100000000"),
            ("p5a", "queue-100000005"),
            ("p16", "queue-100000010"),
            ("max", "queue-17FFFFFFF"),
        ] {
            let name = &names[label];
            assert!(
                name.starts_with(prefix) && is_seq(&name[prefix.len()..]),
                "{kind:?}: {label} is {name}, not {prefix}<seq>"
            );
        }
        assert_eq!(q.len().await.unwrap(), puts.len());
        let mut got = Vec::new();
        for _ in 0..puts.len() {
            got.push(text(bounded("a take", q.take()).await.unwrap()));
        }
        assert_eq!(
            got,
            ["min", "m300", "m1a", "m1b", "zero", "p5a", "p5b", "p16", "max"],
            "{kind:?}"
        );
        assert!(q.is_empty().await.unwrap());
        c.close().await.unwrap();
    })
    .await;
}

/// Takes and acks until `total` items are acked by anyone, recording what this consumer acked.
async fn consume(
    q: LockingQueue,
    acked: Arc<Mutex<Vec<String>>>,
    total: usize,
) -> Result<usize, Error> {
    let mut mine = 0;
    while acked.lock().unwrap().len() < total {
        let Some(item) = q.take_timeout(Duration::from_millis(300)).await? else {
            continue;
        };
        assert!(item.is_held().await?);
        let payload = String::from_utf8(item.data().to_vec()).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await; // "processing"
        item.ack().await?;
        acked.lock().unwrap().push(payload);
        mine += 1;
    }
    Ok(mine)
}

#[tokio::test]
async fn a_locking_queue_acks_each_item_exactly_once_across_consumer_crashes() {
    each_server("locking-crash", |kind, addr| async move {
        let path = unique_root("lq");
        let producer = connect(addr).await;
        let q = LockingQueue::new(&producer, &path);
        let expected: Vec<String> = (0..30).map(|i| format!("item-{i:02}")).collect();
        for item in &expected {
            q.put(item.as_bytes()).await.unwrap();
        }
        // kazoo's layout: entries/entry-<priority %03d>-<seq>, the item's bytes as they are.
        let entries = children(&producer, &format!("{path}/entries")).await;
        assert_eq!(entries.len(), 30);
        for e in &entries {
            assert!(e.starts_with("entry-100-") && is_seq(&e[10..]), "{e}");
        }
        assert_eq!(
            producer
                .get_data(&format!("{path}/entries/{}", entries[0]))
                .await
                .unwrap()
                .0,
            b"item-00"
        );
        assert_eq!(q.len().await.unwrap(), 30);

        // A consumer takes the first item and crashes by closing its client without an ack:
        // the item is free again at once.
        let closing = connect(addr).await;
        let first = LockingQueue::new(&closing, &path).take().await.unwrap();
        assert_eq!(first.data(), b"item-00");
        let taken = format!("{path}/taken/{}", first.name());
        let (id, stat) = producer.get_data(&taken).await.unwrap();
        assert_eq!(stat.ephemeral_owner, closing.session_id(), "{kind:?}");
        assert_eq!(id.len(), 32, "a uuid4 hex id, as kazoo writes");
        closing.close().await.unwrap();
        std::mem::forget(first); // a crash: no release either
        eventually(WAIT, "the closed consumer's hold to go", || async {
            children(&producer, &format!("{path}/taken"))
                .await
                .is_empty()
        })
        .await;

        // Three consumers on their own clients; the third is cut off (a partition) while it
        // holds an item, until its session expires.
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (proxy, crashing) = renewing_behind_proxy(addr).await;
        let generation = crashing.session_generation();
        let a = connect(addr).await;
        let b = connect(addr).await;
        let (held_tx, held_rx) = oneshot::channel();
        let crash_task = {
            let q = LockingQueue::new(&crashing, &path);
            let acked = acked.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    let item = q.take().await.unwrap();
                    let payload = String::from_utf8(item.data().to_vec()).unwrap();
                    item.ack().await.unwrap();
                    acked.lock().unwrap().push(payload);
                }
                let item = q.take().await.unwrap();
                held_tx.send(()).unwrap();
                item // held, never acked
            })
        };
        let workers: Vec<_> = [&a, &b]
            .into_iter()
            .map(|c| tokio::spawn(consume(LockingQueue::new(c, &path), acked.clone(), 30)))
            .collect();
        bounded("the crashing consumer's hold", held_rx)
            .await
            .unwrap();
        proxy.blackhole();
        let held = crash_task.await.unwrap();
        let held_payload = String::from_utf8(held.data().to_vec()).unwrap();

        let mut per_worker = Vec::new();
        for w in workers {
            let n = tokio::time::timeout(WAIT * 2, w)
                .await
                .expect("the consumers to finish")
                .unwrap()
                .unwrap();
            per_worker.push(n);
        }
        let mut all = acked.lock().unwrap().clone();
        all.sort();
        assert_eq!(all, expected, "{kind:?}: every item acked exactly once");
        assert!(
            per_worker.iter().all(|n| *n > 0),
            "{kind:?}: both healthy consumers worked: {per_worker:?}"
        );
        assert_eq!(
            all.iter().filter(|p| **p == held_payload).count(),
            1,
            "the crashed consumer's item, acked by another"
        );
        assert_eq!(q.len().await.unwrap(), 0);
        assert!(children(&producer, &format!("{path}/taken"))
            .await
            .is_empty());

        // The crashed consumer comes back with a new session: its ack is refused.
        proxy.restore();
        proxy.drop_all();
        eventually(WAIT, "the renewed session", || async {
            crashing.session_generation() > generation
                && crashing.state() == SessionState::Connected
        })
        .await;
        assert!(!held.is_held().await.unwrap());
        let err = held.ack().await.unwrap_err();
        assert_eq!(err, Error::SessionExpired, "{kind:?}");
        crashing.close().await.unwrap();
        for c in [a, b, producer] {
            c.close().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_stale_consumers_ack_does_not_touch_the_new_holders_item() {
    each_server("locking-fence", |kind, addr| async move {
        let path = unique_root("lqfence");
        let fresh = connect(addr).await;
        let q = LockingQueue::new(&fresh, &path);
        q.put(b"job").await.unwrap();

        let (proxy, stale) = renewing_behind_proxy(addr).await;
        let generation = stale.session_generation();
        let old = LockingQueue::new(&stale, &path).take().await.unwrap();
        // Cut off; its session expires, and the entry passes to another consumer, whose taken
        // node has the same version (0) the stale consumer's had.
        proxy.blackhole();
        let new = bounded("the entry to pass", q.take()).await.unwrap();
        assert_eq!(new.data(), b"job");
        assert_eq!(new.name(), old.name());
        proxy.restore();
        proxy.drop_all();
        eventually(WAIT, "the renewed session", || async {
            stale.session_generation() > generation && stale.state() == SessionState::Connected
        })
        .await;
        assert_eq!(
            old.ack().await.unwrap_err(),
            Error::SessionExpired,
            "{kind:?}"
        );
        assert!(new.is_held().await.unwrap(), "the new holder's hold stands");
        assert_eq!(q.len().await.unwrap(), 1, "the entry is still there");
        new.ack().await.unwrap();
        assert_eq!(q.len().await.unwrap(), 0);
        stale.close().await.unwrap();
        fresh.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_locking_queue_gives_back_released_dropped_and_cancelled_takes() {
    each_server("locking-release", |kind, addr| async move {
        let path = unique_root("lqrel");
        let c = connect(addr).await;
        let other = connect(addr).await;
        let q = LockingQueue::new(&c, &path);
        let q2 = LockingQueue::new(&other, &path);
        assert_eq!(
            q.try_take().await.unwrap().map(|i| i.name().to_owned()),
            None
        );
        assert!(matches!(
            q.put_with_priority(b"x", 1000).await,
            Err(Error::InvalidArgument(_))
        ));
        q.put_with_priority(b"low", 500).await.unwrap();
        q.put(b"mid-1").await.unwrap();
        q.put_with_priority(b"high", 0).await.unwrap();
        q.put(b"mid-2").await.unwrap();
        let names = children(&c, &format!("{path}/entries")).await;
        assert!(names[0].starts_with("entry-000-"), "{names:?}");
        assert!(names[3].starts_with("entry-500-"), "{names:?}");

        // Priority order; a held entry is skipped by others; len counts held ones.
        let high = q.take().await.unwrap();
        assert_eq!(high.data(), b"high");
        let mid1 = q2.take().await.unwrap();
        assert_eq!(mid1.data(), b"mid-1", "{kind:?}: the held entry is skipped");
        assert_eq!(q.len().await.unwrap(), 4);

        // Release gives it back to the next take; dropping does too.
        high.release().await.unwrap();
        assert_eq!(q2.take().await.unwrap().data(), b"high"); // dropped at once
        eventually(WAIT, "the dropped item's hold to go", || async {
            children(&c, &format!("{path}/taken")).await.len() == 1
        })
        .await;

        // A take waiting for the only free entry wakes when a holder releases it.
        let h = q.take().await.unwrap();
        let mid2 = q.take().await.unwrap();
        let low = q.take().await.unwrap();
        assert_eq!(
            [h.data(), mid2.data(), low.data()],
            [&b"high"[..], b"mid-2", b"low"]
        );
        assert!(q2
            .take_timeout(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
        let waiting = {
            let q2 = q2.clone();
            tokio::spawn(async move { q2.take().await.map(|i| i.data().to_vec()) })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        low.release().await.unwrap();
        assert_eq!(
            bounded("the waiting take", waiting).await.unwrap().unwrap(),
            b"low"
        );

        // Cancelled takes at every point leave no hold behind.
        for h in [h, mid2] {
            h.ack().await.unwrap();
        }
        mid1.ack().await.unwrap();
        assert_eq!(q.len().await.unwrap(), 1, "only low is left");
        for k in 0..25u64 {
            let r = tokio::time::timeout(Duration::from_micros(150 * k), q.take()).await;
            if let Ok(item) = r {
                item.unwrap().release().await.unwrap();
            }
            eventually(WAIT, "no hold after a cancelled take", || async {
                children(&c, &format!("{path}/taken")).await.is_empty()
            })
            .await;
        }
        let last = q.take().await.unwrap();
        assert_eq!(last.data(), b"low");
        last.ack().await.unwrap();
        assert!(q.is_empty().await.unwrap());
        other.close().await.unwrap();
        c.close().await.unwrap();
    })
    .await;
}

// === interoperability ===

/// A Curator 5.4 producer or consumer, one JVM per run.
const CURATOR_QUEUE: &str = r#"
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.queue.*;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryOneTime;

/** QueueInterop <connect> <put|put-multi|put-priority|take|take-priority> <path> <args...> */
public class QueueInterop {
    static final QueueSerializer<byte[]> RAW = new QueueSerializer<byte[]>() {
        public byte[] serialize(byte[] item) { return item; }
        public byte[] deserialize(byte[] bytes) { return bytes; }
    };

    static byte[] bytes(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    public static void main(String[] args) throws Exception {
        CuratorFramework client =
            CuratorFrameworkFactory.newClient(args[0], 10000, 10000, new RetryOneTime(200));
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) throw new RuntimeException("no connection");
        String mode = args[1], path = args[2];
        BlockingQueue<byte[]> got = new LinkedBlockingQueue<>();
        QueueConsumer<byte[]> consumer = new QueueConsumer<byte[]>() {
            public void consumeMessage(byte[] message) { got.add(message); }
            public void stateChanged(CuratorFramework c, ConnectionState s) {}
        };
        boolean taking = mode.startsWith("take");
        QueueBuilder<byte[]> builder =
            QueueBuilder.builder(client, taking ? consumer : null, RAW, path).putInBackground(false);
        if (mode.endsWith("priority")) {
            DistributedPriorityQueue<byte[]> q = builder.buildPriorityQueue(0);
            q.start();
            if (taking) take(got, Integer.parseInt(args[3]));
            else for (int i = 3; i < args.length; i++) {
                int c = args[i].lastIndexOf(':');
                q.put(bytes(args[i].substring(0, c)), Integer.parseInt(args[i].substring(c + 1)));
            }
            q.close();
        } else {
            DistributedQueue<byte[]> q = builder.buildQueue();
            q.start();
            if (taking) take(got, Integer.parseInt(args[3]));
            else if (mode.equals("put-multi")) {
                List<byte[]> items = new ArrayList<>();
                for (int i = 3; i < args.length; i++) items.add(bytes(args[i]));
                Iterator<byte[]> it = items.iterator();
                q.putMulti(() -> it.hasNext() ? it.next() : null);
            } else for (int i = 3; i < args.length; i++) q.put(bytes(args[i]));
            q.close();
        }
        System.out.println("DONE");
        client.close();
        System.exit(0);
    }

    static void take(BlockingQueue<byte[]> got, int n) throws Exception {
        for (int i = 0; i < n; i++) {
            byte[] m = got.poll(30, TimeUnit.SECONDS);
            if (m == null) throw new RuntimeException("timed out after " + i + " items");
            System.out.println("ITEM " + new String(m, StandardCharsets.UTF_8));
        }
    }
}
"#;

/// The compiled `QueueInterop` class directory (compiled once per source), or `None` when
/// javac, java or the Curator jars are missing.
async fn curator_classes() -> Option<PathBuf> {
    if !common::curator::available() {
        eprintln!("skipped: javac, java or the Curator jars are missing");
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    CURATOR_QUEUE.hash(&mut h);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("queue-interop-{:016x}", h.finish()));
    if dir.join("QueueInterop.class").exists() {
        return Some(dir);
    }
    std::fs::create_dir_all(&base).unwrap();
    let work = tempfile::Builder::new()
        .prefix("queue-interop-build-")
        .tempdir_in(&base)
        .unwrap();
    let src = work.path().join("QueueInterop.java");
    let classes = work.path().join("classes");
    std::fs::write(&src, CURATOR_QUEUE).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("javac")
            .arg("-nowarn")
            .arg("-cp")
            .arg(common::curator::JARS.join(":"))
            .arg("-d")
            .arg(&classes)
            .arg(&src)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("javac within 3 minutes")
    .unwrap();
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test binary may have won the race: either copy is the same.
    let _ = std::fs::rename(&classes, &dir);
    Some(dir)
}

/// Runs the Curator program; the items it printed.
async fn curator(classes: &Path, args: &[&str]) -> Vec<String> {
    let mut cp: Vec<String> = common::curator::JARS
        .iter()
        .map(|j| j.to_string())
        .collect();
    cp.push(classes.display().to_string());
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("java")
            .arg("-Xmx128m")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-cp")
            .arg(cp.join(":"))
            .arg("QueueInterop")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Curator program within 90 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "Curator {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ITEM "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn curator_reads_rookery_queue_items_and_the_other_way_round() {
    let Some(classes) = curator_classes().await else {
        return;
    };
    each_server("curator-queue", |kind, addr| {
        let classes = classes.clone();
        async move {
            let connect_string = addr.to_string();
            let c = connect(addr).await;

            // Rust puts (one multi-item node among them), Curator takes in order.
            let path = unique_root("cq");
            let q = DistributedQueue::new(&c, &path);
            for item in ["r0", "", "r2"] {
                q.put(item.as_bytes()).await.unwrap();
            }
            q.put_multi(&["r3", "r4"]).await.unwrap();
            let got = curator(&classes, &[&connect_string, "take", &path, "5"]).await;
            assert_eq!(got, ["r0", "", "r2", "r3", "r4"], "{kind:?}");
            assert_eq!(q.len().await.unwrap(), 0);

            // Curator puts (and a putMulti), Rust takes in order.
            curator(&classes, &[&connect_string, "put", &path, "j0", "j1", "j2"]).await;
            curator(&classes, &[&connect_string, "put-multi", &path, "j3", "j4"]).await;
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(text(bounded("a take", q.take()).await.unwrap()));
            }
            assert_eq!(got, ["j0", "j1", "j2", "j3", "j4"], "{kind:?}");

            // Priorities both ways, negatives included.
            let path = unique_root("cpq");
            let pq = DistributedPriorityQueue::new(&c, &path);
            for (item, priority) in [("r5", 5), ("rmin", i32::MIN), ("rm1", -1), ("r0", 0)] {
                pq.put(item.as_bytes(), priority).await.unwrap();
            }
            let got = curator(&classes, &[&connect_string, "take-priority", &path, "4"]).await;
            assert_eq!(got, ["rmin", "rm1", "r0", "r5"], "{kind:?}");
            curator(
                &classes,
                &[
                    &connect_string,
                    "put-priority",
                    &path,
                    "j7:7",
                    "jm9:-9",
                    "j0:0",
                    "jmax:2147483647",
                    "jm1:-1",
                ],
            )
            .await;
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(text(bounded("a take", pq.take()).await.unwrap()));
            }
            assert_eq!(got, ["jm9", "jm1", "j0", "j7", "jmax"], "{kind:?}");
            c.close().await.unwrap();
        }
    })
    .await;
}

/// A kazoo `LockingQueue` producer or consumer.
const KAZOO_QUEUE: &str = r#"
import sys
from kazoo.client import KazooClient
hosts, mode, path = sys.argv[1:4]
c = KazooClient(hosts=hosts)
c.start(timeout=30)
q = c.LockingQueue(path)
if mode == "put":
    for arg in sys.argv[4:]:
        value, priority = arg.rsplit(":", 1)
        q.put(value.encode(), int(priority))
else:
    for _ in range(int(sys.argv[4])):
        v = q.get(30)
        if v is None:
            sys.exit("timed out")
        print("ITEM " + v.decode(), flush=True)
        if not q.consume():
            sys.exit("consume failed")
c.stop()
c.close()
print("DONE", flush=True)
"#;

fn kazoo_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import kazoo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn kazoo(args: &[&str]) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(KAZOO_QUEUE)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kazoo within 60 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "kazoo {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ITEM "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn kazoo_shares_a_locking_queue_with_rookery() {
    if !kazoo_available() {
        eprintln!("skipped: python3 with kazoo is missing");
        return;
    }
    each_server("kazoo-queue", |kind, addr| async move {
        let connect_string = addr.to_string();
        let path = unique_root("kq");
        let c = connect(addr).await;
        let q = LockingQueue::new(&c, &path);

        // kazoo puts, Rust takes in kazoo's order (priority, then FIFO).
        kazoo(&[
            &connect_string,
            "put",
            &path,
            "k1:100",
            "k0:5",
            "k2:100",
            "k9:999",
        ])
        .await;
        let mut got = Vec::new();
        for _ in 0..4 {
            let item = bounded("a take", q.take()).await.unwrap();
            got.push(String::from_utf8(item.data().to_vec()).unwrap());
            item.ack().await.unwrap();
        }
        assert_eq!(got, ["k0", "k1", "k2", "k9"], "{kind:?}");

        // Rust puts and holds the first entry; kazoo skips it and consumes the rest.
        for (item, priority) in [("r-held", 1), ("r1", 100), ("r2", 100)] {
            q.put_with_priority(item.as_bytes(), priority)
                .await
                .unwrap();
        }
        let held = q.take().await.unwrap();
        assert_eq!(held.data(), b"r-held");
        let got = kazoo(&[&connect_string, "take", &path, "2"]).await;
        assert_eq!(got, ["r1", "r2"], "{kind:?}");
        // Given back, kazoo takes it too.
        held.release().await.unwrap();
        let got = kazoo(&[&connect_string, "take", &path, "1"]).await;
        assert_eq!(got, ["r-held"], "{kind:?}");
        assert!(q.is_empty().await.unwrap());
        let taken: HashSet<String> = children(&c, &format!("{path}/taken"))
            .await
            .into_iter()
            .collect();
        assert!(taken.is_empty(), "{taken:?}");
        c.close().await.unwrap();
    })
    .await;
}
