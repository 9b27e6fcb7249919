//! Choosing how to synchronize a learner (ZAB phase 2): DIFF, TRUNC or SNAP.
//!
//! The leader finds the last zxid both histories hold. Two histories that hold the same zxid agree
//! on everything up to it: a zxid is proposed once, by the one leader of its epoch, and a learner
//! accepts an epoch's proposals only after adopting that leader's history. Within an epoch a
//! history holds a prefix of the epoch's proposals (`e:1 ..= e:k`). So for each epoch in which the
//! learner has entries, `min(learner's end, leader's end)` is common if both have any; the largest
//! such zxid is the fork point. Entries of the learner after it are proposals no later leader will
//! commit, which TRUNC removes; nothing before it is ever removed.
//!
//! The leader only knows its own history after `base` (older entries are compacted into the
//! runtime's snapshot). If the fork point is older than that, the learner gets a SNAP of the
//! committed state instead: every entry of the learner after the fork point is then after the
//! snapshot too, so the snapshot replaces only what the leader would have truncated anyway.

use super::log::Log;
use super::message::AckEpoch;
use super::zxid::Zxid;

/// How to bring a learner up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncPlan {
    /// The learner's history is a prefix of the leader's: send the entries after `after`.
    Diff {
        /// The learner's last zxid.
        after: Zxid,
    },
    /// The learner has entries the leader does not: drop those after `after`, then send the
    /// leader's entries after it.
    Trunc {
        /// The fork point.
        after: Zxid,
    },
    /// The fork point is older than the leader's in-memory window: send a snapshot of the
    /// committed state, then the entries after it.
    Snap,
}

/// Chooses the plan for a learner that reported `info`, against the leader's `log`.
pub(crate) fn plan(log: &Log, info: &AckEpoch) -> SyncPlan {
    let base = log.base();
    // The empty history is common to everyone; it is usable if the leader still holds everything.
    let mut fork = (base == Zxid::ZERO).then_some(Zxid::ZERO);
    let ends = info
        .epoch_ends
        .iter()
        .copied()
        .chain(std::iter::once(info.last_zxid));
    for end in ends {
        if end == Zxid::ZERO || end > info.last_zxid {
            continue;
        }
        let Some(ours) = log.last_in_epoch(end.epoch()) else {
            continue;
        };
        let common = end.min(ours);
        if common >= base && fork.is_none_or(|f| common > f) {
            fork = Some(common);
        }
    }
    match fork {
        Some(f) if f == info.last_zxid => SyncPlan::Diff { after: f },
        Some(f) => SyncPlan::Trunc { after: f },
        None => SyncPlan::Snap,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::message::Entry;
    use super::*;

    fn z(epoch: u32, counter: u32) -> Zxid {
        Zxid::new(epoch, counter)
    }

    fn log_of(base: Zxid, zxids: &[Zxid]) -> Log {
        let entries = zxids
            .iter()
            .map(|&zxid| Entry {
                zxid,
                payload: Bytes::new(),
            })
            .collect();
        Log::new(base, entries).unwrap()
    }

    /// What a learner with this history (everything committed up to `committed`) reports.
    fn learner(base: Zxid, zxids: &[Zxid], committed: Zxid) -> AckEpoch {
        let mut l = log_of(base, zxids);
        l.commit_to(committed);
        AckEpoch {
            fresh: true,
            current_epoch: 0,
            last_zxid: l.last(),
            committed_zxid: l.committed(),
            epoch_ends: l.epoch_ends(),
        }
    }

    #[test]
    fn a_prefix_gets_a_diff() {
        let leader = log_of(Zxid::ZERO, &[z(1, 1), z(1, 2), z(2, 1)]);
        let info = learner(Zxid::ZERO, &[z(1, 1)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Diff { after: z(1, 1) });
        let empty = learner(Zxid::ZERO, &[], Zxid::ZERO);
        assert_eq!(plan(&leader, &empty), SyncPlan::Diff { after: Zxid::ZERO });
        let same = learner(Zxid::ZERO, &[z(1, 1), z(1, 2), z(2, 1)], z(1, 2));
        assert_eq!(plan(&leader, &same), SyncPlan::Diff { after: z(2, 1) });
    }

    #[test]
    fn extra_proposals_of_a_dead_epoch_are_truncated() {
        let leader = log_of(Zxid::ZERO, &[z(1, 1), z(1, 2), z(3, 1)]);
        let info = learner(
            Zxid::ZERO,
            &[z(1, 1), z(1, 2), z(2, 1), z(2, 2)],
            Zxid::ZERO,
        );
        assert_eq!(plan(&leader, &info), SyncPlan::Trunc { after: z(1, 2) });
        // More of an epoch than the leader kept.
        let info = learner(Zxid::ZERO, &[z(1, 1), z(1, 2), z(1, 3)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Trunc { after: z(1, 2) });
    }

    #[test]
    fn the_fork_may_lie_before_an_epoch_the_learner_never_saw() {
        // The leader has 1:2 (which the learner never got) and epoch 3; the learner has epoch 2,
        // which the leader never had. The last shared zxid is 1:1: the learner must keep it and
        // drop epoch 2, then receive 1:2 and 3:1. A plan based only on zxid order ("the largest
        // leader zxid below the learner's last") would pick 1:2, which the learner lacks, and
        // leave a hole.
        let leader = log_of(Zxid::ZERO, &[z(1, 1), z(1, 2), z(3, 1)]);
        let info = learner(Zxid::ZERO, &[z(1, 1), z(2, 1), z(2, 2)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Trunc { after: z(1, 1) });
        // Nothing in common at all: truncate to the empty history.
        let info = learner(Zxid::ZERO, &[z(2, 1)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Trunc { after: Zxid::ZERO });
    }

    #[test]
    fn behind_the_window_gets_a_snapshot() {
        let mut leader = log_of(Zxid::ZERO, &[z(1, 1), z(1, 2), z(1, 3), z(2, 1)]);
        leader.commit_to(z(2, 1));
        leader.trim(1);
        assert_eq!(leader.base(), z(1, 3));
        let info = learner(Zxid::ZERO, &[z(1, 1)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Snap);
        let info = learner(Zxid::ZERO, &[], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Snap);
        // Diverged before the window: the snapshot replaces the divergent entries.
        let info = learner(
            Zxid::ZERO,
            &[z(1, 1), z(1, 2), z(1, 3), z(1, 4)],
            Zxid::ZERO,
        );
        assert_eq!(plan(&leader, &info), SyncPlan::Trunc { after: z(1, 3) });
        let info = learner(Zxid::ZERO, &[z(1, 1), z(1, 2)], Zxid::ZERO);
        assert_eq!(plan(&leader, &info), SyncPlan::Snap);
        // Exactly at the window's edge still diffs.
        let info = learner(Zxid::ZERO, &[z(1, 1), z(1, 2), z(1, 3)], z(1, 3));
        assert_eq!(plan(&leader, &info), SyncPlan::Diff { after: z(1, 3) });
    }

    #[test]
    fn a_learner_from_a_snapshot_is_matched_by_its_committed_point() {
        // The learner installed a snapshot at 2:5 and has 2:6; the leader has 2:1..=2:7.
        let zs: Vec<Zxid> = (1..=7).map(|c| z(2, c)).collect();
        let leader = log_of(Zxid::ZERO, &zs);
        let info = learner(z(2, 5), &[z(2, 6)], z(2, 5));
        assert_eq!(plan(&leader, &info), SyncPlan::Diff { after: z(2, 6) });
    }
}
