//! Builders for `multi` (atomic writes) and `multiRead` (independent reads).

use std::future::Future;

use rookery_proto::{
    CheckVersionRequest, DeleteRequest, MultiOp, MultiResult, PathWatchRequest, Request,
    SetDataRequest, Stat,
};

use crate::chroot::check_path;
use crate::client::{create_request, Client};
use crate::error::{Error, Result};
use crate::types::CreateOptions;

/// The result of one operation of a successful `multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// A create: the path created and, from servers that send it (3.8.4+, 3.9), its Stat.
    Create {
        /// The path created (sequence suffix included, chroot stripped).
        path: String,
        /// The new node's Stat; ZooKeeper 3.8.0 answers a create inside multi without it.
        stat: Option<Stat>,
    },
    /// A delete.
    Delete,
    /// A setData, with the node's new Stat.
    SetData(Stat),
    /// A version check.
    Check,
}

/// An atomic `multi`: every operation is applied, or none. Build it with
/// [`Client::multi`](crate::Client::multi), then [`MultiBuilder::commit`].
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::CreateOptions;
///
/// let results = client
///     .multi()
///     .check("/config", 3)
///     .create("/config/next", b"v4", &CreateOptions::persistent())
///     .set_data("/config", b"moved", Some(3))
///     .commit()
///     .await?;
/// assert_eq!(results.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a multi does nothing until committed"]
pub struct MultiBuilder {
    client: Client,
    ops: Vec<MultiOp>,
    error: Option<Error>,
}

impl MultiBuilder {
    pub(crate) fn new(client: Client) -> Self {
        MultiBuilder {
            client,
            ops: Vec::new(),
            error: None,
        }
    }

    fn push(mut self, op: Result<MultiOp>) -> Self {
        match op {
            Ok(op) => self.ops.push(op),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    fn path(&self, path: &str) -> Result<String> {
        check_path(path, false)?;
        Ok(self.client.chroot_ref().apply(path))
    }

    /// Adds a create (opcode 15 so that the Stat comes back; containers and TTL nodes use their
    /// own opcodes, as in [`Client::create`](crate::Client::create)).
    pub fn create(self, path: &str, data: &[u8], options: &CreateOptions) -> Self {
        let op = create_request(self.client.chroot_ref(), path, data, options, true).and_then(
            |r| match r {
                Request::Create2(r) => Ok(MultiOp::Create2(r)),
                Request::CreateContainer(r) => Ok(MultiOp::CreateContainer(r)),
                Request::CreateTtl(r) => Ok(MultiOp::CreateTtl(r)),
                other => Err(Error::InvalidArgument(format!(
                    "not a multi create: {other:?}"
                ))),
            },
        );
        self.push(op)
    }

    /// Adds a delete (`None`: any version).
    pub fn delete(self, path: &str, version: Option<i32>) -> Self {
        let op = self.path(path).map(|path| {
            MultiOp::Delete(DeleteRequest {
                path,
                version: version.unwrap_or(-1),
            })
        });
        self.push(op)
    }

    /// Adds a setData (`None`: any version).
    pub fn set_data(self, path: &str, data: &[u8], version: Option<i32>) -> Self {
        let op = self.path(path).map(|path| {
            MultiOp::SetData(SetDataRequest {
                path,
                data: Some(data.to_vec()),
                version: version.unwrap_or(-1),
            })
        });
        self.push(op)
    }

    /// Adds a check that the node's data version is `version`.
    pub fn check(self, path: &str, version: i32) -> Self {
        let op = self
            .path(path)
            .map(|path| MultiOp::Check(CheckVersionRequest { path, version }));
        self.push(op)
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is no operation yet.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends the multi; the results come back in operation order.
    ///
    /// # Errors
    /// [`Error::MultiFailed`] with the position and error of the operation that failed (then
    /// nothing was applied); [`Error::InvalidArgument`] if an operation was built with a bad
    /// path or TTL (nothing is sent); and the session errors listed on
    /// [`Client`](crate::Client) (a lost connection leaves the outcome unknown).
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future does not cancel it.
    pub fn commit(self) -> impl Future<Output = Result<Vec<OpResult>>> + Send + 'static {
        let chroot = self.client.chroot_ref().clone();
        let req = match self.error {
            Some(e) => Err(e),
            None => Ok(Request::Multi(self.ops)),
        };
        let fut = self.client.submit_multi(req);
        async move {
            let results = fut.await?;
            if let Some((index, err)) = first_failure(&results) {
                return Err(Error::MultiFailed {
                    index,
                    source: Box::new(Error::from_code(err)),
                });
            }
            results
                .into_iter()
                .map(|r| match r {
                    MultiResult::Create(path) => Ok(OpResult::Create {
                        path: chroot.strip(&path),
                        stat: None,
                    }),
                    MultiResult::Create2(path, stat) => Ok(OpResult::Create {
                        path: chroot.strip(&path),
                        stat: Some(stat),
                    }),
                    MultiResult::Delete => Ok(OpResult::Delete),
                    MultiResult::SetData(stat) => Ok(OpResult::SetData(stat)),
                    MultiResult::Check => Ok(OpResult::Check),
                    other => Err(Error::Protocol(format!(
                        "unexpected multi result {other:?}"
                    ))),
                })
                .collect()
        }
    }
}

/// The operation that failed: the first result with a code other than 0 and
/// RUNTIMEINCONSISTENCY (which marks the operations after it), else the first non-zero one.
fn first_failure(results: &[MultiResult]) -> Option<(usize, i32)> {
    let runtime = rookery_proto::ErrorCode::RuntimeInconsistency.code();
    let failed = |skip_runtime: bool| {
        results.iter().enumerate().find_map(|(i, r)| match r {
            MultiResult::Error(e) if *e != 0 && !(skip_runtime && *e == runtime) => Some((i, *e)),
            _ => None,
        })
    };
    failed(true).or_else(|| failed(false))
}

/// The result of one read of a `multiRead`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadResult {
    /// A getData: the data (null reads as empty) and Stat.
    Data {
        /// The node's data.
        data: Vec<u8>,
        /// The node's Stat.
        stat: Stat,
    },
    /// A getChildren: the child names, sorted.
    Children(Vec<String>),
}

/// A `multiRead` (ZooKeeper 3.6+): reads run one after another on the server, each with its
/// own result; a failed read does not stop the others.
#[derive(Debug)]
#[must_use = "a multiRead does nothing until executed"]
pub struct MultiReadBuilder {
    client: Client,
    ops: Vec<MultiOp>,
    error: Option<Error>,
}

impl MultiReadBuilder {
    pub(crate) fn new(client: Client) -> Self {
        MultiReadBuilder {
            client,
            ops: Vec::new(),
            error: None,
        }
    }

    fn push(mut self, path: &str, make: fn(PathWatchRequest) -> MultiOp) -> Self {
        match check_path(path, false) {
            Ok(()) => {
                let path = self.client.chroot_ref().apply(path);
                self.ops.push(make(PathWatchRequest { path, watch: false }));
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a getData.
    pub fn get_data(self, path: &str) -> Self {
        self.push(path, MultiOp::GetData)
    }

    /// Adds a getChildren.
    pub fn get_children(self, path: &str) -> Self {
        self.push(path, MultiOp::GetChildren)
    }

    /// Sends the reads; one result per read, in order.
    ///
    /// # Errors
    /// The outer error: [`Error::InvalidArgument`] for a bad path (nothing is sent),
    /// [`Error::Unimplemented`] or [`Error::MarshallingError`] from servers before 3.6, and the
    /// session errors listed on [`Client`](crate::Client). Each inner error is that read's own
    /// failure ([`Error::NoNode`], [`Error::NoAuth`]).
    ///
    /// # Cancellation safety
    /// The request is queued when this is called; dropping the future discards the result.
    pub fn execute(self) -> impl Future<Output = Result<Vec<Result<ReadResult>>>> + Send + 'static {
        let req = match self.error {
            Some(e) => Err(e),
            None => Ok(Request::MultiRead(self.ops)),
        };
        let fut = self.client.submit_multi(req);
        async move {
            let results = fut.await?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    MultiResult::GetData(data, stat) => Ok(ReadResult::Data {
                        data: data.unwrap_or_default(),
                        stat,
                    }),
                    MultiResult::GetChildren(mut c) => {
                        c.sort();
                        Ok(ReadResult::Children(c))
                    }
                    MultiResult::Error(e) => Err(Error::from_code(e)),
                    other => Err(Error::Protocol(format!(
                        "unexpected multiRead result {other:?}"
                    ))),
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_position() {
        let r = vec![
            MultiResult::Error(0),
            MultiResult::Error(-101),
            MultiResult::Error(-2),
        ];
        assert_eq!(first_failure(&r), Some((1, -101)));
        let ok = vec![MultiResult::Delete, MultiResult::Check];
        assert_eq!(first_failure(&ok), None);
    }
}
