//! Example programs for the Rookery client, in `examples/`:
//!
//! | Example | Shows |
//! |---|---|
//! | `connect` | connecting (hosts, chroot, timeout), session facts and state changes, closing |
//! | `crud` | create, read, conditional update and delete, with typed errors |
//! | `watch` | a one-shot watch (a future) and a persistent recursive watch (a stream) |
//! | `multi` | an atomic `multi` transaction and a `multiRead` |
//! | `demo-service` | the HTTP service of the sidecar's tests and of `examples/compose/` |
//! | `demo-client` | the compose demo's client: traffic through its sidecar, an election, a fenced lock |
//!
//! Each takes the connect string as its first argument (default `127.0.0.1:2181`); start a
//! server first with `cargo run --release -- server`.

/// The connect string from the first argument, or `127.0.0.1:2181`.
pub fn connect_string() -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2181".to_string())
}

/// Logs to stderr, filtered by `RUST_LOG` (for example `RUST_LOG=rookery_client=debug`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
}
