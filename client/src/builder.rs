//! [`ClientBuilder`]: connect string, timeouts, read-only mode, credentials, TLS.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery_proto::AuthPacket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::chroot::Chroot;
use crate::client::Client;
use crate::endpoint::parse_connect_string;
use crate::error::{Error, Result};
use crate::session::driver::{self, Command, Shared, TransportConfig};
use crate::session::state::{Outcome, Session, SessionConfig};
use crate::tls::TlsOptions;
use crate::types::SessionState;

/// Default for [`ClientBuilder::max_queued_requests`].
pub(crate) const DEFAULT_MAX_QUEUED_REQUESTS: usize = 10_000;

/// Settings for a new [`Client`].
///
/// ```no_run
/// # async fn demo() -> rookery_client::Result<()> {
/// use std::time::Duration;
/// use rookery_client::Client;
///
/// let client = Client::builder("zk1:2181,zk2:2181,zk3:2181/app")
///     .session_timeout(Duration::from_secs(15))
///     .digest_auth("alice", "secret")
///     .connect()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until connect() is called"]
pub struct ClientBuilder {
    connect_string: String,
    session_timeout: Duration,
    connect_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    read_only: bool,
    auths: Vec<(String, Vec<u8>)>,
    tls: Option<TlsOptions>,
    seed: Option<u64>,
    backoff: (Duration, Duration),
    hosts_file: Option<PathBuf>,
    max_frame_len: usize,
    max_queued_requests: usize,
    resume: Option<(i64, Vec<u8>)>,
    expiry_factor: f64,
    renew: bool,
}

impl ClientBuilder {
    /// A builder for `connect_string`: comma-separated `host[:port]` entries (default port
    /// 2181, IPv6 as `[addr]:port`), optionally followed by a chroot (`h1:2181,h2:2181/app`).
    /// Host names are resolved with hickory-resolver (`/etc/hosts`, then the name servers of
    /// `/etc/resolv.conf`) at each connection attempt.
    pub fn new(connect_string: &str) -> Self {
        ClientBuilder {
            connect_string: connect_string.to_owned(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: None,
            attempt_timeout: None,
            read_only: false,
            auths: Vec::new(),
            tls: None,
            seed: None,
            max_queued_requests: DEFAULT_MAX_QUEUED_REQUESTS,
            backoff: (Duration::from_millis(20), Duration::from_secs(1)),
            hosts_file: None,
            max_frame_len: 16 << 20,
            resume: None,
            expiry_factor: 1.0,
            renew: false,
        }
    }

    /// The session timeout to ask for (default 10 s). The server clamps it (ZooKeeper: to
    /// 2 to 20 ticks); [`Client::session_timeout`] tells what was granted. Pings go out at a
    /// third of it, a silent connection is dropped after two thirds, and a client cut off from
    /// every server for all of it declares the session expired.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long [`ClientBuilder::connect`] waits for the first session (default: the session
    /// timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The time one connection attempt (resolution, TCP, TLS and handshake) may take (default:
    /// session timeout / number of hosts, at least 1 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Whether a read-only server is acceptable (default false). When true, the client sends
    /// `readOnly=true` and reports [`SessionState::ConnectedReadOnly`] on such a server.
    pub fn read_only(mut self, allowed: bool) -> Self {
        self.read_only = allowed;
        self
    }

    /// Credentials sent on every connection, before anything else.
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auths.push((scheme.to_owned(), auth.to_vec()));
        self
    }

    /// Digest credentials (`user:password`) sent on every connection.
    pub fn digest_auth(self, user: &str, password: &str) -> Self {
        let auth = format!("{user}:{password}");
        self.auth("digest", auth.as_bytes())
    }

    /// Connects over TLS with these settings.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Seeds the host shuffle and the reconnect jitter (default: random), for reproducible
    /// runs.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reconnect back-off: the first delay and the cap (default 20 ms and 1 s). Each delay is
    /// drawn from `[b/2, b]`, `b` doubling per failed attempt up to the cap.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max);
        self
    }

    /// An extra hosts file, read on top of `/etc/hosts` by the resolver.
    pub fn hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hosts_file = Some(path.into());
        self
    }

    /// The largest frame accepted from the server (default 16 MiB; ZooKeeper's own client
    /// default is `jute.maxbuffer`, 1 MiB).
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = len.max(64);
        self
    }

    /// How many requests the client may hold at once (default 10,000): queued, waiting for a
    /// connection, and in flight, all counted. A call beyond it fails at once with
    /// [`crate::Error::TooManyRequests`] (it does not wait: requests are queued when the method
    /// is called, and waiting would break that order); its place comes back as each earlier
    /// request is answered or failed. Closing the session and removing watches are not
    /// requests and always get through.
    pub fn max_queued_requests(mut self, n: usize) -> Self {
        self.max_queued_requests = n.max(1);
        self
    }

    /// After how many session timeouts without hearing from any server the client declares
    /// the session lost by itself (default 1.0, ZooKeeper's Java client's behaviour). The
    /// connection is dropped after 2/3 of a silent timeout, so 1.0 leaves a third of it to
    /// reach another server; a larger factor keeps trying longer (the servers may have expired
    /// the session meanwhile, which the next handshake then reports), a smaller one gives up
    /// sooner. Must be finite and within `0.1..=100`.
    pub fn client_expiry_factor(mut self, factor: f64) -> Self {
        self.expiry_factor = factor;
        self
    }

    /// Whether an expired session is followed by a new one on the same [`Client`] (default
    /// false: expiry is terminal). When true, after `Lost(Expired)` or `Lost(ClientExpired)`
    /// the client fails what the old session held (requests and watches, with
    /// [`crate::Error::SessionExpired`]), then connects with a new session and reports
    /// `Connected` with the next generation on [`Client::session_events`], as Curator's
    /// framework does. Credentials are sent again; ephemeral nodes and watches of the old
    /// session are not remade (that is the recipes' job, on `Connected`).
    pub fn renew_session(mut self, renew: bool) -> Self {
        self.renew = renew;
        self
    }

    /// Resumes an existing session (from [`Client::session_id`] and
    /// [`Client::session_password`]) instead of creating one.
    pub fn resume_session(mut self, session_id: i64, password: Vec<u8>) -> Self {
        self.resume = Some((session_id, password));
        self
    }

    /// Starts the session task and waits until a session is established (and the builder's
    /// credentials are accepted).
    ///
    /// Must be called inside a tokio runtime; the session task is spawned on it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad connect string, chroot or TLS setting;
    /// [`Error::Timeout`] if no session came up within the connect timeout;
    /// [`Error::SessionExpired`] if a resumed session has expired; [`Error::AuthFailed`] if the
    /// credentials were refused.
    ///
    /// # Cancellation safety
    /// Dropping the future before it completes drops the client, which closes the session
    /// task.
    pub async fn connect(self) -> Result<Client> {
        let (hosts, chroot) = parse_connect_string(&self.connect_string)?;
        if !(self.expiry_factor.is_finite() && (0.1..=100.0).contains(&self.expiry_factor)) {
            return Err(Error::InvalidArgument(format!(
                "client_expiry_factor {} is outside 0.1..=100",
                self.expiry_factor
            )));
        }
        let chroot = Chroot::new(chroot.as_deref())?;
        let tls = match &self.tls {
            Some(t) => Some((t.build()?, t.server_name().map(str::to_owned))),
            None => None,
        };
        let cfg = SessionConfig {
            hosts,
            session_timeout: self.session_timeout,
            connect_timeout: self.attempt_timeout,
            read_only: self.read_only,
            backoff_initial: self.backoff.0,
            backoff_max: self.backoff.1,
            max_frame_len: self.max_frame_len,
            seed: self.seed.unwrap_or_else(rand::random),
            resume: self.resume.clone(),
            expiry_factor: self.expiry_factor,
            renew: self.renew,
        };
        let session = Session::new(cfg, Instant::now());
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(SessionState::Disconnected);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut auth_replies = Vec::new();
        for (scheme, auth) in &self.auths {
            let (done, reply) = oneshot::channel::<Outcome>();
            let packet = AuthPacket {
                auth_type: 0,
                scheme: scheme.clone(),
                auth: auth.clone(),
            };
            // The receiver is alive: it is moved into the task just below.
            let _ = tx.send(Command::Auth(packet, done));
            auth_replies.push(reply);
        }
        tokio::spawn(driver::run(
            session,
            rx,
            state_tx,
            shared.clone(),
            TransportConfig {
                tls,
                hosts_file: self.hosts_file.clone(),
            },
        ));
        let client = Client::new(
            tx,
            self.max_queued_requests,
            state_rx.clone(),
            shared,
            chroot,
        );

        let wait = async {
            let mut st = state_rx;
            loop {
                let s = *st.borrow_and_update();
                if s.is_connected() {
                    return Ok(());
                }
                if s.is_terminal() {
                    return Err(s.terminal_error());
                }
                if st.changed().await.is_err() {
                    return Err(Error::ClientClosed);
                }
            }
        };
        let limit = self.connect_timeout.unwrap_or(self.session_timeout);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let _ = client.close().await;
                return Err(Error::Timeout(self.connect_string.clone()));
            }
        }
        for reply in auth_replies {
            let outcome = reply
                .await
                .unwrap_or_else(|_| Outcome::err(Error::ClientClosed));
            outcome.result?;
        }
        Ok(client)
    }
}
