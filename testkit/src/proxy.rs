//! A small fault-injection TCP proxy between a client and a server.
//!
//! Modes: pass-through; [`Proxy::drop_all`] (close every connection now);
//! [`Proxy::blackhole`] (accept connections and keep them open, but forward nothing either
//! way, not even a close); [`Proxy::hold_replies`] (forward requests, swallow replies;
//! [`Proxy::hold_replies_after`] lets a number of replies through first);
//! [`Proxy::hold_requests`] (the other way round: swallow requests, forward replies: a one-way
//! cut); [`Proxy::stall_requests`] and [`Proxy::stall_replies`] (stop reading one side: a peer
//! that stops reading, whose TCP window closes; nothing is lost); [`Proxy::set_delay`] (hold
//! each chunk before forwarding it: a slow link); [`Proxy::chaos`] (packet chaos: damaged
//! bytes, duplicated chunks, varying delays); [`Proxy::refuse`] (close every connection,
//! and each new one at once); [`Proxy::restore`] (pass-through again, closing the connections
//! that lost bytes).
//!
//! A direction that swallows bytes swallows the end of its stream too (a close, or a reset,
//! of the side it reads): the other side learns nothing, as behind a real blackhole, until
//! [`Proxy::restore`] closes the connection (it lost bytes). A stalled direction reads
//! nothing at all, so the end of its stream waits in the kernel with the bytes before it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
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
    /// Stop reading what clients send (requests), or what the server sends (replies).
    stall_up: AtomicBool,
    stall_down: AtomicBool,
    /// Wakes the stalled directions when a stall ends.
    unstalled: Notify,
    /// Replies (whole frames) still let through while `forward_down` is off.
    pass_replies: AtomicUsize,
    refuse: AtomicBool,
    /// Milliseconds each chunk is held before it is written on (0: none).
    delay_ms: AtomicU64,
    /// [`Proxy::chaos`]: flip a byte of every n-th chunk, write every m-th chunk twice (0:
    /// never), hold each chunk up to this many ms.
    corrupt_every: AtomicU64,
    duplicate_every: AtomicU64,
    jitter_ms: AtomicU64,
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
            stall_up: AtomicBool::new(false),
            stall_down: AtomicBool::new(false),
            unstalled: Notify::new(),
            pass_replies: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            corrupt_every: AtomicU64::new(0),
            duplicate_every: AtomicU64::new(0),
            jitter_ms: AtomicU64::new(0),
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

    /// Forwards nothing, either way, on current and new connections, and closes nothing: what
    /// either side sends is read and thrown away (its writes never block), a close or a reset
    /// of either side is swallowed too, and a new connection is accepted and held open without
    /// reaching the server. Neither side ever sees an error, an end of stream or a reply; only
    /// its own timeouts tell it. [`Proxy::restore`] closes the connections (they lost bytes).
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

    /// Stops reading what clients send, on current and new connections (a new connection
    /// still reaches the server): the server hears nothing more, as from a peer whose process
    /// stopped reading. Nothing is dropped and nothing is closed: the proxy's receive buffer
    /// fills, the client's TCP window closes, its socket buffer fills and then its writes
    /// block, without an error. [`Proxy::restore`] reads on: everything sent meanwhile
    /// arrives, in order, on the same connection. (At most one chunk the proxy had already
    /// read when the stall began is held in the proxy, not forwarded.)
    pub fn stall_requests(&self) {
        self.shared.stall_up.store(true, Ordering::SeqCst);
    }

    /// As [`Proxy::stall_requests`], for what the server sends: the client hears nothing
    /// more, the server's writes eventually block.
    pub fn stall_replies(&self) {
        self.shared.stall_down.store(true, Ordering::SeqCst);
    }

    /// Holds each chunk read from either side `delay` before writing it on (zero: no delay),
    /// on current and new connections: a slow link. Chunks are forwarded one after another, so
    /// this adds `delay` of latency and caps each direction at about one 16 KiB chunk per
    /// `delay`; nothing is lost.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Packet chaos (N4), on current and new connections, both directions: one byte of every
    /// `corrupt_every`-th chunk read is flipped (damage that got past TCP's checksum), every
    /// `duplicate_every`-th chunk is written twice (a stream that repeats bytes), and each
    /// chunk is held a varying 0 to `jitter` (no reordering: a direction forwards its chunks
    /// one after another). 0 turns a kind off. A connection that carried damage is closed by
    /// [`Proxy::restore`], if its ends have not closed it first.
    pub fn chaos(&self, corrupt_every: u64, duplicate_every: u64, jitter: Duration) {
        let ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .corrupt_every
            .store(corrupt_every, Ordering::SeqCst);
        self.shared
            .duplicate_every
            .store(duplicate_every, Ordering::SeqCst);
        self.shared.jitter_ms.store(ms, Ordering::SeqCst);
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
        self.chaos(0, 0, Duration::ZERO);
        self.shared.pass_replies.store(0, Ordering::SeqCst);
        self.shared.forward_up.store(true, Ordering::SeqCst);
        self.shared.forward_down.store(true, Ordering::SeqCst);
        self.shared.stall_up.store(false, Ordering::SeqCst);
        self.shared.stall_down.store(false, Ordering::SeqCst);
        self.shared.unstalled.notify_waiters();
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
        // Blackholed from the start: hold the connection, swallow what comes, and its end
        // (the connection is closed by restore, or when the proxy drops).
        tainted.store(true, Ordering::SeqCst);
        let (mut r, _w) = client.into_split();
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
        std::future::pending::<()>().await;
        return;
    }
    let upstream_addr = *shared.upstream.lock().unwrap();
    let Ok(upstream) = TcpStream::connect(upstream_addr).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = copy(
        cr,
        uw,
        Direction {
            forward: &shared.forward_up,
            stall: &shared.stall_up,
            pass: None,
        },
        &shared,
        &tainted,
    );
    let down = copy(
        ur,
        cw,
        Direction {
            forward: &shared.forward_down,
            stall: &shared.stall_down,
            pass: Some(&shared.pass_replies),
        },
        &shared,
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

/// The switches of one direction of a connection.
struct Direction<'a> {
    forward: &'a AtomicBool,
    stall: &'a AtomicBool,
    /// Replies (whole frames) still let through while `forward` is off.
    pass: Option<&'a AtomicUsize>,
}

/// Returns once `stall` is off (at once if it is).
async fn unstalled(stall: &AtomicBool, wake: &Notify) {
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        // Registered before the check: a restore between the check and the wait still wakes.
        woken.as_mut().enable();
        if !stall.load(Ordering::SeqCst) {
            return;
        }
        woken.await;
    }
}

async fn copy(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    dir: Direction<'_>,
    shared: &Shared,
    tainted: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut framing = Framing::default();
    // Chunks read so far: what the chaos counts.
    let mut chunks: u64 = 0;
    loop {
        unstalled(dir.stall, &shared.unstalled).await;
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) if !dir.forward.load(Ordering::SeqCst) => {
                // The end of a swallowed stream is swallowed too: the other side must not
                // learn of it. The connection lost it, so restore closes the connection.
                tainted.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
                return;
            }
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // A stall that began while the read waited holds what it returned.
        unstalled(dir.stall, &shared.unstalled).await;
        let mut send = if dir.forward.load(Ordering::SeqCst) {
            n
        } else {
            0
        };
        if let Some(pass) = dir.pass {
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
        chunks += 1;
        let mut twice = false;
        if send > 0 {
            let corrupt = shared.corrupt_every.load(Ordering::SeqCst);
            if corrupt > 0 && chunks.is_multiple_of(corrupt) {
                // A byte somewhere inside, different each time.
                let at = (chunks as usize).wrapping_mul(7919) % send;
                buf[at] ^= 1 << (chunks % 8);
                tainted.store(true, Ordering::SeqCst);
            }
            let duplicate = shared.duplicate_every.load(Ordering::SeqCst);
            if duplicate > 0 && chunks.is_multiple_of(duplicate) {
                twice = true;
                tainted.store(true, Ordering::SeqCst);
            }
            let jitter = shared.jitter_ms.load(Ordering::SeqCst);
            let delay = shared.delay_ms.load(Ordering::SeqCst)
                + if jitter > 0 {
                    chunks.wrapping_mul(2654435761) % (jitter + 1)
                } else {
                    0
                };
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if w.write_all(&buf[..send]).await.is_err() {
                return;
            }
            if twice && w.write_all(&buf[..send]).await.is_err() {
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

    /// The byte at offset `at` of a test stream: a pattern whose order can be checked.
    fn pattern(at: usize, len: usize) -> Vec<u8> {
        (at..at + len).map(|i| (i % 251) as u8).collect()
    }

    /// A connection through the proxy: (the client's end, the server's end). Both sockets get
    /// small send buffers (inherited by the accepted one), so that a blocked writer blocks soon.
    async fn through() -> (Proxy, TcpStream, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(32 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(8).unwrap();
        let proxy = Proxy::start(listener.local_addr().unwrap()).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(32 * 1024).unwrap();
        let client = socket.connect(proxy.addr).await.unwrap();
        let (server, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the proxy connects upstream")
            .unwrap();
        (proxy, client, server)
    }

    /// What a reader task saw.
    #[derive(Default)]
    struct Seen {
        bytes: AtomicUsize,
        out_of_order: AtomicBool,
        ended: AtomicBool,
        failed: AtomicBool,
    }

    /// Reads `r` to its end, checking the pattern.
    fn reader(mut r: OwnedReadHalf) -> Arc<Seen> {
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => return s.ended.store(true, Ordering::SeqCst),
                    Ok(n) => {
                        let at = s.bytes.load(Ordering::SeqCst);
                        if buf[..n] != pattern(at, n)[..] {
                            s.out_of_order.store(true, Ordering::SeqCst);
                        }
                        s.bytes.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(_) => return s.failed.store(true, Ordering::SeqCst),
                }
            }
        });
        seen
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Writes the pattern from offset `at` until a write has not gone through for 300 ms (at
    /// most 64 MiB): what it wrote. No write may fail.
    async fn write_until_blocked(w: &mut OwnedWriteHalf, mut at: usize) -> usize {
        let start = at;
        while at - start < 64 << 20 {
            let chunk = pattern(at, 64 * 1024);
            match tokio::time::timeout(Duration::from_millis(300), w.write(&chunk)).await {
                Ok(Ok(n)) => at += n,
                Ok(Err(e)) => panic!("a write failed after {} bytes: {e}", at - start),
                Err(_) => return at,
            }
        }
        panic!("64 MiB went into a stalled link without blocking");
    }

    /// A writer at one end of a link the proxy stalls (`stall`) fills its buffers and blocks
    /// without an error while nothing reaches the other end; after the restore every byte
    /// arrives, in order, on the same connection.
    async fn a_stalled_direction(stall: fn(&Proxy), from_client: bool) {
        let (proxy, client, server) = through().await;
        let (writer, reader_end) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        let (r, _keep_r) = reader_end.into_split();
        let (_keep_w, mut w) = writer.into_split();
        let seen = reader(r);
        w.write_all(&pattern(0, 1000)).await.unwrap();
        until("the first bytes", || {
            seen.bytes.load(Ordering::SeqCst) == 1000
        })
        .await;

        stall(&proxy);
        let written = write_until_blocked(&mut w, 1000).await;
        assert!(written > 1000, "nothing could be written before blocking");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            seen.bytes.load(Ordering::SeqCst),
            1000,
            "bytes passed a stall"
        );
        assert!(!seen.ended.load(Ordering::SeqCst) && !seen.failed.load(Ordering::SeqCst));
        assert_eq!(proxy.connections(), 1);

        proxy.restore();
        let last = pattern(written, 64 * 1024);
        tokio::time::timeout(Duration::from_secs(10), w.write_all(&last))
            .await
            .expect("the blocked writer goes on after the restore")
            .expect("without an error");
        w.shutdown().await.unwrap();
        let total = written + last.len();
        until("every byte and the end", || {
            seen.ended.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(seen.bytes.load(Ordering::SeqCst), total);
        assert!(
            !seen.out_of_order.load(Ordering::SeqCst),
            "bytes out of order"
        );
        assert!(!seen.failed.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_requests_block_the_client_and_arrive_in_order_after_restore() {
        a_stalled_direction(Proxy::stall_requests, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_replies_block_the_server_and_arrive_in_order_after_restore() {
        a_stalled_direction(Proxy::stall_replies, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_of_one_direction_lets_the_other_through() {
        let (proxy, client, server) = through().await;
        let (cr, _cw) = client.into_split();
        let (_sr, mut sw) = server.into_split();
        let seen = reader(cr);
        proxy.stall_requests();
        sw.write_all(&pattern(0, 100_000)).await.unwrap();
        until("the replies", || {
            seen.bytes.load(Ordering::SeqCst) == 100_000
        })
        .await;
        assert!(!seen.out_of_order.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blackhole_swallows_both_ways_and_never_closes_or_resets() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(8).unwrap();
        let proxy = Proxy::start(listener.local_addr().unwrap()).await;
        let client = TcpStream::connect(proxy.addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (sr, mut sw) = server.into_split();
        let at_server = reader(sr);
        cw.write_all(&pattern(0, 10)).await.unwrap();
        until("a request", || at_server.bytes.load(Ordering::SeqCst) == 10).await;

        proxy.blackhole();
        // Neither writer ever blocks or fails: the proxy reads and drops.
        for (what, w) in [("client", &mut cw), ("server", &mut sw)] {
            tokio::time::timeout(Duration::from_secs(10), w.write_all(&pattern(0, 4 << 20)))
                .await
                .unwrap_or_else(|_| panic!("the {what}'s writes blocked"))
                .unwrap_or_else(|e| panic!("the {what}'s writes failed: {e}"));
        }
        // A new connection is accepted and held, and never reaches the server.
        let mut late = TcpStream::connect(proxy.addr).await.unwrap();
        late.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 1];
        let heard = tokio::time::timeout(Duration::from_millis(300), cr.read(&mut b)).await;
        assert!(heard.is_err(), "the client heard {heard:?}");
        // The client resets its connection: the server must not learn of it either.
        let client = cr.reunite(cw).unwrap();
        client.set_zero_linger().unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(at_server.bytes.load(Ordering::SeqCst), 10);
        assert!(
            !at_server.ended.load(Ordering::SeqCst) && !at_server.failed.load(Ordering::SeqCst),
            "the server saw the connection end"
        );
        sw.write_all(&pattern(0, 1 << 20))
            .await
            .expect("still writable");
        let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "a blackholed connection reached the server"
        );
        let heard = tokio::time::timeout(Duration::from_millis(300), late.read(&mut b)).await;
        assert!(heard.is_err(), "the held connection heard {heard:?}");

        // The restore closes the connections that lost bytes.
        proxy.restore();
        until("the server's connection closed", || {
            at_server.ended.load(Ordering::SeqCst) || at_server.failed.load(Ordering::SeqCst)
        })
        .await;
        let mut e = TcpStream::connect(proxy.addr).await.unwrap();
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a new connection passes")
            .unwrap();
        e.write_all(b"x").await.unwrap();
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
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

    /// Chaos damages and repeats what passes (so echoes come back changed or twice) and
    /// taints the connection; restore closes it, and a new connection is clean.
    #[tokio::test]
    async fn chaos_damages_and_repeats_chunks_and_restore_ends_it() {
        let (upstream, received) = echo_server().await;
        let proxy = Proxy::start(upstream).await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut c, 1).await.is_some());
        // Every chunk damaged and written twice, each way: one byte sent reaches the server
        // twice and comes back as at least four bytes, not all of them what was sent.
        proxy.chaos(1, 1, Duration::from_millis(5));
        c.write_all(&[0]).await.unwrap();
        let mut back = Vec::new();
        let mut b = [0u8; 16];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while back.len() < 4 && std::time::Instant::now() < deadline {
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), c.read(&mut b)).await
            {
                back.extend_from_slice(&b[..n]);
            }
        }
        assert!(back.len() >= 4, "{back:?}");
        assert!(back.iter().any(|&x| x != 0), "nothing damaged: {back:?}");
        // The server got the request twice.
        assert_eq!(received.load(Ordering::SeqCst), 1 + 2);
        proxy.restore();
        let closed = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let mut e = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut e, 9).await.map(|_| ()), Some(()));
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
