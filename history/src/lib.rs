//! History checking over real `rookery` ensembles (reliability issue #16; the test plan's J1,
//! J2, J3, J5, K1 and P1 rows at layer L2).
//!
//! - [`history`]: the recorded operations (invocation, completion or none, result) and the
//!   final state of every member.
//! - [`checker`]: pure checkers — per-key linearizability of registers (Wing–Gong–Lowe search
//!   with memoization, indeterminate operations as in Knossos and porcupine), acknowledged
//!   writes present at the end, unique and monotone sequential names, per-session FIFO and
//!   zxid order.
//! - [`workload`]: concurrent `rookery-client` sessions doing reads, sync-reads, writes, CAS
//!   and sequential creates, recording every invocation and completion.
//! - [`nemesis`]: faults on a seeded schedule: `kill -9` of the leader, of a random member, of
//!   every member; SIGSTOP of the leader past the session timeout; partitions through the
//!   testkit's proxies.
//! - [`run`]: the harness tying them together around a `rookery_testkit::ensemble::Ensemble`.

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod run;
pub mod workload;
