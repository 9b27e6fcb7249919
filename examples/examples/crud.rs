//! Run with: `cargo run -p rookery-examples --example crud -- 127.0.0.1:2181`
//!
//! Creates, reads, updates (with a version check) and deletes nodes, and shows how the typed
//! errors are handled.

use rookery_client::{Client, CreateMode, CreateOptions, Error};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let client = Client::connect(&connect_string()).await?;
    let root = format!("/crud-example-{}", std::process::id());

    let (path, stat) = client
        .create2(&root, b"v1", &CreateOptions::persistent())
        .await?;
    println!("created {path} (version {})", stat.version);

    // Sequential children get a 10-digit suffix; ephemeral ones vanish with the session.
    for _ in 0..3 {
        let child = client
            .create(
                &format!("{root}/job-"),
                b"",
                &CreateOptions::new(CreateMode::PersistentSequential),
            )
            .await?;
        println!("created {child}");
    }
    let eph = client
        .create(&format!("{root}/me"), b"", &CreateOptions::ephemeral())
        .await?;
    println!("created ephemeral {eph}");
    println!("children: {:?}", client.get_children(&root).await?);

    // Conditional update: only if nobody changed the node since we read it.
    let (data, stat) = client.get_data(&root).await?;
    println!("{root} = {:?}", String::from_utf8_lossy(&data));
    let stat = client.set_data(&root, b"v2", Some(stat.version)).await?;
    println!("updated to version {}", stat.version);
    match client.set_data(&root, b"v3", Some(0)).await {
        Err(Error::BadVersion) => println!("stale version refused, as expected"),
        other => println!("unexpected: {other:?}"),
    }
    match client
        .create(&root, b"", &CreateOptions::persistent())
        .await
    {
        Err(Error::NodeExists) => println!("{root} already exists, as expected"),
        other => println!("unexpected: {other:?}"),
    }

    // A lost connection tells whether a write may have happened.
    if let Err(e) = client.set_data(&root, b"v3", None).await {
        if e.is_outcome_unknown() {
            println!("the write may or may not have happened: read it back");
        }
        return Err(e.into());
    }

    // Delete everything (children first).
    for child in client.get_children(&root).await? {
        client.delete(&format!("{root}/{child}"), None).await?;
    }
    client.delete(&root, None).await?;
    println!(
        "deleted {root}; exists now: {:?}",
        client.exists(&root).await?
    );
    client.close().await?;
    Ok(())
}
