//! The whole-member simulator (`rookery_history::sim`): seeds of real request processors, ZAB
//! and disks under faults, every history checked.
//!
//! `SIM_SEEDS`, `SIM_FIRST_SEED` and `SIM_SEEDS_5` choose the seeds; `SIM_KEEP_GOING` runs
//! every seed before failing; `SIM_VERBOSE` prints each seed's figures; `SIM_DUMP` keeps every
//! history in the temporary directory (a seed that is not clean always is); `SIM_TRACE` has
//! the simulator tell on stderr what happens (faults, member roles, connections, every
//! completion).

use rookery_history::checker::{check_all, Budget};
use rookery_history::sim::{run, SimConfig, SimError};

/// Why a seed is not clean.
struct Failure {
    detail: String,
}

/// Runs `cfg` and fails with the seed and the anomalies if the history is not clean.
fn check(cfg: &SimConfig) -> (usize, usize) {
    try_check(cfg).unwrap_or_else(|f| panic!("{}", f.detail))
}

/// Runs the seeds `seeds` of `config`: stops at the first that is not clean, or with
/// `SIM_KEEP_GOING` set runs them all and then fails with every one that was not.
fn check_seeds(seeds: std::ops::Range<u64>, config: impl Fn(u64) -> SimConfig) {
    let keep_going = std::env::var_os("SIM_KEEP_GOING").is_some();
    let mut failed = Vec::new();
    for seed in seeds {
        let Err(f) = try_check(&config(seed)) else {
            continue;
        };
        if !keep_going {
            panic!("{}", f.detail);
        }
        eprintln!("FAILED {}", f.detail);
        failed.push(seed);
    }
    assert!(failed.is_empty(), "seeds not clean: {failed:?}");
}

/// Runs `cfg`: the operation count and how many were answered, or why the seed failed.
fn try_check(cfg: &SimConfig) -> Result<(usize, usize), Failure> {
    let out = run(cfg).map_err(|e| Failure {
        detail: format!("seed {}: {e}", cfg.seed),
    })?;
    let report = check_all(&out.history, Budget::default());
    if !report.clean() || std::env::var_os("SIM_DUMP").is_some() {
        // Kept for `rookery-history --check FILE` and for reading.
        let path = std::env::temp_dir().join(format!("rookery-sim-seed-{}.json", cfg.seed));
        let _ = std::fs::write(&path, serde_json::to_vec(&out.history).unwrap_or_default());
        eprintln!("history kept in {}", path.display());
    }
    if !report.clean() {
        return Err(Failure {
            detail: format!(
                "seed {}: {} anomalies: {:#?}",
                cfg.seed,
                report.anomalies.len(),
                report.anomalies.iter().take(5).collect::<Vec<_>>()
            ),
        });
    }
    let acked = out
        .history
        .ops
        .iter()
        .filter(|o| o.outcome.replied())
        .count();
    eprintln!(
        "seed {}: {} ops ({acked} answered), {} steps, {} messages ({} lost), faults {:?}, end {} ms",
        cfg.seed,
        out.history.ops.len(),
        out.steps,
        out.messages,
        out.messages_lost,
        out.faults,
        out.end_ms
    );
    if std::env::var_os("SIM_VERBOSE").is_some() {
        let kinds: Vec<String> = report
            .ops
            .iter()
            .map(|(k, c)| format!("{k} {}/{}", c.ok, c.total()))
            .collect();
        eprintln!("  ops (ok/all): {}", kinds.join(", "));
        eprintln!(
            "  {:?}\n  {:?}\n  {:?}",
            report.watch, report.queue, report.ephemeral
        );
    }
    Ok((out.history.ops.len(), acked))
}

#[test]
fn a_fault_free_run_is_linearizable_and_makes_progress() {
    let mut cfg = SimConfig::new(1);
    cfg.faults = false;
    cfg.duration_ms = 5_000;
    let (ops, acked) = check(&cfg);
    assert!(
        ops > 100 && acked * 10 > ops * 9,
        "{ops} ops, {acked} answered"
    );
}

/// Every row of the workload runs and reaches its checker: watches fire (also as catch-up
/// events after a reconnect) and end, the queue is filled and drained, the pair is written and
/// read, sessions make and check their ephemerals and are closed, cut off and probed.
#[test]
fn every_row_of_the_workload_reaches_its_checker() {
    let out = run(&SimConfig::new(111)).expect("seed 111");
    let report = check_all(&out.history, Budget::default());
    assert!(report.clean(), "{:#?}", report.anomalies);
    let (w, q, e) = (&report.watch, &report.queue, &report.ephemeral);
    assert!(
        w.set > 50 && w.fired > 50 && w.catch_up > 0 && w.ordered > 0,
        "{w:?}"
    );
    assert_eq!(w.undelivered, 0, "every watch fires or ends: {w:?}");
    assert!(
        q.enqueued > 20 && q.consumed >= q.enqueued && q.left == 0,
        "{q:?}"
    );
    assert!(report.pair_reads > 20, "{} pair reads", report.pair_reads);
    let pair_writes = report.ops.get("pair-cas").map_or(0, |c| c.ok);
    assert!(pair_writes > 10, "{pair_writes} pair writes");
    assert!(
        e.created > 5 && e.own_reads > 20 && e.closed > 0 && e.cut_off > 0,
        "{e:?}"
    );
    assert!(e.resumes_refused > 0 && e.left == 0, "{e:?}");
    assert!(!out.history.watches.is_empty());
    let c = &report.counter;
    assert!(c.reads > 20 && c.max_read > 0, "{c:?}");
    // K1: the members' whole trees, at one zxid, compared.
    assert_eq!(report.trees_compared, 2);
}

/// J6's counter and the disk-full fault take part in the sweeps: over a few seeds, members
/// stop on a full disk (their writers fail with ENOSPC), come back once space is freed, and
/// every history stays clean, counter reads included.
#[test]
fn full_disks_stop_members_and_lose_nothing() {
    let mut stops = 0;
    let mut faults = 0;
    for seed in 300..306 {
        let cfg = SimConfig::new(seed);
        let out = run(&cfg).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let report = check_all(&out.history, Budget::default());
        assert!(report.clean(), "seed {seed}: {:#?}", report.anomalies);
        assert!(report.counter.reads > 0, "seed {seed}: no counter read");
        stops += out.full_disk_stops;
        faults += out.faults.get("disk-full").copied().unwrap_or(0);
    }
    assert!(faults > 0, "no disk-full fault in six seeds");
    assert!(
        stops > 0,
        "{faults} disk-full faults, but no member ever ran out of space"
    );
}

#[test]
fn seeds_under_faults_keep_every_promise() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    check_seeds(first..first + seeds, SimConfig::new);
}

#[test]
fn a_seed_replays_the_same_run() {
    let cfg = SimConfig::new(7);
    let a = run(&cfg).expect("first run");
    let b = run(&cfg).expect("second run");
    assert!(a.history.ops.len() > 100);
    assert_eq!(
        serde_json::to_string(&a.history).unwrap(),
        serde_json::to_string(&b.history).unwrap(),
        "the same seed gave two histories"
    );
    assert_eq!(
        (a.steps, a.messages, a.faults),
        (b.steps, b.messages, b.faults)
    );
}

#[test]
fn five_members_under_faults_keep_every_promise() {
    let seeds: u64 = std::env::var("SIM_SEEDS_5")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    check_seeds(500..500 + seeds, |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.members = 5;
        cfg.clients = 5;
        cfg
    });
}

/// The simulator must be able to see a broken promise: with a planted defect (a crash loses
/// the member's whole disk), some seed's history shows acknowledged writes lost, and none ends
/// clean after every member lost its disk at once. (Amnesia is outside what ZAB can survive:
/// now and then the members never elect a leader again, which the run reports as no
/// convergence; that notices the defect too, but it is not what this test wants to see, so at
/// most a third of the seeds may end so.)
#[test]
fn a_planted_loss_of_synced_data_is_caught() {
    let (mut caught, mut stuck) = (0, 0);
    for seed in 0..30u64 {
        let mut cfg = SimConfig::new(seed);
        cfg.lose_disks = true;
        let out = match run(&cfg) {
            Ok(out) => out,
            Err(SimError::NoConvergence(e)) => {
                eprintln!("seed {seed}: no convergence: {e}");
                stuck += 1;
                continue;
            }
            // A member refusing to start is a way of noticing too, but not the one wanted here.
            Err(e) => panic!("seed {seed}: {e}"),
        };
        let report = check_all(&out.history, Budget::default());
        if out.faults.contains_key("crash-all") {
            assert!(
                !report.clean(),
                "seed {seed}: every disk lost, yet the history is clean"
            );
        }
        caught += usize::from(!report.clean());
    }
    assert!(stuck <= 10, "{stuck} seeds of 30 never converged");
    assert!(caught > 0, "no seed of 30 caught the planted defect");
}

/// Defect 9 (docs/reliability.md): before the fix, each of these seeds showed a session resumed
/// (its ephemeral node served) after the ensemble had refused it, or refused while it lived on.
/// Seeds move whenever the code changes what the simulator draws, so this pins the cases that
/// were found, with the draws of the time: no counter reads in the mix, no disk-full fault.
/// The seed sweeps above look for new ones.
#[test]
fn seeds_that_found_defect_9_stay_clean() {
    let then = |seed: u64| {
        let mut cfg = SimConfig::new(seed);
        cfg.mix.count = 0;
        cfg.disk_full = false;
        cfg
    };
    const THREE: &[u64] = &[
        156, 162, 193, 314, 325, 346, 362, 369, 417, 436, 448, 526, 532, 617, 630, 647, 660, 747,
        932, 961,
    ];
    for &seed in THREE {
        check(&then(seed));
    }
    let mut cfg = then(557);
    cfg.members = 5;
    cfg.clients = 5;
    check(&cfg);
}
