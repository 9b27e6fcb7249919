//! Run with: `cargo run -p rookery-examples --example election -- 127.0.0.1:2181`
//!
//! Three participants join a leader latch (Curator's `LeaderLatch` layout). The leader leaves,
//! and the next one takes over with a larger fencing token.

use std::time::Duration;

use rookery_client::recipes::LeaderLatch;
use rookery_client::Client;
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let path = format!("/election-example-{}", std::process::id());
    let mut clients = Vec::new();
    let mut latches = Vec::new();
    for i in 0..3 {
        let client = Client::connect(&connect_string()).await?;
        latches.push(LeaderLatch::start(
            &client,
            &path,
            &format!("participant-{i}"),
        ));
        clients.push(client);
    }
    // Wait until one leads.
    let leader = loop {
        if let Some(i) = latches.iter().position(LeaderLatch::has_leadership) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first = latches[leader].await_leadership().await?;
    println!(
        "leader: participant-{leader} (token {}); participants: {:?}",
        first.token(),
        latches[0]
            .participants()
            .await?
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
    );

    latches.remove(leader).close().await?;
    let next = loop {
        if let Some(i) = latches.iter().position(LeaderLatch::has_leadership) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = latches[next].await_leadership().await?.token();
    println!(
        "new leader: {} (token {token}, larger than {})",
        latches[next]
            .leader()
            .await?
            .map(|p| p.id)
            .unwrap_or_default(),
        first.token()
    );
    for latch in latches {
        latch.close().await?;
    }
    for client in clients {
        client.close().await?;
    }
    Ok(())
}
