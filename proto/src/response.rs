//! Server replies: the body that follows a [`ReplyHeader`](crate::ReplyHeader) whose `err` is 0.

use crate::consts::{ErrorCode, OpCode};
use crate::error::DecodeError;
use crate::jute::{Jute, Reader};
use crate::records::*;

/// A reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// No body (delete, setWatches, ping, closeSession, ...).
    Empty,
    /// create
    Create(CreateResponse),
    /// create2, createContainer, createTTL
    Create2(Create2Response),
    /// exists, setData, setACL
    Stat(StatResponse),
    /// getData
    GetData(GetDataResponse),
    /// getACL
    GetAcl(GetAclResponse),
    /// getChildren
    GetChildren(GetChildrenResponse),
    /// getChildren2
    GetChildren2(GetChildren2Response),
    /// sync
    Path(PathResponse),
    /// multi and multiRead
    Multi(Vec<MultiResult>),
    /// getEphemerals
    GetEphemerals(GetEphemeralsResponse),
    /// getAllChildrenNumber
    AllChildrenNumber(AllChildrenNumberResponse),
    /// addWatch: a body holding err 0
    Error(ErrorResponse),
    /// whoAmI
    WhoAmI(WhoAmIResponse),
    /// sasl
    Sasl(SaslToken),
}

/// One result of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// create (type 1)
    Create(String),
    /// create2, createContainer, createTTL (type 15)
    Create2(String, Stat),
    /// delete (type 2)
    Delete,
    /// setData (type 5)
    SetData(Stat),
    /// check (type 13)
    Check,
    /// getData (type 4)
    GetData(Option<Vec<u8>>, Stat),
    /// getChildren (type 8)
    GetChildren(Vec<String>),
    /// A failed (or rolled back) sub-op (type -1) with its code.
    Error(i32),
}

impl MultiResult {
    fn header(&self) -> MultiHeader {
        let (op, err) = match self {
            MultiResult::Create(_) => (OpCode::Create, 0),
            MultiResult::Create2(..) => (OpCode::Create2, 0),
            MultiResult::Delete => (OpCode::Delete, 0),
            MultiResult::SetData(_) => (OpCode::SetData, 0),
            MultiResult::Check => (OpCode::Check, 0),
            MultiResult::GetData(..) => (OpCode::GetData, 0),
            MultiResult::GetChildren(_) => (OpCode::GetChildren, 0),
            MultiResult::Error(e) => (OpCode::Error, *e),
        };
        MultiHeader {
            op: op.code(),
            done: false,
            err,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.header().encode(out);
        match self {
            MultiResult::Create(p) => p.encode(out),
            MultiResult::Create2(p, s) => {
                p.encode(out);
                s.encode(out);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData(s) => s.encode(out),
            MultiResult::GetData(d, s) => {
                d.encode(out);
                s.encode(out);
            }
            MultiResult::GetChildren(c) => c.encode(out),
            MultiResult::Error(e) => ErrorResponse { err: *e }.encode(out),
        }
    }

    fn decode(h: MultiHeader, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match OpCode::from_code(h.op) {
            Some(OpCode::Create) => MultiResult::Create(Jute::decode(r)?),
            Some(OpCode::Create2) => MultiResult::Create2(Jute::decode(r)?, Jute::decode(r)?),
            Some(OpCode::Delete) => MultiResult::Delete,
            Some(OpCode::SetData) => MultiResult::SetData(Jute::decode(r)?),
            Some(OpCode::Check) => MultiResult::Check,
            Some(OpCode::GetData) => MultiResult::GetData(Jute::decode(r)?, Jute::decode(r)?),
            Some(OpCode::GetChildren) => MultiResult::GetChildren(Jute::decode(r)?),
            Some(OpCode::Error) => MultiResult::Error(ErrorResponse::decode(r)?.err),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "multi result",
                    value: h.op.into(),
                })
            }
        })
    }

    /// The error code of this result (0 for success).
    pub fn err(&self) -> i32 {
        match self {
            MultiResult::Error(e) => *e,
            _ => ErrorCode::Ok.code(),
        }
    }
}

impl Response {
    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Empty => {}
            Response::Create(r) => r.encode(out),
            Response::Create2(r) => r.encode(out),
            Response::Stat(r) => r.encode(out),
            Response::GetData(r) => r.encode(out),
            Response::GetAcl(r) => r.encode(out),
            Response::GetChildren(r) => r.encode(out),
            Response::GetChildren2(r) => r.encode(out),
            Response::Path(r) => r.encode(out),
            Response::Multi(results) => {
                for res in results {
                    res.encode(out);
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .encode(out);
            }
            Response::GetEphemerals(r) => r.encode(out),
            Response::AllChildrenNumber(r) => r.encode(out),
            Response::Error(r) => r.encode(out),
            Response::WhoAmI(r) => r.encode(out),
            Response::Sasl(r) => r.encode(out),
        }
    }

    /// Decodes the success body of a reply to a request sent with opcode `op`.
    pub fn decode(op: OpCode, r: &mut Reader<'_>) -> Result<Response, DecodeError> {
        Ok(match op {
            OpCode::Create => Response::Create(Jute::decode(r)?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Response::Create2(Jute::decode(r)?)
            }
            OpCode::Exists | OpCode::SetData | OpCode::SetAcl => Response::Stat(Jute::decode(r)?),
            OpCode::GetData => Response::GetData(Jute::decode(r)?),
            OpCode::GetAcl => Response::GetAcl(Jute::decode(r)?),
            OpCode::GetChildren => Response::GetChildren(Jute::decode(r)?),
            OpCode::GetChildren2 => Response::GetChildren2(Jute::decode(r)?),
            OpCode::Sync => Response::Path(Jute::decode(r)?),
            OpCode::Multi | OpCode::MultiRead => {
                let mut results = Vec::new();
                loop {
                    let h = MultiHeader::decode(r)?;
                    if h.done {
                        break Response::Multi(results);
                    }
                    results.push(MultiResult::decode(h, r)?);
                }
            }
            OpCode::GetEphemerals => Response::GetEphemerals(Jute::decode(r)?),
            OpCode::GetAllChildrenNumber => Response::AllChildrenNumber(Jute::decode(r)?),
            OpCode::AddWatch => Response::Error(Jute::decode(r)?),
            OpCode::WhoAmI => Response::WhoAmI(Jute::decode(r)?),
            OpCode::Sasl => Response::Sasl(Jute::decode(r)?),
            OpCode::Reconfig => Response::GetData(Jute::decode(r)?),
            _ => Response::Empty,
        })
    }
}
