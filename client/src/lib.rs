#![doc = include_str!("../README.md")]
//!
//! ## Layout
//! - [`Client`]: the cloneable session handle with every operation; [`ClientBuilder`] sets it
//!   up (hosts, chroot, timeouts, read-only, credentials, TLS).
//! - [`OneshotWatcher`] (a future) and [`PersistentWatcher`] (a stream): watches.
//! - [`MultiBuilder`] / [`MultiReadBuilder`]: `multi` and `multiRead`.
//! - [`Error`]: ZooKeeper's error codes plus the client's own conditions, with predicates.
//! - [`acl`]: predefined ACLs and digest identities; [`TlsOptions`]: rustls settings.
//! - The session itself is a state machine with no I/O (`session::state`), run by a small
//!   tokio task (`session::driver`).
//!
//! Every fallible or asynchronous public function documents its errors (`# Errors`) and what
//! dropping its future does (`# Cancellation safety`). Functions without an `# Errors` section
//! cannot fail, and synchronous ones have no cancellation concerns.

pub mod acl;
mod builder;
mod chroot;
mod client;
mod endpoint;
mod error;
mod multi;
pub mod resolve;
mod session;
mod tls;
mod types;
mod watcher;

pub use builder::ClientBuilder;
pub use client::Client;
pub use endpoint::{HostPort, DEFAULT_PORT};
pub use error::{Error, Result};
pub use multi::{MultiBuilder, MultiReadBuilder, OpResult, ReadResult};
pub use rookery_proto::{
    perms, Acl, AddWatchMode, ClientInfo, CreateMode, EventType, Id, Stat, WatcherType,
};
pub use tls::TlsOptions;
pub use types::{CreateOptions, SessionState, WatchedEvent};
pub use watcher::{OneshotWatcher, PersistentWatcher};
