//! Bandwidth caps: the `RATE` spelling (`--bwlimit`, `bwlimit` in
//! `endpoint.toml`) and the token bucket that enforces one. Pure: the
//! time is an argument; the mover's thin async wrapper reads the clock
//! and sleeps for what [`TokenBucket::reserve`] says.

use std::time::{Duration, Instant};
use thiserror::Error;

/// The lowest cap accepted, bytes per second. Below it a data stream's
/// pieces would wait so long that its peer's idle deadline (60 s) could
/// take a capped stream for a dead one.
pub const MIN_RATE: u64 = 10_000;
/// The credit a quiet bucket saves up, in seconds of its rate: what a
/// sender may burst after a pause.
const BURST_SECS_DIVISOR: u64 = 10;
/// The smallest burst, whatever the rate (one TLS record's worth).
const MIN_BURST: u64 = 16 * 1024;
/// The largest piece reserved at once: a writer hands the socket at most
/// this much between two waits, so streams interleave and waits stay short.
const MAX_SLICE: u64 = 256 * 1024;
const NANOS: i128 = 1_000_000_000;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RateError {
    #[error(
        "{0:?} is not a rate: use bytes per second with an optional K, M or G (powers of 1000), e.g. 500K or 10M"
    )]
    Malformed(String),
    #[error("{0:?} is below the lowest cap, 10K (10,000 bytes per second)")]
    TooLow(String),
}

/// `RATE`: bytes per second, with an optional `K`, `M` or `G` (powers of
/// 1000; either case; a trailing `B` or `/s` is not accepted, to keep one
/// spelling). At least [`MIN_RATE`].
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let rate = parse_scaled(text).ok_or_else(|| RateError::Malformed(text.to_string()))?;
    check_rate(rate).map_err(|_| RateError::TooLow(text.to_string()))
}

/// A count of bytes as `RATE` spells one: digits with an optional `K`, `M`
/// or `G` (powers of 1000; either case). `None` for anything else, or one
/// too large for a `u64`.
pub fn parse_scaled(text: &str) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1_000),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1_000_000),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 1_000_000_000),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// A rate from the wire or a file, checked as [`parse_rate`] checks one.
pub fn check_rate(rate: u64) -> Result<u64, RateError> {
    if rate < MIN_RATE {
        return Err(RateError::TooLow(rate.to_string()));
    }
    Ok(rate)
}

/// A rate as people read it: `10M`, `1.5M`, `500K`, `12345`.
pub fn format_rate(rate: u64) -> String {
    for (scale, unit) in [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "K")] {
        if rate >= scale {
            let whole = rate / scale;
            let tenths = (rate % scale) * 10 / scale;
            return if tenths == 0 {
                format!("{whole}{unit}")
            } else {
                format!("{whole}.{tenths}{unit}")
            };
        }
    }
    rate.to_string()
}

/// A token bucket with debt: a sender [`reserve`](Self::reserve)s the
/// bytes it is about to send and waits for as long as the answer says.
/// Reserving never refuses; it takes the credit and leaves the bucket in
/// debt, so every holder of the bucket (all streams of a task, or of an
/// endpoint) queues behind what was reserved before, and the long-run
/// rate is the cap whatever the number of senders. Credit saved up while
/// quiet is capped at a tenth of a second's worth (a small burst).
///
/// Credit is kept in byte-nanoseconds (bytes × 10⁹), so refilling at any
/// rate over any interval is exact in integers.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    /// Byte-nanoseconds available; negative is debt.
    credit: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `rate` bytes per second.
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1);
        Self {
            rate,
            credit: i128::from(burst(rate)) * NANOS,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A new rate from now on (what was reserved stays reserved: its
    /// debt is repaid at the new rate).
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate.max(1);
        self.credit = self.credit.min(i128::from(burst(self.rate)) * NANOS);
    }

    /// The most a sender should reserve at once at this rate: about a
    /// tenth of a second's worth, between 1 KiB and 256 KiB.
    pub fn slice(&self) -> u64 {
        (self.rate / BURST_SECS_DIVISOR).clamp(1024, MAX_SLICE)
    }

    /// Takes `bytes` and says how long the sender must wait before
    /// sending them: zero while there is credit.
    pub fn reserve(&mut self, bytes: u64, now: Instant) -> Duration {
        self.refill(now);
        self.credit -= i128::from(bytes) * NANOS;
        if self.credit >= 0 {
            return Duration::ZERO;
        }
        // Debt repaid at `rate` bytes per second: -credit / rate nanoseconds.
        let rate = i128::from(self.rate);
        let nanos = (-self.credit + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went back (it cannot, for `Instant`) adds nothing.
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let cap = i128::from(burst(self.rate)) * NANOS;
        self.credit = (self.credit + elapsed.as_nanos() as i128 * i128::from(self.rate)).min(cap);
    }
}

fn burst(rate: u64) -> u64 {
    (rate / BURST_SECS_DIVISOR).max(MIN_BURST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_are_bytes_per_second_in_powers_of_1000() {
        assert_eq!(parse_rate("10000"), Ok(10_000));
        assert_eq!(parse_rate("500K"), Ok(500_000));
        assert_eq!(parse_rate("10m"), Ok(10_000_000));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        for bad in [
            "",
            "K",
            "10MB",
            "1.5M",
            "-1",
            " 10M",
            "10 M",
            "99999999999999999999G",
        ] {
            assert!(
                matches!(parse_rate(bad), Err(RateError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse_rate("9K"), Err(RateError::TooLow(_))));
        assert!(matches!(parse_rate("0"), Err(RateError::TooLow(_))));
        assert!(!parse_rate("9K").unwrap_err().to_string().contains('\n'));
    }

    #[test]
    fn rates_show_as_they_are_written() {
        assert_eq!(format_rate(10_000_000), "10M");
        assert_eq!(format_rate(1_500_000), "1.5M");
        assert_eq!(format_rate(500_000), "500K");
        assert_eq!(format_rate(999), "999");
        assert_eq!(format_rate(2_000_000_000), "2G");
    }

    #[test]
    fn a_full_bucket_lets_a_small_burst_through_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, t0);
        // A tenth of a second's worth goes at once.
        assert_eq!(b.reserve(100_000, t0), Duration::ZERO);
        // The next 100 KB is owed: a tenth of a second.
        assert_eq!(b.reserve(100_000, t0), Duration::from_millis(100));
        // A second sender queues behind the first.
        assert_eq!(b.reserve(100_000, t0), Duration::from_millis(200));
        // Time repays the debt.
        assert_eq!(
            b.reserve(0, t0 + Duration::from_millis(200)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_quiet_bucket_saves_no_more_than_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.reserve(100_000, later), Duration::ZERO);
        assert_eq!(b.reserve(1_000, later), Duration::from_millis(1));
    }

    #[test]
    fn a_new_rate_repays_debt_at_that_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, t0);
        b.reserve(100_000, t0);
        assert_eq!(b.reserve(1_000_000, t0), Duration::from_secs(1));
        b.set_rate(2_000_000, t0);
        assert_eq!(b.reserve(0, t0), Duration::from_millis(500));
        assert_eq!(b.rate(), 2_000_000);
    }

    #[test]
    fn slices_keep_waits_short_at_any_rate() {
        let t0 = Instant::now();
        assert_eq!(TokenBucket::new(10_000, t0).slice(), 1024);
        assert_eq!(TokenBucket::new(1_000_000, t0).slice(), 100_000);
        assert_eq!(TokenBucket::new(10_000_000_000, t0).slice(), 256 * 1024);
    }

    proptest! {
        /// Whatever the pattern of reservations, what was sent by the
        /// time the last wait ends never beats the rate by more than the
        /// burst.
        #[test]
        fn the_long_run_rate_is_the_cap(
            rate in 10_000u64..100_000_000,
            steps in proptest::collection::vec((0u64..300_000, 0u64..50_000_000), 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, t0);
            let mut now = t0;
            let mut sent: u128 = 0;
            for (bytes, gap_ns) in steps {
                now += Duration::from_nanos(gap_ns);
                let wait = b.reserve(bytes, now);
                let ready = now + wait;
                sent += u128::from(bytes);
                let elapsed = ready.duration_since(t0).as_nanos();
                let allowed = elapsed * u128::from(rate) / 1_000_000_000 + u128::from(burst(rate)) + 1;
                prop_assert!(sent <= allowed, "sent {sent} allowed {allowed}");
            }
        }
    }
}
