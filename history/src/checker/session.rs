//! ZooKeeper's per-session promises, which hold for plain reads too:
//!
//! - **FIFO**: a session's requests are answered in the order it sent them. Among the
//!   operations a server answered (a success or an error reply; failures the client made up
//!   itself, such as a lost connection, are left out), completions come in invocation order.
//! - **Zxids never go back**: every reply reflects a state at least as new as every earlier
//!   reply of the session. A read of a key returning mzxid `m` was served from a state `s`
//!   with `m <= s < n`, where `n` is the next mzxid of that key known from the whole history
//!   (a write's reply or any read); a write or create with zxid `z` happened after every state
//!   the session saw before it, so those states are `< z`. So, in invocation order, the
//!   highest lower bound so far must stay below each read's `n` and each write's `z`. This
//!   covers monotonic reads and read-your-writes per key, and orders reads across keys as far
//!   as the known zxids allow (never claiming more: an unknown write only makes `n` larger).

use std::collections::{BTreeMap, BTreeSet};

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Op, Process, Reply};

/// Runs the session checks.
pub fn check(history: &History) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut per_process: BTreeMap<Process, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        per_process.entry(op.process).or_default().push(op);
    }
    // Every mzxid known per key.
    let mut known: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for op in &history.ops {
        if let Some(
            Reply::Read { mzxid, .. } | Reply::Written { mzxid, .. } | Reply::Stat { mzxid, .. },
        ) = op.ok()
        {
            known.entry(op.call.key()).or_default().insert(*mzxid);
        }
    }

    for (process, ops) in &mut per_process {
        ops.sort_by_key(|o| o.invoke_seq);
        // FIFO.
        let mut last: Option<&Op> = None;
        for op in ops.iter().filter(|o| o.outcome.replied()) {
            let Some(done) = op.complete_seq else {
                continue;
            };
            if let Some(prev) = last {
                if prev.complete_seq.is_some_and(|p| p > done) {
                    out.push(Anomaly {
                        checker: "session",
                        kind: "fifo".into(),
                        detail: format!(
                            "process {process} got a reply to a later request first:\n    {}\n    {}",
                            describe(prev),
                            describe(op)
                        ),
                        ops: vec![prev.id, op.id],
                    });
                }
            }
            last = Some(op);
        }
        // Zxids.
        let mut floor: Option<(i64, &Op)> = None;
        for op in ops.iter() {
            let Some(reply) = op.ok() else { continue };
            let (lo, limit, strict_write) = match (&op.call, reply) {
                (
                    Call::Read { key } | Call::SyncRead { key } | Call::WatchRead { key, .. },
                    Reply::Read { mzxid, .. } | Reply::Stat { mzxid, .. },
                ) => {
                    let next = known
                        .get(key.as_str())
                        .and_then(|s| s.range(mzxid + 1..).next().copied())
                        .unwrap_or(i64::MAX);
                    (*mzxid, next, false)
                }
                (Call::Write { .. } | Call::Cas { .. }, Reply::Written { mzxid, .. }) => {
                    (*mzxid, *mzxid, true)
                }
                (
                    Call::CreateSeq { .. } | Call::Enqueue { .. } | Call::CreateEphemeral { .. },
                    Reply::Created { czxid, .. },
                ) => (*czxid, *czxid, true),
                _ => continue,
            };
            if let Some((f, earlier)) = floor {
                if f >= limit {
                    let what = if strict_write {
                        format!("a write with zxid {limit:#x}")
                    } else {
                        format!("a read from a state before zxid {limit:#x}")
                    };
                    out.push(Anomaly {
                        checker: "session",
                        kind: "zxid-went-back".into(),
                        detail: format!(
                            "process {process} saw zxid {f:#x}, then {what}:\n    {}\n    {}",
                            describe(earlier),
                            describe(op)
                        ),
                        ops: vec![earlier.id, op.id],
                    });
                }
            }
            if floor.is_none_or(|(f, _)| lo > f) {
                floor = Some((lo, op));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};

    #[test]
    fn in_order_replies_and_growing_zxids_are_clean() {
        let mut b = Builder::new();
        b.read(1, (0, 10), false, 0, 0, 0x5);
        b.write(1, (11, 20), 7, 1, 0x10);
        b.read(1, (21, 30), false, 7, 1, 0x10);
        // Another session may read the old value after the write (no sync).
        b.read(2, (31, 40), false, 0, 0, 0x5);
        assert!(check(&b.build()).is_empty());
    }

    #[test]
    fn replies_out_of_order_break_fifo() {
        let mut b = Builder::new();
        // Pipelined: invoked 0 then 1, the second completes first.
        b.read(1, (0, 20), false, 0, 0, 0x5);
        b.read(1, (1, 10), false, 0, 0, 0x5);
        assert_eq!(kinds(&check(&b.build())), vec!["fifo"]);
    }

    #[test]
    fn a_read_older_than_an_earlier_read_is_reported() {
        let mut b = Builder::new();
        b.write(2, (0, 10), 7, 1, 0x10);
        b.read(1, (20, 30), false, 7, 1, 0x10);
        b.read(1, (40, 50), false, 0, 0, 0x5);
        assert_eq!(kinds(&check(&b.build())), vec!["zxid-went-back"]);
    }

    #[test]
    fn a_session_not_reading_its_own_write_is_reported() {
        let mut b = Builder::new();
        b.read(1, (0, 5), false, 0, 0, 0x5);
        b.write(1, (10, 20), 7, 1, 0x10);
        b.read(1, (30, 40), false, 0, 0, 0x5);
        assert_eq!(kinds(&check(&b.build())), vec!["zxid-went-back"]);
    }

    #[test]
    fn a_write_ordered_before_a_state_the_session_already_saw_is_reported() {
        let mut b = Builder::new();
        b.create(1, (0, 10), 1, 0, 0x20);
        b.write(1, (20, 30), 7, 1, 0x10);
        assert_eq!(kinds(&check(&b.build())), vec!["zxid-went-back"]);
    }

    #[test]
    fn reads_across_keys_are_ordered_only_as_far_as_known() {
        // The session creates at 0x20, then reads /k at mzxid 0x5 with no known later write of
        // /k: a state past 0x20 is possible.
        let mut b = Builder::new();
        b.create(1, (0, 10), 1, 0, 0x20);
        b.read(1, (20, 30), false, 0, 0, 0x5);
        assert!(check(&b.build()).is_empty());
        // With /k known to change at 0x10, the read came from a state before 0x10 < 0x20.
        let mut b = Builder::new();
        b.write(2, (0, 1), 9, 1, 0x10);
        b.create(1, (0, 10), 1, 0, 0x20);
        b.read(1, (20, 30), false, 0, 0, 0x5);
        assert_eq!(kinds(&check(&b.build())), vec!["zxid-went-back"]);
    }
}
