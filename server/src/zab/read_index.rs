//! Leadership confirmation for linearizable reads (Raft's read index, in ZAB's terms).
//!
//! A leader that has been deposed (paused, or cut off, within `syncLimit`) still believes it
//! leads, so answering `sync` from its own commit point can hand a client a state older than a
//! write another leader already acknowledged (ZOOKEEPER-1675). Before a read is answered the
//! leader therefore runs a round: it sends every learner a PING carrying a round number, and a
//! learner echoes the round of each PING it answers. A learner only answers PINGs on its live
//! session with this leader's epoch, and it ends that session before it accepts another epoch;
//! so once a quorum (the leader counting itself) has echoed a round started after the read
//! arrived, no other leader had committed anything when the read arrived (a new leader needs a
//! quorum's ACKEPOCH first, and quorums intersect). The leader's commit point at arrival then
//! holds every write acknowledged before the read began.
//!
//! Reads are batched: one round is in flight at a time; reads that arrive meanwhile wait for the
//! next round, which starts as soon as the current one is confirmed. The periodic heartbeat PINGs
//! carry the current round too, so a lost PING costs at most one heartbeat.

/// The reads waiting for confirmation, by round.
#[derive(Debug, Default)]
pub(crate) struct ReadIndex {
    /// The latest round started; every PING the leader sends carries it.
    round: u64,
    /// Reads of round `round`, all asked before it started. Empty: no round in flight.
    in_flight: Vec<u64>,
    /// Reads asked while a round was in flight: they need a round started after them.
    next: Vec<u64>,
}

impl ReadIndex {
    /// The round every PING carries now.
    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    /// Whether a round is waiting for a quorum.
    pub(crate) fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Adds read `id`; true when it starts a new round (its PINGs must be sent now).
    pub(crate) fn add(&mut self, id: u64) -> bool {
        if self.in_flight.is_empty() {
            self.round += 1;
            self.in_flight.push(id);
            true
        } else {
            self.next.push(id);
            false
        }
    }

    /// A quorum echoed the round in flight: its reads are confirmed. The reads that waited start
    /// the next round; the second value says whether there is one (its PINGs must be sent).
    pub(crate) fn confirm(&mut self) -> (Vec<u64>, bool) {
        debug_assert!(self.in_flight(), "no round in flight");
        let done = std::mem::replace(&mut self.in_flight, std::mem::take(&mut self.next));
        let again = !self.in_flight.is_empty();
        if again {
            self.round += 1;
        }
        (done, again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_asked_during_a_round_wait_for_the_next_one() {
        let mut r = ReadIndex::default();
        assert!(!r.in_flight());
        assert!(r.add(1), "the first read starts a round");
        assert_eq!(r.round(), 1);
        assert!(!r.add(2), "a round is in flight");
        assert!(!r.add(3));
        assert_eq!(r.round(), 1, "no round starts while one is in flight");
        assert_eq!(r.confirm(), (vec![1], true));
        assert_eq!(r.round(), 2, "the waiting reads start round 2");
        assert_eq!(r.confirm(), (vec![2, 3], false));
        assert!(!r.in_flight());
        assert!(r.add(4));
        assert_eq!(r.round(), 3);
    }
}
