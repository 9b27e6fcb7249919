//! The watch tables (`WatchManager`): which connection watches which path, and in what mode.
//!
//! As in ZooKeeper there are two tables, data watches and child watches, each mapping a path to
//! the connections watching it with a set of modes. A connection gets at most one notification per
//! (transaction, table), however many modes it holds on the path.

use std::collections::{HashMap, HashSet};

use rookery_proto::{EventType, WatcherType};

/// Identifies one client connection for the lifetime of the server process.
pub type ConnId = u64;

/// A one-shot watch (exists, getData, getChildren); removed when it fires.
pub const STANDARD: u8 = 1;
/// A persistent watch (addWatch mode 0); stays until removed.
pub const PERSISTENT: u8 = 2;
/// A persistent recursive watch (addWatch mode 1); data table only, covers descendants.
pub const RECURSIVE: u8 = 4;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Data (and exists) watches.
    Data,
    /// Child watches.
    Child,
}

type PathTable = HashMap<String, HashMap<ConnId, u8>>;

/// The server's watch tables.
#[derive(Debug, Default)]
pub struct WatchManager {
    data: PathTable,
    child: PathTable,
    /// Paths each connection watches, so a closed connection's watches go in one sweep.
    by_conn: HashMap<ConnId, HashSet<(Table, String)>>,
    /// Number of (path, conn) entries holding RECURSIVE; when 0, ancestor walks are skipped.
    recursive_entries: usize,
}

impl WatchManager {
    fn table(&mut self, t: Table) -> &mut PathTable {
        match t {
            Table::Data => &mut self.data,
            Table::Child => &mut self.child,
        }
    }

    /// Number of watches a connection holds.
    pub fn count_for(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, HashSet::len)
    }

    /// Adds `mode` for `conn` on `path` in table `t`.
    pub fn add(&mut self, t: Table, path: &str, conn: ConnId, mode: u8) {
        let modes = self
            .table(t)
            .entry(path.to_owned())
            .or_default()
            .entry(conn)
            .or_insert(0);
        let had_recursive = *modes & RECURSIVE != 0;
        *modes |= mode;
        if !had_recursive && mode & RECURSIVE != 0 {
            self.recursive_entries += 1;
        }
        self.by_conn
            .entry(conn)
            .or_default()
            .insert((t, path.to_owned()));
    }

    /// Removes the modes in `mask` for `conn` on `path`; returns whether any was present.
    pub fn remove(&mut self, t: Table, path: &str, conn: ConnId, mask: u8) -> bool {
        let table = self.table(t);
        let Some(watchers) = table.get_mut(path) else {
            return false;
        };
        let Some(modes) = watchers.get_mut(&conn) else {
            return false;
        };
        let removed = *modes & mask;
        if removed == 0 {
            return false;
        }
        *modes &= !mask;
        let now_empty = *modes == 0;
        if now_empty {
            watchers.remove(&conn);
            if watchers.is_empty() {
                table.remove(path);
            }
        }
        if removed & RECURSIVE != 0 {
            self.recursive_entries -= 1;
        }
        if now_empty {
            if let Some(set) = self.by_conn.get_mut(&conn) {
                set.remove(&(t, path.to_owned()));
                if set.is_empty() {
                    self.by_conn.remove(&conn);
                }
            }
        }
        true
    }

    /// Whether `conn` holds any of `mask` on `path` in table `t`.
    pub fn contains(&self, t: Table, path: &str, conn: ConnId, mask: u8) -> bool {
        let table = match t {
            Table::Data => &self.data,
            Table::Child => &self.child,
        };
        table
            .get(path)
            .and_then(|w| w.get(&conn))
            .is_some_and(|m| m & mask != 0)
    }

    /// checkWatches / removeWatches for a watcher type: which (table, mask) pairs it covers.
    pub fn spec_for(kind: WatcherType) -> &'static [(Table, u8)] {
        match kind {
            WatcherType::Children => &[(Table::Child, STANDARD)],
            WatcherType::Data => &[(Table::Data, STANDARD)],
            WatcherType::Persistent => &[(Table::Data, PERSISTENT), (Table::Child, PERSISTENT)],
            WatcherType::PersistentRecursive => &[(Table::Data, RECURSIVE)],
            WatcherType::Any => &[(Table::Data, 0xff), (Table::Child, 0xff)],
        }
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(entries) = self.by_conn.remove(&conn) else {
            return;
        };
        for (t, path) in entries {
            let table = self.table(t);
            let mut had_recursive = false;
            if let Some(watchers) = table.get_mut(&path) {
                if let Some(modes) = watchers.remove(&conn) {
                    had_recursive = modes & RECURSIVE != 0;
                }
                if watchers.is_empty() {
                    table.remove(&path);
                }
            }
            if had_recursive {
                self.recursive_entries -= 1;
            }
        }
    }

    /// Fires table `t` for an event on `path`: returns the connections to notify (once each) and
    /// removes the one-shot watches that fired. `skip` holds connections already notified for this
    /// transaction through the other table.
    pub fn trigger(
        &mut self,
        t: Table,
        path: &str,
        event: EventType,
        skip: &HashSet<ConnId>,
    ) -> HashSet<ConnId> {
        let mut fired = HashSet::new();
        let mut spent = Vec::new();
        if let Some(watchers) = self.table(t).get(path) {
            for (&conn, &modes) in watchers {
                // A recursive watch never reports NodeChildrenChanged; it lives in the data table,
                // so this only matters if the event is a child event raised in the data table.
                let fires = modes & (STANDARD | PERSISTENT) != 0
                    || (modes & RECURSIVE != 0 && event != EventType::NodeChildrenChanged);
                if fires && !skip.contains(&conn) {
                    fired.insert(conn);
                }
                if modes & STANDARD != 0 {
                    spent.push(conn);
                }
            }
        }
        for conn in spent {
            self.remove(t, path, conn, STANDARD);
        }
        if t == Table::Data && self.recursive_entries > 0 && event != EventType::NodeChildrenChanged
        {
            let mut p = path;
            while p != "/" {
                p = rookery_proto::path::parent(p);
                if let Some(watchers) = self.data.get(p) {
                    for (&conn, &modes) in watchers {
                        if modes & RECURSIVE != 0 && !skip.contains(&conn) {
                            fired.insert(conn);
                        }
                    }
                }
            }
        }
        fired
    }

    /// Total number of (path, connection) watch entries in the data table.
    pub fn data_watch_count(&self) -> usize {
        self.data.values().map(HashMap::len).sum()
    }

    /// Total number of watch entries in both tables.
    pub fn watch_count(&self) -> usize {
        self.data_watch_count() + self.child.values().map(HashMap::len).sum::<usize>()
    }

    /// Number of distinct watched paths in both tables.
    pub fn path_count(&self) -> usize {
        let mut paths: HashSet<&String> = self.data.keys().collect();
        paths.extend(self.child.keys());
        paths.len()
    }

    /// Number of connections holding watches.
    pub fn conn_count(&self) -> usize {
        self.by_conn.len()
    }

    /// Paths watched by each connection (for `wchc`).
    pub fn by_connection(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut out: Vec<(ConnId, Vec<String>)> = self
            .by_conn
            .iter()
            .map(|(c, set)| {
                let mut paths: Vec<String> = set.iter().map(|(_, p)| p.clone()).collect();
                paths.sort();
                paths.dedup();
                (*c, paths)
            })
            .collect();
        out.sort();
        out
    }

    /// Connections watching each path (for `wchp`).
    pub fn by_path(&self) -> Vec<(String, Vec<ConnId>)> {
        let mut map: HashMap<&String, HashSet<ConnId>> = HashMap::new();
        for table in [&self.data, &self.child] {
            for (p, w) in table {
                map.entry(p).or_default().extend(w.keys());
            }
        }
        let mut out: Vec<(String, Vec<ConnId>)> = map
            .into_iter()
            .map(|(p, set)| {
                let mut conns: Vec<ConnId> = set.into_iter().collect();
                conns.sort();
                (p.clone(), conns)
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_fires_once() {
        let mut w = WatchManager::default();
        w.add(Table::Data, "/a", 1, STANDARD);
        let none = HashSet::new();
        assert_eq!(
            w.trigger(Table::Data, "/a", EventType::NodeDataChanged, &none)
                .len(),
            1
        );
        assert!(w
            .trigger(Table::Data, "/a", EventType::NodeDataChanged, &none)
            .is_empty());
        assert_eq!(w.watch_count(), 0);
        assert_eq!(w.count_for(1), 0);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = WatchManager::default();
        w.add(Table::Data, "/r", 1, RECURSIVE);
        w.add(Table::Data, "/p", 2, PERSISTENT);
        w.add(Table::Child, "/p", 2, PERSISTENT);
        let none = HashSet::new();
        assert!(w
            .trigger(Table::Data, "/r/a/b", EventType::NodeCreated, &none)
            .contains(&1));
        assert!(w
            .trigger(Table::Data, "/r/a/b", EventType::NodeCreated, &none)
            .contains(&1));
        assert!(w
            .trigger(Table::Child, "/p", EventType::NodeChildrenChanged, &none)
            .contains(&2));
        assert!(w
            .trigger(Table::Data, "/p/x", EventType::NodeDataChanged, &none)
            .is_empty());
        assert!(w.remove(Table::Data, "/r", 1, RECURSIVE));
        assert!(w
            .trigger(Table::Data, "/r/a", EventType::NodeCreated, &none)
            .is_empty());
        w.remove_conn(2);
        assert_eq!(w.watch_count(), 0);
        assert_eq!(w.recursive_entries, 0);
    }
}
