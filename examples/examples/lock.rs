//! Run with: `cargo run -p rookery-examples --example lock -- 127.0.0.1:2181`
//!
//! Three workers share one distributed lock (Curator's `InterProcessMutex` layout, so a Java
//! service on Curator could take part). Each holder writes through its guard's fence, so a
//! holder that lost the lock could not write; the fencing tokens grow with every holder.

use std::time::Duration;

use rookery_client::recipes::Lock;
use rookery_client::{Client, CreateOptions, Error};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let root = format!("/lock-example-{}", std::process::id());
    let setup = Client::connect(&connect_string()).await?;
    setup
        .create(&root, b"0", &CreateOptions::persistent())
        .await?;

    let mut workers = Vec::new();
    for worker in 0..3 {
        let client = Client::connect(&connect_string()).await?;
        let root = root.clone();
        workers.push(tokio::spawn(async move {
            let lock = Lock::new(&client, &format!("{root}/lock"));
            for _ in 0..2 {
                let mut guard = lock.acquire().await?;
                println!(
                    "worker {worker} holds the lock (fencing token {})",
                    guard.fencing_token()
                );
                // Read, then write only if still the holder: the multi checks the lock node.
                let (count, _) = client.get_data(&root).await?;
                let next = String::from_utf8_lossy(&count).parse::<u64>().unwrap_or(0) + 1;
                guard
                    .multi()
                    .set_data(&root, next.to_string().as_bytes(), None)
                    .commit()
                    .await?;
                tokio::select! {
                    loss = guard.lost() => println!("worker {worker} lost the lock: {loss:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                guard.release().await?;
            }
            client.close().await?;
            Ok::<_, Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let (count, _) = setup.get_data(&root).await?;
    println!(
        "counter: {} (6 increments, none lost)",
        String::from_utf8_lossy(&count)
    );
    setup
        .delete(&format!("{root}/lock"), None)
        .await
        .or_else(|e| match e {
            Error::NoNode => Ok(()),
            e => Err(e),
        })?;
    setup.delete(&root, None).await?;
    setup.close().await?;
    Ok(())
}
