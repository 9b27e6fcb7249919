//! Real ensembles of `rookery server` processes, member `i` on 127.0.0.`i` with free ports.
//!
//! With `proxied`, every member reaches every other member through an in-process TCP fault proxy
//! (one per direction and port), so a test can cut a member off ([`Ensemble::isolate`]) and heal
//! the network ([`Ensemble::heal`]). Each member's zoo.cfg then names the proxies for the other
//! members and its own real address for itself (which it binds).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::four_letter;
use crate::proxy::Proxy;

/// A free port on `ip`.
fn free_port_on(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One member.
pub struct Member {
    pub id: u64,
    pub ip: Ipv4Addr,
    pub client: SocketAddr,
    pub quorum: SocketAddr,
    pub election: SocketAddr,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `Mode: ...` from srvr, or None if it does not serve.
    pub fn mode(&self) -> Option<String> {
        let out = four_letter(self.client, "srvr");
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    /// The `Zxid:` srvr reports (the last applied).
    pub fn zxid(&self) -> Option<i64> {
        let out = four_letter(self.client, "srvr");
        out.lines()
            .find_map(|l| l.strip_prefix("Zxid: 0x"))
            .and_then(|z| i64::from_str_radix(z, 16).ok())
    }

    pub fn mntr(&self, key: &str) -> Option<String> {
        four_letter(self.client, "mntr").lines().find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == key).then(|| v.to_owned())
        })
    }
}

/// Test ensemble options.
#[derive(Clone)]
pub struct Options {
    pub size: usize,
    pub tick_ms: u64,
    pub proxied: bool,
    /// The last `observers` members observe (non-voting).
    pub observers: usize,
    pub extra: Vec<(String, String)>,
    /// Keys for one member's zoo.cfg only (it may write files into the member's `dir`, such as
    /// its own certificate).
    pub member_extra: Option<MemberExtra>,
    /// Environment variables for one member's process (each start and restart), on top of
    /// `RUST_LOG=info`: to run a member under libfaketime ([`crate::faketime`]), say.
    pub member_env: Option<MemberEnv>,
}

/// See [`Options::member_extra`].
pub type MemberExtra = std::sync::Arc<dyn Fn(&Member) -> Vec<(String, String)> + Send + Sync>;

/// See [`Options::member_env`]: the variables for a member (none for most).
pub type MemberEnv = std::sync::Arc<dyn Fn(&Member) -> Vec<(String, String)> + Send + Sync>;

impl Options {
    pub fn new(size: usize) -> Options {
        Options {
            size,
            tick_ms: 200,
            proxied: false,
            observers: 0,
            extra: Vec::new(),
            member_extra: None,
            member_env: None,
        }
    }
}

/// A running ensemble; every process is killed on drop.
pub struct Ensemble {
    pub root: tempfile::TempDir,
    pub members: Vec<Member>,
    /// (from, to, proxy) for each direction and port, when proxied.
    /// (from, to, quorum port or election port, the proxy of that link).
    proxies: Vec<(usize, usize, bool, Proxy)>,
    member_env: Option<MemberEnv>,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Ensemble {
    /// Starts the members (needs a tokio runtime when proxied) and waits until one leads and
    /// every member serves.
    ///
    /// A port picked free can be taken before its member binds it (by another test's
    /// connection, whose local port comes from the same range): such a start is retried on new
    /// ports, twice at most.
    pub async fn start(opts: Options) -> Ensemble {
        let mut attempt = 1;
        loop {
            let mut ens = Ensemble::start_unsettled(opts.clone()).await;
            if attempt < 3 && ens.lost_a_port().await {
                attempt += 1;
                continue;
            }
            ens.wait_all_serving(Duration::from_secs(30)).await;
            return ens;
        }
    }

    /// Waits (5 s at most) until every member has bound its ports (it logs that it starts as
    /// a member) or one has exited because a port was taken; says whether one did.
    async fn lost_a_port(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut bound = 0;
            for m in &mut self.members {
                let log = m.log();
                if log.contains("starting as an ensemble member") {
                    bound += 1;
                } else if let Some(Ok(Some(_))) = m.child.as_mut().map(|c| c.try_wait()) {
                    return log.contains("in use");
                }
            }
            if bound == self.members.len() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Starts the members without waiting for them to settle (a test that expects some of them
    /// never to serve).
    pub async fn start_unsettled(opts: Options) -> Ensemble {
        let root = tempfile::tempdir().unwrap();
        let mut members = Vec::new();
        for i in 0..opts.size {
            let ip = Ipv4Addr::new(127, 0, 0, (i + 1) as u8);
            let dir = root.path().join(format!("m{}", i + 1));
            std::fs::create_dir_all(dir.join("data")).unwrap();
            std::fs::write(dir.join("data").join("myid"), format!("{}\n", i + 1)).unwrap();
            members.push(Member {
                id: (i + 1) as u64,
                ip,
                client: SocketAddr::from((ip, free_port_on(ip))),
                quorum: SocketAddr::from((ip, free_port_on(ip))),
                election: SocketAddr::from((ip, free_port_on(ip))),
                dir,
                child: None,
            });
        }
        let mut proxies = Vec::new();
        let mut lines: Vec<Vec<String>> = vec![Vec::new(); opts.size];
        for (i, line) in lines.iter_mut().enumerate() {
            for (j, m) in members.iter().enumerate() {
                let (q, e) = if i == j || !opts.proxied {
                    (m.quorum, m.election)
                } else {
                    let pq = Proxy::start(m.quorum).await;
                    let pe = Proxy::start(m.election).await;
                    let addrs = (pq.addr, pe.addr);
                    proxies.push((i, j, true, pq));
                    proxies.push((i, j, false, pe));
                    addrs
                };
                assert_eq!(q.ip(), e.ip());
                let role = if j >= opts.size - opts.observers {
                    ":observer"
                } else {
                    ""
                };
                line.push(format!(
                    "server.{}={}:{}:{}{role}",
                    m.id,
                    q.ip(),
                    q.port(),
                    e.port()
                ));
            }
        }
        for (m, servers) in members.iter().zip(&lines) {
            let mut cfg = format!(
                "tickTime={}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
                 clientPortAddress={}\n4lw.commands.whitelist=*\n\
                 zookeeper.extendedTypesEnabled=true\nznode.container.checkIntervalMs=1000\n\
                 preAllocSize=1024\nadmin.enableServer=false\n",
                opts.tick_ms,
                m.dir.join("data").display(),
                m.client.port(),
                m.ip
            );
            for (k, v) in &opts.extra {
                cfg.push_str(&format!("{k}={v}\n"));
            }
            for (k, v) in opts.member_extra.as_ref().map(|f| f(m)).unwrap_or_default() {
                cfg.push_str(&format!("{k}={v}\n"));
            }
            for s in servers {
                cfg.push_str(s);
                cfg.push('\n');
            }
            std::fs::write(m.dir.join("zoo.cfg"), cfg).unwrap();
        }
        let mut ens = Ensemble {
            root,
            members,
            proxies,
            member_env: opts.member_env,
        };
        for i in 0..opts.size {
            ens.spawn(i);
        }
        ens
    }

    fn spawn(&mut self, i: usize) {
        let env = self
            .member_env
            .as_ref()
            .map(|f| f(&self.members[i]))
            .unwrap_or_default();
        let m = &mut self.members[i];
        assert!(m.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("server.log"))
            .unwrap();
        m.child = Some(
            Command::new(crate::rookery_bin())
                .args(["server", "--config"])
                .arg(m.dir.join("zoo.cfg"))
                .env("RUST_LOG", "info")
                .envs(env)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on the same ports and data directory.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// The index of the member that reports `Mode: leader`, among the running ones.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.child.is_some() && m.mode().as_deref() == Some("leader"))
    }

    /// Indices of running members.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect()
    }

    /// A connect string of the given members.
    pub fn connect_string(&self, which: &[usize]) -> String {
        which
            .iter()
            .map(|&i| self.members[i].client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member serves (leader, follower or observer) with one leader.
    pub async fn wait_all_serving(&self, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            let running = self.running();
            let modes: Vec<Option<String>> =
                running.iter().map(|&i| self.members[i].mode()).collect();
            let leaders = modes
                .iter()
                .filter(|m| m.as_deref() == Some("leader"))
                .count();
            if leaders == 1 && modes.iter().all(Option::is_some) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the ensemble did not settle: modes {modes:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running member has applied the same zxid, and returns it.
    pub async fn wait_converged(&self, max: Duration) -> i64 {
        let deadline = Instant::now() + max;
        loop {
            let zxids: Vec<Option<i64>> = self
                .running()
                .iter()
                .map(|&i| self.members[i].zxid())
                .collect();
            if let Some(Some(first)) = zxids.first() {
                if zxids.iter().all(|z| *z == Some(*first)) {
                    return *first;
                }
            }
            if Instant::now() > deadline {
                panic!("members did not converge: {zxids:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts member `i` off from every other member (both directions, both ports).
    pub fn isolate(&self, i: usize) {
        assert!(!self.proxies.is_empty(), "start the ensemble with proxied");
        for (from, to, _, p) in &self.proxies {
            if *from == i || *to == i {
                p.refuse();
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for (_, _, _, p) in &self.proxies {
            p.restore();
        }
    }

    /// The proxy that carries member `from`'s connection to member `to`'s quorum port (where
    /// `from` sends its ZAB messages and forwarded requests to `to`).
    pub fn quorum_link(&self, from: usize, to: usize) -> &Proxy {
        self.proxies
            .iter()
            .find(|(f, t, quorum, _)| *f == from && *t == to && *quorum)
            .map(|(_, _, _, p)| p)
            .expect("start the ensemble with proxied")
    }

    /// The proxies of the connections member `from` opens to member `to` (to its quorum port
    /// and to its election port); empty when the ensemble is not proxied or `from == to`.
    pub fn links(&self, from: usize, to: usize) -> Vec<&Proxy> {
        self.proxies
            .iter()
            .filter(|(f, t, _, _)| *f == from && *t == to)
            .map(|(_, _, _, p)| p)
            .collect()
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = m.log();
                // Without the frames of a backtrace, which would push the error out of view.
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| {
                        let t = l.trim_start();
                        let frame = t.starts_with("at ")
                            || t.split_once(": ")
                                .is_some_and(|(n, _)| n.parse::<u32>().is_ok());
                        !frame
                    })
                    .take(40)
                    .collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- member {} ---\n{}\n", m.id, tail.join("\n"))
            })
            .collect()
    }
}
