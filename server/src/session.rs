//! The session table (`SessionTracker`): ids, passwords, timeouts and expiry deadlines.
//!
//! Time is an input: every method that needs the clock takes `now_ms` (milliseconds on a
//! monotonic clock chosen by the caller), so the tracker can be tested without real time.
//! Deadlines are rounded up to the next tick, as ZooKeeper's expiry buckets do.

use std::collections::HashMap;

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The id.
    pub id: i64,
    /// Negotiated timeout in ms.
    pub timeout_ms: i32,
    /// The password.
    pub passwd: [u8; 16],
    /// When it expires, in tracker ms.
    pub expires_at_ms: u64,
    /// Set once a closeSession has been issued for it.
    pub closing: bool,
}

/// The session table.
#[derive(Debug)]
pub struct SessionTracker {
    sessions: HashMap<i64, Session>,
    next_id: i64,
    tick_ms: u64,
}

impl SessionTracker {
    /// A tracker whose ids start from `server_id` and `now_wall_ms` as ZooKeeper's do: the top
    /// byte is the server id, the rest is seeded from the clock so ids differ across restarts.
    pub fn new(server_id: u8, now_wall_ms: i64, tick_ms: u64) -> Self {
        let seed = ((now_wall_ms << 24) as u64 >> 8) as i64;
        let next_id = (i64::from(server_id) << 56) | seed;
        SessionTracker {
            sessions: HashMap::new(),
            next_id,
            tick_ms: tick_ms.max(1),
        }
    }

    /// Allocates a fresh session id.
    pub fn next_session_id(&mut self) -> i64 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            // 0 means "new session" and i64::MIN is the container marker.
            if id != 0 && id != i64::MIN && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn deadline(&self, now_ms: u64, timeout_ms: i32) -> u64 {
        let raw = now_ms + timeout_ms.max(0) as u64;
        raw.div_ceil(self.tick_ms) * self.tick_ms
    }

    /// Records a session (when its createSession transaction is applied).
    pub fn add(&mut self, id: i64, timeout_ms: i32, passwd: [u8; 16], now_ms: u64) {
        let expires_at_ms = self.deadline(now_ms, timeout_ms);
        self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                passwd,
                expires_at_ms,
                closing: false,
            },
        );
    }

    /// Forgets a session (when its closeSession transaction is applied).
    pub fn remove(&mut self, id: i64) -> Option<Session> {
        self.sessions.remove(&id)
    }

    /// The session, if it is alive.
    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id).filter(|s| !s.closing)
    }

    /// Whether the session exists and its close is under way (not yet applied).
    pub fn is_closing(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.closing)
    }

    /// Pushes the deadline out: any packet from the client does this.
    pub fn touch(&mut self, id: i64, now_ms: u64) -> bool {
        let tick = self.tick_ms;
        match self.sessions.get_mut(&id) {
            Some(s) if !s.closing => {
                let raw = now_ms + s.timeout_ms.max(0) as u64;
                s.expires_at_ms = raw.div_ceil(tick) * tick;
                true
            }
            _ => false,
        }
    }

    /// Changes the timeout of a resumed session.
    pub fn set_timeout(&mut self, id: i64, timeout_ms: i32, now_ms: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.timeout_ms = timeout_ms;
        }
        self.touch(id, now_ms);
    }

    /// Forgets every session (a learner installing the leader's snapshot).
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    /// Gives every session a full timeout from `now_ms` and reopens any marked closing: a new
    /// leader heard nothing of the sessions' recent activity, and their closes may never have
    /// committed.
    pub fn restart_deadlines(&mut self, now_ms: u64) {
        let ids: Vec<i64> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.closing = false;
            }
            self.touch(id, now_ms);
        }
    }

    /// Undoes every [`SessionTracker::set_closing`]: the member's role changed, so closes it
    /// started may never commit.
    pub fn reopen_all(&mut self) {
        for s in self.sessions.values_mut() {
            s.closing = false;
        }
    }

    /// Undoes [`SessionTracker::set_closing`] when the close could not be proposed.
    pub fn reopen(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = false;
        }
    }

    /// Marks a session as closing so that no request of it is served any more.
    pub fn set_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    /// Sessions whose deadline has passed, not yet closing.
    pub fn expired(&self, now_ms: u64) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .sessions
            .values()
            .filter(|s| !s.closing && s.expires_at_ms <= now_ms)
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// All sessions, sorted by deadline (for `dump`).
    pub fn by_deadline(&self) -> Vec<&Session> {
        let mut all: Vec<&Session> = self.sessions.values().collect();
        all.sort_by_key(|s| (s.expires_at_ms, s.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_rounded_to_ticks_and_touch_extends() {
        let mut t = SessionTracker::new(1, 1_700_000_000_000, 2000);
        let id = t.next_session_id();
        assert_eq!(id >> 56, 1);
        t.add(id, 4000, [0; 16], 100);
        assert_eq!(t.get(id).unwrap().expires_at_ms, 6000);
        assert!(t.expired(5999).is_empty());
        assert_eq!(t.expired(6000), vec![id]);
        assert!(t.touch(id, 5000));
        assert!(t.expired(8000).is_empty());
        assert_eq!(t.expired(10000), vec![id]);
        t.set_closing(id);
        assert!(t.get(id).is_none());
        assert!(t.expired(20000).is_empty());
    }
}
