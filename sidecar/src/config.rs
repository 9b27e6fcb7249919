//! The sidecar's configuration: a TOML file, with any key overridden by a flag or an
//! environment variable (the binary turns those into dotted-key overrides), checked as a whole
//! at start. Every error names the key it is about.
//!
//! ```toml
//! zookeeper = "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181"
//!
//! [service]                 # register this instance (optional)
//! name = "billing"
//! app = "127.0.0.1:8080"    # the local service: health-checked, and the inbound target
//! advertise = "10.0.0.7"    # the address written into the registry
//!
//! [health]
//! http_path = "/health"     # or tcp = true
//! interval_ms = 1000
//!
//! [[routes]]
//! host = "users"            # Host header
//! service = "users"
//! [[routes]]
//! prefix = "/orders/"
//! service = "orders"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration. Every field has a working default, so an empty file is a sidecar
/// that routes `Host: <service>` requests on 127.0.0.1:15001 to the services registered under
/// `/services` of a server on 127.0.0.1:2181.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The ensemble's connect string (`host:port,...[/chroot]`).
    pub zookeeper: String,
    /// The session timeout asked for.
    pub session_timeout_ms: u64,
    /// Where services are registered (Curator x-discovery's base path): `<base>/<name>/<id>`.
    pub base_path: String,
    /// Where the last good view is kept, so a sidecar that starts while the ensemble is down
    /// can route (none: not kept).
    pub state_dir: Option<PathBuf>,
    /// Runtime worker threads (1: a single-threaded runtime).
    pub workers: usize,
    /// A seed for the balancers' random choices (none: from the OS).
    pub seed: Option<u64>,
    /// The instance this sidecar registers, if any.
    pub service: Option<ServiceConfig>,
    /// The health checks of the registered instance.
    pub health: HealthConfig,
    /// Where the local callers send their requests.
    pub outbound: ListenerConfig,
    /// An optional listener in front of the local service (TLS termination, metrics).
    pub inbound: Option<ListenerConfig>,
    /// The admin listener: `/ready`, `/live`, `/metrics`, `/endpoints`.
    pub admin: AdminConfig,
    /// Routing rules of the outbound listener, first match wins; a request that matches none
    /// goes to the service named by its Host header (without port), if there is one.
    pub routes: Vec<Route>,
    /// Extra registry paths to read (Nerve's and Finagle's layouts).
    pub sources: Vec<Source>,
    /// Timeouts, retries, outlier ejection and balancing for every upstream.
    pub upstream: UpstreamConfig,
    /// Per-service settings, by service name.
    pub services: BTreeMap<String, ServicePolicy>,
    /// Protection against empty sets and mass removals.
    pub stability: StabilityConfig,
    /// The lame-duck shutdown.
    pub drain: DrainConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            zookeeper: "127.0.0.1:2181".into(),
            session_timeout_ms: 10_000,
            base_path: "/services".into(),
            state_dir: None,
            workers: 1,
            seed: None,
            service: None,
            health: HealthConfig::default(),
            outbound: ListenerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 15001)),
                tls: None,
            },
            inbound: None,
            admin: AdminConfig::default(),
            routes: Vec::new(),
            sources: Vec::new(),
            upstream: UpstreamConfig::default(),
            services: BTreeMap::new(),
            stability: StabilityConfig::default(),
            drain: DrainConfig::default(),
        }
    }
}

/// The registered instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's name.
    pub name: String,
    /// The instance id (default: a random UUID, as Curator's).
    #[serde(default)]
    pub id: Option<String>,
    /// The local service's address: health-checked, and where inbound requests go.
    pub app: SocketAddr,
    /// The address written into the registry (default: the app's IP; `auto`: the host's first
    /// non-loopback address, as Curator's `ServiceInstanceBuilder` picks it).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The port written into the registry (default: a plain inbound listener's port if there
    /// is one, else the app's). A TLS inbound listener's port is written as `sslPort`.
    #[serde(default)]
    pub port: Option<u16>,
    /// A weight for balancers (written as `payload.weight`; absent: no payload, weight 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// A zone label (written as `payload.zone`).
    #[serde(default)]
    pub zone: Option<String>,
}

/// Health checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// An HTTP GET of this path must answer 2xx or 3xx.
    pub http_path: Option<String>,
    /// A TCP connect must succeed (when no `http_path` is given, this is the check).
    pub tcp: bool,
    /// Time between checks.
    pub interval_ms: u64,
    /// One check's time limit.
    pub timeout_ms: u64,
    /// Consecutive passes before the instance counts as healthy.
    pub rise: u32,
    /// Consecutive failures before it counts as unhealthy.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            http_path: None,
            tcp: true,
            interval_ms: 1000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
        }
    }
}

/// A listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// TLS termination: a certificate chain and its key, PEM files.
    #[serde(default)]
    pub tls: Option<ServerTls>,
}

/// Server certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 15000)),
        }
    }
}

/// A routing rule: a Host header or a path prefix, to a service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The Host header (or HTTP/2 authority) without its port.
    #[serde(default)]
    pub host: Option<String>,
    /// A path prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// The service the request goes to.
    pub service: String,
}

/// The layout of the nodes under a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Whichever of the formats below a node's data parses as.
    Auto,
    /// Curator x-discovery's `ServiceInstance` JSON.
    Curator,
    /// Nerve's JSON (`host`, `port`, `weight`, `labels`).
    Nerve,
    /// Finagle/Aurora serverset JSON (`serviceEndpoint`, `status`).
    Serverset,
}

/// A registry path to read besides the base path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The path.
    pub path: String,
    /// Its nodes' format.
    #[serde(default = "auto")]
    pub format: Format,
    /// When given, the path's children are this service's instances (Nerve's and Finagle's
    /// layouts); otherwise its children are services and theirs are instances (Curator's).
    #[serde(default)]
    pub service: Option<String>,
}

fn auto() -> Format {
    Format::Auto
}

/// How a balancer picks an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// Power of two choices over the fewest outstanding requests (weighted).
    P2c,
    /// Power of two choices over peak-EWMA latency times outstanding requests.
    PeakEwma,
    /// Smooth weighted round robin.
    RoundRobin,
}

/// The protocol spoken to a service's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (or HTTP/2 if TLS's ALPN picks it).
    Http1,
    /// HTTP/2 over plain TCP, with prior knowledge.
    H2c,
}

/// Settings for every upstream (a service's `[services.<name>]` overrides some).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Time limit for one attempt's response headers.
    pub request_timeout_ms: u64,
    /// The balancer.
    pub balancer: Balancer,
    /// The protocol.
    pub protocol: Protocol,
    /// Connect over TLS to the instance's `sslPort`.
    pub tls: bool,
    /// CA certificates (PEM) that upstream certificates must chain to (required with `tls`).
    pub ca_file: Option<PathBuf>,
    /// Largest request body held for a retry; larger bodies are streamed and not retried.
    pub retry_body_limit_bytes: usize,
    /// Most attempts of one request, the first included.
    pub max_attempts: usize,
    /// Retries allowed as a share of requests (0.2: one retry per five requests) ...
    pub retry_budget_ratio: f32,
    /// ... plus this many per second in any case.
    pub retry_min_per_second: u32,
    /// Consecutive failures (5xx or a failed connect) that eject an endpoint.
    pub outlier_consecutive_failures: u32,
    /// The first ejection's length; each further one doubles it.
    pub outlier_base_ejection_ms: u64,
    /// The longest ejection.
    pub outlier_max_ejection_ms: u64,
    /// The largest share of a service's endpoints ejected at once.
    pub outlier_max_ejected_share: f32,
    /// Idle pooled connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_ms: 1000,
            request_timeout_ms: 15_000,
            balancer: Balancer::P2c,
            protocol: Protocol::Http1,
            tls: false,
            ca_file: None,
            retry_body_limit_bytes: 64 * 1024,
            max_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_min_per_second: 10,
            outlier_consecutive_failures: 5,
            outlier_base_ejection_ms: 10_000,
            outlier_max_ejection_ms: 300_000,
            outlier_max_ejected_share: 0.5,
            max_idle_per_endpoint: 64,
        }
    }
}

/// One service's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    /// Its balancer.
    pub balancer: Option<Balancer>,
    /// Its protocol.
    pub protocol: Option<Protocol>,
    /// TLS to its instances.
    pub tls: Option<bool>,
    /// Its request timeout.
    pub request_timeout_ms: Option<u64>,
}

/// Static stability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StabilityConfig {
    /// A change that removes more than this share of a service's endpoints (or all of them)
    /// is applied only if the registry still says so after `confirm_ms`.
    pub max_removal_share: f32,
    /// The confirmation window.
    pub confirm_ms: u64,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        StabilityConfig {
            max_removal_share: 0.5,
            confirm_ms: 5000,
        }
    }
}

/// The lame-duck shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// After deleting the registration, wait this long for the callers to see it.
    pub propagation_ms: u64,
    /// Then wait at most this long for in-flight requests.
    pub timeout_ms: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            propagation_ms: 2000,
            timeout_ms: 10_000,
        }
    }
}

impl Config {
    /// Reads `file` (if any), applies `overrides` in order, and checks the result.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is wrong.
    pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let value = if o.literal {
                toml::Value::String(o.value.clone())
            } else {
                parse_value(&o.value)
            };
            set(&mut table, &o.key, value)?;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(e.to_string().trim().to_owned()))?;
        // Routes given as `HOST=SERVICE` or `/PREFIX=SERVICE` go first: flags win.
        let mut routes = Vec::new();
        for o in overrides.iter().filter(|o| o.key == ROUTE_KEY) {
            routes.push(route_spec(&o.value)?);
        }
        routes.append(&mut config.routes);
        config.routes = routes;
        config.check()?;
        Ok(config)
    }

    /// Checks what the types alone do not.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Config(format!("{key}: {why}")));
        if self.zookeeper.trim().is_empty() {
            return bad("zookeeper", "an empty connect string");
        }
        if !self.base_path.starts_with('/')
            || (self.base_path.len() > 1 && self.base_path.ends_with('/'))
        {
            return bad(
                "base_path",
                "must be an absolute path without a trailing '/'",
            );
        }
        if !(1..=64).contains(&self.workers) {
            return bad("workers", "must be 1 to 64");
        }
        if self.session_timeout_ms < 1000 {
            return bad("session_timeout_ms", "must be at least 1000");
        }
        if let Some(service) = &self.service {
            if service.name.is_empty() || service.name.contains('/') {
                return bad("service.name", "must be a non-empty name without '/'");
            }
            if let Some(id) = &service.id {
                if id.is_empty() || id.contains('/') {
                    return bad("service.id", "must be a non-empty id without '/'");
                }
            }
            if service.weight == Some(0) {
                return bad("service.weight", "must be at least 1");
            }
        }
        let h = &self.health;
        if h.rise == 0 {
            return bad("health.rise", "must be at least 1");
        }
        if h.fall == 0 {
            return bad("health.fall", "must be at least 1");
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            return bad(
                "health.interval_ms",
                "interval and timeout must be positive",
            );
        }
        if let Some(path) = &h.http_path {
            if !path.starts_with('/') {
                return bad("health.http_path", "must start with '/'");
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            match (&route.host, &route.prefix) {
                (None, None) => return bad(&format!("routes[{i}]"), "give `host` or `prefix`"),
                (_, Some(p)) if !p.starts_with('/') => {
                    return bad(&format!("routes[{i}].prefix"), "must start with '/'")
                }
                _ => {}
            }
            if route.service.is_empty() {
                return bad(&format!("routes[{i}].service"), "empty");
            }
        }
        for (i, source) in self.sources.iter().enumerate() {
            if !source.path.starts_with('/') {
                return bad(&format!("sources[{i}].path"), "must be an absolute path");
            }
        }
        let u = &self.upstream;
        if u.connect_timeout_ms == 0 || u.request_timeout_ms == 0 {
            return bad("upstream.request_timeout_ms", "timeouts must be positive");
        }
        if !(1..=10).contains(&u.max_attempts) {
            return bad("upstream.max_attempts", "must be 1 to 10");
        }
        if !(0.0..=1.0).contains(&u.retry_budget_ratio) {
            return bad("upstream.retry_budget_ratio", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&u.outlier_max_ejected_share) {
            return bad(
                "upstream.outlier_max_ejected_share",
                "must be between 0 and 1",
            );
        }
        if u.outlier_consecutive_failures == 0 {
            return bad(
                "upstream.outlier_consecutive_failures",
                "must be at least 1",
            );
        }
        let any_tls = u.tls || self.services.values().any(|s| s.tls == Some(true));
        if any_tls && u.ca_file.is_none() {
            return bad("upstream.ca_file", "required when upstream TLS is on");
        }
        if !(0.0..=1.0).contains(&self.stability.max_removal_share) {
            return bad("stability.max_removal_share", "must be between 0 and 1");
        }
        Ok(())
    }

    /// The settings of `service`'s upstream.
    pub fn policy(&self, service: &str) -> Policy {
        let own = self.services.get(service).cloned().unwrap_or_default();
        let u = &self.upstream;
        Policy {
            balancer: own.balancer.unwrap_or(u.balancer),
            protocol: own.protocol.unwrap_or(u.protocol),
            tls: own.tls.unwrap_or(u.tls),
            request_timeout: Duration::from_millis(
                own.request_timeout_ms.unwrap_or(u.request_timeout_ms),
            ),
        }
    }
}

/// One service's effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Its balancer.
    pub balancer: Balancer,
    /// Its protocol.
    pub protocol: Protocol,
    /// TLS to its instances.
    pub tls: bool,
    /// One attempt's time limit.
    pub request_timeout: Duration,
}

/// The pseudo-key of a route given as `HOST=SERVICE` or `/PREFIX=SERVICE`.
pub const ROUTE_KEY: &str = "+route";

/// One setting from a flag or the environment.
#[derive(Debug, Clone)]
pub struct Override {
    key: String,
    value: String,
    literal: bool,
}

impl Override {
    /// `key` (dotted, such as `health.interval_ms`) set to `value` read as TOML (a value that
    /// is not TOML is taken as a string). `routes` and `sources` take a TOML array of tables,
    /// e.g. `[{host = "a", service = "a"}]`.
    pub fn toml(key: &str, value: &str) -> Override {
        Override {
            key: key.to_owned(),
            value: value.to_owned(),
            literal: false,
        }
    }

    /// `key` set to the string `value` as it is.
    pub fn string(key: &str, value: &str) -> Override {
        Override {
            key: key.to_owned(),
            value: value.to_owned(),
            literal: true,
        }
    }

    /// A route, `HOST=SERVICE` or `/PREFIX=SERVICE`, put before the file's routes.
    pub fn route(spec: &str) -> Override {
        Override::string(ROUTE_KEY, spec)
    }

    /// `KEY=VALUE` as [`Override::toml`].
    ///
    /// # Errors
    /// [`Error::Config`] if there is no `=`.
    pub fn parse(assignment: &str) -> Result<Override> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("{assignment}: expected KEY=VALUE")))?;
        Ok(Override::toml(key.trim(), value.trim()))
    }
}

/// A route from `HOST=SERVICE` or `/PREFIX=SERVICE`.
fn route_spec(spec: &str) -> Result<Route> {
    let (what, service) = spec
        .split_once('=')
        .filter(|(w, s)| !w.is_empty() && !s.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "route {spec:?}: expected HOST=SERVICE or /PREFIX=SERVICE"
            ))
        })?;
    let (host, prefix) = if what.starts_with('/') {
        (None, Some(what.to_owned()))
    } else {
        (Some(what.to_owned()), None)
    };
    Ok(Route {
        host,
        prefix,
        strip_prefix: false,
        service: service.to_owned(),
    })
}

fn parse_value(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

/// Sets the dotted `key` of `table` to `parsed`.
fn set(table: &mut toml::Table, key: &str, parsed: toml::Value) -> Result<()> {
    if key == ROUTE_KEY {
        return Ok(());
    }
    let mut parts = key.split('.').peekable();
    let mut at = table;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Error::Config(format!("{key}: not a key")));
        }
        if parts.peek().is_none() {
            at.insert(part.to_owned(), parsed);
            return Ok(());
        }
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match next {
            toml::Value::Table(t) => t,
            _ => return Err(Error::Config(format!("{key}: `{part}` is not a table"))),
        };
    }
    Err(Error::Config(format!("{key}: not a key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidecar.toml");
        std::fs::write(&path, text).unwrap();
        let o: Vec<Override> = overrides
            .iter()
            .map(|(k, v)| {
                if *k == "route" {
                    Override::route(v)
                } else {
                    Override::toml(k, v)
                }
            })
            .collect();
        Config::load(Some(&path), &o)
    }

    fn err(text: &str, overrides: &[(&str, &str)]) -> String {
        load(text, overrides).unwrap_err().to_string()
    }

    #[test]
    fn defaults_work_with_no_file() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.outbound.listen.port(), 15001);
        assert_eq!(c.admin.listen.port(), 15000);
        assert_eq!(c.zookeeper, "127.0.0.1:2181");
        assert_eq!(c.policy("x").balancer, Balancer::P2c);
    }

    #[test]
    fn overrides_win_over_the_file_and_are_typed() {
        let c = load(
            "zookeeper = \"a:1\"\n[service]\nname = \"billing\"\napp = \"127.0.0.1:8080\"\n",
            &[
                ("zookeeper", "b:2"),
                ("health.interval_ms", "250"),
                ("service.weight", "3"),
                ("routes", "[{host = \"users\", service = \"users\"}]"),
                ("services.users.balancer", "round-robin"),
            ],
        )
        .unwrap();
        assert_eq!(c.zookeeper, "b:2");
        assert_eq!(c.health.interval_ms, 250);
        assert_eq!(c.service.as_ref().unwrap().weight, Some(3));
        assert_eq!(c.routes[0].service, "users");
        assert_eq!(c.policy("users").balancer, Balancer::RoundRobin);
        let c = load(
            "[[routes]]\nprefix = \"/a/\"\nservice = \"a\"\n",
            &[("route", "/b/=b"), ("route", "web=web")],
        )
        .unwrap();
        let got: Vec<_> = c
            .routes
            .iter()
            .map(|r| (r.host.clone(), r.prefix.clone(), r.service.clone()))
            .collect();
        assert_eq!(got[0], (None, Some("/b/".into()), "b".into()));
        assert_eq!(got[1], (Some("web".into()), None, "web".into()));
        assert_eq!(got[2].2, "a");
        let id = Config::load(
            None,
            &[
                Override::string("service.id", "0042"),
                Override::string("service.name", "x"),
                Override::string("service.app", "127.0.0.1:9"),
            ],
        )
        .unwrap();
        assert_eq!(id.service.unwrap().id.as_deref(), Some("0042"));
    }

    #[test]
    fn a_bad_configuration_names_its_key() {
        assert!(err("[health]\nrise = 0\n", &[]).contains("health.rise"));
        assert!(err("[health]\nintervall_ms = 5\n", &[]).contains("intervall_ms"));
        assert!(err("[outbound]\nlisten = \"nowhere\"\n", &[]).contains("listen"));
        assert!(err("[[routes]]\nservice = \"a\"\n", &[]).contains("routes[0]"));
        assert!(err("", &[("upstream.balancer", "fastest")]).contains("fastest"));
        assert!(err("", &[("upstream.tls", "true")]).contains("upstream.ca_file"));
        assert!(err("", &[("base_path", "services")]).contains("base_path"));
        assert!(err("", &[("health.rise.x", "1")]).contains("health.rise"));
        assert!(
            err("[service]\nname = \"a/b\"\napp = \"127.0.0.1:1\"\n", &[]).contains("service.name")
        );
        assert!(err("not toml [", &[]).contains("sidecar.toml"));
        assert!(err("", &[("route", "nothing")]).contains("nothing"));
        assert!(Override::parse("novalue").is_err());
    }
}
