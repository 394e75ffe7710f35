//! Automatic reconnection: exponential backoff with jitter.

use std::time::Duration;

/// How the client reconnects after a connection is lost.
///
/// The delay before attempt `n` (counting from 0 after the last successful connection) is
/// `min(max_delay, initial_delay × multiplierⁿ)`, reduced by a random fraction of up to
/// `jitter` of itself, so that many clients cut off at once do not come back at once. A
/// refusal that retrying cannot fix ([`DisconnectReason::is_fatal`]: bad credentials, not
/// authorized, banned, …) stops the client whatever this says.
///
/// [`DisconnectReason::is_fatal`]: crate::DisconnectReason::is_fatal
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectOptions {
    enabled: bool,
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: f64,
    max_attempts: Option<u32>,
}

impl Default for ReconnectOptions {
    /// Enabled: 500 ms doubling up to 30 s, jitter 0.5, unlimited attempts.
    fn default() -> Self {
        ReconnectOptions {
            enabled: true,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl ReconnectOptions {
    /// No reconnection: the client stops when its connection ends.
    pub fn disabled() -> Self {
        ReconnectOptions {
            enabled: false,
            ..ReconnectOptions::default()
        }
    }

    /// Exponential backoff from `initial_delay` up to `max_delay` (defaults otherwise).
    pub fn exponential(initial_delay: Duration, max_delay: Duration) -> Self {
        ReconnectOptions {
            initial_delay,
            max_delay: max_delay.max(initial_delay),
            ..ReconnectOptions::default()
        }
    }

    /// The factor applied to the delay after each failed attempt (at least 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// The largest fraction of a delay removed at random, clamped to `0.0..=1.0`; 0 turns
    /// jitter off.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Gives up after this many consecutive failed attempts (`None`: never).
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Whether the client reconnects at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The delay before attempt `attempt` (0-based) with `unit`, a number in `0.0..1.0`,
    /// choosing the jitter; `None` once `max_attempts` is reached or when disabled.
    pub fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if !self.enabled || self.max_attempts.is_some_and(|max| attempt >= max) {
            return None;
        }
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max_delay.as_secs_f64());
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = capped * (1.0 - self.jitter * unit);
        Some(Duration::from_secs_f64(jittered.max(0.0)))
    }
}

/// The attempt counter of one client.
#[derive(Debug)]
pub(crate) struct Backoff {
    options: ReconnectOptions,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(options: ReconnectOptions) -> Self {
        Backoff {
            options,
            attempt: 0,
        }
    }

    /// A connection succeeded: the next loss starts from the initial delay.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt and its 1-based number, or `None` to stop.
    pub(crate) fn next_delay(&mut self) -> Option<(Duration, u32)> {
        let delay = self.options.delay(self.attempt, rand::random::<f64>())?;
        self.attempt = self.attempt.saturating_add(1);
        Some((delay, self.attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let o = ReconnectOptions::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .jitter(0.0);
        let delays: Vec<_> = (0..6).map(|n| o.delay(n, 0.9).unwrap()).collect();
        let ms: Vec<_> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_removes_at_most_its_fraction() {
        let o = ReconnectOptions::exponential(Duration::from_secs(1), Duration::from_secs(1))
            .jitter(0.5);
        assert_eq!(o.delay(0, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(o.delay(0, 1.0), Some(Duration::from_millis(500)));
        let mid = o.delay(0, 0.5).unwrap();
        assert_eq!(mid, Duration::from_millis(750));
    }

    #[test]
    fn disabled_and_max_attempts_stop() {
        assert_eq!(ReconnectOptions::disabled().delay(0, 0.0), None);
        let o = ReconnectOptions::default().max_attempts(Some(2));
        assert!(o.delay(1, 0.0).is_some());
        assert_eq!(o.delay(2, 0.0), None);
    }

    #[test]
    fn backoff_counts_and_resets() {
        let mut b = Backoff::new(
            ReconnectOptions::exponential(Duration::from_millis(10), Duration::from_secs(1))
                .jitter(0.0),
        );
        assert_eq!(b.next_delay(), Some((Duration::from_millis(10), 1)));
        assert_eq!(b.next_delay(), Some((Duration::from_millis(20), 2)));
        b.reset();
        assert_eq!(b.next_delay(), Some((Duration::from_millis(10), 1)));
    }
}
