//! Service discovery, compatible with Apache Curator's x-discovery: instances registered as
//! znodes `<base>/<name>/<id>` holding Curator's `ServiceInstance` JSON, so Java services on
//! Curator and Rust services find each other.
//!
//! - [`ServiceDiscovery`]: register, update and unregister instances (written again after a
//!   renewed session), and query names and instances.
//! - [`ServiceCache`]: an always-current, lock-free snapshot of one service's instances, on a
//!   persistent recursive watch, with an update stream.
//! - [`ServiceProvider`]: picks an instance (round robin, random, sticky), skipping disabled
//!   instances and those reported failing (Curator's down-instance policy).

mod cache;
mod instance;
mod provider;
mod service_discovery;

pub use cache::ServiceCache;
pub use instance::{ServiceInstance, ServiceType, UriPart, UriSpec};
pub use provider::{DownInstancePolicy, ServiceProvider, Strategy};
pub use service_discovery::ServiceDiscovery;
