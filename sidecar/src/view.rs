//! The view: each service's [`Upstream`] (its pool and stack), fed by discovery through the
//! static-stability [`Guard`], swapped atomically (arc-swap) and persisted to disk.
//!
//! Static stability: the view only changes when discovery publishes a new registry state. A
//! lost connection or session publishes nothing, so routing goes on with the last view. A
//! change that empties a service, or removes more than `stability.max_removal_share` of its
//! endpoints at once, is held: the removed endpoints stay in the pool ("kept") and the change
//! is applied only if the registry still says so after `stability.confirm_ms`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::retry::budget::TpsBudget;

use crate::balance::{Pool, Rng};
use crate::config::{Config, Policy, StabilityConfig};
use crate::discover::Discovered;
use crate::endpoint::Endpoint;
use crate::layers::{self, OutlierSettings, ServiceStack};
use crate::metrics::{Metrics, ServiceMetrics, STATES};
use crate::upstream::Clients;

/// One service's pool, its stack and its retry budget.
#[derive(Debug)]
pub struct Upstream {
    /// The endpoints.
    pub pool: Arc<Pool>,
    /// The stack requests go through.
    pub stack: ServiceStack,
    /// Its settings.
    pub policy: Policy,
    /// Its metrics.
    pub metrics: ServiceMetrics,
    budget: Arc<TpsBudget>,
}

impl Upstream {
    /// Its retry budget (every request deposits; every retry withdraws).
    pub fn budget(&self) -> &TpsBudget {
        &self.budget
    }
}

/// What the process knows about its own state (for `/ready`, `/metrics`, `/endpoints`).
#[derive(Debug, Default)]
pub struct Status {
    /// The session with the ensemble is connected.
    pub connected: AtomicBool,
    /// Discovery has loaded the registry at least once.
    pub registry_loaded: AtomicBool,
    /// A view was loaded from disk.
    pub disk_loaded: AtomicBool,
    /// This instance is registered.
    pub registered: AtomicBool,
    /// Lame duck: shutting down.
    pub draining: AtomicBool,
    /// The listeners are bound.
    pub listening: AtomicBool,
    /// When the registry last confirmed the view (ms since the Unix epoch).
    pub confirmed_at_ms: AtomicU64,
    /// The zxid of the view.
    pub zxid: AtomicU64,
}

impl Status {
    /// Whether the view is not known to be current.
    pub fn stale(&self) -> bool {
        !(self.connected.load(Ordering::Relaxed) && self.registry_loaded.load(Ordering::Relaxed))
    }

    /// Seconds since the registry last confirmed the view (0 while it is current).
    pub fn age_seconds(&self) -> f64 {
        let now = unix_ms();
        if !self.stale() {
            self.confirmed_at_ms.store(now, Ordering::Relaxed);
            return 0.0;
        }
        let at = self.confirmed_at_ms.load(Ordering::Relaxed);
        if at == 0 {
            return 0.0;
        }
        now.saturating_sub(at) as f64 / 1000.0
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Every service's upstream.
#[derive(Debug)]
pub struct View {
    upstreams: ArcSwap<HashMap<String, Arc<Upstream>>>,
    filtered: ArcSwap<BTreeMap<String, Vec<(String, String)>>>,
    config: Arc<Config>,
    clients: Clients,
    metrics: Arc<Metrics>,
    seeds: Rng,
    /// The process's state.
    pub status: Status,
}

impl View {
    /// An empty view.
    pub fn new(config: Arc<Config>, clients: Clients, metrics: Arc<Metrics>) -> View {
        let seed = config.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                ^ u64::from(std::process::id())
        });
        View {
            upstreams: ArcSwap::from_pointee(HashMap::new()),
            filtered: ArcSwap::from_pointee(BTreeMap::new()),
            config,
            clients,
            metrics,
            seeds: Rng::new(seed),
            status: Status::default(),
        }
    }

    /// The upstream of `service`, if it is known: a lock-free load.
    pub fn upstream(&self, service: &str) -> Option<Arc<Upstream>> {
        self.upstreams.load().get(service).cloned()
    }

    /// Every upstream, by name.
    pub fn upstreams(&self) -> Arc<HashMap<String, Arc<Upstream>>> {
        self.upstreams.load_full()
    }

    /// Nodes that are not endpoints, by service.
    pub fn filtered(&self) -> Arc<BTreeMap<String, Vec<(String, String)>>> {
        self.filtered.load_full()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Applies each service's endpoints (with their "kept" flags).
    fn apply(&self, sets: &BTreeMap<String, Vec<(Endpoint, bool)>>) {
        let mut upstreams = (*self.upstreams.load_full()).clone();
        let mut added = false;
        for (name, endpoints) in sets {
            let upstream = match upstreams.get(name) {
                Some(u) => u.clone(),
                None => {
                    added = true;
                    let u = Arc::new(self.make_upstream(name));
                    upstreams.insert(name.clone(), u.clone());
                    u
                }
            };
            self.update(&upstream, endpoints);
        }
        if added {
            self.upstreams.store(Arc::new(upstreams));
        }
        self.count();
    }

    /// Sets `upstream`'s endpoints, building the stack of each new one.
    fn update(&self, upstream: &Upstream, endpoints: &[(Endpoint, bool)]) {
        let policy = upstream.policy;
        let pool = Arc::downgrade(&upstream.pool);
        let u = &self.config.upstream;
        let outlier = OutlierSettings {
            consecutive_failures: u.outlier_consecutive_failures,
            base_ejection: Duration::from_millis(u.outlier_base_ejection_ms),
            max_ejection: Duration::from_millis(u.outlier_max_ejection_ms),
            max_ejected_share: u.outlier_max_ejected_share,
        };
        let clients = &self.clients;
        let make = move |state: &Arc<crate::balance::EndpointState>| {
            let forward = clients
                .forward(&state.authority, policy.protocol, policy.tls)
                .expect("an endpoint's authority is host:port");
            layers::endpoint_stack(
                state,
                pool.clone(),
                forward,
                policy.request_timeout,
                outlier,
            )
        };
        let usable: Vec<(Endpoint, bool)> = endpoints
            .iter()
            .filter(|(e, _)| {
                e.authority(policy.tls)
                    .is_some_and(|a| a.parse::<http::uri::Authority>().is_ok())
            })
            .cloned()
            .collect();
        upstream
            .pool
            .update(&usable, policy.tls, &self.metrics, &make);
    }

    fn make_upstream(&self, name: &str) -> Upstream {
        let policy = self.config.policy(name);
        let u = &self.config.upstream;
        let pool = Arc::new(Pool::new(name, policy.balancer, self.seeds.next()));
        let budget = Arc::new(TpsBudget::new(
            Duration::from_secs(10),
            u.retry_min_per_second,
            u.retry_budget_ratio,
        ));
        let metrics = self.metrics.service(name);
        let stack = layers::service_stack(
            pool.clone(),
            budget.clone(),
            u.max_attempts,
            metrics.clone(),
        );
        Upstream {
            pool,
            stack,
            policy,
            metrics,
            budget,
        }
    }

    /// An upstream of one fixed endpoint, outside the view (the local service, for the
    /// inbound listener).
    pub fn fixed(&self, name: &str, endpoint: Endpoint) -> Arc<Upstream> {
        let upstream = Arc::new(self.make_upstream(name));
        self.update(&upstream, &[(endpoint, false)]);
        upstream
    }

    /// Updates the endpoint-count gauges.
    pub fn count(&self) {
        let filtered = self.filtered.load();
        for (name, upstream) in self.upstreams.load().iter() {
            let mut counts = [0usize; 5];
            for m in upstream.pool.members().iter() {
                let (state, _) = m.state.state();
                if let Some(i) = STATES.iter().position(|s| *s == state) {
                    counts[i] += 1;
                }
            }
            counts[4] = filtered.get(name).map_or(0, Vec::len);
            for (state, n) in STATES.iter().zip(counts) {
                self.metrics.set_endpoints(name, state, n);
            }
        }
    }
}

/// The static-stability guard: a pure state machine over registry states and time.
#[derive(Debug, Default)]
pub struct Guard {
    held: BTreeMap<String, Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// What the pool holds (the registry's set, plus removals not yet confirmed).
    applied: Vec<Endpoint>,
    /// Since when a held removal waits for confirmation.
    pending_since: Option<Instant>,
}

impl Guard {
    /// Starts from `sets` (a view read from disk), as if applied.
    pub fn seed(&mut self, sets: &BTreeMap<String, Vec<Endpoint>>) {
        for (name, endpoints) in sets {
            self.held.insert(
                name.clone(),
                Held {
                    applied: endpoints.clone(),
                    pending_since: None,
                },
            );
        }
    }

    /// The registry says `desired` at `now`: what each service's pool should hold, each
    /// endpoint with whether it is only kept by the guard.
    pub fn step(
        &mut self,
        desired: &BTreeMap<String, Vec<Endpoint>>,
        now: Instant,
        config: &StabilityConfig,
    ) -> BTreeMap<String, Vec<(Endpoint, bool)>> {
        let confirm = Duration::from_millis(config.confirm_ms);
        let names: Vec<String> = self.held.keys().chain(desired.keys()).cloned().collect();
        let mut out = BTreeMap::new();
        for name in names {
            if out.contains_key(&name) {
                continue;
            }
            let want: &[Endpoint] = desired.get(&name).map_or(&[], Vec::as_slice);
            let held = self.held.entry(name.clone()).or_default();
            let removed: Vec<Endpoint> = held
                .applied
                .iter()
                .filter(|e| !want.iter().any(|w| w.id == e.id))
                .cloned()
                .collect();
            let mass = !held.applied.is_empty()
                && (want.is_empty()
                    || removed.len() as f32 > config.max_removal_share * held.applied.len() as f32);
            let confirmed = held
                .pending_since
                .is_some_and(|since| now.saturating_duration_since(since) >= confirm);
            let mut set: Vec<(Endpoint, bool)> = want.iter().map(|e| (e.clone(), false)).collect();
            if mass && !confirmed {
                if held.pending_since.is_none() {
                    tracing::warn!(service = %name, removed = removed.len(), of = held.applied.len(),
                        "holding a mass removal until the registry confirms it");
                }
                held.pending_since.get_or_insert(now);
                set.extend(removed.into_iter().map(|e| (e, true)));
                held.applied = set.iter().map(|(e, _)| e.clone()).collect();
            } else {
                if mass {
                    tracing::warn!(service = %name, now = want.len(), "applying a confirmed mass removal");
                }
                held.pending_since = None;
                held.applied = want.to_vec();
            }
            if held.applied.is_empty() && !desired.contains_key(&name) {
                self.held.remove(&name);
            }
            out.insert(name, set);
        }
        out
    }

    /// When the earliest held removal is due for confirmation.
    pub fn deadline(&self, config: &StabilityConfig) -> Option<Instant> {
        let confirm = Duration::from_millis(config.confirm_ms);
        self.held
            .values()
            .filter_map(|h| h.pending_since)
            .min()
            .map(|since| since + confirm)
    }
}

/// Each service's endpoints.
type Sets = BTreeMap<String, Vec<Endpoint>>;

/// The view as kept on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    zxid: i64,
    saved_at_ms: u64,
    services: BTreeMap<String, Vec<Endpoint>>,
}

/// The file a view is kept in.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("view.json")
}

/// Writes `services` to `path` atomically: a temporary file, fsync, rename, directory fsync.
fn save(path: &Path, zxid: i64, services: &BTreeMap<String, Vec<Endpoint>>) -> std::io::Result<()> {
    use std::io::Write;
    let body = serde_json::to_vec(&Persisted {
        zxid,
        saved_at_ms: unix_ms(),
        services: services.clone(),
    })
    .map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a view kept by [`save`].
fn load(path: &Path) -> std::io::Result<Persisted> {
    let body = std::fs::read(path)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// Runs the view: seeds it from disk (flagged stale), then applies each registry state
/// through the guard, and keeps the last good one on disk.
pub async fn run(
    view: Arc<View>,
    mut discovered: watch::Receiver<Option<Arc<Discovered>>>,
    stop: CancellationToken,
) {
    let config = view.config.clone();
    let stability = &config.stability;
    let file = config.state_dir.as_deref().map(state_file);
    let mut guard = Guard::default();
    if let Some(file) = &file {
        match load(file) {
            Ok(p) => {
                tracing::info!(path = %file.display(), zxid = p.zxid, services = p.services.len(),
                    "routing on the view kept on disk until the registry answers");
                guard.seed(&p.services);
                let sets = p
                    .services
                    .iter()
                    .map(|(k, v)| (k.clone(), v.iter().map(|e| (e.clone(), false)).collect()))
                    .collect();
                view.apply(&sets);
                view.status
                    .zxid
                    .store(u64::try_from(p.zxid).unwrap_or(0), Ordering::Relaxed);
                view.status
                    .confirmed_at_ms
                    .store(p.saved_at_ms, Ordering::Relaxed);
                view.status.disk_loaded.store(true, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot read the kept view")
            }
        }
    }
    let saved: Arc<Mutex<Option<Sets>>> = Arc::default();
    let mut latest: Option<Arc<Discovered>> = None;
    loop {
        let deadline = guard.deadline(stability);
        tokio::select! {
            changed = discovered.changed() => {
                if changed.is_err() {
                    return;
                }
                latest = discovered.borrow_and_update().clone();
            }
            () = sleep_until(deadline) => {}
            () = stop.cancelled() => return,
        }
        let Some(now) = latest.clone() else { continue };
        view.filtered.store(Arc::new(now.filtered.clone()));
        let sets = guard.step(&now.services, Instant::now(), stability);
        view.apply(&sets);
        view.status.registry_loaded.store(true, Ordering::Relaxed);
        view.status
            .zxid
            .store(u64::try_from(now.zxid).unwrap_or(0), Ordering::Relaxed);
        if let Some(file) = file.clone() {
            let services: BTreeMap<String, Vec<Endpoint>> = sets
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|(e, _)| e.clone()).collect()))
                .collect();
            let unchanged = saved
                .lock()
                .map(|s| s.as_ref() == Some(&services))
                .unwrap_or(false);
            if !unchanged {
                let saved = saved.clone();
                let zxid = now.zxid;
                // Off the (possibly single) runtime thread: fsync may take a while.
                let written = tokio::task::spawn_blocking(move || {
                    let r = save(&file, zxid, &services);
                    if r.is_ok() {
                        if let Ok(mut s) = saved.lock() {
                            *s = Some(services);
                        }
                    }
                    r
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::warn!(error = %e, "cannot keep the view on disk");
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            host: "127.0.0.1".into(),
            port: 1000 + id.len() as u16,
            ssl_port: None,
            weight: 1,
            zone: None,
            enabled: true,
        }
    }

    fn sets(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<Endpoint>> {
        list.iter()
            .map(|(name, ids)| (name.to_string(), ids.iter().map(|i| ep(i)).collect()))
            .collect()
    }

    fn ids(out: &BTreeMap<String, Vec<(Endpoint, bool)>>, name: &str) -> Vec<(String, bool)> {
        out[name].iter().map(|(e, k)| (e.id.clone(), *k)).collect()
    }

    const CONFIG: StabilityConfig = StabilityConfig {
        max_removal_share: 0.5,
        confirm_ms: 5000,
    };

    #[tokio::test(start_paused = true)]
    async fn a_small_removal_applies_at_once() {
        let mut g = Guard::default();
        let t = Instant::now();
        g.step(&sets(&[("a", &["1", "22", "333"])]), t, &CONFIG);
        let out = g.step(&sets(&[("a", &["1", "22"])]), t, &CONFIG);
        assert_eq!(
            ids(&out, "a"),
            vec![("1".into(), false), ("22".into(), false)]
        );
        assert_eq!(g.deadline(&CONFIG), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_set_is_held_until_confirmed() {
        let mut g = Guard::default();
        let t = Instant::now();
        g.step(&sets(&[("a", &["1", "22"])]), t, &CONFIG);
        let out = g.step(&sets(&[("a", &[])]), t, &CONFIG);
        assert_eq!(
            ids(&out, "a"),
            vec![("1".into(), true), ("22".into(), true)]
        );
        assert_eq!(g.deadline(&CONFIG), Some(t + Duration::from_secs(5)));
        // Still empty before the window ends: still held.
        let out = g.step(&sets(&[("a", &[])]), t + Duration::from_secs(4), &CONFIG);
        assert_eq!(out["a"].len(), 2);
        // Confirmed.
        let out = g.step(&sets(&[("a", &[])]), t + Duration::from_secs(5), &CONFIG);
        assert!(out["a"].is_empty());
        assert_eq!(g.deadline(&CONFIG), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_mass_removal_that_comes_back_is_never_applied() {
        let mut g = Guard::default();
        let t = Instant::now();
        g.step(&sets(&[("a", &["1", "22", "333", "4444"])]), t, &CONFIG);
        let out = g.step(&sets(&[("a", &["1"])]), t, &CONFIG);
        assert_eq!(out["a"].iter().filter(|(_, kept)| *kept).count(), 3);
        // A new instance meanwhile is routed to at once.
        let out = g.step(
            &sets(&[("a", &["1", "55555"])]),
            t + Duration::from_secs(1),
            &CONFIG,
        );
        assert_eq!(out["a"].len(), 5);
        // The others come back (a session renewed; they re-registered).
        let out = g.step(
            &sets(&[("a", &["1", "22", "333", "4444", "55555"])]),
            t + Duration::from_secs(2),
            &CONFIG,
        );
        assert!(out["a"].iter().all(|(_, kept)| !kept));
        assert_eq!(g.deadline(&CONFIG), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_seeded_view_survives_an_empty_registry_at_start() {
        let mut g = Guard::default();
        g.seed(&sets(&[("a", &["1"])]));
        let out = g.step(&BTreeMap::new(), Instant::now(), &CONFIG);
        assert_eq!(ids(&out, "a"), vec![("1".into(), true)]);
    }

    #[test]
    fn a_saved_view_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = state_file(dir.path());
        save(&file, 42, &sets(&[("a", &["1", "22"])])).unwrap();
        let p = load(&file).unwrap();
        assert_eq!(p.zxid, 42);
        assert_eq!(p.services, sets(&[("a", &["1", "22"])]));
    }
}
