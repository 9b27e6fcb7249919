//! Run with: `cargo run -p rookery-examples --example barrier -- 127.0.0.1:2181`
//!
//! Three workers meet at a double barrier (Curator's `DistributedDoubleBarrier` layout): none
//! starts before all have arrived, and none finishes before all are done.

use std::time::Duration;

use rookery_client::recipes::DoubleBarrier;
use rookery_client::{Client, Error};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let path = format!("/barrier-example-{}", std::process::id());
    let mut workers = Vec::new();
    for worker in 0..3u64 {
        let client = Client::connect(&connect_string()).await?;
        let path = path.clone();
        workers.push(tokio::spawn(async move {
            // Arrive at different times.
            tokio::time::sleep(Duration::from_millis(100 * worker)).await;
            let barrier = DoubleBarrier::new(&client, &path, 3);
            println!("worker {worker} waits at the barrier");
            barrier.enter(Some(Duration::from_secs(10))).await?;
            println!("worker {worker} entered: all three are here");
            tokio::time::sleep(Duration::from_millis(50 * (3 - worker))).await;
            barrier.leave(Some(Duration::from_secs(10))).await?;
            println!("worker {worker} left: all three are done");
            client.close().await?;
            Ok::<_, Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let client = Client::connect(&connect_string()).await?;
    // The barrier's node is a container: the server removes it once empty.
    let _ = client.delete(&path, None).await;
    client.close().await?;
    Ok(())
}
