//! Run with: `cargo run -p rookery-examples --example watch -- 127.0.0.1:2181`
//!
//! A one-shot watch is a future; a persistent (recursive) watch is a stream. A second client
//! makes the changes that fire them. Dropping a watcher removes the watch.

use std::time::Duration;

use rookery_client::{AddWatchMode, Client, CreateOptions, PersistentEvent};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let watcher = Client::connect(&connect_string()).await?;
    let writer = Client::connect(&connect_string()).await?;
    let root = format!("/watch-example-{}", std::process::id());
    writer
        .create(&root, b"", &CreateOptions::persistent())
        .await?;

    // One-shot: exists() on a missing node fires when it is created.
    let config = format!("{root}/config");
    let (stat, created) = watcher.exists_watched(&config).await?;
    assert!(stat.is_none());

    // Persistent recursive: every create, change and delete under the root, until dropped.
    let mut subtree = watcher
        .add_watch(&root, AddWatchMode::PersistentRecursive)
        .await?;

    writer
        .create(&config, b"a=1", &CreateOptions::persistent())
        .await?;
    let event = tokio::time::timeout(Duration::from_secs(5), created).await??;
    println!(
        "one-shot watch fired: {:?} {}",
        event.event_type, event.path
    );

    writer.set_data(&config, b"a=2", None).await?;
    writer
        .create(&format!("{root}/worker"), b"", &CreateOptions::ephemeral())
        .await?;
    writer.delete(&config, None).await?;
    for _ in 0..4 {
        let item = tokio::time::timeout(Duration::from_secs(5), subtree.next())
            .await?
            .expect("the stream ends only with the session");
        match item {
            PersistentEvent::Node(event) => {
                println!("recursive watch: {:?} {}", event.event_type, event.path)
            }
            // A cache would re-read the subtree here.
            other => println!("recursive watch: {other:?}"),
        }
    }
    drop(subtree); // removes the watch on the server

    writer.close().await?; // its ephemeral node goes with it
    watcher.delete(&root, None).await?;
    watcher.close().await?;
    Ok(())
}
