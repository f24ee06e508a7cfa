//! Per-token rates of what a token makes the hub write: record commands through the API and
//! the signalling actions that append (raise and lower a hand, the floor, joining).
//!
//! One GCRA limiter (governor) keyed by the token's id (`jti`): a burst, then a steady rate.
//! Only verified tokens are keys, so an outsider cannot grow the table; keys whose bucket is
//! full again are dropped once the table passes [`MAX_KEYS`].

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Tokens tracked before the table drops those at rest.
const MAX_KEYS: usize = 10_000;

/// The write rates of every token.
pub struct Rates {
    writes: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Rates {
    /// `per_minute` writes a minute for each token after a burst of `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self {
            writes: DefaultKeyedRateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            ),
            clock: DefaultClock::default(),
        }
    }

    /// Count one write for token `jti`; when its rate is spent, how long until the next one.
    pub fn write(&self, jti: &str) -> Result<(), Duration> {
        if self.writes.len() > MAX_KEYS {
            self.writes.retain_recent();
        }
        self.writes
            .check_key(&jti.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Tokens tracked now.
    pub fn tracked(&self) -> usize {
        self.writes.len()
    }
}

impl std::fmt::Debug for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rates")
            .field("tracked", &self.tracked())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refused_with_a_wait_and_each_token_on_its_own() {
        let r = Rates::new(60, 5);
        for _ in 0..5 {
            assert!(r.write("a").is_ok());
        }
        let wait = r.write("a").expect_err("the burst is spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another token is not held back by the first.
        assert!(r.write("b").is_ok());
        assert_eq!(r.tracked(), 2);
    }
}
