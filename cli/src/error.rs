//! [`CliError`]: why a command failed, in one line that starts with ZooKeeper's name for it.

use std::time::Duration;

use rookery_client::Error as ZkError;

/// What a command was doing when the server refused it: the same error code means different
/// things for different operations (`NoNode` on a create is about the parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Delete,
    Read,
    Write,
    SetAcl,
    Watch,
    Auth,
}

/// Why a command failed. Its `Display` is one line, `Name: explanation`, where `Name` is
/// ZooKeeper's (`NoNode`, `BadVersion`, `ConnectionLoss`, ...) or the shell's own (`Usage`,
/// `UnknownCommand`); [`CliError::name`] and [`CliError::message`] give the two halves for
/// `--json`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The server (or the client library, for a session that is gone) refused an operation.
    #[error("{}: {}", zk_name(source), explain(source, *op, path))]
    Zk {
        /// The client's error.
        source: ZkError,
        /// What was being done.
        op: Op,
        /// The path as the user typed it.
        path: String,
    },
    /// The command's arguments do not fit its grammar.
    #[error("Usage: {usage}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Usage {
        /// The command's usage line.
        usage: &'static str,
        /// What was wrong, when known.
        reason: Option<String>,
    },
    /// No such command.
    #[error("UnknownCommand: {0} (help lists the commands)")]
    UnknownCommand(String),
    /// An ACL argument that is not `scheme:id:perms[,...]`.
    #[error("InvalidACL: {0}")]
    BadAcl(String),
    /// An argument the command cannot use.
    #[error("BadArguments: {0}")]
    BadArgument(String),
    /// No reply within the request timeout.
    #[error("RequestTimeout: no reply for {path} within {} (a write may still be applied)", millis(*timeout))]
    Timeout {
        /// The path of the request.
        path: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// There is no session: `close` closed it, or connecting failed.
    #[error("ConnectionLoss: not connected (connect host:port opens a session)")]
    NotConnected,
    /// The first connection did not come up.
    #[error("ConnectionLoss: cannot connect to {connect}: {reason}")]
    Connect {
        /// The connect string.
        connect: String,
        /// Why.
        reason: String,
    },
    /// Ctrl-C stopped the command (its requests may still run on the server).
    #[error("Interrupted: the command was stopped (a write may still be applied)")]
    Interrupted,
    /// A local file could not be read.
    #[error("IOError: {what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

// Errors cross task boundaries (watch tasks, the runtime).
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CliError>();
};

impl CliError {
    pub(crate) fn zk(source: ZkError, op: Op, path: &str) -> CliError {
        CliError::Zk {
            source,
            op,
            path: path.to_owned(),
        }
    }

    /// The error's name: ZooKeeper's for server errors (`NoNode`), the shell's otherwise
    /// (`Usage`, `UnknownCommand`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            CliError::Zk { source, .. } => zk_name(source),
            CliError::Usage { .. } => "Usage",
            CliError::UnknownCommand(_) => "UnknownCommand",
            CliError::BadAcl(_) => "InvalidACL",
            CliError::BadArgument(_) => "BadArguments",
            CliError::Timeout { .. } => "RequestTimeout",
            CliError::NotConnected | CliError::Connect { .. } => "ConnectionLoss",
            CliError::Interrupted => "Interrupted",
            CliError::Io { .. } => "IOError",
        }
    }

    /// The explanation after the name.
    pub(crate) fn message(&self) -> String {
        let line = self.to_string();
        match line.split_once(": ") {
            Some((_, message)) => message.to_owned(),
            None => line,
        }
    }

    /// ZooKeeper's numeric code, for server errors.
    pub(crate) fn code(&self) -> Option<i32> {
        match self {
            CliError::Zk { source, .. } => source.code(),
            CliError::Timeout { .. } => Some(-122),
            CliError::NotConnected | CliError::Connect { .. } => Some(-4),
            CliError::BadAcl(_) => Some(-114),
            _ => None,
        }
    }
}

fn millis(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// ZooKeeper's name for an error code (`KeeperException.Code`, in the camel case its messages
/// use), and names in the same style for the client's own conditions.
fn zk_name(e: &ZkError) -> &'static str {
    match e {
        ZkError::ConnectionLoss { .. } | ZkError::Timeout(_) => "ConnectionLoss",
        ZkError::SessionExpired => "SessionExpired",
        ZkError::AuthFailed => "AuthFailed",
        ZkError::ClientClosed => "SessionClosed",
        ZkError::TooManyRequests { .. } => "TooManyRequests",
        ZkError::InvalidArgument(_) | ZkError::BadArguments => "BadArguments",
        ZkError::Protocol(_) | ZkError::MarshallingError => "MarshallingError",
        ZkError::MultiFailed { source, .. } => zk_name(source),
        ZkError::NoNode => "NoNode",
        ZkError::NoAuth => "NoAuth",
        ZkError::BadVersion => "BadVersion",
        ZkError::NoChildrenForEphemerals => "NoChildrenForEphemerals",
        ZkError::NodeExists => "NodeExists",
        ZkError::NotEmpty => "NotEmpty",
        ZkError::InvalidAcl => "InvalidACL",
        ZkError::Unimplemented => "Unimplemented",
        ZkError::RuntimeInconsistency => "RuntimeInconsistency",
        ZkError::DataInconsistency => "DataInconsistency",
        ZkError::OperationTimeout => "OperationTimeout",
        ZkError::NewConfigNoQuorum => "NewConfigNoQuorum",
        ZkError::ReconfigInProgress => "ReconfigInProgress",
        ZkError::SessionMoved => "SessionMoved",
        ZkError::NotReadOnly => "NotReadOnly",
        ZkError::EphemeralOnLocalSession => "EphemeralOnLocalSession",
        ZkError::NoWatcher => "NoWatcher",
        ZkError::RequestTimeout => "RequestTimeout",
        ZkError::ReconfigDisabled => "ReconfigDisabled",
        ZkError::SessionClosedRequireSaslAuth => "SessionClosedRequireSaslAuth",
        ZkError::QuotaExceeded => "QuotaExceeded",
        ZkError::ThrottledOp => "Throttled",
        ZkError::UnknownSession => "UnknownSession",
        ZkError::InvalidCallback => "InvalidCallback",
        ZkError::ApiError => "APIError",
        _ => "SystemError",
    }
}

/// One line on what the error means for this operation on `path`, and what to do about it.
fn explain(e: &ZkError, op: Op, path: &str) -> String {
    match e {
        ZkError::NoNode if op == Op::Create => format!("the parent of {path} does not exist"),
        ZkError::NoNode => format!("{path} does not exist"),
        ZkError::NodeExists => format!("{path} already exists"),
        ZkError::BadVersion if op == Op::SetAcl => {
            format!("the ACL of {path} is not at the version given")
        }
        ZkError::BadVersion => format!("{path} is not at the version given"),
        ZkError::NotEmpty => format!("{path} has children (deleteall deletes a subtree)"),
        // Creating and deleting a node are checked against its parent's ACL.
        ZkError::NoAuth if op == Op::Create => format!(
            "the ACL of the parent of {path} does not allow creating it (addauth adds credentials)"
        ),
        ZkError::NoAuth if op == Op::Delete => format!(
            "the ACL of the parent of {path} does not allow deleting it (addauth adds credentials)"
        ),
        ZkError::NoAuth => {
            format!("the ACL of {path} does not allow this (addauth adds credentials)")
        }
        ZkError::InvalidAcl => {
            format!("the ACL given for {path} is not valid (an auth: entry needs addauth first)")
        }
        ZkError::NoChildrenForEphemerals => {
            format!("the parent of {path} is ephemeral and cannot have children")
        }
        ZkError::ConnectionLoss { outcome_unknown } => format!(
            "the connection to the server was lost{}",
            if *outcome_unknown {
                " (the request may or may not have been applied)"
            } else {
                ""
            }
        ),
        ZkError::SessionExpired => "the session expired (connect opens a new one)".to_owned(),
        ZkError::AuthFailed => {
            "the server refused the credentials and closed the session".to_owned()
        }
        ZkError::ClientClosed => "the session is closed (connect opens a new one)".to_owned(),
        ZkError::Unimplemented if op == Op::Create => "the server does not support this \
             kind of node (TTL nodes need zookeeper.extendedTypesEnabled=true)"
            .to_owned(),
        ZkError::Unimplemented => "the server does not implement this operation".to_owned(),
        ZkError::BadArguments => format!("the server refused the arguments for {path}"),
        ZkError::InvalidArgument(why) => why.clone(),
        ZkError::NotReadOnly => "the server is read-only".to_owned(),
        ZkError::NoWatcher => format!("no such watch on {path}"),
        ZkError::QuotaExceeded => format!("{path} is over its quota"),
        ZkError::MultiFailed { source, .. } => explain(source, op, path),
        other => format!("{other} ({path})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_that_starts_with_the_name() {
        let errors = [
            CliError::zk(ZkError::NoNode, Op::Read, "/a"),
            CliError::zk(ZkError::NoNode, Op::Create, "/a/b"),
            CliError::zk(ZkError::NodeExists, Op::Create, "/a"),
            CliError::zk(ZkError::BadVersion, Op::Write, "/a"),
            CliError::zk(ZkError::NotEmpty, Op::Delete, "/a"),
            CliError::zk(ZkError::NoAuth, Op::Read, "/a"),
            CliError::zk(ZkError::InvalidAcl, Op::SetAcl, "/a"),
            CliError::zk(
                ZkError::ConnectionLoss {
                    outcome_unknown: true,
                },
                Op::Write,
                "/a",
            ),
            CliError::zk(ZkError::Other(-999), Op::Read, "/a"),
            CliError::Usage {
                usage: "ls [-s] [-w] [-R] path",
                reason: Some("missing path".into()),
            },
            CliError::UnknownCommand("bogus".into()),
            CliError::BadAcl("x does not have the form scheme:id:perm".into()),
            CliError::Timeout {
                path: "/a".into(),
                timeout: Duration::from_secs(15),
            },
            CliError::NotConnected,
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with(&format!("{}: ", e.name())), "{line}");
            assert_eq!(format!("{}: {}", e.name(), e.message()), line);
        }
    }

    #[test]
    fn explanations_depend_on_the_operation() {
        assert_eq!(
            CliError::zk(ZkError::NoNode, Op::Read, "/a").to_string(),
            "NoNode: /a does not exist"
        );
        assert_eq!(
            CliError::zk(ZkError::NoNode, Op::Create, "/a/b").to_string(),
            "NoNode: the parent of /a/b does not exist"
        );
        assert_eq!(
            CliError::zk(ZkError::NodeExists, Op::Create, "/a").to_string(),
            "NodeExists: /a already exists"
        );
        let multi = ZkError::MultiFailed {
            index: 2,
            source: Box::new(ZkError::NoAuth),
        };
        let e = CliError::zk(multi, Op::Delete, "/a/b");
        assert_eq!(e.name(), "NoAuth");
        assert_eq!(e.code(), Some(-102));
        assert_eq!(
            CliError::Timeout {
                path: "/a".into(),
                timeout: Duration::from_millis(1500)
            }
            .message(),
            "no reply for /a within 1500ms (a write may still be applied)"
        );
    }
}
