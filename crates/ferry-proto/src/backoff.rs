//! Capped exponential backoff with jitter, for reconnecting to the hub.
//!
//! Randomness is passed in so tests are deterministic and so this crate
//! needs no random source. Jitter keeps a thousand endpoints that lost the
//! hub at the same instant from all coming back at the same instant.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// Records a failed attempt and returns how long to wait before the next.
    /// The wait lies in `[d/2, d]` where `d = min(cap, base * 2^failures)`.
    pub fn on_failure(&mut self, random: u64) -> Duration {
        let exp = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp)
            .map_or(self.cap, |d| d.min(self.cap));
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(random % spread.saturating_add(1))
    }

    /// Records a successful connection: the next failure starts from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        // With the largest jitter the wait is the ceiling itself.
        let waits: Vec<u64> = (0..9).map(|_| b.on_failure(u64::MAX).as_secs()).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(*waits.last().unwrap() <= 60);
        assert_eq!(b.on_failure(0), Duration::from_secs(30));
        b.reset();
        assert!(b.on_failure(u64::MAX) <= Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn every_wait_is_within_half_and_full_ceiling(
            base_ms in 1u64..5_000, cap_ms in 1u64..600_000, n in 0u32..80, r in any::<u64>()
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_millis(cap_ms).max(base);
            let mut b = Backoff::new(base, cap);
            for _ in 0..n { b.on_failure(r); }
            let wait = b.on_failure(r);
            prop_assert!(wait <= cap);
            prop_assert!(wait >= base / 2);
        }
    }
}
