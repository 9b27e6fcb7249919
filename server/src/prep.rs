//! Turns write requests into transactions (`PrepRequestProcessor`).
//!
//! Checks run in the order ZooKeeper runs them, so the first failing check decides the error code.
//! Preparation reads the tree through an overlay of pending changes, so each sub-operation of a
//! multi sees the effects of the ones before it (and, once the log sits between preparation and
//! application, a request sees the effects of transactions not yet applied).

use std::collections::HashMap;
use std::sync::Arc;

use rookery_proto::path::validate_path;
use rookery_proto::{perms, Acl, CreateMode, ErrorCode, Id, MultiOp, OpCode, Request};

use crate::acl;
use crate::tree::DataTree;
use crate::txn::{is_ephemeral_owner, ttl_owner, Txn, CONTAINER_OWNER};

/// What preparation needs to know about a node.
#[derive(Debug, Clone)]
pub struct View {
    acl: Arc<Vec<Acl>>,
    version: i32,
    cversion: i32,
    aversion: i32,
    num_children: i32,
    owner: i64,
}

/// Who is asking, and under which settings.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The caller's session.
    pub session_id: i64,
    /// The caller's auth ids.
    pub ids: &'a [Id],
    /// Whether TTL nodes are enabled.
    pub extended_types: bool,
}

/// A write, as a multi sub-op or a top-level request.
#[derive(Debug, Clone, Copy)]
pub enum WriteOp<'r> {
    /// create, create2, createContainer, createTTL
    Create {
        /// The opcode, which decides containers and TTLs.
        op: OpCode,
        /// Requested path.
        path: &'r str,
        /// Data.
        data: &'r Option<Vec<u8>>,
        /// Requested ACL.
        acl: &'r [Acl],
        /// Create flags.
        flags: i32,
        /// TTL for createTTL.
        ttl: i64,
    },
    /// delete
    Delete {
        /// Path.
        path: &'r str,
        /// Expected version.
        version: i32,
    },
    /// setData
    SetData {
        /// Path.
        path: &'r str,
        /// Data.
        data: &'r Option<Vec<u8>>,
        /// Expected version.
        version: i32,
    },
    /// setACL
    SetAcl {
        /// Path.
        path: &'r str,
        /// ACL.
        acl: &'r [Acl],
        /// Expected aversion.
        version: i32,
    },
    /// check
    Check {
        /// Path.
        path: &'r str,
        /// Expected version.
        version: i32,
    },
    /// deleteContainer
    DeleteContainer {
        /// Path.
        path: &'r str,
    },
}

impl<'r> WriteOp<'r> {
    /// The write a top-level request describes; `None` for anything but create, delete,
    /// setData, setACL and deleteContainer.
    pub fn from_request(req: &'r Request) -> Option<WriteOp<'r>> {
        Some(match req {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
                WriteOp::Create {
                    op: req.op_code(),
                    path: &r.path,
                    data: &r.data,
                    acl: &r.acl,
                    flags: r.flags,
                    ttl: 0,
                }
            }
            Request::CreateTtl(r) => WriteOp::Create {
                op: OpCode::CreateTtl,
                path: &r.path,
                data: &r.data,
                acl: &r.acl,
                flags: r.flags,
                ttl: r.ttl,
            },
            Request::Delete(r) => WriteOp::Delete {
                path: &r.path,
                version: r.version,
            },
            Request::DeleteContainer(r) => WriteOp::DeleteContainer { path: &r.path },
            Request::SetData(r) => WriteOp::SetData {
                path: &r.path,
                data: &r.data,
                version: r.version,
            },
            Request::SetAcl(r) => WriteOp::SetAcl {
                path: &r.path,
                acl: &r.acl,
                version: r.version,
            },
            _ => return None,
        })
    }

    /// The write a multi sub-op describes; `None` for reads.
    pub fn from_multi(op: &'r MultiOp) -> Option<WriteOp<'r>> {
        Some(match op {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => {
                WriteOp::Create {
                    op: op.op_code(),
                    path: &r.path,
                    data: &r.data,
                    acl: &r.acl,
                    flags: r.flags,
                    ttl: 0,
                }
            }
            MultiOp::CreateTtl(r) => WriteOp::Create {
                op: OpCode::CreateTtl,
                path: &r.path,
                data: &r.data,
                acl: &r.acl,
                flags: r.flags,
                ttl: r.ttl,
            },
            MultiOp::Delete(r) => WriteOp::Delete {
                path: &r.path,
                version: r.version,
            },
            MultiOp::SetData(r) => WriteOp::SetData {
                path: &r.path,
                data: &r.data,
                version: r.version,
            },
            MultiOp::Check(r) => WriteOp::Check {
                path: &r.path,
                version: r.version,
            },
            MultiOp::GetData(_) | MultiOp::GetChildren(_) => return None,
        })
    }
}

/// Changes of transactions prepared but not yet applied (ZooKeeper's `outstandingChanges`):
/// the node as it will be once the transaction with that zxid is applied (`None`: deleted).
#[derive(Debug, Default)]
pub struct Outstanding {
    map: HashMap<String, (i64, Option<View>)>,
}

impl Outstanding {
    /// Records the changes of the transaction `zxid`.
    pub fn merge(&mut self, changes: HashMap<String, Option<View>>, zxid: i64) {
        for (path, view) in changes {
            self.map.insert(path, (zxid, view));
        }
    }

    /// Forgets changes that the tree now reflects (every transaction up to `zxid` is applied).
    pub fn applied(&mut self, zxid: i64) {
        if !self.map.is_empty() {
            self.map.retain(|_, (z, _)| *z > zxid);
        }
    }

    /// Number of paths with pending changes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Preparation state for one request: the tree, the outstanding changes of earlier transactions,
/// and the changes this request makes.
pub struct Prep<'t> {
    tree: &'t DataTree,
    base: &'t Outstanding,
    changes: HashMap<String, Option<View>>,
}

impl<'t> Prep<'t> {
    /// Prepares against `tree` as `base` will change it.
    pub fn new(tree: &'t DataTree, base: &'t Outstanding) -> Self {
        Prep {
            tree,
            base,
            changes: HashMap::new(),
        }
    }

    /// The changes this request made, to merge into the outstanding set under its zxid.
    pub fn into_changes(self) -> HashMap<String, Option<View>> {
        self.changes
    }

    fn get(&self, path: &str) -> Option<View> {
        if let Some(v) = self.changes.get(path) {
            return v.clone();
        }
        if let Some((_, v)) = self.base.map.get(path) {
            return v.clone();
        }
        self.tree.get(path).map(|n| View {
            acl: n.acl.clone(),
            version: n.version,
            cversion: n.cversion,
            aversion: n.aversion,
            num_children: n.children.len() as i32,
            owner: n.ephemeral_owner,
        })
    }

    /// Prepares a multi: all sub-ops, or, at the first failure, an error transaction whose
    /// results are 0 before the failure, its code, and RUNTIMEINCONSISTENCY after.
    pub fn multi(&mut self, ctx: &Ctx<'_>, ops: &[WriteOp<'_>]) -> Txn {
        let mut txns = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.op(ctx, op) {
                Ok(t) => txns.push(t),
                Err(code) => {
                    // Nothing of a failed multi is applied, so none of its changes are pending.
                    self.changes.clear();
                    let errs = (0..ops.len())
                        .map(|j| {
                            Txn::Error(match j.cmp(&i) {
                                std::cmp::Ordering::Less => 0,
                                std::cmp::Ordering::Equal => code.code(),
                                std::cmp::Ordering::Greater => {
                                    ErrorCode::RuntimeInconsistency.code()
                                }
                            })
                        })
                        .collect();
                    return Txn::Multi(errs);
                }
            }
        }
        Txn::Multi(txns)
    }

    /// Prepares one write.
    pub fn op(&mut self, ctx: &Ctx<'_>, op: &WriteOp<'_>) -> Result<Txn, ErrorCode> {
        match *op {
            WriteOp::Create {
                op,
                path,
                data,
                acl,
                flags,
                ttl,
            } => self.create(ctx, op, path, data, acl, flags, ttl),
            WriteOp::Delete { path, version } => self.delete(ctx, path, version, false),
            WriteOp::DeleteContainer { path } => self.delete(ctx, path, -1, true),
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path).map_err(|_| ErrorCode::BadArguments)?;
                let mut node = self.get(path).ok_or(ErrorCode::NoNode)?;
                if !acl::check(&node.acl, ctx.ids, perms::WRITE) {
                    return Err(ErrorCode::NoAuth);
                }
                if version != -1 && version != node.version {
                    return Err(ErrorCode::BadVersion);
                }
                node.version = node.version.wrapping_add(1);
                let new_version = node.version;
                self.changes.insert(path.to_owned(), Some(node));
                Ok(Txn::SetData {
                    path: path.to_owned(),
                    data: data.clone(),
                    version: new_version,
                })
            }
            WriteOp::SetAcl {
                path,
                acl: new_acl,
                version,
            } => {
                validate_path(path).map_err(|_| ErrorCode::BadArguments)?;
                let fixed = acl::fixup(new_acl, ctx.ids)?;
                let mut node = self.get(path).ok_or(ErrorCode::NoNode)?;
                if !acl::check(&node.acl, ctx.ids, perms::ADMIN) {
                    return Err(ErrorCode::NoAuth);
                }
                if version != -1 && version != node.aversion {
                    return Err(ErrorCode::BadVersion);
                }
                node.aversion = node.aversion.wrapping_add(1);
                node.acl = Arc::new(fixed.clone());
                let new_version = node.aversion;
                self.changes.insert(path.to_owned(), Some(node));
                Ok(Txn::SetAcl {
                    path: path.to_owned(),
                    acl: fixed,
                    version: new_version,
                })
            }
            WriteOp::Check { path, version } => {
                validate_path(path).map_err(|_| ErrorCode::BadArguments)?;
                let node = self.get(path).ok_or(ErrorCode::NoNode)?;
                if !acl::check(&node.acl, ctx.ids, perms::READ) {
                    return Err(ErrorCode::NoAuth);
                }
                if version != -1 && version != node.version {
                    return Err(ErrorCode::BadVersion);
                }
                Ok(Txn::Check {
                    path: path.to_owned(),
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ctx: &Ctx<'_>,
        op: OpCode,
        path: &str,
        data: &Option<Vec<u8>>,
        acl_req: &[Acl],
        flags: i32,
        ttl: i64,
    ) -> Result<Txn, ErrorCode> {
        let mode = CreateMode::from_code(flags).ok_or(ErrorCode::BadArguments)?;
        match op {
            OpCode::CreateTtl => {
                if !ctx.extended_types {
                    return Err(ErrorCode::Unimplemented);
                }
                if !mode.is_ttl() || ttl <= 0 || ttl > rookery_proto::consts::MAX_TTL_MS {
                    return Err(ErrorCode::BadArguments);
                }
            }
            OpCode::Create | OpCode::Create2 if mode.is_ttl() => {
                return Err(if ctx.extended_types {
                    ErrorCode::BadArguments
                } else {
                    ErrorCode::Unimplemented
                });
            }
            _ => {}
        }
        let last_slash = path.rfind('/').ok_or(ErrorCode::BadArguments)?;
        if path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let fixed = acl::fixup(acl_req, ctx.ids)?;
        let parent_path = if last_slash == 0 {
            "/"
        } else {
            &path[..last_slash]
        };
        let mut parent = self.get(parent_path).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&parent.acl, ctx.ids, perms::CREATE) {
            return Err(ErrorCode::NoAuth);
        }
        let full = if mode.is_sequential() {
            format!("{path}{:010}", parent.cversion)
        } else {
            path.to_owned()
        };
        validate_path(&full).map_err(|_| ErrorCode::BadArguments)?;
        if self.get(&full).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if is_ephemeral_owner(parent.owner) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let owner = match op {
            OpCode::CreateContainer => CONTAINER_OWNER,
            OpCode::CreateTtl => ttl_owner(ttl),
            _ if mode.is_ephemeral() => ctx.session_id,
            _ => 0,
        };
        parent.cversion = parent.cversion.wrapping_add(1);
        parent.num_children += 1;
        let parent_cversion = parent.cversion;
        self.changes.insert(parent_path.to_owned(), Some(parent));
        let view = View {
            acl: Arc::new(fixed.clone()),
            version: 0,
            cversion: 0,
            aversion: 0,
            num_children: 0,
            owner,
        };
        self.changes.insert(full.clone(), Some(view));
        Ok(Txn::Create {
            path: full,
            data: data.clone(),
            acl: fixed,
            ephemeral_owner: owner,
            parent_cversion,
        })
    }

    fn delete(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        version: i32,
        container_only: bool,
    ) -> Result<Txn, ErrorCode> {
        let last_slash = path.rfind('/').ok_or(ErrorCode::BadArguments)?;
        if path.contains('\0') || DataTree::is_special(path) {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = if last_slash == 0 {
            "/"
        } else {
            &path[..last_slash]
        };
        let mut parent = self.get(parent_path).ok_or(ErrorCode::NoNode)?;
        // deleteContainer is the server's own reaper (or a client imitating it): ZooKeeper runs
        // no ACL check for it.
        if !container_only && !acl::check(&parent.acl, ctx.ids, perms::DELETE) {
            return Err(ErrorCode::NoAuth);
        }
        let node = self.get(path).ok_or(ErrorCode::NoNode)?;
        if container_only
            && node.owner != CONTAINER_OWNER
            && crate::txn::ttl_of(node.owner).is_none()
        {
            return Err(ErrorCode::BadArguments);
        }
        if version != -1 && version != node.version {
            return Err(ErrorCode::BadVersion);
        }
        if node.num_children > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        parent.num_children -= 1;
        self.changes.insert(parent_path.to_owned(), Some(parent));
        self.changes.insert(path.to_owned(), None);
        Ok(Txn::Delete {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rookery_proto::Id;

    fn ctx(ids: &[Id]) -> Ctx<'_> {
        Ctx {
            session_id: 5,
            ids,
            extended_types: true,
        }
    }

    #[test]
    fn multi_sees_its_own_earlier_ops() {
        let tree = DataTree::new();
        let ids = [];
        let out = Outstanding::default();
        let mut prep = Prep::new(&tree, &out);
        let open = Acl::open_unsafe();
        let none = None;
        let ops = [
            WriteOp::Create {
                op: OpCode::Create,
                path: "/a",
                data: &none,
                acl: &open,
                flags: 0,
                ttl: 0,
            },
            WriteOp::Create {
                op: OpCode::Create,
                path: "/a/b",
                data: &none,
                acl: &open,
                flags: 0,
                ttl: 0,
            },
            WriteOp::Delete {
                path: "/a/b",
                version: 0,
            },
        ];
        let Txn::Multi(txns) = prep.multi(&ctx(&ids), &ops) else {
            panic!()
        };
        assert!(matches!(txns[2], Txn::Delete { .. }), "{txns:?}");
    }

    #[test]
    fn failed_multi_reports_positions() {
        let tree = DataTree::new();
        let ids = [];
        let out = Outstanding::default();
        let mut prep = Prep::new(&tree, &out);
        let open = Acl::open_unsafe();
        let none = None;
        let ops = [
            WriteOp::Create {
                op: OpCode::Create,
                path: "/m1",
                data: &none,
                acl: &open,
                flags: 0,
                ttl: 0,
            },
            WriteOp::Delete {
                path: "/missing",
                version: -1,
            },
            WriteOp::Create {
                op: OpCode::Create,
                path: "/m2",
                data: &none,
                acl: &open,
                flags: 0,
                ttl: 0,
            },
        ];
        assert_eq!(
            prep.multi(&ctx(&ids), &ops),
            Txn::Multi(vec![Txn::Error(0), Txn::Error(-101), Txn::Error(-2)])
        );
    }

    #[test]
    fn create_check_order() {
        let tree = DataTree::new();
        let ids = [];
        let out = Outstanding::default();
        let mut prep = Prep::new(&tree, &out);
        let open = Acl::open_unsafe();
        let none = None;
        let mk = |path, flags| WriteOp::Create {
            op: OpCode::Create,
            path,
            data: &none,
            acl: &open,
            flags,
            ttl: 0,
        };
        assert_eq!(
            prep.op(&ctx(&ids), &mk("/x", 7)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(prep.op(&ctx(&ids), &mk("/a/", 0)), Err(ErrorCode::NoNode));
        assert_eq!(
            prep.op(&ctx(&ids), &mk("/a\u{1}b", 0)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            prep.op(&ctx(&ids), &mk("/zookeeper", 0)),
            Err(ErrorCode::NodeExists)
        );
        assert_eq!(
            prep.op(&ctx(&ids), &mk("noslash", 0)),
            Err(ErrorCode::BadArguments)
        );
        let Ok(Txn::Create { path, .. }) = prep.op(&ctx(&ids), &mk("/s-", 2)) else {
            panic!()
        };
        assert_eq!(path, "/s-0000000000");
    }
}
