//! The thin tokio task that runs a [`Session`]: it owns the socket, the timer and the command
//! channel, and does exactly what the machine asks. All decisions live in the machine.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery_proto::AuthPacket;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::state::{Action, Completion, Session, Submission};
use crate::endpoint::HostPort;
use crate::feed::{feed, FeedTx};
use crate::resolve::Resolver;
use crate::types::{SessionEvent, SessionEventKind, SessionState};

/// Session events a subscriber may have unread before the stream reports `Lagged`.
pub(crate) const MAX_PENDING_SESSION_EVENTS: usize = 1024;

/// What a client handle asks of its session task.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request.
    Submit(Submission),
    /// Credentials to add (and re-send after every reconnect).
    Auth(AuthPacket, Completion),
    /// A watcher handle was dropped.
    RemoveWatcher(u64),
    /// Close the session; the sender is completed when it is closed.
    Close(oneshot::Sender<()>),
}

/// Session facts the handles can read without a round trip.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionInfo {
    pub(crate) session_id: i64,
    pub(crate) password: Vec<u8>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) last_zxid: i64,
    pub(crate) generation: u64,
    pub(crate) disconnected_since: Option<Instant>,
}

/// What the session task shares with the handles, under one lock: the facts, and the
/// subscribers of session events. Events are published under the same lock as the facts they
/// change, so a subscriber added at any moment misses nothing after that moment.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) info: SessionInfo,
    subscribers: Vec<FeedTx<SessionEvent>>,
    /// The session task has finished: no event will come.
    finished: bool,
}

impl Shared {
    /// A new subscriber's stream of the events from now on.
    pub(crate) fn subscribe(&mut self) -> mpsc::Receiver<SessionEvent> {
        let (tx, rx) = feed(MAX_PENDING_SESSION_EVENTS);
        if !self.finished {
            self.subscribers.push(tx);
        }
        rx
    }

    fn publish(&mut self, event: SessionEvent) {
        let lagged = || SessionEvent {
            kind: SessionEventKind::Lagged,
            generation: event.generation,
        };
        for tx in &mut self.subscribers {
            tx.send(event, lagged);
        }
        self.subscribers.retain(|tx| !tx.is_closed());
    }
}

/// How to open a transport.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    pub(crate) hosts_file: Option<PathBuf>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxIo = Box<dyn Io>;
type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;

struct Connector {
    resolver: Option<Resolver>,
    resolver_error: Option<String>,
    tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
}

impl Connector {
    fn new(cfg: TransportConfig) -> Self {
        let (resolver, resolver_error) = match Resolver::new(cfg.hosts_file.as_deref()) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Connector {
            resolver,
            resolver_error,
            tls: cfg
                .tls
                .map(|(c, name)| (tokio_rustls::TlsConnector::from(c), name)),
        }
    }

    async fn connect(self: Arc<Self>, host: HostPort) -> io::Result<BoxIo> {
        let resolver = self.resolver.as_ref().ok_or_else(|| {
            io::Error::other(format!(
                "no resolver: {}",
                self.resolver_error.as_deref().unwrap_or("unknown error")
            ))
        })?;
        let addrs = resolver.resolve(&host.host).await?;
        let mut last_err = None;
        for ip in addrs {
            match TcpStream::connect((ip, host.port)).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    tracing::debug!(%host, %ip, "transport connected");
                    return self.wrap(stream, &host).await;
                }
                Err(e) => {
                    tracing::debug!(%host, %ip, error = %e, "TCP connect failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }

    async fn wrap(&self, stream: TcpStream, host: &HostPort) -> io::Result<BoxIo> {
        let Some((connector, name)) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let name = name.clone().unwrap_or_else(|| host.host.clone());
        let server_name = ServerName::try_from(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = connector.connect(server_name, stream).await?;
        Ok(Box::new(tls))
    }
}

async fn read_some(r: &mut Option<ReadHalf<BoxIo>>, buf: &mut [u8]) -> io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

enum Written {
    Bytes(usize),
    Flushed,
}

/// Writes some of `buf`, or flushes when `buf` is empty.
async fn write_step(w: &mut Option<WriteHalf<BoxIo>>, buf: &[u8]) -> io::Result<Written> {
    match w {
        Some(w) if buf.is_empty() => w.flush().await.map(|()| Written::Flushed),
        Some(w) => w.write(buf).await.map(Written::Bytes),
        None => std::future::pending().await,
    }
}

async fn connecting(c: &mut Option<(u64, ConnectFuture)>) -> (u64, io::Result<BoxIo>) {
    match c {
        Some((attempt, fut)) => (*attempt, fut.await),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn apply(session: &mut Session, cmd: Command, now: Instant) {
    match cmd {
        Command::Submit(s) => session.submit(s, now),
        Command::Auth(p, c) => session.add_auth(p, c, now),
        Command::RemoveWatcher(id) => session.remove_watcher(id, now),
        Command::Close(done) => session.close(Some(done), now),
    }
}

/// Runs `session` until it is terminal. When every handle is gone (the command channel closes),
/// the session is closed.
pub(crate) async fn run(
    mut session: Session,
    mut commands: mpsc::UnboundedReceiver<Command>,
    state_tx: watch::Sender<SessionState>,
    shared: Arc<Mutex<Shared>>,
    transport: TransportConfig,
) {
    let span = tracing::info_span!("session", session_id = tracing::field::Empty);
    async move {
        let connector = Arc::new(Connector::new(transport));
        let mut connect: Option<(u64, ConnectFuture)> = None;
        let mut reader: Option<ReadHalf<BoxIo>> = None;
        let mut writer: Option<WriteHalf<BoxIo>> = None;
        let mut out: Vec<u8> = Vec::new();
        let mut out_pos = 0;
        let mut need_flush = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut commands_open = true;
        let mut recorded_id = 0;
        loop {
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Connect { attempt, host } => {
                        let fut: ConnectFuture = Box::pin(connector.clone().connect(host));
                        connect = Some((attempt, fut));
                    }
                    Action::CloseTransport => {
                        connect = None;
                        reader = None;
                        writer = None;
                        out.clear();
                        out_pos = 0;
                        need_flush = false;
                    }
                }
            }
            if out_pos == out.len() && session.has_transmit() && commands_open {
                // The replies just read woke their callers, who may be about to send more: let
                // them run first, so that their requests leave in one write, not one each.
                tokio::task::yield_now().await;
                let now = Instant::now();
                for _ in 0..256 {
                    match commands.try_recv() {
                        Ok(cmd) => apply(&mut session, cmd, now),
                        Err(_) => break,
                    }
                }
            }
            if out_pos == out.len() {
                match session.poll_transmit() {
                    Some(bytes) if writer.is_some() => {
                        out = bytes;
                        out_pos = 0;
                    }
                    // The machine only writes while it has a transport; nothing to send to.
                    _ => {}
                }
            }
            // Publish what changed: the facts first, then the state, so that whoever wakes on
            // the state (connect() among them) reads the session id and generation it goes with.
            if let Ok(mut sh) = shared.lock() {
                let i = &mut sh.info;
                if i.session_id != session.session_id() || i.password != session.password() {
                    i.session_id = session.session_id();
                    i.password = session.password().to_vec();
                }
                i.timeout = session.negotiated_timeout();
                i.last_zxid = session.last_zxid();
                i.generation = session.generation();
                i.disconnected_since = session.disconnected_since();
                while let Some(event) = session.poll_event() {
                    tracing::debug!(?event, "session event");
                    sh.publish(event);
                }
            }
            let state = session.state();
            state_tx.send_if_modified(|s| {
                let changed = *s != state;
                *s = state;
                changed
            });
            if session.session_id() != recorded_id {
                recorded_id = session.session_id();
                tracing::Span::current()
                    .record("session_id", format_args!("{recorded_id:#x}"));
            }
            if session.is_terminal() {
                break;
            }
            let deadline = session.poll_timeout();
            tokio::select! {
                res = read_some(&mut reader, &mut buf) => {
                    let now = Instant::now();
                    match res {
                        Ok(0) => {
                            tracing::debug!("server closed the connection");
                            reader = None;
                            writer = None;
                            session.handle_transport_closed(now);
                        }
                        Ok(n) => session.handle_read(&buf[..n], now),
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            reader = None;
                            writer = None;
                            session.handle_transport_closed(now);
                        }
                    }
                }
                res = write_step(&mut writer, &out[out_pos..]), if out_pos < out.len() || need_flush => {
                    match res {
                        Ok(Written::Bytes(n)) if n > 0 => {
                            out_pos += n;
                            if out_pos == out.len() {
                                need_flush = true;
                            }
                        }
                        Ok(Written::Flushed) => need_flush = false,
                        Ok(Written::Bytes(_)) | Err(_) => {
                            tracing::debug!("write failed");
                            reader = None;
                            writer = None;
                            session.handle_transport_closed(Instant::now());
                        }
                    }
                }
                (attempt, res) = connecting(&mut connect) => {
                    connect = None;
                    let now = Instant::now();
                    match res {
                        Ok(io) => {
                            let (r, w) = tokio::io::split(io);
                            reader = Some(r);
                            writer = Some(w);
                            out.clear();
                            out_pos = 0;
                            session.handle_connected(attempt, now);
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "connect attempt failed");
                            session.handle_connect_failed(attempt, now);
                        }
                    }
                }
                cmd = commands.recv(), if commands_open => {
                    let now = Instant::now();
                    match cmd {
                        Some(cmd) => {
                            apply(&mut session, cmd, now);
                            // Take a bounded batch of whatever else is already queued.
                            for _ in 0..256 {
                                match commands.try_recv() {
                                    Ok(cmd) => apply(&mut session, cmd, now),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            commands_open = false;
                            session.close(None, now);
                        }
                    }
                }
                () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            }
        }
        if let Ok(mut sh) = shared.lock() {
            sh.finished = true;
            sh.subscribers.clear();
        }
        tracing::debug!("session task finished");
    }
    .instrument(span)
    .await
}
