#![doc = include_str!("../README.md")]
//!
//! ## Layout
//! - [`Client`]: the cloneable session handle with every operation; [`ClientBuilder`] sets it
//!   up (hosts, chroot, timeouts, read-only, credentials, TLS).
//! - [`SessionEvents`]: the lossless stream of connection and session events, with session
//!   generations.
//! - [`OneshotWatcher`] (a future) and [`PersistentWatcher`] (a stream of [`PersistentEvent`]):
//!   watches.
//! - [`RetryPolicy`]: back-off as a value, retrying only what is safe; [`names`]: protected
//!   names and sequence numbers as Curator makes them.
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
pub mod discovery;
mod endpoint;
mod error;
mod events;
mod feed;
mod multi;
pub mod names;
mod protected;
pub mod recipes;
pub mod resolve;
mod retry;
mod session;
mod tls;
mod types;
mod watcher;

pub use builder::ClientBuilder;
pub use client::Client;
pub use endpoint::{HostPort, DEFAULT_PORT};
pub use error::{Error, Result};
pub use events::SessionEvents;
pub use multi::{MultiBuilder, MultiReadBuilder, OpResult, ReadResult};
pub use retry::RetryPolicy;
pub use rookery_proto::{
    perms, Acl, AddWatchMode, ClientInfo, CreateMode, EventType, Id, Stat, WatcherType,
};
pub use tls::TlsOptions;
pub use types::{
    CreateOptions, LossReason, PersistentEvent, SessionEvent, SessionEventKind, SessionState,
    WatchedEvent,
};
pub use watcher::{OneshotWatcher, PersistentWatcher};
