//! Curator's protected create: a name prefixed with `_c_<uuid>-`, so that after a connection
//! loss with an unknown outcome the client finds the node it may have made instead of making a
//! second one (`CreateBuilderImpl` with `withProtection()` in Curator).

use std::future::Future;

use futures::future::Either;
use rookery_proto::Stat;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::names::protected_prefix;
use crate::retry::RetryPolicy;
use crate::types::CreateOptions;

impl Client {
    /// `create` / `create2` with `options`, protected or not. The first attempt is queued now,
    /// so a protected create keeps its place in the call order too.
    pub(crate) fn create_node(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
        with_stat: bool,
    ) -> impl Future<Output = Result<(String, Option<Stat>)>> + Send + 'static {
        if !options.protected {
            return Either::Left(self.create_once(path, data, options, with_stat));
        }
        let id = uuid::Uuid::new_v4().to_string();
        Either::Right(self.create_protected(path, data, options, with_stat, &id))
    }

    /// A protected create with the protected id `id` (the recipes choose it, so that a
    /// cancelled acquire can find its node by the prefix): `parent/_c_<id>-name`.
    pub(crate) fn create_protected(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
        with_stat: bool,
        id: &str,
    ) -> impl Future<Output = Result<(String, Option<Stat>)>> + Send + 'static {
        let (parent, name) = match path.rfind('/') {
            Some(i) => (&path[..i.max(1)], &path[i + 1..]),
            None => ("/", path),
        };
        let prefix = protected_prefix(id);
        let target = match parent {
            "/" => format!("/{prefix}{name}"),
            _ => format!("{parent}/{prefix}{name}"),
        };
        let options = CreateOptions {
            protected: false,
            ..options.clone()
        };
        let first = self.create_once(&target, data, &options, with_stat);
        let this = self.clone();
        let data = data.to_vec();
        let parent = parent.to_owned();
        async move {
            let policy = RetryPolicy::default();
            let mut result = first.await;
            for _ in 1..policy.max_attempts() {
                match &result {
                    Err(e) if e.is_connection_loss() => {}
                    _ => return result,
                }
                // The node may exist (the reply was lost) or not (the request was): look
                // before creating again. A read that loses its connection is retried.
                let ephemeral = options.mode.is_ephemeral();
                let found = policy
                    .run(|| this.find_protected(&parent, &prefix, ephemeral))
                    .await?;
                if let Some(hit) = found {
                    return Ok(hit);
                }
                result = this.create_once(&target, &data, &options, with_stat).await;
            }
            result
        }
    }

    /// The child of `parent` whose name starts with `prefix`, with its Stat, or `None`. An
    /// ephemeral one owned by an earlier session of this client (after a renewal) is deleted
    /// and not returned: it would vanish with that session anyway.
    fn find_protected(
        &self,
        parent: &str,
        prefix: &str,
        ephemeral: bool,
    ) -> impl Future<Output = Result<Option<(String, Option<Stat>)>>> + Send + 'static {
        let this = self.clone();
        let parent = parent.to_owned();
        let prefix = prefix.to_owned();
        async move {
            let children = match this.get_children(&parent).await {
                Ok(c) => c,
                Err(Error::NoNode) => return Ok(None),
                Err(e) => return Err(e),
            };
            let Some(name) = children.into_iter().find(|c| c.starts_with(&prefix)) else {
                return Ok(None);
            };
            let path = match parent.as_str() {
                "/" => format!("/{name}"),
                _ => format!("{parent}/{name}"),
            };
            let Some(stat) = this.exists(&path).await? else {
                return Ok(None);
            };
            if ephemeral && stat.ephemeral_owner != this.session_id() {
                tracing::info!(%path, "a protected node of an earlier session; deleting it");
                match this.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(Error::NoNode) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Ok(Some((path, Some(stat))))
        }
    }
}
