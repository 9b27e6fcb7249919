//! Linearizable `sync` and reads with real processes (reliability defect 5): a leader cut off
//! from its followers keeps believing it leads until syncLimit runs out, and meanwhile the
//! others elect a new leader and acknowledge writes. A plain read on the old leader is stale
//! then (ZooKeeper promises no more); `sync` then a read, and any read with
//! `linearizableReads=true`, must never be.

mod common;

use std::time::{Duration, Instant};

use common::ensemble::{Ensemble, Options};
use common::ensemble_client as client;
use rookery_client::{Client, CreateMode, CreateOptions};

const SETTLE: Duration = Duration::from_secs(30);
/// How long the cut-off leader is watched while it still believes it leads: well inside its
/// syncLimit (60 ticks of 100 ms).
const WATCH: Duration = Duration::from_millis(1500);

fn persistent() -> CreateOptions {
    CreateOptions::new(CreateMode::Persistent)
}

/// A proxied 3-member ensemble whose members give up on a silent quorum only after 6 s, and
/// `/x` = "old" on every member.
async fn ensemble(extra: &[(&str, &str)]) -> (Ensemble, Client) {
    let mut opts = Options::new(3);
    opts.proxied = true;
    opts.tick_ms = 100;
    opts.extra = [("syncLimit", "60"), ("initLimit", "60")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ens = Ensemble::start(opts).await;
    let c = client(&ens.connect_string(&[0, 1, 2])).await;
    c.create("/x", b"old", &persistent()).await.unwrap();
    ens.wait_converged(SETTLE).await;
    (ens, c)
}

/// Cuts the leader off, waits for the others to elect a new one and acknowledge `/x` = "new",
/// and returns the old leader's index (which still reports itself leader).
async fn depose(ens: &Ensemble) -> usize {
    let old = ens.leader().unwrap();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    ens.isolate(old);
    let deadline = Instant::now() + SETTLE;
    while !majority
        .iter()
        .any(|&i| ens.members[i].mode().as_deref() == Some("leader"))
    {
        assert!(Instant::now() < deadline, "no new leader:\n{}", ens.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writer = client(&ens.connect_string(&majority)).await;
    writer.set_data("/x", b"new", None).await.unwrap();
    let _ = writer.close().await;
    assert_eq!(
        ens.members[old].mode().as_deref(),
        Some("leader"),
        "the cut-off leader stepped down too early for the test to mean anything"
    );
    old
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_never_answers_sync_then_read_with_a_stale_value() {
    let (ens, c) = ensemble(&[]).await;
    let old = ens.leader().unwrap();
    let stale = client(&ens.connect_string(&[old])).await;
    assert_eq!(depose(&ens).await, old);

    // A plain read is served locally: stale, as ZooKeeper allows (this shows the window is open).
    let (plain, _) = stale.get_data("/x").await.unwrap();
    assert_eq!(plain, b"old");
    // sync + read waits for a quorum round the cut-off leader cannot complete: it fails once the
    // leader steps down (or is still waiting), but never answers "old".
    let read = stale.linearizable("/x", |c| c.get_data("/x"));
    if let Ok(Ok((data, _))) = tokio::time::timeout(WATCH, read).await {
        panic!(
            "sync then read answered {:?} on a deposed leader",
            String::from_utf8_lossy(&data)
        );
    }
    let _ = (c.close().await, stale.close().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_linearizable_reads_a_deposed_leader_never_answers_a_plain_read_stale() {
    let (ens, c) = ensemble(&[("linearizableReads", "true")]).await;
    let old = ens.leader().unwrap();
    let stale = client(&ens.connect_string(&[old])).await;
    // Reads work (and see the newest data) while the ensemble is healthy, on every member.
    for i in 0..3 {
        let m = client(&ens.connect_string(&[i])).await;
        let (data, _) = m.get_data("/x").await.unwrap();
        assert_eq!(data, b"old");
        let _ = m.close().await;
    }
    assert_eq!(depose(&ens).await, old);
    if let Ok(Ok((data, _))) = tokio::time::timeout(WATCH, stale.get_data("/x")).await {
        panic!(
            "a read answered {:?} on a deposed leader",
            String::from_utf8_lossy(&data)
        );
    }
    let _ = (c.close().await, stale.close().await);
}

/// On a healthy ensemble, linearizable reads through every member see every write acknowledged
/// before them, and a session's requests are answered in order around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_see_every_earlier_write_from_any_member() {
    let (ens, c) = ensemble(&[]).await;
    let readers: Vec<Client> = one_client_per_member(&ens).await;
    for round in 0..30u32 {
        let value = round.to_string();
        c.set_data("/x", value.as_bytes(), None).await.unwrap();
        for r in &readers {
            let (data, _) = r.linearizable("/x", |c| c.get_data("/x")).await.unwrap();
            assert_eq!(data, value.as_bytes(), "round {round}");
        }
    }
    // Pipelined: a write queued behind a sync is answered after it, in order.
    let r = &readers[0];
    let synced = r.sync("/x");
    let write = r.set_data("/x", b"last", None);
    let read = r.get_data("/x");
    let (s, w, (data, _)) = (synced.await, write.await, read.await.unwrap());
    s.unwrap();
    w.unwrap();
    assert_eq!(data, b"last");
    for r in readers {
        let _ = r.close().await;
    }
    let _ = c.close().await;
}

async fn one_client_per_member(ens: &Ensemble) -> Vec<Client> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(client(&ens.connect_string(&[i])).await);
    }
    out
}

/// With `linearizableReads`, a session's pipelined reads each wait for a confirmed commit point
/// without waiting for one another, and a write among them is answered in its place: the reads
/// before it see the old value, those after it the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_linearizable_reads_are_answered_in_order_around_a_write() {
    let (ens, c) = ensemble(&[("linearizableReads", "true")]).await;
    let leader = ens.leader().unwrap();
    for i in 0..3 {
        let s = client(&ens.connect_string(&[i])).await;
        let before: Vec<_> = (0..50).map(|_| s.get_data("/x")).collect();
        let value = format!("from {i}");
        let write = s.set_data("/x", value.as_bytes(), None);
        let after: Vec<_> = (0..50).map(|_| s.get_data("/x")).collect();
        let expected_before = if i == 0 {
            "old".to_string()
        } else {
            format!("from {}", i - 1)
        };
        for r in before {
            let (data, _) = r.await.unwrap();
            assert_eq!(
                data,
                expected_before.as_bytes(),
                "member {i} (leader {leader})"
            );
        }
        write.await.unwrap();
        for r in after {
            let (data, _) = r.await.unwrap();
            assert_eq!(data, value.as_bytes(), "member {i} (leader {leader})");
        }
        let _ = s.close().await;
    }
    let _ = c.close().await;
}
