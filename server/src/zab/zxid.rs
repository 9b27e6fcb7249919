//! Zxids: ZooKeeper's transaction ids. The epoch is in the high 32 bits and a counter in the low
//! 32, so comparing zxids orders first by epoch (leader generation), then by proposal.

use std::fmt;

/// The largest epoch a leader may start. ZooKeeper keeps epochs in a Java `int`, and the storage
/// layer and the client protocol carry zxids as signed 64-bit integers, so an epoch above this
/// would make zxids negative.
pub const MAX_EPOCH: u32 = i32::MAX as u32;

/// A transaction id: `(epoch << 32) | counter`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(u64);

impl Zxid {
    /// The zxid before any transaction.
    pub const ZERO: Zxid = Zxid(0);

    /// The zxid with this epoch and counter.
    pub const fn new(epoch: u32, counter: u32) -> Zxid {
        Zxid(((epoch as u64) << 32) | counter as u64)
    }

    /// From the raw 64 bits.
    pub const fn from_raw(raw: u64) -> Zxid {
        Zxid(raw)
    }

    /// The raw 64 bits.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The epoch (high 32 bits).
    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The counter (low 32 bits). A proposal's counter is at least 1; counter 0 names an epoch
    /// itself (NEWLEADER and its acknowledgement carry `(epoch << 32) | 0`).
    pub const fn counter(self) -> u32 {
        self.0 as u32
    }

    /// Whether `self` may directly follow `prev` in a history: the next counter in the same epoch,
    /// or counter 1 of a later epoch. Every ZAB history (and every log) obeys this; anything else
    /// is a hole (ZOOKEEPER-4925 was a hole that propagated to other servers).
    pub fn follows(self, prev: Zxid) -> bool {
        let same_epoch_next = self.epoch() == prev.epoch()
            && prev.counter() != u32::MAX
            && self.counter() == prev.counter() + 1;
        let new_epoch_start = self.epoch() > prev.epoch() && self.counter() == 1;
        same_epoch_next || new_epoch_start
    }

    /// The zxid as the storage layer and the client protocol carry it.
    pub const fn to_i64(self) -> i64 {
        self.0 as i64
    }

    /// From the storage layer's signed form.
    pub const fn from_i64(zxid: i64) -> Zxid {
        Zxid(zxid as u64)
    }
}

impl fmt::Debug for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_order() {
        let z = Zxid::new(2, 5);
        assert_eq!(z.raw(), 0x2_0000_0005);
        assert_eq!((z.epoch(), z.counter()), (2, 5));
        assert!(Zxid::new(1, u32::MAX) < Zxid::new(2, 1));
        assert_eq!(Zxid::from_i64(z.to_i64()), z);
        assert_eq!(format!("{z}"), "0x200000005");
    }

    #[test]
    fn follows_allows_the_next_counter_or_a_new_epoch_at_one() {
        let cases = [
            (Zxid::ZERO, Zxid::new(1, 1), true),
            (Zxid::new(1, 5), Zxid::new(1, 6), true),
            (Zxid::new(1, 5), Zxid::new(2, 1), true),
            (Zxid::new(1, 5), Zxid::new(4, 1), true),
            (Zxid::new(1, 5), Zxid::new(1, 7), false),
            (Zxid::new(1, 5), Zxid::new(2, 2), false),
            (Zxid::new(1, 5), Zxid::new(2, 0), false),
            (Zxid::new(2, 1), Zxid::new(1, 9), false),
            (Zxid::new(1, u32::MAX), Zxid::new(2, 0), false),
        ];
        for (prev, next, want) in cases {
            assert_eq!(next.follows(prev), want, "{prev} -> {next}");
        }
    }
}
