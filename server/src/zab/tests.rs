//! Scenario tests of the core through a tiny in-memory harness: a reliable network delivered to
//! quiescence, storage completed instantly (or by hand, to look at the order of durability and
//! messages). The randomized, fault-injecting simulator is `server/tests/sim.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;

fn z(epoch: u32, counter: u32) -> Zxid {
    Zxid::new(epoch, counter)
}

fn entry(epoch: u32, counter: u32) -> Entry {
    Entry {
        zxid: z(epoch, counter),
        payload: Bytes::from(format!("txn {epoch}.{counter}")),
    }
}

fn durable(accepted: u32, current: u32, zxids: &[(u32, u32)]) -> DurableState {
    DurableState {
        accepted_epoch: accepted,
        current_epoch: current,
        snapshot_zxid: Zxid::ZERO,
        entries: zxids.iter().map(|&(e, c)| entry(e, c)).collect(),
        tail_cut: false,
    }
}

/// A snapshot image in the harness: the committed entries, one after another.
fn encode_image(entries: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.zxid.raw().to_be_bytes());
        out.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.payload);
    }
    out.into()
}

fn decode_image(mut b: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let zxid = Zxid::from_raw(u64::from_be_bytes(b[..8].try_into().unwrap()));
        let len = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        out.push(Entry {
            zxid,
            payload: Bytes::copy_from_slice(&b[12..12 + len]),
        });
        b = &b[12 + len..];
    }
    out
}

/// Picks messages (to lose one, for example).
type MessageFilter = fn(&Message) -> bool;

struct Harness {
    nodes: BTreeMap<PeerId, Node>,
    net: VecDeque<(PeerId, PeerId, Message)>,
    /// Store operations not yet reported durable, per server.
    stores: BTreeMap<PeerId, Vec<(u64, StoreOp)>>,
    /// Servers whose stores complete only by hand.
    manual: BTreeSet<PeerId>,
    /// Servers cut off from everyone.
    isolated: BTreeSet<PeerId>,
    /// The applied state (committed history) of each server.
    applied: BTreeMap<PeerId, Vec<Entry>>,
    roles: BTreeMap<PeerId, Vec<RoleChange>>,
    /// Every message sent, per sender.
    sent: BTreeMap<PeerId, Vec<(PeerId, Message)>>,
    /// Snapshots sent, and installed, per server.
    snapshots_sent: usize,
    installed: BTreeMap<PeerId, usize>,
    /// Messages to lose once each: the first one to the given server that matches.
    lose: Vec<(PeerId, MessageFilter)>,
    /// Reads confirmed (read index), per server, in order.
    confirmed: BTreeMap<PeerId, Vec<u64>>,
    /// Every action of each server, in order.
    actions: BTreeMap<PeerId, Vec<Action>>,
}

impl Harness {
    fn new(voters: &[PeerId], observers: &[PeerId], durable_states: &[DurableState]) -> Harness {
        Self::with(voters, observers, durable_states, |_| {})
    }

    fn with(
        voters: &[PeerId],
        observers: &[PeerId],
        durable_states: &[DurableState],
        tweak: impl Fn(&mut Config),
    ) -> Harness {
        let vs: BTreeSet<PeerId> = voters.iter().copied().collect();
        let os: BTreeSet<PeerId> = observers.iter().copied().collect();
        let mut h = Harness {
            nodes: BTreeMap::new(),
            net: VecDeque::new(),
            stores: BTreeMap::new(),
            manual: BTreeSet::new(),
            isolated: BTreeSet::new(),
            applied: BTreeMap::new(),
            roles: BTreeMap::new(),
            sent: BTreeMap::new(),
            snapshots_sent: 0,
            installed: BTreeMap::new(),
            lose: Vec::new(),
            confirmed: BTreeMap::new(),
            actions: BTreeMap::new(),
        };
        for (i, id) in voters.iter().chain(observers).enumerate() {
            let mut cfg = Config::new(*id, vs.clone(), os.clone());
            cfg.seed = 1000 + i as u64;
            tweak(&mut cfg);
            let ds = durable_states.get(i).cloned().unwrap_or_default();
            let applied = ds
                .entries
                .iter()
                .filter(|e| e.zxid <= ds.snapshot_zxid)
                .cloned()
                .collect();
            h.applied.insert(*id, applied);
            h.nodes.insert(*id, Node::new(cfg, ds).unwrap());
        }
        h
    }

    fn step(&mut self, id: PeerId, input: Input) -> Vec<Action> {
        let node = self.nodes.get_mut(&id).unwrap();
        let actions = node.step(input);
        self.after(id, &actions);
        actions
    }

    fn after(&mut self, id: PeerId, actions: &[Action]) {
        let node = &self.nodes[&id];
        node.check_invariants().unwrap();
        assert_eq!(node.anomalies().0, 0, "{:?}", node.anomalies().1);
        self.actions
            .entry(id)
            .or_default()
            .extend(actions.iter().cloned());
        for a in actions.iter().cloned() {
            match a {
                Action::Send { to, msg } => {
                    self.sent.entry(id).or_default().push((to, msg.clone()));
                    self.net.push_back((id, to, msg));
                }
                Action::SendSnapshot {
                    to,
                    session,
                    epoch,
                    seq,
                    zxid,
                } => {
                    self.snapshots_sent += 1;
                    let applied = &self.applied[&id];
                    assert_eq!(applied.last().map_or(Zxid::ZERO, |e| e.zxid), zxid);
                    let packet = Packet::Snap {
                        zxid,
                        snapshot: encode_image(applied),
                    };
                    let msg = Message::Peer {
                        session,
                        epoch,
                        seq,
                        packet,
                    };
                    self.net.push_back((id, to, msg));
                }
                Action::Store { seq, op } => {
                    if let StoreOp::InstallSnapshot { snapshot, zxid } = &op {
                        let image = decode_image(snapshot);
                        assert_eq!(image.last().map_or(Zxid::ZERO, |e| e.zxid), *zxid);
                        self.applied.insert(id, image);
                        *self.installed.entry(id).or_default() += 1;
                    }
                    self.stores.entry(id).or_default().push((seq, op));
                }
                Action::Commit { entries } => {
                    let applied = self.applied.get_mut(&id).unwrap();
                    let last = applied.last().map_or(Zxid::ZERO, |e| e.zxid);
                    assert!(
                        entries[0].zxid.follows(last),
                        "{id}: commit gap after {last}"
                    );
                    applied.extend(entries);
                }
                Action::Role(r) => self.roles.entry(id).or_default().push(r),
                Action::ReadConfirmed { ids } => {
                    self.confirmed.entry(id).or_default().extend(ids);
                }
            }
        }
    }

    /// Completes every store operation of `id`.
    fn persist_all(&mut self, id: PeerId) -> Vec<Action> {
        let Some(last) = self.stores.get(&id).and_then(|s| s.last()).map(|s| s.0) else {
            return Vec::new();
        };
        self.stores.remove(&id);
        self.step(id, Input::Persisted { seq: last })
    }

    /// Completes the oldest store operation of `id`, returning it and the resulting actions.
    fn persist_one(&mut self, id: PeerId) -> Option<(StoreOp, Vec<Action>)> {
        let ops = self.stores.get_mut(&id)?;
        if ops.is_empty() {
            return None;
        }
        let (seq, op) = ops.remove(0);
        Some((op, self.step(id, Input::Persisted { seq })))
    }

    /// Delivers messages and completes automatic stores until nothing moves.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            if let Some((from, to, msg)) = self.net.pop_front() {
                if self.isolated.contains(&from) || self.isolated.contains(&to) {
                    continue;
                }
                if let Some(i) = self.lose.iter().position(|(t, f)| *t == to && f(&msg)) {
                    self.lose.remove(i);
                    continue;
                }
                // Every message goes through the wire codec.
                let msg = wire::decode(&wire::encode(&msg)).unwrap();
                self.step(to, Input::Message { from, msg });
                continue;
            }
            let auto: Vec<PeerId> = self
                .stores
                .iter()
                .filter(|(id, ops)| !ops.is_empty() && !self.manual.contains(id))
                .map(|(id, _)| *id)
                .collect();
            if auto.is_empty() {
                return;
            }
            for id in auto {
                self.persist_all(id);
            }
        }
        panic!("the harness did not settle");
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            let ids: Vec<PeerId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.step(id, Input::Tick);
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<PeerId> {
        self.nodes
            .values()
            .find(|n| n.status().state == ServerState::Leading && n.status().serving)
            .map(Node::id)
    }

    /// Ticks until a leader is established and every live learner is serving.
    fn elect(&mut self) -> PeerId {
        for _ in 0..200 {
            self.tick(1);
            if let Some(l) = self.leader() {
                let all = self
                    .nodes
                    .values()
                    .filter(|n| !self.isolated.contains(&n.id()))
                    .all(|n| n.status().serving);
                if all {
                    return l;
                }
            }
        }
        panic!("no leader: {:?}", self.statuses());
    }

    fn statuses(&self) -> Vec<Status> {
        self.nodes.values().map(Node::status).collect()
    }

    fn propose(&mut self, leader: PeerId, payload: &str) -> Zxid {
        let node = self.nodes.get_mut(&leader).unwrap();
        let (zxid, actions) = node.propose(Bytes::from(payload.to_owned())).unwrap();
        self.after(leader, &actions);
        zxid
    }

    /// Asks `leader` to confirm read `id` (read index).
    fn confirm(&mut self, leader: PeerId, id: u64) -> Result<(), ProposeError> {
        let node = self.nodes.get_mut(&leader).unwrap();
        let actions = node.confirm_leadership(id)?;
        self.after(leader, &actions);
        Ok(())
    }

    fn confirmed(&self, id: PeerId) -> &[u64] {
        self.confirmed.get(&id).map_or(&[], Vec::as_slice)
    }

    fn applied_zxids(&self, id: PeerId) -> Vec<Zxid> {
        self.applied[&id].iter().map(|e| e.zxid).collect()
    }
}

#[test]
fn a_single_voter_leads_and_commits_after_its_own_fsync() {
    let mut h = Harness::new(&[1], &[], &[]);
    let leader = h.elect();
    assert_eq!(leader, 1);
    assert_eq!(h.roles[&1], [RoleChange::Leading { epoch: 1 }]);
    h.manual.insert(1);
    let node = h.nodes.get_mut(&1).unwrap();
    let (zxid, actions) = node.propose(Bytes::from_static(b"a")).unwrap();
    assert_eq!(zxid, z(1, 1));
    // Exactly one action: log it. No commit before it is durable.
    let [Action::Store {
        seq,
        op: StoreOp::Append { entries },
    }] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(entries.len(), 1);
    let seq = *seq;
    h.after(1, &actions);
    assert_eq!(h.nodes[&1].next_zxid(), Ok(z(1, 2)));
    let actions = h.step(1, Input::Persisted { seq });
    assert_eq!(
        actions,
        [Action::Commit {
            entries: vec![Entry {
                zxid: z(1, 1),
                payload: Bytes::from_static(b"a")
            }]
        }]
    );
}

#[test]
fn the_most_up_to_date_voter_wins_and_everyone_commits_its_history() {
    let states = [
        durable(1, 1, &[(1, 1)]),
        durable(1, 1, &[(1, 1), (1, 2)]),
        durable(1, 1, &[(1, 1)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[], &states);
    let leader = h.elect();
    assert_eq!(leader, 2, "{:?}", h.statuses());
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id), [z(1, 1), z(1, 2)]);
        assert_eq!(h.nodes[&id].status().current_epoch, 2);
    }
    let zxid = h.propose(2, "x");
    assert_eq!(zxid, z(2, 1));
    h.settle();
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id), [z(1, 1), z(1, 2), z(2, 1)]);
    }
    // A follower refuses proposals and names the leader.
    let f = h.nodes.get_mut(&1).unwrap();
    assert_eq!(
        f.propose(Bytes::new()).unwrap_err(),
        ProposeError::NotLeader { leader: Some(2) }
    );
}

/// ZOOKEEPER-3911 and family: a follower must acknowledge NEWLEADER only once the history the
/// leader synchronized to it, and then its current epoch, are durable.
#[test]
fn newleader_is_acknowledged_only_after_the_synchronized_history_is_durable() {
    let states = [
        durable(0, 0, &[]),
        durable(1, 1, &[(1, 1), (1, 2), (1, 3)]),
        durable(1, 1, &[(1, 1), (1, 2), (1, 3)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[], &states);
    h.manual.insert(1);
    let leader = h.elect_without(1);
    assert_eq!(leader, 3);
    // Node 1 has not even acknowledged the epoch: its accepted epoch is not durable.
    let mut order = Vec::new();
    let mut acked_at = None;
    for i in 0..100 {
        h.settle();
        let Some((op, actions)) = h.persist_one(1) else {
            break;
        };
        let acks_newleader = actions.iter().any(|a| {
            matches!(a, Action::Send { msg: Message::Peer { packet: Packet::Ack { zxid }, .. }, .. } if zxid.counter() == 0)
        });
        if acks_newleader {
            acked_at = Some(i);
        }
        order.push((op, acks_newleader));
    }
    let kinds: Vec<String> = order
        .iter()
        .map(|(op, ack)| match op {
            StoreOp::Append { entries } => {
                format!("append {}{}", entries.len(), if *ack { " ACK" } else { "" })
            }
            StoreOp::Epochs { accepted, current } => {
                format!(
                    "epochs {accepted}/{current}{}",
                    if *ack { " ACK" } else { "" }
                )
            }
            other => format!("{other:?}"),
        })
        .collect();
    // Accept the epoch; log the three proposals (one message, one step, one store each: the
    // runtime folds them into one fsync); only then adopt the epoch, and only when that is
    // durable acknowledge NEWLEADER.
    assert_eq!(
        kinds,
        [
            "epochs 2/0",
            "append 1",
            "append 1",
            "append 1",
            "epochs 2/2 ACK"
        ],
        "{kinds:?}"
    );
    assert_eq!(acked_at, Some(4));
    h.settle();
    assert_eq!(h.applied_zxids(1), [z(1, 1), z(1, 2), z(1, 3)]);
}

impl Harness {
    /// Elects a leader among the servers other than `slow` (whose stores are manual).
    fn elect_without(&mut self, slow: PeerId) -> PeerId {
        for _ in 0..200 {
            self.tick(1);
            if let Some(l) = self.leader() {
                let rest = self
                    .nodes
                    .values()
                    .filter(|n| n.id() != slow)
                    .all(|n| n.status().serving);
                if rest {
                    return l;
                }
            }
        }
        panic!("no leader: {:?}", self.statuses());
    }
}

#[test]
fn the_leader_counts_its_own_ack_only_after_its_own_fsync() {
    let mut h = Harness::new(&[1, 2, 3], &[], &[]);
    let leader = h.elect();
    assert_eq!(leader, 3);
    h.isolated.insert(1);
    h.manual.insert(3);
    let zxid = h.propose(3, "x");
    h.settle();
    // Follower 2 logged and acknowledged it; 1 is cut off; the leader's own log write is pending.
    assert_eq!(h.nodes[&2].status().durable_zxid, zxid);
    assert!(
        h.applied_zxids(3).is_empty(),
        "committed before the leader's fsync"
    );
    let actions = h.persist_all(3);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Commit { .. })),
        "{actions:?}"
    );
    h.settle();
    assert_eq!(h.applied_zxids(3), [zxid]);
    assert_eq!(h.applied_zxids(2), [zxid]);
}

#[test]
fn observers_learn_every_commit_but_never_count() {
    let mut h = Harness::new(&[1, 2], &[3], &[]);
    let leader = h.elect();
    assert_eq!(leader, 2);
    assert_eq!(h.nodes[&3].status().state, ServerState::Observing);
    assert_eq!(
        h.roles[&3],
        [RoleChange::Observing {
            leader: 2,
            epoch: 1
        }]
    );
    // With the other voter cut off, the leader and the observer are not a quorum.
    h.isolated.insert(1);
    let zxid = h.propose(2, "x");
    h.tick(2);
    assert!(h.applied_zxids(2).is_empty());
    assert!(h.applied_zxids(3).is_empty());
    h.isolated.clear();
    // With two voters a follower cannot rejoin without the leader standing down (a quorum of
    // settled voters must vouch for the leader), so a new epoch follows; the observer notices its
    // leader went quiet and joins the new one.
    h.tick(20);
    let leader = h.elect();
    assert_eq!(
        h.roles[&3].last(),
        Some(&RoleChange::Observing {
            leader,
            epoch: h.nodes[&leader].status().current_epoch
        })
    );
    let after = h.propose(leader, "y");
    h.settle();
    for id in [1, 2, 3] {
        let applied = h.applied_zxids(id);
        assert_eq!(applied.last(), Some(&after), "{id}: {applied:?}");
        assert!(applied.contains(&zxid), "{id}: {applied:?}");
    }
    // The observer got INFORMs, never a PROPOSAL after synchronizing, and sent no ACK.
    let acks = h.sent[&3]
        .iter()
        .filter(|(_, m)| matches!(m, Message::Peer { packet: Packet::Ack { zxid }, .. } if zxid.counter() > 0))
        .count();
    assert_eq!(acks, 0);
}

#[test]
fn an_observer_and_a_minority_never_elect() {
    let mut h = Harness::new(&[1, 2, 3], &[4], &[]);
    h.isolated.insert(2);
    h.isolated.insert(3);
    h.tick(100);
    assert!(h.statuses().iter().all(|s| s.state == ServerState::Looking));
}

#[test]
fn a_dead_epochs_proposals_are_truncated_and_the_fork_point_is_kept() {
    // 1 has epoch 2 proposals that were never committed; 2 and 3 moved on to epoch 3 without them
    // and have 1:2, which 1 lacks.
    let states = [
        durable(2, 2, &[(1, 1), (2, 1), (2, 2)]),
        durable(3, 3, &[(1, 1), (1, 2), (3, 1)]),
        durable(3, 3, &[(1, 1), (1, 2), (3, 1)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[], &states);
    let leader = h.elect();
    assert_eq!(leader, 3);
    assert_eq!(h.applied_zxids(1), [z(1, 1), z(1, 2), z(3, 1)]);
    let truncs: Vec<&Message> = h.sent[&3]
        .iter()
        .filter(|(to, m)| {
            *to == 1
                && matches!(
                    m,
                    Message::Peer {
                        packet: Packet::Trunc { .. },
                        ..
                    }
                )
        })
        .map(|(_, m)| m)
        .collect();
    assert_eq!(truncs.len(), 1);
    assert!(
        matches!(truncs[0], Message::Peer { packet: Packet::Trunc { after }, .. } if *after == z(1, 1))
    );
}

#[test]
fn a_learner_behind_the_window_gets_a_snapshot() {
    let mut h = Harness::with(&[1, 2, 3], &[], &[], |c| c.committed_log_window = 2);
    let leader = h.elect();
    assert_eq!(leader, 3);
    h.isolated.insert(1);
    for i in 0..10 {
        h.propose(3, &format!("w{i}"));
        h.settle();
    }
    assert_eq!(h.applied_zxids(3).len(), 10);
    h.isolated.clear();
    let _ = h.elect();
    let leader = h.leader().unwrap();
    h.propose(leader, "after");
    h.settle();
    let expected = h.applied[&leader].clone();
    assert_eq!(expected.len(), 11);
    for id in [1, 2, 3] {
        assert_eq!(h.applied[&id], expected, "server {id}");
    }
    assert!(h.snapshots_sent >= 1);
    assert_eq!(h.installed.get(&1), Some(&1), "{:?}", h.installed);
    assert!(
        h.nodes[&1].status().committed_zxid == expected.last().unwrap().zxid,
        "{:?}",
        h.statuses()
    );
}

#[test]
fn an_exhausted_counter_forces_a_new_epoch() {
    let mut h = Harness::with(&[1], &[], &[], |c| c.max_zxid_counter = 3);
    h.elect();
    for c in 1..=3 {
        assert_eq!(h.propose(1, "x"), z(1, c));
    }
    let node = h.nodes.get_mut(&1).unwrap();
    assert_eq!(
        node.propose(Bytes::new()).unwrap_err(),
        ProposeError::CounterExhausted { epoch: 1 }
    );
    h.settle();
    h.elect();
    assert_eq!(h.propose(1, "y"), z(2, 1));
    h.settle();
    assert_eq!(h.applied_zxids(1), [z(1, 1), z(1, 2), z(1, 3), z(2, 1)]);
    assert!(h.roles[&1].contains(&RoleChange::Looking));
}

#[test]
fn back_pressure_refuses_past_the_outstanding_limit() {
    let mut h = Harness::with(&[1], &[], &[], |c| c.max_outstanding_proposals = 2);
    h.elect();
    h.manual.insert(1);
    h.propose(1, "a");
    h.propose(1, "b");
    let node = h.nodes.get_mut(&1).unwrap();
    assert_eq!(
        node.propose(Bytes::new()).unwrap_err(),
        ProposeError::Busy { outstanding: 2 }
    );
    // Numbering ahead of the window: the zxids the next proposals will get, whatever it holds.
    assert_eq!(node.zxid_after(0).unwrap(), z(1, 3));
    assert_eq!(node.zxid_after(5).unwrap(), z(1, 8));
    h.persist_all(1);
    assert_eq!(h.propose(1, "c"), z(1, 3));
}

#[test]
fn a_quiet_leader_is_abandoned_and_a_lonely_leader_stands_down() {
    let mut h = Harness::new(&[1, 2, 3], &[], &[]);
    assert_eq!(h.elect(), 3);
    h.isolated.insert(3);
    h.tick(8);
    assert_eq!(h.nodes[&3].status().state, ServerState::Looking);
    let new = h.leader();
    assert_eq!(new, Some(2), "{:?}", h.statuses());
    assert_eq!(h.nodes[&2].status().current_epoch, 2);
}

#[test]
fn inconsistent_durable_state_is_refused() {
    let cfg = || Config::new(1, [1].into(), BTreeSet::new());
    assert_eq!(
        Node::new(cfg(), durable(1, 2, &[])).unwrap_err(),
        NodeError::DurableState(DurableStateError::EpochsOutOfOrder {
            accepted: 1,
            current: 2
        })
    );
    assert!(matches!(
        Node::new(cfg(), durable(1, 1, &[(1, 1), (1, 3)])).unwrap_err(),
        NodeError::DurableState(DurableStateError::Hole { .. })
    ));
    assert!(matches!(
        Node::new(cfg(), durable(1, 1, &[(1, 1), (2, 1)])).unwrap_err(),
        NodeError::DurableState(DurableStateError::EntryFromTheFuture { .. })
    ));
    assert!(matches!(
        Node::new(
            Config::new(1, [2].into(), BTreeSet::new()),
            DurableState::default()
        ),
        Err(NodeError::Config(ConfigError::NotAMember(1)))
    ));
}

#[test]
fn duplicated_and_lost_session_packets() {
    // Deliver every leader→learner packet twice: duplicates are dropped, nothing breaks.
    let mut h = Harness::new(&[1, 2, 3], &[], &[]);
    h.elect();
    let before = h.net.len();
    assert_eq!(before, 0);
    let leader = h.leader().unwrap();
    h.propose(leader, "x");
    let dup: Vec<_> = h.net.iter().cloned().collect();
    h.net.extend(dup);
    h.settle();
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id).len(), 1);
    }
    // Lose one packet to follower 1: it notices the gap at the next packet and re-joins.
    h.propose(leader, "y");
    let pos = h.net.iter().position(|(_, to, _)| *to == 1).unwrap();
    h.net.remove(pos);
    h.settle();
    h.propose(leader, "z");
    h.settle();
    // It went back to electing, found the leader still there, and re-synchronized.
    assert!(
        h.roles[&1].contains(&RoleChange::Looking),
        "{:?}",
        h.roles[&1]
    );
    h.elect();
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id).len(), 3, "server {id}");
    }
}

/// A real node driven by hand-written messages from scripted peers (ZooKeeper's `Zab1_0Test`
/// pattern), to pin down exact message orders.
struct Scripted {
    node: Node,
    out: Vec<Action>,
}

impl Scripted {
    fn new(id: PeerId, voters: &[PeerId], state: DurableState) -> Scripted {
        let cfg = Config::new(id, voters.iter().copied().collect(), BTreeSet::new());
        let mut node = Node::new(cfg, state).unwrap();
        let out = node.step(Input::Tick);
        Scripted { node, out }
    }

    fn input(&mut self, input: Input) -> &[Action] {
        self.out = self.node.step(input);
        self.node.check_invariants().unwrap();
        assert_eq!(self.node.anomalies().0, 0, "{:?}", self.node.anomalies().1);
        &self.out
    }

    /// A packet from a scripted learner: `(session, epoch, seq)`.
    fn packet(&mut self, from: PeerId, env: (u64, u32, u64), packet: Packet) -> &[Action] {
        let (session, epoch, seq) = env;
        let msg = Message::Peer {
            session,
            epoch,
            seq,
            packet,
        };
        self.input(Input::Message { from, msg })
    }

    /// Completes every store operation issued so far.
    fn persist(&mut self) -> &[Action] {
        let seq = self
            .out
            .iter()
            .filter_map(|a| match a {
                Action::Store { seq, .. } => Some(*seq),
                _ => None,
            })
            .max()
            .expect("a store operation to complete");
        self.input(Input::Persisted { seq })
    }

    /// Makes the node settle on `peer` as its leader: it hears `peer`'s vote for itself, which
    /// beats its own, and the two make a quorum of three.
    fn settle_on_vote_of(&mut self, peer: PeerId) {
        self.input(Input::Message {
            from: peer,
            msg: notification(ServerState::Looking, peer, 1),
        });
        for _ in 0..3 {
            self.input(Input::Tick);
        }
    }

    /// Makes the node settle on itself as leader, with every other voter voting for it.
    fn elect_self(&mut self, others: &[PeerId]) {
        let id = self.node.id();
        let vote = Vote {
            leader: id,
            zxid: self.node.status().last_zxid,
            peer_epoch: self.node.status().current_epoch,
        };
        for &p in others {
            let n = Notification {
                state: ServerState::Looking,
                vote,
                election_epoch: 1,
            };
            self.input(Input::Message {
                from: p,
                msg: Message::Notification(n),
            });
        }
        for _ in 0..3 {
            self.input(Input::Tick);
        }
        assert_eq!(self.node.status().state, ServerState::Leading);
    }
}

fn packets_to(actions: &[Action], to: PeerId) -> Vec<Packet> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to: t,
                msg: Message::Peer { packet, .. },
            } if *t == to => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

fn ack_epoch(fresh: bool) -> Packet {
    Packet::AckEpoch(AckEpoch {
        fresh,
        current_epoch: 0,
        last_zxid: Zxid::ZERO,
        committed_zxid: Zxid::ZERO,
        epoch_ends: vec![],
    })
}

/// A voter that already accepted the epoch (promised it to another would-be leader) reports its
/// state but does not count: each server backs at most one leader per epoch.
#[test]
fn a_voter_that_already_accepted_the_epoch_does_not_count_towards_it() {
    let mut l = Scripted::new(3, &[1, 2, 3], DurableState::default());
    l.elect_self(&[1, 2]);
    // FOLLOWERINFO from 2 (accepted 0) makes a quorum: epoch 1, made durable before LEADERINFO.
    let out = l
        .packet(2, (22, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 })
        .to_vec();
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Store {
                op: StoreOp::Epochs {
                    accepted: 1,
                    current: 0
                },
                ..
            }
        )),
        "{out:?}"
    );
    assert!(
        packets_to(&out, 2).is_empty(),
        "LEADERINFO before the epoch is durable"
    );
    let out = l.persist().to_vec();
    assert_eq!(packets_to(&out, 2), [Packet::LeaderInfo { epoch: 1 }]);
    // 1 already accepted epoch 1 elsewhere.
    let out = l
        .packet(1, (11, 0, 1), Packet::FollowerInfo { accepted_epoch: 1 })
        .to_vec();
    assert_eq!(packets_to(&out, 1), [Packet::LeaderInfo { epoch: 1 }]);
    let out = l.packet(1, (11, 1, 2), ack_epoch(false)).to_vec();
    // Not a quorum (3 and a not-fresh 1): no current epoch, no synchronization.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(l.node.status().current_epoch, 0);
    // 2's fresh ACKEPOCH makes the quorum: the current epoch is written, both are synchronized.
    let out = l.packet(2, (22, 1, 2), ack_epoch(true)).to_vec();
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Store {
                op: StoreOp::Epochs {
                    accepted: 1,
                    current: 1
                },
                ..
            }
        )),
        "{out:?}"
    );
    for p in [1, 2] {
        assert_eq!(
            packets_to(&out, p),
            [
                Packet::Diff { after: Zxid::ZERO },
                Packet::NewLeader { epoch: 1 }
            ],
            "to {p}"
        );
    }
}

#[test]
fn a_learner_ahead_of_the_leader_makes_it_stand_down() {
    let mut l = Scripted::new(3, &[1, 2, 3], durable(1, 1, &[(1, 1)]));
    l.elect_self(&[1, 2]);
    l.packet(2, (22, 0, 1), Packet::FollowerInfo { accepted_epoch: 1 });
    l.persist();
    let ahead = Packet::AckEpoch(AckEpoch {
        fresh: true,
        current_epoch: 1,
        last_zxid: z(1, 2),
        committed_zxid: Zxid::ZERO,
        epoch_ends: vec![z(1, 2)],
    });
    // The leader chose epoch 2 (its accepted epoch was 1).
    let out = l.packet(2, (22, 2, 2), ahead).to_vec();
    assert!(out.contains(&Action::Role(RoleChange::Looking)), "{out:?}");
    assert_eq!(l.node.status().state, ServerState::Looking);
}

#[test]
fn a_stale_followerinfo_cannot_revive_an_ended_session() {
    let mut l = Scripted::new(3, &[1, 2, 3], DurableState::default());
    l.elect_self(&[1, 2]);
    l.packet(2, (22, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 });
    l.persist();
    // Packet 3 before packet 2: the session is broken and dropped.
    l.packet(2, (22, 1, 3), Packet::Ping { round: 0 });
    // A late copy of its FOLLOWERINFO does not bring it back; a new session does.
    let out = l
        .packet(2, (22, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 })
        .to_vec();
    assert!(packets_to(&out, 2).is_empty(), "{out:?}");
    let out = l
        .packet(2, (23, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 })
        .to_vec();
    assert_eq!(packets_to(&out, 2), [Packet::LeaderInfo { epoch: 1 }]);
    // Packets of this session with another leader instance (another epoch) are not part of this
    // stream: ignored without using up its numbers, so the real packet 2 still counts.
    let out = l.packet(2, (23, 7, 2), ack_epoch(true)).to_vec();
    assert!(out.is_empty(), "{out:?}");
    let out = l.packet(2, (23, 1, 2), ack_epoch(true)).to_vec();
    assert_eq!(
        packets_to(&out, 2),
        [
            Packet::Diff { after: Zxid::ZERO },
            Packet::NewLeader { epoch: 1 }
        ]
    );
}

/// A looking voter and a settled observer once answered each other's answers forever (and
/// duplicated messages multiplied the exchanges until the simulator saw a message storm). Only
/// questions get answers.
#[test]
fn answers_are_not_answered() {
    let voters: BTreeSet<PeerId> = [1, 2, 3].into();
    let observers: BTreeSet<PeerId> = [4].into();
    let mut voter = Node::new(
        Config::new(1, voters.clone(), observers.clone()),
        DurableState::default(),
    )
    .unwrap();
    voter.step(Input::Tick);
    let from_observer = |state| Input::Message {
        from: 4,
        msg: Message::Notification(Notification {
            state,
            vote: Vote {
                leader: 2,
                zxid: Zxid::ZERO,
                peer_epoch: 1,
            },
            election_epoch: 3,
        }),
    };
    // An observing observer is answering: no reply.
    assert_eq!(voter.step(from_observer(ServerState::Observing)), []);
    // A looking observer is asking: one reply.
    let out = voter.step(from_observer(ServerState::Looking));
    assert!(
        matches!(out.as_slice(), [Action::Send { to: 4, msg: Message::Notification(n) }] if n.state == ServerState::Looking),
        "{out:?}"
    );
    // A settled server answers a looking one, but not a settled one.
    let mut h = Harness::new(&[1, 2, 3], &[4], &[]);
    h.elect();
    let settled = |from, state| Input::Message {
        from,
        msg: Message::Notification(Notification {
            state,
            vote: Vote {
                leader: 3,
                zxid: Zxid::ZERO,
                peer_epoch: 1,
            },
            election_epoch: 1,
        }),
    };
    let node = h.nodes.get_mut(&4).unwrap();
    assert_eq!(node.step(settled(1, ServerState::Following)), []);
    assert_eq!(node.step(settled(1, ServerState::Looking)).len(), 1);
}

#[test]
fn a_lost_leaderinfo_costs_a_fresh_session_not_init_limit() {
    let mut h = Harness::with(&[1, 2, 3], &[], &[], |c| {
        c.init_limit_ticks = 100;
        c.connect_retry_ticks = 3;
    });
    // The leader (3, the largest id) answers member 1's FOLLOWERINFO once, and that answer is
    // lost on the way.
    h.lose.push((1, |m| {
        matches!(
            m,
            Message::Peer {
                packet: Packet::LeaderInfo { .. },
                ..
            }
        )
    }));
    let mut ticks = 0;
    while !(h.leader() == Some(3) && h.nodes.values().all(|n| n.status().serving)) {
        assert!(
            ticks < 20,
            "not all serving well before initLimit: {:?}",
            h.statuses()
        );
        h.tick(1);
        ticks += 1;
    }
    assert!(h.lose.is_empty(), "the LEADERINFO was never sent");
    // One election: nobody went back to electing.
    for id in [1, 2, 3] {
        assert!(
            !h.roles[&id].contains(&RoleChange::Looking),
            "{id} re-elected"
        );
    }
}

fn notification(state: ServerState, leader: PeerId, election_epoch: u64) -> Message {
    Message::Notification(Notification {
        state,
        vote: Vote {
            leader,
            zxid: Zxid::ZERO,
            peer_epoch: 0,
        },
        election_epoch,
    })
}

fn notifications_to(actions: &[Action], to: PeerId) -> Vec<Notification> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to: t,
                msg: Message::Notification(n),
            } if *t == to => Some(*n),
            _ => None,
        })
        .collect()
}

/// Member 1 heard member 2's vote for itself, settled on it, and asks it to lead; but member 2
/// heard member 3 in time and follows it. Member 2 says so when member 1's FOLLOWERINFO
/// arrives, and member 1 elects again at once and joins member 3, instead of waiting out
/// initLimit for a leader that will never answer (defect 7 of the reliability issue: one member
/// of a fresh ensemble started at once sat out initLimit).
#[test]
fn a_learner_that_settled_on_a_follower_is_told_and_joins_the_leader() {
    // Member 1's side.
    let mut one = Scripted::new(1, &[1, 2, 3], DurableState::default());
    one.settle_on_vote_of(2);
    assert_eq!(one.node.status().leader, Some(2), "settled on member 2");
    let told = one.input(Input::Message {
        from: 2,
        msg: notification(ServerState::Following, 3, 1),
    });
    assert!(
        told.contains(&Action::Role(RoleChange::Looking)),
        "{told:?}"
    );
    assert_eq!(one.node.status().state, ServerState::Looking);
    // The leader's answer to its new round completes a quorum of settled votes: it joins.
    let out = one
        .input(Input::Message {
            from: 3,
            msg: notification(ServerState::Leading, 3, 1),
        })
        .to_vec();
    assert_eq!(one.node.status().leader, Some(3));
    assert_eq!(
        packets_to(&out, 3),
        [Packet::FollowerInfo { accepted_epoch: 0 }]
    );

    // Member 2's side: following member 3, it answers a FOLLOWERINFO with whom it follows.
    let mut two = Scripted::new(2, &[1, 2, 3], DurableState::default());
    two.settle_on_vote_of(3);
    assert_eq!(two.node.status().leader, Some(3));
    let out = two
        .packet(1, (11, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 })
        .to_vec();
    let answer = notifications_to(&out, 1);
    assert_eq!(answer.len(), 1, "{out:?}");
    assert_eq!(answer[0].state, ServerState::Following);
    assert_eq!(answer[0].vote.leader, 3);
    // A leader's own learners are not told anything of the kind: only a stray FOLLOWERINFO is.
    let mut three = Scripted::new(3, &[1, 2, 3], DurableState::default());
    three.elect_self(&[1, 2]);
    let out = three
        .packet(1, (11, 0, 1), Packet::FollowerInfo { accepted_epoch: 0 })
        .to_vec();
    assert!(notifications_to(&out, 1).is_empty(), "{out:?}");
}

#[test]
fn a_single_voter_confirms_a_read_at_once() {
    let mut h = Harness::new(&[1], &[], &[]);
    h.elect();
    h.confirm(1, 7).unwrap();
    assert_eq!(h.confirmed(1), [7]);
}

#[test]
fn a_read_is_confirmed_only_after_a_quorum_echoes_a_round_started_after_it() {
    let mut h = Harness::new(&[1, 2, 3], &[4], &[]);
    let leader = h.elect();
    let followers: Vec<PeerId> = [1, 2, 3].into_iter().filter(|&p| p != leader).collect();
    // One follower cut off: the leader and the other follower are a quorum.
    h.isolated.insert(followers[1]);
    h.confirm(leader, 1).unwrap();
    assert!(h.confirmed(leader).is_empty(), "confirmed before any echo");
    // Reads asked while the round is in flight wait for the next one: no new PINGs yet.
    h.confirm(leader, 2).unwrap();
    h.confirm(leader, 3).unwrap();
    let pings = h
        .net
        .iter()
        .filter(|(from, _, m)| {
            *from == leader
                && matches!(
                    m,
                    Message::Peer {
                        packet: Packet::Ping { round: 1 },
                        ..
                    }
                )
        })
        .count();
    assert_eq!(pings, 3, "one round in flight: one PING per learner");
    h.settle();
    assert_eq!(h.confirmed(leader), [1, 2, 3]);
    // An observer's echo never counts: with both followers cut off, nothing is confirmed.
    h.isolated.insert(followers[0]);
    h.confirm(leader, 4).unwrap();
    h.settle();
    assert_eq!(h.confirmed(leader), [1, 2, 3]);
}

#[test]
fn a_deposed_leader_never_confirms_a_read() {
    let mut h = Harness::new(&[1, 2, 3], &[], &[]);
    let old = h.elect();
    h.isolated.insert(old);
    // Asked while it still believes it leads (within syncLimit of losing its followers).
    h.confirm(old, 1).unwrap();
    h.tick(8);
    let new = h.leader().expect("the others elect");
    assert_ne!(new, old);
    assert!(
        h.confirmed(old).is_empty(),
        "a deposed leader confirmed a read"
    );
    assert_eq!(h.nodes[&old].status().state, ServerState::Looking);
    assert!(matches!(
        h.nodes.get_mut(&old).unwrap().confirm_leadership(2),
        Err(ProposeError::NotLeader { .. })
    ));
    // The new leader confirms.
    h.confirm(new, 3).unwrap();
    h.settle();
    assert_eq!(h.confirmed(new), [3]);
}

/// Where in `id`'s actions the first one matching `f` is.
fn action_position(h: &Harness, id: PeerId, f: impl Fn(&Action) -> bool) -> Option<usize> {
    h.actions.get(&id).and_then(|a| a.iter().position(f))
}

fn is_newleader_ack(a: &Action) -> bool {
    matches!(a, Action::Send { msg: Message::Peer { packet: Packet::Ack { zxid }, .. }, .. } if zxid.counter() == 0)
}

fn clears_tail_cut(a: &Action) -> bool {
    matches!(
        a,
        Action::Store {
            op: StoreOp::ClearTailCut,
            ..
        }
    )
}

fn tail_cut(mut d: DurableState) -> DurableState {
    d.tail_cut = true;
    d
}

/// Reliability defect 4 (protocol-aware recovery, FAST'18): write 1:2 was committed by leader 1
/// with 2's acknowledgement; at 2's restart, recovery cut the tail of its log holding 1:2 (its
/// disk damaged it after it was synced); 3 never had it. With 1 down, 2 and 3 must not elect:
/// before, they did, and leader 3 went on without the committed write. Once 1 is back, 1 leads
/// with 1:2, and 2 clears its mark only after its synchronized history is durable.
#[test]
fn a_voter_that_cut_its_tail_abstains_until_synced_and_the_committed_write_survives() {
    let states = [
        durable(1, 1, &[(1, 1), (1, 2)]),
        tail_cut(durable(1, 1, &[(1, 1)])),
        durable(1, 1, &[(1, 1)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[], &states);
    assert!(h.nodes[&2].status().abstaining);
    assert!(!h.nodes[&3].status().abstaining);
    h.isolated.insert(1);
    h.tick(300);
    for s in h.statuses() {
        assert_eq!(s.state, ServerState::Looking, "{:?}", h.statuses());
    }
    // Every notification 2 sent backs nobody.
    let votes: Vec<Vote> = notifications_sent_by(&h, 2).map(|n| n.vote).collect();
    assert!(!votes.is_empty());
    assert!(votes.iter().all(|v| *v == Vote::NONE), "{votes:?}");
    assert!(action_position(&h, 2, clears_tail_cut).is_none());

    h.isolated.clear();
    let leader = h.elect();
    assert_eq!(leader, 1, "{:?}", h.statuses());
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id), [z(1, 1), z(1, 2)], "server {id}");
    }
    assert!(!h.nodes[&2].status().abstaining);
    // The mark goes after the NEWLEADER acknowledgement, which waited for the synchronized
    // history and the new current epoch to be durable; store operations complete in order.
    let ack = action_position(&h, 2, is_newleader_ack).expect("2 acknowledged NEWLEADER");
    let clear = action_position(&h, 2, clears_tail_cut).expect("2 cleared its mark");
    assert!(
        ack < clear,
        "cleared at {clear}, NEWLEADER acknowledged at {ack}"
    );
    let stores: Vec<&StoreOp> = h.actions[&2]
        .iter()
        .filter_map(|a| match a {
            Action::Store { op, .. } => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(
        stores
            .iter()
            .filter(|op| ***op == StoreOp::ClearTailCut)
            .count(),
        1
    );
    let epoch_at = stores
        .iter()
        .position(|op| matches!(op, StoreOp::Epochs { current: 2, .. }))
        .unwrap();
    let clear_at = stores
        .iter()
        .position(|op| **op == StoreOp::ClearTailCut)
        .unwrap();
    assert!(epoch_at < clear_at, "{stores:?}");
    for id in [1, 3] {
        assert!(action_position(&h, id, clears_tail_cut).is_none());
    }
    // Synchronized, 2 votes again: with 1 down, 2 and 3 (both with 1:2 now) elect, and the
    // committed history is kept.
    h.isolated.insert(1);
    h.tick(40);
    let leader = h.elect();
    assert_ne!(leader, 1);
    let zxid = h.propose(leader, "after");
    h.settle();
    for id in [2, 3] {
        assert_eq!(h.applied_zxids(id), [z(1, 1), z(1, 2), zxid], "server {id}");
    }
}

/// An abstaining voter is never elected, even with the longest log, and never settles from
/// looking votes: it joins the leader the others elected, and truncates what that leader lacks.
#[test]
fn an_abstaining_voter_with_the_longest_log_is_not_elected() {
    let states = [
        durable(1, 1, &[(1, 1), (1, 2)]),
        tail_cut(durable(1, 1, &[(1, 1), (1, 2), (1, 3)])),
        durable(1, 1, &[(1, 1)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[], &states);
    let leader = h.elect();
    assert_eq!(leader, 1, "{:?}", h.statuses());
    assert_eq!(
        h.roles[&2].first(),
        Some(&RoleChange::Following {
            leader: 1,
            epoch: 2
        })
    );
    for id in [1, 2, 3] {
        assert_eq!(h.applied_zxids(id), [z(1, 1), z(1, 2)], "server {id}");
        assert_eq!(h.nodes[&id].status().last_zxid, z(1, 2), "server {id}");
    }
    assert!(!h.nodes[&2].status().abstaining);
    assert!(action_position(&h, 2, clears_tail_cut).is_some());
}

/// Voters that abstain announce votes for nobody; those votes must not add up to a quorum for
/// nobody, for the voters or for an observer (which adopts voters' votes).
#[test]
fn abstaining_voters_votes_for_nobody_never_elect_anyone() {
    let states = [
        tail_cut(durable(1, 1, &[(1, 1)])),
        tail_cut(durable(1, 1, &[(1, 1)])),
        durable(1, 1, &[(1, 1)]),
    ];
    let mut h = Harness::new(&[1, 2, 3], &[4], &states);
    h.tick(200);
    for s in h.statuses() {
        assert_eq!(s.state, ServerState::Looking, "{:?}", h.statuses());
    }
}

/// A sole voter has no one to synchronize from: it warns and goes on (and leads); an observer
/// with a cut tail clears its mark once synchronized.
#[test]
fn a_sole_voter_goes_on_after_a_tail_cut_and_an_observer_clears_its_mark_when_synced() {
    let states = [
        tail_cut(durable(1, 1, &[(1, 1)])),
        tail_cut(durable(1, 1, &[])),
    ];
    let mut h = Harness::new(&[1], &[2], &states);
    assert!(!h.nodes[&1].status().abstaining);
    assert!(!h.nodes[&2].status().abstaining);
    let leader = h.elect();
    assert_eq!(leader, 1);
    assert_eq!(action_position(&h, 1, clears_tail_cut), Some(0));
    assert!(action_position(&h, 2, clears_tail_cut).is_some());
    assert_eq!(h.applied_zxids(2), [z(1, 1)]);
}

fn notifications_sent_by(h: &Harness, id: PeerId) -> impl Iterator<Item = Notification> + '_ {
    h.sent
        .get(&id)
        .into_iter()
        .flatten()
        .filter_map(|(_, m)| match m {
            Message::Notification(n) => Some(*n),
            _ => None,
        })
}
