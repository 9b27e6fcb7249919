//! Server processes for `rookery bench compare`: Rookery and Apache ZooKeeper started with the
//! same configuration on free loopback ports, standalone or as a 3-member ensemble (member N on
//! its own address 127.0.0.N); start-up timed until `ruok` is answered; RSS read from
//! `/proc/<pid>/status`; the leader found by `srvr`, and killed for the failover measurement.

use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::raw::RawSession;
use super::BenchError;

/// How often start-up is polled; the resolution of the start-up time.
const POLL: Duration = Duration::from_millis(2);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// This project's `rookery server`.
    Rookery,
    /// Apache ZooKeeper (the Debian package's jar, run with java directly).
    Zookeeper,
}

impl Flavor {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Rookery => "rookery",
            Flavor::Zookeeper => "zookeeper",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Rookery => "Rookery",
            Flavor::Zookeeper => "ZooKeeper",
        })
    }
}

impl FromStr for Flavor {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "rookery" => Ok(Flavor::Rookery),
            "zookeeper" | "zk" => Ok(Flavor::Zookeeper),
            other => Err(BenchError::InvalidOption(format!(
                "unknown server {other:?} (expected rookery or zookeeper)"
            ))),
        }
    }
}

/// How to start the servers, and the configuration they share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `tickTime` in ms (session timeouts are 2 to 20 ticks).
    pub tick_time_ms: u64,
    /// The `rookery` binary.
    pub rookery_bin: PathBuf,
    /// The java binary.
    pub java: PathBuf,
    /// ZooKeeper's class path.
    pub zookeeper_classpath: String,
    /// ZooKeeper's heap limit (`-Xmx`) in MiB; zkEnv.sh's default is 1000.
    pub zookeeper_heap_mb: u32,
    /// Where the servers' data directories go (a temporary directory is made inside).
    pub work_dir: PathBuf,
    /// The bound on start-up.
    #[serde(rename = "ready_timeout_ms", with = "super::serde_ms")]
    pub ready_timeout: Duration,
}

impl Settings {
    /// The zoo.cfg lines both servers get (besides `dataDir`, `clientPort` and the ensemble
    /// lines), in order: the same tick, no connection limit, the default snapshot interval and
    /// log preallocation, no purging, no admin HTTP server.
    pub fn shared_config(&self) -> Vec<(String, String)> {
        [
            ("tickTime", self.tick_time_ms.to_string()),
            ("clientPortAddress", "127.0.0.1".to_owned()),
            ("maxClientCnxns", "0".to_owned()),
            ("4lw.commands.whitelist", "ruok,srvr,mntr".to_owned()),
            ("snapCount", "100000".to_owned()),
            ("preAllocSize", "65536".to_owned()),
            ("autopurge.purgeInterval", "0".to_owned()),
            ("admin.enableServer", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The lines every ensemble member gets, of both servers (besides its `server.N` lines,
    /// with member N on 127.0.0.N, and `clientPortAddress` set to its own address).
    pub fn ensemble_config() -> Vec<(String, String)> {
        vec![
            ("initLimit".to_owned(), "10".to_owned()),
            ("syncLimit".to_owned(), "5".to_owned()),
        ]
    }

    /// The lines only ZooKeeper gets: fsync before acknowledging (its default, written out).
    pub fn zookeeper_only_config() -> Vec<(String, String)> {
        vec![("forceSync".to_owned(), "yes".to_owned())]
    }

    /// ZooKeeper's JVM arguments before the main class.
    pub fn zookeeper_jvm_args(&self) -> Vec<String> {
        vec![
            format!("-Xmx{}m", self.zookeeper_heap_mb),
            "-cp".to_owned(),
            self.zookeeper_classpath.clone(),
        ]
    }
}

/// One server process, killed (SIGKILL, then reaped) when dropped.
#[derive(Debug)]
pub struct Member {
    child: Child,
    /// Its id: N of its `server.N` line (1 when standalone).
    pub id: usize,
    /// Its client address.
    pub addr: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// Whether [`Cluster::kill`] killed it.
    pub killed: bool,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Only our own child, by its pid; after SIGKILL the wait returns at once.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A running server: one member (standalone) or three (an ensemble). Dropping it kills the
/// processes and removes their data directories.
#[derive(Debug)]
pub struct Cluster {
    /// Which server.
    pub flavor: Flavor,
    /// From spawning until every member answered `ruok` with `imok`.
    pub startup: Duration,
    /// From spawning until a session could be opened on every member.
    pub ready: Duration,
    // Declared before the directory so that the processes die before it is removed.
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` members (1, or 3 for an ensemble) of `flavor` with fresh data directories,
    /// and waits until each answers `ruok` and accepts a session.
    ///
    /// # Errors
    /// [`BenchError::InvalidOption`] for a size other than 1 or 3 or a missing binary or jar;
    /// [`BenchError::ServerStart`] (with the end of its log) if a member exits or is not ready
    /// within the bound; [`BenchError::Io`] if a directory or file cannot be made.
    ///
    /// # Cancellation safety
    /// Dropping the future kills any process it started.
    pub async fn start(
        flavor: Flavor,
        size: usize,
        settings: &Settings,
    ) -> Result<Cluster, BenchError> {
        if size != 1 && size != 3 {
            return Err(BenchError::InvalidOption(format!(
                "a cluster has 1 or 3 members, not {size}"
            )));
        }
        check_installed(flavor, settings)?;
        std::fs::create_dir_all(&settings.work_dir)
            .map_err(|e| BenchError::io(format!("creating {}", settings.work_dir.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{}-", flavor.name()))
            .tempdir_in(&settings.work_dir)
            .map_err(|e| BenchError::io("creating a data directory", e))?;
        // Member N on 127.0.0.N: a client port, plus quorum and election ports in an ensemble.
        let addrs = (1..=size)
            .map(|id| {
                let ip = Ipv4Addr::new(127, 0, 0, id as u8);
                let ports = free_ports(ip, if size == 1 { 1 } else { 3 })?;
                Ok(MemberAddrs {
                    ip,
                    client: ports[0],
                    quorum: ports.get(1).copied().unwrap_or_default(),
                    election: ports.get(2).copied().unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        let mut cluster = Cluster {
            flavor,
            startup: Duration::ZERO,
            ready: Duration::ZERO,
            members: Vec::with_capacity(size),
            dir,
        };
        let spawned = Instant::now();
        for id in 1..=size {
            let member = spawn_member(flavor, id, &addrs, settings, cluster.dir.path())?;
            cluster.members.push(member);
        }
        let deadline = spawned + settings.ready_timeout;
        for i in 0..size {
            cluster
                .wait_for(i, deadline, settings.ready_timeout, |addr| async move {
                    four_letter(addr, "ruok").await == "imok"
                })
                .await?;
        }
        cluster.startup = spawned.elapsed();
        for i in 0..size {
            cluster
                .wait_for(i, deadline, settings.ready_timeout, |addr| async move {
                    session_opens(addr).await
                })
                .await?;
        }
        cluster.ready = spawned.elapsed();
        Ok(cluster)
    }

    /// Polls `probe` on member `i` until it holds, the member exits, or the deadline passes.
    async fn wait_for<F, Fut>(
        &mut self,
        i: usize,
        deadline: Instant,
        bound: Duration,
        probe: F,
    ) -> Result<(), BenchError>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let member = &mut self.members[i];
        loop {
            if let Ok(Some(status)) = member.child.try_wait() {
                return Err(start_error(
                    self.flavor,
                    member,
                    &format!("member {} exited during start-up ({status})", i + 1),
                ));
            }
            if probe(member.addr).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(start_error(
                    self.flavor,
                    member,
                    &format!("member {} not ready within {bound:?}", i + 1),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The connect string listing every member.
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The process ids of the members still running (not killed by [`Cluster::kill`]).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter(|m| !m.killed)
            .map(Member::pid)
            .collect()
    }

    /// What `srvr` says member `i` is (`leader`, `follower`, `standalone`), or `None` when it
    /// does not answer or does not serve.
    pub async fn mode(&self, i: usize) -> Option<String> {
        let member = self.members.get(i)?;
        if member.killed {
            return None;
        }
        mode_of(member.addr).await
    }

    /// Waits until `srvr` shows exactly one leader among the running members and every other
    /// running member following it; returns the leader's index.
    ///
    /// # Errors
    /// [`BenchError::Timeout`] after `bound`, naming what each member said last.
    pub async fn wait_for_leader(&self, bound: Duration) -> Result<usize, BenchError> {
        let deadline = Instant::now() + bound;
        loop {
            let mut modes = Vec::with_capacity(self.members.len());
            for i in 0..self.members.len() {
                modes.push(self.mode(i).await);
            }
            let running = || self.members.iter().zip(&modes).filter(|(m, _)| !m.killed);
            let leaders: Vec<usize> = running()
                .filter(|(_, mode)| mode.as_deref() == Some("leader"))
                .map(|(m, _)| m.id)
                .collect();
            let all_follow = running()
                .all(|(_, mode)| matches!(mode.as_deref(), Some("leader") | Some("follower")));
            if leaders.len() == 1 && all_follow {
                let id = leaders[0];
                return Ok(self
                    .members
                    .iter()
                    .position(|m| m.id == id)
                    .unwrap_or_default());
            }
            if Instant::now() >= deadline {
                let said: Vec<String> = self
                    .members
                    .iter()
                    .zip(&modes)
                    .map(|(m, mode)| {
                        format!(
                            "member {}: {}",
                            m.id,
                            if m.killed {
                                "killed"
                            } else {
                                mode.as_deref().unwrap_or("not serving")
                            }
                        )
                    })
                    .collect();
                return Err(BenchError::Timeout {
                    context: format!(
                        "waiting for one {} leader and its followers ({})",
                        self.flavor,
                        said.join(", ")
                    ),
                    after: bound,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills member `i` with SIGKILL and reaps it. Returns when the signal was sent, and when
    /// the process was gone (its sockets closed).
    ///
    /// # Errors
    /// [`BenchError::Io`] if the signal cannot be sent or the process cannot be reaped.
    pub fn kill(&mut self, i: usize) -> Result<(Instant, Instant), BenchError> {
        let member = self
            .members
            .get_mut(i)
            .ok_or_else(|| BenchError::InvalidOption(format!("no member {i}")))?;
        let pid = member.pid();
        let signalled = Instant::now();
        member
            .child
            .kill()
            .map_err(|e| BenchError::io(format!("killing pid {pid}"), e))?;
        member.killed = true;
        // SIGKILL cannot be caught: the wait is short (the kernel tears the process down).
        member
            .child
            .wait()
            .map_err(|e| BenchError::io(format!("reaping pid {pid}"), e))?;
        Ok((signalled, Instant::now()))
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The version line of `srvr` from the first member (`Zookeeper version: ...`).
    pub async fn version(&self) -> Option<String> {
        let srvr = four_letter(self.members.first()?.addr, "srvr").await;
        srvr.lines()
            .find_map(|l| l.strip_prefix("Zookeeper version:"))
            .map(|v| v.trim().to_owned())
    }

    /// Wraps the error of a workload run against this cluster with each member's state (running,
    /// exited, killed) and the end of its log, since the logs go with the cluster.
    pub fn failed(&mut self, error: BenchError) -> BenchError {
        let mut logs = String::new();
        for m in &mut self.members {
            let state = if m.killed {
                "killed by the harness".to_owned()
            } else {
                match m.child.try_wait() {
                    Ok(Some(status)) => format!("exited: {status}"),
                    Ok(None) => "running".to_owned(),
                    Err(e) => format!("unknown: {e}"),
                }
            };
            let _ = write!(
                logs,
                "\n--- member {} ({}, {state}), last lines of {} ---\n{}",
                m.id,
                m.addr,
                m.log.display(),
                log_tail(&m.log, 40)
            );
        }
        BenchError::Against {
            server: self.flavor.to_string(),
            source: Box::new(error),
            logs,
        }
    }

    /// The combined RSS of the members.
    ///
    /// # Errors
    /// [`BenchError::Io`] if `/proc/<pid>/status` cannot be read.
    pub fn rss(&self) -> Result<Rss, BenchError> {
        Ok(rss_sum(&self.pids())?.unwrap_or_default())
    }
}

fn check_installed(flavor: Flavor, settings: &Settings) -> Result<(), BenchError> {
    match flavor {
        Flavor::Rookery if !settings.rookery_bin.is_file() => {
            Err(BenchError::InvalidOption(format!(
                "the rookery binary {} does not exist (--rookery-bin)",
                settings.rookery_bin.display()
            )))
        }
        Flavor::Zookeeper => {
            let jar = settings
                .zookeeper_classpath
                .split(':')
                .next()
                .unwrap_or_default();
            if !Path::new(jar).is_file() {
                return Err(BenchError::InvalidOption(format!(
                    "Apache ZooKeeper is not installed ({jar} is missing): \
                     `apt-get install zookeeper`, or give --zookeeper-classpath"
                )));
            }
            Ok(())
        }
        Flavor::Rookery => Ok(()),
    }
}

/// A member's addresses.
#[derive(Debug, Clone, Copy)]
struct MemberAddrs {
    ip: Ipv4Addr,
    client: u16,
    quorum: u16,
    election: u16,
}

/// `n` distinct free ports on `ip` (all bound at once, then released).
fn free_ports(ip: Ipv4Addr, n: usize) -> Result<Vec<u16>, BenchError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::io("finding free ports", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::io("finding free ports", e))
}

/// Writes member `id`'s zoo.cfg (and myid for an ensemble) and spawns it.
fn spawn_member(
    flavor: Flavor,
    id: usize,
    addrs: &[MemberAddrs],
    settings: &Settings,
    root: &Path,
) -> Result<Member, BenchError> {
    let size = addrs.len();
    let me = addrs[id - 1];
    let io = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |e| BenchError::io(what, e)
    };
    let dir = root.join(format!("member{id}"));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io("creating", &data))?;
    let mut cfg = settings.shared_config();
    for (k, v) in &mut cfg {
        if k == "clientPortAddress" {
            *v = me.ip.to_string();
        }
    }
    cfg.push(("dataDir".into(), data.display().to_string()));
    cfg.push(("clientPort".into(), me.client.to_string()));
    if flavor == Flavor::Zookeeper {
        cfg.extend(Settings::zookeeper_only_config());
    }
    if size > 1 {
        cfg.extend(Settings::ensemble_config());
        for (n, a) in addrs.iter().enumerate() {
            cfg.push((
                format!("server.{}", n + 1),
                format!("{}:{}:{}", a.ip, a.quorum, a.election),
            ));
        }
        let myid = data.join("myid");
        std::fs::write(&myid, format!("{id}\n")).map_err(io("writing", &myid))?;
    }
    let cfg_path = dir.join("zoo.cfg");
    let text: String = cfg.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&cfg_path, text).map_err(io("writing", &cfg_path))?;
    let log = dir.join("server.log");
    let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
    let err = out.try_clone().map_err(io("opening", &log))?;
    let mut cmd = match flavor {
        Flavor::Rookery => {
            let mut c = Command::new(&settings.rookery_bin);
            c.arg("server").arg("--config").arg(&cfg_path);
            c
        }
        Flavor::Zookeeper => {
            let mut c = Command::new(&settings.java);
            c.args(settings.zookeeper_jvm_args()).arg(if size == 1 {
                "org.apache.zookeeper.server.ZooKeeperServerMain"
            } else {
                "org.apache.zookeeper.server.quorum.QuorumPeerMain"
            });
            c.arg(&cfg_path);
            c
        }
    };
    let child = cmd
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| BenchError::ServerStart {
            server: flavor.to_string(),
            reason: format!("cannot run {:?}: {e}", cmd.get_program()),
            log: log.display().to_string(),
            log_tail: String::new(),
        })?;
    Ok(Member {
        child,
        id,
        addr: SocketAddr::from((me.ip, me.client)),
        log,
        killed: false,
    })
}

fn start_error(flavor: Flavor, member: &Member, reason: &str) -> BenchError {
    BenchError::ServerStart {
        server: flavor.to_string(),
        reason: reason.to_owned(),
        log: member.log.display().to_string(),
        log_tail: log_tail(&member.log, 30),
    }
}

/// The last `n` lines of a file (empty if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends a four-letter word and returns the whole answer ("" if there is none within 2 s).
pub async fn four_letter(addr: SocketAddr, word: &str) -> String {
    let bound = Duration::from_secs(2);
    let talk = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(word.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        // Bounded: the server closes the connection after answering, and so does the timeout.
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(bound, talk)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `Mode:` of `srvr` at `addr` (`None` when it does not answer or does not serve).
pub async fn mode_of(addr: SocketAddr) -> Option<String> {
    four_letter(addr, "srvr")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(|m| m.trim().to_owned())
}

/// Whether a session can be opened (and is closed again) on `addr`.
async fn session_opens(addr: SocketAddr) -> bool {
    match RawSession::open(
        &addr.to_string(),
        Duration::from_secs(4),
        Duration::from_secs(2),
    )
    .await
    {
        Ok(s) => s.close().await.is_ok(),
        Err(_) => false,
    }
}

/// A process's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rss {
    /// `VmRSS`: resident now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set, in KiB.
    pub hwm_kib: u64,
}

/// Parses the `VmRSS` and `VmHWM` lines of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Rss> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Rss {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// The memory of process `pid`.
///
/// # Errors
/// [`BenchError::Io`] if the status file cannot be read (no such process, not Linux), or
/// [`BenchError::Protocol`] if it has no `VmRSS` line (a zombie).
pub fn rss(pid: u32) -> Result<Rss, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| BenchError::io(format!("reading {path}"), e))?;
    parse_status(&text)
        .ok_or_else(|| BenchError::Protocol(format!("{path} has no VmRSS/VmHWM lines")))
}

/// The summed memory of `pids`, or `None` when there are none.
///
/// # Errors
/// As [`rss`].
pub fn rss_sum(pids: &[u32]) -> Result<Option<Rss>, BenchError> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = Rss::default();
    for &pid in pids {
        let r = rss(pid)?;
        total.rss_kib += r.rss_kib;
        total.hwm_kib += r.hwm_kib;
    }
    Ok(Some(total))
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Parses the CPU time (user + system, every thread) of a `/proc/<pid>/stat` line, in ms.
pub fn parse_stat_cpu_ms(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, then utime (14) and stime (15).
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1000.0 / USER_HZ)
}

/// The CPU time `pid` has used so far (`self` for this process), in ms.
///
/// # Errors
/// [`BenchError::Io`] if `/proc/<pid>/stat` cannot be read, [`BenchError::Protocol`] if it
/// cannot be parsed.
pub fn cpu_ms(pid: &str) -> Result<f64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text =
        std::fs::read_to_string(&path).map_err(|e| BenchError::io(format!("reading {path}"), e))?;
    parse_stat_cpu_ms(&text).ok_or_else(|| BenchError::Protocol(format!("cannot parse {path}")))
}

/// The summed CPU time of `pids` in ms, or `None` when there are none.
///
/// # Errors
/// As [`cpu_ms`].
pub fn cpu_ms_sum(pids: &[u32]) -> Result<Option<f64>, BenchError> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for pid in pids {
        total += cpu_ms(&pid.to_string())?;
    }
    Ok(Some(total))
}

/// The file system type `path` is on, from `/proc/self/mountinfo` (`None` if unknown). The
/// comparison warns when the data directories are on tmpfs, where fsync costs nothing.
pub fn filesystem_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_fs_type(&info, &path)
}

/// The type of the mount in `mountinfo` with the longest mount point containing `path`.
pub fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        let Some(fstype) = right.split(' ').next() else {
            continue;
        };
        if path.starts_with(&point) && best.as_ref().is_none_or(|(len, _)| point.len() > *len) {
            best = Some((point.len(), fstype.to_owned()));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let text = "Name:\tjava\nVmPeak:\t 100 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Rss {
                rss_kib: 1024,
                hwm_kib: 2048
            })
        );
        assert_eq!(parse_status("Name:\tzombie\n"), None);
        let me = rss(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
        assert_eq!(rss_sum(&[]).unwrap(), None);
    }

    #[test]
    fn stat_cpu_times_parse() {
        let line = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_stat_cpu_ms(line), Some(3000.0));
        assert_eq!(parse_stat_cpu_ms("garbage"), None);
        assert!(cpu_ms("self").unwrap() >= 0.0);
        assert_eq!(cpu_ms_sum(&[]).unwrap(), None);
    }

    #[test]
    fn longest_mount_point_wins() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    23 22 0:5 / /tmp rw - tmpfs tmpfs rw\n\
                    24 22 0:6 / /tmpdata rw - xfs /dev/sdb rw\n\
                    25 22 0:7 / /my\\040disk rw - btrfs /dev/sdc rw\n";
        let t = |p: &str| mount_fs_type(info, Path::new(p));
        assert_eq!(t("/tmp/x").as_deref(), Some("tmpfs"));
        assert_eq!(t("/tmpdata/x").as_deref(), Some("xfs"));
        assert_eq!(t("/home").as_deref(), Some("ext4"));
        assert_eq!(t("/my disk/a").as_deref(), Some("btrfs"));
    }

    #[test]
    fn flavors_parse() {
        assert_eq!("rookery".parse::<Flavor>().unwrap(), Flavor::Rookery);
        assert_eq!("zookeeper".parse::<Flavor>().unwrap(), Flavor::Zookeeper);
        assert!("etcd".parse::<Flavor>().is_err());
    }
}
