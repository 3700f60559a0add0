//! A short-lived, bounded cache of authenticated sessions, so that authenticating a
//! request is usually a hash-map look-up instead of a database query.
//!
//! Revocation: logging out evicts the entry on the node that served the logout at once.
//! Another node may keep accepting a revoked token until its entry ages out (at most
//! the TTL, 10 s by default); a zero TTL turns the cache off.

use crate::model::User;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SessionCache {
    ttl: Duration,
    entries_max: usize,
    entries: RwLock<HashMap<String, (User, Instant)>>,
}

impl SessionCache {
    pub fn new(ttl: Duration, entries_max: usize) -> Self {
        Self { ttl, entries_max, entries: RwLock::new(HashMap::new()) }
    }

    pub fn get(&self, token_hash: &str) -> Option<User> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (user, cached_at) = entries.get(token_hash)?;
        (cached_at.elapsed() < self.ttl).then(|| user.clone())
    }

    pub fn put(&self, token_hash: &str, user: &User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.entries_max {
            let ttl = self.ttl;
            entries.retain(|_, (_, cached_at)| cached_at.elapsed() < ttl);
            if entries.len() >= self.entries_max {
                // Everything is fresh and the cache is full: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(token_hash.to_string(), (user.clone(), Instant::now()));
    }

    pub fn remove(&self, token_hash: &str) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(token_hash);
    }

    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_kernel::Timestamp;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            username: id.into(),
            display_name: id.into(),
            avatar_url: None,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn entries_are_served_until_evicted_and_memory_is_bounded() {
        let cache = SessionCache::new(Duration::from_secs(60), 2);
        cache.put("a", &user("ann"));
        assert_eq!(cache.get("a").map(|u| u.id), Some("ann".to_string()));
        cache.remove("a");
        assert!(cache.get("a").is_none());
        for key in ["x", "y", "z"] {
            cache.put(key, &user(key));
        }
        assert!(cache.entries.read().map(|e| e.len()).unwrap_or(0) <= 2);
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = SessionCache::new(Duration::ZERO, 10);
        cache.put("a", &user("ann"));
        assert!(cache.get("a").is_none());
    }
}
