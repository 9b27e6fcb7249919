//! Deterministic simulation of ZAB ensembles running the real consensus core
//! (`rookery_server::zab`), the real transaction log and epoch files over crash-modelling
//! in-memory disks, and a seeded network that drops, delays, duplicates and partitions messages.
//!
//! Each seed fixes everything: the faults, the workload, the timing. A seed runs a fault phase
//! (crashes that lose unsynced writes or tear them, disks that damage the synced tail of the log
//! so that recovery cuts acknowledged records, partitions, one-way cuts, lossy and duplicating
//! links, slow disks) and then a liveness phase (everything healed and restarted:
//! within a bound there must be one leader everyone follows, new writes acknowledged, and every
//! server caught up). After every step of every server the per-server invariants
//! (`Node::check_invariants`, no protocol anomaly) and the ensemble properties in
//! `sim/invariants.rs` are checked.
//!
//! Seeds with an even number run 3 voters, odd ones 5; half of them add an observer.
//!
//! ```sh
//! cargo test -p rookery-server --test sim                      # the default seeds
//! ROOKERY_SIM_SEEDS=5000 cargo test -p rookery-server --test sim --release
//! ROOKERY_SIM_SEED=1234 cargo test -p rookery-server --test sim -- --nocapture   # replay one
//! ROOKERY_SIM_SEED=1234 ROOKERY_SIM_VERBOSE=1 cargo test ...   # and print every notable event
//! scripts/sim.sh 20000                                          # many seeds, release build
//! ```

#[path = "sim/cluster.rs"]
mod cluster;
#[path = "sim/disk.rs"]
mod disk;
#[path = "sim/invariants.rs"]
mod invariants;
#[path = "sim/network.rs"]
mod network;

use std::time::Instant;

use cluster::Stats;

/// Seeds per test by default (one test per cluster size): 800 in all.
const DEFAULT_SEEDS_PER_SIZE: u64 = 400;
/// Ticks of faults per seed.
const FAULT_TICKS: u64 = 300;
/// Where the seed numbers start, so that the default run is a fixed set.
const FIRST_SEED: u64 = 0;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

/// Runs the seeds of one parity (0: three voters, 1: five voters).
fn run_size(voters: usize, parity: u64) {
    let verbose = std::env::var_os("ROOKERY_SIM_VERBOSE").is_some();
    if verbose {
        // The core's own debug log (every role change with its reason) alongside the sim's.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("rookery_server::zab=debug")
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
    let seeds: Vec<u64> = match env_u64("ROOKERY_SIM_SEED") {
        Some(seed) if seed % 2 == parity => vec![seed],
        Some(_) => return,
        None => {
            let n = env_u64("ROOKERY_SIM_SEEDS").map_or(DEFAULT_SEEDS_PER_SIZE, |n| n.div_ceil(2));
            (0..n).map(|i| 2 * (FIRST_SEED + i) + parity).collect()
        }
    };
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in seeds {
        let params = cluster::params(seed, voters, FAULT_TICKS);
        let outcome = std::panic::catch_unwind(|| cluster::run(params, verbose));
        match outcome {
            Ok(Ok(stats)) => total.add(&stats),
            Ok(Err(e)) => panic!(
                "simulation seed {seed} ({voters} voters) failed: {e}\n\
                 replay: ROOKERY_SIM_SEED={seed} cargo test -p rookery-server --test sim -- --nocapture"
            ),
            Err(_) => panic!(
                "simulation seed {seed} ({voters} voters) panicked (message above)\n\
                 replay: ROOKERY_SIM_SEED={seed} cargo test -p rookery-server --test sim -- --nocapture"
            ),
        }
    }
    eprintln!(
        "sim {voters} voters: {} seeds in {:.1?}: {} ticks, {} steps, {} messages ({} dropped, {} duplicated), \
         {} crashes ({} mid-I/O, {} damaging a synced tail), {} starts abstaining after a tail cut, {} partitions, {} epochs, {} committed, {} acknowledged, \
         {} linearizable reads, {} snapshots sent, {} truncations, slowest recovery {} ticks",
        total.seeds,
        started.elapsed(),
        total.sim_ticks,
        total.steps,
        total.messages,
        total.dropped,
        total.duplicated,
        total.crashes,
        total.torn_crashes,
        total.synced_tails_damaged,
        total.abstaining_starts,
        total.partitions,
        total.epochs,
        total.committed,
        total.acked,
        total.reads_confirmed,
        total.snapshots,
        total.truncations,
        total.liveness_ticks_max
    );
    if total.seeds > 20 {
        // The runs must actually exercise the protocol, or they prove nothing.
        assert!(
            total.acked > total.seeds * 5,
            "too few writes acknowledged: {total:?}"
        );
        assert!(
            total.reads_confirmed > total.seeds,
            "too few reads confirmed: {total:?}"
        );
        assert!(
            total.crashes > total.seeds / 2,
            "too few crashes: {total:?}"
        );
        assert!(
            total.epochs > total.seeds * 2,
            "too few elections: {total:?}"
        );
        assert!(total.snapshots > 0, "no SNAP synchronization: {total:?}");
        assert!(total.truncations > 0, "no TRUNC synchronization: {total:?}");
        assert!(
            total.synced_tails_damaged > 0 && total.abstaining_starts > 0,
            "no tail cut of synced data: {total:?}"
        );
    }
}

#[test]
fn sim_three_voters() {
    run_size(3, 0);
}

#[test]
fn sim_five_voters() {
    run_size(5, 1);
}

#[test]
fn a_seed_replays_exactly() {
    let a = cluster::run(cluster::params(7, 3, 60), false).unwrap();
    let b = cluster::run(cluster::params(7, 3, 60), false).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
