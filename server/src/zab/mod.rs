//! The ZAB consensus core: fast leader election, discovery, synchronization and broadcast, as a
//! sans-io state machine ([`Node`]).
//!
//! The core never touches a socket, a file, a thread or a clock (a test enforces it,
//! `server/tests/zab_purity.rs`). Time arrives as [`Input::Tick`]s, messages as
//! [`Input::Message`]s, durability as [`Input::Persisted`]; everything the server must do comes
//! back as [`Action`]s: messages to send, store operations (append, truncate, install a snapshot,
//! write the epoch files), commits to apply, role changes. The only randomness is a seeded
//! generator. So the same code runs in the server and in the deterministic simulator
//! (`server/tests/sim.rs`), which runs whole ensembles of it under crashes, lost writes and a
//! hostile network.
//!
//! # Using it
//! 1. Read the durable state ([`DurableState`]: epoch files, snapshot zxid, log records after it)
//!    and make a [`Node`].
//! 2. Call [`Node::step`] for every tick, message and completed store operation, and perform the
//!    returned [`Action`]s in order: send messages (per peer in order; losing some is fine),
//!    execute [`StoreOp`]s one after another, each durable before the next, reporting progress
//!    with [`Input::Persisted`], apply [`Action::Commit`] entries in order.
//! 3. As leader ([`RoleChange::Leading`]), propose with [`Node::propose`]; a proposal is
//!    committed when an [`Action::Commit`] containing its zxid comes out. Followers forward
//!    writes to the leader.
//!
//! # Layout
//! - [`node`]: [`Node`], its inputs and actions, durability bookkeeping shared by every role.
//! - `election`: fast leader election.
//! - `leader`: discovery, synchronization and broadcast, the leader's side.
//! - `learner`: the same, the follower's and observer's side.
//! - `sync`: choosing DIFF, TRUNC or SNAP for a learner.
//! - `log`: the in-memory view of the history.
//! - [`message`] and [`wire`]: peer messages and their codec.
//! - [`config`], [`error`], [`zxid`].
//! - `invariants`: [`Node::check_invariants`].
//!
//! The protocol as implemented, its invariants and what is not done yet are described in
//! `docs/consensus.md`.

pub mod config;
mod election;
pub mod error;
mod invariants;
mod leader;
mod learner;
mod log;
pub mod message;
pub mod node;
mod read_index;
mod rng;
mod sync;
pub mod wire;
pub mod zxid;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use error::{
    ConfigError, DecodeError, DurableStateError, InvariantViolation, NodeError, ProposeError,
};
pub use message::{AckEpoch, Entry, Message, Notification, Packet, PeerId, ServerState, Vote};
pub use node::{Action, DurableState, Input, Node, RoleChange, Status, StoreOp};
pub use zxid::{Zxid, MAX_EPOCH};
