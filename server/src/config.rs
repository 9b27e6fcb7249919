//! Server configuration: ZooKeeper's `zoo.cfg` keys parsed into a typed [`Config`].
//!
//! Keys may carry ZooKeeper's `zookeeper.` system-property prefix (for example
//! `zookeeper.extendedTypesEnabled`), because real deployments set them either way. Keys that
//! Rookery does not use yet produce a warning; an invalid value is an error naming the key.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A configuration problem.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `key=value`.
    #[error("line {line}: expected key=value, found {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A value is invalid for its key.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Four-letter words that the default whitelist allows. Apache ZooKeeper allows only `srvr`;
/// Rookery adds `ruok`, which container health checks use and which reveals nothing.
pub const DEFAULT_4LW_WHITELIST: &[&str] = &["srvr", "ruok"];

/// Server settings. Field names carry their units.
#[derive(Debug, Clone)]
pub struct Config {
    /// `tickTime`: the basic time unit, in ms.
    pub tick_time_ms: u64,
    /// `dataDir`: where snapshots (and by default the log) live.
    pub data_dir: PathBuf,
    /// `dataLogDir`: where the transaction log lives.
    pub data_log_dir: PathBuf,
    /// `clientPort`: 0 picks a free port.
    pub client_port: u16,
    /// `clientPortAddress`.
    pub client_port_address: IpAddr,
    /// `maxClientCnxns`: connections per client IP (0 = unlimited).
    pub max_client_cnxns: usize,
    /// `maxCnxns`: connections in all (0 = unlimited).
    pub max_cnxns: usize,
    /// `minSessionTimeout` in ms.
    pub min_session_timeout_ms: u64,
    /// `maxSessionTimeout` in ms.
    pub max_session_timeout_ms: u64,
    /// `4lw.commands.whitelist`; `*` means all.
    pub four_letter_whitelist: BTreeSet<String>,
    /// `jute.maxbuffer`: the largest frame accepted, in bytes.
    pub max_frame_len: usize,
    /// `DigestAuthenticationProvider.superDigest`: `user:BASE64(SHA1(user:password))`.
    pub super_digest: Option<String>,
    /// `extendedTypesEnabled`: allows TTL nodes.
    pub extended_types_enabled: bool,
    /// `znode.container.checkIntervalMs`: how often containers and TTL nodes are reaped.
    pub container_check_interval_ms: u64,
    /// `znode.container.maxNeverUsedIntervalMs`: reap never-used containers after this (0 = never).
    pub container_max_never_used_interval_ms: u64,
    /// Requests a connection may have in flight before the server stops reading from it.
    pub max_inflight_per_connection: usize,
    /// `globalOutstandingLimit`: requests this member's clients may have in flight in all before
    /// it stops reading from every connection until replies drain (ZooKeeper's throttle).
    pub global_outstanding_limit: usize,
    /// `maxOutstandingProposals`: proposals a leader keeps uncommitted; writes beyond it wait,
    /// in order, for room.
    pub max_outstanding_proposals: usize,
    /// Watch notifications that may wait on one connection before it is closed as too slow.
    pub max_pending_notifications: usize,
    /// Watches one connection may hold.
    pub max_watches_per_connection: usize,
    /// How long a connection may stay open without completing the handshake, in ms.
    pub sessionless_timeout_ms: u64,
    /// The server id (`myid`); the top byte of session ids.
    pub server_id: u8,
    /// `snapCount`: a snapshot is taken after a random count of transactions in
    /// [snapCount/2, snapCount].
    pub snap_count: u64,
    /// `preAllocSize` (given in KB): how much log space is preallocated at a time, in bytes.
    pub prealloc_bytes: u64,
    /// `autopurge.snapRetainCount`: snapshots kept by purging (at least 3).
    pub snap_retain_count: usize,
    /// `autopurge.purgeInterval`: hours between purges (0 = never).
    pub purge_interval_hours: u64,
    /// `initLimit`: ticks a learner may take to connect to the leader and sync.
    pub init_limit_ticks: u32,
    /// `syncLimit`: ticks a learner may fall silent before the leader drops it (and the other
    /// way round).
    pub sync_limit_ticks: u32,
    /// `server.N` lines: the ensemble, sorted by id. Empty for a standalone server.
    pub ensemble: Vec<Peer>,
    /// `admin.enableServer`: serve the AdminServer's HTTP commands (on by default, as in
    /// ZooKeeper).
    pub admin_enabled: bool,
    /// `admin.serverAddress`; when absent, the client port's address.
    pub admin_address: Option<IpAddr>,
    /// `admin.serverPort` (8080 by default; 0 picks a free port).
    pub admin_port: u16,
    /// `admin.commandURL`: where the commands live (`/commands`).
    pub admin_command_url: String,
    /// `metricsProvider.className` names ZooKeeper's Prometheus provider: serve `/metrics` on
    /// its own port too.
    pub metrics_enabled: bool,
    /// `metricsProvider.httpHost`; when absent, the client port's address.
    pub metrics_address: Option<IpAddr>,
    /// `metricsProvider.httpPort` (7000 by default).
    pub metrics_port: u16,
    /// `slowRequestThresholdMs`: a request slower than this is logged with its session and
    /// path (0 = never).
    pub slow_request_threshold_ms: u64,
    /// `linearizableReads` (a Rookery key, off by default): in an ensemble every read waits, as
    /// `sync` always does, for a commit point the leader confirmed with a quorum round, so reads
    /// are linearizable at the cost of a round trip to the leader each.
    pub linearizable_reads: bool,
    /// Whether `clientPort` serves plain connections: not when only `secureClientPort` is
    /// configured, as in ZooKeeper.
    pub plain_client_port: bool,
    /// `secureClientPort`: TLS clients (0 picks a free port).
    pub secure_client_port: Option<u16>,
    /// `secureClientPortAddress`; when absent, the client port's address.
    pub secure_client_port_address: Option<IpAddr>,
    /// The `ssl.*` keys: the secure client port's stores and client-certificate policy.
    pub ssl: crate::tls::Settings,
    /// `sslQuorum=true` and the `ssl.quorum.*` keys: mutual TLS between members.
    pub ssl_quorum: Option<crate::tls::Settings>,
    /// `X509AuthenticationProvider.superUser`: the certificate subject that is a super user.
    pub x509_super_user: Option<String>,
    /// `java.security.auth.login.config`: the JAAS file whose `Server` section lists the SASL
    /// DIGEST-MD5 users (`user_NAME="password"`).
    pub jaas_config: Option<PathBuf>,
    /// `sasl.serverconfig`: the JAAS section to read (`Server`).
    pub jaas_section: String,
    /// `superUser`: the SASL user that is a super user.
    pub sasl_super_user: Option<String>,
    /// `enforce.auth.enabled` with `enforce.auth.schemes` (or `sessionRequireClientSASLAuth`):
    /// a connection must authenticate with one of these schemes before anything but auth.
    pub enforce_auth_schemes: Option<BTreeSet<String>>,
    /// `allowSaslFailedClients`: keep a connection whose SASL exchange failed (off).
    pub allow_sasl_failed_clients: bool,
}

/// ZooKeeper's auth provider classes, whose schemes Rookery has built in.
const KNOWN_AUTH_PROVIDERS: &[&str] = &[
    "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
];

/// The class name of ZooKeeper's Prometheus metrics provider.
pub const PROMETHEUS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

/// One `server.N=host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]`
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// N, the member's id (its `myid`).
    pub id: u64,
    /// Host name or address; names are resolved when connecting.
    pub host: String,
    /// The port learners connect to the leader on.
    pub quorum_port: u16,
    /// The port for leader election.
    pub election_port: u16,
    /// A non-voting member.
    pub observer: bool,
    /// The client address given after `;`, if any.
    pub client: Option<String>,
}

impl Peer {
    fn parse(key: &str, id: u64, value: &str) -> Result<Peer, ConfigError> {
        let (addrs, client) = match value.split_once(';') {
            Some((a, c)) => (a, Some(c.trim().to_owned())),
            None => (value, None),
        };
        // An IPv6 host is written in brackets: [::1]:2888:3888.
        let (host, rest) = if let Some(stripped) = addrs.strip_prefix('[') {
            let (h, r) = stripped
                .split_once(']')
                .ok_or_else(|| invalid(key, value, "unclosed ["))?;
            (h.to_owned(), r.strip_prefix(':').unwrap_or(r))
        } else {
            let (h, r) = addrs
                .split_once(':')
                .ok_or_else(|| invalid(key, value, "expected host:quorumPort:electionPort"))?;
            (h.to_owned(), r)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        if host.is_empty() || !(2..=3).contains(&parts.len()) {
            return Err(invalid(
                key,
                value,
                "expected host:quorumPort:electionPort[:participant|observer]",
            ));
        }
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| invalid(key, value, "not a valid port"))
        };
        let observer = match parts.get(2).map(|p| p.trim()) {
            None | Some("participant") => false,
            Some("observer") => true,
            Some(_) => {
                return Err(invalid(
                    key,
                    value,
                    "the role must be participant or observer",
                ))
            }
        };
        Ok(Peer {
            id,
            host,
            quorum_port: port(parts[0])?,
            election_port: port(parts[1])?,
            observer,
            client,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        let tick_time_ms = 2000;
        Config {
            tick_time_ms,
            data_dir: PathBuf::from("./rookery-data"),
            data_log_dir: PathBuf::from("./rookery-data"),
            client_port: 2181,
            client_port_address: IpAddr::from([127, 0, 0, 1]),
            max_client_cnxns: 60,
            max_cnxns: 10_000,
            min_session_timeout_ms: 2 * tick_time_ms,
            max_session_timeout_ms: 20 * tick_time_ms,
            four_letter_whitelist: DEFAULT_4LW_WHITELIST
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_frame_len: rookery_proto::frame::DEFAULT_MAX_FRAME_LEN,
            super_digest: None,
            extended_types_enabled: false,
            container_check_interval_ms: 60_000,
            container_max_never_used_interval_ms: 0,
            max_inflight_per_connection: 1000,
            global_outstanding_limit: 1000,
            max_outstanding_proposals: crate::zab::config::DEFAULT_MAX_OUTSTANDING_PROPOSALS,
            max_pending_notifications: 10_000,
            max_watches_per_connection: 100_000,
            sessionless_timeout_ms: 10_000,
            server_id: 0,
            snap_count: 100_000,
            prealloc_bytes: 64 << 20,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            ensemble: Vec::new(),
            admin_enabled: true,
            admin_address: None,
            admin_port: 8080,
            admin_command_url: "/commands".into(),
            metrics_enabled: false,
            metrics_address: None,
            metrics_port: 7000,
            slow_request_threshold_ms: 1000,
            linearizable_reads: false,
            plain_client_port: true,
            secure_client_port: None,
            secure_client_port_address: None,
            ssl: crate::tls::Settings::default(),
            ssl_quorum: None,
            x509_super_user: None,
            jaas_config: None,
            jaas_section: "Server".into(),
            sasl_super_user: None,
            enforce_auth_schemes: None,
            allow_sasl_failed_clients: false,
        }
    }
}

/// Keys that appear in real zoo.cfg files and that Rookery accepts but does not act on yet.
const KNOWN_UNUSED: &[&str] = &[
    "serverCnxnFactory",
    "client.portUnification",
    "client.certReload",
    "sslQuorumReloadCertFiles",
    "standaloneEnabled",
    "reconfigEnabled",
    "dynamicConfigFile",
    "forceSync",
    "leaderServes",
    "electionAlg",
    "quorumListenOnAllIPs",
    "skipACL",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "clientPortListenBacklog",
];

impl Config {
    /// Reads a zoo.cfg-style file. Relative `dataDir`/`dataLogDir` are taken as written
    /// (relative to the working directory), as ZooKeeper does.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses zoo.cfg text (Java properties: `key=value` or `key: value`, `#`/`!` comments).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let mut data_log_dir = None;
        let mut min_timeout = None;
        let mut max_timeout = None;
        let mut client_port_given = false;
        let mut ssl = crate::tls::SettingsBuilder::default();
        let mut ssl_quorum = crate::tls::SettingsBuilder::default();
        let mut ssl_quorum_on = false;
        let mut enforce = false;
        let mut enforce_schemes: Option<BTreeSet<String>> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(sep) = line.find(['=', ':']) else {
                return Err(ConfigError::Syntax {
                    line: i + 1,
                    text: raw.to_owned(),
                });
            };
            let key = line[..sep].trim();
            let value = line[sep + 1..].trim();
            let bare = key.strip_prefix("zookeeper.").unwrap_or(key);
            match bare {
                "tickTime" => cfg.tick_time_ms = parse_num(key, value, 1)?,
                "dataDir" => cfg.data_dir = PathBuf::from(non_empty(key, value)?),
                "dataLogDir" => data_log_dir = Some(PathBuf::from(non_empty(key, value)?)),
                "clientPort" => {
                    cfg.client_port = parse_num(key, value, 0)?;
                    client_port_given = true;
                }
                "secureClientPort" => cfg.secure_client_port = Some(parse_num(key, value, 0)?),
                "secureClientPortAddress" => {
                    cfg.secure_client_port_address = Some(parse_ip(key, value)?)
                }
                "sslQuorum" => ssl_quorum_on = parse_bool(key, value)?,
                "X509AuthenticationProvider.superUser" => {
                    cfg.x509_super_user = Some(non_empty(key, value)?.to_owned())
                }
                "java.security.auth.login.config" => {
                    cfg.jaas_config = Some(PathBuf::from(non_empty(key, value)?))
                }
                "sasl.serverconfig" => cfg.jaas_section = non_empty(key, value)?.to_owned(),
                "superUser" => cfg.sasl_super_user = Some(non_empty(key, value)?.to_owned()),
                "enforce.auth.enabled" => enforce = parse_bool(key, value)?,
                "enforce.auth.schemes" => {
                    enforce_schemes = Some(
                        value
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "sessionRequireClientSASLAuth" => {
                    if parse_bool(key, value)? {
                        enforce = true;
                        enforce_schemes
                            .get_or_insert_with(BTreeSet::new)
                            .insert("sasl".to_owned());
                    }
                }
                "allowSaslFailedClients" => cfg.allow_sasl_failed_clients = parse_bool(key, value)?,
                _ if bare.starts_with("ssl.quorum.") => {
                    let known = ssl_quorum
                        .set(&bare["ssl.quorum.".len()..], value)
                        .map_err(|reason| invalid_secret(key, value, &reason))?;
                    if !known {
                        tracing::warn!(key, "TLS key is not used by Rookery; ignoring it");
                    }
                }
                _ if bare.starts_with("ssl.") => {
                    let known = ssl
                        .set(&bare["ssl.".len()..], value)
                        .map_err(|reason| invalid_secret(key, value, &reason))?;
                    if !known {
                        tracing::warn!(key, "TLS key is not used by Rookery; ignoring it");
                    }
                }
                _ if bare.starts_with("authProvider.") => {
                    let class = value.trim();
                    if !KNOWN_AUTH_PROVIDERS.contains(&class) {
                        tracing::warn!(key, value = class, "unknown auth provider; ignoring it (Rookery has ip, digest, sasl and x509 built in)");
                    }
                }
                "clientPortAddress" => cfg.client_port_address = parse_ip(key, value)?,
                "maxClientCnxns" => cfg.max_client_cnxns = parse_num(key, value, 0)?,
                "maxCnxns" => cfg.max_cnxns = parse_num(key, value, 0)?,
                "minSessionTimeout" => min_timeout = Some(parse_num::<i64>(key, value, -1)?),
                "maxSessionTimeout" => max_timeout = Some(parse_num::<i64>(key, value, -1)?),
                "4lw.commands.whitelist" => {
                    cfg.four_letter_whitelist = value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for w in &cfg.four_letter_whitelist {
                        if w != "*"
                            && !rookery_proto::consts::FOUR_LETTER_WORDS.contains(&w.as_str())
                        {
                            return Err(invalid(key, value, &format!("unknown command {w:?}")));
                        }
                    }
                }
                "jute.maxbuffer" => cfg.max_frame_len = parse_num(key, value, 1024)?,
                "DigestAuthenticationProvider.superDigest" => {
                    if value.split(':').count() != 2 {
                        return Err(invalid(
                            key,
                            value,
                            "expected user:BASE64(SHA1(user:password))",
                        ));
                    }
                    cfg.super_digest = Some(value.to_owned());
                }
                "extendedTypesEnabled" => cfg.extended_types_enabled = parse_bool(key, value)?,
                "znode.container.checkIntervalMs" => {
                    cfg.container_check_interval_ms = parse_num(key, value, 1)?
                }
                "znode.container.maxNeverUsedIntervalMs" => {
                    cfg.container_max_never_used_interval_ms = parse_num(key, value, 0)?
                }
                "maxInflightPerConnection" => {
                    cfg.max_inflight_per_connection = parse_num(key, value, 1)?
                }
                "globalOutstandingLimit" => {
                    cfg.global_outstanding_limit = parse_num(key, value, 1)?
                }
                "maxOutstandingProposals" => {
                    cfg.max_outstanding_proposals = parse_num(key, value, 1)?
                }
                "maxWatchesPerConnection" => {
                    cfg.max_watches_per_connection = parse_num(key, value, 1)?
                }
                "serverId" | "myid" => cfg.server_id = parse_num(key, value, 0)?,
                "snapCount" => cfg.snap_count = parse_num(key, value, 2)?,
                "preAllocSize" => cfg.prealloc_bytes = parse_num::<u64>(key, value, 4)? * 1024,
                "autopurge.snapRetainCount" => cfg.snap_retain_count = parse_num(key, value, 3)?,
                "autopurge.purgeInterval" => cfg.purge_interval_hours = parse_num(key, value, 0)?,
                "admin.enableServer" => cfg.admin_enabled = parse_bool(key, value)?,
                "admin.serverAddress" => cfg.admin_address = Some(parse_ip(key, value)?),
                "admin.serverPort" => cfg.admin_port = parse_num(key, value, 0)?,
                "admin.commandURL" => {
                    let url = non_empty(key, value)?;
                    if !url.starts_with('/') || url.len() < 2 {
                        return Err(invalid(key, value, "expected a path such as /commands"));
                    }
                    cfg.admin_command_url = url.trim_end_matches('/').to_owned();
                }
                "metricsProvider.className" => {
                    cfg.metrics_enabled = value.trim() == PROMETHEUS_PROVIDER;
                    if !cfg.metrics_enabled
                        && value.trim()
                            != "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
                    {
                        tracing::warn!(
                            key,
                            value,
                            "unknown metrics provider; serving no metrics port"
                        );
                    }
                }
                "metricsProvider.httpHost" => cfg.metrics_address = Some(parse_ip(key, value)?),
                "metricsProvider.httpPort" => cfg.metrics_port = parse_num(key, value, 0)?,
                "slowRequestThresholdMs" => {
                    cfg.slow_request_threshold_ms = parse_num(key, value, 0)?
                }
                "linearizableReads" => cfg.linearizable_reads = parse_bool(key, value)?,
                "initLimit" => cfg.init_limit_ticks = parse_num(key, value, 1)?,
                "syncLimit" => cfg.sync_limit_ticks = parse_num(key, value, 1)?,
                _ if bare.starts_with("server.") => {
                    let id = parse_num::<u64>(key, &bare["server.".len()..], 0)?;
                    if cfg.ensemble.iter().any(|p| p.id == id) {
                        return Err(invalid(key, value, "this server id is listed twice"));
                    }
                    cfg.ensemble.push(Peer::parse(key, id, value)?);
                }
                _ if KNOWN_UNUSED.contains(&bare)
                    || bare.starts_with("group.")
                    || bare.starts_with("weight.")
                    || bare.starts_with("admin.")
                    || bare.starts_with("metricsProvider.") =>
                {
                    tracing::warn!(key, "config key is not used by Rookery yet; ignoring it");
                }
                _ => tracing::warn!(key, "unknown config key; ignoring it"),
            }
        }
        cfg.data_log_dir = data_log_dir.unwrap_or_else(|| cfg.data_dir.clone());
        // As in ZooKeeper, a configuration with only a secure port serves no plain clients.
        cfg.plain_client_port = client_port_given || cfg.secure_client_port.is_none();
        if cfg.secure_client_port.is_some() {
            cfg.ssl = ssl.build("ssl").map_err(|reason| {
                let port = cfg.secure_client_port.unwrap_or_default().to_string();
                invalid("secureClientPort", &port, &reason)
            })?;
        }
        if ssl_quorum_on {
            if cfg.ensemble.is_empty() {
                return Err(invalid(
                    "sslQuorum",
                    "true",
                    "a standalone server has no quorum",
                ));
            }
            cfg.ssl_quorum = Some(
                ssl_quorum
                    .build("ssl.quorum")
                    .map_err(|reason| invalid("sslQuorum", "true", &reason))?,
            );
        }
        if enforce {
            let schemes = enforce_schemes.unwrap_or_default();
            if schemes.is_empty() {
                return Err(invalid(
                    "enforce.auth.schemes",
                    "",
                    "enforce.auth.enabled needs at least one scheme (sasl, x509, digest)",
                ));
            }
            cfg.enforce_auth_schemes = Some(schemes);
        }
        cfg.ensemble.sort_by_key(|p| p.id);
        // As in ZooKeeper, -1 (or absence) means "derive from tickTime".
        cfg.min_session_timeout_ms = match min_timeout {
            Some(v) if v >= 0 => v as u64,
            _ => 2 * cfg.tick_time_ms,
        };
        cfg.max_session_timeout_ms = match max_timeout {
            Some(v) if v >= 0 => v as u64,
            _ => 20 * cfg.tick_time_ms,
        };
        if cfg.min_session_timeout_ms > cfg.max_session_timeout_ms {
            return Err(invalid(
                "minSessionTimeout",
                &cfg.min_session_timeout_ms.to_string(),
                "must not be greater than maxSessionTimeout",
            ));
        }
        Ok(cfg)
    }

    /// Reads `myid` from the data directory, as ZooKeeper does, when the configuration lists an
    /// ensemble; the id must be one of the `server.N` lines.
    pub fn load_myid(&mut self) -> Result<(), ConfigError> {
        if self.ensemble.is_empty() {
            return Ok(());
        }
        let path = self.data_dir.join("myid");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let value = text.trim();
        let id: u64 = value
            .parse()
            .map_err(|_| invalid("myid", value, "not a server id"))?;
        self.set_member_id("myid", id)
    }

    /// Sets this member's id from the command line (`rookery server --myid N`) instead of the
    /// data directory's `myid` file, which a container image without a shell cannot write. The
    /// id must be one of the `server.N` lines, as for the file.
    pub fn set_myid(&mut self, id: u64) -> Result<(), ConfigError> {
        self.set_member_id("--myid", id)
    }

    /// Checks that `id` names a `server.N` line and makes it this server's id; `key` names the
    /// source in errors.
    fn set_member_id(&mut self, key: &str, id: u64) -> Result<(), ConfigError> {
        let value = id.to_string();
        if self.ensemble.is_empty() {
            return Err(invalid(
                key,
                &value,
                "the configuration has no server.N lines (a standalone server needs no id)",
            ));
        }
        if !self.ensemble.iter().any(|p| p.id == id) {
            return Err(invalid(key, &value, "no server.N line has this id"));
        }
        self.server_id = u8::try_from(id)
            .map_err(|_| invalid(key, &value, "ids above 255 are not supported"))?;
        Ok(())
    }

    /// Whether this server is an ensemble member: more than one `server.N` line. One line runs
    /// standalone, as in ZooKeeper.
    pub fn is_ensemble(&self) -> bool {
        self.ensemble.len() > 1
    }

    /// Whether a four-letter word may run.
    pub fn four_letter_allowed(&self, cmd: &str) -> bool {
        self.four_letter_whitelist.contains("*") || self.four_letter_whitelist.contains(cmd)
    }

    /// Clamps a requested session timeout into `[min, max]`.
    pub fn negotiate_timeout_ms(&self, requested_ms: i32) -> i32 {
        let t = i64::from(requested_ms).clamp(
            self.min_session_timeout_ms as i64,
            self.max_session_timeout_ms as i64,
        );
        i32::try_from(t).unwrap_or(i32::MAX)
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// [`invalid`] for keys whose values may be secrets (`*.password`): the value is not repeated.
fn invalid_secret(key: &str, value: &str, reason: &str) -> ConfigError {
    let shown = if key.to_ascii_lowercase().contains("password") {
        "<redacted>"
    } else {
        value
    };
    invalid(key, shown, reason)
}

fn non_empty<'a>(key: &str, value: &'a str) -> Result<&'a str, ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, value, "must not be empty"));
    }
    Ok(value)
}

fn parse_num<T>(key: &str, value: &str, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = value
        .parse()
        .map_err(|_| invalid(key, value, "not a valid number"))?;
    if v < min {
        return Err(invalid(key, value, &format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_ip(key: &str, value: &str) -> Result<IpAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(key, value, "not an IP address"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_and_metrics_keys_are_zookeepers() {
        let cfg = Config::parse("").unwrap();
        assert!(cfg.admin_enabled && cfg.admin_port == 8080 && !cfg.metrics_enabled);
        let cfg = Config::parse(
            "admin.enableServer=false\nadmin.serverPort=9090\nadmin.serverAddress=0.0.0.0\n\
             admin.commandURL=/cmds/\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpHost=127.0.0.2\nmetricsProvider.httpPort=7001\n\
             slowRequestThresholdMs=250\n",
        )
        .unwrap();
        assert!(!cfg.admin_enabled);
        assert_eq!(cfg.admin_port, 9090);
        assert_eq!(cfg.admin_address, Some(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(cfg.admin_command_url, "/cmds");
        assert!(cfg.metrics_enabled);
        assert_eq!(cfg.metrics_address, Some(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(cfg.metrics_port, 7001);
        assert_eq!(cfg.slow_request_threshold_ms, 250);
        for bad in [
            "admin.serverPort=http",
            "admin.enableServer=maybe",
            "admin.commandURL=commands",
            "metricsProvider.httpHost=somewhere",
        ] {
            let err = Config::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
        }
    }

    use super::*;

    #[test]
    fn parses_common_keys() {
        let cfg = Config::parse(
            "# comment\ntickTime=1000\ndataDir=/tmp/x\nclientPort=2999\nmaxClientCnxns=5\n\
             4lw.commands.whitelist=ruok, mntr\njute.maxbuffer=4096\n\
             zookeeper.extendedTypesEnabled=true\nserverCnxnFactory=org.x.Y\nssl.keyStore=k\n\
             authProvider.1=org.x.Z\nadmin.serverPort=8080\n\
             zookeeper.globalOutstandingLimit=50\nmaxOutstandingProposals=20\n",
        )
        .unwrap();
        assert_eq!(cfg.tick_time_ms, 1000);
        assert_eq!(cfg.data_log_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.client_port, 2999);
        assert_eq!(cfg.max_client_cnxns, 5);
        assert_eq!(cfg.global_outstanding_limit, 50);
        assert_eq!(cfg.max_outstanding_proposals, 20);
        assert_eq!(cfg.min_session_timeout_ms, 2000);
        assert_eq!(cfg.max_session_timeout_ms, 20000);
        assert!(cfg.four_letter_allowed("mntr"));
        assert!(!cfg.four_letter_allowed("srvr"));
        assert_eq!(cfg.max_frame_len, 4096);
        assert!(cfg.extended_types_enabled);
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err = Config::parse("clientPort=abc").unwrap_err().to_string();
        assert!(err.contains("clientPort"), "{err}");
        let err = Config::parse("tickTime=0").unwrap_err().to_string();
        assert!(err.contains("tickTime"), "{err}");
        let err = Config::parse("4lw.commands.whitelist=ruok,nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("4lw.commands.whitelist"), "{err}");
        assert!(Config::parse("just garbage").is_err());
    }

    #[test]
    fn ensemble_lines() {
        let cfg = Config::parse(
            "initLimit=7\nsyncLimit=3\nserver.3=c:2888:3888:observer\n\
             server.1=a.example:2888:3888\nserver.2=[::1]:2890:3890:participant;2181\n",
        )
        .unwrap();
        assert_eq!((cfg.init_limit_ticks, cfg.sync_limit_ticks), (7, 3));
        let ids: Vec<u64> = cfg.ensemble.iter().map(|p| p.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(cfg.ensemble[0].host, "a.example");
        assert_eq!(
            (cfg.ensemble[1].host.as_str(), cfg.ensemble[1].quorum_port),
            ("::1", 2890)
        );
        assert_eq!(cfg.ensemble[1].client.as_deref(), Some("2181"));
        assert!(cfg.ensemble[2].observer);
        for bad in [
            "server.1=a:1",
            "server.1=a:1:2:boss",
            "server.x=a:1:2",
            "server.1=a:1:99999",
        ] {
            let err = Config::parse(bad).unwrap_err().to_string();
            assert!(err.contains("server."), "{bad}: {err}");
        }
        assert!(Config::parse("server.1=a:1:2\nserver.1=b:1:2").is_err());
    }

    #[test]
    fn myid_must_name_a_member() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "dataDir={}\nserver.1=a:1:2\nserver.2=b:1:2\n",
            dir.path().display()
        );
        let mut cfg = Config::parse(&text).unwrap();
        assert!(cfg.load_myid().is_err());
        std::fs::write(dir.path().join("myid"), "2\n").unwrap();
        cfg.load_myid().unwrap();
        assert_eq!(cfg.server_id, 2);
        std::fs::write(dir.path().join("myid"), "9").unwrap();
        assert!(cfg.load_myid().unwrap_err().to_string().contains("myid"));
    }

    #[test]
    fn myid_from_the_command_line_must_name_a_member() {
        let mut cfg = Config::parse("server.1=a:1:2\nserver.2=b:1:2\n").unwrap();
        cfg.set_myid(2).unwrap();
        assert_eq!(cfg.server_id, 2);
        let err = cfg.set_myid(9).unwrap_err().to_string();
        assert!(
            err.contains("--myid") && err.contains("no server.N line"),
            "{err}"
        );
        assert_eq!(cfg.server_id, 2);
        let err = Config::default().set_myid(1).unwrap_err().to_string();
        assert!(
            err.contains("--myid") && err.contains("standalone"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_are_clamped() {
        let cfg = Config::parse("tickTime=2000").unwrap();
        assert_eq!(cfg.negotiate_timeout_ms(1000), 4000);
        assert_eq!(cfg.negotiate_timeout_ms(1_000_000), 40000);
        assert_eq!(cfg.negotiate_timeout_ms(10000), 10000);
    }

    #[test]
    fn tls_and_auth_keys() {
        let cfg = Config::parse(
            "secureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.keyStore.password=hunter2\n\
             ssl.trustStore.location=/t.pem\nssl.clientAuth=want\n\
             X509AuthenticationProvider.superUser=CN=admin\nsuperUser=root\n\
             java.security.auth.login.config=/j.conf\nzookeeper.enforce.auth.enabled=true\n\
             enforce.auth.schemes=sasl,x509\nauthProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n",
        )
        .unwrap();
        assert_eq!(cfg.secure_client_port, Some(2281));
        assert!(!cfg.plain_client_port, "only a secure port was configured");
        assert_eq!(cfg.ssl.client_auth, crate::tls::ClientAuth::Want);
        assert_eq!(cfg.x509_super_user.as_deref(), Some("CN=admin"));
        assert_eq!(cfg.sasl_super_user.as_deref(), Some("root"));
        assert_eq!(cfg.jaas_config, Some(PathBuf::from("/j.conf")));
        let schemes: Vec<_> = cfg.enforce_auth_schemes.unwrap().into_iter().collect();
        assert_eq!(schemes, ["sasl", "x509"]);
        assert!(!format!("{:?}", cfg.ssl).contains("hunter2"));

        // Both ports; the legacy SASL switch.
        let cfg = Config::parse(
            "clientPort=2181\nsecureClientPort=2281\nssl.keyStore.location=/k.pem\n\
             ssl.clientAuth=none\nsessionRequireClientSASLAuth=true\n",
        )
        .unwrap();
        assert!(cfg.plain_client_port);
        assert_eq!(
            cfg.enforce_auth_schemes
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["sasl"]
        );

        // Errors name the key and never echo a password.
        let err = Config::parse("secureClientPort=2281\nssl.clientAuth=none\n").unwrap_err();
        assert!(err.to_string().contains("ssl.keyStore.location"), "{err}");
        let err = Config::parse("ssl.keyStore.type=JKS\n").unwrap_err();
        assert!(err.to_string().contains("keytool"), "{err}");
        let err = Config::parse("enforce.auth.enabled=true\n").unwrap_err();
        assert!(err.to_string().contains("enforce.auth.schemes"), "{err}");
        let err = Config::parse("sslQuorum=true\n").unwrap_err();
        assert!(err.to_string().contains("standalone"), "{err}");
    }
}
