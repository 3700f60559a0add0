//! How sign-in attempts are throttled without letting a stranger lock the owner out.
//!
//! Three counters, in memory and per node (as `plaza_http::RateLimiter` explains):
//! - per client address, every attempt: one machine cannot try many accounts;
//! - per username *and* address, every attempt: one machine cannot try one account often,
//!   while the owner, from their own address, is unaffected by what others send;
//! - per username, failures only, with a threshold far above the other two: past it each
//!   further attempt on that name is answered after a delay that grows with the failures
//!   (capped), never refused, so a distributed guesser is slowed and the owner still gets in.

use plaza_http::RateLimiter;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which failures per username are counted.
pub const USERNAME_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How much each failure past the threshold adds to the delay.
pub const DELAY_STEP: Duration = Duration::from_millis(50);
/// The longest delay a sign-in attempt waits.
pub const DELAY_MAX: Duration = Duration::from_secs(5);
/// Keys each counter tracks before it sweeps (bounded memory under a flood of names).
const KEYS_MAX: usize = 100_000;

#[derive(Debug)]
pub(crate) struct LoginThrottle {
    by_address: RateLimiter,
    by_username_and_address: RateLimiter,
    failures: FailureCounter,
}

impl LoginThrottle {
    pub(crate) fn new(
        per_address_per_minute: u32,
        per_username_and_address_per_minute: u32,
        failures_per_username: u32,
    ) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            by_address: RateLimiter::new(per_address_per_minute, minute, KEYS_MAX),
            by_username_and_address: RateLimiter::new(per_username_and_address_per_minute, minute, KEYS_MAX),
            failures: FailureCounter::new(failures_per_username, USERNAME_FAILURE_WINDOW, KEYS_MAX),
        }
    }

    /// Counts an attempt. `Err(retry_after)` when this address, or this address on this
    /// username, is over its limit; otherwise how long to wait before judging it.
    pub(crate) fn admit(&self, client_address: &str, username: &str) -> Result<Duration, Duration> {
        self.by_address.check(client_address)?;
        // A username cannot contain a space, so the key cannot be forged from another pair.
        self.by_username_and_address.check(&format!("{username} {client_address}"))?;
        Ok(self.failures.delay(username, Instant::now()))
    }

    /// Records a wrong password (or an unknown name) for `username`.
    pub(crate) fn failed(&self, username: &str) {
        self.failures.record(username, Instant::now());
    }
}

/// Failures per key in a fixed window; past `threshold` a delay of [`DELAY_STEP`] per
/// further failure, up to [`DELAY_MAX`].
#[derive(Debug)]
struct FailureCounter {
    threshold: u32,
    window: Duration,
    keys_max: usize,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailureCounter {
    fn new(threshold: u32, window: Duration, keys_max: usize) -> Self {
        Self { threshold, window, keys_max, counts: Mutex::new(HashMap::new()) }
    }

    fn delay(&self, key: &str, now: Instant) -> Duration {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match counts.get(key) {
            Some((started, failures)) if now.duration_since(*started) < self.window && *failures > self.threshold => {
                DELAY_STEP.saturating_mul(failures - self.threshold).min(DELAY_MAX)
            }
            _ => Duration::ZERO,
        }
    }

    fn record(&self, key: &str, now: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !counts.contains_key(key) && counts.len() >= self.keys_max {
            let window = self.window;
            counts.retain(|_, (started, _)| now.duration_since(*started) < window);
            if counts.len() >= self.keys_max {
                counts.clear();
            }
        }
        let entry = counts.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_s_attempts_do_not_limit_the_owner_s_address() {
        let throttle = LoginThrottle::new(30, 3, 1_000);
        for _ in 0..3 {
            assert!(throttle.admit("10.0.0.9", "ann").is_ok());
        }
        assert!(throttle.admit("10.0.0.9", "ann").is_err(), "the stranger is limited on ann");
        assert_eq!(throttle.admit("10.0.0.1", "ann"), Ok(Duration::ZERO), "the owner is not");
        assert!(throttle.admit("10.0.0.9", "ben").is_ok(), "the stranger's address has room for others");
    }

    #[test]
    fn failures_past_the_threshold_slow_a_name_down_and_the_slowdown_is_capped() {
        let counter = FailureCounter::new(10, Duration::from_secs(60), 100);
        let start = Instant::now();
        for _ in 0..10 {
            counter.record("ann", start);
        }
        assert_eq!(counter.delay("ann", start), Duration::ZERO);
        counter.record("ann", start);
        counter.record("ann", start);
        assert_eq!(counter.delay("ann", start), DELAY_STEP * 2);
        for _ in 0..1_000 {
            counter.record("ann", start);
        }
        assert_eq!(counter.delay("ann", start), DELAY_MAX);
        assert_eq!(counter.delay("ann", start + Duration::from_secs(61)), Duration::ZERO, "the window ended");
        assert_eq!(counter.delay("ben", start), Duration::ZERO);
    }
}
