//! Run with: `cargo run -p rookery-examples --example connect -- 127.0.0.1:2181`
//!
//! Connects (a connect string may list several hosts and a chroot, for example
//! `h1:2181,h2:2181/app`), prints the session, follows state changes for a few seconds, and
//! closes the session.

use std::time::Duration;

use rookery_client::{Client, SessionState};
use rookery_examples::{connect_string, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let client = Client::builder(&connect_string())
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    println!(
        "connected: session {:#x}, timeout {:?}, chroot {:?}",
        client.session_id(),
        client.session_timeout(),
        client.chroot()
    );

    // The state is a tokio watch channel: every transition wakes `changed()`.
    let mut states = client.state_watcher();
    let follower = tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            println!("state: {state:?}");
            if state.is_terminal() {
                break;
            }
        }
    });

    let ids = client.who_am_i().await?;
    for id in ids {
        println!("identity: {}:{}", id.auth_scheme, id.user);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.close().await?;
    follower.await?;
    assert_eq!(client.state(), SessionState::Closed);
    Ok(())
}
