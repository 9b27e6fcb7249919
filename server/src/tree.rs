//! The data tree (`DataTree`): znodes, their stats, the ephemeral index, and the watch tables.
//!
//! The tree changes only through [`DataTree::apply`], one committed transaction at a time in zxid
//! order. Applying a transaction puts its watch notifications in the output list at that moment,
//! so the caller can queue them ahead of any later reply (ZooKeeper's ordering guarantee).

use std::collections::{BTreeSet, HashMap, HashSet};

use imbl::OrdSet;
use std::sync::Arc;

use rookery_proto::path::parent;
use rookery_proto::{Acl, ErrorCode, EventType, Stat};

use crate::txn::{is_ephemeral_owner, ttl_of, Txn, TxnHeader, CONTAINER_OWNER};
use crate::watch::{ConnId, Table, WatchManager};

/// One znode.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Data; `None` if created with a null buffer.
    pub data: Option<Vec<u8>>,
    /// The ACL, shared because most nodes carry one of a few ACLs.
    pub acl: Arc<Vec<Acl>>,
    /// zxid of the create.
    pub czxid: i64,
    /// zxid of the last data change.
    pub mzxid: i64,
    /// Creation time in ms.
    pub ctime: i64,
    /// Last data change in ms.
    pub mtime: i64,
    /// Data version.
    pub version: i32,
    /// Stored child-creation counter; the reported cversion is derived from it.
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Stored owner (session, container marker, TTL encoding, or 0).
    pub ephemeral_owner: i64,
    /// zxid of the last child create or delete.
    pub pzxid: i64,
    /// Child names, kept sorted. A persistent set, so that copying a node while a snapshot
    /// holds the old version costs O(1) rather than O(children).
    pub children: OrdSet<String>,
}

impl Node {
    /// The stat as clients see it: cversion = 2 × creations − children (ZooKeeper's
    /// `DataNode.copyStat`), and containers and TTL nodes show owner 0.
    pub fn stat(&self) -> Stat {
        let n = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: self.aversion,
            ephemeral_owner: if is_ephemeral_owner(self.ephemeral_owner) {
                self.ephemeral_owner
            } else {
                0
            },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: n,
            pzxid: self.pzxid,
        }
    }

    /// Whether this is a container.
    pub fn is_container(&self) -> bool {
        self.ephemeral_owner == CONTAINER_OWNER
    }

    /// The TTL, if this is a TTL node.
    pub fn ttl_ms(&self) -> Option<i64> {
        ttl_of(self.ephemeral_owner)
    }
}

/// A watch notification for one connection, with the ACL that gates its delivery.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Who.
    pub conn: ConnId,
    /// What happened.
    pub event: EventType,
    /// Where.
    pub path: String,
    /// The ACL the watcher needs READ on (ZooKeeper 3.9.2+ filters events by it).
    pub acl: Arc<Vec<Acl>>,
}

/// What applying a transaction produced, for building the reply.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The path affected.
    pub path: String,
    /// The node's stat after the change (creates, setData, setACL).
    pub stat: Option<Stat>,
    /// 0, or the error code (an error transaction, or an apply that found the tree different).
    pub err: i32,
    /// Results of each multi sub-transaction.
    pub subs: Vec<Applied>,
}

/// The nodes of a tree at one moment: a persistent map, so taking it is O(1) and later writes
/// copy only what they touch. Snapshots are written from it while writes carry on.
///
/// Each node sits behind its own `Arc`. The map (a HAMT) allocates its slots in fixed-size
/// chunks of 32, so nodes stored inline (about 150 bytes with the key) left most of every chunk
/// empty: a million znodes took about 1 GiB. With a pointer per slot the chunks are small, and
/// the copy-on-write after a snapshot copies 32 pointers rather than 32 nodes with their data.
#[derive(Debug, Clone, Default)]
pub struct Image(imbl::HashMap<String, Arc<Node>>);

impl Image {
    /// An empty image.
    pub fn new() -> Self {
        Image::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.0.get(path).map(|n| &**n)
    }

    /// The node at `path`, to change (copied first if an older image still shares it).
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.0.get_mut(path).map(Arc::make_mut)
    }

    /// Whether there is a node at `path`.
    pub fn contains_key(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// Puts `node` at `path`, returning the node it replaces.
    pub fn insert(&mut self, path: String, node: Node) -> Option<Node> {
        self.0
            .insert(path, Arc::new(node))
            .map(Arc::unwrap_or_clone)
    }

    /// Takes the node at `path` out.
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        self.0.remove(path).map(Arc::unwrap_or_clone)
    }

    /// Every path and node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.0.iter().map(|(k, v)| (k, &**v))
    }

    /// Every path, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

impl std::ops::Index<&str> for Image {
    type Output = Node;

    /// The node at `path`; panics if there is none, like a map's index.
    fn index(&self, path: &str) -> &Node {
        self.get(path).expect("no node at this path")
    }
}

impl std::ops::Index<&String> for Image {
    type Output = Node;

    fn index(&self, path: &String) -> &Node {
        &self[path.as_str()]
    }
}

/// How many distinct ACLs [`AclCache`] remembers.
const ACL_CACHE_SIZE: usize = 32;

/// The most recently used distinct ACLs, so that nodes with equal ACLs share one allocation (a
/// tree usually has a handful; ZooKeeper keeps a reference-counted cache for the same reason).
/// Bounded, with move-to-front on a hit, so that many distinct ACLs cost no more than before.
#[derive(Debug, Default)]
struct AclCache {
    recent: std::collections::VecDeque<Arc<Vec<Acl>>>,
}

impl AclCache {
    fn intern(&mut self, acl: &[Acl]) -> Arc<Vec<Acl>> {
        if let Some(i) = self.recent.iter().position(|a| a.as_slice() == acl) {
            if i > 0 {
                if let Some(hit) = self.recent.remove(i) {
                    self.recent.push_front(hit);
                }
            }
            if let Some(front) = self.recent.front() {
                return front.clone();
            }
        }
        let shared = Arc::new(acl.to_vec());
        if self.recent.len() >= ACL_CACHE_SIZE {
            self.recent.pop_back();
        }
        self.recent.push_front(shared.clone());
        shared
    }
}

/// The znode tree.
#[derive(Debug)]
pub struct DataTree {
    nodes: Image,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// The watch tables.
    pub watches: WatchManager,
    data_size: u64,
    acls: AclCache,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

impl DataTree {
    /// A tree with `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`.
    pub fn new() -> Self {
        let open = Arc::new(Acl::open_unsafe());
        let mut nodes = Image::new();
        // System nodes hold zero-length data, not null, as in ZooKeeper.
        let system = |acl: &Arc<Vec<Acl>>| Node {
            acl: acl.clone(),
            data: Some(Vec::new()),
            ..Node::default()
        };
        let mut root = system(&open);
        root.children.insert("zookeeper".into());
        let mut zk = system(&open);
        zk.children.insert("quota".into());
        zk.children.insert("config".into());
        nodes.insert("/".into(), root);
        nodes.insert("/zookeeper".into(), zk);
        nodes.insert("/zookeeper/quota".into(), system(&open));
        let config = Node {
            acl: Arc::new(Acl::read_unsafe()),
            aversion: -1,
            data: Some(Vec::new()),
            ..Node::default()
        };
        nodes.insert("/zookeeper/config".into(), config);
        DataTree {
            nodes,
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            watches: WatchManager::default(),
            data_size: 0,
            acls: AclCache::default(),
        }
    }

    /// A tree over `nodes` (children sets filled in), rebuilding the indexes derived from them.
    pub fn from_image(nodes: Image) -> Self {
        let mut tree = DataTree {
            nodes,
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            watches: WatchManager::default(),
            data_size: 0,
            acls: AclCache::default(),
        };
        // Index while the map is out of the tree, so the loop can borrow both.
        let mut nodes = std::mem::take(&mut tree.nodes);
        for (path, node) in nodes.0.iter_mut() {
            tree.index(path, node.ephemeral_owner);
            if !DataTree::is_special(path) {
                tree.data_size += (path.len() + node.data.as_ref().map_or(0, Vec::len)) as u64;
            }
            // A loaded image has an ACL allocation per node: share equal ones again.
            let shared = tree.acls.intern(&node.acl);
            if !Arc::ptr_eq(&shared, &node.acl) {
                Arc::make_mut(node).acl = shared;
            }
        }
        tree.nodes = nodes;
        tree
    }

    /// Adds a node to the index of containers, TTL nodes or its session's ephemerals.
    fn index(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER {
            self.containers.insert(path.to_owned());
        } else if ttl_of(owner).is_some() {
            self.ttls.insert(path.to_owned());
        } else if owner != 0 {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(path.to_owned());
        }
    }

    /// Removes a node from the index it is in.
    fn unindex(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER {
            self.containers.remove(path);
        } else if ttl_of(owner).is_some() {
            self.ttls.remove(path);
        } else if owner != 0 {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
                if set.is_empty() {
                    self.ephemerals.remove(&owner);
                }
            }
        }
    }

    /// The nodes as they are now, in O(1): the tree copies on write from here on.
    pub fn image(&self) -> Image {
        self.nodes.clone()
    }

    /// Paths that can never be deleted.
    pub fn is_special(path: &str) -> bool {
        matches!(
            path,
            "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
        )
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of znodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sum of path and data lengths, as ZooKeeper's `approximateDataSize`.
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// The ephemerals of a session.
    pub fn ephemerals_of(&self, session_id: i64) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session_id).into_iter().flatten()
    }

    /// Every session that owns ephemerals, with its paths.
    pub fn all_ephemerals(&self) -> &HashMap<i64, BTreeSet<String>> {
        &self.ephemerals
    }

    /// Number of ephemeral nodes.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Number of descendants of `path` (not counting `path`).
    pub fn descendant_count(&self, path: &str) -> usize {
        let mut count = 0;
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            if let Some(node) = self.nodes.get(&p) {
                for child in &node.children {
                    count += 1;
                    stack.push(join(&p, child));
                }
            }
        }
        count
    }

    /// Containers and TTL nodes that are due for deletion at `now_ms`.
    pub fn expired_containers(&self, now_ms: i64, max_never_used_ms: i64) -> Vec<String> {
        let mut due = Vec::new();
        for path in &self.containers {
            let Some(node) = self.nodes.get(path) else {
                continue;
            };
            if !node.children.is_empty() {
                continue;
            }
            let never_used_expired =
                max_never_used_ms > 0 && now_ms.saturating_sub(node.mtime) > max_never_used_ms;
            if node.cversion > 0 || never_used_expired {
                due.push(path.clone());
            }
        }
        for path in &self.ttls {
            let Some(node) = self.nodes.get(path) else {
                continue;
            };
            if node.children.is_empty()
                && node
                    .ttl_ms()
                    .is_some_and(|ttl| now_ms.saturating_sub(node.mtime) > ttl)
            {
                due.push(path.clone());
            }
        }
        due
    }

    /// Applies one committed transaction, pushing watch notifications to `events`.
    pub fn apply(&mut self, hdr: &TxnHeader, txn: &Txn, events: &mut Vec<Notification>) -> Applied {
        match txn {
            Txn::CreateSession { .. } | Txn::Error(0) => Applied::default(),
            Txn::Error(e) => Applied {
                err: *e,
                ..Applied::default()
            },
            Txn::CloseSession { session_id } => {
                let paths: Vec<String> = self
                    .ephemerals
                    .get(session_id)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                for path in paths {
                    self.delete(hdr, &path, events);
                }
                Applied::default()
            }
            Txn::Create {
                path,
                data,
                acl,
                ephemeral_owner,
                parent_cversion,
            } => self.create(
                hdr,
                path,
                data,
                acl,
                *ephemeral_owner,
                *parent_cversion,
                events,
            ),
            Txn::Delete { path } => self.delete(hdr, path, events),
            Txn::SetData {
                path,
                data,
                version,
            } => {
                let Some(node) = self.nodes.get_mut(path) else {
                    return Applied::error(path, ErrorCode::NoNode);
                };
                let old = node.data.as_ref().map_or(0, Vec::len) as u64;
                self.data_size = self.data_size - old + data.as_ref().map_or(0, Vec::len) as u64;
                node.data = data.clone();
                node.version = *version;
                node.mzxid = hdr.zxid;
                node.mtime = hdr.time_ms;
                let stat = node.stat();
                let acl = node.acl.clone();
                self.fire(
                    Table::Data,
                    path,
                    EventType::NodeDataChanged,
                    &acl,
                    events,
                    &HashSet::new(),
                );
                Applied {
                    path: path.clone(),
                    stat: Some(stat),
                    ..Applied::default()
                }
            }
            Txn::SetAcl { path, acl, version } => {
                let Some(node) = self.nodes.get_mut(path) else {
                    return Applied::error(path, ErrorCode::NoNode);
                };
                node.acl = self.acls.intern(acl);
                node.aversion = *version;
                Applied {
                    path: path.clone(),
                    stat: Some(node.stat()),
                    ..Applied::default()
                }
            }
            Txn::Check { path } => Applied {
                path: path.clone(),
                ..Applied::default()
            },
            Txn::Multi(txns) => {
                let subs = txns.iter().map(|t| self.apply(hdr, t, events)).collect();
                Applied {
                    subs,
                    ..Applied::default()
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        hdr: &TxnHeader,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        events: &mut Vec<Notification>,
    ) -> Applied {
        if self.nodes.contains_key(path) {
            return Applied::error(path, ErrorCode::NodeExists);
        }
        let parent_path = parent(path);
        let Some(parent_node) = self.nodes.get_mut(parent_path) else {
            return Applied::error(path, ErrorCode::NoNode);
        };
        parent_node
            .children
            .insert(rookery_proto::path::name(path).to_owned());
        parent_node.cversion = parent_cversion;
        parent_node.pzxid = hdr.zxid;
        let parent_acl = parent_node.acl.clone();
        let node = Node {
            data: data.clone(),
            acl: self.acls.intern(acl),
            czxid: hdr.zxid,
            mzxid: hdr.zxid,
            ctime: hdr.time_ms,
            mtime: hdr.time_ms,
            pzxid: hdr.zxid,
            ephemeral_owner: owner,
            ..Node::default()
        };
        let stat = node.stat();
        let node_acl = node.acl.clone();
        self.data_size += (path.len() + data.as_ref().map_or(0, Vec::len)) as u64;
        self.nodes.insert(path.to_owned(), node);
        self.index(path, owner);
        let none = HashSet::new();
        self.fire(
            Table::Data,
            path,
            EventType::NodeCreated,
            &node_acl,
            events,
            &none,
        );
        self.fire(
            Table::Child,
            parent_path,
            EventType::NodeChildrenChanged,
            &parent_acl,
            events,
            &none,
        );
        Applied {
            path: path.to_owned(),
            stat: Some(stat),
            ..Applied::default()
        }
    }

    fn delete(&mut self, hdr: &TxnHeader, path: &str, events: &mut Vec<Notification>) -> Applied {
        let Some(node) = self.nodes.remove(path) else {
            return Applied::error(path, ErrorCode::NoNode);
        };
        self.data_size -= (path.len() + node.data.as_ref().map_or(0, Vec::len)) as u64;
        let parent_path = parent(path);
        let mut parent_acl = Arc::default();
        if let Some(p) = self.nodes.get_mut(parent_path) {
            p.children.remove(rookery_proto::path::name(path));
            p.pzxid = hdr.zxid;
            parent_acl = p.acl.clone();
        }
        self.unindex(path, node.ephemeral_owner);
        let fired = self.fire(
            Table::Data,
            path,
            EventType::NodeDeleted,
            &node.acl,
            events,
            &HashSet::new(),
        );
        self.fire(
            Table::Child,
            path,
            EventType::NodeDeleted,
            &node.acl,
            events,
            &fired,
        );
        self.fire(
            Table::Child,
            parent_path,
            EventType::NodeChildrenChanged,
            &parent_acl,
            events,
            &HashSet::new(),
        );
        Applied {
            path: path.to_owned(),
            ..Applied::default()
        }
    }

    fn fire(
        &mut self,
        table: Table,
        path: &str,
        event: EventType,
        acl: &Arc<Vec<Acl>>,
        events: &mut Vec<Notification>,
        skip: &HashSet<ConnId>,
    ) -> HashSet<ConnId> {
        let fired = self.watches.trigger(table, path, event, skip);
        let mut conns: Vec<ConnId> = fired.iter().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            events.push(Notification {
                conn,
                event,
                path: path.to_owned(),
                acl: acl.clone(),
            });
        }
        fired
    }
}

impl Applied {
    fn error(path: &str, code: ErrorCode) -> Applied {
        Applied {
            path: path.to_owned(),
            err: code.code(),
            ..Applied::default()
        }
    }
}

/// `parent/child`.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(zxid: i64) -> TxnHeader {
        TxnHeader {
            session_id: 1,
            cxid: 1,
            zxid,
            time_ms: 1000 + zxid,
        }
    }

    fn create(path: &str, parent_cversion: i32) -> Txn {
        Txn::Create {
            path: path.into(),
            data: Some(b"x".to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral_owner: 0,
            parent_cversion,
        }
    }

    #[test]
    fn cversion_is_derived_like_zookeeper() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        t.apply(&hdr(1), &create("/p", 1), &mut ev);
        for (i, c) in ["/p/a", "/p/b", "/p/c"].iter().enumerate() {
            t.apply(&hdr(2 + i as i64), &create(c, 1 + i as i32), &mut ev);
        }
        assert_eq!(t.get("/p").unwrap().stat().cversion, 3);
        t.apply(
            &hdr(5),
            &Txn::Delete {
                path: "/p/a".into(),
            },
            &mut ev,
        );
        let s = t.get("/p").unwrap().stat();
        assert_eq!((s.cversion, s.num_children, s.pzxid), (4, 2, 5));
        assert_eq!(t.descendant_count("/p"), 2);
    }

    #[test]
    fn ephemerals_go_with_their_session() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        let mut txn = create("/e", 1);
        if let Txn::Create {
            ephemeral_owner, ..
        } = &mut txn
        {
            *ephemeral_owner = 77;
        }
        t.apply(&hdr(1), &txn, &mut ev);
        assert_eq!(t.ephemeral_count(), 1);
        assert_eq!(t.get("/e").unwrap().stat().ephemeral_owner, 77);
        t.apply(&hdr(2), &Txn::CloseSession { session_id: 77 }, &mut ev);
        assert!(t.get("/e").is_none());
        assert_eq!(t.ephemeral_count(), 0);
        assert_eq!(t.approximate_data_size(), 0);
    }

    #[test]
    fn equal_acls_share_one_allocation_also_after_loading_an_image() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        t.apply(&hdr(1), &create("/a", 1), &mut ev);
        t.apply(&hdr(2), &create("/b", 2), &mut ev);
        let (a, b) = (t.get("/a").unwrap(), t.get("/b").unwrap());
        assert!(Arc::ptr_eq(&a.acl, &b.acl));
        t.apply(
            &hdr(3),
            &Txn::SetAcl {
                path: "/b".into(),
                acl: Acl::read_unsafe(),
                version: 1,
            },
            &mut ev,
        );
        assert_eq!(*t.get("/b").unwrap().acl, Acl::read_unsafe());
        assert_eq!(*t.get("/a").unwrap().acl, Acl::open_unsafe());

        // An image whose nodes each carry their own ACL allocation, as a loaded snapshot does.
        let mut img = Image::new();
        for (path, node) in t.image().iter() {
            let mut own = node.clone();
            own.acl = Arc::new((*node.acl).clone());
            img.insert(path.clone(), own);
        }
        let loaded = DataTree::from_image(img);
        let (a, root) = (loaded.get("/a").unwrap(), loaded.get("/").unwrap());
        assert!(Arc::ptr_eq(&a.acl, &root.acl));
        assert_eq!(loaded.node_count(), t.node_count());
        assert_eq!(loaded.approximate_data_size(), t.approximate_data_size());
    }

    #[test]
    fn an_image_keeps_what_it_saw_while_the_tree_moves_on() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        t.apply(&hdr(1), &create("/a", 1), &mut ev);
        let before = t.image();
        t.apply(
            &hdr(2),
            &Txn::SetData {
                path: "/a".into(),
                data: Some(b"new".to_vec()),
                version: 1,
            },
            &mut ev,
        );
        t.apply(&hdr(3), &create("/b", 2), &mut ev);
        t.apply(&hdr(4), &Txn::Delete { path: "/a".into() }, &mut ev);
        assert_eq!(before["/a"].data.as_deref(), Some(&b"x"[..]));
        assert!(!before.contains_key("/b") && before.get("/b").is_none());
        assert_eq!(before.len(), t.image().len());
        assert!(t.get("/a").is_none() && t.get("/b").is_some());
        let mut keys: Vec<&String> = before.keys().collect();
        keys.sort();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("/"));
    }
}
