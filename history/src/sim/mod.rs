//! The whole-member simulator: one seed runs clients, request processors, ZAB and disks
//! together, on one thread, in simulated time.
//!
//! Each member is the server's real request processor ([`rookery_server::server::Core`]) with
//! its ZAB core, its log writer's code ([`rookery_server::storage::writer::InlineWriter`]) over
//! a crash-modelling in-memory disk ([`rookery_server::storage::MemBackend`]), a clock only the
//! simulator moves and background jobs (snapshots) the simulator runs. Peer messages go through
//! the wire codec and a simulated network (per-link FIFO like TCP, random latency, random loss
//! as a full peer queue loses them, cut links); client sessions speak ZooKeeper's protocol to
//! the cores' connection interface. Faults: crashes (one member, the leader, all) that lose
//! unsynced writes and tear unsynced sectors, a failed fsync, a full disk (ENOSPC until space
//! is freed: the member stops and cannot start again until then), an isolated member, a
//! one-way cut from the leader, a paused leader (SIGSTOP past the session timeout), a partial
//! partition. The sessions run the
//! real-process workload's operation mix ([`sessions`]): registers, sequential creates and
//! counts of them, watches,
//! a queue, a pair written by `multi`, ephemeral nodes, sessions closed, abandoned and resumed.
//! At the end every session is closed, every fault heals, the queue is drained, the ensemble
//! expires the abandoned sessions, the members converge, and the recorded history goes through
//! the same checkers as the real-process runs ([`crate::checker::check_all`]).
//!
//! Everything is decided by the seed: the same seed replays the same run, operation for
//! operation, so a failing seed is a reproduction.

mod client;
mod member;
mod sessions;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery_server::quorum::{Incoming, PeerMsg};
use rookery_server::server::{Event, Outbound};

use crate::history::{
    value_of, EphemeralNode, FinalState, History, MemberState, Op, RegisterState, TreeDigest,
    WatchEvent, GARBAGE_VALUE,
};
use crate::workload::Mix;
use client::{Client, Part, Role};
use member::{Member, Outbox};

/// The members' `tickTime`, in ms.
const TICK_TIME_MS: u64 = 500;

/// The most simulated time the final convergence may take, in ms.
const CONVERGE_MS: u64 = 60_000;

/// The parent of the sequential creates.
const SEQ_PARENT: &str = "/seq";
/// The queue (J6).
const QUEUE: &str = "/queue";
/// The pair written by `multi` (J4).
const PAIR: [&str; 2] = ["/p0", "/p1"];
/// The parent of the sessions' ephemeral nodes (K6, S1).
const EPHEMERAL_PARENT: &str = "/eph";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Ensemble members (3 to 7).
    pub members: usize,
    /// Concurrent workload sessions.
    pub clients: usize,
    /// Sessions of the ephemeral slot: each makes an ephemeral node, checks it for a short
    /// life, and is closed (then probed with two resumes) or abandoned to expire.
    pub ephemeral_clients: usize,
    /// A workload session closes itself after an operation with probability 1 in this (0:
    /// never), and a new session takes its place.
    pub end_session_every: u32,
    /// The weights of the workload's operations (the real-process workload's by default).
    pub mix: Mix,
    /// Registers (`/r0`, `/r1`, ...).
    pub registers: usize,
    /// Simulated time of the workload, in ms.
    pub duration_ms: u64,
    /// Inject faults.
    pub faults: bool,
    /// The members' `snapCount` (small, so snapshots are taken and sent).
    pub snap_count: u64,
    /// Include the disk-full fault (ENOSPC) in the schedule. Off, the schedule draws as it did
    /// before that fault existed, so seeds found then replay.
    pub disk_full: bool,
    /// A planted defect for testing the simulator itself: a crash loses the member's whole
    /// disk, synced data included, which breaks the storage promise; the checkers must notice.
    pub lose_disks: bool,
}

impl SimConfig {
    /// Defaults for `seed`: 3 members, 4 sessions and an ephemeral slot, 3 registers, 20 s
    /// with faults.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            members: 3,
            clients: 4,
            ephemeral_clients: 1,
            end_session_every: 400,
            mix: Mix::default(),
            registers: 3,
            duration_ms: 20_000,
            faults: true,
            snap_count: 200,
            disk_full: true,
            lose_disks: false,
        }
    }
}

/// Why a simulation could not finish: each is a defect (or a broken set-up).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("set-up: {0}")]
    Setup(String),
    /// Storage refused to recover what a crash left: crashes must only ever tear the tail.
    #[error("member {member} could not recover after a crash: {error}")]
    Recovery { member: u64, error: String },
    /// The ensemble did not settle after every fault healed.
    #[error("the members did not converge within {CONVERGE_MS} ms after the faults healed: {0}")]
    NoConvergence(String),
    /// A member sent something a client cannot read.
    #[error("member {member} sent a bad frame: {error}")]
    Protocol { member: u64, error: String },
}

/// A finished simulation.
#[derive(Debug)]
pub struct SimRun {
    pub history: History,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Events the simulator processed.
    pub steps: u64,
    /// Peer messages delivered, and lost to the simulated network.
    pub messages: u64,
    pub messages_lost: u64,
    /// Times a member stopped on a storage failure while its disk was full (ENOSPC).
    pub full_disk_stops: u64,
    /// Simulated time at the end, in ms.
    pub end_ms: u64,
}

/// Something due at a point of simulated time.
enum Ev {
    /// A peer message arrives.
    Peer {
        from: u64,
        to: u64,
        inc: u64,
        msg: Option<PeerMsg>,
    },
    /// A member's log writer finishes a batch.
    Flush { member: u64, inc: u64 },
    /// A member's background jobs run.
    Jobs { member: u64, inc: u64 },
    /// The request processor's timer.
    Tick { member: u64, inc: u64 },
    /// ZAB's timer.
    ZabTick { member: u64, inc: u64 },
    /// A client's request or handshake reaches a member.
    ToServer { member: u64, inc: u64, ev: Event },
    /// A member's frame (or the connection's end) reaches a client.
    ToClient {
        client: usize,
        conn_id: u64,
        out: Option<Outbound>,
    },
    /// A client decides what to do next.
    ClientStep { client: usize },
    /// The next fault.
    Fault,
    /// A fault ends.
    Heal(Heal),
}

enum Heal {
    Restart(u64),
    Link(u64, u64),
    Resume(u64),
    /// Space is freed on the member's disk.
    Space(u64),
}

struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    now_us: u64,
    clock: Arc<AtomicU64>,
    queue: BTreeMap<(u64, u64), Ev>,
    next_seq: u64,
    members: Vec<Member>,
    outbox: Outbox,
    /// The latest delivery time on each directed peer link (deliveries keep their order).
    link_last_us: BTreeMap<(u64, u64), u64>,
    /// Directed peer links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    /// Paused members, until when (µs).
    paused: BTreeMap<u64, u64>,
    /// Members whose disk is full (a disk-full fault not yet healed).
    full: BTreeSet<u64>,
    clients: Vec<Client>,
    next_process: u32,
    next_conn: u64,
    ops: Vec<Op>,
    watches: Vec<WatchEvent>,
    seq: u64,
    next_value: u64,
    faults: BTreeMap<&'static str, usize>,
    steps: u64,
    messages: u64,
    messages_lost: u64,
    full_disk_stops: u64,
    /// When the workload ends (µs).
    load_end_us: u64,
    /// The workload is over: no new operation starts, every session ends.
    winding_down: bool,
    error: Option<SimError>,
    /// `SIM_TRACE` is set: the run tells what happens on stderr (for reading a seed).
    tracing: bool,
    /// The modes of the members last traced.
    traced_modes: Vec<&'static str>,
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Result<SimRun, SimError> {
    let mut sim = Sim::new(cfg.clone())?;
    sim.setup()?;
    sim.run_until(sim.load_end_us)?;
    sim.wind_down()?;
    let final_state = sim.final_state();
    let registers = sim.registers();
    let ops = std::mem::take(&mut sim.ops);
    let mut history = History::new(registers, vec![SEQ_PARENT.into()], ops, Some(final_state));
    history.pairs = vec![PAIR.iter().map(|k| k.to_string()).collect()];
    history.queues = vec![QUEUE.into()];
    history.ephemeral_parents = vec![EPHEMERAL_PARENT.into()];
    let mut watches = std::mem::take(&mut sim.watches);
    watches.sort_by_key(|w| w.seq);
    history.watches = watches;
    Ok(SimRun {
        history,
        faults: sim.faults,
        steps: sim.steps,
        messages: sim.messages,
        messages_lost: sim.messages_lost,
        full_disk_stops: sim.full_disk_stops,
        end_ms: sim.now_us / 1000,
    })
}

impl Sim {
    fn new(cfg: SimConfig) -> Result<Sim, SimError> {
        assert!((1..=7).contains(&cfg.members), "1 to 7 members");
        let members = (1..=cfg.members as u64)
            .map(|id| Member::new(id, cfg.members, cfg.snap_count))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sim {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            now_us: 0,
            clock: Arc::new(AtomicU64::new(0)),
            queue: BTreeMap::new(),
            next_seq: 0,
            members,
            outbox: Arc::new(Mutex::new(Vec::new())),
            link_last_us: BTreeMap::new(),
            cut: BTreeSet::new(),
            paused: BTreeMap::new(),
            full: BTreeSet::new(),
            clients: Vec::new(),
            next_process: 0,
            next_conn: 1,
            ops: Vec::new(),
            watches: Vec::new(),
            seq: 0,
            next_value: 1,
            faults: BTreeMap::new(),
            steps: 0,
            messages: 0,
            messages_lost: 0,
            full_disk_stops: 0,
            load_end_us: 0,
            winding_down: false,
            error: None,
            tracing: std::env::var_os("SIM_TRACE").is_some(),
            traced_modes: Vec::new(),
        })
    }

    fn registers(&self) -> Vec<String> {
        (0..self.cfg.registers).map(|i| format!("/r{i}")).collect()
    }

    fn at(&mut self, at_us: u64, ev: Ev) {
        self.next_seq += 1;
        self.queue
            .insert((at_us.max(self.now_us), self.next_seq), ev);
    }

    fn after(&mut self, delay_us: u64, ev: Ev) {
        self.at(self.now_us + delay_us, ev);
    }

    fn member(&mut self, id: u64) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    fn up(&self, id: u64, inc: u64) -> bool {
        let m = &self.members[(id - 1) as usize];
        m.is_up() && m.incarnation == inc
    }

    fn leader(&self) -> Option<u64> {
        self.members.iter().find_map(|m| {
            let r = m.running.as_ref()?;
            (r.core.mode() == "leader").then_some(m.id)
        })
    }

    // === the event loop ===

    fn run_until(&mut self, end_us: u64) -> Result<(), SimError> {
        while let Some(entry) = self.queue.first_entry() {
            let (at_us, _) = *entry.key();
            if at_us > end_us {
                break;
            }
            let ev = entry.remove();
            self.now_us = at_us;
            self.clock.store(at_us, Ordering::SeqCst);
            self.steps += 1;
            self.step(ev);
            if let Some(e) = self.error.take() {
                return Err(e);
            }
        }
        self.now_us = end_us;
        self.clock.store(end_us, Ordering::SeqCst);
        Ok(())
    }

    /// The member an event is for, if it is paused: the event waits until it resumes.
    fn paused_until(&self, ev: &Ev) -> Option<u64> {
        let member = match ev {
            Ev::Peer { to, .. } => *to,
            Ev::Flush { member, .. }
            | Ev::Jobs { member, .. }
            | Ev::Tick { member, .. }
            | Ev::ZabTick { member, .. }
            | Ev::ToServer { member, .. } => *member,
            _ => return None,
        };
        self.paused.get(&member).copied()
    }

    /// Tells `what` on stderr with the simulated time, when tracing.
    fn trace(&self, what: impl FnOnce() -> String) {
        if self.tracing {
            eprintln!("{:>10.6} {}", self.now_us as f64 / 1e6, what());
        }
    }

    fn step(&mut self, ev: Ev) {
        if self.tracing {
            let modes: Vec<&'static str> = self
                .members
                .iter()
                .map(|m| m.running.as_ref().map_or("down", |r| r.core.mode()))
                .collect();
            if modes != self.traced_modes {
                self.trace(|| format!("members {modes:?}"));
                self.traced_modes = modes;
            }
        }
        if let Some(until) = self.paused_until(&ev) {
            // SIGSTOP: nothing runs; messages and timers wait in order.
            self.next_seq += 1;
            self.queue.insert((until, self.next_seq), ev);
            return;
        }
        match ev {
            Ev::Peer { from, to, inc, msg } => {
                self.on_member(to, inc, |r| r.core.on_peer(Incoming { from, msg }));
            }
            Ev::Flush { member, inc } => {
                self.on_member(member, inc, |r| {
                    r.flush_due = false;
                    r.flush();
                });
            }
            Ev::Jobs { member, inc } => {
                self.on_member(member, inc, |r| {
                    r.jobs_due = false;
                    r.run_jobs();
                });
            }
            Ev::Tick { member, inc } => {
                if self.on_member(member, inc, |r| r.core.tick()) {
                    self.after(TICK_TIME_MS * 500, Ev::Tick { member, inc });
                }
            }
            Ev::ZabTick { member, inc } => {
                if self.on_member(member, inc, |r| r.core.zab_tick()) {
                    let tick_us =
                        TICK_TIME_MS * 1000 / u64::from(rookery_server::ensemble::TICKS_PER_TICK);
                    self.after(tick_us, Ev::ZabTick { member, inc });
                }
            }
            Ev::ToServer { member, inc, ev } => {
                self.on_member(member, inc, |r| r.core.handle(ev));
            }
            Ev::ToClient {
                client,
                conn_id,
                out,
            } => self.deliver_to_client(client, conn_id, out),
            Ev::ClientStep { client } => self.client_step(client),
            Ev::Fault => self.fault(),
            Ev::Heal(h) => self.heal(h),
        }
    }

    /// Runs `f` on member `id`'s process if incarnation `inc` is still up (an event for an
    /// earlier incarnation is dropped), then settles what it did; says whether it ran.
    fn on_member(&mut self, id: u64, inc: u64, f: impl FnOnce(&mut member::Running)) -> bool {
        if !self.up(id, inc) {
            return false;
        }
        f(self.member(id).running.as_mut().expect("up"));
        self.settle(id);
        true
    }

    /// After a member's core ran: schedule its disk, its jobs, its messages and its frames.
    fn settle(&mut self, id: u64) {
        let inc = self.members[(id - 1) as usize].incarnation;
        let mut crashed = false;
        if let Some(r) = self.member(id).running.as_mut() {
            // The server stops when storage fails (and its supervisor restarts it).
            crashed = r.core.failed().is_some();
        }
        if crashed {
            if self.full.contains(&id) {
                self.full_disk_stops += 1;
            }
            self.crash(id);
            let delay = self.rng.gen_range(500_000..2_000_000);
            self.after(delay, Ev::Heal(Heal::Restart(id)));
            return;
        }
        let (flush, jobs) = {
            let r = self.member(id).running.as_mut().expect("up");
            let flush = !r.flush_due && r.writer.queued() > 0;
            let jobs = !r.jobs_due && r.jobs_waiting();
            r.flush_due |= flush;
            r.jobs_due |= jobs;
            (flush, jobs)
        };
        if flush {
            // An fsync: 0.1 to 3 ms.
            let d = self.rng.gen_range(100..3_000);
            self.after(d, Ev::Flush { member: id, inc });
        }
        if jobs {
            let d = self.rng.gen_range(1_000..50_000);
            self.after(d, Ev::Jobs { member: id, inc });
        }
        self.deliver_outbox();
        self.drain_conns(id);
    }

    fn deliver_outbox(&mut self) {
        let sent = std::mem::take(&mut *self.outbox.lock().expect("outbox"));
        for (from, to, msg) in sent {
            // Through the wire codec, as the transport sends it.
            let mut frame = Vec::new();
            msg.encode(&mut frame);
            let msg = match PeerMsg::decode(&frame[4..]) {
                Ok(m) => m,
                Err(e) => {
                    self.error = Some(SimError::Protocol {
                        member: from,
                        error: format!("a peer message does not decode: {e}"),
                    });
                    return;
                }
            };
            let lost = self.cfg.faults && self.rng.gen_bool(0.002);
            if lost || self.cut.contains(&(from, to)) || to == 0 || to > self.cfg.members as u64 {
                self.messages_lost += 1;
                continue;
            }
            let inc = self.members[(to - 1) as usize].incarnation;
            let at = self.link_time(from, to);
            self.messages += 1;
            self.at(
                at,
                Ev::Peer {
                    from,
                    to,
                    inc,
                    msg: Some(msg),
                },
            );
        }
    }

    /// When a message sent now on `from → to` arrives: 50 µs to 2 ms later, never before the
    /// link's previous message.
    fn link_time(&mut self, from: u64, to: u64) -> u64 {
        let lat = self.rng.gen_range(50..2_000);
        let last = self.link_last_us.entry((from, to)).or_insert(0);
        let at = (self.now_us + lat).max(*last + 1);
        *last = at;
        at
    }

    /// Moves what member `id` queued for its clients onto the clients' links.
    fn drain_conns(&mut self, id: u64) {
        for c in 0..self.clients.len() {
            let now = self.now_us;
            let lat = self.rng.gen_range(20..500);
            let Some(conn) = self.clients[c].conn.as_mut() else {
                continue;
            };
            if conn.member != id {
                continue;
            }
            let conn_id = conn.conn_id;
            let mut outs = Vec::new();
            while let Ok(out) = conn.rx.try_recv() {
                outs.push(Some(out));
            }
            if conn.kill.is_cancelled() {
                outs.push(None);
            }
            for out in outs {
                let at = (now + lat).max(conn.last_to_client_us + 1);
                conn.last_to_client_us = at;
                self.next_seq += 1;
                self.queue.insert(
                    (at, self.next_seq),
                    Ev::ToClient {
                        client: c,
                        conn_id,
                        out,
                    },
                );
            }
        }
    }

    // === members ===

    fn start(&mut self, id: u64) {
        let seed = self.rng.gen();
        let clock = self.clock.clone();
        let outbox = self.outbox.clone();
        if let Err(e) = self.member(id).start(seed, &clock, &outbox) {
            if self.full.contains(&id) {
                // Recovery needs room to write; its supervisor tries again later.
                self.trace(|| format!("member {id} cannot start on a full disk: {e}"));
                let d = self.rng.gen_range(300_000..1_000_000);
                self.after(d, Ev::Heal(Heal::Restart(id)));
            } else {
                self.error = Some(e);
            }
            return;
        }
        let inc = self.member(id).incarnation;
        let d = self.rng.gen_range(0..5_000);
        self.after(d, Ev::ZabTick { member: id, inc });
        let d = self.rng.gen_range(0..TICK_TIME_MS * 500);
        self.after(d, Ev::Tick { member: id, inc });
        self.settle(id);
    }

    fn crash(&mut self, id: u64) {
        let seed = self.rng.gen();
        self.member(id).crash(seed);
        if self.cfg.lose_disks {
            self.member(id).disk = rookery_server::storage::MemBackend::new();
        }
        self.paused.remove(&id);
        // The other members' connections from it end (a reset).
        for other in 1..=self.cfg.members as u64 {
            if other != id && self.members[(other - 1) as usize].is_up() {
                let inc = self.members[(other - 1) as usize].incarnation;
                let at = self.link_time(id, other);
                self.at(
                    at,
                    Ev::Peer {
                        from: id,
                        to: other,
                        inc,
                        msg: None,
                    },
                );
            }
        }
        // Its clients' connections end.
        for c in 0..self.clients.len() {
            if let Some(conn) = &self.clients[c].conn {
                if conn.member == id {
                    let (conn_id, at) = (conn.conn_id, conn.last_to_client_us + 1);
                    self.at(
                        at,
                        Ev::ToClient {
                            client: c,
                            conn_id,
                            out: None,
                        },
                    );
                }
            }
        }
    }

    // === faults ===

    fn fault(&mut self) {
        if self.winding_down {
            return;
        }
        let n = self.cfg.members as u64;
        let pick = self
            .rng
            .gen_range(0..if self.cfg.disk_full { 9 } else { 8 });
        let random = self.rng.gen_range(1..=n);
        let leader = self.leader().unwrap_or(random);
        let kind = match pick {
            0 | 1 => {
                let id = if pick == 0 { leader } else { random };
                if self.members[(id - 1) as usize].is_up() {
                    self.crash(id);
                    let d = self.rng.gen_range(300_000..3_000_000);
                    self.after(d, Ev::Heal(Heal::Restart(id)));
                }
                if pick == 0 {
                    "crash-leader"
                } else {
                    "crash-random"
                }
            }
            2 => {
                for id in 1..=n {
                    if self.members[(id - 1) as usize].is_up() {
                        self.crash(id);
                        let d = self.rng.gen_range(500_000..2_000_000);
                        self.after(d, Ev::Heal(Heal::Restart(id)));
                    }
                }
                "crash-all"
            }
            3 => {
                // The next fsync of a running member fails: the member stops, as the server
                // does. (A member that is down would fail its recovery instead, which is right
                // but ends the run.)
                if self.members[(random - 1) as usize].is_up() {
                    self.member(random).disk.fail_syncs();
                }
                "fsync-failure"
            }
            4 => {
                let d = self.rng.gen_range(1_000_000..4_000_000);
                for other in (1..=n).filter(|&o| o != random) {
                    self.cut.insert((random, other));
                    self.cut.insert((other, random));
                    self.after(d, Ev::Heal(Heal::Link(random, other)));
                    self.after(d, Ev::Heal(Heal::Link(other, random)));
                }
                "isolate-member"
            }
            5 => {
                let d = self.rng.gen_range(1_000_000..4_000_000);
                for other in (1..=n).filter(|&o| o != leader) {
                    self.cut.insert((leader, other));
                    self.after(d, Ev::Heal(Heal::Link(leader, other)));
                }
                "mute-leader"
            }
            6 => {
                if self.members[(leader - 1) as usize].is_up() {
                    // Past the session timeout and syncLimit.
                    let d = self.rng.gen_range(2_000_000..6_000_000);
                    self.paused.insert(leader, self.now_us + d);
                    self.after(d, Ev::Heal(Heal::Resume(leader)));
                }
                "pause-leader"
            }
            8 => {
                // The disk of a member fills up, with room for a few more writes at most: its
                // writer fails with ENOSPC and the member stops, as on a failed fsync, and
                // fails to start again until space is freed.
                let disk = self.member(random).disk.clone();
                let slack = self.rng.gen_range(0..64 * 1024);
                disk.set_capacity(disk.used_bytes() + slack);
                self.full.insert(random);
                let d = self.rng.gen_range(1_000_000..4_000_000);
                self.after(d, Ev::Heal(Heal::Space(random)));
                "disk-full"
            }
            _ => {
                let d = self.rng.gen_range(1_000_000..3_000_000);
                let (a, b) = (leader, random);
                if a != b {
                    self.cut.insert((a, b));
                    self.cut.insert((b, a));
                    self.after(d, Ev::Heal(Heal::Link(a, b)));
                    self.after(d, Ev::Heal(Heal::Link(b, a)));
                }
                "partial-partition"
            }
        };
        *self.faults.entry(kind).or_default() += 1;
        self.trace(|| format!("fault {kind} (leader {leader}, random {random})"));
        let d = self.rng.gen_range(1_500_000..4_000_000);
        self.after(d, Ev::Fault);
    }

    fn heal(&mut self, h: Heal) {
        match h {
            Heal::Restart(id) => {
                if !self.members[(id - 1) as usize].is_up() {
                    self.start(id);
                }
            }
            Heal::Link(a, b) => {
                self.cut.remove(&(a, b));
            }
            Heal::Resume(id) => {
                self.paused.remove(&id);
            }
            Heal::Space(id) => {
                self.member(id).disk.clear_capacity();
                self.full.remove(&id);
            }
        }
    }

    // === set-up, wind-down, final state ===

    fn setup(&mut self) -> Result<(), SimError> {
        for id in 1..=self.cfg.members as u64 {
            self.start(id);
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        // Elect a leader before the workload starts.
        let deadline = self.now_us + CONVERGE_MS * 1000;
        while self.leader().is_none() || !self.all_serving() {
            let next = self.now_us + 100_000;
            if next > deadline {
                return Err(SimError::NoConvergence("no leader at the start".into()));
            }
            self.run_until(next)?;
        }
        // The registers, the pair, and the parents, written by a set-up session.
        let leader = self.leader().expect("elected");
        let setup = self.new_client(Role::Worker);
        self.clients.push(setup);
        self.connect(0, leader);
        let mut paths: Vec<String> = self.registers();
        paths.extend(PAIR.iter().map(|k| k.to_string()));
        paths.extend([SEQ_PARENT, QUEUE, EPHEMERAL_PARENT].map(String::from));
        let deadline = self.now_us + CONVERGE_MS * 1000;
        let mut sent = false;
        loop {
            let next = self.now_us + 10_000;
            if next > deadline {
                return Err(SimError::NoConvergence(
                    "the set-up writes did not finish".into(),
                ));
            }
            self.run_until(next)?;
            let cl = &self.clients[0];
            let established = cl.conn.as_ref().is_some_and(|c| c.established);
            if established && !sent {
                for p in &paths {
                    let xid = self.clients[0].xid();
                    // "0" for a register, as the real-process setup writes it.
                    self.send(0, xid, client::create(p, 0, 0), Some(Part::Setup));
                }
                sent = true;
            } else if sent && self.clients[0].pending.is_empty() {
                break;
            } else if self.clients[0].conn.is_none() {
                return Err(SimError::Setup(
                    "the set-up session lost its connection".into(),
                ));
            }
        }
        // The workload's sessions, and the ephemeral slot's.
        self.clients.clear();
        let ephemeral = Role::Ephemeral {
            life_end_us: None,
            next_own: false,
        };
        let roles = std::iter::repeat_n(Role::Worker, self.cfg.clients)
            .chain(std::iter::repeat_n(ephemeral, self.cfg.ephemeral_clients));
        for (c, role) in roles.enumerate() {
            let client = self.new_client(role);
            self.clients.push(client);
            let d = self.rng.gen_range(0..10_000);
            self.after(d, Ev::ClientStep { client: c });
        }
        self.load_end_us = self.now_us + self.cfg.duration_ms * 1000;
        if self.cfg.faults {
            let d = self.rng.gen_range(500_000..2_000_000);
            self.after(d, Ev::Fault);
        }
        Ok(())
    }

    fn all_serving(&self) -> bool {
        self.members.iter().all(|m| {
            m.running
                .as_ref()
                .is_some_and(|r| matches!(r.core.mode(), "leader" | "follower" | "observer"))
        })
    }

    /// Ends the workload as the real harness does: every session is closed (no new
    /// operation starts), every fault heals, the queue is drained, the ensemble expires the
    /// sessions that were abandoned (the ephemeral parent empties, or a bounded wait ends),
    /// and the members converge: every one up, serving and at the same zxid.
    fn wind_down(&mut self) -> Result<(), SimError> {
        self.winding_down = true;
        self.cut.clear();
        self.paused.clear();
        for id in std::mem::take(&mut self.full) {
            self.member(id).disk.clear_capacity();
        }
        for id in 1..=self.cfg.members as u64 {
            if !self.members[(id - 1) as usize].is_up() {
                self.start(id);
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        // Every session ends.
        let deadline = self.now_us + CONVERGE_MS * 1000;
        self.wait_for(deadline, "ending the sessions", |sim| {
            sim.clients.iter().all(|c| c.done) && sim.all_serving()
        })?;
        // The final drain of the queue, by a session of its own.
        let drain = self.new_client(Role::Drain { empty: false });
        let c = self.clients.len();
        self.clients.push(drain);
        self.after(0, Ev::ClientStep { client: c });
        let deadline = self.now_us + CONVERGE_MS * 1000;
        self.wait_for(deadline, "draining the queue", |sim| sim.clients[c].done)?;
        // Every workload session has ended: the ensemble must delete every ephemeral node.
        // Waited for as long as the real harness waits; what is left then is the ephemeral
        // checker's to report.
        let timeout_us = client::SESSION_TIMEOUT_MS as u64 * 1000;
        let deadline = self.now_us + 2 * timeout_us + 4_000_000;
        while self.now_us + 100_000 <= deadline && !(self.converged() && self.no_ephemerals()) {
            self.run_until(self.now_us + 100_000)?;
        }
        // The members converge.
        let deadline = self.now_us + CONVERGE_MS * 1000;
        loop {
            self.wait_for(deadline, "converging", |_| true)?;
            // Let the last commits reach everyone, then check once more.
            self.run_until(self.now_us + 2 * TICK_TIME_MS * 1000)?;
            if self.converged() {
                return Ok(());
            }
        }
    }

    /// Runs until `done` holds and the members have converged, checking every 100 ms of
    /// simulated time, until `deadline` (µs).
    fn wait_for(
        &mut self,
        deadline: u64,
        what: &str,
        done: impl Fn(&Sim) -> bool,
    ) -> Result<(), SimError> {
        while !(done(self) && self.converged()) {
            let next = self.now_us + 100_000;
            if next > deadline {
                let zxids: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| match &m.running {
                        Some(r) => format!("{}: {} {:#x}", m.id, r.core.mode(), r.core.last_zxid()),
                        None => format!("{}: down", m.id),
                    })
                    .collect();
                let open = self.clients.iter().filter(|c| !c.done).count();
                return Err(SimError::NoConvergence(format!(
                    "{what}: {}; {open} sessions not done",
                    zxids.join(", ")
                )));
            }
            self.run_until(next)?;
        }
        Ok(())
    }

    /// Every member up, serving and at the same zxid.
    fn converged(&self) -> bool {
        let zxids: BTreeSet<i64> = self
            .members
            .iter()
            .filter_map(|m| m.running.as_ref().map(|r| r.core.last_zxid()))
            .collect();
        zxids.len() == 1 && self.all_serving()
    }

    /// No member holds an ephemeral node.
    fn no_ephemerals(&self) -> bool {
        self.members.iter().all(|m| {
            m.running.as_ref().is_some_and(|r| {
                r.core
                    .tree()
                    .get(EPHEMERAL_PARENT)
                    .is_none_or(|n| n.children.is_empty())
            })
        })
    }

    /// What every member holds, read from its tree (the members have converged): the
    /// registers and the pair, the sequential children, the queue's items and the ephemeral
    /// nodes, as the real harness reads them.
    fn final_state(&self) -> FinalState {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let Some(r) = &m.running else {
                    return MemberState {
                        member: i,
                        error: Some("down".into()),
                        ..Default::default()
                    };
                };
                let tree = r.core.tree();
                let token = |path: String| {
                    tree.get(&path).map_or(GARBAGE_VALUE, |n| {
                        value_of(n.data.as_deref().unwrap_or_default())
                    })
                };
                let registers = self
                    .registers()
                    .into_iter()
                    .chain(PAIR.iter().map(|k| k.to_string()))
                    .filter_map(|k| {
                        let n = tree.get(&k)?;
                        Some((
                            k,
                            RegisterState {
                                value: value_of(n.data.as_deref().unwrap_or_default()),
                                version: n.version,
                                mzxid: n.mzxid,
                            },
                        ))
                    })
                    .collect();
                let listing = |parent: &str| -> BTreeMap<String, u64> {
                    tree.get(parent)
                        .map(|p| {
                            p.children
                                .iter()
                                .map(|name| (name.clone(), token(format!("{parent}/{name}"))))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let children = [(SEQ_PARENT.to_owned(), listing(SEQ_PARENT))].into();
                let queues = [(QUEUE.to_owned(), listing(QUEUE))].into();
                let nodes = tree
                    .get(EPHEMERAL_PARENT)
                    .map(|p| {
                        p.children
                            .iter()
                            .map(|name| {
                                let path = format!("{EPHEMERAL_PARENT}/{name}");
                                let owner = tree.get(&path).map_or(0, |n| n.ephemeral_owner);
                                let node = EphemeralNode {
                                    token: token(path),
                                    owner,
                                };
                                (name.clone(), node)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ephemerals = [(EPHEMERAL_PARENT.to_owned(), nodes)].into();
                let image = tree.image();
                let stats: Vec<_> = image
                    .iter()
                    .map(|(path, n)| (path, n.data.as_deref().unwrap_or_default(), n.stat()))
                    .collect();
                let digest = TreeDigest::of(
                    Some(r.core.last_zxid()),
                    stats.iter().map(|(p, d, s)| (p.as_str(), *d, s)),
                );
                MemberState {
                    member: i,
                    error: None,
                    registers,
                    children,
                    queues,
                    ephemerals,
                    tree: Some(digest),
                }
            })
            .collect();
        FinalState { members }
    }
}
