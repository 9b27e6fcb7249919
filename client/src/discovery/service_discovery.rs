//! [`ServiceDiscovery`]: register, update, unregister and query service instances, Curator
//! x-discovery's layout: `<base>/<name>/<id>` holding the instance's JSON.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rookery_proto::CreateMode;
use tokio::task::JoinHandle;

use super::cache::ServiceCache;
use super::instance::{ServiceInstance, ServiceType};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::recipes::{join, make, retried};
use crate::retry::RetryPolicy;
use crate::types::{CreateOptions, SessionEventKind};

/// The instances registered through one [`ServiceDiscovery`], by (name, id).
type Registered = Arc<Mutex<BTreeMap<(String, String), ServiceInstance>>>;

/// Service registration and queries under one base path, shared with Curator's
/// `ServiceDiscovery` on the same base path.
///
/// A dynamic instance is an ephemeral node, so it goes with the session that registered it.
/// The instances registered through this value are written again whenever the connection comes
/// back: after a renewed session (a client built with
/// [`crate::ClientBuilder::renew_session`]), and after a reconnect if the node went missing.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
///
/// let discovery = ServiceDiscovery::new(&client, "/services");
/// let me = ServiceInstance::new("billing").with_address("10.0.0.7", 8080);
/// discovery.register(&me).await?;
/// for instance in discovery.query_instances("billing").await? {
///     println!("{} at {:?}:{:?}", instance.id, instance.address, instance.port);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServiceDiscovery {
    client: Client,
    base: String,
    registered: Registered,
    watcher: JoinHandle<()>,
}

impl ServiceDiscovery {
    /// Discovery under `base_path` (Curator's `basePath`).
    pub fn new(client: &Client, base_path: &str) -> Self {
        let registered: Registered = Arc::default();
        let watcher = tokio::spawn(reregister_on_reconnect(
            client.clone(),
            base_path.to_owned(),
            registered.clone(),
        ));
        ServiceDiscovery {
            client: client.clone(),
            base: base_path.to_owned(),
            registered,
            watcher,
        }
    }

    /// The base path.
    pub fn base_path(&self) -> &str {
        &self.base
    }

    /// The znode of `instance`.
    pub fn path_of(&self, name: &str, id: &str) -> String {
        join(&join(&self.base, name), id)
    }

    /// Registers `instance` (kept, and written again after a new session).
    ///
    /// # Errors
    /// The errors of `create`; a node of the same name owned by another session that is still
    /// alive is replaced, as Curator does.
    ///
    /// # Cancellation safety
    /// The registration is remembered when this is called; dropping the future may leave the
    /// node unwritten until the next reconnect.
    pub async fn register(&self, instance: &ServiceInstance) -> Result<()> {
        self.remember(instance);
        write(&self.client, &self.base, instance, true).await
    }

    /// Writes `instance`'s new data (its node must exist).
    ///
    /// # Errors
    /// [`Error::NoNode`] if it is not registered; the errors of `setData`.
    ///
    /// # Cancellation safety
    /// The request is queued when this is called.
    pub async fn update(&self, instance: &ServiceInstance) -> Result<()> {
        let path = self.path_of(&instance.name, &instance.id);
        RetryPolicy::default()
            .run_idempotent(|| self.client.set_data(&path, &instance.to_json(), None))
            .await?;
        self.remember(instance);
        Ok(())
    }

    /// Unregisters the instance `id` of `name` (deleting its node; already gone is fine).
    ///
    /// # Errors
    /// The errors of `delete`.
    ///
    /// # Cancellation safety
    /// It is forgotten when this is called; the delete is queued then too.
    pub async fn unregister(&self, name: &str, id: &str) -> Result<()> {
        if let Ok(mut r) = self.registered.lock() {
            r.remove(&(name.to_owned(), id.to_owned()));
        }
        let path = self.path_of(name, id);
        let delete = || async {
            match self.client.delete(&path, None).await {
                Ok(()) | Err(Error::NoNode) => Ok(()),
                Err(e) => Err(e),
            }
        };
        RetryPolicy::default().run_idempotent(delete).await
    }

    /// The names of the services registered under the base path, sorted.
    ///
    /// # Errors
    /// The errors of `getChildren` (no base path yet is `Ok` and empty).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn query_names(&self) -> Result<Vec<String>> {
        match retried(|| self.client.get_children(&self.base)).await {
            Err(Error::NoNode) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The instances of `name`, by id. Nodes whose data is not an instance are skipped.
    ///
    /// # Errors
    /// The errors of `getChildren` and `getData` (no such service is `Ok` and empty).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn query_instances(&self, name: &str) -> Result<Vec<ServiceInstance>> {
        read_all(&self.client, &join(&self.base, name)).await
    }

    /// One instance, if registered.
    ///
    /// # Errors
    /// The errors of `getData`; data that is not an instance is [`Error::Protocol`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn query_instance(&self, name: &str, id: &str) -> Result<Option<ServiceInstance>> {
        match retried(|| self.client.get_data(&self.path_of(name, id))).await {
            Ok((data, _)) => ServiceInstance::from_json(&data).map(Some),
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A cache of `name`'s instances, loaded before this returns.
    ///
    /// # Errors
    /// As [`ServiceCache::start`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn cache(&self, name: &str) -> Result<ServiceCache> {
        ServiceCache::start(&self.client, &join(&self.base, name)).await
    }

    fn remember(&self, instance: &ServiceInstance) {
        if let Ok(mut r) = self.registered.lock() {
            r.insert(
                (instance.name.clone(), instance.id.clone()),
                instance.clone(),
            );
        }
    }
}

impl Drop for ServiceDiscovery {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Every instance under `dir`, sorted by id.
async fn read_all(client: &Client, dir: &str) -> Result<Vec<ServiceInstance>> {
    let ids = match retried(|| client.get_children(dir)).await {
        Ok(ids) => ids,
        Err(Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Queued together, answered in one round of pipelined replies.
    let reads: Vec<_> = ids
        .iter()
        .map(|id| client.get_data(&join(dir, id)))
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for (id, read) in ids.iter().zip(reads) {
        let data = match read.await {
            Ok((data, _)) => data,
            Err(Error::NoNode) => continue,
            Err(e) if e.is_retryable() => match retried(|| client.get_data(&join(dir, id))).await {
                Ok((data, _)) => data,
                Err(Error::NoNode) => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        match ServiceInstance::from_json(&data) {
            Ok(i) => out.push(i),
            Err(e) => {
                tracing::debug!(%dir, %id, error = %e, "skipping a node that is not an instance")
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Writes `instance`'s node (ephemeral for dynamic instances): created, or adopted if it is
/// this session's (its data rewritten when `rewrite`), or replaced if an earlier session's.
async fn write(
    client: &Client,
    base: &str,
    instance: &ServiceInstance,
    rewrite: bool,
) -> Result<()> {
    let path = join(&join(base, &instance.name), &instance.id);
    let mode = match instance.service_type {
        ServiceType::Dynamic => CreateMode::Ephemeral,
        ServiceType::DynamicSequential => CreateMode::EphemeralSequential,
        ServiceType::Static | ServiceType::Permanent => CreateMode::Persistent,
    };
    let options = CreateOptions::new(mode);
    make(client, &path, &instance.to_json(), &options, rewrite).await
}

/// Writes the registered instances again whenever a connection comes back.
async fn reregister_on_reconnect(client: Client, base: String, registered: Registered) {
    let mut events = client.session_events();
    while let Some(event) = events.next().await {
        let again = matches!(
            event.kind,
            SessionEventKind::Connected
                | SessionEventKind::Reconnected { .. }
                | SessionEventKind::Lagged
        );
        if !again {
            continue;
        }
        let instances: Vec<ServiceInstance> = match registered.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(_) => return,
        };
        for instance in instances {
            if let Err(e) = write(&client, &base, &instance, false).await {
                tracing::warn!(name = %instance.name, id = %instance.id, error = %e, "could not register again");
            }
        }
    }
}
