//! Client requests: the body that follows a [`RequestHeader`](crate::RequestHeader), decoded by
//! opcode into one enum.

use crate::consts::OpCode;
use crate::error::{DecodeError, RequestError};
use crate::jute::{Jute, Reader};
use crate::records::*;

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// create (1)
    Create(CreateRequest),
    /// create2 (15)
    Create2(CreateRequest),
    /// createContainer (19)
    CreateContainer(CreateRequest),
    /// createTTL (21)
    CreateTtl(CreateTtlRequest),
    /// delete (2)
    Delete(DeleteRequest),
    /// exists (3)
    Exists(PathWatchRequest),
    /// getData (4)
    GetData(PathWatchRequest),
    /// setData (5)
    SetData(SetDataRequest),
    /// getACL (6)
    GetAcl(PathRequest),
    /// setACL (7)
    SetAcl(SetAclRequest),
    /// getChildren (8)
    GetChildren(PathWatchRequest),
    /// getChildren2 (12)
    GetChildren2(PathWatchRequest),
    /// sync (9)
    Sync(PathRequest),
    /// ping (11)
    Ping,
    /// check (13), outside multi
    Check(CheckVersionRequest),
    /// multi (14)
    Multi(Vec<MultiOp>),
    /// multiRead (22)
    MultiRead(Vec<MultiOp>),
    /// reconfig (16)
    Reconfig(ReconfigRequest),
    /// checkWatches (17)
    CheckWatches(WatchesRequest),
    /// removeWatches (18)
    RemoveWatches(WatchesRequest),
    /// deleteContainer (20)
    DeleteContainer(PathRequest),
    /// auth (100)
    Auth(AuthPacket),
    /// setWatches (101)
    SetWatches(SetWatches),
    /// setWatches2 (105)
    SetWatches2(SetWatches2),
    /// sasl (102)
    Sasl(SaslToken),
    /// getEphemerals (103)
    GetEphemerals(PathRequest),
    /// getAllChildrenNumber (104)
    GetAllChildrenNumber(PathRequest),
    /// addWatch (106)
    AddWatch(AddWatchRequest),
    /// whoAmI (107)
    WhoAmI,
    /// closeSession (-11)
    CloseSession,
}

/// One sub-operation of multi (writes) or multiRead (reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create (1)
    Create(CreateRequest),
    /// create2 (15)
    Create2(CreateRequest),
    /// createContainer (19)
    CreateContainer(CreateRequest),
    /// createTTL (21)
    CreateTtl(CreateTtlRequest),
    /// delete (2)
    Delete(DeleteRequest),
    /// setData (5)
    SetData(SetDataRequest),
    /// check (13)
    Check(CheckVersionRequest),
    /// getData (4), multiRead only
    GetData(PathWatchRequest),
    /// getChildren (8), multiRead only
    GetChildren(PathWatchRequest),
}

impl MultiOp {
    /// The sub-op's opcode.
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetData(_) => OpCode::GetData,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
        }
    }

    /// Whether this is a read (allowed only in multiRead).
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetData(_) | MultiOp::GetChildren(_))
    }

    /// The path the sub-op names.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => &r.path,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => r.encode(out),
            MultiOp::CreateTtl(r) => r.encode(out),
            MultiOp::Delete(r) => r.encode(out),
            MultiOp::SetData(r) => r.encode(out),
            MultiOp::Check(r) => r.encode(out),
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => r.encode(out),
        }
    }

    fn decode_body(op: i32, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match OpCode::from_code(op) {
            Some(OpCode::Create) => MultiOp::Create(Jute::decode(r)?),
            Some(OpCode::Create2) => MultiOp::Create2(Jute::decode(r)?),
            Some(OpCode::CreateContainer) => MultiOp::CreateContainer(Jute::decode(r)?),
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(Jute::decode(r)?),
            Some(OpCode::Delete) => MultiOp::Delete(Jute::decode(r)?),
            Some(OpCode::SetData) => MultiOp::SetData(Jute::decode(r)?),
            Some(OpCode::Check) => MultiOp::Check(Jute::decode(r)?),
            Some(OpCode::GetData) => MultiOp::GetData(Jute::decode(r)?),
            Some(OpCode::GetChildren) => MultiOp::GetChildren(Jute::decode(r)?),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "multi op",
                    value: op.into(),
                })
            }
        })
    }
}

/// Encodes a multi sub-op list with its terminator.
pub fn encode_multi(ops: &[MultiOp], out: &mut Vec<u8>) {
    for op in ops {
        MultiHeader {
            op: op.op_code().code(),
            done: false,
            err: -1,
        }
        .encode(out);
        op.encode_body(out);
    }
    MultiHeader {
        op: -1,
        done: true,
        err: -1,
    }
    .encode(out);
}

/// Decodes a multi sub-op list up to its terminator (the header with `done` set).
pub fn decode_multi(r: &mut Reader<'_>) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    // Each iteration consumes at least one 9-byte header, so the loop ends with the frame.
    loop {
        let h = MultiHeader::decode(r)?;
        if h.done {
            return Ok(ops);
        }
        ops.push(MultiOp::decode_body(h.op, r)?);
    }
}

impl Request {
    /// The path the request names (a multi's first sub-operation's), or `""` for requests that
    /// name none (ping, auth, setWatches, whoAmI, closeSession, ...).
    pub fn path(&self) -> &str {
        match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => &r.path,
            Request::CreateTtl(r) => &r.path,
            Request::Delete(r) => &r.path,
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => &r.path,
            Request::SetData(r) => &r.path,
            Request::SetAcl(r) => &r.path,
            Request::GetAcl(r)
            | Request::Sync(r)
            | Request::DeleteContainer(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => &r.path,
            Request::Check(r) => &r.path,
            Request::Multi(ops) | Request::MultiRead(ops) => ops.first().map_or("", MultiOp::path),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => &r.path,
            Request::AddWatch(r) => &r.path,
            Request::Ping
            | Request::Reconfig(_)
            | Request::Auth(_)
            | Request::SetWatches(_)
            | Request::SetWatches2(_)
            | Request::Sasl(_)
            | Request::WhoAmI
            | Request::CloseSession => "",
        }
    }

    /// The opcode this request is sent with.
    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Create(_) => OpCode::Create,
            Request::Create2(_) => OpCode::Create2,
            Request::CreateContainer(_) => OpCode::CreateContainer,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::DeleteContainer(_) => OpCode::DeleteContainer,
            Request::Auth(_) => OpCode::Auth,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::Sasl(_) => OpCode::Sasl,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// Appends the request body (not the header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => r.encode(out),
            Request::CreateTtl(r) => r.encode(out),
            Request::Delete(r) => r.encode(out),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.encode(out),
            Request::SetData(r) => r.encode(out),
            Request::GetAcl(r)
            | Request::Sync(r)
            | Request::DeleteContainer(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => r.encode(out),
            Request::SetAcl(r) => r.encode(out),
            Request::Check(r) => r.encode(out),
            Request::Multi(ops) | Request::MultiRead(ops) => encode_multi(ops, out),
            Request::Reconfig(r) => r.encode(out),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.encode(out),
            Request::Auth(r) => r.encode(out),
            Request::SetWatches(r) => r.encode(out),
            Request::SetWatches2(r) => r.encode(out),
            Request::Sasl(r) => r.encode(out),
            Request::AddWatch(r) => r.encode(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }

    /// Decodes the body of a request sent with opcode `op`. Trailing bytes after the record are
    /// tolerated, as the Java server does.
    pub fn decode(op: i32, r: &mut Reader<'_>) -> Result<Request, RequestError> {
        let Some(code) = OpCode::from_code(op) else {
            return Err(RequestError::UnknownOpCode(op));
        };
        Ok(match code {
            OpCode::Create => Request::Create(Jute::decode(r)?),
            OpCode::Create2 => Request::Create2(Jute::decode(r)?),
            OpCode::CreateContainer => Request::CreateContainer(Jute::decode(r)?),
            OpCode::CreateTtl => Request::CreateTtl(Jute::decode(r)?),
            OpCode::Delete => Request::Delete(Jute::decode(r)?),
            OpCode::Exists => Request::Exists(Jute::decode(r)?),
            OpCode::GetData => Request::GetData(Jute::decode(r)?),
            OpCode::SetData => Request::SetData(Jute::decode(r)?),
            OpCode::GetAcl => Request::GetAcl(Jute::decode(r)?),
            OpCode::SetAcl => Request::SetAcl(Jute::decode(r)?),
            OpCode::GetChildren => Request::GetChildren(Jute::decode(r)?),
            OpCode::GetChildren2 => Request::GetChildren2(Jute::decode(r)?),
            OpCode::Sync => Request::Sync(Jute::decode(r)?),
            OpCode::Ping => Request::Ping,
            OpCode::Check => Request::Check(Jute::decode(r)?),
            OpCode::Multi => Request::Multi(decode_multi(r)?),
            OpCode::MultiRead => Request::MultiRead(decode_multi(r)?),
            OpCode::Reconfig => Request::Reconfig(Jute::decode(r)?),
            OpCode::CheckWatches => Request::CheckWatches(Jute::decode(r)?),
            OpCode::RemoveWatches => Request::RemoveWatches(Jute::decode(r)?),
            OpCode::DeleteContainer => Request::DeleteContainer(Jute::decode(r)?),
            OpCode::Auth => Request::Auth(Jute::decode(r)?),
            OpCode::SetWatches => Request::SetWatches(Jute::decode(r)?),
            OpCode::SetWatches2 => Request::SetWatches2(Jute::decode(r)?),
            OpCode::Sasl => Request::Sasl(Jute::decode(r)?),
            OpCode::GetEphemerals => Request::GetEphemerals(Jute::decode(r)?),
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber(Jute::decode(r)?),
            OpCode::AddWatch => Request::AddWatch(Jute::decode(r)?),
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => {
                return Err(RequestError::UnknownOpCode(op))
            }
        })
    }
}
