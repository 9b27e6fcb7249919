//! The in-memory view of a server's history: everything up to `base` is compacted (applied, and in
//! the runtime's snapshot or older log), then the entries after it, every uncommitted one and a
//! window of committed ones (for DIFF synchronization of learners that are a little behind).
//!
//! The entries always form one history without holes: each follows the one before
//! ([`Zxid::follows`]), the first follows `base`.

use std::collections::VecDeque;

use super::error::DurableStateError;
use super::message::Entry;
use super::zxid::Zxid;

#[derive(Debug, Clone)]
pub(crate) struct Log {
    /// Everything up to here is compacted out of memory (and committed).
    base: Zxid,
    /// The entries after `base`, in order.
    entries: VecDeque<Entry>,
    /// Everything up to here is committed (and has been handed to the runtime to apply).
    committed: Zxid,
}

impl Log {
    /// A log continuing from `base` (a snapshot, or 0) with `entries` after it; only `base` is
    /// known to be committed.
    pub(crate) fn new(base: Zxid, entries: Vec<Entry>) -> Result<Log, DurableStateError> {
        let mut prev = base;
        for e in &entries {
            if !e.zxid.follows(prev) {
                return Err(DurableStateError::Hole { prev, zxid: e.zxid });
            }
            prev = e.zxid;
        }
        Ok(Log {
            base,
            entries: entries.into(),
            committed: base,
        })
    }

    pub(crate) fn base(&self) -> Zxid {
        self.base
    }

    pub(crate) fn committed(&self) -> Zxid {
        self.committed
    }

    pub(crate) fn last(&self) -> Zxid {
        self.entries.back().map_or(self.base, |e| e.zxid)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many entries come after `zxid`.
    pub(crate) fn count_after(&self, zxid: Zxid) -> usize {
        self.entries.len() - self.index_after(zxid)
    }

    /// Appends `entry` if it follows the last one; returns whether it did.
    pub(crate) fn append(&mut self, entry: Entry) -> bool {
        if !entry.zxid.follows(self.last()) {
            return false;
        }
        self.entries.push_back(entry);
        true
    }

    /// Index of the first entry after `zxid`.
    fn index_after(&self, zxid: Zxid) -> usize {
        self.entries.partition_point(|e| e.zxid <= zxid)
    }

    /// Clones of the entries in `(after, upto]`.
    pub(crate) fn range(&self, after: Zxid, upto: Zxid) -> Vec<Entry> {
        let from = self.index_after(after);
        let to = self.index_after(upto);
        self.entries.range(from..to.max(from)).cloned().collect()
    }

    /// The last zxid of `epoch` in `[base, last]`, if there is one there.
    pub(crate) fn last_in_epoch(&self, epoch: u32) -> Option<Zxid> {
        let mut found =
            (self.base != Zxid::ZERO && self.base.epoch() == epoch).then_some(self.base);
        let from = self.entries.partition_point(|e| e.zxid.epoch() < epoch);
        for e in self.entries.range(from..) {
            if e.zxid.epoch() != epoch {
                break;
            }
            found = Some(e.zxid);
        }
        found
    }

    /// Drops every entry after `zxid`. The caller has checked `committed <= zxid`.
    pub(crate) fn truncate_after(&mut self, zxid: Zxid) {
        debug_assert!(zxid >= self.committed, "truncating committed entries");
        let keep = self.index_after(zxid);
        self.entries.truncate(keep);
    }

    /// Replaces the whole history with a snapshot at `zxid`, which is committed.
    pub(crate) fn reset(&mut self, zxid: Zxid) {
        self.entries.clear();
        self.base = zxid;
        self.committed = zxid;
    }

    /// Marks everything up to `zxid` committed and returns the entries newly committed.
    pub(crate) fn commit_to(&mut self, zxid: Zxid) -> Vec<Entry> {
        if zxid <= self.committed {
            return Vec::new();
        }
        debug_assert!(zxid <= self.last(), "committing past the log");
        let newly = self.range(self.committed, zxid);
        self.committed = newly.last().map_or(self.committed, |e| e.zxid);
        newly
    }

    /// Keeps at most `window` committed entries in memory, moving `base` up past the rest.
    pub(crate) fn trim(&mut self, window: usize) {
        let committed_in_memory = self.index_after(self.committed);
        let drop = committed_in_memory.saturating_sub(window);
        if drop > 0 {
            self.base = self.entries[drop - 1].zxid;
            self.entries.drain(..drop);
        }
    }

    /// For ACKEPOCH: the last zxid of each epoch that has entries after `committed`, and of the
    /// epoch of `committed` itself, ascending.
    pub(crate) fn epoch_ends(&self) -> Vec<Zxid> {
        let mut ends: Vec<Zxid> = Vec::new();
        if self.committed != Zxid::ZERO {
            ends.push(self.committed);
        }
        for e in self.entries.range(self.index_after(self.committed)..) {
            match ends.last_mut() {
                Some(last) if last.epoch() == e.zxid.epoch() => *last = e.zxid,
                _ => ends.push(e.zxid),
            }
        }
        ends
    }

    /// Every structural property, as a description of the first one broken.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.committed < self.base {
            return Err(format!(
                "committed {} below base {}",
                self.committed, self.base
            ));
        }
        if self.committed > self.last() {
            return Err(format!(
                "committed {} past the last entry {}",
                self.committed,
                self.last()
            ));
        }
        let mut prev = self.base;
        for e in &self.entries {
            if !e.zxid.follows(prev) {
                return Err(format!("hole: {} after {prev}", e.zxid));
            }
            prev = e.zxid;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn e(epoch: u32, counter: u32) -> Entry {
        Entry {
            zxid: Zxid::new(epoch, counter),
            payload: Bytes::from(format!("{epoch}.{counter}")),
        }
    }

    fn z(epoch: u32, counter: u32) -> Zxid {
        Zxid::new(epoch, counter)
    }

    #[test]
    fn holes_are_refused() {
        assert!(Log::new(Zxid::ZERO, vec![e(1, 1), e(1, 2), e(3, 1)]).is_ok());
        assert_eq!(
            Log::new(Zxid::ZERO, vec![e(1, 1), e(1, 3)]).unwrap_err(),
            DurableStateError::Hole {
                prev: z(1, 1),
                zxid: z(1, 3)
            }
        );
        assert!(Log::new(z(2, 4), vec![e(2, 6)]).is_err());
        let mut log = Log::new(z(2, 4), vec![e(2, 5)]).unwrap();
        assert!(!log.append(e(2, 7)));
        assert!(!log.append(e(3, 2)));
        assert!(log.append(e(3, 1)));
        assert_eq!(log.check(), Ok(()));
    }

    #[test]
    fn commit_trim_and_epoch_ends() {
        let mut log = Log::new(
            Zxid::ZERO,
            vec![e(1, 1), e(1, 2), e(2, 1), e(2, 2), e(4, 1)],
        )
        .unwrap();
        assert_eq!(log.epoch_ends(), [z(1, 2), z(2, 2), z(4, 1)]);
        let newly = log.commit_to(z(2, 1));
        assert_eq!(newly, [e(1, 1), e(1, 2), e(2, 1)]);
        assert_eq!(log.commit_to(z(1, 2)), []);
        assert_eq!(log.epoch_ends(), [z(2, 2), z(4, 1)]);
        assert_eq!(log.last_in_epoch(1), Some(z(1, 2)));
        assert_eq!(log.last_in_epoch(3), None);
        log.trim(1);
        assert_eq!((log.base(), log.len()), (z(1, 2), 3));
        // The base still counts for its epoch; the trimmed epoch-1 entries are gone.
        assert_eq!(log.last_in_epoch(1), Some(z(1, 2)));
        assert_eq!(log.range(z(1, 2), z(4, 1)), [e(2, 1), e(2, 2), e(4, 1)]);
        log.truncate_after(z(2, 1));
        assert_eq!(log.last(), z(2, 1));
        log.reset(z(5, 9));
        assert_eq!(
            (log.base(), log.committed(), log.last()),
            (z(5, 9), z(5, 9), z(5, 9))
        );
        assert_eq!(log.check(), Ok(()));
    }
}
