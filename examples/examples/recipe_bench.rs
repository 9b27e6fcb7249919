//! Run with: `cargo run --release -p rookery-examples --example recipe_bench -- CONNECT MODE ...`
//!
//! The Rust half of `scripts/bench-recipes.sh`, which runs it beside the same modes written
//! with Curator (`examples/java/RecipeBench.java`). Modes:
//!
//! - `uncontended PATH SECONDS`: one session acquires and releases a [`Lock`] in a loop;
//!   prints `{"ops":N,"seconds":S,"ops_per_sec":X}`.
//! - `handoff PATH CONTENDERS ROUNDS`: CONTENDERS sessions contend on one lock; each new holder
//!   records the time since the previous holder called release. After CONTENDERS warm-up
//!   hand-offs, ROUNDS are measured; prints `{"count":N,"p50_us":X,"p99_us":Y}`.
//! - `latch-leader PATH ID`: joins a [`LeaderLatch`], prints `leader` once it leads, then
//!   sleeps until killed.
//! - `latch-follower PATH ID`: joins, prints `follower` once it is in the election and does not
//!   lead, then `leader UNIX_MS` the moment it leads, and exits.
//!
//! Every session has a 4 s session timeout. Logs go to stderr, filtered by `RUST_LOG`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rookery_client::recipes::{LatchState, LeaderLatch, Lock};
use rookery_client::Client;

const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

fn usage() -> anyhow::Error {
    anyhow::anyhow!(
        "usage: recipe_bench CONNECT (uncontended PATH SECONDS | handoff PATH CONTENDERS ROUNDS \
         | latch-leader PATH ID | latch-follower PATH ID)"
    )
}

async fn connect(connect: &str) -> anyhow::Result<Client> {
    let client = Client::builder(connect)
        .session_timeout(SESSION_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connecting to {connect}"))?;
    Ok(client)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The `q` quantile of sorted samples (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn uncontended(connect_to: &str, path: &str, seconds: f64) -> anyhow::Result<()> {
    let client = connect(connect_to).await?;
    // One acquire before the clock starts: it makes the lock's parents.
    Lock::new(&client, path).acquire().await?.release().await?;
    let run = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut ops: u64 = 0;
    while start.elapsed() < run {
        let guard = Lock::new(&client, path).acquire().await?;
        guard.release().await?;
        ops += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"ops\":{ops},\"seconds\":{secs:.3},\"ops_per_sec\":{:.1}}}",
        ops as f64 / secs
    );
    client.close().await?;
    Ok(())
}

/// What the contenders share.
struct Shared {
    /// When the last holder called release (set just before it does).
    released_at: Mutex<Option<Instant>>,
    /// Hand-offs seen so far (warm-up included).
    handoffs: AtomicUsize,
    /// Measured hand-off times, µs.
    samples: Mutex<Vec<u64>>,
    done: AtomicBool,
}

async fn handoff(
    connect_to: &str,
    path: &str,
    contenders: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let warmup = contenders;
    let mut clients = Vec::with_capacity(contenders);
    for _ in 0..contenders {
        clients.push(connect(connect_to).await?);
    }
    // The lock's parents, made before anyone contends.
    Lock::new(&clients[0], path)
        .acquire()
        .await?
        .release()
        .await?;
    let shared = Arc::new(Shared {
        released_at: Mutex::new(None),
        handoffs: AtomicUsize::new(0),
        samples: Mutex::new(Vec::with_capacity(rounds)),
        done: AtomicBool::new(false),
    });
    let start_line = Arc::new(tokio::sync::Barrier::new(contenders));
    let mut tasks = Vec::with_capacity(contenders);
    for client in &clients {
        let client = client.clone();
        let path = path.to_owned();
        let shared = Arc::clone(&shared);
        let start_line = Arc::clone(&start_line);
        tasks.push(tokio::spawn(async move {
            let lock = Lock::new(&client, &path);
            start_line.wait().await;
            loop {
                let guard = lock.acquire().await?;
                let now = Instant::now();
                let previous = shared.released_at.lock().expect("poisoned").take();
                if let Some(released) = previous {
                    let n = shared.handoffs.fetch_add(1, Ordering::SeqCst) + 1;
                    if n > warmup {
                        let mut samples = shared.samples.lock().expect("poisoned");
                        samples.push(now.duration_since(released).as_micros() as u64);
                        if samples.len() >= rounds {
                            shared.done.store(true, Ordering::SeqCst);
                        }
                    }
                }
                let done = shared.done.load(Ordering::SeqCst);
                if !done {
                    *shared.released_at.lock().expect("poisoned") = Some(Instant::now());
                }
                guard.release().await?;
                if done {
                    return anyhow::Ok(());
                }
            }
        }));
    }
    let wait = async {
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(600), wait)
        .await
        .context("the hand-off rounds did not end within 600 s")??;
    let mut samples = std::mem::take(&mut *shared.samples.lock().expect("poisoned"));
    samples.sort_unstable();
    println!(
        "{{\"count\":{},\"p50_us\":{},\"p99_us\":{}}}",
        samples.len(),
        quantile(&samples, 0.50),
        quantile(&samples, 0.99)
    );
    for c in clients {
        c.close().await?;
    }
    Ok(())
}

async fn latch(connect_to: &str, path: &str, id: &str, leader: bool) -> anyhow::Result<()> {
    let client = connect(connect_to).await?;
    let mut latch = LeaderLatch::start(&client, path, id);
    if leader {
        latch.await_leadership().await?;
        println!("leader");
        // Killed by the script (SIGKILL): the session ends only by expiring.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let mut states = latch.states();
    loop {
        let state = states.borrow_and_update().clone();
        match state {
            LatchState::NotLeader => break,
            LatchState::Leader(_) => bail!("the follower led before the leader was killed"),
            LatchState::Closed => bail!("the latch closed"),
            _ => {}
        }
        states.changed().await.context("the latch's state")?;
    }
    println!("follower");
    latch.await_leadership().await?;
    println!("leader {}", unix_ms());
    latch.close().await?;
    client.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rookery_examples::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [connect_to, mode, rest @ ..] = args.as_slice() else {
        return Err(usage());
    };
    match (mode.as_str(), rest) {
        ("uncontended", [path, seconds]) => {
            uncontended(connect_to, path, seconds.parse().context("SECONDS")?).await
        }
        ("handoff", [path, contenders, rounds]) => {
            let contenders: usize = contenders.parse().context("CONTENDERS")?;
            if contenders < 2 {
                bail!("CONTENDERS must be at least 2");
            }
            handoff(
                connect_to,
                path,
                contenders,
                rounds.parse().context("ROUNDS")?,
            )
            .await
        }
        ("latch-leader", [path, id]) => latch(connect_to, path, id, true).await,
        ("latch-follower", [path, id]) => latch(connect_to, path, id, false).await,
        _ => Err(usage()),
    }
}
