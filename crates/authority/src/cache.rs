//! The response cache: the public part of each recently resolved record,
//! kept in wire form, so a hit answers without touching the store.
//!
//! - Sharded by key hash; each shard is a mutex around an index and a log,
//!   padded to its own cache lines, so cores rarely meet on one lock. The
//!   key is hashed once per request, for the shard and the index alike.
//! - A hit touches two places in memory: one bucket of the index (a cache
//!   line of eight words, each a tag of the key's hash and an offset in
//!   the log), then the entry in the log (a header with the whole hash,
//!   the key, the value count and the publicly readable values, already
//!   encoded). An unfiltered answer is one copy of those bytes, a filtered
//!   one walks them. Unknown identifiers are cached too (misses are a load
//!   of their own).
//! - A batch can ask for its lines ahead ([`ResponseCache::prefetch`]):
//!   every question's bucket, then every entry those point to, so the
//!   batch's memory misses overlap instead of following one another.
//! - Bounded by a byte budget split over the shards: each shard's log is a
//!   ring of its share (address space reserved up front, memory used as it
//!   fills); when full, the oldest entries make room (first in, first
//!   out). The index adds about 16 bytes an entry on top.
//! - Invalidated by every committed write ([`CommitObserver`]), before the
//!   write is acknowledged. A fill that raced with a write is refused: each
//!   shard counts invalidations, a reader takes a [`Ticket`] before it reads
//!   the store, and [`ResponseCache::insert`] keeps the entry only if no
//!   invalidation happened in that shard since.

use idnode_store::{CommitObserver, Space};
use rustc_hash::FxHasher;
use std::hash::Hasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Bytes of an entry's header in the log: the key's hash (8), the entry's
/// length with its padding (4), the key's length with the live bit on top
/// (4), the values' length (4), the value count (4).
const HEADER: usize = 24;

/// The live bit of the key's length in an entry's header.
const LIVE: u32 = 1 << 31;

/// Entries start at multiples of this.
const ALIGN: usize = 16;

/// The value count of an identifier known to have no record.
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

/// An entry's header, read from the log.
#[derive(Debug, Clone, Copy)]
struct Header {
    hash: u64,
    len: usize,
    key_len: usize,
    values_len: usize,
    count: u32,
    live: bool,
}

impl Header {
    #[inline]
    fn read(bytes: &[u8], at: usize) -> Self {
        let h: &[u8; HEADER] = bytes[at..at + HEADER].try_into().unwrap_or(&[0; HEADER]);
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let key = word(12);
        Self {
            hash: u64::from(word(0)) | u64::from(word(4)) << 32,
            len: word(8) as usize,
            key_len: (key & !LIVE) as usize,
            values_len: word(16) as usize,
            count: word(20),
            live: key & LIVE != 0,
        }
    }
}

/// The entries of one shard, oldest first, in a ring of `cap` bytes:
/// unwrapped they fill `[0, head)`; once wrapped (`wrap` is the end of the
/// older part) they fill `[tail, wrap)` and then `[0, head)`, with room
/// between `head` and `tail`. Forgotten entries stay (marked not live)
/// until the ring comes round to them.
struct Log {
    bytes: Vec<u8>,
    cap: usize,
    head: usize,
    tail: usize,
    wrap: Option<usize>,
}

impl Log {
    /// A log of `cap` bytes, its address space reserved at once: memory is
    /// used only as entries are written, and filling it never copies it to
    /// a larger allocation (which cost 60-80 MB of resident memory and half
    /// the prewarm's time with 1M identifiers). Where the reservation
    /// fails, the log grows as it fills instead.
    fn new(cap: usize) -> Self {
        let mut bytes = Vec::new();
        let _ = bytes.try_reserve_exact(cap);
        Self {
            bytes,
            cap,
            head: 0,
            tail: 0,
            wrap: None,
        }
    }

    /// Whether `size` bytes fit without overwriting any entry.
    fn has_room(&self, size: usize) -> bool {
        match self.wrap {
            None => self.head + size <= self.cap,
            Some(_) => self.head + size <= self.tail,
        }
    }

    /// The offset of `size` free bytes (`size` a multiple of [`ALIGN`], at
    /// most `cap`), overwriting the oldest entries where needed: `evicted`
    /// sees each one's header and offset first.
    fn reserve(&mut self, size: usize, mut evicted: impl FnMut(Header, usize)) -> usize {
        loop {
            match self.wrap {
                None if self.head + size <= self.cap => {
                    let at = self.head;
                    self.head += size;
                    self.grow_to(self.head);
                    return at;
                }
                None => {
                    // Go round: everything is older than what comes next.
                    self.wrap = Some(self.head);
                    self.head = 0;
                    self.tail = 0;
                }
                Some(_) if self.head + size <= self.tail => {
                    let at = self.head;
                    self.head += size;
                    return at;
                }
                Some(end) => {
                    if self.tail < end {
                        let header = Header::read(&self.bytes, self.tail);
                        evicted(header, self.tail);
                        // (Never 0; were it, the ring would still move on.)
                        self.tail += header.len.max(ALIGN);
                    }
                    if self.tail >= end {
                        // The older part is gone: unwrapped again.
                        self.wrap = None;
                        self.tail = 0;
                    }
                }
            }
        }
    }

    /// Makes `[0, len)` addressable, growing the allocation by doubling up
    /// to `cap` (never beyond it).
    fn grow_to(&mut self, len: usize) {
        if len <= self.bytes.len() {
            return;
        }
        if len > self.bytes.capacity() {
            let target = (self.bytes.capacity() * 2).clamp(len, self.cap.max(len));
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.resize(len, 0);
    }

    fn write(&mut self, at: usize, header: Header, key: &[u8], values: &[u8]) {
        let b = &mut self.bytes[at..at + header.len];
        b[0..8].copy_from_slice(&header.hash.to_le_bytes());
        b[8..12].copy_from_slice(&(header.len as u32).to_le_bytes());
        let live = if header.live { LIVE } else { 0 };
        b[12..16].copy_from_slice(&(header.key_len as u32 | live).to_le_bytes());
        b[16..20].copy_from_slice(&(header.values_len as u32).to_le_bytes());
        b[20..24].copy_from_slice(&header.count.to_le_bytes());
        b[HEADER..HEADER + key.len()].copy_from_slice(key);
        let v = values_at(key.len());
        b[v..v + values.len()].copy_from_slice(values);
    }

    /// Marks the entry at `at` not live (its key length without the bit).
    fn forget(&mut self, at: usize) {
        let key_len = Header::read(&self.bytes, at).key_len as u32;
        self.bytes[at + 12..at + 16].copy_from_slice(&key_len.to_le_bytes());
    }

    #[inline]
    fn key(&self, at: usize, header: &Header) -> &[u8] {
        &self.bytes[at + HEADER..at + HEADER + header.key_len]
    }

    #[inline]
    fn entry(&self, at: usize, header: &Header) -> Entry<'_> {
        match header.count {
            MISSING => Entry::Missing,
            count => {
                let start = at + values_at(header.key_len);
                Entry::Found {
                    count,
                    values: &self.bytes[start..start + header.values_len],
                }
            }
        }
    }
}

/// Index words a bucket: one cache line.
const WAYS: usize = 8;
/// An index word never used: a probe stops there.
const EMPTY: u64 = 0;
/// An index word whose entry was removed: a probe goes on past it.
const TOMBSTONE: u64 = 1;
/// Buckets of a new shard's index.
const MIN_BUCKETS: usize = 8;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket([u64; WAYS]);

/// The tag of a hash in an index word: its top half, never 0 (so never
/// [`EMPTY`] or [`TOMBSTONE`]).
#[inline]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

/// Open addressing over buckets of [`WAYS`] words, each a tag (high half)
/// and an offset in the log (low half); linear probing bucket by bucket,
/// at most three quarters full counting tombstones.
struct Index {
    buckets: Vec<Bucket>,
    live: usize,
    tombstones: usize,
}

impl Index {
    fn new(buckets: usize) -> Self {
        Self {
            buckets: vec![Bucket::default(); buckets.next_power_of_two()],
            live: 0,
            tombstones: 0,
        }
    }

    /// The position of the word for `hash` whose offset `matches`.
    #[inline]
    fn find(&self, hash: u64, mut matches: impl FnMut(usize) -> bool) -> Option<(usize, usize)> {
        let (tag, mask) = (tag(hash), self.buckets.len() - 1);
        let mut b = hash as usize & mask;
        for _ in 0..self.buckets.len() {
            for (w, &word) in self.buckets[b].0.iter().enumerate() {
                if word == EMPTY {
                    return None;
                }
                if (word >> 32) as u32 == tag && matches(word as u32 as usize) {
                    return Some((b, w));
                }
            }
            b = (b + 1) & mask;
        }
        None
    }

    /// Whether one more word keeps the index at most three quarters full.
    fn has_room(&self) -> bool {
        (self.live + self.tombstones + 1) * 4 <= self.buckets.len() * WAYS * 3
    }

    /// Adds the word for an entry known not to be indexed; the index must
    /// have room.
    fn insert(&mut self, hash: u64, at: usize) {
        let mask = self.buckets.len() - 1;
        let mut b = hash as usize & mask;
        loop {
            for word in self.buckets[b].0.iter_mut() {
                if *word == EMPTY || *word == TOMBSTONE {
                    if *word == TOMBSTONE {
                        self.tombstones -= 1;
                    }
                    *word = u64::from(tag(hash)) << 32 | at as u64;
                    self.live += 1;
                    return;
                }
            }
            b = (b + 1) & mask;
        }
    }

    fn remove(&mut self, (b, w): (usize, usize)) {
        self.buckets[b].0[w] = TOMBSTONE;
        self.live -= 1;
        self.tombstones += 1;
    }

    /// The offset of the first entry whose tag matches `hash`'s, if any.
    #[inline]
    fn candidate(&self, hash: u64) -> Option<usize> {
        let (b, w) = self.find(hash, |_| true)?;
        Some(self.buckets[b].0[w] as u32 as usize)
    }

    /// The offsets of all indexed entries.
    fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.0.iter())
            .filter(|&&w| w != EMPTY && w != TOMBSTONE)
            .map(|&w| w as u32 as usize)
    }
}

struct Shard {
    index: Index,
    log: Log,
    generation: u64,
    /// Bytes of the live entries in the log.
    bytes: usize,
    // Counted under the shard lock, so the hot path touches no cache line
    // that other cores write.
    stats: CacheStats,
}

/// A found entry: its index word's position, its offset in the log and
/// its header.
type Found = ((usize, usize), usize, Header);

impl Shard {
    fn new(cap: usize) -> Self {
        Self {
            index: Index::new(MIN_BUCKETS),
            log: Log::new(cap),
            generation: 0,
            bytes: 0,
            stats: CacheStats::default(),
        }
    }

    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<Found> {
        let log = &self.log;
        let mut found = None;
        let position = self.index.find(hash, |at| {
            let header = Header::read(&log.bytes, at);
            let hit = header.hash == hash && log.key(at, &header) == key;
            if hit {
                found = Some((at, header));
            }
            hit
        })?;
        let (at, header) = found?;
        Some((position, at, header))
    }

    fn remove(&mut self, hash: u64, key: &[u8]) {
        if let Some((position, at, header)) = self.find(hash, key) {
            self.index.remove(position);
            self.log.forget(at);
            self.bytes -= header.len;
        }
    }

    /// Adds the entry for `key`, which is not in the shard: overwriting the
    /// oldest entries where needed when `evict`, else only where there is
    /// room. True when added.
    fn add(&mut self, hash: u64, key: &[u8], count: u32, values: &[u8], evict: bool) -> bool {
        let len = entry_len(key, values);
        if !evict && !self.log.has_room(len) {
            return false;
        }
        if !self.index.has_room() {
            self.rebuild_index();
        }
        let Self {
            index, log, bytes, ..
        } = self;
        let at = log.reserve(len, |old, at| {
            if old.live {
                if let Some(position) = index.find(old.hash, |o| o == at) {
                    index.remove(position);
                }
                *bytes -= old.len;
            }
        });
        let header = Header {
            hash,
            len,
            key_len: key.len(),
            values_len: values.len(),
            count,
            live: true,
        };
        log.write(at, header, key, values);
        index.insert(hash, at);
        *bytes += len;
        true
    }

    /// A new index without tombstones, twice as large when more than half
    /// full of live entries.
    fn rebuild_index(&mut self) {
        let buckets = self.index.buckets.len();
        let grow = (self.index.live + 1) * 2 > buckets * WAYS;
        let mut index = Index::new(if grow { buckets * 2 } else { buckets });
        for at in self.index.offsets() {
            index.insert(Header::read(&self.log.bytes, at).hash, at);
        }
        self.index = index;
    }
}

/// How much of an entry [`ResponseCache::prefetch`] asks for.
const PREFETCH_BYTES: usize = 384;

/// Below this many bytes of entries the whole cache stays in the CPU
/// caches (this is a share of a typical last-level cache), and asking for
/// lines ahead only costs: see [`ResponseCache::worth_prefetching`].
const PREFETCH_MIN_BYTES: usize = 8 << 20;

/// Asks the CPU to bring the cache line at `p` closer.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 is a hint: it reads nothing into the program and
    // never faults, whatever the address; SSE, which has it, is part of
    // every x86_64 CPU.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The bytes an entry takes in the log.
fn entry_len(key: &[u8], values: &[u8]) -> usize {
    (values_at(key.len()) + values.len()).next_multiple_of(ALIGN)
}

/// Where an entry's values start, from the entry's start: aligned, as a
/// separate allocation's would be, for the copy into an answer.
#[inline]
fn values_at(key_len: usize) -> usize {
    (HEADER + key_len).next_multiple_of(ALIGN)
}

/// A shard, on cache lines of its own.
#[repr(align(128))]
struct Padded {
    shard: Mutex<Shard>,
    /// Where the shard's index buckets are and their count less one, for
    /// the first stage of [`ResponseCache::prefetch`], which computes a
    /// bucket's address without taking the lock. Stored under the lock
    /// whenever the index may have been replaced; a stale pair (an index
    /// replaced meanwhile) only makes a prefetch of a useless line, which
    /// never faults.
    buckets: AtomicPtr<Bucket>,
    mask: AtomicUsize,
}

impl Padded {
    fn new(shard: Shard) -> Self {
        let padded = Self {
            buckets: AtomicPtr::new(std::ptr::null_mut()),
            mask: AtomicUsize::new(0),
            shard: Mutex::new(shard),
        };
        padded.publish(&padded.lock());
        padded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere mid-operation; the
        // table itself is consistent, so keep using it.
        self.shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records where `shard`'s (this shard's, locked) buckets are now.
    fn publish(&self, shard: &Shard) {
        let buckets = &shard.index.buckets;
        self.buckets
            .store(buckets.as_ptr().cast_mut(), Ordering::Relaxed);
        self.mask.store(buckets.len() - 1, Ordering::Relaxed);
    }

    /// The address of the first bucket of `hash`'s probe, as last
    /// published (possibly of an index replaced since).
    #[inline]
    fn bucket_hint(&self, hash: u64) -> *const u8 {
        let (buckets, mask) = (
            self.buckets.load(Ordering::Relaxed),
            self.mask.load(Ordering::Relaxed),
        );
        buckets
            .wrapping_add(hash as usize & mask)
            .cast_const()
            .cast()
    }
}

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
    /// Bytes of the entries held, all shards together: changed under a
    /// shard's lock with the shard's own count, read without a lock.
    bytes: AtomicUsize,
    /// Each shard's log, in bytes: offsets in the index are 32 bits.
    shard_budget: usize,
}

#[inline]
fn hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.finish()
}

/// An entry's value count and values.
fn parts(entry: Entry<'_>) -> (u32, &[u8]) {
    match entry {
        Entry::Found { count, values } => (count.min(MISSING - 1), values),
        Entry::Missing => (MISSING, &[][..]),
    }
}

impl ResponseCache {
    /// A cache of at most about `budget_bytes` (up to 4 GiB a shard), over
    /// `shards` shards (rounded up to a power of two).
    pub fn new(budget_bytes: usize, shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        let shard_budget = (budget_bytes / n).min(u32::MAX as usize) / ALIGN * ALIGN;
        Self {
            shards: (0..n)
                .map(|_| Padded::new(Shard::new(shard_budget)))
                .collect(),
            bytes: AtomicUsize::new(0),
            shard_budget,
        }
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        // Bits the index does not use for its buckets (low bits).
        (hash >> 40) as usize & (self.shards.len() - 1)
    }

    #[inline]
    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard].lock()
    }

    /// Whether an entry of `key` and `values` may be kept: at most a
    /// quarter of a shard.
    fn fits(&self, key: &[u8], values: &[u8]) -> bool {
        entry_len(key, values) <= self.shard_budget / 4
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
            Some((_, at, header)) => {
                let r = f(guard.log.entry(at, &header));
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
        let (count, values) = parts(entry);
        if !self.fits(key, values) {
            return;
        }
        let hash = hash(key);
        if self.shard_index(hash) != ticket.shard {
            return; // a ticket taken for another key
        }
        let padded = &self.shards[ticket.shard];
        let mut shard = padded.lock();
        if shard.generation != ticket.generation {
            shard.stats.refused_fills += 1;
            return;
        }
        let before = shard.bytes;
        shard.remove(hash, key);
        shard.add(hash, key, count, values, true);
        padded.publish(&shard);
        self.account(before, shard.bytes);
    }

    /// Carries a shard's change of bytes (from `before` to `after`, under
    /// its lock) into the total.
    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Whether [`prefetch`](Self::prefetch) can gain anything: not while
    /// the entries held are few enough to stay in the CPU caches, where it
    /// is pure cost (about 25 ns a question in a batch of 32).
    #[inline]
    pub fn worth_prefetching(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= PREFETCH_MIN_BYTES
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
        let (count, values) = parts(entry);
        if !self.fits(key, values) {
            return false;
        }
        let hash = hash(key);
        let index = self.shard_index(hash);
        let padded = &self.shards[index];
        let mut shard = padded.lock();
        if seen.0.get(index) != Some(&shard.generation) {
            shard.stats.refused_fills += 1;
            return false;
        }
        if shard.find(hash, key).is_some() {
            return false;
        }
        let before = shard.bytes;
        let added = shard.add(hash, key, count, values, false);
        padded.publish(&shard);
        self.account(before, shard.bytes);
        added
    }

    /// Starts loading into the CPU caches what looking up `keys` will
    /// touch: their index buckets, then the entries those point to. A
    /// batch's lookups then wait on memory together rather than one after
    /// another. `hashes` is scratch.
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k [u8]>, hashes: &mut Vec<u64>) {
        hashes.clear();
        hashes.extend(keys.map(hash));
        for &h in hashes.iter() {
            prefetch(self.shards[self.shard_index(h)].bucket_hint(h));
        }
        for &h in hashes.iter() {
            let shard = self.lock(self.shard_index(h));
            if let Some(at) = shard.index.candidate(h) {
                let bytes = &shard.log.bytes[at..];
                for line in (0..bytes.len().min(PREFETCH_BYTES)).step_by(64) {
                    prefetch(bytes[line..].as_ptr());
                }
            }
        }
    }

    /// Forgets `key`, and refuses fills of its shard that began before.
    pub fn invalidate(&self, key: &[u8]) {
        let hash = hash(key);
        let mut shard = self.lock(self.shard_index(hash));
        shard.generation += 1;
        let before = shard.bytes;
        shard.remove(hash, key);
        self.account(before, shard.bytes);
    }

    /// Forgets every entry, and refuses every fill that began before:
    /// the store's whole contents were replaced (a mirror loading a copy
    /// of its primary).
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            let before = shard.bytes;
            let mut fresh = Shard::new(shard.log.cap);
            fresh.generation = shard.generation + 1;
            fresh.stats = shard.stats;
            *shard = fresh;
            self.account(before, 0);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).index.live)
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

    /// Bytes of the entries held (the index not counted).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
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

    fn replaced(&self) {
        self.clear();
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
    fn clear_forgets_everything_and_refuses_fills_begun_before() {
        let cache = ResponseCache::new(1 << 20, 4);
        for key in [&b"A"[..], b"B", b"C"] {
            let ticket = cache.with(key, |_| ()).unwrap_err();
            cache.insert(key, ticket, found(b"abc"));
        }
        assert_eq!(cache.len(), 3);
        let late = cache.with(b"D", |_| ()).unwrap_err();
        cache.clear();
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        assert!(cache.with(b"A", |_| ()).is_err());
        cache.insert(b"D", late, found(b"old"));
        assert!(cache.with(b"D", |_| ()).is_err());
        // And it fills again.
        let ticket = cache.with(b"A", |_| ()).unwrap_err();
        cache.insert(b"A", ticket, found(b"new"));
        assert!(cache.with(b"A", |_| ()).is_ok());
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

    #[test]
    fn a_full_shard_overwrites_its_oldest_entries_first() {
        let cache = ResponseCache::new(4096, 1);
        let put = |i: u32| {
            let key = i.to_be_bytes();
            let ticket = cache.with(&key, |_| ()).unwrap_err();
            cache.insert(&key, ticket, found(&[i as u8; 100]));
        };
        // Header, key, values, padding.
        let fit = (4096 / entry_len(&[0; 4], &[0; 100])) as u32;
        assert!(fit > 10, "{fit}");
        for i in 0..fit {
            put(i);
        }
        assert_eq!(cache.len(), fit as usize);
        put(fit);
        assert!(
            values_of(&cache, &0u32.to_be_bytes()).is_none(),
            "oldest gone"
        );
        for i in 1..=fit {
            assert_eq!(
                values_of(&cache, &i.to_be_bytes()),
                Some(Some(vec![i as u8; 100])),
                "{i}"
            );
        }
        // Round and round: always the last `fit`, each with its own bytes.
        for i in fit + 1..1000 {
            put(i);
        }
        assert_eq!(cache.len(), fit as usize);
        for i in 1000 - fit..1000 {
            assert_eq!(
                values_of(&cache, &i.to_be_bytes()),
                Some(Some(vec![i as u8; 100]))
            );
        }
        assert!(cache.bytes() <= 4096);
    }

    #[test]
    fn prefetching_changes_no_answer() {
        let cache = ResponseCache::new(1 << 20, 4);
        let seen = cache.generations();
        for i in 0..1000u32 {
            assert!(cache.fill(&seen, &i.to_be_bytes(), found(&i.to_le_bytes())));
        }
        let keys: Vec<[u8; 4]> = (990..1010u32).map(u32::to_be_bytes).collect();
        let mut hashes = Vec::new();
        cache.prefetch(keys.iter().map(|k| &k[..]), &mut hashes);
        assert_eq!(hashes.len(), 20);
        for i in 990..1010u32 {
            let expected = (i < 1000).then(|| Some(i.to_le_bytes().to_vec()));
            assert_eq!(values_of(&cache, &i.to_be_bytes()), expected, "{i}");
        }
        // Nothing to prefetch: nothing happens.
        cache.prefetch(std::iter::empty(), &mut hashes);
        assert!(hashes.is_empty());
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
                // The lock-free total agrees with the shards' own counts.
                let shards: usize = (0..cache.shards.len()).map(|i| cache.lock(i).bytes).sum();
                assert_eq!(cache.bytes(), shards, "{step}");
            }
        }
    }

    #[test]
    fn prefetching_is_worth_it_only_once_the_entries_outgrow_the_cpu_caches() {
        let cache = ResponseCache::new(64 << 20, 4);
        let values = [1u8; 1000];
        let keys: Vec<[u8; 4]> = (0..(PREFETCH_MIN_BYTES / 1000) as u32 + 100)
            .map(u32::to_be_bytes)
            .collect();
        let seen = cache.generations();
        for key in &keys[..100] {
            assert!(cache.fill(&seen, key, found(&values)));
        }
        assert!(!cache.worth_prefetching(), "{} bytes", cache.bytes());
        for key in &keys[100..] {
            assert!(cache.fill(&seen, key, found(&values)));
        }
        assert!(cache.worth_prefetching(), "{} bytes", cache.bytes());
        // Invalidations bring the total back down.
        for key in &keys[100..] {
            cache.invalidate(key);
        }
        assert!(!cache.worth_prefetching(), "{} bytes", cache.bytes());
        let shards: usize = (0..cache.shards.len()).map(|i| cache.lock(i).bytes).sum();
        assert_eq!(cache.bytes(), shards);
    }

    #[test]
    fn many_small_entries_grow_the_index_and_all_stay_found() {
        let cache = ResponseCache::new(64 << 20, 1);
        let seen = cache.generations();
        for i in 0..50_000u32 {
            assert!(cache.fill(&seen, &i.to_be_bytes(), Entry::Missing), "{i}");
        }
        assert_eq!(cache.len(), 50_000);
        for i in 0..50_000u32 {
            assert_eq!(values_of(&cache, &i.to_be_bytes()), Some(None), "{i}");
        }
        assert!(values_of(&cache, &50_000u32.to_be_bytes()).is_none());
        // The prefetch's lock-free bucket address follows the grown index.
        let padded = &cache.shards[0];
        let shard = padded.lock();
        assert!(shard.index.buckets.len() > MIN_BUCKETS);
        for i in 0..1000u32 {
            let h = hash(&i.to_be_bytes());
            let bucket = &shard.index.buckets[h as usize & (shard.index.buckets.len() - 1)];
            assert_eq!(
                padded.bucket_hint(h),
                (bucket as *const Bucket).cast::<u8>()
            );
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
