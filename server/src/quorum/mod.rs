//! The ensemble's peer transport (ZooKeeper's `QuorumCnxManager` and learner sockets).
//!
//! Every member listens on its election port and its quorum port (`server.N=host:quorum:election`).
//! Connections are one-way: each member dials every other member on both ports and only ever
//! writes to the connections it dialled, and only reads from those it accepted. So there is never
//! a race over which of two connections between a pair to keep, and each direction is one ordered
//! TCP stream. Election notifications go over the election connection, everything else (ZAB
//! session packets and the request path, [`Relay`]) over the quorum connection, each in order.
//!
//! Losing messages is fine: ZAB ends a session that misses a packet and re-establishes it, and
//! election notifications are resent. So a message queued while its peer is unreachable, or when
//! the queue is full, is dropped rather than buffered without bound.
//!
//! Frames: `len:u32 crc32c:u32 kind:u8 body`, `len` counting what follows it and the checksum
//! covering the kind and the body; kind 0 is a ZAB message ([`crate::zab::wire`]), kind 1 a
//! [`Relay`]. A frame whose checksum does not match ends its connection: bytes damaged on the
//! way (TCP's 16-bit checksum misses some damage, and a broken middlebox or NIC can deliver
//! anything) must never reach ZAB as a message that decodes, since a replica would apply it.
//! ZAB re-establishes the session over a new connection, as after any loss. A connection opens
//! with `"RKQP" version:u8 sender:u64` (version 2 since the checksum).
//!
//! Without `sslQuorum`, peers are not authenticated (as ZooKeeper without quorum SASL or TLS):
//! the ports belong on a private network. With it ([`QuorumTls`]), every connection is mutual
//! TLS, and the accepting member checks that the dialler's certificate is valid for the host of
//! the `server.N` line its hello names: a process that is not a configured member, or a member
//! claiming another's id, is refused before anything it sends is read.

pub mod relay;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rookery_client::resolve::Resolver;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use relay::Relay;

use crate::config::Peer;
use crate::tls::Reloading;
use crate::zab::{self, PeerId};

/// The largest peer frame. Snapshots travel in one frame, so this bounds the data tree an
/// ensemble can synchronize by SNAP.
pub const MAX_PEER_FRAME: usize = 1 << 30;
/// Messages queued for one peer connection before more are dropped.
const QUEUE_PER_PEER: usize = 64 * 1024;
/// Bytes (of payloads and snapshots, roughly) queued for one peer connection before more are
/// dropped: a peer that stops reading must not make this member buffer without bound.
const MAX_QUEUED_BYTES: usize = 512 << 20;
const MAGIC: &[u8; 4] = b"RKQP";
/// 2: frames carry a CRC32C (version 1 had none; the two do not talk).
const VERSION: u8 = 2;
const KIND_ZAB: u8 = 0;
const KIND_RELAY: u8 = 1;
/// How long a dial or a hello may take.
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Back-off between dials of an unreachable peer.
const REDIAL_MIN_MS: u64 = 50;
const REDIAL_MAX_MS: u64 = 1_000;

/// Mutual TLS between members (`sslQuorum=true`).
#[derive(Clone)]
pub struct QuorumTls {
    /// For accepted connections: requires and checks the dialler's certificate.
    pub server: Arc<Reloading<rustls::ServerConfig>>,
    /// For dialled connections: presents this member's certificate, checks the other's.
    pub client: Arc<Reloading<rustls::ClientConfig>>,
    /// `ssl.quorum.hostnameVerification`: a certificate must be valid for its member's host.
    pub verify_names: bool,
    /// `ssl.quorum.handshakeDetectionTimeoutMillis`.
    pub handshake_timeout_ms: u64,
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumTls")
            .field("verify_names", &self.verify_names)
            .finish_non_exhaustive()
    }
}

/// A peer connection, plain or TLS.
trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerStream for T {}

/// A message between members.
#[derive(Debug, Clone)]
pub enum PeerMsg {
    /// Consensus.
    Zab(zab::Message),
    /// The request path.
    Relay(Relay),
}

impl PeerMsg {
    /// Appends the message as one frame: a 4-byte big-endian length, a CRC32C of the rest, the
    /// kind and the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            PeerMsg::Zab(m) => {
                out.push(KIND_ZAB);
                zab::wire::encode_into(m, out);
            }
            PeerMsg::Relay(r) => {
                out.push(KIND_RELAY);
                r.encode(out);
            }
        }
        let crc = crc32c::crc32c(&out[start + 8..]);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// Reads a frame (what follows its length): checks the checksum, then decodes.
    pub fn decode(frame: &[u8]) -> Result<PeerMsg, String> {
        let Some((crc, body)) = frame.split_first_chunk::<4>() else {
            return Err(format!("a {}-byte frame", frame.len()));
        };
        let (said, got) = (u32::from_be_bytes(*crc), crc32c::crc32c(body));
        if said != got {
            return Err(format!(
                "a damaged frame: checksum {got:#010x}, the frame says {said:#010x}"
            ));
        }
        match body.split_first() {
            Some((&KIND_ZAB, rest)) => zab::wire::decode(rest)
                .map(PeerMsg::Zab)
                .map_err(|e| e.to_string()),
            Some((&KIND_RELAY, rest)) => Relay::decode(rest)
                .map(PeerMsg::Relay)
                .map_err(|e| e.to_string()),
            Some((k, _)) => Err(format!("unknown frame kind {k}")),
            None => Err("empty frame".into()),
        }
    }

    fn is_election(&self) -> bool {
        matches!(self, PeerMsg::Zab(zab::Message::Notification(_)))
    }

    /// About how many bytes the message holds, for the queue's byte bound.
    fn weight(&self) -> usize {
        const SMALL: usize = 64;
        SMALL
            + match self {
                PeerMsg::Zab(zab::Message::Peer { packet, .. }) => match packet {
                    zab::Packet::Proposal(e) | zab::Packet::Inform(e) => e.payload.len(),
                    zab::Packet::Snap { snapshot, .. } => snapshot.len(),
                    _ => 0,
                },
                PeerMsg::Relay(Relay::Forward { body, .. }) => body.len(),
                PeerMsg::Relay(Relay::Touch { sessions }) => sessions.len() * 8,
                _ => 0,
            }
    }
}

/// One peer connection's queue: bounded in messages by the channel and in bytes by `bytes`.
#[derive(Debug, Clone)]
struct Queue {
    tx: mpsc::Sender<PeerMsg>,
    bytes: Arc<AtomicUsize>,
}

/// What the transport hands the server.
#[derive(Debug)]
pub struct Incoming {
    /// The sender, as its hello said.
    pub from: PeerId,
    /// The message, or `None`: a connection from the sender to the quorum port ended (the
    /// sender may have died; a learner whose leader it is elects again at once).
    pub msg: Option<PeerMsg>,
}

/// How the request processor reaches the other members. Sending never blocks and may lose the
/// message (a full queue, a broken connection): ZAB and the relay protocol recover from loss.
pub trait Transport: Send {
    /// Queues `msg` for member `to`.
    fn send(&self, to: PeerId, msg: PeerMsg);
}

/// The sending side: one queue per peer and port.
#[derive(Debug, Clone)]
pub struct PeerNet {
    election: Arc<BTreeMap<PeerId, Queue>>,
    quorum: Arc<BTreeMap<PeerId, Queue>>,
}

impl Transport for PeerNet {
    /// Drops the message if the queue is full or the peer unknown.
    fn send(&self, to: PeerId, msg: PeerMsg) {
        let queues = if msg.is_election() {
            &self.election
        } else {
            &self.quorum
        };
        let Some(q) = queues.get(&to) else {
            return;
        };
        let w = msg.weight();
        if q.bytes.fetch_add(w, Ordering::SeqCst) + w > MAX_QUEUED_BYTES {
            q.bytes.fetch_sub(w, Ordering::SeqCst);
            tracing::debug!(
                peer = to,
                "peer queue holds too many bytes; dropping a message"
            );
            return;
        }
        if q.tx.try_send(msg).is_err() {
            q.bytes.fetch_sub(w, Ordering::SeqCst);
            tracing::debug!(peer = to, "peer queue full; dropping a message");
        }
    }
}

/// Where a member's ports are.
async fn resolve(resolver: &Resolver, host: &str) -> Option<IpAddr> {
    match resolver.resolve(host).await {
        Ok(addrs) => addrs.first().copied(),
        Err(e) => {
            tracing::debug!(host, error = %e, "cannot resolve a member");
            None
        }
    }
}

/// Binds this member's ports and starts a dialler per peer and port. Incoming messages go to
/// `incoming`. Everything stops when `shutdown` is cancelled.
///
/// # Errors
/// A port cannot be bound.
pub async fn start(
    my_id: PeerId,
    members: &[Peer],
    incoming: mpsc::Sender<Incoming>,
    shutdown: CancellationToken,
    tls: Option<QuorumTls>,
) -> std::io::Result<PeerNet> {
    let resolver = Arc::new(Resolver::new(None)?);
    let me = members
        .iter()
        .find(|p| p.id == my_id)
        .ok_or_else(|| std::io::Error::other(format!("server.{my_id} is not in the ensemble")))?;
    // Listen on the address of our own server line, as ZooKeeper does; a name that does not
    // resolve (yet) falls back to every address.
    let ip = resolve(&resolver, &me.host)
        .await
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    for port in [me.election_port, me.quorum_port] {
        let addr = SocketAddr::new(ip, port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding the peer port {addr}: {e}"))
        })?;
        tracing::info!(%addr, tls = tls.is_some(), "listening for ensemble members");
        tokio::spawn(accept_loop(
            listener,
            members.to_vec(),
            port == me.quorum_port,
            incoming.clone(),
            shutdown.clone(),
            tls.clone(),
        ));
    }
    let mut election = BTreeMap::new();
    let mut quorum = BTreeMap::new();
    for peer in members.iter().filter(|p| p.id != my_id) {
        for (port, map) in [
            (peer.election_port, &mut election),
            (peer.quorum_port, &mut quorum),
        ] {
            let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
            let bytes = Arc::new(AtomicUsize::new(0));
            map.insert(
                peer.id,
                Queue {
                    tx,
                    bytes: bytes.clone(),
                },
            );
            let span = tracing::info_span!("peer", id = peer.id, port);
            tokio::spawn(
                dial_loop(
                    Dialler {
                        my_id,
                        host: peer.host.clone(),
                        port,
                        resolver: resolver.clone(),
                        tls: tls.clone(),
                    },
                    Dequeue { rx, bytes },
                    shutdown.clone(),
                )
                .instrument(span),
            );
        }
    }
    Ok(PeerNet {
        election: Arc::new(election),
        quorum: Arc::new(quorum),
    })
}

/// The connection each member has open to one listener: a newer one replaces (closes) the
/// older, so a member holds at most one established connection per port however often it
/// reconnects, and frames of an old connection can never arrive after a newer one's.
type Registry = Arc<std::sync::Mutex<HashMap<PeerId, (u64, CancellationToken)>>>;

async fn accept_loop(
    listener: TcpListener,
    members: Vec<Peer>,
    report_loss: bool,
    incoming: mpsc::Sender<Incoming>,
    shutdown: CancellationToken,
    tls: Option<QuorumTls>,
) {
    // Room for every member's connection plus a few still saying hello; anything beyond is
    // refused.
    let slots = Arc::new(tokio::sync::Semaphore::new(members.len() * 4));
    let registry: Registry = Arc::default();
    let mut next_seq: u64 = 0;
    loop {
        let Some((stream, addr)) = crate::accept(&listener, "peer", &shutdown).await else {
            return;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many peer connections; refusing");
            continue;
        };
        next_seq += 1;
        let seq = next_seq;
        let (members, incoming, shutdown, registry, tls) = (
            members.clone(),
            incoming.clone(),
            shutdown.clone(),
            registry.clone(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let (from, stream) = tokio::select! {
                r = accept_peer(stream, &members, tls.as_ref()) => match r {
                    Ok(pair) => pair,
                    Err(Refused::Quiet(e)) => {
                        tracing::debug!(%addr, error = %e, "peer connection refused");
                        return;
                    }
                    Err(Refused::Loud(e)) => {
                        tracing::warn!(%addr, error = %e, "peer connection refused");
                        return;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let token = CancellationToken::new();
            if let Some((_, older)) = registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(from, (seq, token.clone()))
            {
                older.cancel();
            }
            let replaced = tokio::select! {
                r = read_frames(stream, from, &incoming) => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "peer connection ended");
                    }
                    false
                }
                () = token.cancelled() => true,
                () = shutdown.cancelled() => return,
            };
            {
                let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
                if reg.get(&from).is_some_and(|(s, _)| *s == seq) {
                    reg.remove(&from);
                }
            }
            // A replaced connection is not a lost peer: its newer connection is up.
            if report_loss && !replaced {
                let _ = incoming.send(Incoming { from, msg: None }).await;
            }
        });
    }
}

/// Why an accepted connection was refused: `Loud` for what an operator should see (a failed
/// TLS handshake, a certificate that does not name the member), `Quiet` for the rest.
enum Refused {
    Quiet(String),
    Loud(String),
}

/// The TLS handshake (with `sslQuorum`), the hello, and the check that the certificate belongs
/// to the member the hello names.
async fn accept_peer(
    stream: TcpStream,
    members: &[Peer],
    tls: Option<&QuorumTls>,
) -> Result<(PeerId, Box<dyn PeerStream>), Refused> {
    let _ = stream.set_nodelay(true);
    let ids: Vec<PeerId> = members.iter().map(|p| p.id).collect();
    let Some(tls) = tls else {
        let mut stream = stream;
        let from = read_hello(&mut stream, &ids)
            .await
            .map_err(Refused::Quiet)?;
        return Ok((from, Box::new(stream)));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.current());
    let mut stream = crate::tls::handshake(acceptor, stream, tls.handshake_timeout_ms)
        .await
        .map_err(Refused::Loud)?;
    let from = read_hello(&mut stream, &ids).await.map_err(Refused::Loud)?;
    if tls.verify_names {
        let host = members
            .iter()
            .find(|p| p.id == from)
            .map(|p| p.host.as_str())
            .unwrap_or_default();
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        let valid = leaf.is_some_and(|leaf| cert_names(leaf, host));
        if !valid {
            return Err(Refused::Loud(format!(
                "the certificate presented as server.{from} is not valid for its host {host}"
            )));
        }
    }
    Ok((from, Box::new(stream)))
}

/// Whether a (chain-verified) certificate is valid for `host`, a DNS name or an IP address as
/// written on a `server.N` line. No DNS lookup is made: names are compared as written.
fn cert_names(leaf: &rustls::pki_types::CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    members: &[PeerId],
) -> Result<PeerId, String> {
    let mut hello = [0u8; 13];
    tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        stream.read_exact(&mut hello),
    )
    .await
    .map_err(|_| "no hello".to_string())?
    .map_err(|e| e.to_string())?;
    if &hello[..4] != MAGIC || hello[4] != VERSION {
        return Err("not a rookery peer (bad hello)".into());
    }
    let from = u64::from_be_bytes(hello[5..13].try_into().expect("8 bytes"));
    if !members.contains(&from) {
        return Err(format!("server.{from} is not a member"));
    }
    Ok(from)
}

async fn read_frames<S: AsyncRead + Unpin>(
    stream: S,
    from: PeerId,
    incoming: &mpsc::Sender<Incoming>,
) -> Result<(), String> {
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|e| e.to_string())?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_PEER_FRAME {
            return Err(format!("server.{from} sent a {len}-byte frame"));
        }
        // Read as the bytes arrive rather than allocating the announced length up front: a
        // bogus length costs no memory until the bytes exist.
        body.clear();
        let got = (&mut stream)
            .take(len as u64)
            .read_to_end(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        if got != len {
            return Err(format!("server.{from}: connection closed inside a frame"));
        }
        let msg = PeerMsg::decode(&body).map_err(|e| format!("server.{from}: {e}"))?;
        if body.capacity() > 1 << 20 {
            body = Vec::new();
        }
        if incoming
            .send(Incoming {
                from,
                msg: Some(msg),
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// The receiving end of a [`Queue`]: gives the bytes of what it takes back to the bound.
struct Dequeue {
    rx: mpsc::Receiver<PeerMsg>,
    bytes: Arc<AtomicUsize>,
}

impl Dequeue {
    fn taken(&self, m: PeerMsg) -> PeerMsg {
        self.bytes.fetch_sub(m.weight(), Ordering::SeqCst);
        m
    }

    async fn recv(&mut self) -> Option<PeerMsg> {
        let m = self.rx.recv().await?;
        Some(self.taken(m))
    }

    fn try_recv(&mut self) -> Option<PeerMsg> {
        let m = self.rx.try_recv().ok()?;
        Some(self.taken(m))
    }
}

/// Appends `m`'s frame to `buf`, unless the frame is over [`MAX_PEER_FRAME`] (then it is dropped).
fn push_frame(buf: &mut Vec<u8>, m: &PeerMsg) {
    let start = buf.len();
    m.encode(buf);
    if buf.len() - start - 4 > MAX_PEER_FRAME {
        tracing::warn!(
            len = buf.len() - start,
            "message too large for a peer frame; dropped"
        );
        buf.truncate(start);
    }
}

/// How to reach one peer's port.
struct Dialler {
    my_id: PeerId,
    host: String,
    port: u16,
    resolver: Arc<Resolver>,
    tls: Option<QuorumTls>,
}

async fn dial_loop(d: Dialler, mut rx: Dequeue, shutdown: CancellationToken) {
    let mut backoff_ms = REDIAL_MIN_MS;
    loop {
        let connected = tokio::select! {
            s = d.dial() => s,
            () = shutdown.cancelled() => return,
        };
        let stream = match connected {
            Ok(s) => {
                backoff_ms = REDIAL_MIN_MS;
                s
            }
            Err(e) => {
                tracing::trace!(error = %e, "dial failed");
                // Whatever was queued for the peer meanwhile is stale: drop it.
                while rx.try_recv().is_some() {}
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff_ms = (backoff_ms * 2).min(REDIAL_MAX_MS);
                continue;
            }
        };
        tracing::debug!("connected");
        let (mut rd, wr) = tokio::io::split(stream);
        let mut w = BufWriter::with_capacity(64 * 1024, wr);
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut probe = [0u8; 1];
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                // The accepting side never writes, so anything read means the connection is
                // gone (or broken): dial again now, while it is idle. Found only by the next
                // write, the loss would take that write's messages with it, and a message sent
                // once (a LEADERINFO) would leave its peer waiting out initLimit.
                r = rd.read(&mut probe) => {
                    let why = match r {
                        Ok(0) => "closed by the peer".to_string(),
                        Ok(_) => "the peer wrote on a one-way connection".to_string(),
                        Err(e) => e.to_string(),
                    };
                    tracing::debug!(error = %why, "idle peer connection lost");
                    break;
                }
                () = shutdown.cancelled() => return,
            };
            buf.clear();
            push_frame(&mut buf, &first);
            // Coalesce whatever else is queued into one write.
            while buf.len() < 256 * 1024 {
                match rx.try_recv() {
                    Some(m) => push_frame(&mut buf, &m),
                    None => break,
                }
            }
            if buf.is_empty() {
                continue;
            }
            let r = async {
                w.write_all(&buf).await?;
                w.flush().await
            }
            .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "peer connection lost");
                break;
            }
            if buf.capacity() > 4 << 20 {
                buf = Vec::with_capacity(64 * 1024);
            }
        }
    }
}

impl Dialler {
    async fn dial(&self) -> std::io::Result<Box<dyn PeerStream>> {
        let host = self.host.as_str();
        let ip = resolve(&self.resolver, host)
            .await
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")))?;
        let stream = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            TcpStream::connect(SocketAddr::new(ip, self.port)),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        let mut hello = Vec::with_capacity(13);
        hello.extend_from_slice(MAGIC);
        hello.push(VERSION);
        hello.extend_from_slice(&self.my_id.to_be_bytes());
        let Some(tls) = &self.tls else {
            let mut stream = stream;
            stream.write_all(&hello).await?;
            return Ok(Box::new(stream));
        };
        // The certificate must be valid for the host as written on the server line.
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(tls.client.current());
        let mut stream = tokio::time::timeout(
            Duration::from_millis(tls.handshake_timeout_ms),
            connector.connect(name, stream),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        .inspect_err(|e| tracing::warn!(error = %e, "TLS handshake with a member failed"))?;
        stream.write_all(&hello).await?;
        stream.flush().await?;
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_queue_is_bounded_in_bytes() {
        let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
        let bytes = Arc::new(AtomicUsize::new(0));
        let q = Queue {
            tx,
            bytes: bytes.clone(),
        };
        let net = PeerNet {
            election: Arc::new(BTreeMap::new()),
            quorum: Arc::new([(2, q)].into_iter().collect()),
        };
        // One 100 MiB payload shared by every message (Bytes clones are cheap).
        let payload = bytes::Bytes::from(vec![0u8; 100 << 20]);
        let proposal = |seq| {
            PeerMsg::Zab(zab::Message::Peer {
                session: 1,
                epoch: 1,
                seq,
                packet: zab::Packet::Proposal(zab::Entry {
                    zxid: zab::Zxid::new(1, seq as u32),
                    payload: payload.clone(),
                }),
            })
        };
        for seq in 1..=10 {
            net.send(2, proposal(seq));
        }
        let mut rx = Dequeue { rx, bytes };
        let mut queued = 0;
        while rx.try_recv().is_some() {
            queued += 1;
        }
        assert_eq!(queued, MAX_QUEUED_BYTES / (100 << 20));
        assert_eq!(
            rx.bytes.load(Ordering::SeqCst),
            0,
            "taking gives the bytes back"
        );
        net.send(2, proposal(11));
        assert!(rx.try_recv().is_some(), "room again once taken");
    }

    #[test]
    fn frames_round_trip() {
        let msgs = [
            PeerMsg::Relay(Relay::Sync {
                session_id: 1,
                cxid: 2,
                conn: relay::NOT_A_CONNECTION,
                seq: 0,
            }),
            PeerMsg::Zab(zab::Message::Peer {
                session: 1,
                epoch: 2,
                seq: 3,
                packet: zab::Packet::Ping { round: 4 },
            }),
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.encode(&mut b);
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            assert_eq!(len, b.len() - 4);
            let back = PeerMsg::decode(&b[4..]).unwrap();
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
        }
        assert!(PeerMsg::decode(&[]).is_err());
        assert!(PeerMsg::decode(&[7, 1, 2]).is_err());
        // A well-summed frame of an unknown kind, and an empty one.
        let mut unknown = crc32c::crc32c(&[7, 1, 2]).to_be_bytes().to_vec();
        unknown.extend_from_slice(&[7, 1, 2]);
        assert_eq!(
            PeerMsg::decode(&unknown).unwrap_err(),
            "unknown frame kind 7"
        );
        let empty = crc32c::crc32c(&[]).to_be_bytes();
        assert_eq!(PeerMsg::decode(&empty).unwrap_err(), "empty frame");
    }

    /// Any single flipped bit, and any duplicated or dropped byte, is refused: none reaches
    /// ZAB as a message.
    #[test]
    fn damaged_frames_are_refused() {
        let m = PeerMsg::Zab(zab::Message::Peer {
            session: 1,
            epoch: 2,
            seq: 3,
            packet: zab::Packet::Ping { round: 4 },
        });
        let mut b = Vec::new();
        m.encode(&mut b);
        let frame = &b[4..];
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut f = frame.to_vec();
                f[i] ^= 1 << bit;
                assert!(PeerMsg::decode(&f).is_err(), "bit {bit} of byte {i}");
            }
            let mut dup = frame.to_vec();
            dup.insert(i, frame[i]);
            assert!(PeerMsg::decode(&dup).is_err(), "byte {i} twice");
            let mut cut = frame.to_vec();
            cut.remove(i);
            assert!(PeerMsg::decode(&cut).is_err(), "byte {i} dropped");
        }
    }
}
