//! What the simulated sessions do: the operation mix of the real-process workload
//! ([`crate::workload`]), one operation at a time per session, recorded as the real harness
//! records it: registers (reads, sync-reads, writes, compare-and-set), sequential creates,
//! reads leaving watches and their notifications (W1), the queue (J6), the pair written by
//! `multi` and read by `multiRead` (J4), and each session's ephemeral node, sessions closed,
//! abandoned and resumed (K6, S1).
//!
//! Watches: a notification is recorded when the client reads its frame, so it gets a smaller
//! sequence number than every reply read after it on the connection. After a reconnect within
//! the session the client re-arms its undelivered watches with `setWatches` from the last zxid
//! it saw, before any other request, as rookery-client does; the server then fires at once
//! (without a zxid) those whose register changed since. A watch ends (`Delivery::Ended`) when
//! its session ends, or if the server refuses to re-arm it.
//!
//! Sessions: each worker session first creates its ephemeral node; now and then one closes
//! itself and a new process takes the slot. The ephemeral slot's sessions live 0.3 to 2 s and
//! are then closed (and probed with two resumes of the closed session, each a new process) or
//! abandoned (the connection ends without a close). A session whose client has heard from no
//! member for a session timeout is given up by the client, as rookery-client does. At the end
//! every session is closed and the queue is drained by a session of its own.

use rand::Rng;
use rookery_proto::consts::{xid, OpCode};
use rookery_proto::jute::Reader;
use rookery_proto::records::{ConnectRequest, ConnectResponse, ReplyHeader};
use rookery_proto::request::Request;
use rookery_proto::response::Response;
use rookery_server::server::{ConnHandle, Event, Outbound};

use super::client::{self, Armed, Client, Frame, Part, Role, Take};
use super::{Ev, Sim, SimError, EPHEMERAL_PARENT, PAIR, QUEUE, SEQ_PARENT};
use crate::history::{value_of, Call, Delivery, Op, Outcome, Reply, ServerError, WatchEvent};
use crate::workload::{pick, queue_items, Draw, Step};

/// How long a resume probe tries to get a handshake answered (the real harness's connect
/// timeout), in µs.
const RESUME_TIMEOUT_US: u64 = 4_000_000;

/// How a session ended, for what the slot does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionEnd {
    /// Closed on purpose (the close was answered, or its connection was lost meanwhile).
    Closed,
    /// The ensemble refused the session as expired, or the client gave it up.
    Expired,
    /// Abandoned: the ensemble must expire it.
    Abandoned,
    /// A resume probe that got no answer.
    NoAnswer,
}

impl Sim {
    pub(super) fn new_client(&mut self, role: Role) -> Client {
        self.next_process += 1;
        Client::new(self.next_process, role)
    }

    pub(super) fn client_step(&mut self, c: usize) {
        if self.clients[c].done {
            return;
        }
        let now = self.now_us;
        let timeout_us = client::SESSION_TIMEOUT_MS as u64 * 1000;
        let cl = &self.clients[c];
        let probing = match (&cl.role, cl.in_flight) {
            (Role::Resume { .. }, Some(op)) if !cl.established_once => Some(op),
            _ => None,
        };
        if let Some(op) = probing {
            if now.saturating_sub(self.ops[op].invoke_ns / 1000) > RESUME_TIMEOUT_US {
                // No member answered the probe's handshake in time (as the real harness's
                // bound on its connect): nothing was resumed.
                self.session_over(c, SessionEnd::NoAnswer, "resume: no answer in time");
                if self.clients[c].done {
                    return;
                }
            }
        }
        let cl = &self.clients[c];
        if cl.established_once && now.saturating_sub(cl.last_heard_us) > timeout_us {
            // No member heard from for a session timeout: the client declares the session
            // lost (rookery-client's default client expiry), and the slot goes on.
            self.session_over(
                c,
                SessionEnd::Expired,
                "no member heard from within the session timeout",
            );
            if self.clients[c].done {
                return;
            }
        }
        match &self.clients[c].conn {
            None => {
                if self.winding_down && self.nothing_to_end(c) {
                    self.clients[c].done = true;
                    return;
                }
                // Connect to a member (ZooKeeper's clients try the connect string's members
                // in turn; a down member refuses at once).
                let up: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|m| m.is_up())
                    .map(|m| m.id)
                    .collect();
                if !up.is_empty() {
                    let member = up[self.rng.gen_range(0..up.len())];
                    self.connect(c, member);
                }
            }
            Some(conn) => {
                let silent_us = now.saturating_sub(conn.last_heard_us);
                if silent_us > timeout_us * 2 / 3 {
                    // ZooKeeper's client gives up on a silent connection after two thirds of
                    // the session timeout and tries another member.
                    self.lose_connection(c, "the connection went silent");
                } else if conn.established {
                    let cl = &self.clients[c];
                    if !cl.busy() && now >= cl.next_op_us {
                        self.act(c);
                    } else if now.saturating_sub(conn.last_sent_us) > timeout_us / 3 {
                        self.send(c, client::ping_xid(), Request::Ping, None);
                    }
                }
            }
        }
        if !self.clients[c].done {
            let d = self.rng.gen_range(1_000..20_000);
            self.after(d, Ev::ClientStep { client: c });
        }
    }

    /// During the wind-down, whether a slot without a connection has no session left to end.
    fn nothing_to_end(&self, c: usize) -> bool {
        let cl = &self.clients[c];
        match cl.role {
            Role::Drain { .. } => false,
            // A probe not yet sent is not started any more.
            Role::Resume { .. } => !cl.established_once && cl.in_flight.is_none(),
            Role::Worker | Role::Ephemeral { .. } => cl.session_id == 0,
        }
    }

    /// The session is established and idle: its next operation.
    fn act(&mut self, c: usize) {
        if self.winding_down && !matches!(self.clients[c].role, Role::Drain { .. }) {
            // Every session ends before the final listing.
            self.start_close(c, true);
            return;
        }
        let process = self.clients[c].process;
        match self.clients[c].role.clone() {
            Role::Worker => {
                if !self.clients[c].made_ephemeral {
                    self.clients[c].made_ephemeral = true;
                    let call = Call::CreateEphemeral {
                        path: format!("{EPHEMERAL_PARENT}/w{process}"),
                        token: self.next_token(),
                    };
                    self.invoke(c, call);
                } else if self.cfg.end_session_every > 0
                    && self.rng.gen_ratio(1, self.cfg.end_session_every)
                {
                    self.start_close(c, true);
                } else {
                    match self.pick(c) {
                        Step::Call(call) => self.invoke(c, call),
                        Step::Take => self.start_take(c, false),
                    }
                }
            }
            Role::Ephemeral {
                life_end_us,
                next_own,
            } => {
                if !self.clients[c].made_ephemeral {
                    self.clients[c].made_ephemeral = true;
                    let call = Call::CreateEphemeral {
                        path: format!("{EPHEMERAL_PARENT}/x{process}"),
                        token: self.next_token(),
                    };
                    self.invoke(c, call);
                    return;
                }
                let Some(life_end) = life_end_us else {
                    return;
                };
                if self.now_us < life_end {
                    // A sync-read, then a check of its own node, then a pause.
                    let own = self.clients[c].ephemeral.clone();
                    self.clients[c].role = Role::Ephemeral {
                        life_end_us,
                        next_own: !next_own,
                    };
                    if next_own {
                        self.clients[c].next_op_us =
                            self.now_us + self.rng.gen_range(50_000..=200_000);
                    }
                    match own {
                        Some(path) if next_own => self.invoke(c, Call::OwnEphemeral { path }),
                        _ => {
                            let key = self.random_register();
                            self.invoke(c, Call::SyncRead { key });
                        }
                    }
                    return;
                }
                // Cut off only when the ensemble has a session timeout (and a margin) to expire
                // the session before the load ends.
                let expire_by = self.now_us + client::SESSION_TIMEOUT_MS as u64 * 1000 + 3_000_000;
                if expire_by < self.load_end_us && self.rng.gen_bool(0.5) {
                    self.abandon(c);
                } else {
                    self.start_close(c, true);
                }
            }
            Role::Resume { own, checked, .. } => match own {
                Some(path) if !checked => {
                    if let Role::Resume { checked, .. } = &mut self.clients[c].role {
                        *checked = true;
                    }
                    self.invoke(c, Call::OwnEphemeral { path });
                }
                _ => self.start_close(c, true),
            },
            Role::Drain { empty } => {
                if empty {
                    self.start_close(c, false);
                } else {
                    self.start_take(c, true);
                }
            }
        }
    }

    fn random_register(&mut self) -> String {
        format!("/r{}", self.rng.gen_range(0..self.cfg.registers))
    }

    /// A value or token unique in the run.
    fn next_token(&mut self) -> u64 {
        let v = self.next_value;
        self.next_value += 1;
        v
    }

    /// A worker's next operation, drawn as the real workload draws it
    /// ([`crate::workload::pick`]).
    fn pick(&mut self, c: usize) -> Step {
        let registers = self.registers();
        let pair: Vec<String> = PAIR.iter().map(|k| k.to_string()).collect();
        let Sim {
            rng,
            clients,
            next_value,
            cfg,
            ..
        } = self;
        let client = &mut clients[c];
        let versions = &client.versions;
        let arming = &mut client.arming;
        let draw = Draw {
            mix: cfg.mix,
            registers: &registers,
            parent: SEQ_PARENT,
            queue: QUEUE,
            pair: &pair,
            seen: &|k| versions.get(k).copied().unwrap_or(0),
            ephemeral: client.ephemeral.as_deref(),
        };
        let mut next = || {
            let v = *next_value;
            *next_value += 1;
            v
        };
        pick(rng, &draw, &mut |k| arming.insert(k.to_owned()), &mut next)
    }

    pub(super) fn connect(&mut self, c: usize, member: u64) {
        // A resume probe is one attempt: its invocation is the connection's.
        if matches!(self.clients[c].role, Role::Resume { .. })
            && !self.clients[c].established_once
            && self.clients[c].in_flight.is_none()
        {
            let op = self.record(c, Call::Resume);
            self.clients[c].in_flight = Some(op);
        }
        let inc = self.members[(member - 1) as usize].incarnation;
        let conn_id = self.next_conn;
        self.next_conn += 1;
        let now = self.now_us;
        let (handle, req): (ConnHandle, ConnectRequest) =
            self.clients[c].connect(member, inc, conn_id, now);
        self.trace(|| {
            format!(
                "client {c} p{} connects to member {member} (session {:#x}, zxid {:#x})",
                self.clients[c].process, req.session_id, req.last_zxid_seen
            )
        });
        let ev = Event::Connect {
            conn: conn_id,
            req,
            addr: ([127, 0, 0, 1], 40_000 + c as u16).into(),
            handle,
            cert_subject: None,
        };
        self.send_to_server(c, ev);
    }

    pub(super) fn send_to_server(&mut self, c: usize, ev: Event) {
        let lat = self.rng.gen_range(20..500);
        let now = self.now_us;
        let conn = self.clients[c].conn.as_mut().expect("connected");
        let at = (now + lat).max(conn.last_to_server_us + 1);
        conn.last_to_server_us = at;
        conn.last_sent_us = now;
        let (member, inc) = (conn.member, conn.incarnation);
        self.at(at, Ev::ToServer { member, inc, ev });
    }

    pub(super) fn send(&mut self, c: usize, xid: i32, req: Request, part: Option<Part>) {
        let conn_id = self.clients[c].conn.as_ref().expect("connected").conn_id;
        if let Some(part) = part {
            self.clients[c].pending.insert(xid, part);
        }
        let ev = Event::Request {
            conn: conn_id,
            xid,
            req: Ok(req),
            permit: None,
            received: tokio::time::Instant::now(),
        };
        self.send_to_server(c, ev);
    }

    /// Records the invocation of `call` by client `c`, now.
    fn record(&mut self, c: usize, call: Call) -> usize {
        self.seq += 1;
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            process: self.clients[c].process,
            session_id: self.clients[c].session_id,
            call,
            invoke_ns: self.now_us * 1000,
            complete_ns: None,
            invoke_seq: self.seq,
            complete_seq: None,
            outcome: Outcome::Unknown {
                reason: "in flight".into(),
            },
        });
        id
    }

    /// Records `call` and sends its requests.
    fn invoke(&mut self, c: usize, call: Call) {
        let id = self.record(c, call.clone());
        self.clients[c].in_flight = Some(id);
        for (req, part) in client::requests(id, &call) {
            let xid = self.clients[c].xid();
            self.send(c, xid, req, Some(part));
        }
    }

    fn complete(&mut self, op: usize, outcome: Outcome) {
        self.trace(|| {
            let o = &self.ops[op];
            format!("p{} #{op} {:?} -> {outcome:?}", o.process, o.call)
        });
        self.seq += 1;
        let o = &mut self.ops[op];
        if !matches!(o.outcome, Outcome::Unknown { ref reason } if reason == "in flight") {
            return;
        }
        if !matches!(outcome, Outcome::Unknown { .. }) {
            o.complete_ns = Some(self.now_us * 1000);
            o.complete_seq = Some(self.seq);
        }
        o.outcome = outcome;
    }

    fn watch_event(&mut self, c: usize, key: String, set_by: u64, delivery: Delivery) {
        self.seq += 1;
        let cl = &self.clients[c];
        self.watches.push(WatchEvent {
            process: cl.process,
            session_id: cl.session_id,
            key,
            set_by,
            seq: self.seq,
            at_ns: self.now_us * 1000,
            delivery,
        });
    }

    pub(super) fn deliver_to_client(&mut self, c: usize, conn_id: u64, out: Option<Outbound>) {
        let Some(conn) = self.clients[c].conn.as_mut() else {
            return;
        };
        if conn.conn_id != conn_id {
            return;
        }
        conn.last_heard_us = self.now_us;
        let member = conn.member;
        let established = conn.established;
        match out {
            None | Some(Outbound::Close) => {
                self.lose_connection(c, "the member closed the connection")
            }
            Some(Outbound::Session(_)) => {}
            Some(Outbound::Frame(frame, _)) => {
                self.clients[c].last_heard_us = self.now_us;
                self.on_frame(c, member, &frame, established);
            }
        }
    }

    /// A frame of the member reached the client.
    fn on_frame(&mut self, c: usize, member: u64, frame: &[u8], established: bool) {
        let (header, body) = match client::decode_frame(frame, established) {
            Err(error) => {
                self.error = Some(SimError::Protocol { member, error });
                return;
            }
            Ok(Frame::Connected(resp)) => {
                self.on_connected(c, member, resp);
                return;
            }
            Ok(Frame::Reply(header, body)) => (header, body),
        };
        if header.xid == xid::NOTIFICATION {
            match client::decode_notification(&body) {
                Ok((event, path)) => self.on_notification(c, &header, event, path),
                Err(error) => self.error = Some(SimError::Protocol { member, error }),
            }
            return;
        }
        if header.xid == xid::PING {
            return;
        }
        let cl = &mut self.clients[c];
        // As rookery-client: replies (not pings, not notifications) move the zxid the client
        // has seen.
        if header.zxid > 0 {
            cl.last_zxid = cl.last_zxid.max(header.zxid);
        }
        let Some(part) = cl.pending.remove(&header.xid) else {
            self.error = Some(SimError::Protocol {
                member,
                error: format!("a reply to xid {} nobody asked", header.xid),
            });
            return;
        };
        // Replies come in request order: everything before this xid was answered (setWatches,
        // xid -8, goes first after a handshake).
        if let Some((&first, _)) = cl.pending.first_key_value() {
            if first < header.xid {
                self.error = Some(SimError::Protocol {
                    member,
                    error: format!(
                        "the reply to xid {} came before the reply to xid {first}",
                        header.xid
                    ),
                });
                return;
            }
        }
        self.on_reply(c, part, &header, &body);
    }

    fn on_connected(&mut self, c: usize, member: u64, resp: ConnectResponse) {
        self.trace(|| {
            format!(
                "client {c} p{} connected to member {member}: session {:#x}, timeout {}",
                self.clients[c].process, resp.session_id, resp.timeout_ms
            )
        });
        let resume = match self.clients[c].role {
            Role::Resume { .. } if !self.clients[c].established_once => self.clients[c].in_flight,
            _ => None,
        };
        if resp.timeout_ms <= 0 {
            if let Some(op) = resume {
                self.complete(op, Outcome::Failed(ServerError::SessionExpired));
                self.clients[c].in_flight = None;
            }
            // The session expired: the slot goes on with a new process.
            self.session_over(c, SessionEnd::Expired, "session expired");
            return;
        }
        if let Some(op) = resume {
            self.complete(op, Outcome::Ok(Reply::Done));
            self.clients[c].in_flight = None;
        }
        let cl = &mut self.clients[c];
        if cl.session_id != 0 && cl.session_id != resp.session_id {
            self.error = Some(SimError::Protocol {
                member,
                error: format!(
                    "asked to resume session {:#x}, given {:#x}",
                    cl.session_id, resp.session_id
                ),
            });
            return;
        }
        cl.session_id = resp.session_id;
        cl.passwd = resp.passwd;
        cl.established_once = true;
        cl.conn.as_mut().expect("connected").established = true;
        // Nothing the client sent before the handshake was answered: its in-flight operation
        // (if any) was lost with the old connection. Its undelivered watches are re-armed
        // first, as rookery-client does.
        if !cl.armed.is_empty() {
            let keys: Vec<String> = cl.armed.iter().map(|a| a.key.clone()).collect();
            let req = client::set_watches(cl.last_zxid, keys.clone());
            self.send(c, xid::SET_WATCHES, req, Some(Part::SetWatches(keys)));
        }
    }

    /// A watch notification: the delivery of the session's watch on that key.
    fn on_notification(&mut self, c: usize, header: &ReplyHeader, event: String, path: String) {
        let cl = &mut self.clients[c];
        let set_by = match cl.armed.iter().position(|a| a.key == path) {
            Some(i) => {
                cl.arming.remove(&path);
                cl.armed.remove(i).set_by
            }
            // A notification no armed watch expects (a second one, or one for a watch never
            // set): recorded against the key's last watch, or none (set_by 0 names no
            // operation), for the watch checker to report.
            None => cl.last_set.get(&path).copied().unwrap_or(0),
        };
        let delivery = Delivery::Fired {
            event,
            zxid: header.zxid,
        };
        self.watch_event(c, path, set_by, delivery);
    }

    /// Ends every watch the session still holds (they can no longer fire).
    fn end_watches(&mut self, c: usize, reason: &str) {
        let armed = std::mem::take(&mut self.clients[c].armed);
        self.clients[c].arming.clear();
        for a in armed {
            let delivery = Delivery::Ended {
                reason: reason.into(),
            };
            self.watch_event(c, a.key, a.set_by, delivery);
        }
    }

    fn on_reply(&mut self, c: usize, part: Part, header: &ReplyHeader, body: &[u8]) {
        match part {
            Part::Setup => {}
            Part::SyncOf(op) => {
                if header.err != 0 {
                    // The read behind it still runs; the sync's failure fails the operation.
                    let o = Outcome::Failed(ServerError::Other {
                        code: header.err,
                        name: "sync failed".into(),
                    });
                    self.complete(op, o);
                }
            }
            Part::SetWatches(keys) => {
                if header.err != 0 {
                    // Those watches are not armed on the server and never will fire.
                    let reason = format!("setWatches refused: error {}", header.err);
                    for key in keys {
                        let cl = &mut self.clients[c];
                        if let Some(i) = cl.armed.iter().position(|a| a.key == key) {
                            let a = cl.armed.remove(i);
                            cl.arming.remove(&key);
                            let delivery = Delivery::Ended {
                                reason: reason.clone(),
                            };
                            self.watch_event(c, key, a.set_by, delivery);
                        }
                    }
                }
            }
            Part::TakeList => self.on_take_list(c, header, body),
            Part::TakeRead(name) => self.on_take_read(c, name, header, body),
            Part::Close => self.session_over(c, SessionEnd::Closed, "session closed"),
            Part::Completes(op, op_code) => {
                let call = self.ops[op].call.clone();
                let outcome = client::outcome(&call, op_code, header, body);
                self.completed(c, op, outcome);
            }
        }
    }

    /// Operation `op` of client `c` completed (or became indeterminate) with `outcome`.
    fn completed(&mut self, c: usize, op: usize, outcome: Outcome) {
        let call = self.ops[op].call.clone();
        let invoke_seq = self.ops[op].invoke_seq;
        let life_us = self.rng.gen_range(300_000..=2_000_000);
        let now = self.now_us;
        let cl = &mut self.clients[c];
        if let Some(v) = client::version_seen(&outcome) {
            cl.versions.insert(call.key().to_owned(), v);
        }
        let ok = matches!(outcome, Outcome::Ok(_));
        let no_node = matches!(outcome, Outcome::Failed(ServerError::NoNode));
        match &call {
            Call::WatchRead { key, .. } => {
                if ok {
                    // Armed once the reply is read: a notification can only follow it.
                    cl.armed.push(Armed {
                        key: key.clone(),
                        set_by: invoke_seq,
                    });
                    cl.last_set.insert(key.clone(), invoke_seq);
                } else {
                    cl.arming.remove(key);
                }
            }
            Call::CreateEphemeral { path, .. } => {
                if ok {
                    cl.ephemeral = Some(path.clone());
                }
                if let Role::Ephemeral { life_end_us, .. } = &mut cl.role {
                    *life_end_us = Some(now + life_us);
                }
            }
            _ => {}
        }
        self.complete(op, outcome);
        if self.clients[c].in_flight == Some(op) {
            self.clients[c].in_flight = None;
        }
        match call {
            Call::Take { .. } => {
                let drain = self.clients[c].take.as_ref().is_some_and(|t| t.drain);
                if drain || no_node {
                    // Another consumer took it: the next candidate.
                    self.take_next(c);
                } else {
                    self.clients[c].take = None;
                }
            }
            // (Not when the session is already being ended.)
            Call::EndSession { .. } if self.clients[c].closing => {
                self.session_over(c, SessionEnd::Closed, "session closed")
            }
            _ => {}
        }
    }

    // === the queue ===

    /// A take, as Curator's `DistributedQueue` does it (and the real workload): list the
    /// items, read the lowest, delete it; on `NoNode` try the next, at most four. The final
    /// drain lists after a `sync` and tries every item. Only the `delete` is recorded.
    fn start_take(&mut self, c: usize, drain: bool) {
        self.clients[c].take = Some(Take {
            queue: QUEUE.into(),
            candidates: Default::default(),
            drain,
        });
        if drain {
            let xid = self.clients[c].xid();
            self.send(c, xid, client::sync(QUEUE), Some(Part::Setup));
        }
        let xid = self.clients[c].xid();
        self.send(c, xid, client::get_children(QUEUE), Some(Part::TakeList));
    }

    fn on_take_list(&mut self, c: usize, header: &ReplyHeader, body: &[u8]) {
        let Some(take) = self.clients[c].take.as_mut() else {
            return;
        };
        let names = match (
            header.err,
            Response::decode(OpCode::GetChildren, &mut Reader::new(body)),
        ) {
            (0, Ok(Response::GetChildren(r))) => r.children,
            // No queue node (only a broken ensemble loses it): nothing to take.
            (client::NO_NODE, _) => Vec::new(),
            _ => {
                self.clients[c].take = None;
                return;
            }
        };
        let mut items = queue_items(names);
        if !take.drain {
            items.truncate(4);
        }
        if items.is_empty() {
            let drain = take.drain;
            self.clients[c].take = None;
            if let (true, Role::Drain { empty }) = (drain, &mut self.clients[c].role) {
                *empty = true;
            }
            return;
        }
        take.candidates = items.into_iter().map(|(_, n)| n).collect();
        self.take_next(c);
    }

    fn take_next(&mut self, c: usize) {
        let Some(take) = self.clients[c].take.as_mut() else {
            return;
        };
        let Some(name) = take.candidates.pop_front() else {
            // The drain lists again; a worker's take found nothing to take.
            self.clients[c].take = None;
            return;
        };
        let path = format!("{}/{name}", take.queue);
        let xid = self.clients[c].xid();
        self.send(
            c,
            xid,
            client::get_data(&path, false),
            Some(Part::TakeRead(name)),
        );
    }

    fn on_take_read(&mut self, c: usize, name: String, header: &ReplyHeader, body: &[u8]) {
        let Some(take) = self.clients[c].take.as_ref() else {
            return;
        };
        let queue = take.queue.clone();
        if header.err == client::NO_NODE {
            self.take_next(c);
            return;
        }
        let token = match (
            header.err,
            Response::decode(OpCode::GetData, &mut Reader::new(body)),
        ) {
            (0, Ok(Response::GetData(d))) => value_of(d.data.as_deref().unwrap_or_default()),
            _ => {
                self.clients[c].take = None;
                return;
            }
        };
        self.invoke(c, Call::Take { queue, name, token });
    }

    // === session ends ===

    /// Closes the session (`closeSession`), recorded as [`Call::EndSession`] unless
    /// `recorded` is false (the final drain's session).
    fn start_close(&mut self, c: usize, recorded: bool) {
        self.clients[c].closing = true;
        if recorded {
            self.invoke(c, Call::EndSession { abandon: false });
        } else {
            let xid = self.clients[c].xid();
            self.send(c, xid, Request::CloseSession, Some(Part::Close));
        }
    }

    /// Abandons the session: the client stops talking (its connection ends, no close is
    /// sent), so the ensemble must expire it.
    fn abandon(&mut self, c: usize) {
        let op = self.record(c, Call::EndSession { abandon: true });
        self.complete(op, Outcome::Ok(Reply::Done));
        self.session_over(c, SessionEnd::Abandoned, "session abandoned");
    }

    /// The connection ended: what was in flight has an unknown outcome; reconnect later.
    pub(super) fn lose_connection(&mut self, c: usize, reason: &str) {
        if self.clients[c].conn.is_none() {
            return;
        }
        self.trace(|| format!("client {c} p{}: {reason}", self.clients[c].process));
        self.drop_conn(c);
        let cl = &self.clients[c];
        if cl.closing {
            // The client gives up on the session.
            self.session_over(c, SessionEnd::Closed, "connection lost while closing");
        } else if matches!(cl.role, Role::Resume { .. }) && !cl.established_once {
            // The probe tries another member, until its connect timeout.
            self.clients[c].pending.clear();
        } else {
            self.fail_in_flight(c, reason);
        }
    }

    /// Ends the client's connection, if any: the member sees it end (the socket closes).
    fn drop_conn(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn.take() else {
            return;
        };
        if self.up(conn.member, conn.incarnation) {
            let at = conn.last_to_server_us + 1;
            self.at(
                at,
                Ev::ToServer {
                    member: conn.member,
                    inc: conn.incarnation,
                    ev: Event::Disconnected { conn: conn.conn_id },
                },
            );
        }
    }

    fn fail_in_flight(&mut self, c: usize, reason: &str) {
        self.clients[c].pending.clear();
        self.clients[c].take = None;
        if let Some(op) = self.clients[c].in_flight.take() {
            // A resume that got no answer changed nothing (as the real harness records it).
            let outcome = if matches!(self.ops[op].call, Call::Resume) {
                Outcome::NotSent {
                    reason: reason.into(),
                }
            } else {
                Outcome::Unknown {
                    reason: reason.into(),
                }
            };
            self.completed(c, op, outcome);
        }
    }

    /// The session is over (closed, expired, abandoned, or a probe without an answer): its
    /// watches end, and the slot goes on with a new process (or is done, once the workload
    /// is over).
    fn session_over(&mut self, c: usize, end: SessionEnd, reason: &str) {
        self.drop_conn(c);
        self.clients[c].closing = false;
        self.fail_in_flight(c, reason);
        self.end_watches(c, reason);
        let old = &self.clients[c];
        let before_end = !self.winding_down && self.now_us < self.load_end_us;
        let own = match &old.role {
            Role::Resume { own, .. } => own.clone(),
            _ => old.ephemeral.clone(),
        };
        let resume = |probes_left| Role::Resume {
            own: own.clone(),
            probes_left,
            checked: false,
        };
        let next = match (&old.role, end) {
            (Role::Worker, _) if before_end => Some(Role::Worker),
            // A closed session of the ephemeral slot is probed twice with resumes.
            (Role::Ephemeral { .. }, SessionEnd::Closed) if before_end => Some(resume(1)),
            (Role::Resume { probes_left, .. }, _) if before_end && *probes_left > 0 => {
                Some(resume(probes_left - 1))
            }
            (Role::Ephemeral { .. } | Role::Resume { .. }, _) if before_end => {
                Some(Role::Ephemeral {
                    life_end_us: None,
                    next_own: false,
                })
            }
            (Role::Drain { empty: true }, SessionEnd::Closed) => None,
            (Role::Drain { .. }, _) => Some(Role::Drain { empty: false }),
            _ => None,
        };
        let (session_id, passwd) = (old.session_id, old.passwd.clone());
        match next {
            None => self.clients[c].done = true,
            Some(role) => {
                let probe = matches!(role, Role::Resume { .. });
                let mut fresh = self.new_client(role);
                if probe {
                    // A new client (a new process) with the closed session's id and password.
                    fresh.session_id = session_id;
                    fresh.passwd = passwd;
                }
                self.clients[c] = fresh;
            }
        }
    }
}
