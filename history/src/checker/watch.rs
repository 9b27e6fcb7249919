//! Watch ordering (W1): ZooKeeper's promise that a client sees a watch event before it sees
//! the data that the change behind it produced, that a one-shot watch fires at most once, and
//! that no event reports a change that never happened.
//!
//! A watch is set by a [`Call::WatchRead`] of a register that returned the register at
//! version `v0`, mzxid `m0` (the state the server registered the watch against); its delivery
//! is a [`WatchEvent`] recorded when the session first saw it (see the workload: every armed
//! watch is polled before each completion is recorded). For each watch:
//!
//! - **late** (the W1 promise): a later reply of the same session (a read, or a write of its
//!   own) that shows the register past `v0` was sent after the server applied a change past
//!   `m0`, which fired the watch first; so the delivery must be recorded before that reply's
//!   completion. "Later" means invoked after the watch-setting read (so the server handled it
//!   after registering the watch) and completed after it (so the harness held the watcher
//!   when it recorded the reply). A watch the client reported as ended (the session expired,
//!   the server refused to re-arm it) before that reply is excused: the client said so.
//! - **fired-twice**: one watch, one delivery.
//! - **wrong-event**: registers are never created or deleted, so a data watch on one can only
//!   fire `NodeDataChanged`.
//! - **stale-event**: an event carrying zxid `z` must report a change after the watched state:
//!   `z > m0` (an older or repeated notification delivered to a newer watch fails this).
//! - **phantom-event**: `z` must be a known state of the register (an mzxid some reply or
//!   read showed), unless a write of the register whose outcome is unknown, invoked before
//!   the delivery, could have made it. An event without a zxid (-1: fired at once by
//!   `setWatches` after a reconnect, because the node changed since the client's last zxid)
//!   still needs some change after `m0` (known or possibly made by an unknown write).
//! - **skipped-change**: the watch fires for the first change applied after `m0` on the
//!   member that holds it; every member applies changes in zxid order, and a client only
//!   moves to a member at least as new as what it has seen, so no known change of the
//!   register lies strictly between `m0` and `z`.
//! - **unmatched**: a delivery for which the history holds no successful watch-setting read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::checker::{describe, Anomaly};
use crate::history::{Call, Delivery, History, Op, Outcome, Process, Reply, WatchEvent};

/// What the watch check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatchFigures {
    /// Watches set (successful watch-setting reads).
    pub set: usize,
    /// Delivered as a notification with the zxid of its change.
    pub fired: usize,
    /// Delivered as a `setWatches` catch-up notification (no zxid).
    pub catch_up: usize,
    /// Reported by the client as ended without firing.
    pub ended: usize,
    /// Still armed when the session ended.
    pub undelivered: usize,
    /// Watches for which a later reply of the session showed the change: the ordering
    /// promise was checked against that reply.
    pub ordered: usize,
}

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "watch",
        kind: kind.into(),
        detail,
        ops,
    }
}

fn describe_event(e: &WatchEvent) -> String {
    let what = match &e.delivery {
        Delivery::Fired { event, zxid } => format!("{event} zxid {zxid:#x}"),
        Delivery::Ended { reason } => format!("ended ({reason})"),
    };
    format!(
        "watch event p{} {} at {:.3}s (seq {}): {what}",
        e.process,
        e.key,
        e.at_ns as f64 / 1e9,
        e.seq
    )
}

/// The register version a successful reply shows, for the operations that read or write one
/// register.
fn version_shown(op: &Op) -> Option<i32> {
    match (&op.call, op.ok()?) {
        (
            Call::Read { .. } | Call::SyncRead { .. } | Call::WatchRead { .. },
            Reply::Read { version, .. } | Reply::Stat { version, .. },
        ) => Some(*version),
        (Call::Write { .. } | Call::Cas { .. }, Reply::Written { version, .. }) => Some(*version),
        _ => None,
    }
}

/// Runs the watch checks.
pub fn check(history: &History) -> (WatchFigures, Vec<Anomaly>) {
    let mut figures = WatchFigures::default();
    let mut out = Vec::new();

    // Every known state (mzxid) per register, and the invocations of register writes whose
    // outcome is unknown (they may have made a state nobody saw).
    let mut known: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    let mut unknown_writes: HashMap<&str, Vec<u64>> = HashMap::new();
    for op in &history.ops {
        match (&op.call, &op.outcome) {
            (
                Call::Read { key }
                | Call::SyncRead { key }
                | Call::WatchRead { key, .. }
                | Call::Write { key, .. }
                | Call::Cas { key, .. },
                Outcome::Ok(
                    Reply::Read { mzxid, .. }
                    | Reply::Stat { mzxid, .. }
                    | Reply::Written { mzxid, .. },
                ),
            ) => {
                known.entry(key).or_default().insert(*mzxid);
            }
            (Call::Write { key, .. } | Call::Cas { key, .. }, Outcome::Unknown { .. }) => {
                unknown_writes.entry(key).or_default().push(op.invoke_seq);
            }
            _ => {}
        }
    }
    let empty = BTreeSet::new();
    let unknown_before = |key: &str, seq: u64| {
        unknown_writes
            .get(key)
            .is_some_and(|v| v.iter().any(|&s| s < seq))
    };

    // Deliveries per (process, watch-setting invocation).
    let mut deliveries: BTreeMap<(Process, u64), Vec<&WatchEvent>> = BTreeMap::new();
    for e in &history.watches {
        deliveries.entry((e.process, e.set_by)).or_default().push(e);
    }
    // Each process's operations in invocation order.
    let mut per_process: BTreeMap<Process, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        per_process.entry(op.process).or_default().push(op);
    }
    for ops in per_process.values_mut() {
        ops.sort_by_key(|o| o.invoke_seq);
    }

    let mut matched: BTreeSet<(Process, u64)> = BTreeSet::new();
    for (process, ops) in &per_process {
        for (i, s) in ops.iter().enumerate() {
            let Call::WatchRead { key, .. } = &s.call else {
                continue;
            };
            let (v0, m0) = match s.ok() {
                Some(Reply::Read { version, mzxid, .. } | Reply::Stat { version, mzxid }) => {
                    (*version, *mzxid)
                }
                _ => continue,
            };
            let Some(s_done) = s.complete_seq else {
                continue;
            };
            figures.set += 1;
            let id = (*process, s.invoke_seq);
            let ds = deliveries.get(&id).map(Vec::as_slice).unwrap_or_default();
            if !ds.is_empty() {
                matched.insert(id);
            }
            if ds.len() > 1 {
                out.push(anomaly(
                    "fired-twice",
                    format!(
                        "one watch delivered {} times: {}\n    {}",
                        ds.len(),
                        describe(s),
                        ds.iter()
                            .map(|e| describe_event(e))
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    ),
                    vec![s.id],
                ));
            }
            let first = ds.iter().min_by_key(|e| e.seq).copied();
            let states = known.get(key.as_str()).unwrap_or(&empty);
            match first.map(|e| (e, &e.delivery)) {
                None => figures.undelivered += 1,
                Some((_, Delivery::Ended { .. })) => figures.ended += 1,
                Some((e, Delivery::Fired { event, zxid })) => {
                    let z = *zxid;
                    if z == -1 {
                        figures.catch_up += 1;
                    } else {
                        figures.fired += 1;
                    }
                    if event != "NodeDataChanged" {
                        out.push(anomaly(
                            "wrong-event",
                            format!(
                                "a data watch on a register fired {event}: {}\n    {}",
                                describe(s),
                                describe_event(e)
                            ),
                            vec![s.id],
                        ));
                    }
                    let unknown = unknown_before(key, e.seq);
                    if z == -1 {
                        if states.range(m0 + 1..).next().is_none() && !unknown {
                            out.push(anomaly(
                                "phantom-event",
                                format!(
                                    "a catch-up event though {key} never changed after \
                                     mzxid {m0:#x}: {}\n    {}",
                                    describe(s),
                                    describe_event(e)
                                ),
                                vec![s.id],
                            ));
                        }
                    } else if z <= m0 {
                        out.push(anomaly(
                            "stale-event",
                            format!(
                                "an event for zxid {z:#x}, not after the watched state \
                                 (mzxid {m0:#x}): {}\n    {}",
                                describe(s),
                                describe_event(e)
                            ),
                            vec![s.id],
                        ));
                    } else if !states.contains(&z) && !unknown {
                        out.push(anomaly(
                            "phantom-event",
                            format!(
                                "an event for zxid {z:#x}, which no write of {key} made: {}\n    \
                                 {}",
                                describe(s),
                                describe_event(e)
                            ),
                            vec![s.id],
                        ));
                    } else if let Some(n) = states.range(m0 + 1..z).next() {
                        out.push(anomaly(
                            "skipped-change",
                            format!(
                                "the watch set at mzxid {m0:#x} fired for zxid {z:#x}, past the \
                                 change at {n:#x}: {}\n    {}",
                                describe(s),
                                describe_event(e)
                            ),
                            vec![s.id],
                        ));
                    }
                }
            }

            // The ordering promise: the first later reply that shows the change.
            let by = first.map(|e| e.seq).unwrap_or(u64::MAX);
            for r in &ops[i + 1..] {
                // Invoked after the delivery was recorded: recorded after it too.
                if r.invoke_seq > by {
                    break;
                }
                if r.call.key() != key.as_str() {
                    continue;
                }
                let (Some(v), Some(r_done)) = (version_shown(r), r.complete_seq) else {
                    continue;
                };
                if v <= v0 || r_done < s_done {
                    continue;
                }
                figures.ordered += 1;
                if by > r_done {
                    out.push(anomaly(
                        "late",
                        format!(
                            "process {process} saw {key} at version {v} (watched at {v0}) \
                             before the watch event:\n    {}\n    {}\n    {}",
                            describe(s),
                            describe(r),
                            first
                                .map(describe_event)
                                .unwrap_or_else(|| "no watch event".into())
                        ),
                        vec![s.id, r.id],
                    ));
                }
                break;
            }
        }
    }
    for e in &history.watches {
        if !matched.contains(&(e.process, e.set_by)) {
            out.push(anomaly(
                "unmatched",
                format!("no successful watch-setting read for {}", describe_event(e)),
                vec![],
            ));
        }
    }
    (figures, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};

    /// A watch set by process 1 at version 1, mzxid 0x10 (op ids: the write 0, the watch 1).
    fn watched() -> Builder {
        let mut b = Builder::new();
        b.write(2, (0, 10), 5, 1, 0x10);
        b.op(
            1,
            Call::WatchRead {
                key: "/k".into(),
                exists: false,
            },
            20,
            Some(30),
            Outcome::Ok(Reply::Read {
                value: 5,
                version: 1,
                mzxid: 0x10,
            }),
        );
        b
    }

    /// A delivery of the watch set by op `set_by`, seen at time `t`.
    fn deliver(b: &mut Builder, set_by: usize, t: u64, delivery: Delivery) {
        let set_by = b.ops.get(set_by).map_or(u64::MAX, |o| o.invoke_seq);
        b.watches.push(WatchEvent {
            process: 1,
            session_id: 1,
            key: "/k".into(),
            set_by,
            seq: t * 2 + 1,
            at_ns: t,
            delivery,
        });
    }

    fn event(b: &mut Builder, set_by: usize, t: u64, event: &str, zxid: i64) {
        let delivery = Delivery::Fired {
            event: event.into(),
            zxid,
        };
        deliver(b, set_by, t, delivery);
    }

    fn build(b: Builder) -> (WatchFigures, Vec<Anomaly>) {
        check(&b.build())
    }

    #[test]
    fn an_event_before_the_new_data_is_clean() {
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        event(&mut b, 1, 55, "NodeDataChanged", 0x11);
        b.read(1, (52, 60), false, 6, 2, 0x11);
        let (f, a) = build(b);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!((f.set, f.fired, f.ordered), (1, 1, 1));
    }

    #[test]
    fn new_data_before_the_event_is_late() {
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        b.read(1, (52, 60), false, 6, 2, 0x11);
        event(&mut b, 1, 65, "NodeDataChanged", 0x11);
        assert_eq!(kinds(&build(b).1), vec!["late"]);
    }

    #[test]
    fn new_data_and_no_event_at_all_is_late_but_an_ended_watch_is_excused() {
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        b.read(1, (52, 60), false, 6, 2, 0x11);
        assert_eq!(kinds(&build(b).1), vec!["late"]);

        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        let ended = Delivery::Ended {
            reason: "session expired".into(),
        };
        deliver(&mut b, 1, 51, ended);
        b.read(1, (52, 60), false, 6, 2, 0x11);
        let (f, a) = build(b);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(f.ended, 1);
    }

    #[test]
    fn a_read_invoked_before_the_watch_was_set_proves_nothing() {
        // The read was invoked before the watch-setting read: the server may have answered
        // it first (here it completes later only because the builder says so).
        let mut b = Builder::new();
        b.write(2, (0, 10), 5, 1, 0x10);
        b.read(1, (15, 70), false, 6, 2, 0x11);
        b.op(
            1,
            Call::WatchRead {
                key: "/k".into(),
                exists: true,
            },
            20,
            Some(30),
            Outcome::Ok(Reply::Stat {
                version: 1,
                mzxid: 0x10,
            }),
        );
        b.write(2, (40, 50), 6, 2, 0x11);
        event(&mut b, 2, 80, "NodeDataChanged", 0x11);
        let (_, a) = build(b);
        assert!(a.is_empty(), "{a:?}");
    }

    #[test]
    fn events_for_old_unknown_or_skipped_changes_are_reported() {
        // Stale: zxid 0x10 is the watched state itself.
        let mut b = watched();
        event(&mut b, 1, 40, "NodeDataChanged", 0x10);
        assert_eq!(kinds(&build(b).1), vec!["stale-event"]);
        // Phantom: nothing ever wrote at 0x12.
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        event(&mut b, 1, 60, "NodeDataChanged", 0x12);
        assert_eq!(kinds(&build(b).1), vec!["phantom-event"]);
        // ... unless a write with an unknown outcome was under way.
        let mut b = watched();
        b.op(
            2,
            Call::Write {
                key: "/k".into(),
                value: 9,
            },
            35,
            None,
            Outcome::Unknown {
                reason: "lost".into(),
            },
        );
        event(&mut b, 1, 60, "NodeDataChanged", 0x12);
        assert!(build(b).1.is_empty());
        // Skipped: 0x11 changed the register before 0x12.
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        b.write(2, (60, 70), 7, 3, 0x12);
        event(&mut b, 1, 80, "NodeDataChanged", 0x12);
        assert_eq!(kinds(&build(b).1), vec!["skipped-change"]);
        // A catch-up event when nothing changed.
        let mut b = watched();
        event(&mut b, 1, 60, "NodeDataChanged", -1);
        assert_eq!(kinds(&build(b).1), vec!["phantom-event"]);
    }

    #[test]
    fn a_second_delivery_a_wrong_type_and_an_unmatched_event_are_reported() {
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        event(&mut b, 1, 60, "NodeDataChanged", 0x11);
        event(&mut b, 1, 61, "NodeDeleted", 0x11);
        event(&mut b, 7, 62, "NodeDataChanged", 0x11);
        let k = build(b).1;
        assert_eq!(kinds(&k), vec!["fired-twice", "unmatched"], "{k:?}");
        let mut b = watched();
        b.write(2, (40, 50), 6, 2, 0x11);
        event(&mut b, 1, 60, "NodeDeleted", 0x11);
        assert_eq!(kinds(&build(b).1), vec!["wrong-event"]);
    }
}
