//! Decoding errors. "Not enough bytes yet" is not among them: framing reports it as `Ok(None)`.

use thiserror::Error;

/// Why a frame's contents could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ended inside a value.
    #[error("frame ended inside a value")]
    UnexpectedEof,
    /// A length or count other than -1 was negative.
    #[error("negative length {0}")]
    NegativeLength(i32),
    /// A record was followed by bytes that belong to nothing.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// A field held a value outside its domain.
    #[error("invalid {field}: {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

/// Why a frame could not be taken off the stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix was negative or larger than the configured limit.
    #[error("frame length {len} is outside 0..={max}")]
    BadLength {
        /// The length prefix as sent.
        len: i64,
        /// The limit in force.
        max: usize,
    },
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The opcode is not one ZooKeeper defines for clients.
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    /// The body did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}
