//! Unit tests of the session machine with explicit time: no sockets, no sleeping.

use std::time::Duration;

use rookery_proto::frame::write_frame;
use rookery_proto::{
    AuthPacket, ConnectRequest, ConnectResponse, CreateRequest, EventType, GetDataResponse, Jute,
    PathWatchRequest, Reader, ReplyHeader, Request, RequestHeader, SetDataRequest, Stat,
    StatResponse, WatcherEvent, WatcherType,
};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::time::Instant;

use super::*;
use crate::types::PersistentEvent;

const T: Duration = Duration::from_millis(3000);

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.into(),
        port,
    }
}

fn cfg() -> SessionConfig {
    SessionConfig {
        hosts: vec![hp("a", 1), hp("b", 2)],
        session_timeout: T,
        connect_timeout: None,
        read_only: false,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        max_frame_len: 1 << 20,
        seed: 1,
        resume: None,
        expiry_factor: 1.0,
        renew: false,
    }
}

fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

fn requests(bytes: &[u8]) -> Vec<(RequestHeader, Request)> {
    frames(bytes)
        .into_iter()
        .map(|f| {
            let mut r = Reader::new(&f);
            let h = RequestHeader::decode(&mut r).unwrap();
            let req = Request::decode(h.op, &mut r).unwrap();
            (h, req)
        })
        .collect()
}

fn reply(xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        ReplyHeader { xid, zxid, err }.encode(o);
        body(o);
    });
    out
}

fn empty_reply(xid: i32, zxid: i64, err: i32) -> Vec<u8> {
    reply(xid, zxid, err, |_| {})
}

fn notification(ty: EventType, path: &str) -> Vec<u8> {
    reply(-1, -1, 0, |o| {
        WatcherEvent {
            event_type: ty.code(),
            state: 3,
            path: path.into(),
        }
        .encode(o)
    })
}

fn connect_response(timeout_ms: i32, session_id: i64, read_only: Option<bool>) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id,
            passwd: vec![7; 16],
            read_only,
        }
        .encode(o)
    });
    out
}

fn get_data(path: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

fn set_data(path: &str) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(b"x".to_vec()),
        version: -1,
    })
}

fn get_data_body(o: &mut Vec<u8>) {
    GetDataResponse {
        data: Some(b"d".to_vec()),
        stat: Stat::default(),
    }
    .encode(o)
}

struct Harness {
    s: Session,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new(cfg: SessionConfig) -> Self {
        let t0 = Instant::now();
        Harness {
            s: Session::new(cfg, t0),
            t0,
            now: t0,
        }
    }

    fn at(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
    }

    fn ms(&self, i: Instant) -> u64 {
        u64::try_from((i - self.t0).as_millis()).unwrap()
    }

    /// Runs timers until the machine asks for a connection (bounded).
    fn next_connect(&mut self) -> (u64, HostPort) {
        for _ in 0..1000 {
            while let Some(a) = self.s.poll_action() {
                if let Action::Connect { attempt, host } = a {
                    return (attempt, host);
                }
            }
            let t = self.s.poll_timeout().expect("a timer");
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
        }
        panic!("no connect action");
    }

    fn sent(&mut self) -> Vec<u8> {
        self.s.poll_transmit().unwrap_or_default()
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.s.handle_read(bytes, self.now);
    }

    /// Connects the next attempt and returns the ConnectRequest it sent.
    fn handshake(&mut self) -> ConnectRequest {
        let (attempt, _) = self.next_connect();
        self.s.handle_connected(attempt, self.now);
        let f = frames(&self.sent());
        assert_eq!(
            f.len(),
            1,
            "only the ConnectRequest goes out before the response"
        );
        ConnectRequest::decode(&mut Reader::new(&f[0])).unwrap()
    }

    fn establish(&mut self, session_id: i64) -> ConnectRequest {
        let req = self.handshake();
        self.feed(&connect_response(
            T.as_millis() as i32,
            session_id,
            Some(false),
        ));
        assert_eq!(self.s.state(), SessionState::Connected);
        req
    }

    fn submit(&mut self, request: Request, effect: Effect) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let path = match &request {
            Request::GetData(r) | Request::Exists(r) | Request::GetChildren(r) => r.path.clone(),
            Request::AddWatch(r) => r.path.clone(),
            _ => String::new(),
        };
        self.s.submit(
            Submission {
                request,
                path,
                effect,
                completion: tx,
                permit: None,
            },
            self.now,
        );
        rx
    }

    /// Every session event so far, as (kind, generation).
    fn events(&mut self) -> Vec<(SessionEventKind, u64)> {
        std::iter::from_fn(|| self.s.poll_event())
            .map(|e| (e.kind, e.generation))
            .collect()
    }
}

#[test]
fn queued_request_goes_out_after_the_handshake() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.s.state(), SessionState::Disconnected);
    let mut rx = h.submit(get_data("/a", false), Effect::None);
    let req = h.establish(0x42);
    assert_eq!(req.session_id, 0);
    assert_eq!(req.passwd, vec![0; 16]);
    assert_eq!(req.timeout_ms, 3000);
    assert_eq!(req.read_only, Some(false));
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0.xid, 1);
    assert_eq!(reqs[0].1, get_data("/a", false));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    h.feed(&reply(1, 5, 0, get_data_body));
    let out = rx.try_recv().unwrap();
    assert!(matches!(out.result, Ok(Response::GetData(_))));
    assert_eq!(h.s.last_zxid(), 5);
    assert_eq!(h.s.session_id(), 0x42);
    assert_eq!(h.s.negotiated_timeout(), Some(T));
}

#[test]
fn pings_at_a_third_and_drops_a_silent_connection_at_two_thirds() {
    let mut h = Harness::new(cfg());
    h.establish(1);
    let t_conn = h.ms(h.now);
    assert_eq!(h.ms(h.s.poll_timeout().unwrap()), t_conn + 1000);
    h.at(t_conn + 1000);
    h.s.handle_timeout(h.now);
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0.xid, -2);
    assert_eq!(reqs[0].1, Request::Ping);

    h.at(t_conn + 1500);
    h.feed(&empty_reply(-2, 9, 0));
    // Next: the ping at +2000 (read deadline is +3500).
    assert_eq!(h.ms(h.s.poll_timeout().unwrap()), t_conn + 2000);
    h.at(t_conn + 2000);
    h.s.handle_timeout(h.now);
    assert_eq!(requests(&h.sent())[0].1, Request::Ping);
    // Silence: pings at +3000, then the connection is dropped at +3500.
    h.at(t_conn + 3000);
    h.s.handle_timeout(h.now);
    assert_eq!(h.s.state(), SessionState::Connected);
    assert_eq!(h.ms(h.s.poll_timeout().unwrap()), t_conn + 3500);
    h.at(t_conn + 3500);
    h.s.handle_timeout(h.now);
    assert_eq!(h.s.state(), SessionState::Disconnected);
    assert_eq!(h.s.poll_action(), Some(Action::CloseTransport));
}

#[test]
fn lost_connection_fails_sent_requests_and_keeps_unsent_ones() {
    let mut h = Harness::new(cfg());
    h.establish(0x99);
    // A reply with no request outstanding is a protocol error: the connection is dropped.
    h.feed(&empty_reply(1, 1, 0));
    assert_eq!(h.s.state(), SessionState::Disconnected);
    let req = h.handshake();
    assert_eq!(req.session_id, 0x99, "same session");
    assert_eq!(req.passwd, vec![7; 16], "same password");
    h.feed(&connect_response(3000, 0x99, Some(false)));

    let mut write = h.submit(set_data("/w"), Effect::None);
    let mut read = h.submit(get_data("/r", false), Effect::None);
    let sent = requests(&h.sent());
    assert_eq!(sent.len(), 2);
    // Queued after the last transmit: never handed to the transport.
    let mut unsent = h.submit(get_data("/later", false), Effect::None);
    h.s.handle_transport_closed(h.now);
    assert_eq!(h.s.state(), SessionState::Disconnected);
    assert_eq!(
        write.try_recv().unwrap().result.unwrap_err(),
        Error::ConnectionLoss {
            outcome_unknown: true
        }
    );
    let read_err = read.try_recv().unwrap().result.unwrap_err();
    assert_eq!(
        read_err,
        Error::ConnectionLoss {
            outcome_unknown: false
        }
    );
    assert!(read_err.is_retryable());
    assert!(matches!(unsent.try_recv(), Err(TryRecvError::Empty)));

    // The unsent request goes out on the next connection, with a fresh xid.
    let (attempt, _) = h.next_connect();
    h.s.handle_connected(attempt, h.now);
    let _ = h.sent();
    h.feed(&connect_response(3000, 0x99, Some(false)));
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, get_data("/later", false));
    let xid = reqs[0].0.xid;
    h.feed(&reply(xid, 3, 0, get_data_body));
    assert!(unsent.try_recv().unwrap().result.is_ok());
}

#[test]
fn reconnect_sends_auth_then_set_watches_then_requests() {
    let mut h = Harness::new(cfg());
    h.establish(5);
    let (atx, mut arx) = oneshot::channel();
    h.s.add_auth(
        AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b"u:p".to_vec(),
        },
        atx,
        h.now,
    );
    let mut data = h.submit(get_data("/d", true), Effect::Watch(WatchKind::Data));
    let mut exist = h.submit(
        Request::Exists(PathWatchRequest {
            path: "/e".into(),
            watch: true,
        }),
        Effect::ExistsWatch,
    );
    let reqs = requests(&h.sent());
    assert_eq!(reqs[0].0.xid, -4);
    let (x1, x2) = (reqs[1].0.xid, reqs[2].0.xid);
    // The auth reply comes at once, out of pipeline order.
    h.feed(&empty_reply(-4, 0, 0));
    assert!(arx.try_recv().unwrap().result.is_ok());
    h.feed(&reply(x1, 10, 0, get_data_body));
    h.feed(&empty_reply(x2, 11, -101));
    let data_out = data.try_recv().unwrap();
    assert!(matches!(data_out.watch, Some(WatchSub::Oneshot { .. })));
    let exist_out = exist.try_recv().unwrap();
    assert_eq!(exist_out.result.unwrap_err(), Error::NoNode);
    let Some(WatchSub::Oneshot {
        rx: mut exist_rx, ..
    }) = exist_out.watch
    else {
        panic!("exists leaves a watch on NONODE");
    };
    assert_eq!(h.s.watcher_count(), 2);

    h.s.handle_transport_closed(h.now);
    let mut later = h.submit(get_data("/q", false), Effect::None);
    let req = h.handshake();
    assert_eq!(req.last_zxid_seen, 11);
    h.feed(&connect_response(3000, 5, Some(false)));
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[0].0.xid, -4);
    assert!(matches!(&reqs[0].1, Request::Auth(a) if a.auth == b"u:p"));
    assert_eq!(reqs[1].0.xid, -8);
    match &reqs[1].1 {
        Request::SetWatches(sw) => {
            assert_eq!(sw.relative_zxid, 11);
            assert_eq!(sw.data_watches, ["/d"]);
            assert_eq!(sw.exist_watches, ["/e"]);
            assert!(sw.child_watches.is_empty());
        }
        other => panic!("expected setWatches (no persistent watches), got {other:?}"),
    }
    assert_eq!(reqs[2].1, get_data("/q", false));
    // Catch-up events come before the setWatches reply.
    h.feed(&empty_reply(-4, 0, 0));
    h.feed(&notification(EventType::NodeCreated, "/e"));
    h.feed(&empty_reply(-8, 12, 0));
    assert_eq!(
        exist_rx.try_recv().unwrap().unwrap().event_type,
        EventType::NodeCreated
    );
    h.feed(&reply(reqs[2].0.xid, 12, 0, get_data_body));
    assert!(later.try_recv().unwrap().result.is_ok());
}

#[test]
fn persistent_watches_use_set_watches2() {
    let mut h = Harness::new(cfg());
    h.establish(5);
    let mut add = h.submit(
        Request::AddWatch(rookery_proto::AddWatchRequest {
            path: "/p".into(),
            mode: 1,
        }),
        Effect::Watch(WatchKind::Recursive),
    );
    let x = requests(&h.sent())[0].0.xid;
    h.feed(&reply(x, 3, 0, |o| 0i32.encode(o)));
    let Some(WatchSub::Persistent { rx: mut events, .. }) = add.try_recv().unwrap().watch else {
        panic!("addWatch leaves a persistent watch");
    };
    h.s.handle_transport_closed(h.now);
    h.handshake();
    h.feed(&connect_response(3000, 5, Some(false)));
    let reqs = requests(&h.sent());
    match &reqs[0].1 {
        Request::SetWatches2(sw) => {
            assert_eq!(sw.relative_zxid, 3);
            assert_eq!(sw.persistent_recursive_watches, ["/p"]);
        }
        other => panic!("expected setWatches2, got {other:?}"),
    }
    // The stream is told to re-read before anything of the new connection arrives.
    assert_eq!(events.try_recv().unwrap(), PersistentEvent::Resync);
    h.feed(&notification(EventType::NodeDataChanged, "/p/child"));
    let PersistentEvent::Node(ev) = events.try_recv().unwrap() else {
        panic!("expected a node event");
    };
    assert_eq!(ev.path, "/p/child");
}

#[test]
fn many_watches_are_re_armed_in_batches() {
    let mut h = Harness::new(cfg());
    h.establish(5);
    let long = "x".repeat(1000);
    let mut keep = Vec::new();
    for i in 0..300 {
        let path = format!("/{long}{i}");
        let mut rx = h.submit(get_data(&path, true), Effect::Watch(WatchKind::Data));
        let x = requests(&h.sent())[0].0.xid;
        h.feed(&reply(x, 1, 0, get_data_body));
        keep.push(rx.try_recv().unwrap().watch.unwrap());
    }
    h.s.handle_transport_closed(h.now);
    h.handshake();
    h.feed(&connect_response(3000, 5, Some(false)));
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 3, "300 KB of paths in 128 KB batches");
    let mut total = 0;
    for (hdr, req) in &reqs {
        assert_eq!(hdr.xid, -8);
        let Request::SetWatches(sw) = req else {
            panic!("{req:?}")
        };
        let bytes: usize = sw.data_watches.iter().map(String::len).sum();
        assert!(bytes <= SET_WATCHES_MAX_BYTES);
        total += sw.data_watches.len();
    }
    assert_eq!(total, 300);
}

#[test]
fn client_declares_expiry_after_the_session_timeout() {
    let mut h = Harness::new(cfg());
    h.establish(7);
    let mut w = h.submit(get_data("/d", true), Effect::Watch(WatchKind::Data));
    let x = requests(&h.sent())[0].0.xid;
    h.at(500);
    h.feed(&reply(x, 2, 0, get_data_body));
    let Some(WatchSub::Oneshot { rx: mut watch, .. }) = w.try_recv().unwrap().watch else {
        panic!()
    };
    let last_heard = h.now;
    h.at(600);
    h.s.handle_transport_closed(h.now);
    let mut pending = h.submit(get_data("/p", false), Effect::None);
    // Every attempt fails; the machine keeps trying (bounded) until T after the last reply.
    let mut attempts = 0;
    for _ in 0..1000 {
        if h.s.is_terminal() {
            break;
        }
        while let Some(a) = h.s.poll_action() {
            if let Action::Connect { attempt, .. } = a {
                attempts += 1;
                h.s.handle_connect_failed(attempt, h.now);
            }
        }
        let t = h.s.poll_timeout().expect("a timer while not terminal");
        h.now = h.now.max(t);
        h.s.handle_timeout(h.now);
    }
    assert_eq!(h.s.state(), SessionState::Expired);
    assert_eq!(
        h.now,
        last_heard + T,
        "expired exactly one session timeout after last contact"
    );
    assert!(attempts >= 5, "{attempts} attempts");
    assert_eq!(
        pending.try_recv().unwrap().result.unwrap_err(),
        Error::SessionExpired
    );
    assert_eq!(watch.try_recv().unwrap(), Err(Error::SessionExpired));
    // Later calls fail at once.
    let mut late = h.submit(get_data("/z", false), Effect::None);
    assert_eq!(
        late.try_recv().unwrap().result.unwrap_err(),
        Error::SessionExpired
    );
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn handshake_timeout_moves_to_the_next_host_with_backoff() {
    let mut h = Harness::new(cfg());
    let (a1, host1) = h.next_connect();
    h.s.handle_connected(a1, h.now);
    let _ = h.sent();
    // Attempt timeout = max(T / 2 hosts, 1 s) = 1.5 s.
    assert_eq!(h.ms(h.s.poll_timeout().unwrap()), 1500);
    h.at(1500);
    h.s.handle_timeout(h.now);
    assert_eq!(h.s.poll_action(), Some(Action::CloseTransport));
    let (_, host2) = h.next_connect();
    assert_ne!(host1, host2, "the next attempt goes to the other host");
    assert!(
        h.now > h.t0 + Duration::from_millis(1500),
        "after a back-off"
    );
    assert!(h.now <= h.t0 + Duration::from_millis(1510));

    // The same seed gives the same host order.
    let mut again = Harness::new(cfg());
    assert_eq!(again.next_connect().1, host1);
}

#[test]
fn server_side_expiry_and_read_only() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    h.s.handle_transport_closed(h.now);
    h.handshake();
    h.feed(&connect_response(0, 0, Some(false)));
    assert_eq!(h.s.state(), SessionState::Expired);
    assert_eq!(h.s.poll_action(), Some(Action::CloseTransport));

    let mut ro = cfg();
    ro.read_only = true;
    let mut h = Harness::new(ro);
    let req = h.handshake();
    assert_eq!(req.read_only, Some(true));
    h.feed(&connect_response(3000, 0x77, Some(true)));
    assert_eq!(h.s.state(), SessionState::ConnectedReadOnly);
    h.s.handle_transport_closed(h.now);
    // Never seen a read-write server: ask for a new session again.
    let req = h.handshake();
    assert_eq!(req.session_id, 0);
    h.feed(&connect_response(3000, 0x78, Some(false)));
    assert_eq!(h.s.state(), SessionState::Connected);
    h.s.handle_transport_closed(h.now);
    let req = h.handshake();
    assert_eq!(req.session_id, 0x78);
}

#[test]
fn auth_failure_is_terminal() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut pending = h.submit(get_data("/x", false), Effect::None);
    let (atx, mut arx) = oneshot::channel();
    h.s.add_auth(
        AuthPacket {
            auth_type: 0,
            scheme: "bogus".into(),
            auth: vec![],
        },
        atx,
        h.now,
    );
    let _ = h.sent();
    h.feed(&empty_reply(-4, 0, -115));
    assert_eq!(h.s.state(), SessionState::AuthFailed);
    assert_eq!(
        arx.try_recv().unwrap().result.unwrap_err(),
        Error::AuthFailed
    );
    assert_eq!(
        pending.try_recv().unwrap().result.unwrap_err(),
        Error::AuthFailed
    );
}

#[test]
fn dropped_watchers_remove_the_server_watch_once_unused() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut rx = h.submit(get_data("/w", true), Effect::Watch(WatchKind::Data));
        let x = requests(&h.sent())[0].0.xid;
        h.feed(&reply(x, 1, 0, get_data_body));
        match rx.try_recv().unwrap().watch {
            Some(WatchSub::Oneshot { id, .. }) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    h.s.remove_watcher(ids[0], h.now);
    assert!(h.sent().is_empty(), "another watcher still needs it");
    // A watch-setting request in flight on the same path also keeps the server watch.
    let mut inflight = h.submit(get_data("/w", true), Effect::Watch(WatchKind::Data));
    let x = requests(&h.sent())[0].0.xid;
    h.s.remove_watcher(ids[1], h.now);
    assert!(h.sent().is_empty());
    h.feed(&reply(x, 1, 0, get_data_body));
    let Some(WatchSub::Oneshot { id: last, .. }) = inflight.try_recv().unwrap().watch else {
        panic!()
    };
    h.s.remove_watcher(last, h.now);
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 1);
    match &reqs[0].1 {
        Request::RemoveWatches(r) => {
            assert_eq!(r.path, "/w");
            assert_eq!(r.watcher_type, WatcherType::Data.code());
        }
        other => panic!("{other:?}"),
    }
    // NOWATCHER (it fired meanwhile) is ignored.
    h.feed(&empty_reply(reqs[0].0.xid, 1, -121));
    assert_eq!(h.s.state(), SessionState::Connected);
}

#[test]
fn persistent_removal_falls_back_to_any_on_old_servers() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut rx = h.submit(
        Request::AddWatch(rookery_proto::AddWatchRequest {
            path: "/p".into(),
            mode: 0,
        }),
        Effect::Watch(WatchKind::Persistent),
    );
    let x = requests(&h.sent())[0].0.xid;
    h.feed(&reply(x, 1, 0, |o| 0i32.encode(o)));
    let Some(WatchSub::Persistent { id, .. }) = rx.try_recv().unwrap().watch else {
        panic!()
    };
    h.s.remove_watcher(id, h.now);
    let reqs = requests(&h.sent());
    let Request::RemoveWatches(r) = &reqs[0].1 else {
        panic!()
    };
    assert_eq!(r.watcher_type, WatcherType::Persistent.code());
    // 3.8.0 does not know type 4: MARSHALLINGERROR, then type Any.
    h.feed(&empty_reply(reqs[0].0.xid, 1, -5));
    let reqs = requests(&h.sent());
    let Request::RemoveWatches(r) = &reqs[0].1 else {
        panic!()
    };
    assert_eq!(r.watcher_type, WatcherType::Any.code());
}

#[test]
fn a_dropped_call_future_does_not_leak_its_watch() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let rx = h.submit(get_data("/gone", true), Effect::Watch(WatchKind::Data));
    let x = requests(&h.sent())[0].0.xid;
    drop(rx);
    h.feed(&reply(x, 1, 0, get_data_body));
    assert_eq!(h.s.watcher_count(), 0);
    let reqs = requests(&h.sent());
    assert!(matches!(&reqs[0].1, Request::RemoveWatches(r) if r.path == "/gone"));
}

#[test]
fn close_when_connected_and_when_not() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut before = h.submit(
        Request::Create(CreateRequest {
            path: "/c".into(),
            data: None,
            acl: vec![],
            flags: 0,
        }),
        Effect::None,
    );
    let (tx, mut done) = oneshot::channel();
    h.s.close(Some(tx), h.now);
    let reqs = requests(&h.sent());
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].1, Request::CloseSession);
    let mut after = h.submit(get_data("/x", false), Effect::None);
    assert_eq!(
        after.try_recv().unwrap().result.unwrap_err(),
        Error::ClientClosed
    );
    h.feed(&reply(reqs[0].0.xid, 4, 0, |o| "/c".to_string().encode(o)));
    assert!(before.try_recv().unwrap().result.is_ok());
    assert!(matches!(done.try_recv(), Err(TryRecvError::Empty)));
    h.feed(&empty_reply(reqs[1].0.xid, 5, 0));
    assert_eq!(h.s.state(), SessionState::Closed);
    assert!(done.try_recv().is_ok());

    // Disconnected: closes locally at once.
    let mut h = Harness::new(cfg());
    let mut queued = h.submit(get_data("/x", false), Effect::None);
    let (tx, mut done) = oneshot::channel();
    h.s.close(Some(tx), h.now);
    assert_eq!(h.s.state(), SessionState::Closed);
    assert!(done.try_recv().is_ok());
    assert_eq!(
        queued.try_recv().unwrap().result.unwrap_err(),
        Error::ClientClosed
    );
}

#[test]
fn out_of_order_reply_drops_the_connection() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut rx = h.submit(set_data("/a"), Effect::None);
    let x = requests(&h.sent())[0].0.xid;
    h.feed(&reply(x + 5, 1, 0, |o| {
        StatResponse {
            stat: Stat::default(),
        }
        .encode(o)
    }));
    assert_eq!(h.s.state(), SessionState::Disconnected);
    assert!(rx
        .try_recv()
        .unwrap()
        .result
        .unwrap_err()
        .is_outcome_unknown());
}

#[test]
fn replies_split_across_reads_are_reassembled() {
    let mut h = Harness::new(cfg());
    h.establish(3);
    let mut rx = h.submit(get_data("/a", false), Effect::None);
    let x = requests(&h.sent())[0].0.xid;
    let bytes = reply(x, 1, 0, get_data_body);
    for b in &bytes {
        h.feed(std::slice::from_ref(b));
    }
    assert!(rx.try_recv().unwrap().result.is_ok());
}

// === events, generations, expiry factor, renewal ===

use SessionEventKind::{Connected, Lost, ReadOnly, Reconnected, Suspended};

/// Fails every connection attempt until the machine gives up or `max_ms` passes.
fn fail_attempts_until_quiet(h: &mut Harness, until_ms: u64) {
    for _ in 0..10_000 {
        if h.s.is_terminal() || h.ms(h.now) >= until_ms {
            return;
        }
        while let Some(a) = h.s.poll_action() {
            if let Action::Connect { attempt, .. } = a {
                h.s.handle_connect_failed(attempt, h.now);
            }
        }
        let Some(t) = h.s.poll_timeout() else { return };
        h.now = h.now.max(t);
        h.s.handle_timeout(h.now);
    }
    panic!("the machine did not settle");
}

#[test]
fn every_transition_is_an_event_with_its_generation() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.s.generation(), 0);
    assert!(h.s.disconnected_since().is_some());
    h.establish(0x10);
    assert_eq!(h.events(), [(Connected, 1)]);
    assert_eq!(h.s.disconnected_since(), None);

    h.at(100);
    h.s.handle_transport_closed(h.now);
    assert_eq!(h.events(), [(Suspended, 1)]);
    assert_eq!(h.s.disconnected_since(), Some(h.now));
    h.handshake();
    h.feed(&connect_response(3000, 0x10, Some(false)));
    assert_eq!(
        h.events(),
        [(Reconnected { same_session: true }, 1)],
        "no event is coalesced: Suspended and Reconnected each come once"
    );

    h.s.handle_transport_closed(h.now);
    h.handshake();
    h.feed(&connect_response(0, 0, Some(false)));
    assert_eq!(h.events(), [(Suspended, 1), (Lost(LossReason::Expired), 1)]);
    assert!(h.s.is_terminal());
    assert_eq!(h.s.disconnected_since(), None);
}

#[test]
fn the_client_side_expiry_factor_stretches_the_time_to_reconnect() {
    let mut c = cfg();
    c.expiry_factor = 2.0;
    let mut h = Harness::new(c);
    h.establish(7);
    h.at(500);
    h.feed(&empty_reply(-2, 1, 0));
    let last_heard = h.now;
    h.s.handle_transport_closed(h.now);
    fail_attempts_until_quiet(&mut h, 60_000);
    assert_eq!(h.s.state(), SessionState::Expired);
    assert_eq!(h.now, last_heard + T * 2, "expired after 2 T, not T");
    let events = h.events();
    assert_eq!(
        events.last(),
        Some(&(Lost(LossReason::ClientExpired), 1)),
        "{events:?}"
    );
}

#[test]
fn a_renewing_session_fails_what_it_held_and_starts_a_new_generation() {
    let mut c = cfg();
    c.renew = true;
    let mut h = Harness::new(c);
    h.establish(0x21);
    let (done, _auth_reply) = oneshot::channel();
    h.s.add_auth(
        AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b"u:p".to_vec(),
        },
        done,
        h.now,
    );
    let _ = h.sent();
    let mut w = h.submit(get_data("/w", true), Effect::Watch(WatchKind::Data));
    let x = requests(&h.sent())[0].0.xid;
    h.feed(&reply(x, 4, 0, get_data_body));
    let Some(WatchSub::Oneshot { rx: mut watch, .. }) = w.try_recv().unwrap().watch else {
        panic!("a data watch")
    };
    h.feed(&empty_reply(-4, 0, 0));
    h.s.handle_transport_closed(h.now);
    let mut held = h.submit(get_data("/held", false), Effect::None);

    // The server says expired: not terminal, but everything the old session held fails.
    h.handshake();
    h.feed(&connect_response(0, 0, Some(false)));
    assert!(!h.s.is_terminal());
    assert_eq!(h.s.state(), SessionState::Disconnected);
    assert_eq!(
        held.try_recv().unwrap().result.unwrap_err(),
        Error::SessionExpired
    );
    assert_eq!(watch.try_recv().unwrap(), Err(Error::SessionExpired));
    assert_eq!(h.s.watcher_count(), 0);
    let mut later = h.submit(get_data("/later", false), Effect::None);

    // The next handshake asks for a new session, keeps the zxid, and re-sends the auth.
    let req = h.handshake();
    assert_eq!((req.session_id, req.passwd.clone()), (0, vec![0; 16]));
    assert_eq!(req.last_zxid_seen, 4);
    h.feed(&connect_response(3000, 0x22, Some(false)));
    assert_eq!(h.s.session_id(), 0x22);
    let reqs = requests(&h.sent());
    assert_eq!(reqs[0].0.xid, -4, "the credentials go first");
    assert_eq!(reqs[1].1, get_data("/later", false));
    assert!(matches!(later.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(
        h.events(),
        [
            (Connected, 1),
            (Suspended, 1),
            (Lost(LossReason::Expired), 1),
            (Connected, 2)
        ]
    );
    assert_eq!(h.s.generation(), 2);
}

#[test]
fn a_renewing_session_renews_after_a_client_side_expiry_too() {
    let mut c = cfg();
    c.renew = true;
    let mut h = Harness::new(c);
    h.establish(0x31);
    h.s.handle_transport_closed(h.now);
    // Attempts fail for longer than T: the client declares the session lost, then goes on.
    let t0 = h.ms(h.now);
    fail_attempts_until_quiet(&mut h, t0 + 3_100);
    assert!(!h.s.is_terminal());
    let events = h.events();
    assert_eq!(
        events.last(),
        Some(&(Lost(LossReason::ClientExpired), 1)),
        "{events:?}"
    );
    let req = h.handshake();
    assert_eq!(req.session_id, 0);
    h.feed(&connect_response(3000, 0x32, Some(false)));
    assert_eq!(h.events(), [(Connected, 2)]);
}

#[test]
fn a_read_only_reconnect_with_a_new_session_is_reported() {
    let mut ro = cfg();
    ro.read_only = true;
    let mut h = Harness::new(ro);
    h.handshake();
    h.feed(&connect_response(3000, 0x51, Some(true)));
    assert_eq!(h.s.state(), SessionState::ConnectedReadOnly);
    assert_eq!(h.events(), [(Connected, 1), (ReadOnly, 1)]);
    h.s.handle_transport_closed(h.now);
    // Only read-only servers seen so far: the client asks for a new session, and gets one.
    let req = h.handshake();
    assert_eq!(req.session_id, 0);
    h.feed(&connect_response(3000, 0x52, Some(false)));
    assert_eq!(
        h.events(),
        [
            (Suspended, 1),
            (
                Reconnected {
                    same_session: false
                },
                2
            )
        ]
    );
}

#[test]
fn a_refused_set_watches_ends_the_watchers_it_carried() {
    let mut h = Harness::new(cfg());
    h.establish(9);
    let mut w = h.submit(get_data("/d", true), Effect::Watch(WatchKind::Data));
    let x = requests(&h.sent())[0].0.xid;
    h.feed(&reply(x, 2, 0, get_data_body));
    let Some(WatchSub::Oneshot { rx: mut watch, .. }) = w.try_recv().unwrap().watch else {
        panic!("a data watch")
    };
    h.s.handle_transport_closed(h.now);
    h.handshake();
    h.feed(&connect_response(3000, 9, Some(false)));
    let reqs = requests(&h.sent());
    assert!(matches!(reqs[0].1, Request::SetWatches(_)));
    // Without this the watcher would wait forever: the server never armed it.
    h.feed(&empty_reply(-8, 0, ErrorCode::NoAuth.code()));
    assert_eq!(watch.try_recv().unwrap(), Err(Error::NoAuth));
    assert_eq!(h.s.watcher_count(), 0);
    assert_eq!(h.s.state(), SessionState::Connected);
}
