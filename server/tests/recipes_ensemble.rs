//! The recipes on a real 3-member Rookery ensemble while its leader member is killed: locks
//! held and contended through the failover never have two holders, their fencing tokens only
//! grow, a semaphore of two never has three holders, and leader latches end with exactly one
//! leader.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ensemble::{Ensemble, Options};
use rookery_client::recipes::{LeaderLatch, Lock, Semaphore};
use rookery_client::Client;

const SETTLE: Duration = Duration::from_secs(30);

async fn client(connect: &str, seed: u64) -> Client {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(5))
        .rng_seed(seed)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {connect}: {e}"))
}

/// Polls `cond` every 50 ms until it holds, at most `max`.
async fn eventually(max: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + max;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {max:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_latches_stay_safe_when_the_leader_member_is_killed() {
    let mut ens = Ensemble::start(Options::new(3)).await;
    let all = ens.connect_string(&[0, 1, 2]);
    let mut clients = Vec::new();
    for seed in 0..3 {
        clients.push(client(&all, seed).await);
    }

    // Three contenders hand a lock around; each holds a few ms, or until it loses it.
    let holders = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let acquired = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in &clients {
        let lock = Lock::new(c, "/recipes/lock");
        let (holders, overlap, tokens, acquired, stop) = (
            holders.clone(),
            overlap.clone(),
            tokens.clone(),
            acquired.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut guard = match lock.try_acquire(Duration::from_secs(2)).await {
                    Ok(Some(g)) => g,
                    // A failover in the middle of an acquire: try again.
                    Ok(None) | Err(_) => continue,
                };
                if guard.is_lost() {
                    continue;
                }
                if holders.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlap.store(true, Ordering::SeqCst);
                }
                tokens.lock().unwrap().push(guard.fencing_token());
                acquired.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = guard.lost() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                holders.fetch_sub(1, Ordering::SeqCst);
                let _ = guard.release().await;
            }
        }));
    }

    // A semaphore of two leases among the same three clients.
    let lease_holders = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicBool::new(false));
    let leased = Arc::new(AtomicUsize::new(0));
    for c in &clients {
        let sem = Semaphore::new(c, "/recipes/semaphore", 2);
        let (holders, over, leased, stop) = (
            lease_holders.clone(),
            over.clone(),
            leased.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut lease = match sem.try_acquire(Duration::from_secs(2)).await {
                    Ok(Some(l)) => l,
                    Ok(None) | Err(_) => continue,
                };
                if lease.is_lost() {
                    continue;
                }
                if holders.fetch_add(1, Ordering::SeqCst) >= 2 {
                    over.store(true, Ordering::SeqCst);
                }
                leased.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = lease.lost() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                holders.fetch_sub(1, Ordering::SeqCst);
                let _ = lease.release().await;
            }
        }));
    }

    // And three latches.
    let latches: Vec<LeaderLatch> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| LeaderLatch::start(c, "/recipes/latch", &format!("p{i}")))
        .collect();
    eventually(SETTLE, "one latch leader", || {
        latches.iter().filter(|l| l.has_leadership()).count() == 1
    })
    .await;
    eventually(SETTLE, "the lock to change hands", || {
        acquired.load(Ordering::SeqCst) >= 20
    })
    .await;

    let leader = ens.leader().expect("a leader");
    ens.kill(leader);
    let killed = std::time::Instant::now();
    let before = acquired.load(Ordering::SeqCst);
    let leased_before = leased.load(Ordering::SeqCst);
    eventually(
        SETTLE,
        "the lock to change hands after the failover",
        || acquired.load(Ordering::SeqCst) >= before + 20,
    )
    .await;
    eventually(SETTLE, "leases to be taken after the failover", || {
        leased.load(Ordering::SeqCst) >= leased_before + 10
    })
    .await;
    eprintln!(
        "20 more holders {:?} after the leader was killed ({} holders in all so far)",
        killed.elapsed(),
        acquired.load(Ordering::SeqCst)
    );
    ens.wait_all_serving(SETTLE).await;
    assert_ne!(ens.leader(), Some(leader));
    eventually(
        SETTLE,
        "exactly one latch leader after the failover",
        || latches.iter().filter(|l| l.has_leadership()).count() == 1,
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(SETTLE, t)
            .await
            .expect("the contenders stop")
            .unwrap();
    }
    assert!(
        !overlap.load(Ordering::SeqCst),
        "two holders of the lock at once"
    );
    assert!(
        !over.load(Ordering::SeqCst),
        "more than two leases of the semaphore at once"
    );
    let tokens = tokens.lock().unwrap().clone();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens only grow: {tokens:?}"
    );
    for l in latches {
        l.close().await.unwrap();
    }
    for c in clients {
        let _ = c.close().await;
    }
}
