//! Interoperability with the real Apache Curator 5.4 (a Java peer, `common/curator.rs`) and
//! kazoo: the recipes share one path with them, on Rookery and on Apache ZooKeeper 3.8. Curator
//! and a Rookery `Lock` never hold at once; a Curator `LeaderLatch` and a Rookery `LeaderLatch`
//! elect exactly one leader between them; likewise for the semaphore, the read/write lock and
//! the barriers. kazoo's `Lock`, given Curator's node name, joins the lock test. Skipped (with
//! a message) where Java, the Curator jars or kazoo are missing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::curator::{self, CuratorPeer};
use common::*;
use rookery_client::recipes::{Barrier, DoubleBarrier, LeaderLatch, Lock, RwLock, Semaphore};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SHORT: Duration = Duration::from_millis(300);
const EVENT: Duration = Duration::from_secs(20);

fn skip_without_curator() -> bool {
    if curator::available() {
        return false;
    }
    eprintln!("skipping: javac, java or the Curator jars (libcurator-recipes-java) are missing");
    true
}

/// kazoo's `Lock` with Curator's node name, driven over stdin: `acquire SECONDS` answers
/// `ok True|False`, `release` answers `ok`.
const KAZOO_LOCK: &str = r#"
import sys
from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout
from kazoo.recipe.lock import Lock

class CuratorNamedLock(Lock):
    # Nodes <hex>-lock-<seq>: Curator and Rookery read the part after "lock-" as the sequence.
    _NODE_NAME = "-lock-"
    _EXCLUDE_NAMES = ["-lock-"]

zk = KazooClient(hosts=sys.argv[1])
zk.start(timeout=20)
lock = CuratorNamedLock(zk, sys.argv[2], "kazoo")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "acquire":
        try:
            print("ok", lock.acquire(timeout=float(cmd[1])), flush=True)
        except LockTimeout:
            print("ok", False, flush=True)
    elif cmd[0] == "release":
        lock.release()
        print("ok", flush=True)
zk.stop()
"#;

struct Kazoo {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Kazoo {
    async fn start(connect: &str, path: &str) -> Option<Kazoo> {
        let has_kazoo = std::process::Command::new("python3")
            .args(["-c", "import kazoo"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_kazoo {
            eprintln!("skipping the kazoo part: python3 with kazoo is missing");
            return None;
        }
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", KAZOO_LOCK, connect, path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut k = Kazoo {
            child,
            stdin,
            lines,
        };
        assert_eq!(k.line().await, "ready");
        Some(k)
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(EVENT, self.lines.next_line())
            .await
            .expect("kazoo answers")
            .expect("kazoo's stdout")
            .expect("kazoo exited")
    }

    async fn call(&mut self, cmd: &str) -> String {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }
}

impl Drop for Kazoo {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn curator_kazoo_and_rookery_share_one_lock() {
    if skip_without_curator() {
        return;
    }
    each_server("interop-lock", |kind, addr| async move {
        let path = unique_root("interop-lock");
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let mut kazoo = Kazoo::start(&addr.to_string(), &path).await;
        let c = connect(addr).await;
        let lock = Lock::new(&c, &path);
        let ms = SHORT.as_millis();

        // Rookery holds: Curator and kazoo wait and time out.
        let g = lock.acquire().await.unwrap();
        assert_eq!(
            peer.ok(&format!("mutex-acquire m {path} {ms}")).await,
            "false",
            "{kind:?}"
        );
        if let Some(k) = kazoo.as_mut() {
            assert_eq!(k.call("acquire 0.3").await, "ok False");
        }
        g.release().await.unwrap();

        // Curator holds: Rookery and kazoo wait.
        assert_eq!(
            peer.ok(&format!("mutex-acquire m {path} 5000")).await,
            "true"
        );
        assert!(lock.try_acquire(SHORT).await.unwrap().is_none(), "{kind:?}");
        if let Some(k) = kazoo.as_mut() {
            assert_eq!(k.call("acquire 0.3").await, "ok False");
        }
        // A Rookery contender queued behind Curator's holder gets the lock when it releases.
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move { lock.acquire().await }
        });
        eventually(WAIT, "the Rookery contender to queue", || {
            let (c, p) = (c.clone(), path.clone());
            async move { c.get_children(&p).await.unwrap().len() == 2 }
        })
        .await;
        peer.ok("mutex-release m").await;
        let g = tokio::time::timeout(EVENT, waiter)
            .await
            .expect("the hand-off")
            .unwrap()
            .unwrap();
        assert_eq!(
            peer.ok(&format!("mutex-acquire m {path} {ms}")).await,
            "false"
        );
        g.release().await.unwrap();

        // kazoo holds: Curator and Rookery wait.
        if let Some(k) = kazoo.as_mut() {
            assert_eq!(k.call("acquire 5").await, "ok True", "{kind:?}");
            assert!(lock.try_acquire(SHORT).await.unwrap().is_none());
            assert_eq!(
                peer.ok(&format!("mutex-acquire m {path} {ms}")).await,
                "false"
            );
            assert_eq!(k.call("release").await, "ok");
        }
        let g = lock.try_acquire(EVENT).await.unwrap().expect("free again");
        g.release().await.unwrap();
        peer.quit().await;
        drop(kazoo);
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_curator_latch_and_a_rookery_latch_elect_exactly_one_leader() {
    if skip_without_curator() {
        return;
    }
    each_server("interop-latch", |kind, addr| async move {
        let path = unique_root("interop-latch");
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let c = connect(addr).await;
        peer.ok(&format!("latch-start j {path} java-1")).await;
        peer.wait_event("latch j leader", EVENT).await;
        let mut latch = LeaderLatch::start(&c, &path, "rust-1");
        eventually(WAIT, "the Rookery latch to join", || {
            let p = latch.participants();
            async move { p.await.unwrap().len() == 2 }
        })
        .await;
        assert!(!latch.has_leadership(), "{kind:?}: two leaders");
        assert_eq!(latch.leader().await.unwrap().unwrap().id, "java-1");
        assert_eq!(peer.ok("latch-has j").await, "true");

        // Curator's leader leaves: Rookery's latch leads, and a new Curator latch sees it.
        peer.ok("latch-close j").await;
        let fence = tokio::time::timeout(EVENT, latch.await_leadership())
            .await
            .expect("leadership passes to Rookery")
            .unwrap();
        assert!(fence.token() > 0);
        peer.ok(&format!("latch-start k {path} java-2")).await;
        eventually(WAIT, "Curator's second latch to join", || {
            let p = latch.participants();
            async move { p.await.unwrap().len() == 2 }
        })
        .await;
        assert_eq!(peer.ok("latch-has k").await, "false");
        assert_eq!(peer.ok("latch-leader k").await, "rust-1");
        assert!(latch.has_leadership());

        // And back.
        latch.close().await.unwrap();
        peer.wait_event("latch k leader", EVENT).await;
        peer.quit().await;
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn semaphores_read_write_locks_and_barriers_are_shared_with_curator() {
    if skip_without_curator() {
        return;
    }
    each_server("interop-rest", |kind, addr| async move {
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let c = connect(addr).await;
        let ms = SHORT.as_millis();

        // A semaphore of one lease.
        let sem_path = unique_root("interop-sem");
        let sem = Semaphore::new(&c, &sem_path, 1);
        let lease = sem.acquire().await.unwrap();
        assert_eq!(
            peer.ok(&format!("sem-acquire s {sem_path} 1 {ms}")).await,
            "false",
            "{kind:?}"
        );
        lease.release().await.unwrap();
        assert_eq!(
            peer.ok(&format!("sem-acquire s {sem_path} 1 5000")).await,
            "true"
        );
        assert!(sem.try_acquire(SHORT).await.unwrap().is_none(), "{kind:?}");
        peer.ok("sem-release s").await;
        sem.try_acquire(EVENT)
            .await
            .unwrap()
            .expect("the lease came back")
            .release()
            .await
            .unwrap();

        // Read/write lock: Curator's writer excludes Rookery's reader; readers share.
        let rw_path = unique_root("interop-rw");
        let rw = RwLock::new(&c, &rw_path);
        assert_eq!(
            peer.ok(&format!("rw-write-acquire w {rw_path} 5000")).await,
            "true"
        );
        assert!(rw.try_read(SHORT).await.unwrap().is_none(), "{kind:?}");
        peer.ok("rw-write-release w").await;
        let r = rw.read().await.unwrap();
        assert_eq!(
            peer.ok(&format!("rw-read-acquire r {rw_path} 5000")).await,
            "true"
        );
        assert_eq!(
            peer.ok(&format!("rw-write-acquire w {rw_path} {ms}")).await,
            "false"
        );
        peer.ok("rw-read-release r").await;
        assert_eq!(
            rw.try_write(SHORT).await.unwrap_err(),
            rookery_client::Error::AlreadyHeld,
            "no upgrade"
        );
        let other = RwLock::new(&c, &rw_path);
        assert!(
            other.try_write(SHORT).await.unwrap().is_none(),
            "our own reader holds"
        );
        drop(r);
        rw.try_write(EVENT)
            .await
            .unwrap()
            .expect("free")
            .release()
            .await
            .unwrap();

        // Barrier: set by Curator, waited on by Rookery, removed by Rookery, passed by Curator.
        let b_path = unique_root("interop-barrier");
        peer.ok(&format!("barrier-set {b_path}")).await;
        let barrier = Barrier::new(&c, &b_path);
        assert!(!barrier.wait(Some(SHORT)).await.unwrap());
        peer.ok(&format!("barrier-wait {b_path} 15000")).await;
        barrier.remove().await.unwrap();
        peer.wait_event(&format!("barrier {b_path} passed"), EVENT)
            .await;

        // Double barrier of two: one Curator member, one Rookery member.
        let d_path = unique_root("interop-double");
        let member = DoubleBarrier::new(&c, &d_path, 2);
        peer.ok(&format!("dbarrier-enter d {d_path} 2 15000")).await;
        assert!(member.enter(Some(EVENT)).await.unwrap(), "{kind:?}");
        peer.wait_event("dbarrier d entered true", EVENT).await;
        peer.ok("dbarrier-leave d 15000").await;
        assert!(member.leave(Some(EVENT)).await.unwrap());
        peer.wait_event("dbarrier d left true", EVENT).await;
        peer.quit().await;
        c.close().await.unwrap();
    })
    .await;
}

/// The fields Curator's (compatible-mode) serializer writes, without the payload's `@class`.
fn curator_fields(json: &serde_json::Value) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    for key in [
        "name",
        "id",
        "address",
        "port",
        "sslPort",
        "payload",
        "registrationTimeUTC",
        "serviceType",
        "uriSpec",
    ] {
        let mut v = json.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.remove("@class");
        }
        fields.insert(key.to_owned(), v);
    }
    serde_json::Value::Object(fields)
}

#[tokio::test]
async fn curator_and_rookery_find_each_others_service_instances() {
    use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
    if skip_without_curator() {
        return;
    }
    each_server("interop-discovery", |kind, addr| async move {
        let base = unique_root("interop-services");
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let c = connect(addr).await;
        let discovery = ServiceDiscovery::new(&c, &base);
        peer.ok(&format!("disc-start d {base}")).await;

        // Curator registers; Rookery reads every field as Curator wrote it.
        peer.ok("disc-register d web java-1 10.0.0.1 8080").await;
        let theirs: serde_json::Value =
            serde_json::from_str(&peer.ok("disc-get d web java-1").await).unwrap();
        let found = discovery
            .query_instance("web", "java-1")
            .await
            .unwrap()
            .expect("Curator's instance");
        let ours: serde_json::Value = serde_json::from_slice(&found.to_json()).unwrap();
        assert_eq!(curator_fields(&ours), curator_fields(&theirs), "{kind:?}");
        assert_eq!(found.uri().as_deref(), Some("http://10.0.0.1:8080"));

        // Rookery registers; Curator lists it and reads the same fields.
        let mine = ServiceInstance::new("web")
            .with_id("rust-1")
            .with_address("10.0.0.2", 9090)
            .with_payload(serde_json::json!({"zone": "b"}))
            .with_uri_spec("{scheme}://{address}:{port}");
        discovery.register(&mine).await.unwrap();
        assert_eq!(peer.ok("disc-ids d web").await, "java-1,rust-1");
        let read_back: serde_json::Value =
            serde_json::from_str(&peer.ok("disc-get d web rust-1").await).unwrap();
        let mine_json: serde_json::Value = serde_json::from_slice(&mine.to_json()).unwrap();
        assert_eq!(
            curator_fields(&read_back),
            curator_fields(&mine_json),
            "{kind:?}"
        );

        // A Curator ServiceCache sees the Rookery instance leave.
        peer.ok("cache-start d web").await;
        assert_eq!(peer.ok("cache-ids web").await, "java-1,rust-1");
        discovery.unregister("web", "rust-1").await.unwrap();
        peer.wait_event("cache web changed java-1", EVENT).await;
        // And a Rookery cache sees Curator's leave.
        let cache = discovery.cache("web").await.unwrap();
        assert_eq!(cache.instances().len(), 1);
        peer.ok("disc-unregister d web java-1").await;
        eventually(WAIT, "the Rookery cache to drop Curator's instance", || {
            let empty = cache.instances().is_empty();
            async move { empty }
        })
        .await;
        peer.quit().await;
        c.close().await.unwrap();
    })
    .await;
}
