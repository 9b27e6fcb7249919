//! Byte encodings of transactions and snapshot records, built from the jute primitives.
//!
//! A transaction record's payload is `session_id:long cxid:int time_ms:long` followed by the
//! transaction: `type:int` and its body. Types use ZooKeeper's opcode numbers.

use rookery_proto::jute::{write_buffer, write_i32, write_i64, write_string, Jute, Reader};
use rookery_proto::{Acl, DecodeError};

use crate::txn::{Txn, TxnHeader};

const T_CREATE_SESSION: i32 = -10;
const T_CLOSE_SESSION: i32 = -11;
const T_CREATE: i32 = 1;
const T_DELETE: i32 = 2;
const T_SET_DATA: i32 = 5;
const T_SET_ACL: i32 = 7;
const T_CHECK: i32 = 13;
const T_MULTI: i32 = 14;
const T_ERROR: i32 = -1;

/// Appends the payload of a log record (the zxid travels in the record header).
pub fn encode_txn(hdr: &TxnHeader, txn: &Txn, out: &mut Vec<u8>) {
    write_i64(out, hdr.session_id);
    write_i32(out, hdr.cxid);
    write_i64(out, hdr.time_ms);
    encode_body(txn, out);
}

fn encode_body(txn: &Txn, out: &mut Vec<u8>) {
    match txn {
        Txn::CreateSession {
            session_id,
            timeout_ms,
            passwd,
        } => {
            write_i32(out, T_CREATE_SESSION);
            write_i64(out, *session_id);
            write_i32(out, *timeout_ms);
            write_buffer(out, Some(passwd));
        }
        Txn::CloseSession { session_id } => {
            write_i32(out, T_CLOSE_SESSION);
            write_i64(out, *session_id);
        }
        Txn::Create {
            path,
            data,
            acl,
            ephemeral_owner,
            parent_cversion,
        } => {
            write_i32(out, T_CREATE);
            write_string(out, path);
            write_buffer(out, data.as_deref());
            acl.encode(out);
            write_i64(out, *ephemeral_owner);
            write_i32(out, *parent_cversion);
        }
        Txn::Delete { path } => {
            write_i32(out, T_DELETE);
            write_string(out, path);
        }
        Txn::SetData {
            path,
            data,
            version,
        } => {
            write_i32(out, T_SET_DATA);
            write_string(out, path);
            write_buffer(out, data.as_deref());
            write_i32(out, *version);
        }
        Txn::SetAcl { path, acl, version } => {
            write_i32(out, T_SET_ACL);
            write_string(out, path);
            acl.encode(out);
            write_i32(out, *version);
        }
        Txn::Check { path } => {
            write_i32(out, T_CHECK);
            write_string(out, path);
        }
        Txn::Multi(txns) => {
            write_i32(out, T_MULTI);
            write_i32(out, txns.len() as i32);
            for t in txns {
                encode_body(t, out);
            }
        }
        Txn::Error(code) => {
            write_i32(out, T_ERROR);
            write_i32(out, *code);
        }
    }
}

/// Decodes a record payload for `zxid`.
pub fn decode_txn(zxid: i64, payload: &[u8]) -> Result<(TxnHeader, Txn), DecodeError> {
    let mut r = Reader::new(payload);
    let session_id = r.read_i64()?;
    let cxid = r.read_i32()?;
    let time_ms = r.read_i64()?;
    let txn = decode_body(&mut r, 0)?;
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok((
        TxnHeader {
            session_id,
            cxid,
            zxid,
            time_ms,
        },
        txn,
    ))
}

fn decode_body(r: &mut Reader<'_>, depth: u32) -> Result<Txn, DecodeError> {
    let t = r.read_i32()?;
    Ok(match t {
        T_CREATE_SESSION => {
            let session_id = r.read_i64()?;
            let timeout_ms = r.read_i32()?;
            let pw = r.read_buffer()?.unwrap_or_default();
            let passwd: [u8; 16] = pw.try_into().map_err(|_| DecodeError::InvalidValue {
                field: "passwd length",
                value: -1,
            })?;
            Txn::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            }
        }
        T_CLOSE_SESSION => Txn::CloseSession {
            session_id: r.read_i64()?,
        },
        T_CREATE => Txn::Create {
            path: r.read_string()?,
            data: r.read_buffer()?,
            acl: Vec::<Acl>::decode(r)?,
            ephemeral_owner: r.read_i64()?,
            parent_cversion: r.read_i32()?,
        },
        T_DELETE => Txn::Delete {
            path: r.read_string()?,
        },
        T_SET_DATA => Txn::SetData {
            path: r.read_string()?,
            data: r.read_buffer()?,
            version: r.read_i32()?,
        },
        T_SET_ACL => Txn::SetAcl {
            path: r.read_string()?,
            acl: Vec::<Acl>::decode(r)?,
            version: r.read_i32()?,
        },
        T_CHECK => Txn::Check {
            path: r.read_string()?,
        },
        T_MULTI if depth == 0 => {
            let n = r.read_count(4)?;
            let mut txns = Vec::with_capacity(n);
            for _ in 0..n {
                txns.push(decode_body(r, depth + 1)?);
            }
            Txn::Multi(txns)
        }
        T_ERROR => Txn::Error(r.read_i32()?),
        other => {
            return Err(DecodeError::InvalidValue {
                field: "txn type",
                value: other.into(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_txn_round_trips() {
        let hdr = TxnHeader {
            session_id: 9,
            cxid: 3,
            zxid: 77,
            time_ms: 1234,
        };
        let txns = vec![
            Txn::CreateSession {
                session_id: 5,
                timeout_ms: 4000,
                passwd: [7; 16],
            },
            Txn::CloseSession { session_id: 5 },
            Txn::Create {
                path: "/a".into(),
                data: None,
                acl: Acl::open_unsafe(),
                ephemeral_owner: 5,
                parent_cversion: 2,
            },
            Txn::Delete { path: "/a".into() },
            Txn::SetData {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                version: 3,
            },
            Txn::SetAcl {
                path: "/a".into(),
                acl: Acl::read_unsafe(),
                version: 1,
            },
            Txn::Check { path: "/a".into() },
            Txn::Multi(vec![Txn::Error(0), Txn::Error(-101)]),
            Txn::Error(-110),
        ];
        for txn in txns {
            let mut out = Vec::new();
            encode_txn(&hdr, &txn, &mut out);
            assert_eq!(decode_txn(77, &out).unwrap(), (hdr, txn));
            // Every strict prefix is an error, never a panic.
            for cut in 0..out.len() {
                assert!(decode_txn(77, &out[..cut]).is_err());
            }
        }
    }

    /// Counts come from the file (or, for a learner, from the leader): a count the remaining
    /// bytes cannot hold is an error before anything is reserved for it (SEC-11 in
    /// docs/security.md). Were the count trusted, `Vec::with_capacity` would abort.
    #[test]
    fn hostile_counts_are_errors_not_allocations() {
        let header = |out: &mut Vec<u8>| {
            write_i64(out, 9);
            write_i32(out, 3);
            write_i64(out, 1234);
        };
        let mut multi = Vec::new();
        header(&mut multi);
        write_i32(&mut multi, T_MULTI);
        write_i32(&mut multi, i32::MAX);
        write_i32(&mut multi, T_ERROR);
        write_i32(&mut multi, 0);
        assert_eq!(decode_txn(1, &multi), Err(DecodeError::UnexpectedEof));

        let mut create = Vec::new();
        header(&mut create);
        write_i32(&mut create, T_CREATE);
        write_string(&mut create, "/a");
        write_buffer(&mut create, None);
        write_i32(&mut create, i32::MAX); // ACL entries
        assert_eq!(decode_txn(1, &create), Err(DecodeError::UnexpectedEof));

        let mut data = Vec::new();
        header(&mut data);
        write_i32(&mut data, T_SET_DATA);
        write_string(&mut data, "/a");
        write_i32(&mut data, i32::MAX); // data length
        assert_eq!(decode_txn(1, &data), Err(DecodeError::UnexpectedEof));
    }
}
