//! A self-test of the Curator interop harness (`common/curator.rs`): the real Apache Curator 5.4
//! recipes, run by a Java peer, against Rookery and Apache ZooKeeper 3.8, with the node layouts
//! they leave checked through a plain `rookery_client::Client`. Skipped when Java or the
//! Curator jars are missing.

mod common;

use std::time::Duration;

use common::curator::{self, is_protected_sequential, is_uuid, CuratorPeer};
use common::*;
use rookery_client::{Client, Stat};

const EVENT_WAIT: Duration = Duration::from_secs(20);

/// What kind of node a Stat describes, from its ephemeral owner. Servers report 0 for
/// containers and TTL nodes as for persistent nodes (ZooKeeper's `getClientEphemeralOwner`), so
/// a container only shows by being deleted once empty.
fn node_kind(stat: &Stat) -> String {
    match stat.ephemeral_owner {
        0 => "persistent/container".into(),
        o => format!("ephemeral(0x{o:x})"),
    }
}

/// Prints the tree under `path` (data, kind, child count), for the test log.
async fn dump(c: &Client, path: &str) {
    let mut stack = vec![path.to_string()];
    while let Some(p) = stack.pop() {
        let Ok((data, stat)) = c.get_data(&p).await else {
            continue;
        };
        eprintln!(
            "  {p}  [{}] data={:?} children={}",
            node_kind(&stat),
            String::from_utf8_lossy(&data),
            stat.num_children
        );
        let mut kids = c.get_children(&p).await.unwrap_or_default();
        kids.reverse();
        for k in kids {
            stack.push(format!("{p}/{k}"));
        }
    }
}

async fn stat_of(c: &Client, path: &str) -> Stat {
    c.exists(path)
        .await
        .expect("exists")
        .unwrap_or_else(|| panic!("{path} does not exist"))
}

/// The only child of `path`.
async fn only_child(c: &Client, path: &str) -> String {
    let kids = c.get_children(path).await.expect("get_children");
    assert_eq!(kids.len(), 1, "children of {path}: {kids:?}");
    kids.into_iter().next().unwrap()
}

async fn children_empty_eventually(c: &Client, path: &str) {
    eventually(WAIT, &format!("{path} to have no children"), || {
        let c = c.clone();
        let path = path.to_string();
        async move { c.get_children(&path).await.map_or(true, |k| k.is_empty()) }
    })
    .await;
}

#[tokio::test]
async fn curator_recipes_through_the_peer() {
    if !curator::available() {
        eprintln!("skipping: javac, java or the Curator jars in /usr/share/java are missing");
        return;
    }
    each_server("curator_peer", |kind, addr| async move {
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let sid = peer.session_id().await;
        let c = connect(addr).await;
        let root = unique_root("interop");
        eprintln!("{kind:?}: peer session 0x{sid:x}, root {root}");

        // InterProcessMutex: one protected ephemeral-sequential child `_c_<uuid>-lock-<seq>`.
        let lock = format!("{root}/lock");
        assert_eq!(
            peer.ok(&format!("mutex-acquire m {lock} 5000")).await,
            "true"
        );
        assert_eq!(peer.ok("mutex-holds m").await, "true");
        let node = only_child(&c, &lock).await;
        assert!(
            is_protected_sequential(&node, "lock-"),
            "mutex node {node:?}"
        );
        let stat = stat_of(&c, &format!("{lock}/{node}")).await;
        assert_eq!(
            stat.ephemeral_owner, sid,
            "the mutex node is the peer's ephemeral"
        );

        // LeaderLatch: `_c_<uuid>-latch-<seq>`, its data the participant id.
        let latch = format!("{root}/latch");
        peer.ok(&format!("latch-start a {latch} peer-a")).await;
        peer.wait_event("latch a leader", EVENT_WAIT).await;
        assert_eq!(peer.ok("latch-has a").await, "true");
        assert_eq!(peer.ok("latch-leader a").await, "peer-a");
        let node = only_child(&c, &latch).await;
        assert!(
            is_protected_sequential(&node, "latch-"),
            "latch node {node:?}"
        );
        let (data, stat) = c.get_data(&format!("{latch}/{node}")).await.unwrap();
        assert_eq!(data, b"peer-a", "the latch node holds the participant id");
        assert_eq!(stat.ephemeral_owner, sid);

        // InterProcessSemaphoreV2: a lease `_c_<uuid>-lease-<seq>` under PATH/leases.
        let sem = format!("{root}/sem");
        assert_eq!(
            peer.ok(&format!("sem-acquire s {sem} 2 5000")).await,
            "true"
        );
        let node = only_child(&c, &format!("{sem}/leases")).await;
        assert!(
            is_protected_sequential(&node, "lease-"),
            "lease node {node:?}"
        );
        let stat = stat_of(&c, &format!("{sem}/leases/{node}")).await;
        assert_eq!(stat.ephemeral_owner, sid);
        // The acquire held the InterProcessMutex on PATH/locks only while creating the lease.
        let locks = c.get_children(&format!("{sem}/locks")).await;
        eprintln!("{kind:?}: right after sem-acquire, {sem}/locks children: {locks:?}");

        // InterProcessReadWriteLock: write then (same thread) read.
        let rw = format!("{root}/rw");
        assert_eq!(
            peer.ok(&format!("rw-write-acquire r {rw} 5000")).await,
            "true"
        );
        assert_eq!(
            peer.ok(&format!("rw-read-acquire r {rw} 5000")).await,
            "true"
        );
        let kids = c.get_children(&rw).await.unwrap();
        assert_eq!(kids.len(), 2, "read-write lock nodes {kids:?}");
        assert!(
            kids.iter().any(|k| is_protected_sequential(k, "__WRIT__"))
                && kids.iter().any(|k| is_protected_sequential(k, "__READ__")),
            "read-write lock nodes {kids:?}"
        );

        // DistributedBarrier.
        let barrier = format!("{root}/barrier");
        peer.ok(&format!("barrier-set {barrier}")).await;
        peer.ok(&format!("barrier-wait {barrier} 300")).await;
        let ev = peer
            .wait_event(&format!("barrier {barrier}"), EVENT_WAIT)
            .await;
        assert!(ev.ends_with(" timeout"), "{ev}");
        peer.ok(&format!("barrier-wait {barrier} 15000")).await;

        // DistributedDoubleBarrier with COUNT 1: a member node and `ready`.
        let dbar = format!("{root}/dbar");
        peer.ok(&format!("dbarrier-enter d {dbar} 1 5000")).await;
        let ev = peer.wait_event("dbarrier d entered", EVENT_WAIT).await;
        assert_eq!(ev, "event dbarrier d entered true");
        let kids = c.get_children(&dbar).await.unwrap();
        assert!(
            kids.iter().any(|k| k == "ready"),
            "double barrier nodes {kids:?}"
        );
        let members: Vec<&String> = kids.iter().filter(|k| *k != "ready").collect();
        assert_eq!(members.len(), 1, "double barrier nodes {kids:?}");
        assert!(
            is_uuid(members[0]),
            "double barrier member {:?}",
            members[0]
        );

        eprintln!("{kind:?}: the tree with every recipe held:");
        dump(&c, &root).await;

        // Releases.
        peer.ok(&format!("barrier-remove {barrier}")).await;
        let ev = peer
            .wait_event(&format!("barrier {barrier}"), EVENT_WAIT)
            .await;
        assert!(ev.ends_with(" passed"), "{ev}");
        peer.ok("dbarrier-leave d 5000").await;
        let ev = peer.wait_event("dbarrier d left", EVENT_WAIT).await;
        assert_eq!(ev, "event dbarrier d left true");
        peer.ok("mutex-release m").await;
        assert_eq!(peer.ok("mutex-holds m").await, "false");
        children_empty_eventually(&c, &lock).await;
        peer.ok("latch-close a").await;
        children_empty_eventually(&c, &latch).await;
        peer.ok("sem-release s").await;
        children_empty_eventually(&c, &format!("{sem}/leases")).await;
        peer.ok("rw-read-release r").await;
        peer.ok("rw-write-release r").await;
        children_empty_eventually(&c, &rw).await;
        let err = peer.call("mutex-release nosuch").await.unwrap_err();
        assert!(
            err.starts_with("java.lang.IllegalStateException: "),
            "{err}"
        );

        eprintln!("{kind:?}: the tree after every release:");
        dump(&c, &root).await;
        assert!(
            peer.pending_events().is_empty(),
            "unexpected events: {:?}",
            peer.pending_events()
        );
        peer.quit().await;

        // Every parent Curator made is a container: the server deletes them once empty
        // (container checks run every second on both servers).
        for p in [&lock, &latch, &sem, &rw, &dbar, &root] {
            eventually(WAIT, &format!("the container {p} to be deleted"), || {
                let c = c.clone();
                let p = p.to_string();
                async move { c.exists(&p).await.expect("exists").is_none() }
            })
            .await;
        }
        c.close().await.ok();
    })
    .await;
}

/// The fields every serialized `ServiceInstance` carries (compatible and full modes alike).
const INSTANCE_FIELDS: &[&str] = &[
    "name",
    "id",
    "address",
    "port",
    "sslPort",
    "payload",
    "registrationTimeUTC",
    "serviceType",
    "uriSpec",
];

/// Parses a discovery instance node's JSON, checks the common fields, and returns it with the
/// names of any fields beyond [`INSTANCE_FIELDS`].
fn check_instance(
    raw: &str,
    service: &str,
    id: &str,
    address: &str,
    port: u16,
) -> (serde_json::Value, Vec<String>) {
    let v: serde_json::Value =
        serde_json::from_str(raw).unwrap_or_else(|e| panic!("instance JSON {raw:?}: {e}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("instance JSON is not an object: {raw}"));
    for f in INSTANCE_FIELDS {
        assert!(obj.contains_key(*f), "instance JSON lacks {f:?}: {raw}");
    }
    assert_eq!(v["name"], service, "{raw}");
    assert_eq!(v["id"], id, "{raw}");
    assert_eq!(v["address"], address, "{raw}");
    assert_eq!(v["port"], port, "{raw}");
    assert!(v["sslPort"].is_null(), "{raw}");
    assert!(v["registrationTimeUTC"].is_u64(), "{raw}");
    assert_eq!(v["serviceType"], "DYNAMIC", "{raw}");
    // The payload is typed by `@JsonTypeInfo(use = CLASS)`: an `@class` property in the object.
    assert_eq!(
        v["payload"],
        serde_json::json!({"@class": "java.util.HashMap", "zone": "a"}),
        "{raw}"
    );
    // A UriSpec is its parsed parts: `{name}` variables and literal text between them.
    let part =
        |value: &str, variable: bool| serde_json::json!({"value": value, "variable": variable});
    assert_eq!(
        v["uriSpec"],
        serde_json::json!({"parts": [
            part("scheme", true),
            part("://", false),
            part("address", true),
            part(":", false),
            part("port", true),
        ]}),
        "{raw}"
    );
    // Jackson writes the properties in declaration order.
    let at: Vec<usize> = INSTANCE_FIELDS
        .iter()
        .map(|f| raw.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "field order in {raw}");
    let extra = obj
        .keys()
        .filter(|k| !INSTANCE_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    (v, extra)
}

#[tokio::test]
async fn curator_discovery_through_the_peer() {
    if !curator::available() {
        eprintln!("skipping: javac, java or the Curator jars in /usr/share/java are missing");
        return;
    }
    each_server("curator_discovery", |kind, addr| async move {
        let mut peer = CuratorPeer::start(&addr.to_string(), 10_000).await;
        let sid = peer.session_id().await;
        let c = connect(addr).await;
        let root = unique_root("discovery");
        let base = format!("{root}/services");
        let web = format!("{base}/web");
        eprintln!("{kind:?}: peer session 0x{sid:x}, base path {base}");

        peer.ok(&format!("disc-start d {base}")).await;
        // queryForNames on a base path that does not exist yet fails (start creates nothing).
        let err = peer.call("disc-names d").await.unwrap_err();
        assert!(
            err.starts_with("org.apache.zookeeper.KeeperException$NoNodeException: "),
            "{err}"
        );
        peer.ok("disc-register d web i1 10.0.0.1 8080").await;
        peer.ok("disc-register d web i2 10.0.0.2 8081").await;

        // Each instance is an ephemeral BASEPATH/SERVICE/ID of the peer's session; the parents
        // are not ephemeral.
        let mut kids = c.get_children(&web).await.expect("get_children");
        kids.sort();
        assert_eq!(kids, ["i1", "i2"], "children of {web}");
        for id in ["i1", "i2"] {
            let stat = stat_of(&c, &format!("{web}/{id}")).await;
            assert_eq!(
                stat.ephemeral_owner, sid,
                "{web}/{id} is the peer's ephemeral"
            );
        }
        for p in [&web, &base, &root] {
            assert_eq!(
                stat_of(&c, p).await.ephemeral_owner,
                0,
                "{p} is not ephemeral"
            );
        }

        // The exact bytes Curator wrote, as the peer and as Rookery's client read them.
        let raw = peer.ok(&format!("disc-raw {web}/i1")).await;
        eprintln!("{kind:?}: raw instance JSON (compatible mode): {raw}");
        let (data, _) = c.get_data(&format!("{web}/i1")).await.unwrap();
        assert_eq!(
            data,
            raw.as_bytes(),
            "the peer and the client read the same bytes"
        );
        let (_, extra) = check_instance(&raw, "web", "i1", "10.0.0.1", 8080);
        assert!(
            extra.is_empty(),
            "compatible mode writes no other field: {raw}"
        );

        assert_eq!(peer.ok("disc-names d").await, "web");
        assert_eq!(peer.ok("disc-ids d web").await, "i1,i2");
        let got = peer.ok("disc-get d web i2").await;
        let (got, _) = check_instance(&got, "web", "i2", "10.0.0.2", 8081);
        let raw2 = peer.ok(&format!("disc-raw {web}/i2")).await;
        let raw2: serde_json::Value = serde_json::from_str(&raw2).unwrap();
        assert_eq!(got, raw2, "disc-get re-serializes to the stored JSON");
        assert_eq!(peer.ok("disc-get d web nosuch").await, "null");

        // ServiceCache: started (initial load done, no events), then one instance leaves.
        peer.ok("cache-start d web").await;
        assert_eq!(peer.ok("cache-ids web").await, "i1,i2");
        peer.ok("disc-unregister d web i1").await;
        assert!(
            c.exists(&format!("{web}/i1")).await.unwrap().is_none(),
            "unregister deletes the node"
        );
        let ev = peer.wait_event("cache web changed", EVENT_WAIT).await;
        assert_eq!(ev, "event cache web changed i2");
        assert_eq!(peer.ok("cache-ids web").await, "i2");
        assert_eq!(peer.ok("disc-ids d web").await, "i2");

        // The full (non-compatible) serializer writes the whole ServiceInstance.
        let full = format!("{root}/full");
        peer.ok(&format!("disc-start f {full} full")).await;
        peer.ok("disc-register f web f1 10.0.0.3 9090").await;
        let raw = peer.ok(&format!("disc-raw {full}/web/f1")).await;
        eprintln!("{kind:?}: raw instance JSON (full mode): {raw}");
        let (v, extra) = check_instance(&raw, "web", "f1", "10.0.0.3", 9090);
        assert_eq!(extra, ["enabled"], "{raw}");
        assert_eq!(v["enabled"], true, "{raw}");
        assert_eq!(peer.ok("disc-get f web f1").await, raw);

        eprintln!("{kind:?}: the discovery tree:");
        dump(&c, &root).await;
        assert!(
            peer.pending_events().is_empty(),
            "unexpected events: {:?}",
            peer.pending_events()
        );
        peer.quit().await;

        // Curator made every parent a container: all go once the instances have.
        for p in [&web, &base, &format!("{full}/web"), &full, &root] {
            eventually(WAIT, &format!("the container {p} to be deleted"), || {
                let c = c.clone();
                let p = p.to_string();
                async move { c.exists(&p).await.expect("exists").is_none() }
            })
            .await;
        }
        c.close().await.ok();
    })
    .await;
}
