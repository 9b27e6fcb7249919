//! Acknowledged writes survive: after every fault is healed, each member holds every write a
//! client saw acknowledged, and the members agree with each other.
//!
//! - A register's final version is at least the version of every acknowledged write to it
//!   (versions only grow, so an acknowledged write at a higher version than the final one was
//!   lost), and when the final value is an acknowledged write's value, its version is that
//!   write's.
//! - Every acknowledged sequential create is in its parent's final listing, under the name it
//!   was acknowledged with, holding its token.
//! - Every member that could be read holds the same registers and children; a member that
//!   could not be read at all is an anomaly too (it did not come back after the heal).
//! - K1: members whose whole tree was digested hold identical trees (paths, data, every Stat
//!   field), when read at the same zxid (the simulator) or after the workload ended (real
//!   members, where only the readers' own session transactions, which change no node, run).

use std::collections::BTreeMap;

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Reply};

/// The durability check's result.
#[derive(Debug, Clone, Default)]
pub struct Durability {
    /// Acknowledged writes looked for (register writes and creates).
    pub acked: usize,
    /// Acknowledged writes missing, counted once each (on any member).
    pub lost: usize,
    /// Members whose tree digest was compared with the first one's.
    pub trees_compared: usize,
    pub anomalies: Vec<Anomaly>,
}

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "durability",
        kind: kind.into(),
        detail,
        ops,
    }
}

/// Checks `history.final_state`; with none, reports that the final state is missing.
pub fn check(history: &History) -> Durability {
    let mut out = Durability::default();
    let Some(fin) = &history.final_state else {
        out.anomalies.push(anomaly(
            "no-final-state",
            "the run ended without reading the final state".into(),
            vec![],
        ));
        return out;
    };
    let readable: Vec<_> = fin.members.iter().filter(|m| m.error.is_none()).collect();
    for m in &fin.members {
        if let Some(e) = &m.error {
            out.anomalies.push(anomaly(
                "member-unreadable",
                format!("member {} could not be read at the end: {e}", m.member),
                vec![],
            ));
        }
    }
    if readable.is_empty() {
        out.anomalies.push(anomaly(
            "no-final-state",
            "no member could be read at the end".into(),
            vec![],
        ));
        return out;
    }
    // The members agree.
    let first = readable[0];
    for m in &readable[1..] {
        if m.registers != first.registers || m.children != first.children {
            let regs: Vec<String> = first
                .registers
                .iter()
                .filter(|(k, v)| m.registers.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {v:?} vs {:?}", m.registers.get(k)))
                .collect();
            let kids: Vec<String> = first
                .children
                .iter()
                .filter(|(k, v)| m.children.get(*k) != Some(v))
                .map(|(k, v)| {
                    let other = m.children.get(k).cloned().unwrap_or_default();
                    let only_a: Vec<_> = v.keys().filter(|n| !other.contains_key(*n)).collect();
                    let only_b: Vec<_> = other.keys().filter(|n| !v.contains_key(*n)).collect();
                    format!(
                        "{k}: only on {}: {only_a:?}; only on {}: {only_b:?}",
                        first.member, m.member
                    )
                })
                .collect();
            out.anomalies.push(anomaly(
                "replicas-diverge",
                format!(
                    "members {} and {} differ: registers {regs:?}; children {kids:?}",
                    first.member, m.member
                ),
                vec![],
            ));
        }
    }

    // K1: whole trees.
    let digested: Vec<_> = readable
        .iter()
        .filter_map(|m| m.tree.map(|t| (m.member, t)))
        .collect();
    if let Some(&(first, a)) = digested.first() {
        for &(member, b) in &digested[1..] {
            if a.zxid.is_some() && b.zxid.is_some() && a.zxid != b.zxid {
                continue;
            }
            out.trees_compared += 1;
            if (a.nodes, a.digest) != (b.nodes, b.digest) {
                out.anomalies.push(anomaly(
                    "tree-digests-differ",
                    format!(
                        "members {first} and {member} hold different trees: {} nodes, digest \
                         {:#018x} (zxid {:?}) vs {} nodes, digest {:#018x} (zxid {:?})",
                        a.nodes, a.digest, a.zxid, b.nodes, b.digest, b.zxid
                    ),
                    vec![],
                ));
            }
        }
    }

    // Registers: the highest acknowledged version per key, and each acknowledged value.
    let mut acked_versions: BTreeMap<&str, Vec<(i32, u64, usize)>> = BTreeMap::new();
    for op in &history.ops {
        if let (
            Call::Write { key, value } | Call::Cas { key, value, .. },
            Some(Reply::Written { version, .. }),
        ) = (&op.call, op.ok())
        {
            acked_versions
                .entry(key)
                .or_default()
                .push((*version, *value, op.id));
        }
    }
    for (key, acked) in &acked_versions {
        out.acked += acked.len();
        let mut lost_here = 0;
        for m in &readable {
            let Some(fin) = m.registers.get(*key) else {
                out.anomalies.push(anomaly(
                    "lost-register",
                    format!("{key} is missing on member {}", m.member),
                    vec![],
                ));
                lost_here = lost_here.max(acked.len());
                continue;
            };
            let lost: Vec<usize> = acked
                .iter()
                .filter(|(v, _, _)| *v > fin.version)
                .map(|(_, _, id)| *id)
                .collect();
            if !lost.is_empty() {
                out.anomalies.push(anomaly(
                    "lost-write",
                    format!(
                        "{key} ends at version {} on member {} but {} acknowledged writes have \
                         higher versions, e.g. {}",
                        fin.version,
                        m.member,
                        lost.len(),
                        describe(&history.ops[lost[0]])
                    ),
                    lost.clone(),
                ));
            }
            lost_here = lost_here.max(lost.len());
            if let Some((v, _, id)) = acked.iter().find(|(_, val, _)| *val == fin.value) {
                if *v != fin.version {
                    out.anomalies.push(anomaly(
                        "final-version",
                        format!(
                            "{key} ends with value {} at version {} on member {}, but that \
                             write was acknowledged at version {v}: {}",
                            fin.value,
                            fin.version,
                            m.member,
                            describe(&history.ops[*id])
                        ),
                        vec![*id],
                    ));
                }
            }
        }
        out.lost += lost_here;
    }

    // Sequential creates: each acknowledged name holds its token, on every member.
    for op in &history.ops {
        let (Call::CreateSeq { parent, token }, Some(Reply::Created { name, .. })) =
            (&op.call, op.ok())
        else {
            continue;
        };
        out.acked += 1;
        let mut lost = false;
        for m in &readable {
            let held = m.children.get(parent).and_then(|c| c.get(name));
            match held {
                Some(t) if t == token => {}
                Some(t) => out.anomalies.push(anomaly(
                    "create-overwritten",
                    format!(
                        "{parent}/{name} holds token {t} on member {}, not the token of the \
                         acknowledged create {}",
                        m.member,
                        describe(op)
                    ),
                    vec![op.id],
                )),
                None => {
                    lost = true;
                    out.anomalies.push(anomaly(
                        "lost-create",
                        format!(
                            "{parent}/{name} is missing on member {}: {}",
                            m.member,
                            describe(op)
                        ),
                        vec![op.id],
                    ));
                }
            }
        }
        if lost {
            out.lost += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{self, Builder};
    use crate::history::{FinalState, MemberState};

    fn member(i: usize, value: u64, version: i32, kids: &[(&str, u64)]) -> MemberState {
        testutil::member(i, value, version, 0, kids)
    }

    fn history(members: Vec<MemberState>) -> History {
        let mut b = Builder::new();
        b.write(1, (0, 10), 5, 1, 0x100);
        b.write(1, (20, 30), 6, 2, 0x101);
        b.create(2, (0, 10), 77, 0, 0x102);
        let mut h = b.build();
        h.final_state = Some(FinalState { members });
        h
    }

    #[test]
    fn trees_that_differ_at_one_zxid_are_reported() {
        use crate::history::TreeDigest;
        use rookery_proto::records::Stat;
        let stat = Stat::default();
        let digest = |zxid, data: &[u8]| Some(TreeDigest::of(zxid, [("/a", data, &stat)]));
        let with = |i, tree| MemberState {
            tree,
            ..member(i, 6, 2, &[("c0000000000", 77)])
        };
        let kinds = |members| -> Vec<String> {
            let d = check(&history(members));
            d.anomalies.into_iter().map(|a| a.kind).collect()
        };
        let same = vec![
            with(0, digest(Some(9), b"x")),
            with(1, digest(Some(9), b"x")),
        ];
        assert_eq!(kinds(same), Vec::<String>::new());
        let differ = vec![
            with(0, digest(Some(9), b"x")),
            with(1, digest(Some(9), b"y")),
        ];
        assert_eq!(kinds(differ), vec!["tree-digests-differ"]);
        // Read at other zxids: not comparable. Real members (no zxid): compared.
        let apart = vec![
            with(0, digest(Some(9), b"x")),
            with(1, digest(Some(10), b"y")),
        ];
        assert_eq!(kinds(apart), Vec::<String>::new());
        let real = vec![with(0, digest(None, b"x")), with(1, digest(None, b"y"))];
        assert_eq!(kinds(real), vec!["tree-digests-differ"]);
        // The order nodes come in does not matter; /zookeeper is not part of the tree.
        let a = TreeDigest::of(None, [("/a", &b"1"[..], &stat), ("/b", b"2", &stat)]);
        let b = TreeDigest::of(
            None,
            [
                ("/zookeeper", &b""[..], &stat),
                ("/b", b"2", &stat),
                ("/a", b"1", &stat),
            ],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn every_acknowledged_write_present_everywhere_is_clean() {
        let h = history(vec![
            member(0, 6, 2, &[("c0000000000", 77)]),
            member(1, 6, 2, &[("c0000000000", 77)]),
        ]);
        let d = check(&h);
        assert!(d.anomalies.is_empty(), "{:?}", d.anomalies);
        assert_eq!((d.acked, d.lost), (3, 0));
    }

    #[test]
    fn a_register_behind_an_acknowledged_version_lost_writes() {
        let d = check(&history(vec![member(0, 5, 1, &[("c0000000000", 77)])]));
        assert_eq!(d.lost, 1);
        assert_eq!(d.anomalies[0].kind, "lost-write");
    }

    #[test]
    fn a_missing_create_is_lost_and_a_diverging_member_is_reported() {
        let d = check(&history(vec![
            member(0, 6, 2, &[("c0000000000", 77)]),
            member(1, 6, 2, &[]),
        ]));
        assert_eq!(d.lost, 1);
        let kinds = crate::checker::testutil::kinds(&d.anomalies);
        assert!(kinds.contains(&"replicas-diverge"), "{kinds:?}");
        assert!(kinds.contains(&"lost-create"), "{kinds:?}");
    }

    #[test]
    fn an_acknowledged_value_at_another_version_is_reported() {
        let d = check(&history(vec![member(0, 6, 3, &[("c0000000000", 77)])]));
        assert_eq!(d.anomalies[0].kind, "final-version");
    }

    #[test]
    fn no_final_state_is_an_anomaly() {
        let mut h = history(vec![]);
        h.final_state = None;
        assert_eq!(check(&h).anomalies[0].kind, "no-final-state");
    }
}
