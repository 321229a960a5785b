//! The answer cache: recently sent answers, kept encoded, so a repeated
//! question is answered by one copy and a few patched octets.
//!
//! - Keyed by the ASCII lower-cased question name; under each name, up to
//!   [`MAX_VARIANTS`] answers, one per (question type, EDNS present or
//!   not). An answer is kept whole (not truncated); the size limit of the
//!   transport is applied when it is served. Served again, an answer gets
//!   the query's id, RD and CD bits, question spelling (so 0x20 case
//!   randomization still matches) and DO bit, and the store's current SOA
//!   serial where it holds an SOA record.
//! - Negative answers (NXDOMAIN, NODATA) are cached too: random names are
//!   a load of their own. Errors (SERVFAIL, REFUSED, FORMERR) are not, nor
//!   answers whose TTLs count down to an absolute time.
//! - Sharded by name hash, each shard a mutex around a hash map padded to
//!   its own cache lines; bounded by a byte budget split over the shards,
//!   a full shard evicting arbitrary names (hash order) until the new
//!   answer fits.
//! - Invalidated by every committed write ([`CommitObserver`]), before the
//!   write is acknowledged: a changed record forgets every name whose
//!   answer could depend on it (its identifier name under every apex, the
//!   `_` node and the prefix names above it, its GTIN or OID name and the
//!   OID names above that). A write that may move a zone cut (a prefix
//!   homed, delegated or removed, or a prefix's record `0.NA/<prefix>`
//!   changed) forgets every answer: the names under a cut cannot be
//!   listed, and such writes are rare. A fill that raced with a write is
//!   refused, as in the Handle response cache: each shard counts
//!   invalidations, a reader takes a [`Ticket`] before it reads the
//!   store, and the fill
//!   keeps the answer only if its shard saw no invalidation since.

use crate::config::Zones;
use crate::message::Patches;
use crate::name::{self, identifier_labels, prefix_labels};
use crate::service::PREFIX_AUTHORITY;
use crate::special;
use idnode_core::{Identifier, Prefix};
use idnode_store::{CommitObserver, Space};
use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Most answers kept under one name (question types times EDNS or not).
pub const MAX_VARIANTS: usize = 8;
/// Bytes charged per name and per answer besides their octets.
const OVERHEAD: usize = 64;

struct Variant {
    qtype: u16,
    edns: bool,
    bytes: Box<[u8]>,
    patches: Patches,
}

impl Variant {
    fn size(&self) -> usize {
        self.bytes.len() + OVERHEAD
    }
}

#[derive(Default)]
struct Shard {
    map: FxMap<Box<[u8]>, Vec<Variant>>,
    generation: u64,
    bytes: usize,
}

impl Shard {
    fn name_size(name: &[u8], variants: &[Variant]) -> usize {
        name.len() + OVERHEAD + variants.iter().map(Variant::size).sum::<usize>()
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some(old) = self.map.remove(name) {
            self.bytes -= Self::name_size(name, &old);
        }
    }
}

#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// Proof of a shard's state before a store read; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    generation: u64,
}

/// Counters, read by metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub refused_fills: AtomicU64,
}

/// See the module docs.
pub struct AnswerCache {
    zones: Arc<Zones>,
    shards: Box<[Padded]>,
    shard_budget: usize,
    pub stats: CacheStats,
}

impl AnswerCache {
    /// A cache for the names of `zones`, of at most about `budget_bytes`,
    /// over `shards` shards (rounded up to a power of two).
    pub fn new(zones: Arc<Zones>, budget_bytes: usize, shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            zones,
            shards: (0..n).map(|_| Padded(Mutex::default())).collect(),
            shard_budget: budget_bytes / n,
            stats: CacheStats::default(),
        }
    }

    /// The zones whose names this cache knows how to invalidate.
    pub fn zones(&self) -> &Arc<Zones> {
        &self.zones
    }

    fn shard_index(&self, name: &[u8]) -> usize {
        let mut h = FxHasher::default();
        h.write(name);
        // High bits: FxHash mixes them best.
        (h.finish() >> 40) as usize & (self.shards.len() - 1)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere mid-operation; the
        // map itself is consistent, so keep using it.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Copies the cached answer for (`name`, `qtype`, `edns`) into `out`
    /// and returns where to patch it, or a ticket for filling it after a
    /// store read.
    pub(crate) fn serve(
        &self,
        name: &[u8],
        qtype: u16,
        edns: bool,
        out: &mut Vec<u8>,
    ) -> Result<Patches, Ticket> {
        let shard = self.shard_index(name);
        let guard = self.lock(shard);
        let found = guard
            .map
            .get(name)
            .and_then(|vs| vs.iter().find(|v| v.qtype == qtype && v.edns == edns));
        match found {
            Some(v) => {
                out.clear();
                out.extend_from_slice(&v.bytes);
                let patches = v.patches;
                drop(guard);
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Ok(patches)
            }
            None => {
                let generation = guard.generation;
                drop(guard);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                Err(Ticket { shard, generation })
            }
        }
    }

    /// Keeps an encoded answer unless the shard was invalidated since
    /// `ticket` was taken, or the answer is too large for the budget.
    pub(crate) fn insert(
        &self,
        name: &[u8],
        qtype: u16,
        edns: bool,
        ticket: Ticket,
        bytes: &[u8],
        patches: Patches,
    ) {
        let variant = Variant {
            qtype,
            edns,
            bytes: bytes.into(),
            patches,
        };
        if name.len() + OVERHEAD + variant.size() > self.shard_budget / 4 {
            return;
        }
        let mut shard = self.lock(ticket.shard);
        if shard.generation != ticket.generation {
            self.stats.refused_fills.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut variants = match shard.map.remove(name) {
            Some(old) => {
                shard.bytes -= Shard::name_size(name, &old);
                old
            }
            None => Vec::new(),
        };
        variants.retain(|v| !(v.qtype == qtype && v.edns == edns));
        if variants.len() >= MAX_VARIANTS {
            variants.remove(0);
        }
        variants.push(variant);
        let size = Shard::name_size(name, &variants);
        if shard.bytes + size > self.shard_budget {
            let mut victims = Vec::new();
            let mut freed = 0;
            for (k, vs) in shard.map.iter() {
                if shard.bytes - freed + size <= self.shard_budget {
                    break;
                }
                freed += Shard::name_size(k, vs);
                victims.push(k.clone());
            }
            for k in victims {
                shard.remove(&k);
            }
        }
        if shard.bytes + size <= self.shard_budget {
            shard.bytes += size;
            shard.map.insert(name.into(), variants);
        }
    }

    /// Forgets every answer under the lower-cased wire `name`, and refuses
    /// fills of its shard that began before.
    pub fn invalidate(&self, name: &[u8]) {
        let mut shard = self.lock(self.shard_index(name));
        shard.generation += 1;
        shard.remove(name);
    }

    /// Forgets every answer, and refuses every fill that began before.
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.generation += 1;
            shard.map.clear();
            shard.bytes = 0;
        }
    }

    /// Names held.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against the budget.
    pub fn bytes(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).bytes).sum()
    }
}

impl CommitObserver for AnswerCache {
    fn committed(&self, changes: &[(Space, &[u8])]) {
        if changes.iter().any(|(space, key)| moves_cuts(*space, key)) {
            self.clear();
            return;
        }
        for (space, key) in changes {
            touched_names(&self.zones, *space, key, &mut |name| self.invalidate(name));
        }
    }

    fn replaced(&self) {
        self.clear();
    }
}

/// Whether a change to `key` in `space` may move or change a zone cut: a
/// prefix homed, delegated or removed, or a prefix's record
/// (`0.NA/<prefix>`, which holds a delegation's sites). Every name under
/// the prefix may answer otherwise (a referral instead of NXDOMAIN, or
/// back), and those names cannot be listed, so the whole cache goes.
/// Such writes are rare administrative ones.
pub(crate) fn moves_cuts(space: Space, key: &[u8]) -> bool {
    match space {
        Space::Prefixes => true,
        Space::Records => key.get(..PREFIX_AUTHORITY.len() + 1).is_some_and(|head| {
            head[..PREFIX_AUTHORITY.len()].eq_ignore_ascii_case(PREFIX_AUTHORITY.as_bytes())
                && head[PREFIX_AUTHORITY.len()] == b'/'
        }),
        _ => false,
    }
}

/// Calls `f` with the lower-cased wire form of every name whose answer a
/// change to `key` in `space` may alter.
pub(crate) fn touched_names(zones: &Zones, space: Space, key: &[u8], f: &mut dyn FnMut(&[u8])) {
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    match space {
        Space::Records => {
            let Ok(id) = Identifier::parse(key) else {
                return;
            };
            let prefix = id.prefix_parsed();
            for zone in &zones.zones {
                let apex = &zone.apex;
                let mut emit = |wire: Option<Vec<u8>>| {
                    if let Some(wire) = wire {
                        f(&wire);
                    }
                };
                emit(name::lower_wire(identifier_labels(&id), apex));
                let separator = std::iter::once(name::SEPARATOR).chain(prefix_labels(&prefix));
                emit(name::lower_wire(separator, apex));
                for p in ancestors(&prefix) {
                    emit(name::lower_wire(prefix_labels(&p), apex));
                }
                if zones.gs1.as_ref().is_some_and(|g| g.key() == prefix.key())
                    && let Some(labels) = special::gtin_labels(id.suffix())
                {
                    let labels = labels.iter().map(|l| &l[..]).chain(special::GTIN_SUBTREE);
                    emit(name::lower_wire(labels, apex));
                }
                if zones.oid.as_ref().is_some_and(|o| o.key() == prefix.key())
                    && special::is_oid(id.suffix())
                {
                    let mut oid = id.suffix();
                    loop {
                        let labels = oid.split('.').rev().map(str::as_bytes);
                        emit(name::lower_wire(
                            labels.chain(std::iter::once(special::ORS_SUBTREE)),
                            apex,
                        ));
                        match oid.rfind('.') {
                            Some(dot) => oid = &oid[..dot],
                            None => break,
                        }
                    }
                }
            }
        }
        Space::Prefixes => {
            let Ok(prefix) = Prefix::parse(key) else {
                return;
            };
            for zone in &zones.zones {
                for p in ancestors(&prefix) {
                    if let Some(wire) = name::lower_wire(prefix_labels(&p), &zone.apex) {
                        f(&wire);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A prefix and every prefix above it.
fn ancestors(prefix: &Prefix) -> impl Iterator<Item = Prefix> {
    std::iter::successors(Some(prefix.clone()), Prefix::parent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;
    use crate::config::DnsConfig;

    fn cache(budget: usize, shards: usize) -> AnswerCache {
        let zones = Zones::from_config(&DnsConfig::default()).unwrap();
        AnswerCache::new(Arc::new(zones), budget, shards)
    }

    fn fill(cache: &AnswerCache, name: &[u8], qtype: u16, bytes: &[u8]) {
        let mut out = Vec::new();
        let ticket = cache.serve(name, qtype, true, &mut out).unwrap_err();
        cache.insert(name, qtype, true, ticket, bytes, Patches::default());
    }

    #[test]
    fn hit_after_fill_and_gone_after_invalidate() {
        let cache = cache(1 << 20, 4);
        fill(&cache, b"\x01a\x00", 16, b"answer");
        fill(&cache, b"\x01a\x00", 1, b"other");
        let mut out = Vec::new();
        cache.serve(b"\x01a\x00", 16, true, &mut out).unwrap();
        assert_eq!(out, b"answer");
        assert!(cache.serve(b"\x01a\x00", 16, false, &mut out).is_err());
        cache.invalidate(b"\x01a\x00");
        assert!(cache.serve(b"\x01a\x00", 1, true, &mut out).is_err());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_fill_that_raced_with_a_write_is_refused() {
        let cache = cache(1 << 20, 1);
        let mut out = Vec::new();
        let ticket = cache.serve(b"\x01a\x00", 16, true, &mut out).unwrap_err();
        cache.invalidate(b"\x01b\x00");
        cache.insert(b"\x01a\x00", 16, true, ticket, b"old", Patches::default());
        assert!(cache.serve(b"\x01a\x00", 16, true, &mut out).is_err());
        assert_eq!(cache.stats.refused_fills.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn stays_within_budget_and_bounds_variants() {
        let budget = 64 * 1024;
        let cache = cache(budget, 4);
        for i in 0..5000u32 {
            fill(&cache, &i.to_be_bytes(), 16, &[7u8; 100]);
        }
        assert!(cache.bytes() <= budget, "{}", cache.bytes());
        assert!(cache.len() > 20, "{}", cache.len());
        for qtype in 0..100 {
            fill(&cache, b"\x01q\x00", qtype, b"x");
        }
        let shard = cache.lock(cache.shard_index(b"\x01q\x00"));
        assert_eq!(shard.map[&b"\x01q\x00"[..]].len(), MAX_VARIANTS);
    }

    #[test]
    fn a_record_write_touches_its_names() {
        let config = DnsConfig {
            gs1_prefix: Some("88.100.3".into()),
            oid_prefix: Some("88.100.4".into()),
            ..DnsConfig::default()
        };
        let zones = Zones::from_config(&config).unwrap();
        let names = |space, key: &str| {
            let mut names = Vec::new();
            touched_names(&zones, space, key.as_bytes(), &mut |n| {
                names.push(n.to_vec())
            });
            names
        };
        let apex = b"\x06idnode\x08internal\x00";
        let with_apex = |labels: &[u8]| [labels, apex].concat();
        let touched = names(Space::Records, "88.100.1/ABC");
        for expected in [
            &b"\x03abc\x01_\x011\x03100\x0288"[..],
            b"\x01_\x011\x03100\x0288",
            b"\x011\x03100\x0288",
            b"\x03100\x0288",
            b"\x0288",
        ] {
            assert!(touched.contains(&with_apex(expected)), "{expected:?}");
        }
        let gtin = names(Space::Records, "88.100.3/00866993371400");
        let ons = b"\x010\x010\x014\x011\x017\x013\x013\x019\x019\x016\x016\x018\x010\x04gtin\x03gs1\x02id";
        assert!(gtin.contains(&with_apex(ons)));
        let oid = names(Space::Records, "88.100.4/1.2.156");
        for expected in [
            &b"\x03156\x012\x011\x07oid-res"[..],
            b"\x012\x011\x07oid-res",
            b"\x011\x07oid-res",
        ] {
            assert!(oid.contains(&with_apex(expected)), "{expected:?}");
        }
        assert_eq!(names(Space::Prefixes, "88.100").len(), 2);
        assert!(names(Space::Meta, "x").is_empty());
    }

    #[test]
    fn writes_that_may_move_a_cut_forget_everything() {
        assert!(moves_cuts(Space::Prefixes, b"88.100.2"));
        assert!(moves_cuts(Space::Records, b"0.NA/88.100.2"));
        assert!(moves_cuts(Space::Records, b"0.na/88"));
        assert!(!moves_cuts(Space::Records, b"0.NA"));
        assert!(!moves_cuts(Space::Records, b"0.NAX/1"));
        assert!(!moves_cuts(Space::Records, b"88.100.1/0.NA/x"));
        assert!(!moves_cuts(Space::Meta, b"0.NA/88"));
        let cache = cache(1 << 20, 4);
        for name in [&b"\x01a\x00"[..], b"\x01b\x00", b"\x01c\x00"] {
            fill(&cache, name, 16, b"answer");
        }
        let mut out = Vec::new();
        let ticket = cache.serve(b"\x01d\x00", 16, true, &mut out).unwrap_err();
        cache.committed(&[(Space::Prefixes, &b"88.100.2"[..])]);
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
        cache.insert(b"\x01d\x00", 16, true, ticket, b"old", Patches::default());
        assert!(cache.is_empty(), "a fill that began before is refused");
    }
}
