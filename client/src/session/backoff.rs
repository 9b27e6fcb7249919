//! Jittered exponential back-off between connection attempts.

use std::time::Duration;

use rand::Rng;

/// Exponential back-off with "equal jitter": the n-th delay is uniformly drawn from
/// `[b/2, b]` with `b = min(max, initial * 2^n)`, so attempts spread out but never come
/// back-to-back.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The next delay; each call doubles the base up to the maximum.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let jitter_ns = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.gen_range(0..=jitter_ns))
    }

    /// Back to the initial delay (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn grows_jitters_and_caps() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(&mut rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i.min(10))).min(Duration::from_secs(1));
            assert!(
                *d >= base / 2 && *d <= base,
                "delay {i}: {d:?} for base {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));

        // The same seed gives the same delays.
        let mut a = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng2 = StdRng::seed_from_u64(7);
        let again: Vec<_> = (0..8).map(|_| a.next_delay(&mut rng2)).collect();
        assert_eq!(delays, again);
    }
}
