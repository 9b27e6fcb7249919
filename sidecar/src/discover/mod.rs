//! Discovery: the registry as a stream of endpoint sets. It knows nothing of balancing.
//!
//! Each source is one [`TreeCache`] (one persistent recursive watch) on a registry path. After
//! every batch of changes, and once every source has loaded, the whole registry is published as
//! one [`Discovered`] value on a watch channel: a slow consumer skips to the newest, and
//! nothing is generated or reloaded.

pub mod format;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rookery_client::recipes::{ChildData, TreeCache};
use rookery_client::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Format, Source};
use crate::endpoint::Endpoint;

/// The registry at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Each service's endpoints, sorted by id.
    pub services: BTreeMap<String, Vec<Endpoint>>,
    /// Nodes that are not usable endpoints, by service: (id, why).
    pub filtered: BTreeMap<String, Vec<(String, String)>>,
    /// The newest zxid seen in the registry (the largest of every node's czxid, mzxid and
    /// pzxid).
    pub zxid: i64,
}

/// Starts discovery of `sources` with the client that `clients` will hold.
pub fn spawn(
    clients: watch::Receiver<Option<Client>>,
    sources: Vec<Source>,
    stop: CancellationToken,
) -> watch::Receiver<Option<Arc<Discovered>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        tokio::select! {
            () = run(clients, sources, tx) => {}
            () = stop.cancelled() => {}
        }
    });
    rx
}

async fn run(
    mut clients: watch::Receiver<Option<Client>>,
    sources: Vec<Source>,
    tx: watch::Sender<Option<Arc<Discovered>>>,
) {
    let Ok(client) = clients.wait_for(Option::is_some).await.map(|c| c.clone()) else {
        return;
    };
    let Some(client) = client else { return };
    let mut caches = Vec::with_capacity(sources.len());
    for source in &sources {
        caches.push(start(&client, &source.path).await);
    }
    let streams = caches
        .iter()
        .enumerate()
        .map(|(i, cache)| cache.events().map(move |event| (i, event)));
    let mut events = futures::stream::select_all(streams);
    let mut loaded = vec![false; caches.len()];
    while let Some((i, event)) = events.next().await {
        let initialized = rookery_client::recipes::CacheEvent::Initialized;
        loaded[i] |= event == initialized;
        // Everything already queued goes into the same publication.
        while let Some(Some((i, event))) = events.next().now_or_never() {
            loaded[i] |= event == initialized;
        }
        if loaded.iter().all(|l| *l) {
            let now = read(&caches, &sources);
            tx.send_if_modified(|held| {
                if held.as_deref() == Some(&now) {
                    false
                } else {
                    *held = Some(Arc::new(now));
                    true
                }
            });
        }
    }
    tracing::error!("the registry watch ended; routing stays on the last view");
}

/// A tree cache on `path`, retried (with back-off up to 5 s) until it starts.
async fn start(client: &Client, path: &str) -> TreeCache {
    let mut backoff = Duration::from_millis(100);
    loop {
        match TreeCache::start(client, path).await {
            Ok(cache) => return cache,
            Err(e) => {
                tracing::warn!(%path, error = %e, "cannot watch the registry yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The registry as the caches hold it now.
fn read(caches: &[TreeCache], sources: &[Source]) -> Discovered {
    let mut out = Discovered::default();
    for (cache, source) in caches.iter().zip(sources) {
        let tree = cache.snapshot();
        for node in tree.values() {
            out.zxid = out
                .zxid
                .max(node.stat.czxid)
                .max(node.stat.mzxid)
                .max(node.stat.pzxid);
        }
        let root = cache.root();
        if let (Some(service), true) = (&source.service, tree.contains_key(root)) {
            out.services.entry(service.clone()).or_default();
        }
        for node in tree.values() {
            if let Some((service, id)) = place(root, source.service.as_deref(), node) {
                match format::parse(source.format, id, &node.data) {
                    Ok(endpoint) => out
                        .services
                        .entry(service.to_owned())
                        .or_default()
                        .push(endpoint),
                    Err(why) => out
                        .filtered
                        .entry(service.to_owned())
                        .or_default()
                        .push((id.to_owned(), why)),
                }
            } else if let Some(service) = service_node(root, source, node) {
                // A service with no instance is still a known service.
                out.services.entry(service.to_owned()).or_default();
            }
        }
    }
    for endpoints in out.services.values_mut() {
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        endpoints.dedup_by(|a, b| a.id == b.id);
    }
    out
}

/// The path below `root` (`a/b` for `root/a/b`).
fn relative<'a>(root: &str, node: &'a ChildData) -> Option<&'a str> {
    let rest = node.path.strip_prefix(root)?;
    let rest = if root == "/" {
        rest
    } else {
        rest.strip_prefix('/')?
    };
    (!rest.is_empty()).then_some(rest)
}

/// `(service, id)` if `node` is an instance in the source's layout.
fn place<'a>(
    root: &str,
    service: Option<&'a str>,
    node: &'a ChildData,
) -> Option<(&'a str, &'a str)> {
    let rest = relative(root, node)?;
    match service {
        Some(service) => (!rest.contains('/')).then_some((service, rest)),
        None => {
            let (service, id) = rest.split_once('/')?;
            (!id.contains('/')).then_some((service, id))
        }
    }
}

/// The service's name if `node` is a service node (Curator's layout only).
fn service_node<'a>(root: &str, source: &'a Source, node: &'a ChildData) -> Option<&'a str> {
    if source.service.is_some() {
        return None;
    }
    relative(root, node).filter(|rest| !rest.contains('/'))
}

/// The sources read: the base path in Curator's layout (any format), then the extra ones.
pub fn sources(base_path: &str, extra: &[Source]) -> Vec<Source> {
    let mut all = vec![Source {
        path: base_path.to_owned(),
        format: Format::Auto,
        service: None,
    }];
    all.extend(extra.iter().cloned());
    all
}
