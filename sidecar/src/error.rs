//! The sidecar's errors: what stops it from starting or running. Per-request failures are
//! [`crate::layers::ProxyError`], answered to the caller with a status.

/// A sidecar error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong (the message names the key).
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A sidecar result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
