//! A short-lived, bounded cache of authenticated sessions, so that authenticating a
//! request is usually a hash-map look-up instead of a database query.
//!
//! Revocation: logging out evicts the entry on the node that served the logout at once,
//! and the other nodes when they hear of it on the bus. A node that missed the notice may
//! keep accepting a revoked token until its entry ages out (at most the TTL, 10 s by
//! default); a zero TTL turns the cache off. Roles are cached with the session, so a role
//! granted or revoked from the command line takes effect within the TTL.

use crate::sessions::Authenticated;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SessionCache {
    ttl: Duration,
    entries_max: usize,
    entries: RwLock<HashMap<String, (Authenticated, Instant)>>,
}

impl SessionCache {
    pub fn new(ttl: Duration, entries_max: usize) -> Self {
        Self { ttl, entries_max, entries: RwLock::new(HashMap::new()) }
    }

    pub fn get(&self, token_hash: &str) -> Option<Authenticated> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (caller, cached_at) = entries.get(token_hash)?;
        (cached_at.elapsed() < self.ttl).then(|| caller.clone())
    }

    pub fn put(&self, token_hash: &str, caller: &Authenticated) {
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
        entries.insert(token_hash.to_string(), (caller.clone(), Instant::now()));
    }

    pub fn remove(&self, token_hash: &str) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(token_hash);
    }

    /// Forgets every session of `user_id` but `except`.
    pub fn remove_user(&self, user_id: &str, except: Option<&str>) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|token_hash, (caller, _)| caller.user.id != user_id || Some(token_hash.as_str()) == except);
    }

    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::sessions::SessionId;
    use plaza_kernel::Timestamp;

    fn user(id: &str) -> Authenticated {
        let user = User {
            id: id.into(),
            username: id.into(),
            display_name: id.into(),
            avatar_url: None,
            created_at: Timestamp::now(),
            bio: String::new(),
            followers_count: 0,
            following_count: 0,
        };
        Authenticated { user, is_admin: false, session: SessionId(id.into()) }
    }

    #[test]
    fn entries_are_served_until_evicted_and_memory_is_bounded() {
        let cache = SessionCache::new(Duration::from_secs(60), 2);
        cache.put("a", &user("ann"));
        assert_eq!(cache.get("a").map(|caller| caller.user.id), Some("ann".to_string()));
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

    #[test]
    fn a_user_s_sessions_are_forgotten_but_the_one_kept() {
        let cache = SessionCache::new(Duration::from_secs(60), 10);
        cache.put("a1", &user("ann"));
        cache.put("a2", &user("ann"));
        cache.put("b1", &user("ben"));
        cache.remove_user("ann", Some("a2"));
        assert!(cache.get("a1").is_none());
        assert!(cache.get("a2").is_some());
        assert!(cache.get("b1").is_some());
    }
}
