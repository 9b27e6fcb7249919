//! Run with: `cargo run --release -p rookery-examples --example discovery_bench -- 127.0.0.1:2181`
//!
//! Measures two things of service discovery, for `docs/performance.md`:
//! - the cost of a `ServiceCache` read (`instances()`, a lock-free load), over 10 million reads;
//! - the time from a registrant's process being killed (`kill -9`: no closeSession) to its
//!   instance leaving a `ServiceCache` on another client, five times. It is the session timeout
//!   (4 s here) plus the server's expiry tick and the notification.
//!
//! `discovery_bench CONNECT register BASE ID` is the registrant (started by the bench itself).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
use rookery_client::Client;

const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let connect = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    if args.get(2).map(String::as_str) == Some("register") {
        let (base, id) = (&args[3], &args[4]);
        let client = Client::builder(&connect)
            .session_timeout(SESSION_TIMEOUT)
            .connect()
            .await?;
        let discovery = ServiceDiscovery::new(&client, base);
        discovery
            .register(&ServiceInstance::new("bench").with_id(id))
            .await?;
        println!("registered");
        // Until killed.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }

    let client = Client::connect(&connect).await?;
    let base = format!("/discovery-bench-{}", std::process::id());
    let discovery = ServiceDiscovery::new(&client, &base);
    for i in 0..10 {
        discovery
            .register(&ServiceInstance::new("bench").with_id(&format!("local-{i}")))
            .await?;
    }
    let cache = discovery.cache("bench").await?;

    let reads = 10_000_000u32;
    let start = Instant::now();
    let mut total = 0usize;
    for _ in 0..reads {
        total += std::hint::black_box(cache.instances()).len();
    }
    let per_read_ns = start.elapsed().as_nanos() as f64 / f64::from(reads);
    println!("cache read: {per_read_ns:.1} ns per instances() ({total} instances seen)");

    let me = std::env::current_exe()?;
    let mut removals = Vec::new();
    for round in 0..5 {
        let id = format!("remote-{round}");
        let mut child = Command::new(&me)
            .args([connect.as_str(), "register", base.as_str(), id.as_str()])
            .stdout(Stdio::piped())
            .spawn()
            .context("start the registrant")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        if line.trim() != "registered" {
            bail!("the registrant said {line:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.instances().iter().any(|i| i.id == id) {
            if Instant::now() > deadline {
                bail!("the cache never saw {id}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill()?; // SIGKILL: no closeSession
        let killed = Instant::now();
        let _ = child.wait();
        let deadline = killed + Duration::from_secs(30);
        while cache.instances().iter().any(|i| i.id == id) {
            if Instant::now() > deadline {
                bail!("{id} never left the cache");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = killed.elapsed().as_millis();
        println!("round {round}: removed from the cache {ms} ms after kill -9");
        removals.push(ms);
    }
    removals.sort_unstable();
    println!(
        "removal after kill -9 (session timeout {} s): median {} ms, min {} ms, max {} ms",
        SESSION_TIMEOUT.as_secs(),
        removals[removals.len() / 2],
        removals[0],
        removals[removals.len() - 1]
    );
    for i in 0..10 {
        discovery.unregister("bench", &format!("local-{i}")).await?;
    }
    client.close().await?;
    Ok(())
}
