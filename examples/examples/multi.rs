//! Run with: `cargo run -p rookery-examples --example multi -- 127.0.0.1:2181`
//!
//! An atomic `multi` (all operations or none) and a `multiRead` (independent reads, each with
//! its own result).

use rookery_client::{Client, CreateOptions, Error, OpResult, ReadResult};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let client = Client::connect(&connect_string()).await?;
    let root = format!("/multi-example-{}", std::process::id());
    let (_, stat) = client
        .create2(&root, b"0", &CreateOptions::persistent())
        .await?;

    // Move a counter and record the move atomically, guarded by the version we read.
    let results = client
        .multi()
        .check(&root, stat.version)
        .set_data(&root, b"1", Some(stat.version))
        .create(
            &format!("{root}/log-"),
            b"0->1",
            &CreateOptions::new(rookery_client::CreateMode::PersistentSequential),
        )
        .commit()
        .await?;
    for r in &results {
        match r {
            OpResult::Create { path, .. } => println!("created {path}"),
            OpResult::SetData(stat) => println!("set data, version {}", stat.version),
            OpResult::Check => println!("version check passed"),
            other => println!("{other:?}"),
        }
    }

    // The same transaction again fails on the stale check, and changes nothing.
    let err = client
        .multi()
        .check(&root, stat.version)
        .set_data(&root, b"2", None)
        .commit()
        .await
        .unwrap_err();
    match err {
        Error::MultiFailed { index, source } => {
            println!("operation {index} failed: {source}; nothing was applied")
        }
        other => return Err(other.into()),
    }

    // multiRead: a missing node fails only its own read.
    let reads = client
        .multi_read()
        .get_data(&root)
        .get_children(&root)
        .get_data(&format!("{root}/missing"))
        .execute()
        .await?;
    for r in reads {
        match r {
            Ok(ReadResult::Data { data, stat }) => {
                println!(
                    "data {:?} (version {})",
                    String::from_utf8_lossy(&data),
                    stat.version
                )
            }
            Ok(ReadResult::Children(c)) => println!("children {c:?}"),
            Ok(other) => println!("{other:?}"),
            Err(e) => println!("read failed: {e}"),
        }
    }

    for child in client.get_children(&root).await? {
        client.delete(&format!("{root}/{child}"), None).await?;
    }
    client.delete(&root, None).await?;
    client.close().await?;
    Ok(())
}
