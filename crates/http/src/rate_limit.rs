//! A fixed-window counter per key (a client address, a username). In memory and per
//! node: with several nodes behind a balancer each enforces its own share, which is the
//! usual trade for not putting a database write in front of every login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `limit` hits per key per `window`.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    keys_max: usize,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    hits: u32,
}

impl RateLimiter {
    /// `keys_max` bounds memory: when that many keys are tracked, expired windows are
    /// swept, and if none has expired the oldest is dropped.
    pub fn new(limit: u32, window: Duration, keys_max: usize) -> Self {
        Self { limit, window, keys_max: keys_max.max(1), windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a hit for `key`. `Err(retry_after)` when the key is over its limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !windows.contains_key(key) && windows.len() >= self.keys_max {
            let window = self.window;
            windows.retain(|_, entry| now.duration_since(entry.started) < window);
            if windows.len() >= self.keys_max {
                if let Some(oldest) = windows.iter().min_by_key(|(_, entry)| entry.started).map(|(k, _)| k.clone()) {
                    windows.remove(&oldest);
                }
            }
        }
        let entry = windows.entry(key.to_string()).or_insert(Window { started: now, hits: 0 });
        if now.duration_since(entry.started) >= self.window {
            *entry = Window { started: now, hits: 0 };
        }
        if entry.hits >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.started)));
        }
        entry.hits += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_until_the_window_ends() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60), 100);
        let start = Instant::now();
        assert!(limiter.check_at("ann", start).is_ok());
        assert!(limiter.check_at("ann", start).is_ok());
        let retry = limiter.check_at("ann", start + Duration::from_secs(10)).expect_err("limited");
        assert_eq!(retry, Duration::from_secs(50));
        assert!(limiter.check_at("bob", start).is_ok());
        assert!(limiter.check_at("ann", start + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn tracks_a_bounded_number_of_keys() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60), 3);
        let now = Instant::now();
        for key in ["a", "b", "c", "d", "e"] {
            assert!(limiter.check_at(key, now).is_ok());
        }
        assert!(limiter.windows.lock().map(|w| w.len()).unwrap_or(0) <= 3);
    }
}
