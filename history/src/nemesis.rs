//! Faults on a schedule drawn from a seeded RNG: the enabled kinds in a shuffled round, again
//! and again, with a random quiet time between two faults. One fault at a time: each is
//! healed (the member restarted, resumed or reconnected) and the ensemble given time to elect
//! a leader before the next.
//!
//! Network faults act on the testkit's proxies, which carry every connection one member opens
//! to another's quorum or election port: a full cut closes them ([`Fault::PartitionLeader`],
//! [`Fault::PartitionRandom`], and between two members only, [`Fault::PartialPartition`]); a
//! one-way cut swallows one direction and forwards the other ([`Fault::OneWayLeader`],
//! [`Fault::OneWayRandom`]); a slow link holds every chunk for a while
//! ([`Fault::SlowLeader`]); a stalled member's links stop reading what is sent to it, so the
//! senders' TCP windows close and their writes block, and everything arrives after the heal
//! ([`Fault::StallLeader`], [`Fault::StallRandom`]); a blackhole swallows both directions and
//! every close, never resetting a connection ([`Fault::BlackholeLeader`]); a minority keeps
//! only its own links ([`Fault::PartitionMinority`]); on five members or more, each keeps only
//! its ring neighbours ([`Fault::MajoritiesRing`]); the leader's links damage, repeat and
//! delay bytes ([`Fault::ChaosLeader`]). Client connections are never touched here.
//!
//! Clock skew (C1) is not a fault of the schedule but a condition of the whole run
//! ([`ClockSkew`]): chosen members run under libfaketime from their first start, restarts
//! included.
//!
//! Every wait is bounded; the four-letter-word probes (blocking socket I/O with their own
//! timeouts) run on tokio's blocking pool.

use std::fmt;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rookery_testkit::ensemble::Ensemble;
use serde::{Deserialize, Serialize};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// `kill -9` the leader, restart it after a while.
    KillLeader,
    /// `kill -9` a random member, restart it after a while.
    KillRandom,
    /// `kill -9` every member, restart them all after a while.
    KillAll,
    /// SIGSTOP the leader for longer than the session timeout (and syncLimit), then SIGCONT.
    PauseLeader,
    /// Cut the leader off from the other members (both ports, both ways) through the proxies.
    PartitionLeader,
    /// Cut a random member off from the others.
    PartitionRandom,
    /// One-way (N2): nothing the leader sends reaches the others (both ports, on the
    /// connections it opened and on those they opened to it); it still hears them.
    OneWayLeader,
    /// One-way (N2): a random member hears nothing from the others; what it sends still
    /// arrives.
    OneWayRandom,
    /// Partial (N2, a bridge): the leader and one follower cannot reach each other; both
    /// still reach every other member.
    PartialPartition,
    /// A slow peer (N3): every link to and from the leader holds each chunk for a delay drawn
    /// from `slow_ms` (latency, and a throughput cap of one chunk per delay).
    SlowLeader,
    /// A peer that stops reading (N3): nothing sent to the leader is read any more (every
    /// link into it, both ports), so the members sending to it see its TCP window close and
    /// their writes block once their socket buffers fill; nothing is dropped or closed, and it
    /// all arrives, in order, after the heal. The leader still sends.
    StallLeader,
    /// As [`Fault::StallLeader`], for a random member: when it is a follower, the leader's
    /// writes to it block.
    StallRandom,
    /// A blackhole without RST (N3): every link to and from the leader swallows everything
    /// either way, closes and resets included; no connection is closed until the heal (which
    /// closes those that lost bytes). Only timeouts tell anyone.
    BlackholeLeader,
    /// A minority cut off (N1 `minority-third`): a random ⌊(n−1)/2⌋ members (one of three, two
    /// of five) lose every link to the others but keep those among themselves; the majority
    /// goes on (electing if the leader was in the minority), the minority refuses writes.
    PartitionMinority,
    /// A majorities ring (N1, five members or more): the members stand on a ring and each
    /// keeps its links only to its nearest neighbours, enough to see a majority (itself and
    /// two of five, four of seven), but no two members see the same majority. Skipped on
    /// fewer than five members, where every majority overlaps every other.
    MajoritiesRing,
    /// Packet chaos (N4) on every link to and from the leader: a flipped byte in every 40th
    /// chunk, every 60th chunk written twice, 0 to 20 ms of varying delay. Damaged frames must
    /// be refused (the peer protocol's CRC32C) and their connections closed; nothing damaged
    /// may reach a replica.
    ChaosLeader,
}

impl Fault {
    pub const ALL: [Fault; 16] = [
        Fault::KillLeader,
        Fault::KillRandom,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::PartitionLeader,
        Fault::PartitionRandom,
        Fault::OneWayLeader,
        Fault::OneWayRandom,
        Fault::PartialPartition,
        Fault::SlowLeader,
        Fault::StallLeader,
        Fault::StallRandom,
        Fault::BlackholeLeader,
        Fault::PartitionMinority,
        Fault::MajoritiesRing,
        Fault::ChaosLeader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillRandom => "kill-random",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionRandom => "partition-random",
            Fault::OneWayLeader => "one-way-leader",
            Fault::OneWayRandom => "one-way-random",
            Fault::PartialPartition => "partial-partition",
            Fault::SlowLeader => "slow-leader",
            Fault::StallLeader => "stall-leader",
            Fault::StallRandom => "stall-random",
            Fault::BlackholeLeader => "blackhole-leader",
            Fault::PartitionMinority => "partition-minority",
            Fault::MajoritiesRing => "majorities-ring",
            Fault::ChaosLeader => "chaos-leader",
        }
    }

    /// Parses a comma-separated list of names; `all` means every kind, `none` or an empty
    /// string none.
    pub fn parse_list(s: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => out.extend(Fault::ALL),
                "none" => {}
                p => out.push(p.parse()?),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {s:?}; known: {}", names.join(", "))
            })
    }
}

/// Timings of the faults.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub faults: Vec<Fault>,
    pub seed: u64,
    /// Quiet time between two faults, drawn from this range.
    pub quiet_ms: (u64, u64),
    /// How long a killed member stays down.
    pub down_ms: (u64, u64),
    /// How long a partition lasts.
    pub partition_ms: (u64, u64),
    /// How long the leader stays stopped: longer than the session timeout.
    pub pause_ms: u64,
    /// The delay a slow link adds to each chunk, drawn from this range.
    pub slow_ms: (u64, u64),
    /// How long the ensemble may take to serve again after a fault is healed.
    pub recover_ms: u64,
}

/// Clock skew (C1): members run under libfaketime (`rookery_testkit::faketime`) for the whole
/// run, each with a clock of its own: an offset of the wall clock and a rate of every clock,
/// the monotonic one included, so that its timers (ticks, syncLimit, session expiry, election
/// timeouts) run fast or slow against the others'. ZAB and the read index do not rely on clocks
/// for safety, so the checkers must stay clean. The rate counts from each start of the
/// process: a restarted member's clocks begin again from the offset (a fast member's go back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockSkew {
    /// (member index, `FAKETIME` value such as `+1h x1.5`).
    pub members: Vec<(usize, String)>,
}

impl ClockSkew {
    /// What `default` means: member 1 an hour ahead and half again as fast, member 2 half an
    /// hour behind at 0.7 times the speed, the others true.
    pub const DEFAULT: &'static str = "1=+1h x1.5,2=-30m x0.7";

    /// `none` (or nothing): no skew; `default`: [`ClockSkew::DEFAULT`]; otherwise a
    /// comma-separated list of `<member>=<FAKETIME>`, members numbered from 1 (their myid),
    /// each value an offset and an optional rate (`+1h x1.5`, `-30m x0.7`, `+0 x2`).
    pub fn parse(s: &str) -> Result<ClockSkew, String> {
        let s = s.trim();
        match s {
            "" | "none" | "off" => return Ok(ClockSkew::default()),
            "default" | "on" => return ClockSkew::parse(ClockSkew::DEFAULT),
            _ => {}
        }
        let mut members = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (member, spec) = part
                .split_once('=')
                .ok_or_else(|| format!("clock skew {part:?}: expected <member>=<FAKETIME>"))?;
            let member: usize = member
                .trim()
                .parse()
                .ok()
                .filter(|&m| m >= 1)
                .ok_or_else(|| format!("clock skew {part:?}: members are numbered from 1"))?;
            let spec = spec.trim();
            rookery_testkit::faketime::check_spec(spec)?;
            if members.iter().any(|(i, _)| *i == member - 1) {
                return Err(format!("clock skew: member {member} given twice"));
            }
            members.push((member - 1, spec.to_string()));
        }
        members.sort();
        Ok(ClockSkew { members })
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `FAKETIME` value of member `i` (an index), if it is skewed.
    pub fn spec(&self, i: usize) -> Option<&str> {
        self.members
            .iter()
            .find(|(m, _)| *m == i)
            .map(|(_, s)| s.as_str())
    }
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.members.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|(i, s)| format!("member {} {s}", i + 1))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// One fault as injected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultEvent {
    pub fault: Fault,
    /// The members it hit (indices).
    pub members: Vec<usize>,
    /// On the run's clock.
    pub start_ns: u64,
    pub healed_ns: u64,
    /// How long after the heal every member served again with one leader; `None` if not
    /// within `recover_ms`.
    pub recovered_ms: Option<u64>,
    /// Why the fault was not injected (no leader to hit), if it was not.
    pub skipped: Option<String>,
    /// The delay of a slow link.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// The fault injector. It remembers a stopped member so that [`Nemesis::heal_all`] resumes it
/// whatever happened.
pub struct Nemesis {
    cfg: NemesisConfig,
    rng: StdRng,
    round: Vec<Fault>,
    paused: Option<usize>,
    start: Instant,
}

impl Nemesis {
    /// `start` is the run's clock origin (the recorder's).
    pub fn new(cfg: NemesisConfig, start: Instant) -> Nemesis {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Nemesis {
            cfg,
            rng,
            round: Vec::new(),
            paused: None,
            start,
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn draw(&mut self, range: (u64, u64)) -> Duration {
        Duration::from_millis(self.rng.gen_range(range.0..=range.1.max(range.0)))
    }

    fn next_fault(&mut self) -> Option<Fault> {
        if self.round.is_empty() {
            self.round = self.cfg.faults.clone();
            self.round.shuffle(&mut self.rng);
        }
        self.round.pop()
    }

    /// Injects faults until `until` (no fault starts after it; the last one is healed and
    /// waited for, so this returns at most about one fault's length plus `recover_ms` later).
    pub async fn run(&mut self, ens: &mut Ensemble, until: Instant) -> Vec<FaultEvent> {
        let mut events = Vec::new();
        if self.cfg.faults.is_empty() {
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            return events;
        }
        loop {
            let quiet = self.draw(self.cfg.quiet_ms);
            tokio::time::sleep(quiet.min(until.saturating_duration_since(Instant::now()))).await;
            if Instant::now() >= until {
                return events;
            }
            let Some(fault) = self.next_fault() else {
                return events;
            };
            events.push(self.inject(ens, fault).await);
        }
    }

    async fn inject(&mut self, ens: &mut Ensemble, fault: Fault) -> FaultEvent {
        let start_ns = self.now_ns();
        let mut event = FaultEvent {
            fault,
            members: Vec::new(),
            start_ns,
            healed_ns: start_ns,
            recovered_ms: None,
            skipped: None,
            delay_ms: None,
        };
        if fault == Fault::PartialPartition && ens.members.len() < 3 {
            event.skipped = Some("a partial partition needs three members".into());
            return event;
        }
        if fault == Fault::MajoritiesRing && ens.members.len() < 5 {
            event.skipped = Some("a majorities ring needs five members".into());
            return event;
        }
        let target = match fault {
            Fault::KillLeader
            | Fault::PauseLeader
            | Fault::PartitionLeader
            | Fault::OneWayLeader
            | Fault::PartialPartition
            | Fault::SlowLeader
            | Fault::StallLeader
            | Fault::BlackholeLeader
            | Fault::ChaosLeader => match leader(ens, Duration::from_secs(5)).await {
                Some(l) => Some(l),
                None => {
                    event.skipped = Some("no leader".into());
                    return event;
                }
            },
            Fault::KillRandom
            | Fault::PartitionRandom
            | Fault::OneWayRandom
            | Fault::StallRandom => match ens.running().choose(&mut self.rng).copied() {
                Some(i) => Some(i),
                None => {
                    event.skipped = Some("no running member".into());
                    return event;
                }
            },
            Fault::KillAll | Fault::PartitionMinority | Fault::MajoritiesRing => None,
        };
        match fault {
            Fault::KillLeader | Fault::KillRandom => {
                let i = target.expect("a member");
                event.members = vec![i];
                ens.kill(i);
                let down = self.draw(self.cfg.down_ms);
                tokio::time::sleep(down).await;
                ens.restart(i);
            }
            Fault::KillAll => {
                event.members = ens.running();
                for &i in &event.members {
                    ens.kill(i);
                }
                let down = self.draw(self.cfg.down_ms);
                tokio::time::sleep(down).await;
                for &i in &event.members {
                    ens.restart(i);
                }
            }
            Fault::PauseLeader => {
                let i = target.expect("a member");
                event.members = vec![i];
                if let Some(pid) = ens.members[i].child.as_ref().map(|c| c.id()) {
                    self.paused = Some(i);
                    signal(pid, "STOP");
                    tokio::time::sleep(Duration::from_millis(self.cfg.pause_ms)).await;
                    signal(pid, "CONT");
                    self.paused = None;
                }
            }
            Fault::PartitionLeader | Fault::PartitionRandom => {
                let i = target.expect("a member");
                event.members = vec![i];
                ens.isolate(i);
                self.hold_then_heal(ens).await;
            }
            Fault::OneWayLeader | Fault::OneWayRandom => {
                let i = target.expect("a member");
                event.members = vec![i];
                let others = (0..ens.members.len()).filter(|&j| j != i);
                for j in others {
                    // Bytes from the muted side: requests on the links it opened, replies on
                    // the links the others opened to it.
                    let (from, to) = if fault == Fault::OneWayLeader {
                        (i, j)
                    } else {
                        (j, i)
                    };
                    for p in ens.links(from, to) {
                        p.hold_requests();
                    }
                    for p in ens.links(to, from) {
                        p.hold_replies();
                    }
                }
                self.hold_then_heal(ens).await;
            }
            Fault::PartialPartition => {
                let i = target.expect("a member");
                let others: Vec<usize> = (0..ens.members.len()).filter(|&j| j != i).collect();
                let Some(&j) = others.choose(&mut self.rng) else {
                    event.skipped = Some("no other member".into());
                    return event;
                };
                event.members = vec![i, j];
                for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
                    p.refuse();
                }
                self.hold_then_heal(ens).await;
            }
            Fault::SlowLeader => {
                let i = target.expect("a member");
                event.members = vec![i];
                let delay = self.draw(self.cfg.slow_ms);
                event.delay_ms = Some(delay.as_millis() as u64);
                for j in (0..ens.members.len()).filter(|&j| j != i) {
                    for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
                        p.set_delay(delay);
                    }
                }
                self.hold_then_heal(ens).await;
            }
            Fault::StallLeader | Fault::StallRandom => {
                let i = target.expect("a member");
                event.members = vec![i];
                stall(ens, i);
                self.hold_then_heal(ens).await;
            }
            Fault::BlackholeLeader => {
                let i = target.expect("a member");
                event.members = vec![i];
                blackhole(ens, i);
                self.hold_then_heal(ens).await;
            }
            Fault::ChaosLeader => {
                let i = target.expect("a member");
                event.members = vec![i];
                chaos(ens, i, 40, 60, Duration::from_millis(20));
                self.hold_then_heal(ens).await;
            }
            Fault::PartitionMinority => {
                let mut order: Vec<usize> = (0..ens.members.len()).collect();
                order.shuffle(&mut self.rng);
                let minority = minority_size(ens.members.len());
                event.members = order[..minority].to_vec();
                event.members.sort_unstable();
                cut_off(ens, &event.members);
                self.hold_then_heal(ens).await;
            }
            Fault::MajoritiesRing => {
                let mut ring: Vec<usize> = (0..ens.members.len()).collect();
                ring.shuffle(&mut self.rng);
                // The ring's order, first to last.
                event.members = ring.clone();
                majorities_ring(ens, &ring);
                self.hold_then_heal(ens).await;
            }
        }
        event.healed_ns = self.now_ns();
        event.recovered_ms = wait_serving(ens, Duration::from_millis(self.cfg.recover_ms))
            .await
            .map(|d| d.as_millis() as u64);
        event
    }

    /// Keeps the network fault in place for a time drawn from `partition_ms`, then heals every
    /// link.
    async fn hold_then_heal(&mut self, ens: &Ensemble) {
        let held = self.draw(self.cfg.partition_ms);
        tokio::time::sleep(held).await;
        ens.heal();
    }

    /// Ends every fault: resumes a stopped member, restarts the dead ones, heals the links.
    pub fn heal_all(&mut self, ens: &mut Ensemble) {
        if let Some(i) = self.paused.take() {
            if let Some(pid) = ens.members[i].child.as_ref().map(|c| c.id()) {
                signal(pid, "CONT");
            }
        }
        for i in 0..ens.members.len() {
            if ens.members[i].child.is_none() {
                ens.restart(i);
            }
        }
        ens.heal();
    }
}

/// Stops the proxies reading what the other members send to member `i` (until
/// [`Ensemble::heal`]): requests on the links they opened to it, replies on the links it opened.
/// What it sends still arrives.
pub fn stall(ens: &Ensemble, i: usize) {
    for j in (0..ens.members.len()).filter(|&j| j != i) {
        for p in ens.links(j, i) {
            p.stall_requests();
        }
        for p in ens.links(i, j) {
            p.stall_replies();
        }
    }
}

/// Blackholes every link between member `i` and the others (until [`Ensemble::heal`]).
pub fn blackhole(ens: &Ensemble, i: usize) {
    for j in (0..ens.members.len()).filter(|&j| j != i) {
        for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
            p.blackhole();
        }
    }
}

/// Packet chaos on every link between member `i` and the others (until [`Ensemble::heal`]):
/// see [`rookery_testkit::proxy::Proxy::chaos`].
pub fn chaos(ens: &Ensemble, i: usize, corrupt_every: u64, duplicate_every: u64, jitter: Duration) {
    for j in (0..ens.members.len()).filter(|&j| j != i) {
        for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
            p.chaos(corrupt_every, duplicate_every, jitter);
        }
    }
}

/// The size of the minority [`Fault::PartitionMinority`] cuts off from `n` members: the
/// largest that leaves a majority, at least one.
pub fn minority_size(n: usize) -> usize {
    ((n.saturating_sub(1)) / 2).max(1)
}

/// Cuts every link between a member of `side` and a member outside it, both directions, both
/// ports (until [`Ensemble::heal`]).
pub fn cut_off(ens: &Ensemble, side: &[usize]) {
    for &i in side {
        for j in (0..ens.members.len()).filter(|j| !side.contains(j)) {
            for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
                p.refuse();
            }
        }
    }
}

/// The pairs of positions on a ring of `n` members whose link a majorities ring cuts: those
/// further apart than `k` steps, the fewest neighbours on each side that with the member
/// itself make a majority.
pub fn ring_cuts(n: usize) -> Vec<(usize, usize)> {
    let k = (n / 2).div_ceil(2);
    let mut cuts = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let d = (b - a).min(n - (b - a));
            if d > k {
                cuts.push((a, b));
            }
        }
    }
    cuts
}

/// Leaves each member of `ring` (members in ring order) linked only to its nearest neighbours
/// (until [`Ensemble::heal`]); see [`Fault::MajoritiesRing`].
pub fn majorities_ring(ens: &Ensemble, ring: &[usize]) {
    for (a, b) in ring_cuts(ring.len()) {
        let (i, j) = (ring[a], ring[b]);
        for p in ens.links(i, j).into_iter().chain(ens.links(j, i)) {
            p.refuse();
        }
    }
}

/// Sends `sig` (a name such as `STOP`) to `pid` with kill(1): the workspace forbids the
/// `unsafe` a direct libc call needs.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A member's `srvr` answer, off the async threads (the probe blocks up to a few seconds on a
/// stopped member).
async fn srvr(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || rookery_testkit::four_letter(addr, "srvr"))
        .await
        .unwrap_or_default()
}

fn field<'a>(srvr: &'a str, name: &str) -> Option<&'a str> {
    srvr.lines().find_map(|l| l.strip_prefix(name))
}

/// Whether every running member serves and exactly one leads: the leader's index.
pub async fn serving(ens: &Ensemble) -> Option<usize> {
    let running = ens.running();
    let probes = running.iter().map(|&i| srvr(ens.members[i].client));
    let answers = futures::future::join_all(probes).await;
    let modes: Vec<Option<&str>> = answers.iter().map(|a| field(a, "Mode: ")).collect();
    if modes.iter().any(Option::is_none) {
        return None;
    }
    let leaders: Vec<usize> = running
        .iter()
        .zip(&modes)
        .filter(|(_, m)| **m == Some("leader"))
        .map(|(i, _)| *i)
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// Waits until [`serving`], at most `max`: how long it took.
pub async fn wait_serving(ens: &Ensemble, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if serving(ens).await.is_some() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= max {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader, waiting at most `max` for one.
pub async fn leader(ens: &Ensemble, max: Duration) -> Option<usize> {
    let deadline = Instant::now() + max;
    loop {
        if let Some(l) = serving(ens).await {
            return Some(l);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every running member reports the same last zxid, at most `max`.
pub async fn wait_converged(ens: &Ensemble, max: Duration) -> Option<i64> {
    let deadline = Instant::now() + max;
    loop {
        let probes = ens
            .running()
            .into_iter()
            .map(|i| srvr(ens.members[i].client));
        let zxids: Vec<Option<i64>> = futures::future::join_all(probes)
            .await
            .iter()
            .map(|a| field(a, "Zxid: 0x").and_then(|z| i64::from_str_radix(z, 16).ok()))
            .collect();
        if let Some(Some(first)) = zxids.first() {
            if zxids.iter().all(|z| *z == Some(*first)) {
                return Some(*first);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse() {
        assert_eq!(Fault::parse_list("all").unwrap().len(), Fault::ALL.len());
        assert_eq!(Fault::parse_list("none").unwrap(), vec![]);
        assert_eq!(
            Fault::parse_list("pause-leader, kill-leader,kill-leader").unwrap(),
            vec![Fault::KillLeader, Fault::PauseLeader]
        );
        assert!(Fault::parse_list("reboot").is_err());
        assert_eq!(
            Fault::parse_list("stall-leader,blackhole-leader,stall-random").unwrap(),
            vec![
                Fault::StallLeader,
                Fault::StallRandom,
                Fault::BlackholeLeader
            ]
        );
    }

    #[test]
    fn a_minority_leaves_a_majority() {
        for (n, m) in [(1, 1), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3)] {
            assert_eq!(minority_size(n), m, "{n} members");
        }
    }

    #[test]
    fn a_majorities_ring_gives_each_member_its_own_majority() {
        for n in 5..=9 {
            let cuts = ring_cuts(n);
            let sees = |i: usize| -> Vec<usize> {
                (0..n)
                    .filter(|&j| j == i || !cuts.contains(&(i.min(j), i.max(j))))
                    .collect()
            };
            let majority = n / 2 + 1;
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..n {
                let s = sees(i);
                assert!(s.len() >= majority, "{n} members: {i} sees {s:?}");
                assert!(s.len() < n, "{n} members: {i} sees everyone");
                assert!(seen.insert(s.clone()), "{n} members: {s:?} twice");
            }
        }
        // Five members: each keeps its two neighbours, so five links of ten are cut.
        assert_eq!(ring_cuts(5).len(), 5);
    }

    #[test]
    fn every_fault_has_a_name_that_parses_back() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
        }
    }

    #[test]
    fn clock_skews_parse() {
        assert!(ClockSkew::parse("none").unwrap().is_empty());
        assert!(ClockSkew::parse("").unwrap().is_empty());
        let d = ClockSkew::parse("default").unwrap();
        assert_eq!(d.spec(0), Some("+1h x1.5"));
        assert_eq!(d.spec(1), Some("-30m x0.7"));
        assert_eq!(d.spec(2), None);
        assert_eq!(d.to_string(), "member 1 +1h x1.5, member 2 -30m x0.7");
        let c = ClockSkew::parse(" 3 = +0 x2 ").unwrap();
        assert_eq!(c.members, vec![(2, "+0 x2".to_string())]);
        for bad in ["0=+1h", "1=1h", "x=+1h", "1=+1h,1=-1h", "1"] {
            assert!(ClockSkew::parse(bad).is_err(), "{bad}");
        }
    }
}
