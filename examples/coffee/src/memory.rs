//! The sample's state, in memory and bounded: sessions, orders and the webhook ids seen.
//! A restart forgets all of it (users sign in again; an order paid while the server was
//! down is still paid in Plaza, and `GET /pay/orders/{id}` would tell). A real app keeps
//! orders in its database.

use std::collections::{HashMap, VecDeque};

/// A map that keeps at most `max` entries, forgetting the oldest inserted first.
#[derive(Debug)]
pub struct Bounded<V> {
    entries: HashMap<String, V>,
    insertion_order: VecDeque<String>,
    max: usize,
}

impl<V> Bounded<V> {
    pub fn new(max: usize) -> Self {
        assert!(max > 0, "a bounded map holds at least one entry");
        Self { entries: HashMap::new(), insertion_order: VecDeque::new(), max }
    }

    /// Inserts or replaces; when full, the oldest entry is forgotten to make room.
    pub fn insert(&mut self, key: String, value: V) {
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.max {
                match self.insertion_order.pop_front() {
                    Some(oldest) => {
                        self.entries.remove(&oldest);
                    }
                    None => break,
                }
            }
            self.insertion_order.push_back(key.clone());
        }
        self.entries.insert(key, value);
        debug_assert!(self.entries.len() <= self.max && self.insertion_order.len() == self.entries.len());
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_forgets_its_oldest_entry_and_never_grows() {
        let mut map = Bounded::new(2);
        map.insert("a".into(), 1);
        map.insert("b".into(), 2);
        map.insert("a".into(), 10);
        assert_eq!(map.len(), 2);
        map.insert("c".into(), 3);
        assert_eq!(map.len(), 2);
        assert!(!map.contains("a"), "the oldest insertion goes first, even after a replacement");
        assert_eq!(map.get("b"), Some(&2));
        assert_eq!(map.get("c"), Some(&3));
    }
}
