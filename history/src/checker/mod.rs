//! The checkers: pure functions from a [`History`] to anomalies. None does I/O.
//!
//! - [`linearizable`]: per-key linearizability of the registers (sync-reads, writes, CAS),
//!   plus value identity (one version and mzxid per written value, no phantom values).
//! - [`durability`]: every acknowledged write is present at the end, on every member, and the
//!   members agree.
//! - [`sequential`]: unique sequential names, monotone per parent, and each creation applied
//!   at most once.
//! - [`session`]: per-session FIFO completions and zxids that never go back.
//! - [`watch`]: a watch event comes before any reply showing the change, fires once, and
//!   reports a real change after the watched state (W1).
//! - [`counter`]: a count of the sequential parent's children falls between the creates
//!   acknowledged before it and those that may have taken effect by its end (J6).
//! - [`queue`]: every acknowledged queue item consumed exactly once, nothing consumed that was
//!   not enqueued (J6).
//! - [`multi`]: pairs of registers written by `multi` are never seen half written, and form a
//!   linearizable register (J4).
//! - [`ephemeral`]: a live session keeps its ephemeral node; no ephemeral outlives its
//!   session; a session refused as expired is never served again (K6, S1).

pub mod counter;
pub mod durability;
pub mod ephemeral;
pub mod linearizable;
pub mod multi;
pub mod queue;
pub mod sequential;
pub mod session;
pub mod watch;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{History, Op, Outcome};
pub use linearizable::{Budget, KeyVerdict, Verdict};

/// One violation found by a checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// The checker's name (`linearizable`, `durability`, `sequential`, `session`, `watch`,
    /// `queue`, `counter`, `multi`, `ephemeral`).
    pub checker: &'static str,
    /// What kind of violation, for counting (`not-linearizable`, `lost-write`, ...).
    pub kind: String,
    /// A human-readable account, naming the operations.
    pub detail: String,
    /// The operations involved (history ids).
    pub ops: Vec<usize>,
}

/// Operation counts per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub ok: usize,
    pub failed: usize,
    pub not_sent: usize,
    pub unknown: usize,
}

impl OpCounts {
    pub fn total(&self) -> usize {
        self.ok + self.failed + self.not_sent + self.unknown
    }
}

/// Everything the checkers found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Operation counts per kind (`read`, `sync-read`, ...).
    pub ops: BTreeMap<&'static str, OpCounts>,
    /// One linearizability verdict per register, then one per pair (named `k0+k1`).
    pub registers: Vec<KeyVerdict>,
    pub anomalies: Vec<Anomaly>,
    /// Acknowledged writes missing at the end (registers, sequential creates, pair writes).
    pub acked_writes_lost: usize,
    /// Acknowledged writes the durability checks looked for.
    pub acked_writes: usize,
    /// Members whose whole-tree digest was compared with another's (K1).
    pub trees_compared: usize,
    /// Pair reads checked for half-applied transactions.
    pub pair_reads: usize,
    pub watch: watch::WatchFigures,
    pub queue: queue::QueueFigures,
    pub counter: counter::CounterFigures,
    pub ephemeral: ephemeral::EphemeralFigures,
}

impl Report {
    /// Registers whose search ran out of budget.
    pub fn undecided(&self) -> usize {
        self.registers
            .iter()
            .filter(|k| matches!(k.verdict, Verdict::Unknown { .. }))
            .count()
    }

    /// Anomaly counts per `checker/kind`.
    pub fn anomaly_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for a in &self.anomalies {
            *m.entry(format!("{}/{}", a.checker, a.kind)).or_default() += 1;
        }
        m
    }

    /// Whether no checker found anything and every search was decided.
    pub fn clean(&self) -> bool {
        self.anomalies.is_empty() && self.undecided() == 0
    }
}

/// Runs every checker.
pub fn check_all(history: &History, budget: Budget) -> Report {
    let mut report = Report::default();
    for op in &history.ops {
        let c = report.ops.entry(op.call.kind()).or_default();
        match op.outcome {
            Outcome::Ok(_) => c.ok += 1,
            Outcome::Failed(_) => c.failed += 1,
            Outcome::NotSent { .. } => c.not_sent += 1,
            Outcome::Unknown { .. } => c.unknown += 1,
        }
    }
    let (registers, mut anomalies) = linearizable::check_registers(history, budget);
    report.registers = registers;
    let durable = durability::check(history);
    report.acked_writes_lost = durable.lost;
    report.acked_writes = durable.acked;
    report.trees_compared = durable.trees_compared;
    anomalies.extend(durable.anomalies);
    anomalies.extend(sequential::check(history));
    anomalies.extend(session::check(history));
    let multi = multi::check(history, budget);
    report.registers.extend(multi.verdicts);
    report.acked_writes += multi.acked;
    report.acked_writes_lost += multi.lost;
    report.pair_reads = multi.reads;
    anomalies.extend(multi.anomalies);
    let (figures, found) = watch::check(history);
    report.watch = figures;
    anomalies.extend(found);
    let (figures, found) = queue::check(history);
    report.queue = figures;
    anomalies.extend(found);
    let (figures, found) = counter::check(history);
    report.counter = figures;
    anomalies.extend(found);
    let (figures, found) = ephemeral::check(history);
    report.ephemeral = figures;
    anomalies.extend(found);
    report.anomalies = anomalies;
    report
}

/// One line about an operation, for reports.
pub fn describe(op: &Op) -> String {
    let end = match op.complete_ns {
        Some(t) => format!("{:.3}s", t as f64 / 1e9),
        None => "?".into(),
    };
    let outcome = match &op.outcome {
        Outcome::Ok(r) => format!("{r:?}"),
        Outcome::Failed(e) => format!("failed {e:?}"),
        Outcome::NotSent { reason } => format!("not sent ({reason})"),
        Outcome::Unknown { reason } => format!("unknown ({reason})"),
    };
    format!(
        "#{} p{} [{:.3}s..{end}] {:?} -> {outcome}",
        op.id,
        op.process,
        op.invoke_ns as f64 / 1e9,
        op.call
    )
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Building histories by hand.

    use super::Anomaly;
    use crate::history::{
        Call, History, MemberState, Op, Outcome, Process, RegisterState, Reply, ServerError,
        WatchEvent,
    };

    /// Member `i`'s final state: register `/k` and the children of `/s` (name, token).
    pub(crate) fn member(
        i: usize,
        value: u64,
        version: i32,
        mzxid: i64,
        kids: &[(&str, u64)],
    ) -> MemberState {
        MemberState {
            member: i,
            error: None,
            registers: [(
                "/k".to_string(),
                RegisterState {
                    value,
                    version,
                    mzxid,
                },
            )]
            .into(),
            children: [(
                "/s".to_string(),
                kids.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            )]
            .into(),
            ..Default::default()
        }
    }

    /// The kinds of `anomalies`, in order.
    pub(crate) fn kinds(anomalies: &[Anomaly]) -> Vec<&str> {
        anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    /// Builds a history; ops get sequence numbers from their times, on one scale (`2t` for an
    /// invocation at `t`, `2t + 1` for a completion, so that at one instant the invocation
    /// comes first).
    #[derive(Default)]
    pub(crate) struct Builder {
        pub(crate) ops: Vec<Op>,
        pub(crate) registers: Vec<String>,
        pub(crate) parents: Vec<String>,
        pub(crate) watches: Vec<WatchEvent>,
    }

    impl Builder {
        pub(crate) fn new() -> Builder {
            Builder {
                registers: vec!["/k".into()],
                parents: vec!["/s".into()],
                ..Default::default()
            }
        }

        pub(crate) fn op(
            &mut self,
            process: Process,
            call: Call,
            invoke_ns: u64,
            complete_ns: Option<u64>,
            outcome: Outcome,
        ) -> usize {
            let id = self.ops.len();
            self.ops.push(Op {
                id,
                process,
                session_id: process as i64,
                call,
                invoke_ns,
                complete_ns,
                invoke_seq: invoke_ns * 2,
                complete_seq: complete_ns.map(|t| t * 2 + 1),
                outcome,
            });
            id
        }

        pub(crate) fn write(
            &mut self,
            p: Process,
            t: (u64, u64),
            value: u64,
            version: i32,
            mzxid: i64,
        ) -> usize {
            self.op(
                p,
                Call::Write {
                    key: "/k".into(),
                    value,
                },
                t.0,
                Some(t.1),
                Outcome::Ok(Reply::Written { version, mzxid }),
            )
        }

        pub(crate) fn read(
            &mut self,
            p: Process,
            t: (u64, u64),
            sync: bool,
            value: u64,
            version: i32,
            mzxid: i64,
        ) -> usize {
            let key = "/k".to_string();
            self.op(
                p,
                if sync {
                    Call::SyncRead { key }
                } else {
                    Call::Read { key }
                },
                t.0,
                Some(t.1),
                Outcome::Ok(Reply::Read {
                    value,
                    version,
                    mzxid,
                }),
            )
        }

        pub(crate) fn create(
            &mut self,
            p: Process,
            t: (u64, u64),
            token: u64,
            seq: i64,
            czxid: i64,
        ) -> usize {
            self.op(
                p,
                Call::CreateSeq {
                    parent: "/s".into(),
                    token,
                },
                t.0,
                Some(t.1),
                Outcome::Ok(Reply::Created {
                    name: format!("c{seq:010}"),
                    seq,
                    czxid,
                }),
            )
        }

        pub(crate) fn bad_version(
            &mut self,
            p: Process,
            t: (u64, u64),
            expected_version: i32,
            value: u64,
        ) -> usize {
            self.op(
                p,
                Call::Cas {
                    key: "/k".into(),
                    expected_version,
                    value,
                },
                t.0,
                Some(t.1),
                Outcome::Failed(ServerError::BadVersion),
            )
        }

        pub(crate) fn build(self) -> History {
            History {
                registers: self.registers,
                parents: self.parents,
                ops: self.ops,
                watches: self.watches,
                final_state: None,
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{member, Builder};
    use super::*;
    use crate::history::FinalState;

    fn final_state(value: u64, version: i32, kids: &[(&str, u64)]) -> FinalState {
        FinalState {
            members: vec![member(0, value, version, 0x100, kids)],
        }
    }

    #[test]
    fn a_clean_history_has_no_anomaly_and_counts_operations() {
        let mut b = Builder::new();
        b.write(1, (0, 10), 5, 1, 0x100);
        b.read(2, (20, 30), true, 5, 1, 0x100);
        b.read(2, (40, 50), false, 5, 1, 0x100);
        b.create(1, (60, 70), 1, 0, 0x101);
        let mut h = b.build();
        h.final_state = Some(final_state(5, 1, &[("c0000000000", 1)]));
        let r = check_all(&h, Budget::default());
        assert!(r.clean(), "{:?}", r.anomalies);
        assert_eq!(r.ops["write"].ok, 1);
        assert_eq!(r.ops["read"].total(), 1);
        assert_eq!(r.registers.len(), 1);
    }

    #[test]
    fn a_stale_sync_read_is_reported_by_the_linearizability_checker() {
        let mut b = Builder::new();
        b.write(1, (0, 10), 5, 1, 0x100);
        b.read(2, (20, 30), true, 0, 0, 0);
        let r = check_all(&b.build(), Budget::default());
        assert_eq!(r.anomaly_counts()["linearizable/not-linearizable"], 1);
    }

    #[test]
    fn a_cas_refused_at_the_current_version_is_reported() {
        let mut b = Builder::new();
        b.write(1, (0, 10), 5, 1, 0x100);
        // Version 1 is current from 10 on; a CAS from version 1 fails with BADVERSION.
        b.bad_version(2, (20, 30), 1, 6);
        b.read(2, (40, 50), true, 5, 1, 0x100);
        let mut h = b.build();
        h.final_state = Some(final_state(5, 1, &[]));
        let r = check_all(&h, Budget::default());
        assert_eq!(r.anomaly_counts()["linearizable/not-linearizable"], 1);
    }

    #[test]
    fn a_stale_plain_read_from_another_session_is_allowed() {
        let mut b = Builder::new();
        b.write(1, (0, 10), 5, 1, 0x100);
        b.read(2, (20, 30), false, 0, 0, 0);
        let mut h = b.build();
        h.final_state = Some(final_state(5, 1, &[]));
        let r = check_all(&h, Budget::default());
        assert!(r.clean(), "{:?}", r.anomalies);
    }
}
