//! A bounded LRU map from a token key to what verifying it produced.
//!
//! Only tokens that verified are ever inserted, so a flood of garbage or
//! forged tokens cannot evict good entries. The map is bounded by entry count
//! and by an approximate byte budget; the least recently used entries go
//! first. The cache knows nothing of tokens or keys: the engine decides what
//! an entry holds and when a hit is still valid.

use std::collections::HashMap;
use std::hash::Hash;

const NIL: usize = usize::MAX;

struct Node<K, V> {
    key: K,
    value: V,
    bytes: usize,
    prev: usize,
    next: usize,
}

/// The LRU map. `K` is a small key (the engine's keyed hash of the token),
/// `V` the engine's entry type.
pub struct Lru<K, V> {
    map: HashMap<K, usize>,
    nodes: Vec<Option<Node<K, V>>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<K, V> std::fmt::Debug for Lru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lru")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// An empty cache; `max_entries == 0` disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> Lru<K, V> {
        Lru {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry for `key`, marked most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.map.get(key)?;
        self.unlink(i);
        self.push_front(i);
        self.nodes.get_mut(i)?.as_mut().map(|n| &mut n.value)
    }

    /// Inserts or replaces an entry of about `bytes` bytes, evicting the
    /// least recently used entries to stay within both bounds. An entry
    /// larger than the whole byte budget is not stored. Returns how many
    /// other entries were evicted to make room (for the eviction counter).
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> usize {
        if self.max_entries == 0 || bytes > self.max_bytes {
            return 0;
        }
        self.remove(&key);
        let mut evicted = 0;
        while !self.map.is_empty()
            && (self.map.len() >= self.max_entries || self.bytes + bytes > self.max_bytes)
        {
            let tail = self.tail;
            let Some(k) = self.nodes.get(tail).and_then(|n| n.as_ref()).map(|n| n.key) else {
                break;
            };
            self.remove(&k);
            evicted += 1;
        }
        let node = Node {
            key,
            value,
            bytes,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.nodes.get_mut(i) {
                    *slot = Some(node);
                }
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.push_front(i);
        self.map.insert(key, i);
        self.bytes += bytes;
        evicted
    }

    /// Removes an entry.
    pub fn remove(&mut self, key: &K) {
        let Some(i) = self.map.remove(key) else {
            return;
        };
        self.unlink(i);
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            self.bytes = self.bytes.saturating_sub(node.bytes);
        }
        self.free.push(i);
    }

    fn links(&mut self, i: usize) -> Option<(usize, usize)> {
        self.nodes
            .get(i)
            .and_then(|n| n.as_ref())
            .map(|n| (n.prev, n.next))
    }

    fn set_prev(&mut self, i: usize, prev: usize) {
        if let Some(Some(n)) = self.nodes.get_mut(i) {
            n.prev = prev;
        }
    }

    fn set_next(&mut self, i: usize, next: usize) {
        if let Some(Some(n)) = self.nodes.get_mut(i) {
            n.next = next;
        }
    }

    fn unlink(&mut self, i: usize) {
        let Some((prev, next)) = self.links(i) else {
            return;
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.set_next(prev, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.set_prev(next, prev);
        }
        self.set_prev(i, NIL);
        self.set_next(i, NIL);
    }

    fn push_front(&mut self, i: usize) {
        let old = self.head;
        self.set_prev(i, NIL);
        self.set_next(i, old);
        if old == NIL {
            self.tail = i;
        } else {
            self.set_prev(old, i);
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> u64 {
        u64::from(n)
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_first() {
        let mut c = Lru::new(2, 1000);
        c.insert(k(1), "a", 10);
        c.insert(k(2), "b", 10);
        assert!(c.get_mut(&k(1)).is_some()); // 2 is now the oldest
        c.insert(k(3), "c", 10);
        assert!(c.get_mut(&k(2)).is_none());
        assert!(c.get_mut(&k(1)).is_some());
        assert!(c.get_mut(&k(3)).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn insert_says_how_many_entries_it_evicted() {
        let mut c = Lru::new(3, 30);
        assert_eq!(c.insert(k(1), "a", 10), 0);
        assert_eq!(c.insert(k(2), "b", 10), 0);
        assert_eq!(c.insert(k(2), "b", 10), 0); // a replacement is no eviction
        assert_eq!(c.insert(k(3), "c", 10), 0);
        assert_eq!(c.insert(k(4), "d", 25), 3);
        assert_eq!(c.insert(k(5), "e", 100), 0); // too large: not stored
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let mut c = Lru::new(100, 25);
        c.insert(k(1), 1, 10);
        c.insert(k(2), 2, 10);
        c.insert(k(3), 3, 10);
        assert_eq!(c.len(), 2);
        assert!(c.bytes() <= 25);
        assert!(c.get_mut(&k(1)).is_none());
        c.insert(k(4), 4, 26); // larger than the whole budget: not stored
        assert!(c.get_mut(&k(4)).is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn replacing_and_removing_keep_the_accounting_exact() {
        let mut c = Lru::new(10, 100);
        c.insert(k(1), 1, 40);
        c.insert(k(1), 2, 30);
        assert_eq!(c.bytes(), 30);
        assert_eq!(c.get_mut(&k(1)).copied(), Some(2));
        c.remove(&k(1));
        assert_eq!((c.len(), c.bytes()), (0, 0));
        assert!(c.is_empty());
    }

    #[test]
    fn a_disabled_cache_stores_nothing() {
        let mut c = Lru::new(0, 100);
        c.insert(k(1), 1, 1);
        assert!(c.get_mut(&k(1)).is_none());
    }

    #[test]
    fn heavy_churn_never_exceeds_the_bounds_and_reuses_slots() {
        let mut c = Lru::new(8, 1_000);
        for i in 0..10_000u32 {
            c.insert(u64::from(i), i, 100);
            assert!(c.len() <= 8 && c.bytes() <= 1_000);
        }
        assert!(c.nodes.len() <= 9, "slots are reused, not leaked");
    }
}
