//! When waiting output goes out: the pacing of small messages, apart from
//! any protocol.
//!
//! A command that writes a line at a time would otherwise cost a message
//! (and, for a protocol that repeats its state in each, a large one) per
//! line. A [`Batcher`] lets output out at once after a quiet spell (an
//! echoed keystroke, a prompt), a burst of a few small messages back to
//! back, then one per interval on average, while a full batch always goes
//! at once. It only decides when; what a message holds and how it is
//! encoded is the protocol's.

use std::time::Duration;

use tokio::time::Instant;

/// How a [`Batcher`] paces messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Small messages go out at one per interval on average.
    pub interval: Duration,
    /// Small messages that may go out back to back after a quiet spell.
    pub burst: u32,
    /// Waiting output this large goes out at once, whatever the pace.
    pub batch_bytes: usize,
}

/// Decides when waiting output goes out: a token bucket of small messages
/// ([`Pacing::burst`] tokens, one more earned per [`Pacing::interval`]),
/// and a full batch ([`Pacing::batch_bytes`]) at once.
///
/// Pure: it reads no clock, so the caller says what time it is (and a test
/// can step time by hand). The caller keeps the output; after each change
/// it asks [`Batcher::due`], and while nothing is due it waits until
/// [`Batcher::deadline`] (or for more output, whichever comes first).
#[derive(Debug, Clone)]
pub struct Batcher {
    pacing: Pacing,
    /// Small messages that may go out now, as of `counted`.
    tokens: f64,
    counted: Instant,
}

impl Batcher {
    /// A batcher with a full burst at `now`.
    pub fn new(pacing: Pacing, now: Instant) -> Self {
        Batcher {
            pacing,
            tokens: f64::from(pacing.burst),
            counted: now,
        }
    }

    /// When `waiting` bytes of output must go out even if no more comes;
    /// `None` with nothing waiting.
    pub fn deadline(&self, waiting: usize) -> Option<Instant> {
        if waiting == 0 {
            return None;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Some(self.counted + self.pacing.interval.mul_f64(missing))
    }

    /// Whether `waiting` bytes of output go out at `now`: a full batch
    /// always, a small one while the burst allows (spending a token).
    /// The caller sends them when it says so.
    pub fn due(&mut self, waiting: usize, now: Instant) -> bool {
        if waiting == 0 {
            return false;
        }
        let earned =
            now.duration_since(self.counted).as_secs_f64() / self.pacing.interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(self.pacing.burst));
        self.counted = now;
        if waiting >= self.pacing.batch_bytes {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PACING: Pacing = Pacing {
        interval: Duration::from_millis(5),
        burst: 4,
        batch_bytes: 1000,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_waiting_is_never_due() {
        let t0 = Instant::now();
        let mut b = Batcher::new(PACING, t0);
        assert_eq!(b.deadline(0), None);
        assert!(!b.due(0, t0 + ms(100)));
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Batcher::new(PACING, t0);
        for _ in 0..4 {
            assert_eq!(b.deadline(1), Some(t0), "a token is there");
            assert!(b.due(1, t0));
        }
        assert!(!b.due(1, t0), "the burst is spent");
        assert_eq!(b.deadline(1), Some(t0 + ms(5)));
        assert!(!b.due(1, t0 + ms(4)));
        assert_eq!(b.deadline(1), Some(t0 + ms(5)));
        assert!(b.due(1, t0 + ms(5)));
        assert_eq!(b.deadline(1), Some(t0 + ms(10)));
    }

    #[test]
    fn a_full_batch_goes_at_once_without_spending_a_token() {
        let t0 = Instant::now();
        let mut b = Batcher::new(PACING, t0);
        for _ in 0..4 {
            assert!(b.due(1, t0));
        }
        assert!(b.due(1000, t0));
        assert!(b.due(5000, t0));
        assert!(!b.due(999, t0));
        // The full batches left the bucket as it was: one token 5 ms on.
        assert!(b.due(1, t0 + ms(5)));
    }

    #[test]
    fn a_quiet_spell_earns_back_the_burst_and_no_more() {
        let t0 = Instant::now();
        let mut b = Batcher::new(PACING, t0);
        for _ in 0..4 {
            assert!(b.due(1, t0));
        }
        let later = t0 + ms(1000);
        for _ in 0..4 {
            assert!(b.due(1, later));
        }
        assert!(!b.due(1, later), "the bucket holds only the burst");
    }
}
