//! A failed fsync or a full disk: the server stops acknowledging writes and stops with an error
//! (the binary then exits non-zero). It never retries and carries on. Runs the server in-process
//! over the crash-modelling in-memory backend, which injects the faults.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rookery_server::storage::MemBackend;
use rookery_server::{Config, RunError};
use tokio_util::sync::CancellationToken;

async fn serve(
    backend: MemBackend,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), RunError>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = Config {
        data_dir: "/mem/data".into(),
        data_log_dir: "/mem/data".into(),
        prealloc_bytes: 64 * 1024,
        ..Config::default()
    };
    let task = tokio::spawn(rookery_server::run_with_backend(
        cfg,
        Some(listener),
        CancellationToken::new(),
        Arc::new(backend),
    ));
    (addr, task)
}

async fn stops_acknowledging(backend: MemBackend, inject: impl FnOnce(&MemBackend)) -> String {
    let (addr, task) = serve(backend.clone()).await;
    let mut c = Client::connect(addr).await;
    for i in 0..20 {
        assert_eq!(
            c.call(create(&format!("/ok{i}"), &[7; 100], 0)).await.err(),
            0
        );
    }
    inject(&backend);
    // The write that hits the fault is never acknowledged: the connection closes instead.
    let reply = c.try_call(create("/doomed", &[7; 100_000], 0)).await;
    assert!(
        reply.is_none(),
        "a write was acknowledged after the fault: {reply:?}"
    );
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server did not stop")
        .unwrap();
    let err = result.expect_err("the server must stop with an error");
    // Nothing after the fault is in the durable image, and everything before it is.
    let after = backend.crash(1);
    let recovered = rookery_server::storage::recovery::recover(
        &after,
        "/mem/data".as_ref(),
        "/mem/data".as_ref(),
    )
    .unwrap();
    assert!(recovered.tree.get("/ok19").is_some());
    assert!(recovered.tree.get("/doomed").is_none());
    err.to_string()
}

#[tokio::test]
async fn a_failed_fsync_stops_the_server() {
    let err = stops_acknowledging(MemBackend::new(), MemBackend::fail_syncs).await;
    assert!(
        err.contains("injected EIO") && err.contains("fdatasync"),
        "{err}"
    );
}

#[tokio::test]
async fn a_full_disk_stops_the_server() {
    let err = stops_acknowledging(MemBackend::new(), |b| b.set_capacity(64 * 1024 + 4096)).await;
    assert!(err.contains("ENOSPC"), "{err}");
}
