//! Multi-key transactions (J4, in the form the client API allows): a *pair* of registers is
//! only ever written by one `multi` (check the first key's version, `setData` of every key to
//! one unique value), and read by `sync` then one `multiRead` of `getData` on every key. ZooKeeper
//! has no read-write transactions and `multi` returns no reads, so Elle's list-append does not
//! fit; instead the pair is an invariant and a register:
//!
//! - **torn-read**: a pair read shows every key at one value, version and mzxid (one `multi`
//!   is one transaction, one zxid; a `multiRead` is served at one point of the member's applied
//!   history, so it sees all of a transaction or none of it). Before the first pair write the
//!   keys are at version 0 with the mzxids of their separate creates.
//! - **torn-write**: a pair write's reply shows every key at one version and mzxid.
//! - **phantom-value** / **value-identity**: every value read is the initial one or one a pair
//!   write wrote, and each value is seen at one version and mzxid.
//! - **not-linearizable**: pair reads (after `sync`) and pair writes form a linearizable
//!   compare-and-set register (the linearizability checker's search, on the first key's value
//!   and version).
//! - **torn-final** / **lost-write**: at the end every member holds one state on every key,
//!   at a version at least that of every acknowledged pair write.

use std::collections::BTreeMap;

use crate::checker::linearizable::{check_register, Budget, KeyVerdict};
use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, RegisterState, Reply, INITIAL_VALUE};

/// What the multi check found.
#[derive(Debug, Clone, Default)]
pub struct Multi {
    /// One linearizability verdict per pair, named `k0+k1`.
    pub verdicts: Vec<KeyVerdict>,
    /// Acknowledged pair writes looked for at the end.
    pub acked: usize,
    /// Acknowledged pair writes missing at the end.
    pub lost: usize,
    /// Pair reads checked for tearing.
    pub reads: usize,
    pub anomalies: Vec<Anomaly>,
}

fn anomaly(kind: &str, detail: String, ops: Vec<usize>) -> Anomaly {
    Anomaly {
        checker: "multi",
        kind: kind.into(),
        detail,
        ops,
    }
}

/// Whether `states` are one state of the pair: one value and version, and (once a pair write
/// made them) one mzxid. The setup creates the keys one by one, so at version 0 each has the
/// mzxid of its own create.
fn one_state(states: &[RegisterState]) -> bool {
    states.windows(2).all(|w| {
        let (a, b) = (w[0], w[1]);
        a.value == b.value && a.version == b.version && (a.version == 0 || a.mzxid == b.mzxid)
    })
}

/// Runs the multi checks.
pub fn check(history: &History, budget: Budget) -> Multi {
    let mut out = Multi::default();
    for keys in &history.pairs {
        let Some(first_key) = keys.first() else {
            continue;
        };
        let name = keys.join("+");
        let ours = |k: &Vec<String>| k == keys;
        // value -> (version, mzxid, the op that first showed it)
        let mut seen: BTreeMap<u64, (i32, i64, usize)> = BTreeMap::new();
        let mut written: BTreeMap<u64, usize> = BTreeMap::new();
        let mut max_acked: Option<(i32, usize)> = None;
        for op in &history.ops {
            if let Call::PairCas { keys: k, value, .. } = &op.call {
                if ours(k) {
                    written.insert(*value, op.id);
                }
            }
        }
        for op in &history.ops {
            let observed = match (&op.call, op.ok()) {
                (Call::PairRead { keys: k }, Some(Reply::Pair { reads })) if ours(k) => {
                    out.reads += 1;
                    if reads.len() != keys.len() || !one_state(reads) {
                        out.anomalies.push(anomaly(
                            "torn-read",
                            format!("{name} read as {reads:?}, not one state: {}", describe(op)),
                            vec![op.id],
                        ));
                        continue;
                    }
                    reads.first().map(|r| (r.value, r.version, r.mzxid))
                }
                (
                    Call::PairCas { keys: k, value, .. },
                    Some(Reply::PairWritten { versions, mzxids }),
                ) if ours(k) => {
                    out.acked += 1;
                    let whole = versions.len() == keys.len()
                        && mzxids.len() == keys.len()
                        && versions.windows(2).all(|w| w[0] == w[1])
                        && mzxids.windows(2).all(|w| w[0] == w[1]);
                    if !whole {
                        out.anomalies.push(anomaly(
                            "torn-write",
                            format!(
                                "{name} written at versions {versions:?}, mzxids {mzxids:?}: {}",
                                describe(op)
                            ),
                            vec![op.id],
                        ));
                        continue;
                    }
                    let (Some(v), Some(z)) = (versions.first(), mzxids.first()) else {
                        continue;
                    };
                    if max_acked.is_none_or(|(m, _)| *v > m) {
                        max_acked = Some((*v, op.id));
                    }
                    Some((*value, *v, *z))
                }
                _ => None,
            };
            let Some((value, version, mzxid)) = observed else {
                continue;
            };
            let initial = value == INITIAL_VALUE && version == 0;
            if !initial && !written.contains_key(&value) {
                out.anomalies.push(anomaly(
                    "phantom-value",
                    format!("{name} read a value no pair write wrote: {}", describe(op)),
                    vec![op.id],
                ));
                continue;
            }
            match seen.get(&value) {
                None => {
                    seen.insert(value, (version, mzxid, op.id));
                }
                Some(&(v, z, first)) if (v, z) != (version, mzxid) => out.anomalies.push(anomaly(
                    "value-identity",
                    format!(
                        "{name} value {value} seen at version {v} mzxid {z:#x} and at \
                             version {version} mzxid {mzxid:#x}:\n    {}\n    {}",
                        describe(&history.ops[first]),
                        describe(op)
                    ),
                    vec![first, op.id],
                )),
                Some(_) => {}
            }
        }

        let (verdict, not_lin) = check_register(history, first_key, &name, "multi", budget);
        out.verdicts.push(verdict);
        out.anomalies.extend(not_lin);

        // The end.
        let Some(fin) = &history.final_state else {
            continue;
        };
        let mut lost = false;
        for m in fin.members.iter().filter(|m| m.error.is_none()) {
            let states: Vec<Option<&RegisterState>> =
                keys.iter().map(|k| m.registers.get(k)).collect();
            let Some(states) = states.into_iter().collect::<Option<Vec<_>>>() else {
                out.anomalies.push(anomaly(
                    "torn-final",
                    format!("member {} has not every key of {name}", m.member),
                    vec![],
                ));
                continue;
            };
            let states: Vec<RegisterState> = states.into_iter().copied().collect();
            if !one_state(&states) {
                out.anomalies.push(anomaly(
                    "torn-final",
                    format!("member {} ends with {name} at {states:?}", m.member),
                    vec![],
                ));
            }
            if let (Some((v, id)), Some(s)) = (max_acked, states.first()) {
                if s.version < v {
                    lost = true;
                    out.anomalies.push(anomaly(
                        "lost-write",
                        format!(
                            "{name} ends at version {} on member {}, below an acknowledged \
                             pair write: {}",
                            s.version,
                            m.member,
                            describe(&history.ops[id])
                        ),
                        vec![id],
                    ));
                }
            }
        }
        if lost {
            // Every acknowledged write above the lowest final version is lost.
            let lowest = fin
                .members
                .iter()
                .filter_map(|m| m.registers.get(first_key))
                .map(|s| s.version)
                .min()
                .unwrap_or(0);
            out.lost += history
                .ops
                .iter()
                .filter(|o| matches!(&o.call, Call::PairCas { keys: k, .. } if ours(k)))
                .filter(|o| {
                    matches!(o.ok(), Some(Reply::PairWritten { versions, .. })
                        if versions.first().is_some_and(|v| *v > lowest))
                })
                .count();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linearizable::Verdict;
    use crate::checker::testutil::{kinds, Builder};
    use crate::history::{FinalState, MemberState, Outcome, ServerError};

    const KEYS: [&str; 2] = ["/a", "/b"];

    fn keys() -> Vec<String> {
        KEYS.iter().map(|k| k.to_string()).collect()
    }

    fn reg(value: u64, version: i32, mzxid: i64) -> RegisterState {
        RegisterState {
            value,
            version,
            mzxid,
        }
    }

    fn write(b: &mut Builder, p: u32, t: (u64, u64), ev: i32, value: u64, mzxid: i64) {
        b.op(
            p,
            Call::PairCas {
                keys: keys(),
                expected_version: ev,
                value,
            },
            t.0,
            Some(t.1),
            Outcome::Ok(Reply::PairWritten {
                versions: vec![ev + 1; 2],
                mzxids: vec![mzxid; 2],
            }),
        );
    }

    fn read(b: &mut Builder, p: u32, t: (u64, u64), reads: Vec<RegisterState>) {
        b.op(
            p,
            Call::PairRead { keys: keys() },
            t.0,
            Some(t.1),
            Outcome::Ok(Reply::Pair { reads }),
        );
    }

    fn history(b: Builder, end: Vec<RegisterState>) -> History {
        let mut h = b.build();
        h.pairs = vec![keys()];
        h.final_state = Some(FinalState {
            members: vec![MemberState {
                registers: KEYS.iter().map(|k| k.to_string()).zip(end).collect(),
                ..Default::default()
            }],
        });
        h
    }

    #[test]
    fn whole_transactions_read_whole_are_clean() {
        let mut b = Builder::new();
        write(&mut b, 1, (0, 10), 0, 5, 0x10);
        read(&mut b, 2, (20, 30), vec![reg(5, 1, 0x10); 2]);
        b.op(
            2,
            Call::PairCas {
                keys: keys(),
                expected_version: 0,
                value: 6,
            },
            40,
            Some(50),
            Outcome::Failed(ServerError::BadVersion),
        );
        write(&mut b, 1, (60, 70), 1, 7, 0x11);
        let m = check(&history(b, vec![reg(7, 2, 0x11); 2]), Budget::default());
        assert!(m.anomalies.is_empty(), "{:?}", m.anomalies);
        assert_eq!((m.acked, m.lost, m.reads), (2, 0, 1));
        assert_eq!(m.verdicts[0].verdict, Verdict::Linearizable);
        assert_eq!(m.verdicts[0].key, "/a+/b");
    }

    #[test]
    fn the_initial_state_has_one_mzxid_per_create() {
        let mut b = Builder::new();
        read(&mut b, 2, (20, 30), vec![reg(0, 0, 0x2), reg(0, 0, 0x3)]);
        let end = vec![reg(0, 0, 0x2), reg(0, 0, 0x3)];
        let m = check(&history(b, end), Budget::default());
        assert!(m.anomalies.is_empty(), "{:?}", m.anomalies);
    }

    #[test]
    fn half_a_transaction_is_torn() {
        let mut b = Builder::new();
        write(&mut b, 1, (0, 10), 0, 5, 0x10);
        read(&mut b, 2, (20, 30), vec![reg(5, 1, 0x10), reg(0, 0, 0x2)]);
        b.op(
            1,
            Call::PairCas {
                keys: keys(),
                expected_version: 1,
                value: 6,
            },
            40,
            Some(50),
            Outcome::Ok(Reply::PairWritten {
                versions: vec![2, 2],
                mzxids: vec![0x11, 0x12],
            }),
        );
        let m = check(
            &history(b, vec![reg(6, 2, 0x11), reg(5, 1, 0x10)]),
            Budget::default(),
        );
        assert_eq!(
            kinds(&m.anomalies),
            vec!["torn-read", "torn-write", "torn-final"]
        );
    }

    #[test]
    fn a_stale_pair_read_and_a_lost_pair_write_are_reported() {
        let mut b = Builder::new();
        write(&mut b, 1, (0, 10), 0, 5, 0x10);
        read(&mut b, 2, (20, 30), vec![reg(0, 0, 0x2); 2]);
        let m = check(&history(b, vec![reg(0, 0, 0x2); 2]), Budget::default());
        assert_eq!(kinds(&m.anomalies), vec!["not-linearizable", "lost-write"]);
        assert_eq!(m.lost, 1);
    }

    #[test]
    fn a_value_nobody_wrote_is_a_phantom() {
        let mut b = Builder::new();
        read(&mut b, 2, (20, 30), vec![reg(9, 1, 0x10); 2]);
        let m = check(&history(b, vec![reg(0, 0, 0x2); 2]), Budget::default());
        assert!(kinds(&m.anomalies).contains(&"phantom-value"));
    }
}
