//! A bounded stream that never loses an item silently: when its reader falls behind, the items
//! that do not fit are dropped and one "lagged" marker takes their place, in order.
//!
//! Session events and persistent-watch events both go through it. The channel keeps one slot in
//! reserve, so there is always room for the marker: the reader sees every item up to the gap,
//! then the marker, then the items that arrived after it caught up.

use tokio::sync::mpsc;

/// The sending half, owned by the session task.
#[derive(Debug)]
pub(crate) struct FeedTx<T> {
    tx: mpsc::Sender<T>,
    /// A marker is queued and items are being dropped until the reader makes room.
    dropping: bool,
}

/// A feed holding at most `capacity` items (plus the reserved marker slot).
pub(crate) fn feed<T>(capacity: usize) -> (FeedTx<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1) + 1);
    (
        FeedTx {
            tx,
            dropping: false,
        },
        rx,
    )
}

/// What [`FeedTx::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The item is queued.
    Queued,
    /// The reader is behind: the item was dropped, and a marker stands in the stream for it.
    Lagged,
    /// The reader is gone.
    Closed,
}

impl<T> FeedTx<T> {
    /// Queues `item`, or, when only the reserved slot is left, queues `marker()` once in its
    /// place and drops items until the reader makes room.
    pub(crate) fn send(&mut self, item: T, marker: impl FnOnce() -> T) -> Sent {
        if self.tx.is_closed() {
            return Sent::Closed;
        }
        if self.tx.capacity() >= 2 {
            self.dropping = false;
            return match self.tx.try_send(item) {
                Ok(()) => Sent::Queued,
                Err(_) => Sent::Closed,
            };
        }
        if !self.dropping {
            // The reserved slot: capacity() is 1 here, so this cannot be full.
            if self.tx.try_send(marker()).is_err() {
                return Sent::Closed;
            }
            self.dropping = true;
        }
        Sent::Lagged
    }

    /// Queues `item` if there is any room at all (the reserved slot included): for the last
    /// item before the sender goes away.
    pub(crate) fn send_last(&self, item: T) {
        let _ = self.tx.try_send(item);
    }

    /// Whether the reader is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_reader_sees_every_item_up_to_the_gap_then_one_marker() {
        let (mut tx, mut rx) = feed::<i32>(3);
        for i in 0..3 {
            assert_eq!(tx.send(i, || -1), Sent::Queued);
        }
        // Full: the next items are dropped behind one marker.
        assert_eq!(tx.send(3, || -1), Sent::Lagged);
        assert_eq!(tx.send(4, || -1), Sent::Lagged);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [0, 1, 2, -1]);
        // Room again: items flow, and a later gap gets a marker of its own.
        assert_eq!(tx.send(5, || -1), Sent::Queued);
        assert_eq!(rx.try_recv().unwrap(), 5);
        for i in 6..9 {
            tx.send(i, || -1);
        }
        assert_eq!(tx.send(9, || -2), Sent::Lagged);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [6, 7, 8, -2]);
        drop(rx);
        assert_eq!(tx.send(10, || -1), Sent::Closed);
        assert!(tx.is_closed());
    }

    #[test]
    fn a_partial_read_keeps_dropping_until_there_is_room_for_items() {
        let (mut tx, mut rx) = feed::<i32>(2);
        tx.send(0, || -1);
        tx.send(1, || -1);
        assert_eq!(tx.send(2, || -1), Sent::Lagged);
        // One read frees one slot, but the marker still sits last: keep dropping.
        assert_eq!(rx.try_recv().unwrap(), 0);
        assert_eq!(tx.send(3, || -1), Sent::Lagged);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [1, -1]);
        assert_eq!(tx.send(4, || -1), Sent::Queued);
        assert_eq!(rx.try_recv().unwrap(), 4);
    }
}
