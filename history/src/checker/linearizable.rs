//! Linearizability: the Wing–Gong–Lowe search with memoization (as in porcupine and Knossos'
//! `wgl`), for any sequential [`Model`], and the register model of a znode read with
//! `sync`+`getData`, written with `setData` and compare-and-set with `setData(version)`.
//!
//! The check is P-compositional: a history of many independent znodes is linearizable when the
//! sub-history of each znode is, so [`check_registers`] runs one search per key.
//!
//! Indeterminate operations (an unknown outcome: a lost connection, an expired session, a
//! timeout) get a completion at +infinity: they may take effect at any point after their
//! invocation, or never (an operation that never takes effect is the same as one linearized
//! after everything else). The search succeeds once every operation with a known outcome is
//! linearized.
//!
//! The search is bounded ([`Budget`]): a history too large or too concurrent to decide within
//! it gives [`Verdict::Unknown`], never a hang.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use crate::checker::{describe, Anomaly};
use crate::history::{
    Call, History, Op, Outcome, Reply, ServerError, GARBAGE_VALUE, INITIAL_VALUE,
};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;

    fn init(&self) -> Self::State;

    /// The state after the operation `input` took effect in `state` and returned `output`
    /// (`None`: the outcome is unknown, so any output the operation could give is fine), or
    /// `None` if it cannot have: the model rejects this order.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation for the search.
#[derive(Debug, Clone)]
pub struct Entry<I, O> {
    /// The caller's id for it (a history op id), for reports.
    pub id: usize,
    pub call_ns: u64,
    /// `None`: it may take effect any time after `call_ns`, or never.
    pub return_ns: Option<u64>,
    pub input: I,
    /// `None`: any output the operation can give. An operation with no `return_ns` may still
    /// have a known output (what the rest of the history shows it returned, had it been
    /// applied).
    pub output: Option<O>,
}

/// How much one search may do.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Model steps plus backtracks.
    pub max_steps: u64,
    /// Memoized (linearized set, state) pairs, some 50 bytes each.
    pub max_cache: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_steps: 20_000_000,
            max_cache: 2_000_000,
        }
    }
}

/// Where a search got stuck, at its deepest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The most operations linearized in any order the search tried.
    pub linearized: usize,
    /// The operation (caller's id) whose completion no order could explain from there.
    pub op: usize,
    /// The operations (caller's ids) linearized in that order, oldest first, the last few.
    pub last: Vec<usize>,
    /// The model's state there.
    pub state: String,
}

/// The result of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Stuck),
    /// The budget ran out after this many steps.
    Unknown {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;

struct Node {
    /// The entry; meaningless for the head.
    op: usize,
    is_call: bool,
    /// The call node's return node.
    ret: usize,
    prev: usize,
    next: usize,
}

/// Whether `entries` are linearizable with respect to `model`.
pub fn check<M: Model>(
    model: &M,
    entries: &[Entry<M::Input, M::Output>],
    budget: Budget,
) -> Verdict {
    let n = entries.len();
    // Events in time order. At equal times a call sorts before a return, so that two
    // operations that touch at one instant count as concurrent (the weaker claim).
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.call_ns, 0, i));
        events.push((e.return_ns.unwrap_or(u64::MAX), 1, i));
    }
    events.sort_unstable();
    let mut nodes = Vec::with_capacity(2 * n + 1);
    nodes.push(Node {
        op: NIL,
        is_call: false,
        ret: NIL,
        prev: NIL,
        next: NIL,
    });
    let mut ret_node = vec![NIL; n];
    for (k, &(_, kind, op)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes.push(Node {
            op,
            is_call: kind == 0,
            ret: NIL,
            prev: idx - 1,
            next: if k + 1 < events.len() { idx + 1 } else { NIL },
        });
        if kind == 1 {
            ret_node[op] = idx;
        }
    }
    nodes[0].next = if events.is_empty() { NIL } else { 1 };
    for node in nodes.iter_mut().skip(1) {
        if node.is_call {
            node.ret = ret_node[node.op];
        }
    }

    fn unlink(nodes: &mut [Node], i: usize) {
        let (p, nx) = (nodes[i].prev, nodes[i].next);
        nodes[p].next = nx;
        if nx != NIL {
            nodes[nx].prev = p;
        }
    }
    fn relink(nodes: &mut [Node], i: usize) {
        let (p, nx) = (nodes[i].prev, nodes[i].next);
        nodes[p].next = i;
        if nx != NIL {
            nodes[nx].prev = i;
        }
    }

    let finite = |op: usize| entries[op].return_ns.is_some();
    let mut remaining = entries.iter().filter(|e| e.return_ns.is_some()).count();
    // The linearized set is memoized as a 128-bit Zobrist hash (the XOR of a random key per
    // linearized operation) rather than a bit set of the whole history: a bit set per memo
    // entry costs O(n) memory, O(n^2) over a search, gigabytes for a 20k-operation key. Two
    // different sets share a hash with probability 2^-128 per pair (some 2^-86 over a full
    // budget): negligible next to the memory saved.
    let zobrist: Vec<u128> = (0..n as u64).map(zobrist_key).collect();
    let mut linearized: u128 = 0;
    let mut cache: HashSet<(u128, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = nodes[0].next;
    let mut steps: u64 = 0;
    let mut deepest: Option<Stuck> = None;

    loop {
        if remaining == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > budget.max_steps || cache.len() > budget.max_cache {
            return Verdict::Unknown { steps };
        }
        if entry != NIL && nodes[entry].is_call {
            let op = nodes[entry].op;
            let e = &entries[op];
            if let Some(next_state) = model.step(&state, &e.input, e.output.as_ref()) {
                if cache.insert((linearized ^ zobrist[op], next_state.clone())) {
                    linearized ^= zobrist[op];
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    // Lift the call and its return out of the list.
                    let ret = nodes[entry].ret;
                    unlink(&mut nodes, entry);
                    unlink(&mut nodes, ret);
                    if finite(op) {
                        remaining -= 1;
                    }
                    entry = nodes[0].next;
                    continue;
                }
            }
            entry = nodes[entry].next;
        } else {
            // A completion whose operation no order tried so far could place before it:
            // undo the last choice.
            let blocked = if entry == NIL { NIL } else { nodes[entry].op };
            if deepest.as_ref().is_none_or(|d| stack.len() > d.linearized) && blocked != NIL {
                let last = stack
                    .iter()
                    .rev()
                    .take(8)
                    .rev()
                    .map(|(node, _)| entries[nodes[*node].op].id)
                    .collect();
                deepest = Some(Stuck {
                    linearized: stack.len(),
                    op: entries[blocked].id,
                    last,
                    state: format!("{state:?}"),
                });
            }
            let Some((call, prev_state)) = stack.pop() else {
                return Verdict::NotLinearizable(deepest.unwrap_or(Stuck {
                    linearized: 0,
                    op: NIL,
                    last: Vec::new(),
                    state: format!("{state:?}"),
                }));
            };
            state = prev_state;
            let op = nodes[call].op;
            linearized ^= zobrist[op];
            // Restore in the reverse order of removal.
            let ret = nodes[call].ret;
            relink(&mut nodes, ret);
            relink(&mut nodes, call);
            if finite(op) {
                remaining += 1;
            }
            entry = nodes[call].next;
        }
    }
}

/// A fixed pseudo-random 128-bit key for operation `i` (splitmix64, twice): the same keys every
/// run, so a verdict is reproducible.
fn zobrist_key(i: u64) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(i
        .wrapping_mul(2)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(i
        .wrapping_mul(2)
        .wrapping_add(2)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (u128::from(a) << 64) | u128::from(b)
}

/// A znode's data as a register: a value and the data version.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// The register's state: the value last written and the data version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegState {
    pub value: u64,
    pub version: i32,
}

/// Register operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegIn {
    Read,
    Write { value: u64 },
    Cas { expected_version: i32, value: u64 },
}

/// Register results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOut {
    Read {
        value: u64,
        version: i32,
    },
    /// The version after the write.
    Written {
        version: i32,
    },
    /// `BADVERSION`: the version did not match, nothing changed.
    CasFailed,
    /// Written, at one of these versions (sorted): for an indeterminate write nobody saw.
    WrittenAt {
        versions: Vec<i32>,
    },
}

impl Model for Register {
    type State = RegState;
    type Input = RegIn;
    type Output = RegOut;

    fn init(&self) -> RegState {
        RegState {
            value: INITIAL_VALUE,
            version: 0,
        }
    }

    fn step(&self, s: &RegState, input: &RegIn, output: Option<&RegOut>) -> Option<RegState> {
        let after = |value| RegState {
            value,
            version: s.version.wrapping_add(1),
        };
        match (input, output) {
            (RegIn::Read, Some(RegOut::Read { value, version })) => {
                (s.value == *value && s.version == *version).then_some(*s)
            }
            // A read with an unknown result tells nothing; callers leave such reads out.
            (RegIn::Read, None) => Some(*s),
            (RegIn::Write { value }, Some(RegOut::Written { version })) => {
                (*version == s.version.wrapping_add(1)).then(|| after(*value))
            }
            (RegIn::Write { value }, None) => Some(after(*value)),
            (RegIn::Write { value }, Some(RegOut::WrittenAt { versions })) => versions
                .binary_search(&s.version.wrapping_add(1))
                .is_ok()
                .then(|| after(*value)),
            (
                RegIn::Cas {
                    expected_version,
                    value,
                },
                Some(RegOut::WrittenAt { versions }),
            ) => (s.version == *expected_version
                && versions.binary_search(&s.version.wrapping_add(1)).is_ok())
            .then(|| after(*value)),
            (
                RegIn::Cas {
                    expected_version,
                    value,
                },
                Some(RegOut::Written { version }),
            ) => (s.version == *expected_version && *version == s.version.wrapping_add(1))
                .then(|| after(*value)),
            (
                RegIn::Cas {
                    expected_version, ..
                },
                Some(RegOut::CasFailed),
            ) => (s.version != *expected_version).then_some(*s),
            // An indeterminate CAS that took effect must have matched; one that did not match
            // changed nothing, which is the same as never linearizing it.
            (
                RegIn::Cas {
                    expected_version,
                    value,
                },
                None,
            ) => (s.version == *expected_version).then(|| after(*value)),
            _ => None,
        }
    }
}

/// The register operations on `key`: sync-reads, writes and CAS. Plain reads are left out
/// (ZooKeeper does not promise they are linearizable), and so is every operation that surely
/// had no effect and returned nothing to check (a read that failed, a write that was never
/// sent or was refused with anything but `BADVERSION`).
///
/// Indeterminate writes are narrowed with what the rest of the history shows, as Knossos does
/// with `:info` operations whose values are read; without it every one left pending multiplies
/// the configurations of the search (one long run leaves dozens per key):
/// - values are unique, so a write whose value some reply or read shows took effect, at the
///   version shown: it gets that version as its output, and when a sync-read returned it, that
///   read's completion as its own (it took effect before);
/// - a write whose value nobody saw can only have taken effect at a version nobody saw with
///   another value (a *gap* below the highest version seen): it may take only those; with no
///   gap it cannot have taken effect at all and is left out. Both are exact, not heuristics:
///   every order they remove would give some version two values, which no linearization does.
pub fn register_entries(history: &History, key: &str) -> Vec<Entry<RegIn, RegOut>> {
    // What the whole history shows about the key's values: version per value, every version
    // seen, and the earliest completion of a sync-read per value.
    let mut version_of: HashMap<u64, i32> = HashMap::new();
    let mut seen_at: HashMap<u64, u64> = HashMap::new();
    let mut versions: BTreeSet<i32> = BTreeSet::new();
    for op in history.ops.iter().filter(|o| o.call.key() == key) {
        let Some(view) = as_register(op) else {
            continue;
        };
        let Some((value, version)) = view.shown else {
            continue;
        };
        if let (RegIn::Read, true, Some(t)) = (&view.input, view.linearizable, op.complete_ns) {
            let at = seen_at.entry(value).or_insert(t);
            *at = (*at).min(t);
        }
        version_of.entry(value).or_insert(version);
        versions.insert(version);
    }
    // The final state is a read of every member after every operation: the versions it shows
    // were made too. Without it, an indeterminate write whose value was overwritten before any
    // read saw it, followed by one more indeterminate write, leaves a version nobody saw above
    // the highest any reply showed, and a later failed CAS that it explains looks impossible.
    for m in history.final_state.iter().flat_map(|f| &f.members) {
        if let Some(r) = m.registers.get(key) {
            version_of.entry(r.value).or_insert(r.version);
            versions.insert(r.version);
        }
    }
    let highest = versions.last().copied().unwrap_or(0);
    let gaps: Vec<i32> = (1..=highest).filter(|v| !versions.contains(v)).collect();

    let mut out = Vec::new();
    for op in &history.ops {
        if op.call.key() != key {
            continue;
        }
        let Some(view) = as_register(op) else {
            continue;
        };
        if !view.linearizable {
            continue;
        }
        let known = |output| (Some(output), op.complete_ns);
        let (output, return_ns) = match (&op.outcome, &view.input, view.shown) {
            (Outcome::Ok(_), RegIn::Read, Some((value, version))) => {
                known(RegOut::Read { value, version })
            }
            (Outcome::Ok(_), RegIn::Write { .. } | RegIn::Cas { .. }, Some((_, version))) => {
                known(RegOut::Written { version })
            }
            (Outcome::Failed(ServerError::BadVersion), RegIn::Cas { .. }, _) => {
                known(RegOut::CasFailed)
            }
            (Outcome::Unknown { .. }, RegIn::Write { value } | RegIn::Cas { value, .. }, _) => {
                match version_of.get(value) {
                    Some(version) => (
                        Some(RegOut::Written { version: *version }),
                        seen_at.get(value).copied(),
                    ),
                    None if gaps.is_empty() => continue,
                    None => (
                        Some(RegOut::WrittenAt {
                            versions: gaps.clone(),
                        }),
                        None,
                    ),
                }
            }
            // Reads without a result (or a torn pair read, which the multi checker reports),
            // writes surely not applied, replies of the wrong shape (which `value_identity`
            // reports).
            _ => continue,
        };
        out.push(Entry {
            id: op.id,
            call_ns: op.invoke_ns,
            return_ns,
            input: view.input,
            output,
        });
    }
    out
}

/// An operation as a register operation.
struct RegView {
    input: RegIn,
    /// A read that is checked for linearizability (after a `sync`), or any write.
    linearizable: bool,
    /// The (value, version) its successful reply shows: a read's, a write's own.
    shown: Option<(u64, i32)>,
}

/// An operation seen as an operation on a register: plain reads, sync-reads, reads that left a
/// watch, writes and CAS of a register; pair reads and pair writes of a pair, which is one
/// register named by its first key (its keys always hold one value and one version, so the
/// first key's stand for the pair; a torn read shows nothing here, and the multi checker
/// reports it).
fn as_register(op: &Op) -> Option<RegView> {
    let read = |value: &u64, version: &i32| Some((*value, *version));
    let (input, linearizable, shown) = match (&op.call, op.ok()) {
        (Call::SyncRead { .. }, r) => (
            RegIn::Read,
            true,
            match r {
                Some(Reply::Read { value, version, .. }) => read(value, version),
                _ => None,
            },
        ),
        (Call::Read { .. } | Call::WatchRead { .. }, r) => (
            RegIn::Read,
            false,
            match r {
                Some(Reply::Read { value, version, .. }) => read(value, version),
                _ => None,
            },
        ),
        (Call::PairRead { .. }, r) => (
            RegIn::Read,
            true,
            match r {
                Some(Reply::Pair { reads }) => match reads.first() {
                    Some(first)
                        if reads
                            .iter()
                            .all(|x| (x.value, x.version) == (first.value, first.version)) =>
                    {
                        read(&first.value, &first.version)
                    }
                    _ => None,
                },
                _ => None,
            },
        ),
        (Call::Write { value, .. }, r) => (
            RegIn::Write { value: *value },
            true,
            match r {
                Some(Reply::Written { version, .. }) => Some((*value, *version)),
                _ => None,
            },
        ),
        (
            Call::Cas {
                expected_version,
                value,
                ..
            }
            | Call::PairCas {
                expected_version,
                value,
                ..
            },
            r,
        ) => (
            RegIn::Cas {
                expected_version: *expected_version,
                value: *value,
            },
            true,
            match r {
                Some(Reply::Written { version, .. }) => Some((*value, *version)),
                Some(Reply::PairWritten { versions, .. }) => versions.first().map(|v| (*value, *v)),
                _ => None,
            },
        ),
        _ => return None,
    };
    Some(RegView {
        input,
        linearizable,
        shown,
    })
}

/// The result of checking one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerdict {
    pub key: String,
    /// Operations in the search.
    pub ops: usize,
    pub verdict: Verdict,
}

/// Checks every register of `history` separately (P-compositionality), plus
/// [`value_identity`]; returns the verdict per key and the anomalies.
pub fn check_registers(history: &History, budget: Budget) -> (Vec<KeyVerdict>, Vec<Anomaly>) {
    let mut verdicts = Vec::new();
    let mut anomalies = value_identity(history);
    for key in &history.registers {
        let (verdict, anomaly) = check_register(history, key, key, "linearizable", budget);
        anomalies.extend(anomaly);
        verdicts.push(verdict);
    }
    (verdicts, anomalies)
}

/// Searches the register operations on `key` (see [`register_entries`]); the verdict is named
/// `name`, and a history that is not linearizable is reported as `checker`'s anomaly.
pub fn check_register(
    history: &History,
    key: &str,
    name: &str,
    checker: &'static str,
    budget: Budget,
) -> (KeyVerdict, Option<Anomaly>) {
    let entries = register_entries(history, key);
    let verdict = check(&Register, &entries, budget);
    let mut anomaly = None;
    if let Verdict::NotLinearizable(stuck) = &verdict {
        let mut detail = format!(
            "{name}: no linearization; at most {} of {} operations linearized, then {} could \
             not be explained from state {}",
            stuck.linearized,
            entries.len(),
            history
                .ops
                .get(stuck.op)
                .map(describe)
                .unwrap_or_else(|| "nothing".into()),
            stuck.state
        );
        detail.push_str("; linearized last:");
        for id in &stuck.last {
            if let Some(op) = history.ops.get(*id) {
                detail.push_str(&format!("\n    {}", describe(op)));
            }
        }
        let mut ops = stuck.last.clone();
        ops.push(stuck.op);
        anomaly = Some(Anomaly {
            checker,
            kind: "not-linearizable".into(),
            detail,
            ops,
        });
    }
    let verdict = KeyVerdict {
        key: name.to_string(),
        ops: entries.len(),
        verdict,
    };
    (verdict, anomaly)
}

/// Each value is written once (values are unique per run), so every observation of it — the
/// write's own reply and every read, plain or after `sync` — must agree on its version and
/// mzxid; two values of one key never share a version; versions and mzxids grow together; and
/// no read returns a value nobody wrote. Plain reads are included: a stale read is allowed,
/// a state that never existed is not.
pub fn value_identity(history: &History) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let mut written: HashSet<(&str, u64)> = HashSet::new();
    for op in &history.ops {
        if let Call::Write { key, value } | Call::Cas { key, value, .. } = &op.call {
            written.insert((key.as_str(), *value));
        }
    }
    // (key, value) -> (version, mzxid, first op that showed it)
    let mut seen: BTreeMap<(&str, u64), (i32, i64, usize)> = BTreeMap::new();
    for op in &history.ops {
        let key = op.call.key();
        let observed = match (&op.call, op.ok()) {
            (
                Call::Write { value, .. } | Call::Cas { value, .. },
                Some(Reply::Written { version, mzxid }),
            ) => Some((*value, *version, *mzxid)),
            (
                Call::Read { .. } | Call::SyncRead { .. } | Call::WatchRead { .. },
                Some(Reply::Read {
                    value,
                    version,
                    mzxid,
                }),
            ) => Some((*value, *version, *mzxid)),
            // Other kinds of operation, checked by their own checkers (a pair by `multi`).
            (call, Some(reply)) if call.fits(reply) => None,
            (_, Some(_)) => {
                anomalies.push(Anomaly {
                    checker: "linearizable",
                    kind: "reply-shape".into(),
                    detail: format!("a reply of the wrong kind: {}", describe(op)),
                    ops: vec![op.id],
                });
                None
            }
            (_, None) => None,
        };
        let Some((value, version, mzxid)) = observed else {
            continue;
        };
        let initial = value == INITIAL_VALUE && version == 0;
        if !initial && (value == GARBAGE_VALUE || !written.contains(&(key, value))) {
            anomalies.push(Anomaly {
                checker: "linearizable",
                kind: "phantom-value".into(),
                detail: format!("read a value no operation wrote: {}", describe(op)),
                ops: vec![op.id],
            });
            continue;
        }
        match seen.get(&(key, value)) {
            None => {
                seen.insert((key, value), (version, mzxid, op.id));
            }
            Some(&(v, z, first)) if (v, z) != (version, mzxid) => anomalies.push(Anomaly {
                checker: "linearizable",
                kind: "value-identity".into(),
                detail: format!(
                    "{key} value {value} seen at version {v} mzxid {z:#x} and at version \
                     {version} mzxid {mzxid:#x}:\n    {}\n    {}",
                    describe(&history.ops[first]),
                    describe(op)
                ),
                ops: vec![first, op.id],
            }),
            Some(_) => {}
        }
    }
    // Per key, in version order: one value per version, mzxids strictly increasing.
    let mut per_key: BTreeMap<&str, Vec<(i32, i64, u64, usize)>> = BTreeMap::new();
    for (&(key, value), &(version, mzxid, op)) in &seen {
        if !(value == INITIAL_VALUE && version == 0) {
            per_key
                .entry(key)
                .or_default()
                .push((version, mzxid, value, op));
        }
    }
    for (key, mut vs) in per_key {
        vs.sort();
        for w in vs.windows(2) {
            let ((v1, z1, a, o1), (v2, z2, b, o2)) = (w[0], w[1]);
            if v1 == v2 || z1 >= z2 {
                anomalies.push(Anomaly {
                    checker: "linearizable",
                    kind: if v1 == v2 {
                        "version-reused".into()
                    } else {
                        "mzxid-order".into()
                    },
                    detail: format!(
                        "{key}: value {a} at version {v1} mzxid {z1:#x}, value {b} at version \
                         {v2} mzxid {z2:#x}:\n    {}\n    {}",
                        describe(&history.ops[o1]),
                        describe(&history.ops[o2])
                    ),
                    ops: vec![o1, o2],
                });
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(
        id: usize,
        call: u64,
        ret: Option<u64>,
        input: RegIn,
        output: Option<RegOut>,
    ) -> Entry<RegIn, RegOut> {
        Entry {
            id,
            call_ns: call,
            return_ns: ret,
            input,
            output,
        }
    }
    fn w(id: usize, call: u64, ret: u64, value: u64, version: i32) -> Entry<RegIn, RegOut> {
        e(
            id,
            call,
            Some(ret),
            RegIn::Write { value },
            Some(RegOut::Written { version }),
        )
    }
    fn r(id: usize, call: u64, ret: u64, value: u64, version: i32) -> Entry<RegIn, RegOut> {
        e(
            id,
            call,
            Some(ret),
            RegIn::Read,
            Some(RegOut::Read { value, version }),
        )
    }
    fn cas(
        id: usize,
        call: u64,
        ret: u64,
        expected: i32,
        value: u64,
        ok: bool,
    ) -> Entry<RegIn, RegOut> {
        e(
            id,
            call,
            Some(ret),
            RegIn::Cas {
                expected_version: expected,
                value,
            },
            Some(if ok {
                RegOut::Written {
                    version: expected + 1,
                }
            } else {
                RegOut::CasFailed
            }),
        )
    }
    fn lin(entries: &[Entry<RegIn, RegOut>]) -> Verdict {
        check(&Register, entries, Budget::default())
    }
    fn assert_lin(entries: &[Entry<RegIn, RegOut>]) {
        assert_eq!(lin(entries), Verdict::Linearizable, "{entries:?}");
    }
    fn assert_not(entries: &[Entry<RegIn, RegOut>]) {
        assert!(
            matches!(lin(entries), Verdict::NotLinearizable(_)),
            "accepted a non-linearizable history: {entries:?}"
        );
    }

    #[test]
    fn an_empty_history_and_sequential_ones_are_linearizable() {
        assert_lin(&[]);
        assert_lin(&[r(0, 0, 1, 0, 0)]);
        assert_lin(&[
            w(0, 0, 1, 7, 1),
            r(1, 2, 3, 7, 1),
            cas(2, 4, 5, 1, 8, true),
            r(3, 6, 7, 8, 2),
        ]);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        // The write completed at 1; a read invoked at 2 still sees the initial value.
        assert_not(&[w(0, 0, 1, 7, 1), r(1, 2, 3, 0, 0)]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        assert_lin(&[w(0, 0, 10, 7, 1), r(1, 2, 3, 0, 0), r(2, 4, 5, 7, 1)]);
        assert_lin(&[w(0, 0, 10, 7, 1), r(1, 2, 3, 7, 1)]);
    }

    #[test]
    fn reads_that_see_the_new_value_then_the_old_one_are_rejected() {
        // Both reads overlap the write, but once one read saw 7 a later read must too.
        assert_not(&[w(0, 0, 10, 7, 1), r(1, 2, 3, 7, 1), r(2, 4, 5, 0, 0)]);
    }

    #[test]
    fn two_cas_succeeding_from_the_same_version_are_rejected() {
        // Two concurrent CAS from version 0 both succeed: a lost update.
        assert_not(&[cas(0, 0, 10, 0, 1, true), cas(1, 0, 10, 0, 2, true)]);
        // One fails: fine, in either order.
        assert_lin(&[cas(0, 0, 10, 0, 1, true), cas(1, 0, 10, 0, 2, false)]);
        assert_lin(&[cas(0, 0, 10, 0, 1, false), cas(1, 0, 10, 0, 2, true)]);
    }

    #[test]
    fn a_cas_that_failed_although_the_version_matched_is_rejected() {
        assert_not(&[
            w(0, 0, 1, 5, 1),
            cas(1, 2, 3, 1, 6, false),
            r(2, 4, 5, 5, 1),
        ]);
    }

    #[test]
    fn versions_must_count_every_write() {
        // The write reports version 2 with no write before it.
        assert_not(&[w(0, 0, 1, 5, 2)]);
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_late_or_never() {
        let unknown = |id, call, value| e(id, call, None, RegIn::Write { value }, None);
        // Never seen: fine.
        assert_lin(&[unknown(0, 0, 9), r(1, 5, 6, 0, 0)]);
        // Seen long after its invocation, after other reads saw the old value: fine.
        assert_lin(&[unknown(0, 0, 9), r(1, 5, 6, 0, 0), r(2, 7, 8, 9, 1)]);
        // But not before it was invoked.
        assert_not(&[r(1, 0, 1, 9, 1), unknown(0, 5, 9)]);
        // And once seen, never unseen.
        assert_not(&[unknown(0, 0, 9), r(1, 5, 6, 9, 1), r(2, 7, 8, 0, 0)]);
        // It moves the version: a later acknowledged write at version 2 needs it to have
        // happened.
        assert_lin(&[unknown(0, 0, 9), w(1, 5, 6, 4, 2), r(2, 7, 8, 4, 2)]);
    }

    #[test]
    fn an_indeterminate_cas_applies_only_on_a_matching_version() {
        let ucas = |id, call, expected_version, value| {
            e(
                id,
                call,
                None,
                RegIn::Cas {
                    expected_version,
                    value,
                },
                None,
            )
        };
        assert_lin(&[ucas(0, 0, 0, 9), r(1, 5, 6, 9, 1)]);
        assert_not(&[ucas(0, 0, 3, 9), r(1, 5, 6, 9, 1)]);
    }

    #[test]
    fn operations_touching_at_one_instant_count_as_concurrent() {
        // The write returns at 5 and the read is invoked at 5: either order is allowed.
        assert_lin(&[w(0, 0, 5, 7, 1), r(1, 5, 6, 0, 0)]);
    }

    #[test]
    fn a_larger_concurrent_history_is_decided() {
        // Ten writers each write once, all concurrent; readers then see the last one.
        let mut h: Vec<_> = (0..10).map(|i| w(i, 0, 100, 10 + i as u64, 0)).collect();
        // The versions: whichever order, the writes get versions 1..=10; write i claims
        // version i+1.
        for (i, x) in h.iter_mut().enumerate() {
            x.output = Some(RegOut::Written {
                version: i as i32 + 1,
            });
        }
        h.push(r(10, 200, 201, 19, 10));
        assert_lin(&h);
        // A read claiming the value of write 3 at the end contradicts the versions.
        let mut bad = h.clone();
        bad[10] = r(10, 200, 201, 13, 10);
        assert_not(&bad);
    }

    #[test]
    fn a_search_past_its_budget_says_unknown() {
        let mut h: Vec<_> = (0..12)
            .map(|i| {
                e(
                    i,
                    0,
                    None,
                    RegIn::Write {
                        value: i as u64 + 1,
                    },
                    None,
                )
            })
            .collect();
        // A read no order can explain makes the search visit every subset of the writes.
        h.push(r(12, 10, 11, 999, 1));
        let v = check(
            &Register,
            &h,
            Budget {
                max_steps: 1000,
                max_cache: 1_000_000,
            },
        );
        assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
    }

    #[test]
    fn a_rejection_names_the_operation_that_could_not_be_explained() {
        let Verdict::NotLinearizable(stuck) = lin(&[w(0, 0, 1, 7, 1), r(1, 2, 3, 0, 0)]) else {
            panic!("accepted");
        };
        assert_eq!(stuck.op, 1);
        assert_eq!(stuck.linearized, 1);
        assert_eq!(stuck.last, vec![0]);
    }

    mod narrowing {
        //! How `register_entries` narrows indeterminate writes with the rest of the history.

        use super::super::*;
        use crate::checker::testutil::Builder;
        use crate::history::{Call, Outcome};

        fn unknown_write(b: &mut Builder, p: u32, at: u64, value: u64) -> usize {
            b.op(
                p,
                Call::Write {
                    key: "/k".into(),
                    value,
                },
                at,
                None,
                Outcome::Unknown {
                    reason: "connection lost".into(),
                },
            )
        }

        fn verdict(h: &History) -> Verdict {
            check(&Register, &register_entries(h, "/k"), Budget::default())
        }

        #[test]
        fn an_unseen_indeterminate_write_without_a_version_gap_is_left_out() {
            let mut b = Builder::new();
            unknown_write(&mut b, 1, 0, 9);
            b.write(2, (10, 20), 5, 1, 0x10);
            let h = b.build();
            let entries = register_entries(&h, "/k");
            assert_eq!(entries.len(), 1);
            assert_eq!(verdict(&h), Verdict::Linearizable);
        }

        #[test]
        fn a_seen_indeterminate_write_gets_the_version_and_deadline_it_was_seen_with() {
            let mut b = Builder::new();
            let x = unknown_write(&mut b, 1, 0, 9);
            b.read(2, (5, 6), true, 9, 1, 0x10);
            let mut h = b.build();
            let entries = register_entries(&h, "/k");
            let e = entries.iter().find(|e| e.id == x).unwrap();
            assert_eq!(e.output, Some(RegOut::Written { version: 1 }));
            assert_eq!(e.return_ns, Some(6));
            assert_eq!(verdict(&h), Verdict::Linearizable);
            // Seen, then unseen: rejected.
            let mut b2 = Builder::new();
            b2.ops = h.ops.clone();
            b2.read(3, (7, 8), true, 0, 0, 0x1);
            h = b2.build();
            assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
        }

        #[test]
        fn the_final_state_shows_versions_that_indeterminate_writes_made() {
            // Found by the simulator (seed 1274): a CAS with a lost reply took effect at
            // version 2 and nobody read it; a CAS expecting version 1 then failed; a write with
            // a lost reply made version 3, which only the final state shows.
            let mut b = Builder::new();
            b.write(1, (0, 10), 5, 1, 0x10);
            let cas = |expected_version, value| Call::Cas {
                key: "/k".into(),
                expected_version,
                value,
            };
            let lost = || Outcome::Unknown {
                reason: "connection lost".into(),
            };
            b.op(1, cas(1, 6), 20, None, lost());
            b.op(
                2,
                cas(1, 7),
                30,
                Some(40),
                Outcome::Failed(crate::history::ServerError::BadVersion),
            );
            unknown_write(&mut b, 2, 50, 8);
            let mut h = b.build();
            assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
            h.final_state = Some(crate::history::FinalState {
                members: vec![crate::checker::testutil::member(0, 8, 3, 0x30, &[])],
            });
            assert_eq!(verdict(&h), Verdict::Linearizable);
        }

        #[test]
        fn an_unseen_indeterminate_write_may_fill_a_version_gap_only() {
            // Version 1 was never seen: one of the two unknown writes must have made it.
            let mut b = Builder::new();
            unknown_write(&mut b, 1, 0, 9);
            unknown_write(&mut b, 3, 0, 8);
            b.write(2, (10, 20), 5, 2, 0x10);
            b.read(2, (30, 40), true, 5, 2, 0x10);
            let h = b.build();
            let entries = register_entries(&h, "/k");
            assert!(entries
                .iter()
                .filter(|e| e.return_ns.is_none())
                .all(|e| e.output == Some(RegOut::WrittenAt { versions: vec![1] })));
            assert_eq!(verdict(&h), Verdict::Linearizable);
            // Without any unknown write the gap cannot be explained.
            let mut b = Builder::new();
            b.write(2, (10, 20), 5, 2, 0x10);
            assert!(matches!(verdict(&b.build()), Verdict::NotLinearizable(_)));
        }

        #[test]
        fn many_pending_indeterminate_writes_do_not_blow_up_the_search() {
            // Thirty writes with lost replies early on, never seen, then a long sequential
            // history: without the narrowing each pending write multiplies the search.
            let mut b = Builder::new();
            for i in 0..30 {
                unknown_write(&mut b, 100 + i, i as u64, 1_000_000 + i as u64);
            }
            for i in 0..3_000u64 {
                let t = 1_000 + i * 10;
                b.write(1, (t, t + 4), i + 1, i as i32 + 1, 0x10 + i as i64);
                b.read(
                    2,
                    (t + 5, t + 9),
                    true,
                    i + 1,
                    i as i32 + 1,
                    0x10 + i as i64,
                );
            }
            let started = std::time::Instant::now();
            assert_eq!(verdict(&b.build()), Verdict::Linearizable);
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
    }
}
