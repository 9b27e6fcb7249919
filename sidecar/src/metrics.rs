//! The sidecar's Prometheus metrics (served in the text format on the admin port's
//! `/metrics`). Per-endpoint handles are taken once, when an endpoint joins a pool, so the
//! request path touches no map.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    service: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    service: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointClass {
    service: String,
    endpoint: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointError {
    service: String,
    endpoint: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    service: String,
    state: &'static str,
}

/// Status classes of upstream responses.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Kinds of upstream errors.
pub const ERROR_KINDS: [&str; 3] = ["connect", "timeout", "reset"];
/// The states an endpoint can be in (see `/endpoints`).
pub const STATES: [&str; 5] = ["healthy", "ejected", "draining", "kept", "filtered"];

/// Every metric of one sidecar.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<ClassLabel, Counter>,
    unrouted: Counter,
    duration: Histograms<ServiceLabel>,
    upstream_requests: Family<EndpointClass, Counter>,
    upstream_duration: Histograms<EndpointLabel>,
    upstream_errors: Family<EndpointError, Counter>,
    ejections: Family<EndpointLabel, Counter>,
    retries: Family<ServiceLabel, Counter>,
    retries_refused: Family<ServiceLabel, Counter>,
    endpoints: Family<StateLabel, Gauge>,
    /// Seconds since the view last changed or was confirmed by the registry.
    pub view_age_seconds: Gauge<f64, AtomicU64>,
    /// The zxid the view was read at.
    pub view_zxid: Gauge,
    /// 1 while the view comes from disk or the registry is unreachable.
    pub view_stale: Gauge,
    /// 1 while this instance is registered.
    pub registered: Gauge,
    /// 1 while the session with the ensemble is connected.
    pub connected: Gauge,
}

/// One endpoint's handles.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    classes: [Counter; 5],
    /// Attempt latency to response headers.
    pub duration: Histogram,
    errors: [Counter; 3],
    /// Ejections by the outlier detector.
    pub ejections: Counter,
}

impl EndpointMetrics {
    /// Counts a response of `status`.
    pub fn response(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
        self.duration.observe(seconds);
    }

    /// Counts an error of `kind` (one of [`ERROR_KINDS`]).
    pub fn error(&self, kind: &'static str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }
}

/// One service's handles.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    classes: [Counter; 5],
    /// Time to response headers, retries included.
    pub duration: Histogram,
    /// Retries sent.
    pub retries: Counter,
    /// Retries the budget refused.
    pub retries_refused: Counter,
}

impl ServiceMetrics {
    /// Counts a request answered with `status` after `seconds`.
    pub fn response(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
        self.duration.observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rookery_sidecar");
        let requests = Family::<ClassLabel, Counter>::default();
        let unrouted = Counter::default();
        let duration = Histograms::<ServiceLabel>::new_with_constructor(histogram as fn() -> _);
        let upstream_requests = Family::<EndpointClass, Counter>::default();
        let upstream_duration =
            Histograms::<EndpointLabel>::new_with_constructor(histogram as fn() -> _);
        let upstream_errors = Family::<EndpointError, Counter>::default();
        let ejections = Family::<EndpointLabel, Counter>::default();
        let retries = Family::<ServiceLabel, Counter>::default();
        let retries_refused = Family::<ServiceLabel, Counter>::default();
        let endpoints = Family::<StateLabel, Gauge>::default();
        let view_age_seconds = Gauge::<f64, AtomicU64>::default();
        let view_zxid = Gauge::default();
        let view_stale = Gauge::default();
        let registered = Gauge::default();
        let connected = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by service and status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to response headers, by service",
            duration.clone(),
        );
        registry.register(
            "upstream_requests",
            "Attempts to an endpoint, by status class",
            upstream_requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "One attempt's time to response headers",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Attempts that failed without a response, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "ejections",
            "Ejections by the outlier detector",
            ejections.clone(),
        );
        registry.register("retries", "Retries sent", retries.clone());
        registry.register(
            "retries_refused",
            "Retries the retry budget refused",
            retries_refused.clone(),
        );
        registry.register("endpoints", "Endpoints by state", endpoints.clone());
        registry.register(
            "view_age_seconds",
            "Seconds since the registry last confirmed the view",
            view_age_seconds.clone(),
        );
        registry.register(
            "view_zxid",
            "The zxid the view was read at",
            view_zxid.clone(),
        );
        registry.register(
            "view_stale",
            "1 while the view comes from disk or the registry is unreachable",
            view_stale.clone(),
        );
        registry.register(
            "registered",
            "1 while this instance is registered",
            registered.clone(),
        );
        registry.register(
            "connected",
            "1 while the session with the ensemble is connected",
            connected.clone(),
        );
        Metrics {
            registry,
            requests,
            unrouted,
            duration,
            upstream_requests,
            upstream_duration,
            upstream_errors,
            ejections,
            retries,
            retries_refused,
            endpoints,
            view_age_seconds,
            view_zxid,
            view_stale,
            registered,
            connected,
        }
    }

    /// Counts a request that matched no route.
    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// The handles of `endpoint` of `service`.
    pub fn endpoint(&self, service: &str, endpoint: &str) -> EndpointMetrics {
        let label = EndpointLabel {
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        let class = |class| {
            self.upstream_requests
                .get_or_create(&EndpointClass {
                    service: service.to_owned(),
                    endpoint: endpoint.to_owned(),
                    class,
                })
                .clone()
        };
        let error = |kind| {
            self.upstream_errors
                .get_or_create(&EndpointError {
                    service: service.to_owned(),
                    endpoint: endpoint.to_owned(),
                    kind,
                })
                .clone()
        };
        EndpointMetrics {
            classes: CLASSES.map(class),
            duration: self.upstream_duration.get_or_create(&label).clone(),
            errors: ERROR_KINDS.map(error),
            ejections: self.ejections.get_or_create(&label).clone(),
        }
    }

    /// Drops the series of an endpoint that left its pool.
    pub fn forget_endpoint(&self, service: &str, endpoint: &str) {
        let label = EndpointLabel {
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        for class in CLASSES {
            self.upstream_requests.remove(&EndpointClass {
                service: service.to_owned(),
                endpoint: endpoint.to_owned(),
                class,
            });
        }
        for kind in ERROR_KINDS {
            self.upstream_errors.remove(&EndpointError {
                service: service.to_owned(),
                endpoint: endpoint.to_owned(),
                kind,
            });
        }
        self.upstream_duration.remove(&label);
        self.ejections.remove(&label);
    }

    /// The handles of `service`.
    pub fn service(&self, service: &str) -> ServiceMetrics {
        let label = ServiceLabel {
            service: service.to_owned(),
        };
        let class = |class| {
            self.requests
                .get_or_create(&ClassLabel {
                    service: service.to_owned(),
                    class,
                })
                .clone()
        };
        ServiceMetrics {
            classes: CLASSES.map(class),
            duration: self.duration.get_or_create(&label).clone(),
            retries: self.retries.get_or_create(&label).clone(),
            retries_refused: self.retries_refused.get_or_create(&label).clone(),
        }
    }

    /// Sets the number of `service`'s endpoints in `state`.
    pub fn set_endpoints(&self, service: &str, state: &'static str, n: usize) {
        self.endpoints
            .get_or_create(&StateLabel {
                service: service.to_owned(),
                state,
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
