//! Bounded maps from a small key to an engine-defined value: [`S3Fifo`],
//! the verified-token cache, and [`Lru`], the userinfo session slots.
//!
//! Both are bounded by entry count and by an approximate byte budget, and
//! know nothing of tokens or keys: the engine decides what an entry holds
//! and when a hit is still valid. Only tokens that verified are ever
//! inserted into the token cache, so a flood of garbage or forged tokens
//! cannot evict good entries (a lookup that misses changes nothing).
//!
//! Why S3-FIFO for tokens (Yang et al., "FIFO queues are all you need for
//! cache eviction", SOSP '23) and not LRU: requests are spread over users
//! about as Zipf's law says, with far more users than the cache holds. LRU
//! then gives a slot to every token seen once, and each pushes a popular one
//! a step closer to eviction. S3-FIFO puts a new token in a small FIFO (a
//! tenth of the entries); only a token asked for again while there moves to
//! the main FIFO, and main's entries are kept while they are being hit. On
//! the Zipf stream of `make bench` (10,000 users, 1,000 entries) that is a
//! hit ratio of 73.9 % against LRU's 67.7 % (`bench/cache_sim.py`, which
//! also replays scans, loops and shifting popularity: BENCHMARKS.md). A hit
//! only bumps a two-bit counter, where LRU relinks the entry at the front.
//! SIEVE (NSDI '24) is as simple and half a point better on that stream,
//! but falls 8 points below LRU on interleaved login sessions and 3 (13 at
//! 4,096 entries) when the popular users are all replaced at once; S3-FIFO
//! stays within a point of LRU on sessions, is 4 points behind on that
//! wholesale replacement at 4,096 entries (ahead at 1,000), and ahead on
//! every other stream.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

const NIL: usize = usize::MAX;

/// The hasher of the caches' maps. Their keys are already keyed hashes
/// (the engine's SipHash of the token under a random key per VM, which a
/// client cannot predict): hashing them again with SipHash only cost time.
/// A `u64` key is taken as it is; other key types (tests) are mixed.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, i: u64) {
        // One write (a `u64` key): the key itself.
        self.0 = self.0.rotate_left(5) ^ i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Keyed = BuildHasherDefault<KeyHasher>;

/// The most hits an entry's counter remembers (two bits, as in the paper):
/// a popular entry survives at most this many passes of main's tail unhit.
const MAX_FREQ: u8 = 3;

struct Node<K, V> {
    key: K,
    value: V,
    bytes: usize,
    prev: usize,
    next: usize,
    list: usize,
    freq: u8,
}

#[derive(Clone, Copy)]
struct Ends {
    /// Newest.
    head: usize,
    /// Oldest.
    tail: usize,
    len: usize,
}

/// Entries in a slab, each on one of two intrusive doubly linked lists
/// (head newest), found by key; the byte total of all of them.
struct Slab<K, V> {
    map: HashMap<K, usize, Keyed>,
    nodes: Vec<Option<Node<K, V>>>,
    free: Vec<usize>,
    lists: [Ends; 2],
    bytes: usize,
}

impl<K: Hash + Eq + Copy, V> Slab<K, V> {
    fn new() -> Slab<K, V> {
        let empty = Ends {
            head: NIL,
            tail: NIL,
            len: 0,
        };
        Slab {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            lists: [empty; 2],
            bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn find(&self, key: &K) -> Option<usize> {
        self.map.get(key).copied()
    }

    fn node(&self, i: usize) -> Option<&Node<K, V>> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, i: usize) -> Option<&mut Node<K, V>> {
        self.nodes.get_mut(i).and_then(Option::as_mut)
    }

    fn list_len(&self, list: usize) -> usize {
        self.lists.get(list).map_or(0, |l| l.len)
    }

    fn tail(&self, list: usize) -> Option<usize> {
        self.lists.get(list).map(|l| l.tail).filter(|&t| t != NIL)
    }

    /// Stores a new entry at the head of `list`; the key must be absent.
    fn add(&mut self, list: usize, key: K, value: V, bytes: usize, freq: u8) {
        let node = Node {
            key,
            value,
            bytes,
            prev: NIL,
            next: NIL,
            list,
            freq,
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
        self.push_head(i, list);
        self.map.insert(key, i);
        self.bytes += bytes;
    }

    /// Removes entry `i`, handing it back.
    fn take(&mut self, i: usize) -> Option<Node<K, V>> {
        self.unlink(i);
        let node = self.nodes.get_mut(i).and_then(Option::take)?;
        self.map.remove(&node.key);
        self.bytes = self.bytes.saturating_sub(node.bytes);
        self.free.push(i);
        Some(node)
    }

    /// Moves entry `i` to the head of `list` (its own or the other).
    fn move_to_head(&mut self, i: usize, list: usize) {
        self.unlink(i);
        self.push_head(i, list);
    }

    fn unlink(&mut self, i: usize) {
        let Some((prev, next, list)) = self.node(i).map(|n| (n.prev, n.next, n.list)) else {
            return;
        };
        let Some(ends) = self.lists.get_mut(list) else {
            return;
        };
        ends.len = ends.len.saturating_sub(1);
        if next == NIL {
            ends.head = prev;
        }
        if prev == NIL {
            ends.tail = next;
        }
        if let Some(n) = self.node_mut(prev) {
            n.next = next;
        }
        if let Some(n) = self.node_mut(next) {
            n.prev = prev;
        }
    }

    /// Links entry `i` (unlinked) at the head of `list`: `prev` points to
    /// the older neighbour, `next` to the newer one.
    fn push_head(&mut self, i: usize, list: usize) {
        let Some(ends) = self.lists.get_mut(list) else {
            return;
        };
        let old = ends.head;
        ends.head = i;
        if old == NIL {
            ends.tail = i;
        }
        ends.len += 1;
        if let Some(n) = self.node_mut(i) {
            n.prev = old;
            n.next = NIL;
            n.list = list;
        }
        if let Some(n) = self.node_mut(old) {
            n.next = i;
        }
    }
}

/// Keys recently evicted from S3-FIFO's small queue, oldest first, at most
/// as many as the cache holds entries (so at most a few percent of its
/// memory: 24 bytes a key against kilobytes an entry). A key found here was
/// asked for again soon after it left: it goes straight to main.
struct Ghost<K> {
    ring: VecDeque<(K, u64)>,
    /// Key -> the sequence number of its newest place in `ring`; a ring
    /// slot whose number is not this one is dead.
    latest: HashMap<K, u64, Keyed>,
    seq: u64,
}

impl<K: Hash + Eq + Copy> Ghost<K> {
    fn new() -> Ghost<K> {
        Ghost {
            ring: VecDeque::new(),
            latest: HashMap::default(),
            seq: 0,
        }
    }

    fn push(&mut self, key: K, cap: usize) {
        self.seq += 1;
        self.latest.insert(key, self.seq);
        self.ring.push_back((key, self.seq));
        while self.ring.len() > cap {
            if let Some((k, s)) = self.ring.pop_front() {
                if self.latest.get(&k) == Some(&s) {
                    self.latest.remove(&k);
                }
            }
        }
    }

    /// True (and forgotten) when `key` is remembered.
    fn take(&mut self, key: &K) -> bool {
        self.latest.remove(key).is_some()
    }
}

const SMALL: usize = 0;
const MAIN: usize = 1;

/// The token cache: S3-FIFO (see the module documentation). `K` is a small
/// key (the engine's keyed hash of the token), `V` the engine's entry type.
///
/// New entries enter the small queue, the tenth of the entries most
/// recently inserted. Making room takes the small queue's oldest entry when
/// the small queue holds at least a tenth of the entries: if it was hit
/// while there it moves to main, otherwise it is evicted and its key
/// remembered in the ghost. Otherwise main's oldest entry goes: if it was
/// hit since it last came by it is kept, as the newest, with one hit fewer
/// remembered; else it is evicted. An entry whose key the ghost remembers
/// is inserted into main directly.
pub struct S3Fifo<K, V> {
    slab: Slab<K, V>,
    ghost: Ghost<K>,
    max_entries: usize,
    max_bytes: usize,
}

impl<K, V> std::fmt::Debug for S3Fifo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fifo")
            .field("entries", &self.slab.map.len())
            .field("bytes", &self.slab.bytes)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy, V> S3Fifo<K, V> {
    /// An empty cache; `max_entries == 0` disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> S3Fifo<K, V> {
        S3Fifo {
            slab: Slab::new(),
            ghost: Ghost::new(),
            max_entries,
            max_bytes,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.slab.len() == 0
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.slab.bytes
    }

    /// The entry for `key`, its hit remembered. A miss changes nothing.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.slab.find(key)?;
        let node = self.slab.node_mut(i)?;
        node.freq = node.freq.saturating_add(1).min(MAX_FREQ);
        Some(&mut node.value)
    }

    /// Inserts or replaces an entry of about `bytes` bytes, evicting
    /// entries to stay within both bounds. An entry larger than the whole
    /// byte budget is not stored. A replaced entry keeps its queue and its
    /// hits. Returns how many other entries were evicted to make room (for
    /// the eviction counter).
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> usize {
        if self.max_entries == 0 || bytes > self.max_bytes {
            return 0;
        }
        let (list, freq) = match self.slab.find(&key).and_then(|i| self.slab.take(i)) {
            Some(old) => (old.list, old.freq),
            None if self.ghost.take(&key) => (MAIN, 0),
            None => (SMALL, 0),
        };
        let mut evicted = 0;
        while self.slab.len() > 0
            && (self.slab.len() >= self.max_entries || self.slab.bytes + bytes > self.max_bytes)
        {
            if !self.evict_one() {
                break;
            }
            evicted += 1;
        }
        self.slab.add(list, key, value, bytes, freq);
        evicted
    }

    /// Removes an entry (the engine found it stale or refused): its key is
    /// not remembered in the ghost.
    pub fn remove(&mut self, key: &K) {
        if let Some(i) = self.slab.find(key) {
            self.slab.take(i);
        }
    }

    /// Evicts one entry, first moving the small queue's hit entries to main
    /// and giving main's hit entries another pass. False only when empty.
    fn evict_one(&mut self) -> bool {
        // Each turn moves a small entry to main (entering with no hits) or
        // takes one hit off a main entry, and nothing enters the small
        // queue meanwhile, so an eviction comes within this many turns.
        let turns = self.slab.len().saturating_mul(usize::from(MAX_FREQ) + 1) + 1;
        for _ in 0..turns {
            let len = self.slab.len();
            let small = self.slab.list_len(SMALL);
            let from_small = small > 0 && (small * 10 >= len || self.slab.list_len(MAIN) == 0);
            let list = if from_small { SMALL } else { MAIN };
            let Some(t) = self.slab.tail(list) else {
                return false;
            };
            let Some(node) = self.slab.node_mut(t) else {
                return false;
            };
            if node.freq > 0 {
                node.freq = if from_small { 0 } else { node.freq - 1 };
                self.slab.move_to_head(t, MAIN);
                continue;
            }
            let Some(gone) = self.slab.take(t) else {
                return false;
            };
            if from_small {
                let cap = len - len / 10;
                self.ghost.push(gone.key, cap);
            }
            return true;
        }
        false
    }
}

/// The LRU map, for the userinfo session slots: a slot must outlive the
/// call it waits for, which recency (not popularity) predicts. `K` is a
/// small key, `V` the engine's entry type.
pub struct Lru<K, V> {
    slab: Slab<K, V>,
    max_entries: usize,
    max_bytes: usize,
}

impl<K, V> std::fmt::Debug for Lru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lru")
            .field("entries", &self.slab.map.len())
            .field("bytes", &self.slab.bytes)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// An empty cache; `max_entries == 0` disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> Lru<K, V> {
        Lru {
            slab: Slab::new(),
            max_entries,
            max_bytes,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.slab.len() == 0
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.slab.bytes
    }

    /// The entry for `key`, marked most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.slab.find(key)?;
        self.slab.move_to_head(i, 0);
        self.slab.node_mut(i).map(|n| &mut n.value)
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
        while self.slab.len() > 0
            && (self.slab.len() >= self.max_entries || self.slab.bytes + bytes > self.max_bytes)
        {
            let Some(tail) = self.slab.tail(0) else {
                break;
            };
            self.slab.take(tail);
            evicted += 1;
        }
        self.slab.add(0, key, value, bytes, 0);
        evicted
    }

    /// Removes an entry.
    pub fn remove(&mut self, key: &K) {
        if let Some(i) = self.slab.find(key) {
            self.slab.take(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cache_key_is_its_own_hash() {
        use std::hash::BuildHasher;
        for key in [0u64, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(Keyed::default().hash_one(key), key);
        }
    }

    fn k(n: u8) -> u64 {
        u64::from(n)
    }

    /// The keys of `list`, oldest first, walked by the links (and checked
    /// against the list's length and the map).
    fn order<V>(slab: &Slab<u64, V>, list: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = slab.lists[list].tail;
        let mut prev = NIL;
        while i != NIL {
            let n = slab.node(i).unwrap();
            assert_eq!(n.prev, prev, "links agree both ways");
            assert_eq!(n.list, list);
            assert_eq!(slab.map.get(&n.key), Some(&i));
            out.push(n.key);
            prev = i;
            i = n.next;
        }
        assert_eq!(slab.lists[list].head, prev);
        assert_eq!(out.len(), slab.lists[list].len);
        out
    }

    // ---- the token cache (S3-FIFO) ----

    #[test]
    fn a_new_entry_seen_once_is_evicted_before_main_entries() {
        let mut c = S3Fifo::new(10, 1_000_000);
        for i in 0..10 {
            c.insert(i, i, 1);
        }
        // All ten went to the small queue; making room for the eleventh
        // moves the hit ones to main and evicts the oldest unhit one.
        for i in [0, 1, 2] {
            assert!(c.get_mut(&i).is_some());
        }
        assert_eq!(c.insert(10, 10, 1), 1);
        assert!(
            c.get_mut(&3).is_none(),
            "the oldest entry never hit went first"
        );
        assert_eq!(order(&c.slab, MAIN), [0, 1, 2]);
        for i in [0, 1, 2] {
            assert!(c.get_mut(&i).is_some(), "hit entries stayed");
        }
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn main_entries_that_were_hit_get_another_pass_and_unhit_ones_go() {
        let mut c = S3Fifo::new(10, 1_000_000);
        for i in 0..10 {
            c.insert(i, i, 1);
            c.get_mut(&i);
        }
        // Making room moves every hit small entry to main, with no hits,
        // so main's oldest, 0, goes.
        assert_eq!(c.insert(10, 10, 1), 1);
        assert_eq!(order(&c.slab, MAIN), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(order(&c.slab, SMALL), [10]);
        for i in [1, 2, 10] {
            c.get_mut(&i);
        }
        // 10 moves to main; 1 and 2 were hit: they go round, one hit
        // fewer; 3 was not: it goes (and is not remembered in the ghost).
        assert_eq!(c.insert(11, 11, 1), 1);
        assert_eq!(order(&c.slab, MAIN), [4, 5, 6, 7, 8, 9, 10, 1, 2]);
        assert_eq!(order(&c.slab, SMALL), [11]);
        assert!(c.get_mut(&3).is_none() && !c.ghost.take(&3));
        assert_eq!(c.slab.node(c.slab.find(&1).unwrap()).unwrap().freq, 0);
    }

    #[test]
    fn a_key_evicted_from_the_small_queue_and_inserted_again_goes_to_main() {
        let mut c = S3Fifo::new(10, 1_000_000);
        for i in 0..11 {
            c.insert(i, i, 1);
        }
        assert!(c.get_mut(&0).is_none(), "0 was evicted unhit");
        c.insert(0, 0, 1); // verified again: the ghost remembers it
        assert_eq!(order(&c.slab, MAIN), [0]);
        assert!(!c.ghost.take(&0), "a key in the cache is not in the ghost");
    }

    #[test]
    fn the_ghost_remembers_no_more_keys_than_the_cache_holds() {
        let mut c = S3Fifo::new(20, 1_000_000);
        for i in 0..10_000u64 {
            c.insert(i, (), 1);
        }
        assert!(c.ghost.ring.len() <= 20 && c.ghost.latest.len() <= 20);
    }

    #[test]
    fn hot_entries_survive_a_scan_that_flushes_an_lru() {
        let (mut s3, mut lru) = (S3Fifo::new(100, 1_000_000), Lru::new(100, 1_000_000));
        let hot = 0..50u64;
        for _ in 0..3 {
            for i in hot.clone() {
                if s3.get_mut(&i).is_none() {
                    s3.insert(i, (), 1);
                }
                if lru.get_mut(&i).is_none() {
                    lru.insert(i, (), 1);
                }
            }
        }
        // 1,000 tokens, each seen once (a batch job's fresh logins).
        for i in 1_000..2_000u64 {
            s3.insert(i, (), 1);
            lru.insert(i, (), 1);
        }
        let kept = |f: &mut dyn FnMut(&u64) -> bool| hot.clone().filter(|i| f(i)).count();
        assert_eq!(kept(&mut |i| s3.get_mut(i).is_some()), 50);
        assert_eq!(kept(&mut |i| lru.get_mut(i).is_some()), 0);
    }

    #[test]
    fn the_token_cache_byte_budget_bounds_it_and_oversized_entries_are_not_stored() {
        let mut c = S3Fifo::new(100, 25);
        c.insert(k(1), 1, 10);
        c.insert(k(2), 2, 10);
        assert_eq!(c.insert(k(3), 3, 10), 1);
        assert_eq!(c.len(), 2);
        assert!(c.bytes() <= 25);
        assert!(c.get_mut(&k(1)).is_none());
        assert_eq!(c.insert(k(4), 4, 26), 0); // larger than the whole budget
        assert!(c.get_mut(&k(4)).is_none());
        assert_eq!(c.len(), 2);
        assert_eq!(c.insert(k(5), 5, 25), 2); // room made by bytes alone
        assert_eq!((c.len(), c.bytes()), (1, 25));
    }

    #[test]
    fn replacing_keeps_the_queue_and_the_accounting_exact_and_removing_forgets() {
        let mut c = S3Fifo::new(10, 100);
        c.insert(k(1), 1, 40);
        c.get_mut(&k(1));
        assert_eq!(c.insert(k(1), 2, 30), 0, "a replacement is no eviction");
        assert_eq!(c.bytes(), 30);
        assert_eq!(c.slab.node(c.slab.find(&k(1)).unwrap()).unwrap().freq, 1);
        assert_eq!(c.get_mut(&k(1)).copied(), Some(2));
        c.remove(&k(1));
        assert_eq!((c.len(), c.bytes()), (0, 0));
        assert!(c.is_empty());
        assert!(!c.ghost.take(&k(1)), "a removed key is not remembered");
        c.remove(&k(1)); // removing a missing key is harmless
    }

    #[test]
    fn a_token_cache_of_no_entries_stores_nothing() {
        let mut c = S3Fifo::new(0, 100);
        assert_eq!(c.insert(k(1), 1, 1), 0);
        assert!(c.get_mut(&k(1)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn lookups_that_miss_change_nothing() {
        let mut c = S3Fifo::new(4, 100);
        for i in 0..4 {
            c.insert(i, i, 1);
        }
        for garbage in 100..10_000u64 {
            assert!(c.get_mut(&garbage).is_none());
        }
        assert_eq!(order(&c.slab, SMALL), [0, 1, 2, 3]);
        assert!(c.ghost.ring.is_empty());
    }

    #[test]
    fn heavy_churn_keeps_the_token_cache_in_bounds_and_reuses_slots() {
        let mut c = S3Fifo::new(8, 1_000);
        for i in 0..10_000u32 {
            c.insert(u64::from(i % 37), i, 100 + (i % 7) as usize);
            c.get_mut(&u64::from(i % 5));
            assert!(c.len() <= 8 && c.bytes() <= 1_000);
        }
        assert!(c.slab.nodes.len() <= 9, "slots are reused, not leaked");
    }

    /// The same policy written plainly, with queues of keys and linear
    /// scans, to check the slab and its links against.
    struct Model {
        small: VecDeque<(u64, u8, usize)>,
        main: VecDeque<(u64, u8, usize)>,
        /// Pushed keys, oldest first, and whether each still counts.
        ghost: VecDeque<(u64, bool)>,
        max_entries: usize,
        max_bytes: usize,
    }

    impl Model {
        fn len(&self) -> usize {
            self.small.len() + self.main.len()
        }
        fn bytes(&self) -> usize {
            self.small.iter().chain(&self.main).map(|e| e.2).sum()
        }
        fn find(&mut self, key: u64) -> Option<&mut (u64, u8, usize)> {
            self.small
                .iter_mut()
                .chain(self.main.iter_mut())
                .find(|e| e.0 == key)
        }
        fn get(&mut self, key: u64) -> bool {
            self.find(key).map(|e| e.1 = (e.1 + 1).min(3)).is_some()
        }
        fn take(&mut self, key: u64) -> Option<(usize, u8)> {
            if let Some(p) = self.small.iter().position(|e| e.0 == key) {
                return self.small.remove(p).map(|e| (SMALL, e.1));
            }
            let p = self.main.iter().position(|e| e.0 == key)?;
            self.main.remove(p).map(|e| (MAIN, e.1))
        }
        fn insert(&mut self, key: u64, bytes: usize) -> usize {
            if self.max_entries == 0 || bytes > self.max_bytes {
                return 0;
            }
            let (list, freq) = match self.take(key) {
                Some(old) => old,
                None => match self.ghost.iter_mut().find(|g| g.0 == key && g.1) {
                    Some(g) => {
                        g.1 = false;
                        (MAIN, 0)
                    }
                    None => (SMALL, 0),
                },
            };
            let mut evicted = 0;
            while self.len() > 0
                && (self.len() >= self.max_entries || self.bytes() + bytes > self.max_bytes)
            {
                loop {
                    let len = self.len();
                    if !self.small.is_empty()
                        && (self.small.len() * 10 >= len || self.main.is_empty())
                    {
                        let (t, f, b) = self.small.pop_front().unwrap();
                        if f > 0 {
                            self.main.push_back((t, 0, b));
                            continue;
                        }
                        self.ghost.iter_mut().for_each(|g| g.1 &= g.0 != t);
                        self.ghost.push_back((t, true));
                        while self.ghost.len() > len - len / 10 {
                            self.ghost.pop_front();
                        }
                    } else {
                        let (t, f, b) = self.main.pop_front().unwrap();
                        if f > 0 {
                            self.main.push_back((t, f - 1, b));
                            continue;
                        }
                    }
                    break;
                }
                evicted += 1;
            }
            let q = if list == MAIN {
                &mut self.main
            } else {
                &mut self.small
            };
            q.push_back((key, freq, bytes));
            evicted
        }
        fn remove(&mut self, key: u64) {
            self.take(key);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Get(u64),
        Insert(u64, usize),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so that hits, ghost returns and replacements are common.
        prop_oneof![
            4 => (0..40u64).prop_map(Op::Get),
            4 => (0..40u64, 1..40usize).prop_map(|(k, b)| Op::Insert(k, b)),
            1 => (0..40u64).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn the_token_cache_does_what_the_plain_model_does(
            max_entries in 0..25usize,
            max_bytes in 0..300usize,
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let mut c = S3Fifo::new(max_entries, max_bytes);
            let mut m = Model { small: VecDeque::new(), main: VecDeque::new(), ghost: VecDeque::new(), max_entries, max_bytes };
            for op in ops {
                match op {
                    Op::Get(key) => prop_assert_eq!(c.get_mut(&key).is_some(), m.get(key)),
                    Op::Insert(key, b) => prop_assert_eq!(c.insert(key, (), b), m.insert(key, b)),
                    Op::Remove(key) => { c.remove(&key); m.remove(key) }
                }
                prop_assert!(c.len() <= max_entries && c.bytes() <= max_bytes);
                prop_assert_eq!((c.len(), c.bytes()), (m.len(), m.bytes()));
                let keys = |q: &VecDeque<(u64, u8, usize)>| q.iter().map(|e| e.0).collect::<Vec<_>>();
                prop_assert_eq!(order(&c.slab, SMALL), keys(&m.small));
                prop_assert_eq!(order(&c.slab, MAIN), keys(&m.main));
                prop_assert_eq!(c.slab.nodes.len() - c.slab.free.len(), c.len());
            }
        }

        #[test]
        fn the_lru_does_what_a_plain_recency_list_does(
            max_entries in 0..25usize,
            max_bytes in 0..300usize,
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let mut c = Lru::new(max_entries, max_bytes);
            // (key, bytes), least recently used first.
            let mut m: Vec<(u64, usize)> = Vec::new();
            for op in ops {
                match op {
                    Op::Get(key) => {
                        let p = m.iter().position(|e| e.0 == key);
                        if let Some(p) = p {
                            let e = m.remove(p);
                            m.push(e);
                        }
                        prop_assert_eq!(c.get_mut(&key).is_some(), p.is_some());
                    }
                    Op::Insert(key, b) => {
                        let mut evicted = 0;
                        if max_entries > 0 && b <= max_bytes {
                            m.retain(|e| e.0 != key);
                            while !m.is_empty() && (m.len() >= max_entries || m.iter().map(|e| e.1).sum::<usize>() + b > max_bytes) {
                                m.remove(0);
                                evicted += 1;
                            }
                            m.push((key, b));
                        }
                        prop_assert_eq!(c.insert(key, (), b), evicted);
                    }
                    Op::Remove(key) => { c.remove(&key); m.retain(|e| e.0 != key) }
                }
                prop_assert_eq!(order(&c.slab, 0), m.iter().map(|e| e.0).collect::<Vec<_>>());
                prop_assert_eq!(c.bytes(), m.iter().map(|e| e.1).sum::<usize>());
            }
        }
    }

    // ---- the session slots (LRU) ----

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
        assert!(c.slab.nodes.len() <= 9, "slots are reused, not leaked");
    }
}
