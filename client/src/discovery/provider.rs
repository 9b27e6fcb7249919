//! [`ServiceProvider`]: picks an instance from a [`ServiceCache`], with Curator's strategies
//! and down-instance policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::cache::ServiceCache;
use super::instance::ServiceInstance;

/// How a provider picks among the instances (Curator's `ProviderStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Each in turn (`RoundRobinStrategy`, Curator's default).
    #[default]
    RoundRobin,
    /// Uniformly at random (`RandomStrategy`).
    Random,
    /// The same instance while it is there, then another by round robin (`StickyStrategy`).
    Sticky,
}

/// Curator's `DownInstancePolicy`: an instance reported failing `error_threshold` times is
/// skipped for `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownInstancePolicy {
    /// How long a down instance is skipped (Curator: 30 s).
    pub timeout: Duration,
    /// Errors before an instance counts as down (Curator: 2).
    pub error_threshold: u32,
}

impl Default for DownInstancePolicy {
    fn default() -> Self {
        DownInstancePolicy {
            timeout: Duration::from_secs(30),
            error_threshold: 2,
        }
    }
}

/// Picks instances of one service.
///
/// ```no_run
/// # async fn demo(client: rookery_client::Client) -> rookery_client::Result<()> {
/// use rookery_client::discovery::{ServiceDiscovery, ServiceProvider, Strategy};
///
/// let discovery = ServiceDiscovery::new(&client, "/services");
/// let provider = ServiceProvider::new(discovery.cache("billing").await?, Strategy::RoundRobin);
/// if let Some(instance) = provider.instance() {
///     // ... call it; on failure:
///     provider.note_error(&instance);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServiceProvider {
    cache: ServiceCache,
    picker: Picker,
}

impl ServiceProvider {
    /// A provider over `cache` with `strategy` and the default down-instance policy.
    pub fn new(cache: ServiceCache, strategy: Strategy) -> Self {
        ServiceProvider {
            cache,
            picker: Picker::new(strategy, DownInstancePolicy::default(), rand::random()),
        }
    }

    /// With another down-instance policy.
    pub fn with_down_policy(mut self, policy: DownInstancePolicy) -> Self {
        self.picker.policy = policy;
        self
    }

    /// Seeds the random strategy, for reproducible runs.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.picker.rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        self
    }

    /// An instance to call: enabled, not down; `None` when there is none.
    pub fn instance(&self) -> Option<ServiceInstance> {
        self.picker.pick(&self.cache.instances(), Instant::now())
    }

    /// Every instance the provider would pick from now.
    pub fn all_instances(&self) -> Vec<ServiceInstance> {
        self.picker.usable(&self.cache.instances(), Instant::now())
    }

    /// Reports that calling `instance` failed (Curator's `noteError`).
    pub fn note_error(&self, instance: &ServiceInstance) {
        self.picker.note_error(&instance.id, Instant::now());
    }
}

/// Per instance id: errors so far, and since when it counts as down.
type ErrorTable = HashMap<String, (u32, Option<Instant>)>;

/// The selection, with time passed in.
#[derive(Debug, Clone)]
pub(crate) struct Picker {
    strategy: Strategy,
    policy: DownInstancePolicy,
    next: Arc<AtomicUsize>,
    sticky: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<ErrorTable>>,
    rng: Arc<Mutex<StdRng>>,
}

impl Picker {
    pub(crate) fn new(strategy: Strategy, policy: DownInstancePolicy, seed: u64) -> Self {
        Picker {
            strategy,
            policy,
            next: Arc::default(),
            sticky: Arc::default(),
            errors: Arc::default(),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    pub(crate) fn note_error(&self, id: &str, now: Instant) {
        let Ok(mut errors) = self.errors.lock() else {
            return;
        };
        let e = errors.entry(id.to_owned()).or_insert((0, None));
        e.0 += 1;
        if e.0 >= self.policy.error_threshold {
            e.1 = Some(now);
        }
    }

    pub(crate) fn usable(&self, all: &[ServiceInstance], now: Instant) -> Vec<ServiceInstance> {
        let Ok(mut errors) = self.errors.lock() else {
            return Vec::new();
        };
        // Down instances come back after the timeout, with a clean slate.
        errors.retain(|_, (_, since)| !since.is_some_and(|t| now >= t + self.policy.timeout));
        all.iter()
            .filter(|i| i.enabled && !errors.get(&i.id).is_some_and(|(_, since)| since.is_some()))
            .cloned()
            .collect()
    }

    pub(crate) fn pick(&self, all: &[ServiceInstance], now: Instant) -> Option<ServiceInstance> {
        let usable = self.usable(all, now);
        if usable.is_empty() {
            return None;
        }
        let round_robin =
            || usable[self.next.fetch_add(1, Ordering::Relaxed) % usable.len()].clone();
        match self.strategy {
            Strategy::RoundRobin => Some(round_robin()),
            Strategy::Random => {
                let i = self.rng.lock().ok()?.gen_range(0..usable.len());
                Some(usable[i].clone())
            }
            Strategy::Sticky => {
                let mut sticky = self.sticky.lock().ok()?;
                if let Some(held) = sticky
                    .as_ref()
                    .and_then(|id| usable.iter().find(|i| &i.id == id))
                {
                    return Some(held.clone());
                }
                let chosen = round_robin();
                *sticky = Some(chosen.id.clone());
                Some(chosen)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(ids: &[&str]) -> Vec<ServiceInstance> {
        ids.iter()
            .map(|id| ServiceInstance::new("s").with_id(id))
            .collect()
    }

    fn ids(v: &[ServiceInstance]) -> Vec<String> {
        v.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn strategies() {
        let all = instances(&["a", "b", "c"]);
        let now = Instant::now();
        let rr = Picker::new(Strategy::RoundRobin, DownInstancePolicy::default(), 1);
        let picked: Vec<_> = (0..6).map(|_| rr.pick(&all, now).unwrap().id).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b", "c"]);

        let sticky = Picker::new(Strategy::Sticky, DownInstancePolicy::default(), 1);
        let first = sticky.pick(&all, now).unwrap().id;
        assert!((0..5).all(|_| sticky.pick(&all, now).unwrap().id == first));
        let without: Vec<_> = all.iter().filter(|i| i.id != first).cloned().collect();
        let second = sticky.pick(&without, now).unwrap().id;
        assert_ne!(second, first);
        assert_eq!(
            sticky.pick(&all, now).unwrap().id,
            second,
            "sticks to the new one"
        );

        let random = Picker::new(Strategy::Random, DownInstancePolicy::default(), 7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.insert(random.pick(&all, now).unwrap().id);
        }
        assert_eq!(seen.len(), 3);
        assert!(random.pick(&[], now).is_none());
    }

    #[test]
    fn down_instances_are_skipped_for_the_timeout_and_disabled_ones_always() {
        let mut all = instances(&["a", "b", "c"]);
        all[2].enabled = false;
        let policy = DownInstancePolicy {
            timeout: Duration::from_secs(30),
            error_threshold: 2,
        };
        let p = Picker::new(Strategy::RoundRobin, policy, 1);
        let t0 = Instant::now();
        assert_eq!(ids(&p.usable(&all, t0)), ["a", "b"]);
        p.note_error("a", t0);
        assert_eq!(
            ids(&p.usable(&all, t0)),
            ["a", "b"],
            "one error is not down"
        );
        p.note_error("a", t0);
        assert_eq!(ids(&p.usable(&all, t0)), ["b"]);
        assert_eq!(ids(&p.usable(&all, t0 + Duration::from_secs(29))), ["b"]);
        assert_eq!(
            ids(&p.usable(&all, t0 + Duration::from_secs(30))),
            ["a", "b"]
        );
        // Back with a clean slate: one more error is not enough again.
        p.note_error("a", t0 + Duration::from_secs(31));
        assert_eq!(
            ids(&p.usable(&all, t0 + Duration::from_secs(31))),
            ["a", "b"]
        );
    }
}
