//! Run with: `cargo run -p rookery-examples --example discover -- 127.0.0.1:2181 [NAME]`
//!
//! Watches a service's instances with a `ServiceCache` (a lock-free snapshot kept current by a
//! persistent watch) and prints every change for 60 s, picking an instance by round robin each
//! time.

use std::time::Duration;

use rookery_client::discovery::{ServiceDiscovery, ServiceProvider, Strategy};
use rookery_client::Client;
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let name = std::env::args().nth(2).unwrap_or_else(|| "demo".to_owned());
    let client = Client::connect(&connect_string()).await?;
    let discovery = ServiceDiscovery::new(&client, "/services");
    println!("services now: {:?}", discovery.query_names().await?);
    let cache = discovery.cache(&name).await?;
    let mut updates = cache.updates();
    let provider = ServiceProvider::new(discovery.cache(&name).await?, Strategy::RoundRobin);
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        let instances = cache.instances();
        println!(
            "{name}: {:?}; next pick: {:?}",
            instances
                .iter()
                .map(|i| (i.id.as_str(), i.uri().unwrap_or_default()))
                .collect::<Vec<_>>(),
            provider.instance().map(|i| i.id)
        );
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { break },
            _ = &mut deadline => break,
        }
    }
    client.close().await?;
    Ok(())
}
