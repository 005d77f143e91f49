//! How many data streams an attempt uses, from the throughput it measures
//! while it runs (FTS3's optimizer does this per link): a pure state
//! machine fed one sample a period, with no clock and no sockets.
//!
//! An attempt starts with the streams its file sizes suggest
//! (`source::choose_streams`). Far away, one stream's throughput is
//! bounded by its window over the round trip, so more streams fill the
//! path; nearby, both cores are already busy and more streams only cost
//! handshakes. Neither can be told from the sizes, so the source probes:
//! while its queue to the streams stays full (the streams, not the disk
//! or the hashing, hold it back) it doubles them, and it keeps doubling
//! while each step gains at least [`Tuning::min_gain`]; the first step
//! that does not settles the count for the rest of the attempt.

use std::time::Duration;

/// The tuner's parameters: the protocol's values but in tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// How often the source measures its throughput.
    pub sample_every: Duration,
    /// The most streams an attempt grows to (the destination takes 64).
    pub max_streams: u16,
    /// A step is kept up only if the rate after it is at least this
    /// fraction above the rate before it.
    pub min_gain: f64,
    /// The share of the queue to the streams that must be in use, on
    /// average over a sample, for the streams to count as the bottleneck.
    pub min_backlog: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            // TCP's own ramp-up over a 50 ms round trip takes a few
            // hundred milliseconds: a second sees it through.
            sample_every: Duration::from_secs(1),
            max_streams: 16,
            min_gain: 0.10,
            min_backlog: 0.5,
        }
    }
}

impl Tuning {
    /// Grows at every sample, whatever it measures (tests of the growth
    /// itself).
    pub fn always_grow(sample_every: Duration, max_streams: u16) -> Self {
        Self {
            sample_every,
            max_streams,
            // Any rate is at least none of the one before.
            min_gain: -1.0,
            min_backlog: 0.0,
        }
    }
}

/// What one period measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bytes the streams sent per second over the period.
    pub rate: f64,
    /// The share (0 to 1) of the queue to the streams in use, on average.
    pub backlog: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// The first period at a new count measures TCP's ramp-up, not the
    /// streams: it is not compared. `before` as in `Measuring`.
    WarmingUp { before: Option<f64> },
    /// Measuring at the current count; `before` is the rate at the count
    /// before the last step (`None`: no step taken yet).
    Measuring { before: Option<f64> },
    /// Streams being opened; samples wait until they are.
    Opening { before: Option<f64> },
    /// The count is final for this attempt.
    Settled,
}

/// The stream count of one attempt.
#[derive(Debug, Clone)]
pub struct StreamTuner {
    tuning: Tuning,
    streams: u16,
    state: State,
}

impl StreamTuner {
    /// A tuner for an attempt that opened `streams` streams. It never
    /// grows past `tuning.max_streams`; `fixed` (the task said how many)
    /// keeps the count as it is.
    pub fn new(streams: u16, tuning: Tuning, fixed: bool) -> Self {
        let settled = fixed || streams >= tuning.max_streams;
        Self {
            tuning,
            streams,
            state: if settled {
                State::Settled
            } else {
                State::WarmingUp { before: None }
            },
        }
    }

    /// The streams the attempt has now.
    pub fn streams(&self) -> u16 {
        self.streams
    }

    /// Whether the count is final.
    pub fn settled(&self) -> bool {
        self.state == State::Settled
    }

    /// One period's measure. `Some(n)`: open `n` more streams now, and
    /// say how many opened with [`StreamTuner::opened`].
    pub fn sample(&mut self, sample: Sample) -> Option<u16> {
        match self.state {
            State::Settled | State::Opening { .. } => None,
            State::WarmingUp { before } => {
                self.state = State::Measuring { before };
                None
            }
            State::Measuring { before } => {
                let gained = before.is_none_or(|b| sample.rate >= b * (1.0 + self.tuning.min_gain));
                if !gained {
                    self.state = State::Settled;
                    return None;
                }
                // Nothing waits for the streams: the disk or the hashing
                // is slower than they are, and more would not help now
                // (measured again next period).
                if sample.backlog < self.tuning.min_backlog {
                    self.state = State::Measuring { before };
                    return None;
                }
                let more = self.streams.min(self.tuning.max_streams - self.streams);
                self.state = State::Opening {
                    before: Some(sample.rate),
                };
                Some(more)
            }
        }
    }

    /// `n` of the streams asked for opened (fewer than asked: the
    /// destination or the hub's relay took no more, and the count
    /// settles there).
    pub fn opened(&mut self, asked: u16, n: u16) {
        let State::Opening { before } = self.state else {
            return;
        };
        self.streams = self.streams.saturating_add(n);
        self.state = if n < asked || self.streams >= self.tuning.max_streams {
            State::Settled
        } else {
            // The new streams ramp up like the first ones did.
            State::WarmingUp { before }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(rate: f64) -> Sample {
        Sample { rate, backlog: 1.0 }
    }

    /// Feeds `rates` (one a period, queue full) and opens every asked
    /// stream; the counts after each period.
    fn run(t: &mut StreamTuner, rates: &[f64]) -> Vec<u16> {
        rates
            .iter()
            .map(|&r| {
                if let Some(n) = t.sample(full(r)) {
                    t.opened(n, n);
                }
                t.streams()
            })
            .collect()
    }

    #[test]
    fn far_away_it_doubles_while_each_step_pays_and_settles_at_the_first_that_does_not() {
        // Each stream is window-bound at 80 MB/s until a 300 MB/s cap.
        let mut t = StreamTuner::new(2, Tuning::default(), false);
        let counts = run(
            &mut t,
            &[160e6, 160e6, 160e6, 300e6, 300e6, 300e6, 300e6, 300e6],
        );
        // warm-up, measure → 4, warm-up, measure (+87%) → 8, warm-up, no gain → settled.
        assert_eq!(counts, [2, 4, 4, 8, 8, 8, 8, 8]);
        assert!(t.settled());
    }

    #[test]
    fn nearby_one_step_that_gains_nothing_settles_it() {
        let mut t = StreamTuner::new(4, Tuning::default(), false);
        let counts = run(&mut t, &[900e6, 900e6, 880e6, 910e6, 900e6]);
        assert_eq!(counts, [4, 8, 8, 8, 8]);
        assert!(t.settled());
    }

    #[test]
    fn a_queue_that_is_not_full_never_grows_the_streams() {
        // The reader (disk, hashing) is the bottleneck: more streams
        // would wait too.
        let mut t = StreamTuner::new(4, Tuning::default(), false);
        for _ in 0..10 {
            assert_eq!(
                t.sample(Sample {
                    rate: 100e6,
                    backlog: 0.1
                }),
                None
            );
        }
        assert_eq!(t.streams(), 4);
        assert!(!t.settled(), "it measures again when the queue fills");
        assert_eq!(t.sample(full(100e6)), Some(4));
    }

    #[test]
    fn it_never_passes_the_maximum_and_a_fixed_count_never_moves() {
        let mut t = StreamTuner::new(12, Tuning::default(), false);
        let counts = run(&mut t, &[1e6, 2e6, 4e6, 8e6]);
        assert_eq!(counts, [12, 16, 16, 16]);
        assert!(t.settled());
        let mut fixed = StreamTuner::new(2, Tuning::default(), true);
        assert_eq!(run(&mut fixed, &[1e6, 2e6, 4e6]), [2, 2, 2]);
    }

    #[test]
    fn streams_that_fail_to_open_settle_the_count_where_it_is() {
        let mut t = StreamTuner::new(4, Tuning::default(), false);
        assert_eq!(t.sample(full(1e6)), None);
        assert_eq!(t.sample(full(1e6)), Some(4));
        // Samples wait while streams open.
        assert_eq!(t.sample(full(5e6)), None);
        t.opened(4, 1);
        assert_eq!(t.streams(), 5);
        assert!(t.settled());
        assert_eq!(t.sample(full(50e6)), None);
    }

    #[test]
    fn always_grow_grows_every_other_period_to_the_maximum() {
        let mut t = StreamTuner::new(1, Tuning::always_grow(Duration::from_millis(1), 8), false);
        let counts = run(&mut t, &[0.0; 8]);
        assert_eq!(counts, [1, 2, 2, 4, 4, 8, 8, 8]);
    }
}
