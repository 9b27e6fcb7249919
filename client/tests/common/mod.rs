//! The client's test support: the processes, ensembles and fault proxy of `rookery-testkit`,
//! plus servers shared by a test binary, a scenario run against each selected server
//! (`ROOKERY_TEST_SERVER=rookery|zookeeper|both`, default both), and waits on a client.
#![allow(dead_code, unreachable_pub)]

pub use rookery_testkit::*;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use rookery_client::{Client, SessionState};

/// The server of `kind` shared by every test of this binary (started on first use).
pub fn shared(kind: Kind) -> SocketAddr {
    static ROOKERY: OnceLock<Proc> = OnceLock::new();
    static ZOOKEEPER: OnceLock<Proc> = OnceLock::new();
    match kind {
        Kind::Rookery => ROOKERY.get_or_init(|| start_rookery(&[])).addr,
        Kind::Program => panic!("not a server"),
        Kind::ZooKeeper => {
            ZOOKEEPER
                .get_or_init(|| start_zookeeper(ZkOptions::default()))
                .addr
        }
    }
}

/// Runs `scenario` against each selected server (shared servers), naming the server on failure.
pub async fn each_server<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Kind, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    for kind in selected() {
        let addr = tokio::task::spawn_blocking(move || shared(kind))
            .await
            .unwrap();
        eprintln!("--- {test} against {kind:?} at {addr}");
        scenario(kind, addr).await;
    }
}

/// A unique root path for one test run.
pub fn unique_root(name: &str) -> String {
    format!("/{name}-{}", rand::random::<u32>())
}

/// Connects a client with a short timeout suitable for tests.
pub async fn connect(addr: SocketAddr) -> Client {
    Client::builder(&addr.to_string())
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

/// A fault proxy in front of `addr` and a client through it with a short (4 s) session that is
/// renewed when lost: the set-up of the tests that cut a client off.
pub async fn renewing_behind_proxy(addr: SocketAddr) -> (proxy::Proxy, Client) {
    let proxy = proxy::Proxy::start(addr).await;
    let client = Client::builder(&proxy.addr.to_string())
        .session_timeout(Duration::from_secs(4))
        .renew_session(true)
        .connect()
        .await
        .unwrap();
    (proxy, client)
}

/// Waits (bounded) until the client's state is `want`.
pub async fn wait_state(client: &Client, want: SessionState, max: Duration) {
    let mut rx = client.state_watcher();
    let res = tokio::time::timeout(max, async {
        loop {
            if *rx.borrow_and_update() == want {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        res.is_ok() && client.state() == want,
        "state {:?}, waited {max:?} for {want:?}",
        client.state()
    );
}
