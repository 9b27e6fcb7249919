//! The queue (J6, ClickHouse's queue workload; Curator's `DistributedQueue` layout): items are
//! persistent sequential children `qn-` of a queue node, each holding a unique token;
//! consumers take the lowest child by reading it and deleting it, and an item is consumed
//! when its delete succeeds. At the end the harness drains the queue (with the same takes)
//! and lists what is left on every member.
//!
//! - **consumed-twice**: no token is taken by two successful deletes (an item applied twice,
//!   or one delete acknowledged twice).
//! - **phantom-item**: every successful take is of a token some enqueue of that queue used,
//!   and that enqueue was not refused or left unsent; the taken name is the one the enqueue
//!   was acknowledged with (**wrong-name** otherwise).
//! - **lost-item**: every acknowledged enqueue is consumed by the end: by a successful take, or
//!   possibly by a take whose outcome is unknown; an item still listed at the end is
//!   **not-drained** instead (the drain did not finish). An enqueue with an unknown outcome
//!   may be consumed once or never.
//! - **vanished**: a take refused with `NoNode` names an item some other take (successful or
//!   unknown) deleted: only takes delete items.
//! - **replicas-diverge**: the members list the same items at the end.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Op, Outcome, Reply, ServerError};

/// What the queue check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueFigures {
    /// Enqueues acknowledged.
    pub enqueued: usize,
    /// Enqueues with an unknown outcome.
    pub enqueue_unknown: usize,
    /// Successful takes (the final drain's included).
    pub consumed: usize,
    /// Acknowledged items neither consumed nor left at the end.
    pub lost: usize,
    /// Items left at the end (on the first readable member).
    pub left: usize,
}

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "queue",
        kind: kind.into(),
        detail,
        ops,
    }
}

/// Runs the queue checks.
pub fn check(history: &History) -> (QueueFigures, Vec<Anomaly>) {
    let mut figures = QueueFigures::default();
    let mut out = Vec::new();
    let readable: Vec<_> = history
        .final_state
        .iter()
        .flat_map(|f| f.members.iter())
        .filter(|m| m.error.is_none())
        .collect();
    for queue in &history.queues {
        let q = queue.as_str();
        let mut enqueues: HashMap<u64, &Op> = HashMap::new();
        let mut takes: HashMap<u64, Vec<&Op>> = HashMap::new();
        let mut takes_by_name: HashMap<&str, Vec<&Op>> = HashMap::new();
        for op in &history.ops {
            match &op.call {
                Call::Enqueue { queue, token } if queue == q => {
                    enqueues.insert(*token, op);
                    match op.outcome {
                        Outcome::Ok(_) => figures.enqueued += 1,
                        Outcome::Unknown { .. } => figures.enqueue_unknown += 1,
                        _ => {}
                    }
                }
                Call::Take {
                    queue, name, token, ..
                } if queue == q => {
                    takes.entry(*token).or_default().push(op);
                    takes_by_name.entry(name).or_default().push(op);
                }
                _ => {}
            }
        }

        for (token, ts) in &takes {
            let ok: Vec<&&Op> = ts.iter().filter(|t| t.ok().is_some()).collect();
            figures.consumed += ok.len();
            if ok.len() > 1 {
                out.push(anomaly(
                    "consumed-twice",
                    format!(
                        "{q}: token {token} consumed {} times:\n    {}",
                        ok.len(),
                        ok.iter()
                            .map(|t| describe(t))
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    ),
                    ok.iter().map(|t| t.id).collect(),
                ));
            }
            let Some(first) = ok.first() else {
                continue;
            };
            let Call::Take { name, .. } = &first.call else {
                continue;
            };
            match enqueues.get(token) {
                None => out.push(anomaly(
                    "phantom-item",
                    format!(
                        "{q}/{name} was consumed holding token {token}, which no enqueue of \
                         {q} used: {}",
                        describe(first)
                    ),
                    vec![first.id],
                )),
                Some(e) if matches!(e.outcome, Outcome::Failed(_) | Outcome::NotSent { .. }) => out
                    .push(anomaly(
                        "phantom-item",
                        format!(
                            "{q}/{name} was consumed, made by an enqueue reported as not \
                             applied:\n    {}\n    {}",
                            describe(e),
                            describe(first)
                        ),
                        vec![e.id, first.id],
                    )),
                Some(e) => {
                    if let Some(Reply::Created { name: acked, .. }) = e.ok() {
                        if acked != name {
                            out.push(anomaly(
                                "wrong-name",
                                format!(
                                    "token {token} was enqueued as {q}/{acked} and consumed as \
                                     {q}/{name}:\n    {}\n    {}",
                                    describe(e),
                                    describe(first)
                                ),
                                vec![e.id, first.id],
                            ));
                        }
                    }
                }
            }
        }

        // Takes refused with NoNode: some other take deleted the item.
        for (name, ts) in &takes_by_name {
            for t in ts {
                if !matches!(t.outcome, Outcome::Failed(ServerError::NoNode)) {
                    continue;
                }
                let other = ts.iter().any(|o| {
                    o.id != t.id && matches!(o.outcome, Outcome::Ok(_) | Outcome::Unknown { .. })
                });
                if !other {
                    out.push(anomaly(
                        "vanished",
                        format!(
                            "{q}/{name} was gone when a consumer deleted it, though no other \
                             take deleted it: {}",
                            describe(t)
                        ),
                        vec![t.id],
                    ));
                }
            }
        }

        // The end: the members agree, and every acknowledged item was consumed.
        let Some(first) = readable.first() else {
            // No final state: the durability check reports it; whether items were lost
            // cannot be told.
            continue;
        };
        let empty = BTreeMap::new();
        let left = first.queues.get(queue).unwrap_or(&empty);
        figures.left += left.len();
        for m in &readable[1..] {
            let other = m.queues.get(queue).unwrap_or(&empty);
            if other != left {
                out.push(anomaly(
                    "replicas-diverge",
                    format!(
                        "{q}: member {} lists {:?}, member {} lists {:?}",
                        first.member,
                        left.keys().collect::<Vec<_>>(),
                        m.member,
                        other.keys().collect::<Vec<_>>()
                    ),
                    vec![],
                ));
            }
        }
        for (name, token) in left {
            out.push(anomaly(
                "not-drained",
                format!(
                    "{q}/{name} (token {token}) is still queued after the final drain{}",
                    enqueues
                        .get(token)
                        .map(|e| format!(": {}", describe(e)))
                        .unwrap_or_default()
                ),
                enqueues.get(token).map(|e| vec![e.id]).unwrap_or_default(),
            ));
        }
        let left_tokens: std::collections::HashSet<u64> = left.values().copied().collect();
        let mut lost: Vec<&&Op> = enqueues
            .iter()
            .filter(|(token, e)| {
                e.ok().is_some()
                    && !left_tokens.contains(token)
                    && !takes.get(token).is_some_and(|ts| {
                        ts.iter()
                            .any(|t| matches!(t.outcome, Outcome::Ok(_) | Outcome::Unknown { .. }))
                    })
            })
            .map(|(_, e)| e)
            .collect();
        lost.sort_by_key(|e| e.id);
        figures.lost += lost.len();
        for e in lost {
            out.push(anomaly(
                "lost-item",
                format!(
                    "an acknowledged item was never consumed and is not in {q} at the end: {}",
                    describe(e)
                ),
                vec![e.id],
            ));
        }
    }
    (figures, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};
    use crate::history::{FinalState, MemberState};

    fn enqueue(b: &mut Builder, p: u32, t: (u64, u64), token: u64, seq: Option<i64>) -> usize {
        let outcome = match seq {
            Some(seq) => Outcome::Ok(Reply::Created {
                name: format!("qn-{seq:010}"),
                seq,
                czxid: 0x100 + seq,
            }),
            None => Outcome::Unknown {
                reason: "lost".into(),
            },
        };
        b.op(
            p,
            Call::Enqueue {
                queue: "/q".into(),
                token,
            },
            t.0,
            seq.map(|_| t.1),
            outcome,
        )
    }

    fn take(b: &mut Builder, p: u32, t: (u64, u64), seq: i64, token: u64, outcome: Outcome) {
        let done = (!matches!(outcome, Outcome::Unknown { .. })).then_some(t.1);
        b.op(
            p,
            Call::Take {
                queue: "/q".into(),
                name: format!("qn-{seq:010}"),
                token,
            },
            t.0,
            done,
            outcome,
        );
    }

    fn history(b: Builder, left: &[(i64, u64)]) -> History {
        let mut h = b.build();
        h.queues = vec!["/q".into()];
        h.final_state = Some(FinalState {
            members: vec![MemberState {
                queues: [(
                    "/q".to_string(),
                    left.iter()
                        .map(|(s, t)| (format!("qn-{s:010}"), *t))
                        .collect(),
                )]
                .into(),
                ..Default::default()
            }],
        });
        h
    }

    #[test]
    fn every_item_consumed_once_is_clean() {
        let mut b = Builder::new();
        enqueue(&mut b, 1, (0, 10), 1, Some(0));
        enqueue(&mut b, 2, (0, 10), 2, Some(1));
        // An enqueue with an unknown outcome, never seen again: fine.
        enqueue(&mut b, 2, (20, 0), 3, None);
        take(&mut b, 3, (30, 40), 0, 1, Outcome::Ok(Reply::Deleted));
        // A consumer lost the race for item 1, then the drain took it.
        take(&mut b, 1, (30, 40), 1, 2, Outcome::Ok(Reply::Deleted));
        take(
            &mut b,
            3,
            (41, 45),
            1,
            2,
            Outcome::Failed(ServerError::NoNode),
        );
        let (f, a) = check(&history(b, &[]));
        assert!(a.is_empty(), "{a:?}");
        assert_eq!((f.enqueued, f.consumed, f.lost), (2, 2, 0));
    }

    #[test]
    fn an_item_consumed_twice_or_never_is_reported() {
        let mut b = Builder::new();
        enqueue(&mut b, 1, (0, 10), 1, Some(0));
        enqueue(&mut b, 1, (0, 10), 2, Some(1));
        take(&mut b, 2, (30, 40), 0, 1, Outcome::Ok(Reply::Deleted));
        take(&mut b, 3, (30, 40), 0, 1, Outcome::Ok(Reply::Deleted));
        let (f, a) = check(&history(b, &[]));
        assert_eq!(kinds(&a), vec!["consumed-twice", "lost-item"], "{a:?}");
        assert_eq!(f.lost, 1);
    }

    #[test]
    fn an_unknown_take_may_have_consumed_an_item_and_a_left_item_is_not_drained() {
        let mut b = Builder::new();
        enqueue(&mut b, 1, (0, 10), 1, Some(0));
        enqueue(&mut b, 1, (0, 10), 2, Some(1));
        take(
            &mut b,
            2,
            (30, 40),
            0,
            1,
            Outcome::Unknown {
                reason: "lost".into(),
            },
        );
        let (f, a) = check(&history(b, &[(1, 2)]));
        assert_eq!(kinds(&a), vec!["not-drained"], "{a:?}");
        assert_eq!((f.lost, f.left), (0, 1));
    }

    #[test]
    fn phantom_items_wrong_names_and_vanished_items_are_reported() {
        let mut b = Builder::new();
        enqueue(&mut b, 1, (0, 10), 1, Some(0));
        b.op(
            1,
            Call::Enqueue {
                queue: "/q".into(),
                token: 2,
            },
            0,
            Some(10),
            Outcome::Failed(ServerError::NoNode),
        );
        take(&mut b, 2, (30, 40), 5, 1, Outcome::Ok(Reply::Deleted));
        take(&mut b, 2, (30, 40), 6, 2, Outcome::Ok(Reply::Deleted));
        take(&mut b, 2, (30, 40), 7, 99, Outcome::Ok(Reply::Deleted));
        take(
            &mut b,
            2,
            (50, 60),
            8,
            98,
            Outcome::Failed(ServerError::NoNode),
        );
        let (_, a) = check(&history(b, &[]));
        let mut k = kinds(&a);
        k.sort();
        assert_eq!(
            k,
            vec!["phantom-item", "phantom-item", "vanished", "wrong-name"]
        );
    }
}
