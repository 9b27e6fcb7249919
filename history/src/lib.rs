//! History checking over real `rookery` ensembles (reliability issue #16; the test plan's J1,
//! J2, J3, J4 (as a pair invariant), J5, J6 (queue), W1 (one-shot watches), K1, K6, S1 (in
//! part), N2, N3 (a slow link, a stalled reader, a blackhole without close), P1 and C1 (skewed
//! member clocks under libfaketime) rows at layer L2), and in a whole-member simulator.
//!
//! - [`history`]: the recorded operations (invocation, completion or none, result), watch
//!   deliveries, and the final state of every member.
//! - [`checker`]: pure checkers — per-key linearizability of registers (Wing–Gong–Lowe search
//!   with memoization, indeterminate operations as in Knossos and porcupine), acknowledged
//!   writes present at the end, unique and monotone sequential names, per-session FIFO and
//!   zxid order, watch ordering, a queue's exactly-once consumption, untorn `multi` pairs,
//!   ephemerals and session ends.
//! - [`workload`]: concurrent `rookery-client` sessions doing reads, sync-reads, writes, CAS,
//!   sequential creates, watched reads, queue enqueues and takes, `multi` pair writes and
//!   `multiRead` pair reads, each with an ephemeral node; an ephemeral slot whose sessions are
//!   closed or cut off; recording every invocation, completion and watch delivery.
//! - [`nemesis`]: faults on a seeded schedule: `kill -9` of the leader, of a random member, of
//!   every member; SIGSTOP of the leader past the session timeout; full, one-way and partial
//!   partitions, a slow, a stalled and a blackholed leader through the testkit's proxies.
//! - [`run`]: the harness tying them together around a `rookery_testkit::ensemble::Ensemble`.
//! - [`sim`]: the whole-member simulator: the server's request processors, ZAB cores and log
//!   writers over in-memory disks, simulated clients and network, faults, one seed per run,
//!   checked by the same checkers.

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod run;
pub mod sim;
pub mod workload;
