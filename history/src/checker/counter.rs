//! The counter (J6, ClickHouse's Keeper counter parity): the sequential parent's children are a
//! counter's increments (every [`Call::CreateSeq`] adds one, nothing removes any) and a
//! [`Call::Count`] (`sync` then `exists`) reads it. A linearizable read falls within bounds:
//!
//! - at least the creates acknowledged before the read was invoked;
//! - at most the creates invoked before the read completed that may have taken effect (those
//!   acknowledged and those with an unknown outcome; a refused or unsent create adds nothing).
//!
//! The parent is empty when the run starts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checker::{describe, Anomaly};
use crate::history::{Call, History, Op, Outcome, Reply};

/// What the counter check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CounterFigures {
    /// Counts read and checked against their bounds.
    pub reads: usize,
    /// The largest count read.
    pub max_read: i32,
}

/// Runs the counter checks.
pub fn check(history: &History) -> (CounterFigures, Vec<Anomaly>) {
    let mut figures = CounterFigures::default();
    let mut out = Vec::new();
    // parent -> (completion times of acknowledged creates, invocation times of creates that
    // may have taken effect), each sorted.
    let mut increments: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for op in &history.ops {
        let Call::CreateSeq { parent, .. } = &op.call else {
            continue;
        };
        let (acked, possible) = increments.entry(parent).or_default();
        match (&op.outcome, op.complete_ns) {
            (Outcome::Ok(_), Some(done)) => {
                acked.push(done);
                possible.push(op.invoke_ns);
            }
            (Outcome::Unknown { .. }, _) => possible.push(op.invoke_ns),
            _ => {}
        }
    }
    for (acked, possible) in increments.values_mut() {
        acked.sort_unstable();
        possible.sort_unstable();
    }
    let none = (Vec::new(), Vec::new());
    for op in &history.ops {
        let (Call::Count { parent }, Some(Reply::Count { children }), Some(done)) =
            (&op.call, op.ok(), op.complete_ns)
        else {
            continue;
        };
        let (acked, possible) = increments.get(parent.as_str()).unwrap_or(&none);
        let lower = acked.partition_point(|&t| t < op.invoke_ns);
        let upper = possible.partition_point(|&t| t < done);
        figures.reads += 1;
        figures.max_read = figures.max_read.max(*children);
        let count = usize::try_from(*children).unwrap_or(0);
        if *children < 0 || count < lower {
            out.push(anomaly(
                "count-below",
                format!(
                    "{parent} had {children} children, but {lower} creates under it were \
                     acknowledged before the read was invoked:\n    {}",
                    describe(op)
                ),
                op,
            ));
        } else if count > upper {
            out.push(anomaly(
                "count-above",
                format!(
                    "{parent} had {children} children, but only {upper} creates under it that \
                     may have taken effect were invoked before the read completed:\n    {}",
                    describe(op)
                ),
                op,
            ));
        }
    }
    (figures, out)
}

fn anomaly(kind: &str, detail: String, op: &Op) -> Anomaly {
    Anomaly {
        checker: "counter",
        kind: kind.into(),
        detail,
        ops: vec![op.id],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::{kinds, Builder};
    use crate::history::ServerError;

    /// Two acknowledged creates under `/s` (done by 20 and 40), one refused, one unknown
    /// (invoked at 50).
    fn creates() -> Builder {
        let mut b = Builder::new();
        b.create(1, (10, 20), 1, 0, 0x10);
        b.create(2, (30, 40), 2, 1, 0x11);
        let call = |token| Call::CreateSeq {
            parent: "/s".into(),
            token,
        };
        b.op(
            3,
            call(3),
            30,
            Some(35),
            Outcome::Failed(ServerError::NodeExists),
        );
        let unknown = Outcome::Unknown {
            reason: "timeout".into(),
        };
        b.op(4, call(4), 50, None, unknown);
        b
    }

    fn count(b: &mut Builder, t: (u64, u64), children: i32) {
        let call = Call::Count {
            parent: "/s".into(),
        };
        b.op(
            5,
            call,
            t.0,
            Some(t.1),
            Outcome::Ok(Reply::Count { children }),
        );
    }

    fn found(b: Builder) -> Vec<String> {
        let (_, anomalies) = check(&b.build());
        kinds(&anomalies).into_iter().map(String::from).collect()
    }

    #[test]
    fn counts_within_bounds_pass() {
        let mut b = creates();
        // Before anything: 0; overlapping the first create: 0 or 1; after both: 2; overlapping
        // the unknown one: 2 or 3.
        count(&mut b, (0, 5), 0);
        count(&mut b, (15, 25), 1);
        count(&mut b, (45, 48), 2);
        count(&mut b, (60, 70), 3);
        count(&mut b, (60, 70), 2);
        let (figures, anomalies) = check(&b.build());
        assert_eq!(anomalies, vec![]);
        assert_eq!(figures.reads, 5);
        assert_eq!(figures.max_read, 3);
    }

    #[test]
    fn a_count_missing_an_acknowledged_create_is_caught() {
        let mut b = creates();
        count(&mut b, (45, 48), 1);
        assert_eq!(found(b), vec!["count-below"]);
    }

    #[test]
    fn a_count_of_creates_not_yet_invoked_or_refused_is_caught() {
        let mut b = creates();
        // Only creates 1 and 2 (and the refused 3) invoked before 45: 3 is too many.
        count(&mut b, (41, 45), 3);
        count(&mut b, (0, 5), 1);
        assert_eq!(found(b), vec!["count-above", "count-above"]);
    }
}
