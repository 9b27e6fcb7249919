//! The request path between ensemble members, beside ZAB's own messages: writes a follower
//! forwards to the leader, session activity it relays, and `sync`.
//!
//! Encoded with the jute primitives; decoding never panics and rejects trailing bytes.

use bytes::Bytes;
use rookery_proto::jute::{write_buffer, write_i32, write_i64, Jute, Reader};
use rookery_proto::DecodeError;
use rookery_proto::Id;

/// The largest forwarded request body: a client frame can be no larger.
const MAX_BODY_LEN: usize = 64 << 20;
/// [`Relay::Sync`]'s `conn` when no client connection sent it.
pub const NOT_A_CONNECTION: u64 = u64::MAX;
/// The most sessions one touch message carries.
pub const MAX_TOUCHES: usize = 100_000;

/// A request-path message between members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Follower → leader: a client's write, to prepare against the leader's state and propose.
    Forward {
        /// The client's session.
        session_id: i64,
        /// The request's xid: the follower matches the commit to the request by (session, xid).
        cxid: i32,
        /// The follower's connection it came on: once the leader refuses one request of a
        /// connection, it refuses that connection's later ones too, so a session's writes never
        /// commit with a gap.
        conn: u64,
        /// The connection's forwarded requests (writes and syncs) are numbered from 0: the peer
        /// transport may drop a frame (a full queue, a lost connection), so the leader refuses a
        /// request whose number is not the next one, and every later one of the connection.
        seq: u64,
        /// The connection's authenticated identities (ACL checks happen at the leader).
        ids: Vec<Id>,
        /// The request's opcode.
        op: i32,
        /// The request body as the client sent it.
        body: Bytes,
    },
    /// Follower → leader: a new session (its id and password chosen by the follower).
    CreateSession {
        /// The id.
        session_id: i64,
        /// The negotiated timeout.
        timeout_ms: i32,
        /// The password.
        passwd: [u8; 16],
    },
    /// Follower → leader: these sessions showed activity (ZooKeeper's ping with touched sessions).
    Touch {
        /// The sessions.
        sessions: Vec<i64>,
    },
    /// Follower → leader: a client's `sync`.
    Sync {
        /// The session.
        session_id: i64,
        /// The request's xid.
        cxid: i32,
        /// The follower's connection, and the sync's number among its forwarded requests (one
        /// numbering with [`Relay::Forward`]'s): [`NOT_A_CONNECTION`] for a session's
        /// revalidation, which is not a client's request.
        conn: u64,
        /// The number.
        seq: u64,
    },
    /// Leader → follower: the sync is answered once the follower has applied `zxid`.
    Synced {
        /// The session.
        session_id: i64,
        /// The request's xid.
        cxid: i32,
        /// The leader's commit point when the sync arrived.
        zxid: i64,
    },
    /// Leader → follower: the forwarded request could not be proposed (this server does not lead,
    /// or too many proposals are outstanding); the follower drops the client's connection.
    Rejected {
        /// The session.
        session_id: i64,
        /// The request's xid.
        cxid: i32,
    },
}

const T_FORWARD: u8 = 1;
const T_CREATE_SESSION: u8 = 2;
const T_TOUCH: u8 = 3;
const T_SYNC: u8 = 4;
const T_SYNCED: u8 = 5;
const T_REJECTED: u8 = 6;

impl Relay {
    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Relay::Forward {
                session_id,
                cxid,
                conn,
                seq,
                ids,
                op,
                body,
            } => {
                out.push(T_FORWARD);
                write_i64(out, *session_id);
                write_i32(out, *cxid);
                write_i64(out, *conn as i64);
                write_i64(out, *seq as i64);
                ids.clone().encode(out);
                write_i32(out, *op);
                write_buffer(out, Some(body));
            }
            Relay::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                out.push(T_CREATE_SESSION);
                write_i64(out, *session_id);
                write_i32(out, *timeout_ms);
                write_buffer(out, Some(passwd));
            }
            Relay::Touch { sessions } => {
                out.push(T_TOUCH);
                write_i32(out, sessions.len() as i32);
                for s in sessions {
                    write_i64(out, *s);
                }
            }
            Relay::Sync {
                session_id,
                cxid,
                conn,
                seq,
            } => {
                out.push(T_SYNC);
                write_i64(out, *session_id);
                write_i32(out, *cxid);
                write_i64(out, *conn as i64);
                write_i64(out, *seq as i64);
            }
            Relay::Synced {
                session_id,
                cxid,
                zxid,
            } => {
                out.push(T_SYNCED);
                write_i64(out, *session_id);
                write_i32(out, *cxid);
                write_i64(out, *zxid);
            }
            Relay::Rejected { session_id, cxid } => {
                out.push(T_REJECTED);
                write_i64(out, *session_id);
                write_i32(out, *cxid);
            }
        }
    }

    /// Decodes one message that fills `bytes` exactly.
    ///
    /// # Errors
    /// Unknown type, short input, oversized fields or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Relay, DecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or(DecodeError::UnexpectedEof)?;
        let mut r = Reader::new(rest);
        let msg = match tag {
            T_FORWARD => {
                let session_id = r.read_i64()?;
                let cxid = r.read_i32()?;
                let conn = r.read_i64()? as u64;
                let seq = r.read_i64()? as u64;
                let ids = Vec::<Id>::decode(&mut r)?;
                let op = r.read_i32()?;
                let body = r.read_buffer()?.unwrap_or_default();
                if body.len() > MAX_BODY_LEN {
                    return Err(DecodeError::InvalidValue {
                        field: "forwarded body length",
                        value: body.len() as i64,
                    });
                }
                Relay::Forward {
                    session_id,
                    cxid,
                    conn,
                    seq,
                    ids,
                    op,
                    body: Bytes::from(body),
                }
            }
            T_CREATE_SESSION => {
                let session_id = r.read_i64()?;
                let timeout_ms = r.read_i32()?;
                let passwd =
                    r.read_buffer()?
                        .unwrap_or_default()
                        .try_into()
                        .map_err(|p: Vec<u8>| DecodeError::InvalidValue {
                            field: "session password length",
                            value: p.len() as i64,
                        })?;
                Relay::CreateSession {
                    session_id,
                    timeout_ms,
                    passwd,
                }
            }
            T_TOUCH => {
                let n = r.read_count(8)?;
                if n > MAX_TOUCHES {
                    return Err(DecodeError::InvalidValue {
                        field: "touched sessions",
                        value: n as i64,
                    });
                }
                let mut sessions = Vec::with_capacity(n);
                for _ in 0..n {
                    sessions.push(r.read_i64()?);
                }
                Relay::Touch { sessions }
            }
            T_SYNC => Relay::Sync {
                session_id: r.read_i64()?,
                cxid: r.read_i32()?,
                conn: r.read_i64()? as u64,
                seq: r.read_i64()? as u64,
            },
            T_SYNCED => Relay::Synced {
                session_id: r.read_i64()?,
                cxid: r.read_i32()?,
                zxid: r.read_i64()?,
            },
            T_REJECTED => Relay::Rejected {
                session_id: r.read_i64()?,
                cxid: r.read_i32()?,
            },
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "relay message type",
                    value: i64::from(tag),
                })
            }
        };
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Relay> {
        vec![
            Relay::Forward {
                session_id: 7,
                cxid: 3,
                conn: 11,
                seq: 4,
                ids: vec![Id {
                    scheme: "digest".into(),
                    id: "u:x".into(),
                }],
                op: 1,
                body: Bytes::from_static(b"body"),
            },
            Relay::CreateSession {
                session_id: -5,
                timeout_ms: 4000,
                passwd: [9; 16],
            },
            Relay::Touch {
                sessions: vec![1, 2, 3],
            },
            Relay::Sync {
                session_id: 1,
                cxid: 2,
                conn: 3,
                seq: 4,
            },
            Relay::Synced {
                session_id: 1,
                cxid: 2,
                zxid: 0x1_0000_0005,
            },
            Relay::Rejected {
                session_id: 1,
                cxid: 2,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_fails() {
        for m in all() {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(Relay::decode(&b).unwrap(), m);
            for cut in 0..b.len() {
                assert!(Relay::decode(&b[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            b.push(0);
            assert!(Relay::decode(&b).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = Relay::decode(&bytes);
        }
    }
}
