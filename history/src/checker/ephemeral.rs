//! Ephemeral nodes and session ends (K6, S1). Sessions create one ephemeral node each and
//! check it now and then; the harness closes sessions (during the run and at its end) or cuts
//! them off so that the ensemble must expire them, tries to resume closed sessions, and at the
//! end, once every workload session has ended, waits for the ephemeral parents to empty and
//! lists them on every member.
//!
//! - **vanished** / **wrong-owner**: a session that reads its own ephemeral node after the
//!   create was acknowledged finds it, owned by itself (a reply to the session means the
//!   session was alive when the server answered; ZooKeeper deletes a session's ephemerals only
//!   by closing the session). This also holds for a resumed session, which is the same
//!   session.
//! - **survived**: every workload session has ended before the final listing (closed, cut
//!   off and left to expire, or expired), so no ephemeral node is left on any member (the
//!   harness waits for the ensemble to expire the cut-off sessions before it lists).
//! - **resurrected**: once the ensemble refused to resume a session (`SessionExpired`), no
//!   later request of that session succeeds: no later resume, no operation of a client still
//!   holding it.
//! - **replicas-diverge**: the members list the same ephemeral nodes at the end.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Op, Outcome, Reply, ServerError};

/// What the ephemeral check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EphemeralFigures {
    /// Acknowledged ephemeral creates.
    pub created: usize,
    /// Sessions the harness closed, and cut off.
    pub closed: usize,
    pub cut_off: usize,
    /// Reads of a session's own ephemeral node.
    pub own_reads: usize,
    /// Resume attempts refused (`SessionExpired`) and accepted.
    pub resumes_refused: usize,
    pub resumes_accepted: usize,
    /// Ephemeral nodes left at the end (on the first readable member).
    pub left: usize,
}

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "ephemeral",
        kind: kind.into(),
        detail,
        ops,
    }
}

/// Runs the ephemeral and session-end checks.
pub fn check(history: &History) -> (EphemeralFigures, Vec<Anomaly>) {
    let mut f = EphemeralFigures::default();
    let mut out = Vec::new();

    // Acknowledged creates per (session, path).
    let mut created: HashMap<(i64, &str), &Op> = HashMap::new();
    for op in &history.ops {
        match (&op.call, &op.outcome) {
            (Call::CreateEphemeral { path, .. }, Outcome::Ok(_)) => {
                f.created += 1;
                created.insert((op.session_id, path), op);
            }
            (Call::EndSession { abandon: false }, _) => f.closed += 1,
            (Call::EndSession { abandon: true }, _) => f.cut_off += 1,
            (Call::Resume, Outcome::Ok(_)) => f.resumes_accepted += 1,
            (Call::Resume, Outcome::Failed(ServerError::SessionExpired)) => f.resumes_refused += 1,
            _ => {}
        }
    }

    for op in &history.ops {
        let (Call::OwnEphemeral { path }, Some(Reply::Exists { owner })) = (&op.call, op.ok())
        else {
            continue;
        };
        f.own_reads += 1;
        let Some(create) = created.get(&(op.session_id, path.as_str())) else {
            continue;
        };
        if create.complete_seq.is_none_or(|c| c > op.invoke_seq) {
            continue;
        }
        match owner {
            Some(o) if *o == op.session_id => {}
            Some(o) => out.push(anomaly(
                "wrong-owner",
                format!(
                    "{path} is owned by session {o:#x}, not by {:#x}, which created it:\n    \
                     {}\n    {}",
                    op.session_id,
                    describe(create),
                    describe(op)
                ),
                vec![create.id, op.id],
            )),
            None => out.push(anomaly(
                "vanished",
                format!(
                    "session {:#x} no longer finds its ephemeral {path}:\n    {}\n    {}",
                    op.session_id,
                    describe(create),
                    describe(op)
                ),
                vec![create.id, op.id],
            )),
        }
    }

    // Resurrection: the first refusal per session, then any later success of that session.
    let mut refused: HashMap<i64, &Op> = HashMap::new();
    for op in &history.ops {
        if let (Call::Resume, Outcome::Failed(ServerError::SessionExpired), Some(done)) =
            (&op.call, &op.outcome, op.complete_seq)
        {
            let first = refused.entry(op.session_id).or_insert(op);
            if first.complete_seq.is_some_and(|c| c > done) {
                *first = op;
            }
        }
    }
    for op in &history.ops {
        let Some(r) = refused.get(&op.session_id) else {
            continue;
        };
        // An EndSession's `Ok` is the client's own word (see the workload), not the
        // ensemble's.
        if op.ok().is_none() || matches!(op.call, Call::EndSession { .. }) {
            continue;
        }
        if r.complete_seq.is_some_and(|c| c < op.invoke_seq) {
            out.push(anomaly(
                "resurrected",
                format!(
                    "session {:#x} was refused as expired, then served again:\n    {}\n    {}",
                    op.session_id,
                    describe(r),
                    describe(op)
                ),
                vec![r.id, op.id],
            ));
        }
    }

    // The end.
    let readable: Vec<_> = history
        .final_state
        .iter()
        .flat_map(|fin| fin.members.iter())
        .filter(|m| m.error.is_none())
        .collect();
    let by_session: HashMap<i64, &Op> = created.iter().map(|((s, _), op)| (*s, *op)).collect();
    let empty = BTreeMap::new();
    if let Some(first) = readable.first() {
        for parent in &history.ephemeral_parents {
            let left = first.ephemerals.get(parent).unwrap_or(&empty);
            f.left += left.len();
            for m in &readable[1..] {
                let other = m.ephemerals.get(parent).unwrap_or(&empty);
                if other != left {
                    out.push(anomaly(
                        "replicas-diverge",
                        format!(
                            "{parent}: member {} lists {:?}, member {} lists {:?}",
                            first.member,
                            left.keys().collect::<Vec<_>>(),
                            m.member,
                            other.keys().collect::<Vec<_>>()
                        ),
                        vec![],
                    ));
                }
            }
        }
        for m in &readable {
            for (parent, nodes) in &m.ephemerals {
                for (name, node) in nodes {
                    let create = by_session.get(&node.owner);
                    out.push(anomaly(
                        "survived",
                        format!(
                            "{parent}/{name} (owner {:#x}, token {}) is still on member {} after \
                             every session ended{}",
                            node.owner,
                            node.token,
                            m.member,
                            create
                                .map(|c| format!(": {}", describe(c)))
                                .unwrap_or_default()
                        ),
                        create.map(|c| vec![c.id]).unwrap_or_default(),
                    ));
                }
            }
        }
    }
    (f, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};
    use crate::history::{EphemeralNode, FinalState, MemberState};

    fn create(b: &mut Builder, p: u32, t: (u64, u64)) {
        b.op(
            p,
            Call::CreateEphemeral {
                path: format!("/e/w{p}"),
                token: u64::from(p),
            },
            t.0,
            Some(t.1),
            Outcome::Ok(Reply::Created {
                name: format!("w{p}"),
                seq: -1,
                czxid: 0x10,
            }),
        );
    }

    fn own(b: &mut Builder, p: u32, t: (u64, u64), owner: Option<i64>) {
        b.op(
            p,
            Call::OwnEphemeral {
                path: format!("/e/w{p}"),
            },
            t.0,
            Some(t.1),
            Outcome::Ok(Reply::Exists { owner }),
        );
    }

    fn resume(b: &mut Builder, p: u32, of: i64, t: (u64, u64), outcome: Outcome) {
        let id = b.op(p, Call::Resume, t.0, Some(t.1), outcome);
        b.ops[id].session_id = of;
    }

    fn history(b: Builder, left: &[(&str, i64)]) -> History {
        let mut h = b.build();
        h.ephemeral_parents = vec!["/e".into()];
        h.final_state = Some(FinalState {
            members: vec![MemberState {
                ephemerals: [(
                    "/e".to_string(),
                    left.iter()
                        .map(|(n, o)| {
                            (
                                n.to_string(),
                                EphemeralNode {
                                    token: 1,
                                    owner: *o,
                                },
                            )
                        })
                        .collect(),
                )]
                .into(),
                ..Default::default()
            }],
        });
        h
    }

    #[test]
    fn a_live_session_keeps_its_node_and_an_ended_one_leaves_nothing() {
        let mut b = Builder::new();
        create(&mut b, 1, (0, 10));
        // Read before the create completed: may not see it.
        own(&mut b, 1, (5, 12), None);
        own(&mut b, 1, (20, 30), Some(1));
        b.op(
            1,
            Call::EndSession { abandon: false },
            40,
            Some(50),
            Outcome::Ok(Reply::Done),
        );
        resume(
            &mut b,
            2,
            1,
            (60, 70),
            Outcome::Failed(ServerError::SessionExpired),
        );
        let (f, a) = check(&history(b, &[]));
        assert!(a.is_empty(), "{a:?}");
        assert_eq!((f.created, f.closed, f.resumes_refused), (1, 1, 1));
    }

    #[test]
    fn a_vanished_or_foreign_node_is_reported() {
        let mut b = Builder::new();
        create(&mut b, 1, (0, 10));
        own(&mut b, 1, (20, 30), None);
        own(&mut b, 1, (40, 50), Some(7));
        assert_eq!(
            kinds(&check(&history(b, &[])).1),
            vec!["vanished", "wrong-owner"]
        );
    }

    #[test]
    fn a_node_left_at_the_end_survived() {
        let mut b = Builder::new();
        create(&mut b, 1, (0, 10));
        let (f, a) = check(&history(b, &[("w1", 1)]));
        assert_eq!(kinds(&a), vec!["survived"]);
        assert_eq!(f.left, 1);
    }

    #[test]
    fn a_session_served_after_a_refusal_was_resurrected() {
        let mut b = Builder::new();
        create(&mut b, 1, (0, 10));
        resume(
            &mut b,
            2,
            1,
            (20, 30),
            Outcome::Failed(ServerError::SessionExpired),
        );
        // Accepted earlier than the refusal: fine.
        resume(&mut b, 3, 1, (5, 15), Outcome::Ok(Reply::Done));
        resume(&mut b, 4, 1, (40, 50), Outcome::Ok(Reply::Done));
        let (f, a) = check(&history(b, &[]));
        assert_eq!(kinds(&a), vec!["resurrected"]);
        assert_eq!((f.resumes_accepted, f.resumes_refused), (2, 1));
    }
}
