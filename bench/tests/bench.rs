//! `rookery bench` against real processes, briefly, so that a broken harness fails CI. The full
//! comparison is not run here (see docs/performance.md for the command).

use std::path::Path;
use std::process::{Command, Output};

use rookery_bench::compare::{Comparison, Metric};
use rookery_bench::process::Flavor;
use rookery_bench::{Report, Workload};
use rookery_testkit::*;

fn run(args: &[&str]) -> Output {
    Command::new(rookery_bin())
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("rookery runs")
}

fn check(out: &Output) {
    assert!(
        out.status.success(),
        "rookery bench failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Processes whose command line mentions `dir` (the servers a comparison started there).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn every_workload_runs_against_a_rookery_server_and_reports_json() {
    // A 200 ms tick allows a 400 ms session timeout, so the expiry workload takes well under 1 s.
    let server = start_rookery(&[("tickTime", "200")]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = run(&[
        "--server",
        &server.addr.to_string(),
        "--server-pid",
        &server.pid().to_string(),
        "--workloads",
        "create,set,get,mixed,watch,churn,expiry,tree",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--sessions",
        "2",
        "--in-flight",
        "2",
        "--watchers",
        "3",
        "--expiry-sessions",
        "2",
        "--session-timeout",
        "400ms",
        "--tree-nodes",
        "1500",
        "--json",
        json.to_str().unwrap(),
    ]);
    check(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| workload |"), "{stdout}");

    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<Workload> = report.results.iter().map(|r| r.workload).collect();
    assert_eq!(names, Workload::ALL.to_vec());
    for r in &report.results {
        let l = r.latency;
        // The tree's ops are nodes; its latencies are per multi of 100 creates.
        let per_op = if r.workload == Workload::Tree { 100 } else { 1 };
        assert!(r.ops > 0 && l.count * per_op == r.ops, "{r:?}");
        assert!(
            l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.max_us,
            "{r:?}"
        );
        assert!(
            r.rss_kib.is_some_and(|k| k > 1024),
            "RSS read from /proc: {r:?}"
        );
        match r.workload {
            Workload::Expiry => {
                assert_eq!(r.ops_per_sec, None);
                assert_eq!(r.extra["session_timeout_ms"], 400.0);
                // Never before the timeout; within a few ticks after it.
                assert!(l.p50_us >= 300_000 && l.max_us < 5_000_000, "{r:?}");
            }
            Workload::Tree => {
                assert_eq!(r.ops, 1500);
                assert!(r.extra["rss_hwm_kib"] > 0.0);
            }
            Workload::Watch => assert_eq!(r.extra["watchers"], 3.0),
            _ => assert!(r.ops_per_sec.is_some_and(|v| v > 0.0), "{r:?}"),
        }
    }
}

#[test]
fn compare_starts_both_servers_prints_ratios_and_cleans_up() {
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("compare.json");
    let svg = work.path().join("compare.svg");
    // Without the ZooKeeper package the harness still runs Rookery alone.
    let servers = if zookeeper_installed() {
        "rookery,zookeeper"
    } else {
        eprintln!("Apache ZooKeeper is not installed: comparing Rookery alone");
        "rookery"
    };
    let out = run(&[
        "compare",
        "--servers",
        servers,
        "--workloads",
        "get,tree",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--sessions",
        "2",
        "--in-flight",
        "2",
        "--tree-nodes",
        "1000",
        "--startup-runs",
        "1",
        // CI runs other tests at the same time: do not wait for an idle machine.
        "--quiet-wait",
        "0",
        "--zookeeper-heap-mb",
        "256",
        "--work-dir",
        work.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    check(&out);
    assert_eq!(processes_under(work.path()), Vec::<String>::new());

    let c: Comparison = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(c.topology, "standalone");
    assert!(
        c.command.starts_with("rookery bench compare"),
        "{}",
        c.command
    );
    for side in &c.sides {
        assert_eq!(side.startup_ms.len(), 1, "{side:?}");
        assert!(side.idle_rss_kib.is_some_and(|k| k > 0), "{side:?}");
        let tree = side.result(Workload::Tree).expect("the tree ran");
        assert!(tree.rss_kib.is_some_and(|k| k > 0), "{tree:?}");
        assert!(side.result(Workload::Get).is_some());
    }
    if zookeeper_installed() {
        assert_eq!(c.sides.len(), 2);
        let zk = c
            .sides
            .iter()
            .find(|s| s.flavor == Flavor::Zookeeper)
            .unwrap();
        assert!(
            zk.version.as_deref().is_some_and(|v| v.starts_with("3.")),
            "{zk:?}"
        );
        for metric in [Metric::Startup, Metric::OpsPerSec, Metric::P99, Metric::Rss] {
            let row = c.rows.iter().find(|r| r.metric == metric).expect("a row");
            assert!(row.ratio.is_finite() && row.ratio > 0.0, "{row:?}");
            assert!(row.met.is_some());
        }
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("Rookery/ZooKeeper"), "{table}");
        let svg = std::fs::read_to_string(&svg).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("get ops/s"),
            "{svg}"
        );
    } else {
        assert!(c.rows.is_empty());
    }
}

#[test]
fn an_ensemble_comparison_runs_three_rookery_members_and_times_a_failover() {
    // Rookery alone, so that CI (2 cores) stays fast; the ZooKeeper ensemble runs the same code
    // path in the full comparison (see docs/performance.md).
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("ensemble.json");
    let started = std::time::Instant::now();
    let out = run(&[
        "compare",
        "--ensemble",
        "--servers",
        "rookery",
        "--workloads",
        "set",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--sessions",
        "2",
        "--in-flight",
        "2",
        "--startup-runs",
        "1",
        "--failover-runs",
        "1",
        "--quiet-wait",
        "0",
        "--work-dir",
        work.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    check(&out);
    assert_eq!(processes_under(work.path()), Vec::<String>::new());
    eprintln!("the ensemble comparison took {:?}", started.elapsed());

    let c: Comparison = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(c.topology, "ensemble of 3");
    assert!(
        c.shared_config
            .iter()
            .any(|(k, v)| k == "initLimit" && v == "10"),
        "{:?}",
        c.shared_config
    );
    assert_eq!(c.sides.len(), 1);
    let side = &c.sides[0];
    assert_eq!(side.flavor, Flavor::Rookery);
    assert_eq!(side.startup_ms.len(), 1, "{side:?}");
    // Three members' RSS, summed.
    assert!(side.idle_rss_kib.is_some_and(|k| k > 3 * 1024), "{side:?}");
    let set = side.result(Workload::Set).expect("set ran");
    assert!(
        set.ops > 0 && set.ops_per_sec.is_some_and(|v| v > 0.0),
        "{set:?}"
    );
    assert!(set.rss_kib.is_some_and(|k| k > 0), "{set:?}");

    assert_eq!(side.failover.len(), 1, "{side:?}");
    let f = &side.failover[0];
    assert_eq!(f.error, None, "{f:?}");
    assert!((1..=3).contains(&f.killed_leader), "{f:?}");
    assert!(f.writes_before >= 50, "{f:?}");
    let write_ms = f.write_ms.expect("a write after the kill");
    let leader_ms = f.leader_ms.expect("a new leader");
    assert!(write_ms > 0.0 && write_ms < 60_000.0, "{f:?}");
    assert!(leader_ms > 0.0 && leader_ms < 60_000.0, "{f:?}");
    assert!(
        f.new_leader.is_some_and(|id| id != f.killed_leader),
        "{f:?}"
    );
    assert_eq!(side.failover_write_median_ms(), Some(write_ms));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Rookery failover"), "{stdout}");
    assert!(c.rows.is_empty(), "no ratios with one server");
}
