//! The client's error type: ZooKeeper's error codes plus the client-side conditions.

use rookery_proto::ErrorCode;

/// Everything an operation can fail with.
///
/// The variants that mirror a ZooKeeper error code carry its name (`NoNode` is `-101 NONODE`);
/// [`Error::code`] gives the wire code back. The client adds its own conditions:
/// [`Error::ConnectionLoss`] (with whether a write may have been applied),
/// [`Error::SessionExpired`], [`Error::AuthFailed`], [`Error::ClientClosed`],
/// [`Error::InvalidArgument`] and [`Error::Timeout`].
///
/// The predicates say what a caller can do next: [`Error::is_outcome_unknown`] (a write may or may
/// not have happened: read back before retrying), [`Error::is_retryable`] (nothing happened: retry
/// as is) and [`Error::is_session_terminated`] (this session is gone: build a new client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection to the server was lost before the reply arrived.
    ///
    /// `outcome_unknown` is true when the request changes state (a write, `multi`, `setACL`,
    /// ...) and had already been sent: the server may or may not have applied it. It is false
    /// for reads, and for requests that never left the client.
    #[error("connection lost{}", if *outcome_unknown { " (the request may or may not have been applied)" } else { "" })]
    ConnectionLoss {
        /// Whether the server may have applied the request.
        outcome_unknown: bool,
    },
    /// The session expired: declared by the server, or by the client itself after it could not
    /// reach any server for the whole session timeout. Terminal for the client.
    #[error("session expired")]
    SessionExpired,
    /// An authentication packet was refused (`AUTHFAILED`, -115). Terminal for the client.
    #[error("authentication failed")]
    AuthFailed,
    /// The client was closed, by [`crate::Client::close`] or because every handle was dropped.
    #[error("the client is closed")]
    ClientClosed,
    /// More requests are waiting to be sent than the client allows
    /// ([`crate::ClientBuilder::max_queued_requests`]); nothing was queued. Retry after some of
    /// the earlier calls complete.
    #[error("too many requests waiting (limit {limit})")]
    TooManyRequests {
        /// The limit in force.
        limit: usize,
    },
    /// A recipe was asked to acquire through a handle that holds it already ([`crate::recipes`]
    /// are not re-entrant): refused at once rather than waiting on itself forever. Use the
    /// guard you have, or release it first.
    #[error("already held through this handle (recipes are not re-entrant)")]
    AlreadyHeld,
    /// An argument was refused before anything was sent (an invalid path, connect string or
    /// TLS setting).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The initial connection did not come up within the connect timeout.
    #[error("timed out connecting to {0}")]
    Timeout(String),
    /// The server sent something the client could not decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// One operation of a `multi` failed, so none was applied. `index` is its position.
    #[error("multi operation {index} failed: {source}")]
    MultiFailed {
        /// The position of the operation that failed.
        index: usize,
        /// Why it failed.
        source: Box<Error>,
    },

    /// `NONODE` (-101): the node (or, for a create, its parent) does not exist.
    #[error("no node")]
    NoNode,
    /// `NOAUTH` (-102): the ACL does not allow this.
    #[error("not authorized")]
    NoAuth,
    /// `BADVERSION` (-103): the expected version did not match.
    #[error("bad version")]
    BadVersion,
    /// `NOCHILDRENFOREPHEMERALS` (-108): ephemeral nodes cannot have children.
    #[error("ephemeral nodes cannot have children")]
    NoChildrenForEphemerals,
    /// `NODEEXISTS` (-110): the node already exists.
    #[error("node exists")]
    NodeExists,
    /// `NOTEMPTY` (-111): the node has children.
    #[error("node has children")]
    NotEmpty,
    /// `INVALIDACL` (-114): the ACL is not valid.
    #[error("invalid ACL")]
    InvalidAcl,
    /// `BADARGUMENTS` (-8): the server refused the arguments.
    #[error("bad arguments")]
    BadArguments,
    /// `UNIMPLEMENTED` (-6): the server does not implement this (for example TTL nodes with
    /// extended types turned off).
    #[error("operation not implemented by the server")]
    Unimplemented,
    /// `MARSHALLINGERROR` (-5): the server could not decode the request.
    #[error("marshalling error")]
    MarshallingError,
    /// `RUNTIMEINCONSISTENCY` (-2): a multi operation after the one that failed.
    #[error("runtime inconsistency")]
    RuntimeInconsistency,
    /// `DATAINCONSISTENCY` (-3).
    #[error("data inconsistency")]
    DataInconsistency,
    /// `SYSTEMERROR` (-1).
    #[error("system error")]
    SystemError,
    /// `OPERATIONTIMEOUT` (-7).
    #[error("operation timeout")]
    OperationTimeout,
    /// `NEWCONFIGNOQUORUM` (-13).
    #[error("new config has no quorum")]
    NewConfigNoQuorum,
    /// `RECONFIGINPROGRESS` (-14).
    #[error("reconfig in progress")]
    ReconfigInProgress,
    /// `SESSIONMOVED` (-118): the session is now owned by another connection.
    #[error("session moved")]
    SessionMoved,
    /// `NOTREADONLY` (-119): a write on a read-only server.
    #[error("the server is read-only")]
    NotReadOnly,
    /// `EPHEMERALONLOCALSESSION` (-120).
    #[error("ephemeral on a local session")]
    EphemeralOnLocalSession,
    /// `NOWATCHER` (-121): checkWatches or removeWatches found no watch.
    #[error("no such watcher")]
    NoWatcher,
    /// `REQUESTTIMEOUT` (-122).
    #[error("request timeout")]
    RequestTimeout,
    /// `RECONFIGDISABLED` (-123).
    #[error("reconfig disabled")]
    ReconfigDisabled,
    /// `SESSIONCLOSEDREQUIRESASLAUTH` (-124).
    #[error("session closed: SASL authentication required")]
    SessionClosedRequireSaslAuth,
    /// `QUOTAEXCEEDED` (-125).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// `THROTTLEDOP` (-127): the server dropped the request under load; retry with back-off.
    #[error("throttled")]
    ThrottledOp,
    /// `UNKNOWNSESSION` (-12).
    #[error("unknown session")]
    UnknownSession,
    /// `INVALIDCALLBACK` (-113).
    #[error("invalid callback")]
    InvalidCallback,
    /// `APIERROR` (-100).
    #[error("API error")]
    ApiError,
    /// A code this client does not know.
    #[error("server error code {0}")]
    Other(i32),
}

// Errors cross task boundaries.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
};

impl Error {
    /// The error for a wire code (`code` must not be 0).
    pub fn from_code(code: i32) -> Error {
        match ErrorCode::from_code(code) {
            Some(c) => match c {
                ErrorCode::Ok => Error::Other(0),
                ErrorCode::SystemError => Error::SystemError,
                ErrorCode::RuntimeInconsistency => Error::RuntimeInconsistency,
                ErrorCode::DataInconsistency => Error::DataInconsistency,
                ErrorCode::ConnectionLoss => Error::ConnectionLoss {
                    outcome_unknown: false,
                },
                ErrorCode::MarshallingError => Error::MarshallingError,
                ErrorCode::Unimplemented => Error::Unimplemented,
                ErrorCode::OperationTimeout => Error::OperationTimeout,
                ErrorCode::BadArguments => Error::BadArguments,
                ErrorCode::UnknownSession => Error::UnknownSession,
                ErrorCode::NewConfigNoQuorum => Error::NewConfigNoQuorum,
                ErrorCode::ReconfigInProgress => Error::ReconfigInProgress,
                ErrorCode::ApiError => Error::ApiError,
                ErrorCode::NoNode => Error::NoNode,
                ErrorCode::NoAuth => Error::NoAuth,
                ErrorCode::BadVersion => Error::BadVersion,
                ErrorCode::NoChildrenForEphemerals => Error::NoChildrenForEphemerals,
                ErrorCode::NodeExists => Error::NodeExists,
                ErrorCode::NotEmpty => Error::NotEmpty,
                ErrorCode::SessionExpired => Error::SessionExpired,
                ErrorCode::InvalidCallback => Error::InvalidCallback,
                ErrorCode::InvalidAcl => Error::InvalidAcl,
                ErrorCode::AuthFailed => Error::AuthFailed,
                ErrorCode::SessionMoved => Error::SessionMoved,
                ErrorCode::NotReadOnly => Error::NotReadOnly,
                ErrorCode::EphemeralOnLocalSession => Error::EphemeralOnLocalSession,
                ErrorCode::NoWatcher => Error::NoWatcher,
                ErrorCode::RequestTimeout => Error::RequestTimeout,
                ErrorCode::ReconfigDisabled => Error::ReconfigDisabled,
                ErrorCode::SessionClosedRequireSaslAuth => Error::SessionClosedRequireSaslAuth,
                ErrorCode::QuotaExceeded => Error::QuotaExceeded,
                ErrorCode::ThrottledOp => Error::ThrottledOp,
            },
            None => Error::Other(code),
        }
    }

    /// The ZooKeeper error code this error stands for, if it stands for one. Client-only
    /// conditions map to the code the Java client would use (`ConnectionLoss` to -4,
    /// `SessionExpired` to -112, `AuthFailed` to -115, `Timeout` to -7); a failed multi gives the
    /// code of the operation that failed.
    pub fn code(&self) -> Option<i32> {
        let code = match self {
            Error::ConnectionLoss { .. } => ErrorCode::ConnectionLoss,
            Error::SessionExpired => ErrorCode::SessionExpired,
            Error::AuthFailed => ErrorCode::AuthFailed,
            Error::ClientClosed
            | Error::InvalidArgument(_)
            | Error::Protocol(_)
            | Error::TooManyRequests { .. }
            | Error::AlreadyHeld => return None,
            Error::Timeout(_) => ErrorCode::OperationTimeout,
            Error::MultiFailed { source, .. } => return source.code(),
            Error::NoNode => ErrorCode::NoNode,
            Error::NoAuth => ErrorCode::NoAuth,
            Error::BadVersion => ErrorCode::BadVersion,
            Error::NoChildrenForEphemerals => ErrorCode::NoChildrenForEphemerals,
            Error::NodeExists => ErrorCode::NodeExists,
            Error::NotEmpty => ErrorCode::NotEmpty,
            Error::InvalidAcl => ErrorCode::InvalidAcl,
            Error::BadArguments => ErrorCode::BadArguments,
            Error::Unimplemented => ErrorCode::Unimplemented,
            Error::MarshallingError => ErrorCode::MarshallingError,
            Error::RuntimeInconsistency => ErrorCode::RuntimeInconsistency,
            Error::DataInconsistency => ErrorCode::DataInconsistency,
            Error::SystemError => ErrorCode::SystemError,
            Error::OperationTimeout => ErrorCode::OperationTimeout,
            Error::NewConfigNoQuorum => ErrorCode::NewConfigNoQuorum,
            Error::ReconfigInProgress => ErrorCode::ReconfigInProgress,
            Error::SessionMoved => ErrorCode::SessionMoved,
            Error::NotReadOnly => ErrorCode::NotReadOnly,
            Error::EphemeralOnLocalSession => ErrorCode::EphemeralOnLocalSession,
            Error::NoWatcher => ErrorCode::NoWatcher,
            Error::RequestTimeout => ErrorCode::RequestTimeout,
            Error::ReconfigDisabled => ErrorCode::ReconfigDisabled,
            Error::SessionClosedRequireSaslAuth => ErrorCode::SessionClosedRequireSaslAuth,
            Error::QuotaExceeded => ErrorCode::QuotaExceeded,
            Error::ThrottledOp => ErrorCode::ThrottledOp,
            Error::UnknownSession => ErrorCode::UnknownSession,
            Error::InvalidCallback => ErrorCode::InvalidCallback,
            Error::ApiError => ErrorCode::ApiError,
            Error::Other(c) => return Some(*c),
        };
        Some(code.code())
    }

    /// Whether a request that changes state may or may not have been applied: its connection
    /// was lost after it was sent and before the reply came. Read the state back before
    /// retrying (a sequential create, for instance, may have made a node already).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::ConnectionLoss {
                outcome_unknown: true
            }
        )
    }

    /// Whether this is [`Error::ConnectionLoss`], whatever the outcome.
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, Error::ConnectionLoss { .. })
    }

    /// Whether the session is gone for good: expired, refused authentication, or closed. Every
    /// later call on this client fails the same way; build a new client.
    pub fn is_session_terminated(&self) -> bool {
        matches!(
            self,
            Error::SessionExpired | Error::AuthFailed | Error::ClientClosed
        )
    }

    /// Whether retrying the same call as is cannot apply it twice: the request was lost
    /// without effect (a connection loss of a read or of an unsent request) or the server asked
    /// for a retry (`THROTTLEDOP`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::ConnectionLoss {
                outcome_unknown: false
            } | Error::ThrottledOp
                | Error::TooManyRequests { .. }
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ErrorCode::ALL {
            if *code == ErrorCode::Ok {
                continue;
            }
            let e = Error::from_code(code.code());
            assert_eq!(e.code(), Some(code.code()), "{code:?}");
        }
        assert_eq!(Error::from_code(-999), Error::Other(-999));
        assert_eq!(Error::from_code(-999).code(), Some(-999));
    }

    #[test]
    fn predicates() {
        let lost_write = Error::ConnectionLoss {
            outcome_unknown: true,
        };
        let lost_read = Error::ConnectionLoss {
            outcome_unknown: false,
        };
        assert!(lost_write.is_outcome_unknown());
        assert!(!lost_write.is_retryable());
        assert!(lost_read.is_retryable());
        assert!(!lost_read.is_outcome_unknown());
        assert!(lost_write.to_string().contains("may or may not"));
        assert!(Error::SessionExpired.is_session_terminated());
        assert!(!Error::NoNode.is_session_terminated());
        let multi = Error::MultiFailed {
            index: 1,
            source: Box::new(Error::NoNode),
        };
        assert_eq!(multi.code(), Some(-101));
    }
}
