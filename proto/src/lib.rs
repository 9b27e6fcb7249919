//! The Apache ZooKeeper client wire protocol, as pure encode and decode functions.
//!
//! # Layout
//! - [`frame`]: length-prefixed framing; "incomplete" is `Ok(None)`, never an error.
//! - [`jute`]: the jute binary archive primitives and the [`Jute`] trait.
//! - [`records`]: every record of `zookeeper.jute` the client protocol uses.
//! - [`request`] and [`response`]: bodies decoded by opcode into one enum each.
//! - [`consts`]: opcodes, error codes, watch types, create modes, permission bits.
//! - [`path`]: ZooKeeper's path rules.
//!
//! Decoding never panics and never allocates more than the frame holds, whatever the input:
//! every length is checked against the bytes that remain before anything is allocated.

pub mod consts;
pub mod error;
pub mod frame;
pub mod jute;
pub mod path;
pub mod records;
pub mod request;
pub mod response;

pub use consts::{
    perms, xid, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType,
};
pub use error::{DecodeError, FrameError, RequestError};
pub use jute::{Jute, Reader};
pub use records::*;
pub use request::{MultiOp, Request};
pub use response::{MultiResult, Response};
