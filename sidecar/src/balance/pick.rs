//! The balancers' small parts: a seedable lock-free random source and the peak-EWMA latency
//! estimate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A seedable random source (splitmix64 over an atomic counter): lock-free, and the same
/// sequence for the same seed.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    /// The next 64 random bits.
    pub fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Peak-EWMA latency (Finagle's and linkerd's): a slower response than the estimate raises it
/// at once; faster ones pull it down with a 10 s time constant.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    cost_ns: f64,
    at: Instant,
}

/// The time constant of the decay.
const TAU: Duration = Duration::from_secs(10);
/// The estimate of an endpoint with no response yet: optimistic, so new endpoints get tried.
const DEFAULT_RTT: Duration = Duration::from_millis(1);

impl Ewma {
    /// A fresh estimate.
    pub fn new(now: Instant) -> Ewma {
        Ewma {
            cost_ns: DEFAULT_RTT.as_nanos() as f64,
            at: now,
        }
    }

    /// Takes in one response time.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.cost_ns {
            self.cost_ns = rtt;
        } else {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            let decay = (-elapsed / TAU.as_secs_f64()).exp();
            self.cost_ns = self.cost_ns * decay + rtt * (1.0 - decay);
        }
        self.at = now;
    }

    /// The estimate as last updated.
    pub fn estimate_ns(&self) -> f64 {
        self.cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (a, b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let c = Rng::new(8);
        assert_ne!(Rng::new(7).next(), c.next());
    }

    #[test]
    fn peak_ewma_rises_at_once_and_decays_slowly() {
        let t0 = Instant::now();
        let mut e = Ewma::new(t0);
        e.observe(Duration::from_millis(100), t0);
        assert_eq!(e.estimate_ns(), 100e6);
        e.observe(Duration::from_millis(10), t0 + Duration::from_secs(1));
        let one = e.estimate_ns();
        assert!(one < 100e6 && one > 80e6, "{one}");
        e.observe(Duration::from_millis(10), t0 + Duration::from_secs(60));
        assert!(e.estimate_ns() < 11e6);
    }
}
