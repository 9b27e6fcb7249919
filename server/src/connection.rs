//! One client connection: a reader (this task) that frames and decodes requests and hands them to
//! the core in order, and a writer task that drains the connection's bounded outbound queue.
//!
//! Limits: a frame above `jute.maxbuffer` closes the connection; at most
//! `max_inflight_per_connection` requests of a connection, and `globalOutstandingLimit` of all
//! connections together, wait for replies before the readers stop reading (TCP back-pressure,
//! ZooKeeper's throttle: a loaded server slows its clients instead of dropping them); the
//! outbound queue is bounded and the core drops a connection that lets it
//! overflow; a connection that does not finish its handshake in time is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rookery_proto::frame::parse_frame;
use rookery_proto::{ConnectRequest, Jute, Reader, Request, RequestHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::server::{ConnHandle, Event, Outbound};
use crate::tls::Reloading;
use crate::watch::ConnId;

/// The in-flight slots a request holds until its reply is written: one of its connection's and
/// one of the server's (`globalOutstandingLimit`).
#[derive(Debug)]
pub struct Slot {
    _conn: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Serves one accepted socket until it closes. `global` holds the server's
/// `globalOutstandingLimit` slots, shared by every connection.
/// `tls`: the secure client port's configuration, for a TLS handshake before anything else.
pub async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    conn: ConnId,
    core: mpsc::Sender<Event>,
    cfg: Arc<Config>,
    global: Arc<Semaphore>,
    tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
) {
    // Per connection, not per request: an info span costs nothing on the request path, and it
    // names the session (once established) on every line the connection logs.
    let span = tracing::info_span!(
        "conn",
        id = conn,
        peer = %addr,
        session = tracing::field::Empty
    );
    async move {
        // Every end is logged, so that a connection's lines always close with its span.
        let _ = stream.set_nodelay(true);
        let result = match tls {
            None => {
                let (rd, wr) = stream.into_split();
                serve_inner(rd, wr, None, addr, conn, &core, &cfg, global).await
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                match crate::tls::handshake(acceptor, stream, cfg.ssl.handshake_timeout_ms).await {
                    Ok(stream) => {
                        // The verifier has checked the chain; its leaf names the client.
                        let subject = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| crate::auth::x509::subject_rfc2253(leaf));
                        let (rd, wr) = tokio::io::split(stream);
                        serve_inner(rd, wr, subject, addr, conn, &core, &cfg, global).await
                    }
                    Err(reason) => {
                        // An expired, unknown or missing certificate, or a plain client on the
                        // TLS port: worth a line an operator sees.
                        tracing::info!(reason, "connection refused");
                        Err("TLS handshake failed")
                    }
                }
            }
        };
        match result {
            Ok(()) => tracing::debug!("connection closed"),
            Err(reason) => tracing::debug!(reason, "connection closed"),
        }
        let _ = core.send(Event::Disconnected { conn }).await;
    }
    .instrument(span)
    .await
}

/// `cert_subject`: the verified client certificate's subject, on the secure port.
#[allow(clippy::too_many_arguments)]
async fn serve_inner<R, W>(
    mut rd: R,
    wr: W,
    cert_subject: Option<String>,
    addr: SocketAddr,
    conn: ConnId,
    core: &mpsc::Sender<Event>,
    cfg: &Config,
    global: Arc<Semaphore>,
) -> Result<(), &'static str>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let kill = CancellationToken::new();
    let (tx, rx) = mpsc::channel(cfg.max_inflight_per_connection + cfg.max_pending_notifications);
    let writer =
        tokio::spawn(write_loop(wr, rx, kill.clone()).instrument(tracing::Span::current()));
    let slots = Slots {
        conn: Arc::new(Semaphore::new(cfg.max_inflight_per_connection)),
        global,
    };
    let mut buf = BytesMut::with_capacity(4096);

    // The handshake (or a four-letter word) must arrive within the sessionless timeout.
    let deadline = Instant::now() + Duration::from_millis(cfg.sessionless_timeout_ms);
    let first = tokio::time::timeout_at(deadline, async {
        while buf.len() < 4 {
            if rd.read_buf(&mut buf).await.map_err(|_| "read error")? == 0 {
                return Err("closed before handshake");
            }
        }
        if let Some(cmd) = four_letter_word(&buf[..4]) {
            return Ok(Some(cmd));
        }
        if buf[0] == 0x16 && buf[1] == 0x03 {
            // A TLS record header (handshake, version 3.x), not a 4-byte length.
            tracing::info!(
                "a TLS client on a plain port; closing (TLS is served on secureClientPort)"
            );
            return Err("TLS handshake on a plain port");
        }
        loop {
            if parse_frame(&buf, cfg.max_frame_len)
                .map_err(|_| "bad handshake length")?
                .is_some()
            {
                return Ok(None);
            }
            if rd.read_buf(&mut buf).await.map_err(|_| "read error")? == 0 {
                return Err("closed during handshake");
            }
        }
    })
    .await
    .map_err(|_| "handshake timed out")??;

    if let Some(cmd) = first {
        let (reply, text) = oneshot::channel();
        core.send(Event::FourLetter {
            cmd: cmd.to_owned(),
            reply,
        })
        .await
        .map_err(|_| "shutting down")?;
        let text = text.await.map_err(|_| "shutting down")?;
        let _ = tx.send(Outbound::Frame(text.into_bytes(), None)).await;
        let _ = tx.send(Outbound::Close).await;
        drop(tx);
        let _ = writer.await;
        return Ok(());
    }

    let len = parse_frame(&buf, cfg.max_frame_len)
        .ok()
        .flatten()
        .ok_or("bad handshake")?;
    buf.advance(4);
    let body = buf.split_to(len);
    let req = rookery_proto::jute::from_slice::<ConnectRequest>(&body)
        .or_else(|_| ConnectRequest::decode(&mut Reader::new(&body)))
        .map_err(|_| "malformed ConnectRequest")?;
    let handle = ConnHandle {
        tx: tx.clone(),
        kill: kill.clone(),
    };
    core.send(Event::Connect {
        conn,
        req,
        addr,
        handle,
        cert_subject,
    })
    .await
    .map_err(|_| "shutting down")?;

    let result = read_loop(&mut rd, &mut buf, conn, core, cfg, &slots, &kill).await;
    drop(tx);
    // The writer ends once the core has dropped its handle too (after our Disconnected event),
    // so replies already queued, such as the one to closeSession, still go out.
    let _ = core.send(Event::Disconnected { conn }).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    result
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    conn: ConnId,
    core: &mpsc::Sender<Event>,
    cfg: &Config,
    slots: &Slots,
    kill: &CancellationToken,
) -> Result<(), &'static str> {
    loop {
        while let Some(len) = parse_frame(buf, cfg.max_frame_len).map_err(|_| "frame too large")? {
            buf.advance(4);
            let frame = buf.split_to(len);
            let mut r = Reader::new(&frame);
            let header = RequestHeader::decode(&mut r).map_err(|_| "short request header")?;
            let req = Request::decode(header.op, &mut r);
            let permit = tokio::select! {
                s = slots.acquire() => s?,
                () = kill.cancelled() => return Err("closed by server"),
            };
            let ev = Event::Request {
                conn,
                xid: header.xid,
                req,
                permit: Some(permit),
                received: Instant::now(),
            };
            core.send(ev).await.map_err(|_| "shutting down")?;
        }
        tokio::select! {
            n = rd.read_buf(buf) => {
                if n.map_err(|_| "read error")? == 0 {
                    return Ok(());
                }
            }
            () = kill.cancelled() => return Err("closed by server"),
        }
    }
}

/// Where a connection's requests take their in-flight slots.
struct Slots {
    conn: Arc<Semaphore>,
    global: Arc<Semaphore>,
}

impl Slots {
    /// Waits for a slot of the connection's, then one of the server's: a connection at its own
    /// limit does not hold server slots while it waits.
    async fn acquire(&self) -> Result<Slot, &'static str> {
        let conn = self.conn.clone().acquire_owned().await;
        let conn = conn.map_err(|_| "closed")?;
        let global = self.global.clone().acquire_owned().await;
        let global = global.map_err(|_| "closed")?;
        Ok(Slot {
            _conn: conn,
            _global: global,
        })
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Outbound>,
    kill: CancellationToken,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut permits = Vec::new();
    'outer: loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            () = kill.cancelled() => break,
        };
        let Some(mut msg) = first else { break };
        let mut close = false;
        // Batch whatever is already queued into one write.
        loop {
            match msg {
                Outbound::Frame(bytes, permit) => {
                    buf.extend_from_slice(&bytes);
                    permits.extend(permit);
                }
                Outbound::Close => {
                    close = true;
                    break;
                }
                Outbound::Session(id) => {
                    tracing::Span::current().record("session", format_args!("0x{id:x}"));
                }
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(m) => msg = m,
                Err(_) => break,
            }
        }
        let wrote = tokio::select! {
            r = wr.write_all(&buf) => r.is_ok(),
            () = kill.cancelled() => false,
        };
        buf.clear();
        permits.clear();
        if !wrote || close {
            break 'outer;
        }
    }
    let _ = wr.shutdown().await;
    // Stop the reader too: the server is done with this connection.
    kill.cancel();
}

/// The four-letter word these bytes spell, if any.
fn four_letter_word(first4: &[u8]) -> Option<&'static str> {
    rookery_proto::consts::FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|w| w.as_bytes() == first4)
}
