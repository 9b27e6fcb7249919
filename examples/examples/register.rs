//! Run with: `cargo run -p rookery-examples --example register -- 127.0.0.1:2181 [NAME] [PORT]`
//!
//! Registers this process as an instance of a service (Curator x-discovery's layout, so Java
//! services using Curator find it too), and keeps the registration, across a renewed session
//! as well, until Ctrl-C or 60 s. Run `--example discover` beside it to watch it come and go.

use std::time::Duration;

use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
use rookery_client::Client;
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let mut args = std::env::args().skip(2);
    let name = args.next().unwrap_or_else(|| "demo".to_owned());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let client = Client::builder(&connect_string())
        .session_timeout(Duration::from_secs(10))
        .renew_session(true)
        .connect()
        .await?;
    let discovery = ServiceDiscovery::new(&client, "/services");
    let me = ServiceInstance::new(&name)
        .with_address("127.0.0.1", port)
        .with_uri_spec("{scheme}://{address}:{port}")
        .with_payload(serde_json::json!({ "pid": std::process::id() }));
    discovery.register(&me).await?;
    println!(
        "registered {} as {} at {}",
        name,
        me.id,
        me.uri().unwrap_or_default()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
    discovery.unregister(&name, &me.id).await?;
    println!("unregistered");
    client.close().await?;
    Ok(())
}
