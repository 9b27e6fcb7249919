//! Balancing: a [`Pool`] of one service's endpoints that only adds, removes and picks, and
//! [`Balance`], the tower service that sends each request to the pool's pick.
//!
//! Picks skip ejected and disabled endpoints. If every enabled endpoint is ejected, the pick
//! is among all of them ("panic routing", as Envoy does below its panic threshold): a request
//! tried on a suspect endpoint beats a certain 503.

mod pick;
mod service;

pub use pick::{Ewma, Rng};
pub use service::Balance;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::config::Balancer;
use crate::endpoint::Endpoint;
use crate::layers::EndpointService;
use crate::metrics::{EndpointMetrics, Metrics};

/// An endpoint's live state: load, latency and outlier status. Kept across view updates for
/// as long as the endpoint stays in its pool.
#[derive(Debug)]
pub struct EndpointState {
    /// What the registry says.
    pub endpoint: Endpoint,
    /// `host:port` connected to.
    pub authority: String,
    /// Removed from the registry, but kept by the static-stability guard.
    kept: AtomicBool,
    /// Requests sent and not yet answered (headers).
    outstanding: AtomicU32,
    /// Peak-EWMA latency.
    ewma: Mutex<Ewma>,
    /// Consecutive failures (outlier detection).
    pub(crate) consecutive_failures: AtomicU32,
    /// How many times it was ejected.
    pub(crate) ejections: AtomicU32,
    /// Ejected until this many ms after the pool's epoch (0: not ejected).
    pub(crate) ejected_until_ms: AtomicU64,
    /// Its metrics.
    pub metrics: EndpointMetrics,
    epoch: Instant,
}

impl EndpointState {
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the outlier detector has it out now, and for how many more ms.
    pub fn ejected_for_ms(&self) -> Option<u64> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| until - now)
    }

    /// Whether the stability guard keeps it after the registry removed it.
    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Relaxed)
    }

    /// Requests in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The latency estimate, in ms.
    pub fn ewma_ms(&self) -> f64 {
        self.ewma
            .lock()
            .map(|e| e.estimate_ns() / 1e6)
            .unwrap_or(0.0)
    }

    /// Its state's name, and why (see `/endpoints`).
    pub fn state(&self) -> (&'static str, String) {
        if !self.endpoint.enabled {
            ("draining", "disabled in the registry".into())
        } else if let Some(ms) = self.ejected_for_ms() {
            (
                "ejected",
                format!(
                    "{} consecutive failures; back in {ms} ms",
                    self.consecutive_failures.load(Ordering::Relaxed)
                ),
            )
        } else if self.is_kept() {
            (
                "kept",
                "removed from the registry; kept until the removal is confirmed".into(),
            )
        } else {
            ("healthy", "in the registry".into())
        }
    }

    /// Starts a request: counted outstanding until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: self.clone(),
            started: Instant::now(),
        }
    }
}

/// A request in flight to one endpoint.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<EndpointState>,
    started: Instant,
}

impl InFlight {
    /// The time since the request started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The endpoint.
    pub fn state(&self) -> &Arc<EndpointState> {
        &self.state
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.outstanding.fetch_sub(1, Ordering::Relaxed);
        let rtt = self.started.elapsed();
        if let Ok(mut e) = self.state.ewma.lock() {
            e.observe(rtt, Instant::now());
        }
    }
}

/// An endpoint and the stack requests to it go through.
#[derive(Debug)]
pub struct Member {
    /// Its state.
    pub state: Arc<EndpointState>,
    /// Its stack (timeout, outlier detection, the connection pool).
    pub service: EndpointService,
}

/// One service's endpoints.
#[derive(Debug)]
pub struct Pool {
    name: String,
    balancer: Balancer,
    members: ArcSwap<Vec<Arc<Member>>>,
    /// Smooth weighted round robin's current weights, by authority.
    rr: Mutex<HashMap<String, i64>>,
    rng: Rng,
    epoch: Instant,
}

impl Pool {
    /// An empty pool for `name`.
    pub fn new(name: &str, balancer: Balancer, seed: u64) -> Pool {
        Pool {
            name: name.to_owned(),
            balancer,
            members: ArcSwap::from_pointee(Vec::new()),
            rr: Mutex::new(HashMap::new()),
            rng: Rng::new(seed),
            epoch: Instant::now(),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members now.
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.members.load_full()
    }

    /// Replaces the endpoints with `endpoints` (each with whether it is only kept by the
    /// stability guard). An endpoint whose registry data is unchanged keeps its state; `make`
    /// builds the stack of a new one.
    pub fn update(
        &self,
        endpoints: &[(Endpoint, bool)],
        tls: bool,
        metrics: &Metrics,
        make: &dyn Fn(&Arc<EndpointState>) -> EndpointService,
    ) {
        let old = self.members.load_full();
        let mut next = Vec::with_capacity(endpoints.len());
        for (endpoint, kept) in endpoints {
            let Some(authority) = endpoint.authority(tls) else {
                continue;
            };
            let same = old
                .iter()
                .find(|m| m.state.endpoint == *endpoint && m.state.authority == authority);
            let member = match same {
                Some(m) => m.clone(),
                None => {
                    let state = Arc::new(EndpointState {
                        endpoint: endpoint.clone(),
                        metrics: metrics.endpoint(&self.name, &authority),
                        authority,
                        kept: AtomicBool::new(false),
                        outstanding: AtomicU32::new(0),
                        ewma: Mutex::new(Ewma::new(Instant::now())),
                        consecutive_failures: AtomicU32::new(0),
                        ejections: AtomicU32::new(0),
                        ejected_until_ms: AtomicU64::new(0),
                        epoch: self.epoch,
                    });
                    let service = make(&state);
                    Arc::new(Member { state, service })
                }
            };
            member.state.kept.store(*kept, Ordering::Relaxed);
            next.push(member);
        }
        for gone in old.iter() {
            if !next
                .iter()
                .any(|m| m.state.authority == gone.state.authority)
            {
                metrics.forget_endpoint(&self.name, &gone.state.authority);
            }
        }
        if let Ok(mut rr) = self.rr.lock() {
            rr.retain(|a, _| next.iter().any(|m| m.state.authority == *a));
        }
        self.members.store(Arc::new(next));
    }

    /// The share of enabled members ejected now (for the outlier detector's cap).
    pub fn ejected_share(&self) -> f32 {
        let members = self.members.load();
        let enabled = members.iter().filter(|m| m.state.endpoint.enabled).count();
        if enabled == 0 {
            return 0.0;
        }
        let ejected = members
            .iter()
            .filter(|m| m.state.endpoint.enabled && m.state.ejected_for_ms().is_some())
            .count();
        ejected as f32 / enabled as f32
    }

    /// Picks a member for a request, avoiding `avoid` (an authority that just failed) when
    /// another is usable.
    pub fn pick(&self, avoid: Option<&str>) -> Option<Arc<Member>> {
        let members = self.members.load();
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let usable = |m: &Member, panic: bool| {
            m.state.endpoint.enabled
                && (panic || m.state.ejected_until_ms.load(Ordering::Relaxed) <= now_ms)
        };
        let mut panic = false;
        if !members.iter().any(|m| usable(m, false)) {
            panic = true;
            if !members.iter().any(|m| usable(m, true)) {
                return None;
            }
        }
        let avoided = |m: &Member| avoid == Some(m.state.authority.as_str());
        let more_than_one = members.iter().filter(|m| usable(m, panic)).nth(1).is_some();
        let ok = |m: &Member| usable(m, panic) && !(more_than_one && avoided(m));
        let picked = match self.balancer {
            Balancer::RoundRobin => self.round_robin(&members, &ok),
            Balancer::P2c => self.p2c(&members, &ok, |m| {
                f64::from(m.state.outstanding() + 1) / f64::from(m.state.endpoint.weight)
            }),
            Balancer::PeakEwma => self.p2c(&members, &ok, |m| {
                let ewma = m.state.ewma.lock().map(|e| e.estimate_ns()).unwrap_or(0.0);
                ewma * f64::from(m.state.outstanding() + 1) / f64::from(m.state.endpoint.weight)
            }),
        };
        picked.map(|i| members[i].clone())
    }

    /// Power of two choices: two members drawn with probability in proportion to weight, the
    /// one with the lower `load` wins.
    fn p2c(
        &self,
        members: &[Arc<Member>],
        ok: &dyn Fn(&Member) -> bool,
        load: impl Fn(&Member) -> f64,
    ) -> Option<usize> {
        let a = self.draw(members, ok)?;
        let Some(b) = self.draw_other(members, ok, a) else {
            return Some(a);
        };
        Some(if load(&members[b]) < load(&members[a]) {
            b
        } else {
            a
        })
    }

    fn draw_other(
        &self,
        members: &[Arc<Member>],
        ok: &dyn Fn(&Member) -> bool,
        not: usize,
    ) -> Option<usize> {
        // Bounded: a second draw equal to the first is retried a few times, then given up.
        for _ in 0..4 {
            let b = self.draw(members, ok)?;
            if b != not {
                return Some(b);
            }
        }
        None
    }

    /// One weighted draw among the members that are `ok` (rejection sampling, bounded, then a
    /// scan).
    fn draw(&self, members: &[Arc<Member>], ok: &dyn Fn(&Member) -> bool) -> Option<usize> {
        let max_weight = members.iter().map(|m| m.state.endpoint.weight).max()?;
        for _ in 0..16 {
            let i = self.rng.below(members.len());
            let m = &members[i];
            if ok(m) && self.rng.below(max_weight as usize) < m.state.endpoint.weight as usize {
                return Some(i);
            }
        }
        let start = self.rng.below(members.len());
        (0..members.len())
            .map(|k| (start + k) % members.len())
            .find(|&i| ok(&members[i]))
    }

    /// Smooth weighted round robin (nginx's): each pick adds every usable member's weight to
    /// its current value and takes the largest, which then gives back the total.
    fn round_robin(&self, members: &[Arc<Member>], ok: &dyn Fn(&Member) -> bool) -> Option<usize> {
        let mut rr = self.rr.lock().ok()?;
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, m) in members.iter().enumerate() {
            if !ok(m) {
                continue;
            }
            let w = i64::from(m.state.endpoint.weight);
            total += w;
            let cur = rr.entry(m.state.authority.clone()).or_insert(0);
            *cur += w;
            if best.is_none_or(|(_, b)| *cur > b) {
                best = Some((i, *cur));
            }
        }
        let (i, _) = best?;
        if let Some(cur) = rr.get_mut(&members[i].state.authority) {
            *cur -= total;
        }
        Some(i)
    }
}
