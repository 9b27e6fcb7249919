//! Sequential names (J5, ClickHouse's unique-ids parity): no two clients ever receive the same
//! sequential name, and the sequence is monotone per parent:
//!
//! - no name and no czxid is acknowledged twice;
//! - in czxid order (the order the ensemble applied the creates) the sequence numbers grow;
//! - in real time: a create acknowledged before another was invoked has the smaller number;
//! - in the final listing every child carries the token of a create invoked on that parent,
//!   no token appears twice (a create applied twice), and no create the server refused
//!   appears at all.

use std::collections::{BTreeMap, HashMap};

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Op, Outcome, Reply};

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "sequential",
        kind: kind.into(),
        detail,
        ops,
    }
}

/// Runs the sequential-name checks.
pub fn check(history: &History) -> Vec<Anomaly> {
    let mut out = Vec::new();
    // parent -> (op, name, seq, czxid) of acknowledged creates.
    let mut per_parent: BTreeMap<&str, Vec<(&Op, &str, i64, i64)>> = BTreeMap::new();
    for op in &history.ops {
        if let (Call::CreateSeq { parent, .. }, Some(Reply::Created { name, seq, czxid })) =
            (&op.call, op.ok())
        {
            per_parent
                .entry(parent)
                .or_default()
                .push((op, name, *seq, *czxid));
        }
    }
    for (parent, creates) in &per_parent {
        let mut by_name: HashMap<&str, &Op> = HashMap::new();
        let mut by_czxid: HashMap<i64, &Op> = HashMap::new();
        for (op, name, _, czxid) in creates {
            if let Some(first) = by_name.insert(name, op) {
                out.push(anomaly(
                    "duplicate-name",
                    format!(
                        "{parent}/{name} acknowledged twice:\n    {}\n    {}",
                        describe(first),
                        describe(op)
                    ),
                    vec![first.id, op.id],
                ));
            }
            if let Some(first) = by_czxid.insert(*czxid, op) {
                out.push(anomaly(
                    "duplicate-czxid",
                    format!(
                        "two creates under {parent} acknowledged with czxid {czxid:#x}:\n    {}\n    {}",
                        describe(first),
                        describe(op)
                    ),
                    vec![first.id, op.id],
                ));
            }
        }
        // Applied order: sequence numbers grow with czxid.
        let mut applied = creates.clone();
        applied.sort_by_key(|c| (c.3, c.2));
        for w in applied.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if a.3 != b.3 && a.2 >= b.2 {
                out.push(anomaly(
                    "seq-order",
                    format!(
                        "under {parent} a later create (czxid {:#x}) got a number not above an \
                         earlier one's (czxid {:#x}):\n    {}\n    {}",
                        b.3,
                        a.3,
                        describe(a.0),
                        describe(b.0)
                    ),
                    vec![a.0.id, b.0.id],
                ));
            }
        }
        // Real time: the largest number acknowledged before each invocation is below it.
        let mut by_completion: Vec<(u64, i64, usize)> = creates
            .iter()
            .filter_map(|(op, _, seq, _)| op.complete_ns.map(|t| (t, *seq, op.id)))
            .collect();
        by_completion.sort_unstable();
        let mut by_invocation: Vec<(u64, i64, usize)> = creates
            .iter()
            .map(|(op, _, seq, _)| (op.invoke_ns, *seq, op.id))
            .collect();
        by_invocation.sort_unstable();
        let mut done = 0;
        let mut max_before: Option<(i64, usize)> = None;
        for (invoked, seq, id) in by_invocation {
            while done < by_completion.len() && by_completion[done].0 < invoked {
                let (_, s, i) = by_completion[done];
                if max_before.is_none_or(|(m, _)| s > m) {
                    max_before = Some((s, i));
                }
                done += 1;
            }
            if let Some((m, earlier)) = max_before {
                if m >= seq {
                    out.push(anomaly(
                        "seq-realtime",
                        format!(
                            "under {parent} a create got number {seq} after another had been \
                             acknowledged with {m}:\n    {}\n    {}",
                            describe(&history.ops[earlier]),
                            describe(&history.ops[id])
                        ),
                        vec![earlier, id],
                    ));
                }
            }
        }
    }

    // The final listing: each token once, from an invocation on that parent the server did not
    // refuse. Members' listings are compared by the durability check; here the first
    // readable member's is used.
    let Some(member) = history
        .final_state
        .as_ref()
        .and_then(|f| f.members.iter().find(|m| m.error.is_none()))
    else {
        return out;
    };
    let mut invoked: HashMap<(&str, u64), &Op> = HashMap::new();
    for op in &history.ops {
        if let Call::CreateSeq { parent, token } = &op.call {
            invoked.insert((parent, *token), op);
        }
    }
    for (parent, children) in &member.children {
        let mut seen: HashMap<u64, &str> = HashMap::new();
        for (name, token) in children {
            match invoked.get(&(parent.as_str(), *token)) {
                None => out.push(anomaly(
                    "phantom-child",
                    format!(
                        "{parent}/{name} holds token {token}, which no create under {parent} used"
                    ),
                    vec![],
                )),
                Some(op) => {
                    if matches!(op.outcome, Outcome::Failed(_) | Outcome::NotSent { .. }) {
                        out.push(anomaly(
                            "failed-but-applied",
                            format!(
                                "{parent}/{name} exists, made by a create that was reported as \
                                 not applied: {}",
                                describe(op)
                            ),
                            vec![op.id],
                        ));
                    }
                    if let Some(Reply::Created { name: acked, .. }) = op.ok() {
                        if acked != name {
                            out.push(anomaly(
                                "token-elsewhere",
                                format!(
                                    "{parent}/{name} holds the token of a create acknowledged as \
                                     {acked}: {}",
                                    describe(op)
                                ),
                                vec![op.id],
                            ));
                        }
                    }
                }
            }
            if let Some(other) = seen.insert(*token, name) {
                out.push(anomaly(
                    "applied-twice",
                    format!("{parent}/{other} and {parent}/{name} both hold token {token}"),
                    invoked
                        .get(&(parent.as_str(), *token))
                        .map(|o| vec![o.id])
                        .unwrap_or_default(),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};
    use crate::history::{FinalState, MemberState, ServerError};

    #[test]
    fn distinct_growing_numbers_are_clean() {
        let mut b = Builder::new();
        b.create(1, (0, 10), 1, 0, 0x10);
        b.create(2, (5, 20), 2, 1, 0x11);
        b.create(1, (30, 40), 3, 2, 0x12);
        assert!(check(&b.build()).is_empty());
    }

    #[test]
    fn two_clients_receiving_one_name_are_reported() {
        let mut b = Builder::new();
        b.create(1, (0, 10), 1, 4, 0x10);
        b.create(2, (0, 10), 2, 4, 0x11);
        let k = check(&b.build());
        assert!(kinds(&k).contains(&"duplicate-name"), "{k:?}");
    }

    #[test]
    fn a_number_going_back_in_real_time_is_reported() {
        let mut b = Builder::new();
        // Acknowledged 5 at time 10; a create invoked at 20 gets 3.
        b.create(1, (0, 10), 1, 5, 0x10);
        b.create(2, (20, 30), 2, 3, 0x11);
        let k = check(&b.build());
        assert!(kinds(&k).contains(&"seq-realtime"), "{k:?}");
        assert!(kinds(&k).contains(&"seq-order"), "{k:?}");
    }

    #[test]
    fn concurrent_creates_may_complete_in_any_order() {
        let mut b = Builder::new();
        b.create(1, (0, 30), 1, 5, 0x11);
        b.create(2, (0, 10), 2, 4, 0x10);
        assert!(check(&b.build()).is_empty());
    }

    #[test]
    fn the_final_listing_must_not_hold_phantoms_twice_applied_or_refused_creates() {
        let mut b = Builder::new();
        b.create(1, (0, 10), 1, 0, 0x10);
        b.op(
            1,
            Call::CreateSeq {
                parent: "/s".into(),
                token: 2,
            },
            20,
            Some(30),
            Outcome::Failed(ServerError::NoNode),
        );
        let mut h = b.build();
        h.final_state = Some(FinalState {
            members: vec![MemberState {
                member: 0,
                children: [(
                    "/s".to_string(),
                    [
                        ("c0000000000".to_string(), 1),
                        ("c0000000001".to_string(), 1),
                        ("c0000000002".to_string(), 2),
                        ("c0000000003".to_string(), 99),
                    ]
                    .into(),
                )]
                .into(),
                ..Default::default()
            }],
        });
        let k = check(&h);
        for kind in [
            "applied-twice",
            "failed-but-applied",
            "phantom-child",
            "token-elsewhere",
        ] {
            assert!(kinds(&k).contains(&kind), "{kind} not in {k:?}");
        }
    }
}
