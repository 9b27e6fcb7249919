//! The session: a sans-io state machine ([`state`]) run by a thin tokio task ([`driver`]).

pub(crate) mod backoff;
pub(crate) mod driver;
pub(crate) mod state;
pub(crate) mod watch;
