//! A small fault-injection TCP proxy between a client and a server.
//!
//! Modes: pass-through; [`Proxy::drop_all`] (close every connection now);
//! [`Proxy::blackhole`] (accept connections and keep them open, but forward nothing either
//! way); [`Proxy::hold_replies`] (forward requests, swallow replies; [`Proxy::hold_replies_after`]
//! lets a number of replies through first); [`Proxy::hold_requests`] (the other way round:
//! swallow requests, forward replies: a one-way cut); [`Proxy::set_delay`] (hold each chunk
//! before forwarding it: a slow link); [`Proxy::refuse`] (close every connection, and each new
//! one at once); [`Proxy::restore`] (pass-through again, closing the connections that lost
//! bytes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

struct Conn {
    task: AbortHandle,
    /// Bytes were dropped on this connection: it can never carry the protocol again.
    tainted: Arc<AtomicBool>,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    forward_up: AtomicBool,
    forward_down: AtomicBool,
    /// Replies (whole frames) still let through while `forward_down` is off.
    pass_replies: AtomicUsize,
    refuse: AtomicBool,
    /// Milliseconds each chunk is held before it is written on (0: none).
    delay_ms: AtomicU64,
    conns: Mutex<Vec<Conn>>,
}

/// The proxy; stops (and closes every connection) on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            forward_up: AtomicBool::new(true),
            forward_down: AtomicBool::new(true),
            pass_replies: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let tainted = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn(serve(client, s.clone(), tainted.clone()));
                let mut conns = s.conns.lock().unwrap();
                conns.retain(|c| !c.task.is_finished());
                conns.push(Conn {
                    task: task.abort_handle(),
                    tainted,
                });
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// Forwards new connections to `upstream` from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Closes every current connection.
    pub fn drop_all(&self) {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            c.task.abort();
        }
    }

    /// Forwards nothing, either way, on current and new connections, and closes nothing.
    pub fn blackhole(&self) {
        self.shared.forward_up.store(false, Ordering::SeqCst);
        self.shared.forward_down.store(false, Ordering::SeqCst);
    }

    /// Forwards requests to the server but swallows its replies.
    pub fn hold_replies(&self) {
        self.shared.forward_down.store(false, Ordering::SeqCst);
    }

    /// Forwards the next `n` replies (whole frames), then swallows the rest, as
    /// [`Proxy::hold_replies`]: to lose the reply of a request that follows `n` others.
    pub fn hold_replies_after(&self, n: usize) {
        self.shared.pass_replies.store(n, Ordering::SeqCst);
        self.shared.forward_down.store(false, Ordering::SeqCst);
    }

    /// Swallows what clients send and still forwards what the server sends, on current
    /// connections; a new connection is held open and swallowed whole (it never reaches the
    /// server). One side of a one-way cut: with [`Proxy::hold_replies`] on the links the other
    /// way, nothing a member sends arrives while it still hears the others.
    pub fn hold_requests(&self) {
        self.shared.forward_up.store(false, Ordering::SeqCst);
    }

    /// Holds each chunk read from either side `delay` before writing it on (zero: no delay),
    /// on current and new connections: a slow link. Chunks are forwarded one after another, so
    /// this adds `delay` of latency and caps each direction at about one 16 KiB chunk per
    /// `delay`; nothing is lost.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Closes every connection, and each new one as soon as it is accepted.
    pub fn refuse(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
        self.drop_all();
    }

    /// Back to pass-through, without delay. Connections that lost bytes are closed.
    pub fn restore(&self) {
        self.shared.refuse.store(false, Ordering::SeqCst);
        self.shared.delay_ms.store(0, Ordering::SeqCst);
        self.shared.pass_replies.store(0, Ordering::SeqCst);
        self.shared.forward_up.store(true, Ordering::SeqCst);
        self.shared.forward_down.store(true, Ordering::SeqCst);
        self.shared.conns.lock().unwrap().retain(|c| {
            if c.tainted.load(Ordering::SeqCst) {
                c.task.abort();
                false
            } else {
                true
            }
        });
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|c| !c.task.is_finished());
        conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_all();
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>, tainted: Arc<AtomicBool>) {
    let _ = client.set_nodelay(true);
    if !shared.forward_up.load(Ordering::SeqCst) {
        // Blackholed from the start: hold the connection, swallow what comes.
        tainted.store(true, Ordering::SeqCst);
        let (mut r, _w) = client.into_split();
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
        return;
    }
    let upstream_addr = *shared.upstream.lock().unwrap();
    let Ok(upstream) = TcpStream::connect(upstream_addr).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = copy(cr, uw, &shared.forward_up, None, &shared.delay_ms, &tainted);
    let down = copy(
        ur,
        cw,
        &shared.forward_down,
        Some(&shared.pass_replies),
        &shared.delay_ms,
        &tainted,
    );
    tokio::join!(up, down);
}

/// Where a reader stands in the length-prefixed frames of a stream.
#[derive(Default)]
struct Framing {
    header: Vec<u8>,
    body_left: usize,
}

impl Framing {
    /// How many of `bytes` make up the next `frames` whole frames (or all of them), and how
    /// many frames that completes.
    fn take(&mut self, bytes: &[u8], frames: usize) -> (usize, usize) {
        let (mut used, mut done) = (0, 0);
        while used < bytes.len() && done < frames {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len() - used);
                self.body_left -= n;
                used += n;
                if self.body_left == 0 {
                    done += 1;
                }
            } else {
                self.header.push(bytes[used]);
                used += 1;
                if self.header.len() == 4 {
                    let len = u32::from_be_bytes(self.header[..].try_into().unwrap()) as usize;
                    self.header.clear();
                    self.body_left = len;
                    if len == 0 {
                        done += 1;
                    }
                }
            }
        }
        (used, done)
    }

    /// Follows `bytes` without counting frames (while everything passes).
    fn skip(&mut self, bytes: &[u8]) {
        self.take(bytes, usize::MAX);
    }
}

async fn copy(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    forward: &AtomicBool,
    pass: Option<&AtomicUsize>,
    delay_ms: &AtomicU64,
    tainted: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut framing = Framing::default();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let mut send = if forward.load(Ordering::SeqCst) { n } else { 0 };
        if let Some(pass) = pass {
            if send == n {
                framing.skip(&buf[..n]);
            } else {
                let frames = pass.load(Ordering::SeqCst);
                let (used, done) = framing.take(&buf[..n], frames);
                pass.fetch_sub(done, Ordering::SeqCst);
                send = if frames > 0 { used } else { 0 };
            }
        }
        if send < n {
            tainted.store(true, Ordering::SeqCst);
        }
        if send > 0 {
            let delay = delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if w.write_all(&buf[..send]).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An upstream that echoes what it reads (on the same connection) and counts the bytes.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let r = received.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        r.fetch_add(n, Ordering::SeqCst);
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    /// An upstream that sends one byte every 20 ms on each connection.
    async fn ticker() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    while s.write_all(&[7]).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(c: &mut TcpStream, byte: u8) -> Option<Duration> {
        let start = Instant::now();
        c.write_all(&[byte]).await.ok()?;
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(500), c.read_exact(&mut b)).await {
            Ok(Ok(_)) if b[0] == byte => Some(start.elapsed()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_delay_slows_each_direction_and_restore_ends_it() {
        let (upstream, _) = echo_server().await;
        let proxy = Proxy::start(upstream).await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut c, 1).await.is_some());
        proxy.set_delay(Duration::from_millis(100));
        let slow = round_trip(&mut c, 2)
            .await
            .expect("a delayed echo still arrives");
        // Held once each way.
        assert!(slow >= Duration::from_millis(200), "{slow:?}");
        proxy.restore();
        let fast = round_trip(&mut c, 3)
            .await
            .expect("the connection survives");
        assert!(fast < Duration::from_millis(100), "{fast:?}");
    }

    #[tokio::test]
    async fn held_requests_never_reach_the_server_and_taint_the_connection() {
        let (upstream, received) = echo_server().await;
        let proxy = Proxy::start(upstream).await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut c, 1).await.is_some());
        proxy.hold_requests();
        assert!(round_trip(&mut c, 2).await.is_none());
        assert_eq!(received.load(Ordering::SeqCst), 1);
        // A new connection is held open and swallowed.
        let mut d = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut d, 3).await.is_none());
        assert_eq!(received.load(Ordering::SeqCst), 1);
        proxy.restore();
        // Bytes were lost on both: they are closed, and a new connection passes again.
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let mut e = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut e, 4).await.is_some());
    }

    #[tokio::test]
    async fn held_requests_still_let_the_server_speak() {
        let proxy = Proxy::start(ticker().await).await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        proxy.hold_requests();
        c.write_all(b"lost").await.unwrap();
        for _ in 0..3 {
            let tick = tokio::time::timeout(Duration::from_millis(500), c.read_exact(&mut b)).await;
            assert!(matches!(tick, Ok(Ok(_))), "{tick:?}");
        }
    }
}
