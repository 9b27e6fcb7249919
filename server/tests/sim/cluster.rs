//! The simulated ensemble: servers running the real core over simulated disks and a simulated
//! network, simulated clients, a fault schedule, and the checks. Everything is driven by one
//! seeded random generator and one event queue ordered by (time, sequence), so a seed replays
//! exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery_server::storage::MemBackend;
use rookery_server::zab::{
    wire, Action, Config, Entry, Input, Message, Node, Packet, PeerId, RoleChange, ServerState,
    StoreOp, Zxid,
};

use crate::disk::{
    clear_tail_cut_mark, damage_last_synced_batch, decode_history, encode_history, Disk,
};
use crate::invariants::{Acknowledged, ClientOrder, CommonHistory, SingleLeaderPerEpoch};
use crate::network::{LinkFaults, Network};

/// Simulated time units per core tick. Message delays are a few units, so a tick is long
/// compared with a round trip, as ZooKeeper's tickTime is.
pub(crate) const TICK: u64 = 10;

/// What one seed runs.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) seed: u64,
    pub(crate) voters: usize,
    pub(crate) observer: bool,
    /// Ticks of faults before everything heals.
    pub(crate) fault_ticks: u64,
    /// Ticks the healed ensemble has to elect a leader, commit new writes and catch every server
    /// up.
    pub(crate) liveness_ticks: u64,
}

/// Counters across a run (or many).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub(crate) seeds: u64,
    pub(crate) sim_ticks: u64,
    pub(crate) steps: u64,
    pub(crate) messages: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
    pub(crate) crashes: u64,
    pub(crate) torn_crashes: u64,
    /// Crashes after which the disk damaged the last batch of the log although it was synced.
    pub(crate) synced_tails_damaged: u64,
    /// Starts with the tail-cut mark set: the server abstains until it has synchronized.
    pub(crate) abstaining_starts: u64,
    pub(crate) partitions: u64,
    pub(crate) epochs: u64,
    pub(crate) committed: u64,
    pub(crate) acked: u64,
    /// Reads a leader confirmed with a quorum round (read index), each checked to see every
    /// write acknowledged before it was asked.
    pub(crate) reads_confirmed: u64,
    pub(crate) snapshots: u64,
    pub(crate) truncations: u64,
    pub(crate) liveness_ticks_max: u64,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.seeds += o.seeds;
        self.sim_ticks += o.sim_ticks;
        self.steps += o.steps;
        self.messages += o.messages;
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.crashes += o.crashes;
        self.torn_crashes += o.torn_crashes;
        self.synced_tails_damaged += o.synced_tails_damaged;
        self.abstaining_starts += o.abstaining_starts;
        self.partitions += o.partitions;
        self.epochs += o.epochs;
        self.committed += o.committed;
        self.acked += o.acked;
        self.reads_confirmed += o.reads_confirmed;
        self.snapshots += o.snapshots;
        self.truncations += o.truncations;
        self.liveness_ticks_max = self.liveness_ticks_max.max(o.liveness_ticks_max);
    }
}

#[derive(Debug)]
enum Event {
    Tick(PeerId, u64),
    Deliver {
        from: PeerId,
        to: PeerId,
        bytes: Vec<u8>,
    },
    StoreDone(PeerId, u64),
    /// The runtime tells server `to` that its connection from `peer` closed.
    Lost {
        to: PeerId,
        peer: PeerId,
    },
    Restart(PeerId),
    Client(usize),
    Fault,
    Heal,
    Check,
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::Tick(..) => "tick",
            Event::Deliver { .. } => "deliver",
            Event::StoreDone(..) => "store",
            Event::Lost { .. } => "lost",
            Event::Restart(_) => "restart",
            Event::Client(_) => "client",
            Event::Fault => "fault",
            Event::Heal => "heal",
            Event::Check => "check",
        }
    }
}

/// A running server.
struct Host {
    node: Node,
    disk: Disk,
    /// Store operations issued and not yet executed.
    store_q: Vec<(u64, StoreOp)>,
    store_scheduled: bool,
    /// The applied state: the committed history.
    applied: Vec<Entry>,
    /// The epoch this server leads, while established.
    leading: Option<u32>,
}

struct Slot {
    cfg: Config,
    /// The disk, as it survives crashes.
    backend: MemBackend,
    host: Option<Host>,
    incarnation: u64,
    /// Storage latency range, in time units.
    latency: (u64, u64),
    /// Crash in the middle of the next batch of store operations.
    crash_in_store: bool,
    /// Its disk damaged synced data of its log's tail, and it has not synchronized since (its
    /// tail-cut mark is still set).
    tail_damaged: bool,
}

struct Client {
    next_seq: u64,
    attached: Option<(PeerId, u64)>,
    inflight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Liveness { healed_at: u64, acked_at_heal: u64 },
}

pub(crate) struct Sim {
    p: Params,
    rng: StdRng,
    now: u64,
    events: BTreeMap<(u64, u64), Event>,
    event_seq: u64,
    slots: BTreeMap<PeerId, Slot>,
    net: Network,
    clients: Vec<Client>,
    /// Client proposals awaiting their commit on the leader that took them:
    /// (leader, incarnation, zxid) → client.
    pending: BTreeMap<(PeerId, u64, Zxid), usize>,
    leaders: SingleLeaderPerEpoch,
    history: CommonHistory,
    order: ClientOrder,
    acked: Acknowledged,
    /// Reads asked of a server that believed it led, until confirmed: (server, incarnation,
    /// read id) → (its commit point when asked, the newest write acknowledged by then).
    reads: BTreeMap<(PeerId, u64, u64), (Zxid, Zxid)>,
    last_read: u64,
    stats: Stats,
    trace: VecDeque<String>,
    phase: Phase,
    verbose: bool,
}

const TRACE_LINES: usize = 300;
/// Events one seed may take. A normal run takes well under a million; past this the ensemble is
/// in a message storm (or the simulator in a loop), which is a failure too.
const MAX_EVENTS: u64 = 5_000_000;
const CLIENTS: usize = 3;
const MAX_INFLIGHT: usize = 4;
/// Writes that must be acknowledged after the heal before the clients stop and the ensemble is
/// expected to settle.
const LIVENESS_WRITES: u64 = 3;

/// Runs one seed. `Err` describes the first violated property, with a trace of recent events.
pub(crate) fn run(p: Params, verbose: bool) -> Result<Stats, String> {
    let mut sim = Sim::new(p, verbose);
    let result = sim.run_inner();
    sim.stats.messages = sim.net.sent;
    sim.stats.dropped = sim.net.dropped;
    sim.stats.duplicated = sim.net.duplicated;
    sim.stats.epochs = sim.leaders.epochs() as u64;
    sim.stats.committed = sim.history.history.len() as u64;
    sim.stats.sim_ticks = sim.now / TICK;
    sim.stats.seeds = 1;
    result.map(|()| sim.stats.clone()).map_err(|e| {
        let trace: Vec<&str> = sim.trace.iter().map(String::as_str).collect();
        format!(
            "{e}\n  at time {} (tick {}), params {:?}\n  recent events:\n    {}",
            sim.now,
            sim.now / TICK,
            sim.p,
            trace.join("\n    ")
        )
    })
}

impl Sim {
    fn new(p: Params, verbose: bool) -> Sim {
        let mut rng = StdRng::seed_from_u64(p.seed);
        let voters: BTreeSet<PeerId> = (1..=p.voters as PeerId).collect();
        let observers: BTreeSet<PeerId> = if p.observer {
            [p.voters as PeerId + 1].into()
        } else {
            BTreeSet::new()
        };
        // Knobs drawn per seed: small windows exercise SNAP, a small counter limit exercises the
        // epoch rollover.
        let window = rng.gen_range(2..=40);
        let counter_limit = if rng.gen_bool(0.25) {
            rng.gen_range(8..=40)
        } else {
            Config::new(1, voters.clone(), observers.clone()).max_zxid_counter
        };
        // A long syncLimit on some seeds: a cut-off leader then believes it leads well after its
        // followers (told by a reset connection) elected another, the window a read must not
        // be answered stale in.
        let sync_limit = if rng.gen_bool(0.3) {
            rng.gen_range(10..=30)
        } else {
            Config::new(1, voters.clone(), observers.clone()).sync_limit_ticks
        };
        let ids: Vec<PeerId> = voters.iter().chain(&observers).copied().collect();
        let mut slots = BTreeMap::new();
        for &id in &ids {
            let mut cfg = Config::new(id, voters.clone(), observers.clone());
            cfg.committed_log_window = window;
            cfg.max_zxid_counter = counter_limit;
            cfg.max_outstanding_proposals = 32;
            cfg.sync_limit_ticks = sync_limit;
            cfg.init_limit_ticks = cfg.init_limit_ticks.max(sync_limit);
            cfg.election_resend_max_ticks = 8;
            slots.insert(
                id,
                Slot {
                    cfg,
                    backend: MemBackend::new(),
                    host: None,
                    incarnation: 0,
                    latency: (1, 8),
                    crash_in_store: false,
                    tail_damaged: false,
                },
            );
        }
        let clients = (0..CLIENTS)
            .map(|_| Client {
                next_seq: 1,
                attached: None,
                inflight: 0,
            })
            .collect();
        Sim {
            net: Network::new(&ids),
            p,
            rng,
            now: 0,
            events: BTreeMap::new(),
            event_seq: 0,
            slots,
            clients,
            pending: BTreeMap::new(),
            leaders: SingleLeaderPerEpoch::default(),
            history: CommonHistory::default(),
            order: ClientOrder::default(),
            acked: Acknowledged::default(),
            reads: BTreeMap::new(),
            last_read: 0,
            stats: Stats::default(),
            trace: VecDeque::new(),
            phase: Phase::Faults,
            verbose,
        }
    }

    fn schedule(&mut self, at: u64, ev: Event) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq), ev);
    }

    fn note(&mut self, line: String) {
        if self.verbose {
            eprintln!("[{:>6}] {line}", self.now);
        }
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("[{:>6}] {line}", self.now));
    }

    fn run_inner(&mut self) -> Result<(), String> {
        let ids: Vec<PeerId> = self.slots.keys().copied().collect();
        for id in ids {
            self.start(id)?;
        }
        for c in 0..CLIENTS {
            let at = self.rng.gen_range(0..TICK);
            self.schedule(at, Event::Client(c));
        }
        let first_fault = self.rng.gen_range(TICK..10 * TICK);
        self.schedule(first_fault, Event::Fault);
        self.schedule(self.p.fault_ticks * TICK, Event::Heal);
        let deadline = (self.p.fault_ticks + self.p.liveness_ticks) * TICK;
        let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut handled = 0u64;
        while let Some(((at, _), ev)) = self.events.pop_first() {
            handled += 1;
            *kinds.entry(ev.kind()).or_default() += 1;
            if handled > MAX_EVENTS {
                return Err(format!(
                    "event storm: {handled} events by time {at} ({kinds:?}, {} queued)\n  {}",
                    self.events.len(),
                    self.describe()
                ));
            }
            if at > deadline {
                return Err(format!(
                    "liveness: after healing, no stable leader with every server caught up within {} ticks\n  {}",
                    self.p.liveness_ticks,
                    self.describe()
                ));
            }
            self.now = at;
            if self.handle(ev)? {
                return Ok(());
            }
        }
        Err("the event queue ran dry".into())
    }

    fn describe(&self) -> String {
        let mut out = Vec::new();
        for (id, slot) in &self.slots {
            match &slot.host {
                None => out.push(format!("{id}: down")),
                Some(h) => {
                    let s = h.node.status();
                    out.push(format!(
                        "{id}: {:?} leader {:?} serving {} epochs {}/{} last {} durable {} committed {} applied {}",
                        s.state,
                        s.leader,
                        s.serving,
                        s.accepted_epoch,
                        s.current_epoch,
                        s.last_zxid,
                        s.durable_zxid,
                        s.committed_zxid,
                        h.applied.len()
                    ));
                }
            }
        }
        out.push(format!(
            "history {} entries, {} acknowledged; cuts: {}",
            self.history.history.len(),
            self.acked.acked.len(),
            self.net.describe_cuts()
        ));
        out.join("\n  ")
    }

    /// Handles one event; `Ok(true)` when the run is complete.
    fn handle(&mut self, ev: Event) -> Result<bool, String> {
        match ev {
            Event::Tick(id, inc) => {
                if self.slots[&id].incarnation == inc && self.slots[&id].host.is_some() {
                    self.step(id, Input::Tick)?;
                    self.schedule(self.now + TICK, Event::Tick(id, inc));
                }
            }
            Event::Deliver { from, to, bytes } => {
                if self.net.arrives(from, to) && self.slots[&to].host.is_some() {
                    let msg = wire::decode(&bytes).map_err(|e| {
                        format!("a message from {from} to {to} does not decode: {e}")
                    })?;
                    self.step(to, Input::Message { from, msg })?;
                }
            }
            Event::StoreDone(id, inc) => {
                if self.slots[&id].incarnation == inc && self.slots[&id].host.is_some() {
                    self.store_done(id)?;
                }
            }
            Event::Lost { to, peer } => {
                if self.slots[&to].host.is_some() {
                    self.step(to, Input::Disconnected { peer })?;
                }
            }
            Event::Restart(id) => self.start(id)?,
            Event::Client(c) => {
                self.client(c)?;
                let at = self.now + self.rng.gen_range(1..=TICK);
                self.schedule(at, Event::Client(c));
            }
            Event::Fault => {
                if self.phase == Phase::Faults {
                    self.fault()?;
                    let at = self.now + self.rng.gen_range(2..=25) * TICK;
                    self.schedule(at, Event::Fault);
                }
            }
            Event::Heal => self.heal()?,
            Event::Check => {
                if self.check_liveness()? {
                    return Ok(true);
                }
                self.schedule(self.now + TICK, Event::Check);
            }
        }
        Ok(false)
    }

    /// Recovers server `id` from its disk and starts it.
    fn start(&mut self, id: PeerId) -> Result<(), String> {
        let seed = self.rng.gen();
        let slot = self.slots.get_mut(&id).unwrap();
        if slot.host.is_some() {
            return Ok(());
        }
        let recovered = Disk::recover(slot.backend.clone())
            .map_err(|e| format!("server {id} cannot recover its disk: {e}"))?;
        if recovered.durable.tail_cut {
            self.stats.abstaining_starts += 1;
        } else {
            slot.tail_damaged = false;
        }
        let mut cfg = slot.cfg.clone();
        cfg.seed = seed;
        let node = Node::new(cfg, recovered.durable.clone())
            .map_err(|e| format!("server {id} refuses its recovered state: {e}"))?;
        self.history.on_image(id, &recovered.image, None)?;
        slot.incarnation += 1;
        let inc = slot.incarnation;
        let d = &recovered.durable;
        let line = format!(
            "start {id} (incarnation {inc}): epochs {}/{}, snapshot {}, {} log entries to {}{}",
            d.accepted_epoch,
            d.current_epoch,
            d.snapshot_zxid,
            d.entries.len(),
            d.entries.last().map_or(d.snapshot_zxid, |e| e.zxid),
            if d.tail_cut {
                ", tail cut: abstaining"
            } else {
                ""
            }
        );
        slot.host = Some(Host {
            node,
            disk: recovered.disk,
            store_q: Vec::new(),
            store_scheduled: false,
            applied: recovered.image,
            leading: None,
        });
        self.note(line);
        // Each server ticks at its own phase.
        let at = self.now + 1 + self.rng.gen_range(0..TICK);
        self.schedule(at, Event::Tick(id, inc));
        Ok(())
    }

    fn host(&mut self, id: PeerId) -> &mut Host {
        self.slots.get_mut(&id).unwrap().host.as_mut().unwrap()
    }

    /// Feeds one input to a server, checks it, and performs the actions.
    fn step(&mut self, id: PeerId, input: Input) -> Result<(), String> {
        self.stats.steps += 1;
        let actions = self.host(id).node.step(input);
        self.after_step(id, actions)
    }

    fn after_step(&mut self, id: PeerId, actions: Vec<Action>) -> Result<(), String> {
        {
            let node = &self.host(id).node;
            node.check_invariants().map_err(|e| e.to_string())?;
            let (n, last) = node.anomalies();
            if n > 0 {
                return Err(format!(
                    "server {id}: protocol anomaly: {}",
                    last.unwrap_or("")
                ));
            }
        }
        for a in actions {
            self.perform(id, a)?;
        }
        Ok(())
    }

    fn perform(&mut self, id: PeerId, action: Action) -> Result<(), String> {
        match action {
            Action::Send { to, msg } => self.send(id, to, &msg),
            Action::SendSnapshot {
                to,
                session,
                epoch,
                seq,
                zxid,
            } => {
                let applied = &self.host(id).applied;
                let at = applied.last().map_or(Zxid::ZERO, |e| e.zxid);
                if at != zxid {
                    return Err(format!(
                        "server {id} asked to send a snapshot at {zxid}, but its state is at {at}"
                    ));
                }
                let snapshot = encode_history(applied);
                self.stats.snapshots += 1;
                self.note(format!("{id} sends a snapshot at {zxid} to {to}"));
                let msg = Message::Peer {
                    session,
                    epoch,
                    seq,
                    packet: Packet::Snap { zxid, snapshot },
                };
                self.send(id, to, &msg);
            }
            Action::Store { seq, op } => {
                if let StoreOp::InstallSnapshot { zxid, snapshot } = &op {
                    // The applied state is replaced at this point of the action order.
                    let image = decode_history(snapshot)?;
                    if image.last().map_or(Zxid::ZERO, |e| e.zxid) != *zxid {
                        return Err(format!("snapshot for {zxid} ends elsewhere"));
                    }
                    let before = self.host(id).applied.len();
                    self.history.on_image(id, &image, Some(before))?;
                    self.note(format!("{id} installs a snapshot at {zxid}"));
                    self.host(id).applied = image;
                }
                if let StoreOp::Truncate { after } = &op {
                    self.stats.truncations += 1;
                    self.note(format!("{id} truncates after {after}"));
                }
                let host = self.host(id);
                host.store_q.push((seq, op));
                if !host.store_scheduled {
                    host.store_scheduled = true;
                    let (lo, hi) = self.slots[&id].latency;
                    let at = self.now + self.rng.gen_range(lo..=hi);
                    let inc = self.slots[&id].incarnation;
                    self.schedule(at, Event::StoreDone(id, inc));
                }
            }
            Action::Commit { entries } => self.commit(id, entries)?,
            Action::ReadConfirmed { ids } => {
                let inc = self.slots[&id].incarnation;
                for rid in ids {
                    let Some((point, acked)) = self.reads.remove(&(id, inc, rid)) else {
                        return Err(format!("server {id} confirmed read {rid}, never asked"));
                    };
                    if point < acked {
                        return Err(format!(
                            "server {id} confirmed read {rid} at commit point {point}, but \
                             {acked} was acknowledged before it was asked: a stale read"
                        ));
                    }
                    self.stats.reads_confirmed += 1;
                }
            }
            Action::Role(r) => {
                self.note(format!("{id} {r:?}"));
                match r {
                    RoleChange::Leading { epoch } => {
                        self.leaders.on_leading(id, epoch)?;
                        self.host(id).leading = Some(epoch);
                    }
                    _ => self.host(id).leading = None,
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, from: PeerId, to: PeerId, msg: &Message) {
        let bytes = wire::encode(msg);
        for (at, bytes, _) in self.net.send(&mut self.rng, self.now, from, to, bytes) {
            self.schedule(at, Event::Deliver { from, to, bytes });
        }
    }

    fn commit(&mut self, id: PeerId, entries: Vec<Entry>) -> Result<(), String> {
        let applied_len = self.host(id).applied.len();
        let new = self.history.on_commit(id, applied_len, &entries)?;
        self.order.on_new_history(&new)?;
        let inc = self.slots[&id].incarnation;
        let leading = self.host(id).leading.is_some();
        for (i, e) in entries.iter().enumerate() {
            // Acknowledged: the leader that took the write saw it commit.
            if leading {
                if let Some(c) = self.pending.remove(&(id, inc, e.zxid)) {
                    self.acked.on_ack(&self.history, applied_len + i, e)?;
                    self.stats.acked += 1;
                    self.clients[c].inflight -= 1;
                }
            }
        }
        self.host(id).applied.extend(entries);
        Ok(())
    }

    /// The disk finished the queued store operations: execute them and report.
    fn store_done(&mut self, id: PeerId) -> Result<(), String> {
        if std::mem::take(&mut self.slots.get_mut(&id).unwrap().crash_in_store) {
            self.crash(id, true);
            return Ok(());
        }
        let host = self.host(id);
        host.store_scheduled = false;
        let ops = std::mem::take(&mut host.store_q);
        let Some(&(last, _)) = ops.last() else {
            return Ok(());
        };
        let just_ops: Vec<StoreOp> = ops.into_iter().map(|(_, op)| op).collect();
        host.disk
            .execute(&just_ops)
            .map_err(|e| format!("server {id}: storage failed without a fault: {e}"))?;
        if just_ops.contains(&StoreOp::ClearTailCut) {
            self.slots.get_mut(&id).unwrap().tail_damaged = false;
            self.note(format!("{id} synchronized after a tail cut: mark cleared"));
        }
        self.step(id, Input::Persisted { seq: last })
    }

    fn client(&mut self, c: usize) -> Result<(), String> {
        if let Phase::Liveness { acked_at_heal, .. } = self.phase {
            if self.stats.acked >= acked_at_heal + LIVENESS_WRITES {
                // Enough progress shown: let the ensemble settle.
                return Ok(());
            }
        }
        // The leader of the newest epoch, as a client that reconnects finds it.
        let newest = self
            .slots
            .iter()
            .filter_map(|(id, s)| {
                let epoch = s.host.as_ref()?.leading?;
                Some((epoch, *id, s.incarnation))
            })
            .max()
            .map(|(_, id, inc)| (id, inc));
        // Still attached to that leader? A client of a deposed leader that still believes it
        // leads moves on too (its connection was reset), so writes are acknowledged by the new
        // leader while the old one may still be asked to read.
        if let Some((leader, inc)) = self.clients[c].attached {
            let slot = &self.slots[&leader];
            let ok = slot.incarnation == inc
                && slot.host.as_ref().is_some_and(|h| h.leading.is_some())
                && newest == Some((leader, inc));
            if !ok {
                // The outcome of its outstanding writes is unknown; they are not retried.
                self.clients[c].attached = None;
                self.clients[c].inflight = 0;
                self.pending.retain(|_, client| *client != c);
            }
        }
        if self.clients[c].attached.is_none() {
            match newest {
                Some((id, inc)) => self.clients[c].attached = Some((id, inc)),
                None => return Ok(()),
            }
        }
        if self.rng.gen_bool(0.25) {
            return self.read();
        }
        let (leader, inc) = self.clients[c].attached.unwrap();
        if self.clients[c].inflight >= MAX_INFLIGHT {
            return Ok(());
        }
        let seq = self.clients[c].next_seq;
        let mut payload = Vec::new();
        payload.extend_from_slice(&(c as u32).to_be_bytes());
        payload.extend_from_slice(&seq.to_be_bytes());
        // Varied sizes, so that records tear at different places.
        let pad = if self.rng.gen_bool(0.1) {
            self.rng.gen_range(200..1500)
        } else {
            self.rng.gen_range(0..40)
        };
        payload.extend((0..pad).map(|i| (i as u8) ^ (seq as u8)));
        match self.host(leader).node.propose(Bytes::from(payload)) {
            Ok((zxid, actions)) => {
                self.clients[c].next_seq += 1;
                self.clients[c].inflight += 1;
                self.pending.insert((leader, inc, zxid), c);
                self.stats.steps += 1;
                self.after_step(leader, actions)?;
            }
            Err(_) => {
                // Not leading after all, busy, or out of zxids: try again later.
            }
        }
        Ok(())
    }

    /// A linearizable read asked of any server that believes it leads, deposed or not: its
    /// confirmation must come only if its commit point holds every acknowledged write.
    fn read(&mut self) -> Result<(), String> {
        // (epoch, server) of each server that believes it leads, oldest epoch first: when a
        // deposed leader and its successor coexist, the deposed one is asked half the time.
        let mut believers: Vec<(u32, PeerId)> = self
            .slots
            .iter()
            .filter_map(|(id, s)| Some((s.host.as_ref()?.leading?, *id)))
            .collect();
        believers.sort_unstable();
        let Some(&(_, oldest)) = believers.first() else {
            return Ok(());
        };
        let id = if self.rng.gen_bool(0.5) {
            oldest
        } else {
            believers[self.rng.gen_range(0..believers.len())].1
        };
        self.last_read += 1;
        let rid = self.last_read;
        let inc = self.slots[&id].incarnation;
        let point = self.host(id).applied.last().map_or(Zxid::ZERO, |e| e.zxid);
        let acked = self
            .acked
            .acked
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Zxid::ZERO);
        match self.host(id).node.confirm_leadership(rid) {
            Ok(actions) => {
                self.reads.insert((id, inc, rid), (point, acked));
                self.stats.steps += 1;
                self.after_step(id, actions)
            }
            // Not established after all.
            Err(_) => Ok(()),
        }
    }

    fn up(&self) -> Vec<PeerId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.host.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn fault(&mut self) -> Result<(), String> {
        let ids: Vec<PeerId> = self.slots.keys().copied().collect();
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=11 => {
                let up = self.up();
                if !up.is_empty() {
                    let victim = up[self.rng.gen_range(0..up.len())];
                    self.crash(victim, false);
                }
            }
            12..=19 => {
                // The next disk write of a server is interrupted by a crash.
                let up = self.up();
                if !up.is_empty() {
                    let victim = up[self.rng.gen_range(0..up.len())];
                    self.slots.get_mut(&victim).unwrap().crash_in_store = true;
                }
            }
            20..=24 => {
                // A power failure of the whole ensemble: whatever was acknowledged but is not
                // durable on a quorum is gone.
                self.note("power failure: every server crashes".into());
                for id in self.up() {
                    self.crash(id, false);
                }
            }
            25..=44 => {
                // A partition into two sides, both ways.
                let side: Vec<PeerId> = ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.gen_bool(0.5))
                    .collect();
                for &a in &ids {
                    for &b in &ids {
                        if a != b && side.contains(&a) != side.contains(&b) {
                            self.net.cut(a, b, true);
                        }
                    }
                }
                self.stats.partitions += 1;
                self.note(format!("partition {side:?} | rest"));
            }
            45..=54 => {
                // One-way cuts: a hears b, b does not hear a.
                for _ in 0..self.rng.gen_range(1..=3) {
                    let a = ids[self.rng.gen_range(0..ids.len())];
                    let b = ids[self.rng.gen_range(0..ids.len())];
                    if a != b {
                        self.net.cut(a, b, true);
                        self.note(format!("cut {a}->{b}"));
                    }
                }
                self.stats.partitions += 1;
            }
            55..=64 => {
                let leader = self
                    .slots
                    .iter()
                    .find(|(_, s)| s.host.as_ref().is_some_and(|h| h.leading.is_some()))
                    .map(|(id, _)| *id);
                if let Some(l) = leader {
                    // Half the time the cut closes the connections (a firewall that resets them),
                    // so the followers elect at once while the leader, which only counts
                    // silence, still believes it leads for syncLimit: the window in which a
                    // deposed leader could answer a read stale.
                    let reset = self.rng.gen_bool(0.5);
                    for &o in &ids {
                        if o != l {
                            self.net.cut(l, o, true);
                            self.net.cut(o, l, true);
                            if reset {
                                let at = self.now + self.rng.gen_range(1..=TICK);
                                self.schedule(at, Event::Lost { to: o, peer: l });
                            }
                        }
                    }
                    self.stats.partitions += 1;
                    self.note(format!("isolate leader {l}"));
                }
            }
            65..=79 => {
                for &a in &ids {
                    for &b in &ids {
                        self.net.cut(a, b, false);
                    }
                }
                self.note("partitions healed".into());
            }
            80..=89 => {
                let drop = [0.0, 0.0, 0.01, 0.05, 0.15][self.rng.gen_range(0..5)];
                let duplicate = [0.0, 0.02, 0.1][self.rng.gen_range(0..3)];
                let hi = [4, 12, 40][self.rng.gen_range(0..3)];
                for &a in &ids {
                    for &b in &ids {
                        if a != b {
                            let faults = LinkFaults {
                                drop: drop * self.rng.gen_range(0.0..2.0),
                                duplicate,
                                delay: (1, hi),
                            };
                            self.net.set_faults(a, b, faults);
                        }
                    }
                }
                self.note(format!(
                    "links: drop ~{drop}, duplicate {duplicate}, delay up to {hi}"
                ));
            }
            90..=94 => {
                // A connection closes without the peer dying (a network blip): the runtime
                // reports it, and a learner whose leader it is elects again.
                let a = ids[self.rng.gen_range(0..ids.len())];
                let b = ids[self.rng.gen_range(0..ids.len())];
                if a != b {
                    let at = self.now + self.rng.gen_range(1..=TICK);
                    self.schedule(at, Event::Lost { to: a, peer: b });
                    self.note(format!("connection {b}->{a} lost"));
                }
            }
            _ => {
                // Slow disks widen the windows between sending a message and making its state
                // durable, where acknowledging too early would show.
                let id = ids[self.rng.gen_range(0..ids.len())];
                let latency = [(1, 8), (5, 20), (20, 80)][self.rng.gen_range(0..3)];
                self.slots.get_mut(&id).unwrap().latency = latency;
                self.note(format!("{id} disk latency {latency:?}"));
            }
        }
        Ok(())
    }

    /// Crashes a server: its process state is gone, and its disk keeps what was synced, plus
    /// whatever a crash in the middle of its pending I/O leaves.
    fn crash(&mut self, id: PeerId, during_io: bool) {
        let mode = if during_io {
            self.rng.gen_range(1..3)
        } else {
            self.rng.gen_range(0..3)
        };
        let crash_seed = self.rng.gen();
        let fail_after = self.rng.gen_range(0..40);
        let downtime = self.rng.gen_range(1..=40) * TICK;
        // Now and then the disk also damages the synced last batch of the log, which may hold
        // acknowledged writes; recovery cuts it as a torn tail. At most one server at a time
        // carries such a cut without having synchronized since (a minority): with a quorum of
        // them, committed writes could be gone from every copy, which nothing can recover.
        let damaged_elsewhere = self.slots.values().any(|s| s.tail_damaged);
        let damage = !damaged_elsewhere && self.rng.gen_bool(0.3);
        let slot = self.slots.get_mut(&id).unwrap();
        slot.crash_in_store = false;
        let Some(mut host) = slot.host.take() else {
            return;
        };
        let ops: Vec<StoreOp> = host.store_q.drain(..).map(|(_, op)| op).collect();
        let torn = !ops.is_empty() && mode > 0;
        if torn {
            // The crash strikes while the pending operations run: either before any sync
            // (writes reach the page cache only), or after `fail_after` I/O calls.
            if mode == 1 {
                slot.backend.fail_syncs();
            } else {
                slot.backend.fail_after_ops(fail_after);
            }
            let _ = host.disk.execute(&ops);
        }
        slot.backend = slot.backend.crash(crash_seed);
        let damaged = if damage {
            damage_last_synced_batch(&slot.backend)
        } else {
            None
        };
        if damaged.is_some() {
            slot.tail_damaged = true;
            self.stats.synced_tails_damaged += 1;
        }
        self.stats.crashes += 1;
        if torn {
            self.stats.torn_crashes += 1;
        }
        // Its peers see their connections from it close, a little later each.
        for other in self.up() {
            let at = self.now + self.rng.gen_range(1..=TICK);
            self.schedule(
                at,
                Event::Lost {
                    to: other,
                    peer: id,
                },
            );
        }
        let at = self.now + downtime;
        self.pending.retain(|(leader, _, _), _| *leader != id);
        self.note(format!(
            "crash {id} ({} store ops pending, {}), restart at {at}{}",
            ops.len(),
            ["lost before any I/O", "torn before sync", "stopped mid-I/O"][mode],
            damaged.map_or(String::new(), |(a, b)| format!(
                "; its disk damaged the synced batch {a}..={b}"
            ))
        ));
        self.schedule(at, Event::Restart(id));
    }

    /// Stops server `id` without a crash (its disk keeps everything) and starts it again.
    fn operator_restart(&mut self, id: PeerId) -> Result<(), String> {
        if self.slots.get_mut(&id).unwrap().host.take().is_none() {
            return Ok(());
        }
        for other in self.up() {
            let at = self.now + self.rng.gen_range(1..=TICK);
            self.schedule(
                at,
                Event::Lost {
                    to: other,
                    peer: id,
                },
            );
        }
        self.pending.retain(|(leader, _, _), _| *leader != id);
        self.note(format!(
            "operator removes {id}'s tail-cut mark (a power failure's) and restarts it"
        ));
        self.start(id)
    }

    fn heal(&mut self) -> Result<(), String> {
        self.net.heal();
        for slot in self.slots.values_mut() {
            slot.latency = (1, 8);
        }
        let down: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.host.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.start(id)?;
        }
        // The operator's part: a server that cut a torn tail abstains until it synchronizes,
        // and with too many of them nobody can be elected (the price of never letting a cut of
        // acknowledged records help elect a leader without them). The operator, who knows which
        // cuts came from power failures (writes never synced, so never acknowledged) and which
        // from a damaged disk, removes the marks of the former and restarts those servers, as
        // docs/operations.md says. Servers whose disk damaged synced data keep theirs.
        let ids: Vec<PeerId> = self.slots.keys().copied().collect();
        for id in ids {
            let slot = &self.slots[&id];
            if !slot.tail_damaged && clear_tail_cut_mark(&slot.backend) {
                self.operator_restart(id)?;
            }
        }
        self.phase = Phase::Liveness {
            healed_at: self.now,
            acked_at_heal: self.stats.acked,
        };
        self.note("healed: every server up, every link healthy".into());
        self.schedule(self.now + TICK, Event::Check);
        Ok(())
    }

    /// After the heal: one leader everyone serves under, new writes acknowledged, and every
    /// server's applied state equal to the whole committed history.
    fn check_liveness(&mut self) -> Result<bool, String> {
        let Phase::Liveness {
            healed_at,
            acked_at_heal,
        } = self.phase
        else {
            return Ok(false);
        };
        if self.stats.acked < acked_at_heal + LIVENESS_WRITES {
            return Ok(false);
        }
        let mut leader = None;
        for (id, slot) in &self.slots {
            let Some(h) = &slot.host else {
                return Ok(false);
            };
            let s = h.node.status();
            if !s.serving || s.last_zxid != s.committed_zxid {
                return Ok(false);
            }
            if s.state == ServerState::Leading {
                leader = Some((*id, s.current_epoch));
            }
        }
        let Some((leader, epoch)) = leader else {
            return Ok(false);
        };
        let full = self.history.history.len();
        for slot in self.slots.values() {
            let h = slot.host.as_ref().unwrap();
            let s = h.node.status();
            if s.leader != Some(leader) || s.current_epoch != epoch || h.applied.len() != full {
                return Ok(false);
            }
        }
        // Settled. Every acknowledged write survived, in place, everywhere.
        for (id, slot) in &self.slots {
            self.acked
                .check_final(*id, &slot.host.as_ref().unwrap().applied)?;
        }
        let took = (self.now - healed_at) / TICK;
        self.stats.liveness_ticks_max = self.stats.liveness_ticks_max.max(took);
        self.note(format!(
            "settled: leader {leader}, epoch {epoch}, {full} entries, after {took} ticks"
        ));
        Ok(true)
    }
}

/// The parameters seed `seed` runs with (its cluster size is given by the caller).
pub(crate) fn params(seed: u64, voters: usize, fault_ticks: u64) -> Params {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5157_0000);
    Params {
        seed,
        voters,
        observer: rng.gen_bool(0.5),
        fault_ticks,
        liveness_ticks: 400,
    }
}
