//! A small fault-injection TCP proxy between a client and a server.
//!
//! Modes: pass-through; [`Proxy::drop_all`] (close every connection now);
//! [`Proxy::blackhole`] (accept connections and keep them open, but forward nothing either
//! way); [`Proxy::hold_replies`] (forward requests, swallow replies; [`Proxy::hold_replies_after`]
//! lets a number of replies through first); [`Proxy::refuse`] (close
//! every connection, and each new one at once); [`Proxy::restore`] (pass-through again,
//! closing the connections that lost bytes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

    /// Closes every connection, and each new one as soon as it is accepted.
    pub fn refuse(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
        self.drop_all();
    }

    /// Back to pass-through. Connections that lost bytes are closed.
    pub fn restore(&self) {
        self.shared.refuse.store(false, Ordering::SeqCst);
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
    let up = copy(cr, uw, &shared.forward_up, None, &tainted);
    let down = copy(
        ur,
        cw,
        &shared.forward_down,
        Some(&shared.pass_replies),
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
        if send > 0 && w.write_all(&buf[..send]).await.is_err() {
            return;
        }
    }
}
