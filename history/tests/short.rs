//! The short history run CI does: a proxied 3-member ensemble, 4 sessions for 20 s over 3
//! registers, a sequential parent, a queue, a `multi` pair and ephemerals (watching the
//! registers), and the ephemeral slot's closed and cut-off sessions, with faults drawn from a
//! seeded schedule of every kind the nemesis knows, and (C1) member 1's and member 2's clocks
//! skewed under libfaketime when it is installed; then every checker. A failure prints the seed
//! (`HISTORY_SEED=<seed>` repeats the schedule), the anomalies, where the history was written,
//! and the members' logs.
//!
//! Needs the `rookery` binary: `cargo build -p rookery` first.

use rookery_history::nemesis::{ClockSkew, Fault};
use rookery_history::run::{run, RunConfig};

fn seed() -> u64 {
    match std::env::var("HISTORY_SEED") {
        Ok(s) => s.parse().expect("HISTORY_SEED must be a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_with_faults_finds_no_anomaly() -> anyhow::Result<()> {
    let seed = seed();
    eprintln!("history seed {seed} (HISTORY_SEED={seed} repeats it)");
    let mut cfg = RunConfig::new(seed, 20_000);
    cfg.nemesis.faults = Fault::ALL.to_vec();
    // Shorter quiet times than a long run's: 3 to 5 faults within the 17 s fault window.
    cfg.nemesis.quiet_ms = (500, 1_500);
    // Skewed clocks cost no time: on whenever libfaketime is there (.ci/run installs it).
    if rookery_testkit::faketime::library().is_some() {
        cfg.clock_skew = ClockSkew::parse(ClockSkew::DEFAULT).expect("the default skew");
    } else {
        eprintln!("libfaketime is not installed (apt-get install faketime): no clock skew");
    }
    let result = run(&cfg).await?;
    eprintln!("{}", result.summary());
    assert!(result.clean(), "{}", result.failure_report());
    // The run did something worth checking.
    let ok: usize = result.report.ops.values().map(|c| c.ok).sum();
    assert!(
        ok > 100,
        "only {ok} operations succeeded\n{}",
        result.failure_report()
    );
    assert!(
        !result.faults_by_kind().is_empty(),
        "no fault was injected\n{}",
        result.failure_report()
    );
    // K1: every member's whole tree was digested and compared.
    assert_eq!(
        result.report.trees_compared,
        2,
        "{}",
        result.failure_report()
    );
    teeth::assert_caught(&result.history);
    Ok(())
}

mod teeth {
    //! The checkers must reject a real history once it is made wrong: each mutation below
    //! plants one anomaly of a known kind into the clean history of a real run.

    use rookery_history::checker::{check_all, Budget};
    use rookery_history::history::{
        Call, Delivery, EphemeralNode, History, Outcome, Reply, INITIAL_VALUE,
    };

    /// (what, mutated history, the anomaly kind that must be found).
    pub(super) fn mutants(h: &History) -> Vec<(&'static str, History, &'static str)> {
        let mut out = Vec::new();
        let fin = h.final_state.as_ref().expect("a final state");
        let key = h.registers[0].clone();

        // A final sync-read on a member sees the initial value again: not linearizable, since
        // acknowledged writes completed before it was invoked.
        let mut m = h.clone();
        if let Some(op) =
            m.ops.iter_mut().rev().find(|o| {
                matches!(&o.call, Call::SyncRead { key: k } if *k == key) && o.ok().is_some()
            })
        {
            let mzxid = match op.ok() {
                Some(Reply::Read { mzxid, .. }) => *mzxid,
                _ => 0,
            };
            op.outcome = Outcome::Ok(Reply::Read {
                value: INITIAL_VALUE,
                version: 0,
                mzxid: mzxid.min(1),
            });
            out.push(("stale final sync-read", m, "not-linearizable"));
        }

        // A member's tree differs somewhere the workload does not read back (K1).
        let mut m = h.clone();
        if let Some(t) = m.final_state.as_mut().unwrap().members[1].tree.as_mut() {
            t.digest ^= 1;
            out.push(("a member's tree differs", m, "tree-digests-differ"));
        }

        // A member ends one version behind: the last acknowledged write is lost.
        let mut m = h.clone();
        let f = m.final_state.as_mut().unwrap();
        let max_acked = h
            .ops
            .iter()
            .filter(|o| matches!(&o.call, Call::Write { key: k, .. } | Call::Cas { key: k, .. } if *k == key))
            .filter_map(|o| match o.ok() {
                Some(Reply::Written { version, .. }) => Some(*version),
                _ => None,
            })
            .max()
            .expect("acknowledged writes");
        f.members[0].registers.get_mut(&key).unwrap().version = max_acked - 1;
        out.push(("a member a version behind", m, "lost-write"));
        assert!(fin.members[0].registers[&key].version >= max_acked);

        // Two acknowledged creates got the same name.
        let mut m = h.clone();
        let created: Vec<usize> = m
            .ops
            .iter()
            .filter(|o| matches!(o.call, Call::CreateSeq { .. }))
            .filter(|o| matches!(o.ok(), Some(Reply::Created { .. })))
            .map(|o| o.id)
            .take(2)
            .collect();
        let first = m.ops[created[0]].outcome.clone();
        m.ops[created[1]].outcome = first;
        out.push(("one sequential name twice", m, "duplicate-name"));

        // A session reads, after its own acknowledged write, the key's initial state.
        let mut m = h.clone();
        let initial_mzxid = h
            .ops
            .iter()
            .find_map(|o| match (&o.call, o.ok()) {
                (
                    Call::Read { key: k },
                    Some(Reply::Read {
                        version: 0, mzxid, ..
                    }),
                ) if *k == key => Some(*mzxid),
                _ => None,
            })
            .unwrap_or(1);
        let target = h.ops.iter().find_map(|w| {
            let Some(Reply::Written { .. }) = w.ok() else {
                return None;
            };
            if w.call.key() != key {
                return None;
            }
            h.ops.iter().find(|r| {
                r.process == w.process
                    && r.invoke_seq > w.invoke_seq
                    && matches!(&r.call, Call::Read { key: k } if *k == key)
                    && r.ok().is_some()
            })
        });
        if let Some(r) = target {
            m.ops[r.id].outcome = Outcome::Ok(Reply::Read {
                value: INITIAL_VALUE,
                version: 0,
                mzxid: initial_mzxid,
            });
            out.push(("a session not reading its own write", m, "zxid-went-back"));
        }

        // A watch event recorded after a reply of its session that already showed the change.
        if let Some((e, r)) = late_watch_target(h) {
            let mut m = h.clone();
            m.watches[e].seq = r + 1;
            out.push(("a watch event after the new data", m, "late"));
        }

        // One queue item consumed twice.
        let mut m = h.clone();
        if let Some(t) = m
            .ops
            .iter()
            .find(|o| matches!(o.call, Call::Take { .. }) && o.ok().is_some())
            .cloned()
        {
            let mut twice = t;
            twice.id = m.ops.len();
            twice.process += 1_000_000;
            m.ops.push(twice);
            out.push(("a queue item consumed twice", m, "consumed-twice"));
        }

        // The last count of the sequential parent reads it empty, after acknowledged creates.
        let mut m = h.clone();
        if let Some(op) = m
            .ops
            .iter_mut()
            .rev()
            .find(|o| matches!(o.ok(), Some(Reply::Count { children }) if *children > 0))
        {
            op.outcome = Outcome::Ok(Reply::Count { children: 0 });
            out.push(("a counter read low", m, "count-below"));
        }

        // A pair read sees the second key one transaction behind.
        let mut m = h.clone();
        if let Some(op) = m.ops.iter_mut().find(|o| {
            matches!(o.ok(), Some(Reply::Pair { reads }) if reads.len() == 2 && reads[0].version > 0)
        }) {
            if let Outcome::Ok(Reply::Pair { reads }) = &mut op.outcome {
                reads[1].version -= 1;
            }
            out.push(("half a multi seen", m, "torn-read"));
        }

        // A live session no longer finds its ephemeral node.
        let mut m = h.clone();
        let created: std::collections::HashSet<(i64, String)> = h
            .ops
            .iter()
            .filter_map(|o| match (&o.call, o.ok()) {
                (Call::CreateEphemeral { path, .. }, Some(_)) => Some((o.session_id, path.clone())),
                _ => None,
            })
            .collect();
        if let Some(op) = m.ops.iter_mut().rev().find(|o| match (&o.call, o.ok()) {
            (Call::OwnEphemeral { path }, Some(Reply::Exists { owner: Some(_) })) => {
                created.contains(&(o.session_id, path.clone()))
            }
            _ => false,
        }) {
            op.outcome = Outcome::Ok(Reply::Exists { owner: None });
            out.push(("an ephemeral of a live session gone", m, "vanished"));
        }

        // An ephemeral node outlives its session.
        let mut m = h.clone();
        let f = m.final_state.as_mut().unwrap();
        if let Some(parent) = h.ephemeral_parents.first() {
            f.members[0]
                .ephemerals
                .entry(parent.clone())
                .or_default()
                .insert(
                    "w0".into(),
                    EphemeralNode {
                        token: 1,
                        owner: h.ops[0].session_id,
                    },
                );
            out.push(("an ephemeral left at the end", m, "survived"));
        }
        out
    }

    /// A fired watch (its index in `watches`) and the completion sequence number of the first
    /// later reply of its session that showed the change.
    fn late_watch_target(h: &History) -> Option<(usize, u64)> {
        for (i, e) in h.watches.iter().enumerate() {
            if !matches!(e.delivery, Delivery::Fired { .. }) {
                continue;
            }
            let Some(s) = h
                .ops
                .iter()
                .find(|o| o.process == e.process && o.invoke_seq == e.set_by)
            else {
                continue;
            };
            let (v0, s_done) = match (s.ok(), s.complete_seq) {
                (Some(Reply::Read { version, .. } | Reply::Stat { version, .. }), Some(done)) => {
                    (*version, done)
                }
                _ => continue,
            };
            let r = h
                .ops
                .iter()
                .filter(|r| {
                    r.process == e.process
                        && r.invoke_seq > s.invoke_seq
                        && r.invoke_seq < e.seq
                        && r.call.key() == e.key
                        && matches!(r.call, Call::Read { .. } | Call::SyncRead { .. })
                        && r.complete_seq.is_some_and(|d| d > s_done)
                })
                .filter(|r| matches!(r.ok(), Some(Reply::Read { version, .. }) if *version > v0))
                .min_by_key(|r| r.invoke_seq);
            if let Some(done) = r.and_then(|r| r.complete_seq) {
                return Some((i, done));
            }
        }
        None
    }

    pub(super) fn assert_caught(h: &History) {
        let mutants = mutants(h);
        assert!(mutants.len() >= 8, "too few mutations applied");
        for (what, m, kind) in mutants {
            let started = std::time::Instant::now();
            let r = check_all(&m, Budget::default());
            eprintln!(
                "mutant {what:?}: {:?} in {:?}",
                r.anomaly_counts(),
                started.elapsed()
            );
            assert!(
                r.anomalies.iter().any(|a| a.kind == kind),
                "{what}: no {kind} anomaly found; found {:?}",
                r.anomaly_counts()
            );
        }
    }
}
