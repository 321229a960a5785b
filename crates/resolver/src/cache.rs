//! The response cache: the public part of each recently resolved record,
//! kept in wire form, so a hit answers without touching the store.
//!
//! - Sharded by key hash; each shard is a mutex around a hash table, padded
//!   to its own cache lines, so cores rarely meet on one lock. The key is
//!   hashed once per request, for the shard and the table alike.
//! - An entry holds the value count and the publicly readable values,
//!   already encoded, in one allocation with its key: an unfiltered answer is one copy of these bytes, a
//!   filtered one walks them. Unknown identifiers are cached too (misses
//!   are a load of their own).
//! - Bounded by a byte budget split over the shards; a full shard evicts
//!   arbitrary entries (hash order) until the new one fits.
//! - Invalidated by every committed write ([`CommitObserver`]), before the
//!   write is acknowledged. A fill that raced with a write is refused: each
//!   shard counts invalidations, a reader takes a [`Ticket`] before it reads
//!   the store, and [`ResponseCache::insert`] keeps the entry only if no
//!   invalidation happened in that shard since.

use hashbrown::HashTable;
use idnode_store::{CommitObserver, Space};
use rustc_hash::FxHasher;
use std::hash::Hasher;
use std::sync::Mutex;

/// Bytes charged per entry besides its key and values (table slot,
/// allocation header).
const ENTRY_OVERHEAD: usize = 48;

/// `Slot::count` of an identifier known to have no record.
const MISSING: u32 = u32::MAX;

/// What the cache knows about one identifier, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// The record exists; `values` holds `count` publicly readable values
    /// in wire form.
    Found { count: u32, values: &'a [u8] },
    /// No such record.
    Missing,
}

/// One cached identifier: its key and its values in one allocation (a hit
/// touches one block of memory after the table), and the key's hash, so a
/// probe compares keys only when the hashes match and a resize does not
/// hash again.
struct Slot {
    hash: u64,
    /// The key, then the values.
    data: Box<[u8]>,
    key_len: u32,
    /// Value count, or [`MISSING`].
    count: u32,
}

impl Slot {
    #[inline]
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    #[inline]
    fn entry(&self) -> Entry<'_> {
        match self.count {
            MISSING => Entry::Missing,
            count => Entry::Found {
                count,
                values: &self.data[self.key_len as usize..],
            },
        }
    }

    fn charge(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// The generations of all shards at one moment, for
/// [`ResponseCache::fill`].
#[derive(Debug, Clone)]
pub struct Generations(Box<[u64]>);

/// Proof of the shard's state before a store read; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    generation: u64,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Slot>,
    generation: u64,
    bytes: usize,
    // Counted under the shard lock, so the hot path touches no cache line
    // that other cores write.
    stats: CacheStats,
}

impl Shard {
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<&Slot> {
        self.table.find(hash, |s| s.hash == hash && s.key() == key)
    }

    fn remove(&mut self, hash: u64, key: &[u8]) {
        if let Ok(found) = self
            .table
            .find_entry(hash, |s| s.hash == hash && s.key() == key)
        {
            let (slot, _) = found.remove();
            self.bytes -= slot.charge();
        }
    }

    /// Evicts arbitrary entries (table order) until `size` more bytes fit
    /// in `budget`.
    fn make_room(&mut self, size: usize, budget: usize) {
        if self.bytes + size <= budget {
            return;
        }
        let mut victims = Vec::new();
        let mut freed = 0;
        for slot in self.table.iter() {
            if self.bytes - freed + size <= budget {
                break;
            }
            freed += slot.charge();
            victims.push((slot.hash, slot.data.as_ptr()));
        }
        for (hash, data) in victims {
            if let Ok(found) = self.table.find_entry(hash, |s| s.data.as_ptr() == data) {
                found.remove();
            }
        }
        self.bytes -= freed;
    }
}

#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// Counters, read by metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub refused_fills: u64,
}

/// See the module docs.
pub struct ResponseCache {
    shards: Box<[Padded]>,
    shard_budget: usize,
}

#[inline]
fn hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.finish()
}

impl ResponseCache {
    /// A cache of at most about `budget_bytes`, over `shards` shards
    /// (rounded up to a power of two).
    pub fn new(budget_bytes: usize, shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| Padded(Mutex::default())).collect(),
            shard_budget: budget_bytes / n,
        }
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        // Bits the table does not use for its buckets (low bits) or its
        // control bytes (top 7 bits).
        (hash >> 40) as usize & (self.shards.len() - 1)
    }

    #[inline]
    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere mid-operation; the
        // table itself is consistent, so keep using it.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the entry for `key` under its shard lock (so `f` can copy
    /// the bytes out without another allocation), or returns a ticket for
    /// filling it after a store read.
    pub fn with<R>(&self, key: &[u8], f: impl FnOnce(Entry<'_>) -> R) -> Result<R, Ticket> {
        let hash = hash(key);
        let shard = self.shard_index(hash);
        let mut guard = self.lock(shard);
        let guard = &mut *guard;
        match guard.find(hash, key) {
            Some(slot) => {
                let r = f(slot.entry());
                guard.stats.hits += 1;
                Ok(r)
            }
            None => {
                guard.stats.misses += 1;
                Err(Ticket {
                    shard,
                    generation: guard.generation,
                })
            }
        }
    }

    /// Keeps a copy of `entry` unless the shard was invalidated since
    /// `ticket` was taken, or the entry is too large for the budget.
    pub fn insert(&self, key: &[u8], ticket: Ticket, entry: Entry<'_>) {
        let Some((slot, size)) = self.slot(key, entry) else {
            return;
        };
        if self.shard_index(slot.hash) != ticket.shard {
            return; // a ticket taken for another key
        }
        let mut shard = self.lock(ticket.shard);
        if shard.generation != ticket.generation {
            shard.stats.refused_fills += 1;
            return;
        }
        shard.remove(slot.hash, key);
        shard.make_room(size, self.shard_budget);
        shard.bytes += size;
        shard.table.insert_unique(slot.hash, slot, |s| s.hash);
    }

    /// The generation of every shard now: taken before reading many
    /// records from the store, for [`fill`](Self::fill).
    pub fn generations(&self) -> Generations {
        Generations(
            (0..self.shards.len())
                .map(|i| self.lock(i).generation)
                .collect(),
        )
    }

    /// Adds `entry` for `key`, read from the store after `seen` was taken,
    /// where there is room for it: unlike [`insert`](Self::insert) it
    /// evicts nothing and replaces nothing, and it refuses the entry when
    /// the shard was invalidated since `seen`. True when kept.
    pub fn fill(&self, seen: &Generations, key: &[u8], entry: Entry<'_>) -> bool {
        let Some((slot, size)) = self.slot(key, entry) else {
            return false;
        };
        let index = self.shard_index(slot.hash);
        let mut shard = self.lock(index);
        if seen.0.get(index) != Some(&shard.generation) {
            shard.stats.refused_fills += 1;
            return false;
        }
        if shard.bytes + size > self.shard_budget || shard.find(slot.hash, key).is_some() {
            return false;
        }
        shard.bytes += size;
        shard.table.insert_unique(slot.hash, slot, |s| s.hash);
        true
    }

    /// The slot holding `entry` for `key`, and what it is charged; `None`
    /// when it is too large for the budget.
    fn slot(&self, key: &[u8], entry: Entry<'_>) -> Option<(Slot, usize)> {
        let (count, values) = match entry {
            Entry::Found { count, values } => (count.min(MISSING - 1), values),
            Entry::Missing => (MISSING, &[][..]),
        };
        let size = key.len() + values.len() + ENTRY_OVERHEAD;
        let key_len = u32::try_from(key.len()).ok()?;
        if size > self.shard_budget / 4 {
            return None;
        }
        let mut data = Vec::with_capacity(key.len() + values.len());
        data.extend_from_slice(key);
        data.extend_from_slice(values);
        let slot = Slot {
            hash: hash(key),
            data: data.into_boxed_slice(),
            key_len,
            count,
        };
        Some((slot, size))
    }

    /// Forgets `key`, and refuses fills of its shard that began before.
    pub fn invalidate(&self, key: &[u8]) {
        let hash = hash(key);
        let mut shard = self.lock(self.shard_index(hash));
        shard.generation += 1;
        shard.remove(hash, key);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).table.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits, misses and refused fills so far, summed over the shards.
    pub fn stats(&self) -> CacheStats {
        (0..self.shards.len()).fold(CacheStats::default(), |sum, i| {
            let s = self.lock(i).stats;
            CacheStats {
                hits: sum.hits + s.hits,
                misses: sum.misses + s.misses,
                refused_fills: sum.refused_fills + s.refused_fills,
            }
        })
    }

    /// Bytes charged against the budget.
    pub fn bytes(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).bytes).sum()
    }
}

impl CommitObserver for ResponseCache {
    fn committed(&self, changes: &[(Space, &[u8])]) {
        for (space, key) in changes {
            if *space == Space::Records {
                self.invalidate(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(bytes: &[u8]) -> Entry<'_> {
        Entry::Found {
            count: 1,
            values: bytes,
        }
    }

    #[test]
    fn hit_after_fill_and_gone_after_invalidate() {
        let cache = ResponseCache::new(1 << 20, 8);
        let ticket = cache.with(b"K", |_| ()).unwrap_err();
        cache.insert(b"K", ticket, found(b"abc"));
        let copy = |e: Entry<'_>| match e {
            Entry::Found { count, values } => (count, values.to_vec()),
            Entry::Missing => (0, Vec::new()),
        };
        assert_eq!(cache.with(b"K", copy).unwrap(), (1, b"abc".to_vec()));
        cache.invalidate(b"K");
        assert!(cache.with(b"K", |_| ()).is_err());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_fill_that_raced_with_a_write_is_refused() {
        let cache = ResponseCache::new(1 << 20, 1);
        let ticket = cache.with(b"K", |_| ()).unwrap_err();
        // A write commits (and invalidates) between the reader's ticket and
        // its fill: the reader's bytes may be the old record.
        cache.invalidate(b"K");
        cache.insert(b"K", ticket, found(b"old"));
        assert!(cache.with(b"K", |_| ()).is_err());
        assert_eq!(cache.stats().refused_fills, 1);
    }

    #[test]
    fn a_bulk_fill_refuses_what_a_write_touched_and_evicts_nothing() {
        let cache = ResponseCache::new(1 << 20, 1);
        let seen = cache.generations();
        assert!(cache.fill(&seen, b"A", found(b"a")));
        // Already there: not replaced.
        assert!(!cache.fill(&seen, b"A", found(b"other")));
        // A write commits after the generations were taken and before the
        // fill: the bytes read may be the old record.
        cache.invalidate(b"B");
        assert!(!cache.fill(&seen, b"B", found(b"old")));
        assert!(cache.with(b"B", |_| ()).is_err());
        // Taken again after the write: kept.
        assert!(cache.fill(&cache.generations(), b"B", found(b"new")));
        let copy = |e: Entry<'_>| match e {
            Entry::Found { values, .. } => values.to_vec(),
            Entry::Missing => Vec::new(),
        };
        assert_eq!(cache.with(b"B", copy).unwrap(), b"new");

        // A full cache takes no more, and keeps what it has.
        let small = ResponseCache::new(4096, 1);
        let seen = small.generations();
        let kept = (0..100u32)
            .filter(|i| small.fill(&seen, &i.to_be_bytes(), found(&[7u8; 100])))
            .count();
        assert!(kept > 0 && kept < 100, "{kept}");
        assert!(small.bytes() <= 4096);
        assert_eq!(small.len(), kept);
    }

    #[test]
    fn stays_within_budget() {
        let budget = 64 * 1024;
        let cache = ResponseCache::new(budget, 4);
        for i in 0..10_000u32 {
            let key = i.to_be_bytes();
            let ticket = cache.with(&key, |_| ()).unwrap_err();
            cache.insert(&key, ticket, found(&[7u8; 100]));
        }
        assert!(cache.bytes() <= budget, "{}", cache.bytes());
        assert!(cache.len() > 50, "{}", cache.len());
        // Too large for the budget: not kept at all.
        let ticket = cache.with(b"big", |_| ()).unwrap_err();
        cache.insert(b"big", ticket, found(&vec![0u8; budget]));
        assert!(cache.with(b"big", |_| ()).is_err());
    }

    fn values_of(cache: &ResponseCache, key: &[u8]) -> Option<Option<Vec<u8>>> {
        cache
            .with(key, |e| match e {
                Entry::Found { values, .. } => Some(values.to_vec()),
                Entry::Missing => None,
            })
            .ok()
    }

    /// Inserts, replacements and invalidations of entries of many sizes,
    /// against a map of what each key was last given: whatever the cache
    /// still holds is exactly that, what was just inserted is there, and
    /// the bytes stay within the budget.
    #[test]
    fn agrees_with_a_model_through_evictions_and_replacements() {
        let budget = 16 * 1024;
        let cache = ResponseCache::new(budget, 2);
        let mut model: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>> =
            std::collections::HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..20_000u32 {
            let r = next();
            let key = format!("88.100.{}/K{}", r % 7, (r >> 8) % 300).into_bytes();
            match (r >> 20) % 8 {
                0 => {
                    cache.invalidate(&key);
                    model.remove(&key);
                }
                1 => {
                    let ticket = cache.with(&key, |_| ()).map(|_| ());
                    let ticket = match ticket {
                        Err(t) => t,
                        Ok(()) => {
                            cache.invalidate(&key);
                            cache.with(&key, |_| ()).unwrap_err()
                        }
                    };
                    cache.insert(&key, ticket, Entry::Missing);
                    model.insert(key.clone(), None);
                }
                _ => {
                    let len = ((r >> 32) % 600) as usize;
                    let values = vec![(step % 251) as u8; len];
                    let ticket = match cache.with(&key, |_| ()) {
                        Err(t) => t,
                        Ok(()) => {
                            cache.invalidate(&key);
                            cache.with(&key, |_| ()).unwrap_err()
                        }
                    };
                    cache.insert(&key, ticket, found(&values));
                    // Sometimes a second reader that missed at the same
                    // time fills too, with its own (later) read: it
                    // replaces the first.
                    let values = if r & 3 == 0 {
                        let later = vec![(step % 251) as u8 ^ 0xff; len / 2];
                        cache.insert(&key, ticket, found(&later));
                        later
                    } else {
                        values
                    };
                    model.insert(key.clone(), Some(values));
                }
            }
            if let Some(expected) = model.get(&key) {
                assert_eq!(values_of(&cache, &key).as_ref(), Some(expected), "{step}");
            }
            if step % 500 == 0 {
                let mut held = 0;
                for (k, v) in &model {
                    if let Some(got) = values_of(&cache, k) {
                        assert_eq!(&got, v, "{step}");
                        held += 1;
                    }
                }
                assert_eq!(cache.len(), held, "{step}");
                assert!(cache.bytes() <= budget, "{step}: {}", cache.bytes());
            }
        }
    }

    #[test]
    fn observer_invalidates_records_only() {
        let cache = ResponseCache::new(1 << 20, 2);
        for key in [b"A", b"B"] {
            let t = cache.with(key, |_| ()).unwrap_err();
            cache.insert(key, t, Entry::Missing);
        }
        cache.committed(&[(Space::Records, b"A"), (Space::Meta, b"B")]);
        assert!(cache.with(b"A", |_| ()).is_err());
        assert!(cache.with(b"B", |_| ()).is_ok());
    }
}
