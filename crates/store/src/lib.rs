//! The store: what every storage engine must do, and an in-memory engine.
//!
//! The store is a keyed byte store with a few named key spaces and a change
//! log. It knows nothing of identifiers or records (their encoding lives in
//! `idnode-core`), and this crate never depends on RocksDB: the RocksDB
//! engine is `idnode-store-rocksdb`, and [`conformance`] is the one suite
//! that both engines pass.
//!
//! Writes go through a [`WriteTxn`]: the engine serializes transactions,
//! so a transaction reads the current state, decides, and commits its
//! changes as one atomic batch, each change with its change-log entry
//! under a new global sequence number. `commit` returns only once the batch
//! is durable (in the WAL, synced, for RocksDB).

pub mod conformance;
mod memory;
mod observed;
mod read_only;

pub use memory::MemoryStore;
pub use observed::{CommitObserver, ObservedStore};
pub use read_only::ReadOnlyStore;

use bytes::Bytes;

/// The key spaces (RocksDB column families) of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Records, keyed by normalized identifier.
    Records,
    /// Prefixes homed (or known) here, keyed by normalized prefix.
    Prefixes,
    /// Node metadata (admin token hash, seeding state...).
    Meta,
}

impl Space {
    pub const ALL: [Space; 3] = [Space::Records, Space::Prefixes, Space::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Space::Records => "records",
            Space::Prefixes => "prefixes",
            Space::Meta => "meta",
        }
    }

    pub fn tag(self) -> u8 {
        match self {
            Space::Records => 1,
            Space::Prefixes => 2,
            Space::Meta => 3,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Space> {
        Space::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub sequence: u64,
    pub space: Space,
    pub key: Vec<u8>,
    /// The new value, or `None` for a delete.
    pub value: Option<Bytes>,
    /// Who made the change, from where (the registry's audit record,
    /// opaque here); `None` when the writer did not say.
    pub origin: Option<Bytes>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// The disk under the store is full: the write was refused and none of
    /// it is stored. Reads go on; the engine takes writes again once space
    /// is freed. Carries the engine's own words, for the log; callers show
    /// [`NO_SPACE`] instead.
    #[error("no space left on the store's disk: {0}")]
    NoSpace(String),
    /// The store takes no writes from this node's callers (a mirror, which
    /// only applies what its primary sends): the message says where to
    /// write instead, and is shown to the caller as it is.
    #[error("{0}")]
    ReadOnly(String),
}

/// What a client is told of a write refused for a full disk
/// ([`StoreError::NoSpace`]).
pub const NO_SPACE: &str = "the node's disk is full: no space left to store writes, \
     which are refused until space is freed (resolution goes on)";

pub type Result<T> = std::result::Result<T, StoreError>;

/// What an engine reports of itself, for monitoring: every key space and
/// the change log together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Bytes of the on-disk sorted files (RocksDB: SST files).
    pub file_bytes: u64,
    /// Bytes of the in-memory write buffers (RocksDB: memtables).
    pub memory_table_bytes: u64,
    /// Files of level 0: each is searched on its own by a lookup.
    pub level0_files: u64,
    /// Bytes the engine estimates compaction still has to rewrite.
    pub pending_compaction_bytes: u64,
    /// The engine's estimate of the stored records (identifiers).
    pub estimated_records: u64,
}

/// A storage engine.
pub trait Store: Send + Sync + 'static {
    /// The value stored under `key`, if any. The hot path of resolution.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>>;

    /// Several point lookups at once (RocksDB multi-get).
    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|k| self.get(space, k)).collect()
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order,
    /// starting after `after` when given (for pagination).
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>>;

    /// A consistent read-only view of the store as it is now: every
    /// committed transaction up to one point is in it, later ones are not,
    /// however long it is kept. What a long read (a zone transfer) pages
    /// through. Keeping one keeps the data it sees (RocksDB: the files and
    /// memtables it needs; memory: the maps the next writes copy).
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>>;

    /// Starts a write transaction. Transactions are serialized: this waits
    /// until no other transaction is open.
    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>>;

    /// The sequence number of the last committed change (0 when none).
    fn last_sequence(&self) -> u64;

    /// Figures of the engine for monitoring; zero where it has none.
    fn engine_stats(&self) -> EngineStats {
        EngineStats::default()
    }

    /// Up to `limit` changes with a sequence number above `after`, in order.
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// The sequence number of the oldest change still in the change log
    /// (0 when it is empty). Above 1 once [`trim_changes`](Self::trim_changes)
    /// has removed older ones: a reader that needs changes from before it
    /// (a mirror behind, an IXFR from an old serial) must start from the
    /// whole store instead.
    fn first_sequence(&self) -> Result<u64> {
        Ok(self.changes_since(0, 1)?.first().map_or(0, |c| c.sequence))
    }

    /// Removes the change-log entries numbered up to `upto` (never the
    /// newest one, which carries the store's sequence) and makes the engine
    /// drop what they held from its files, with the values no key holds
    /// any more (RocksDB: a flush, then a compaction of the trimmed range
    /// and of the key spaces). Returns how many entries went. Reads and
    /// writes go on meanwhile.
    fn trim_changes(&self, upto: u64) -> Result<u64>;

    /// Rewrites the stored data so that a point lookup searches as little
    /// as the engine can (RocksDB: the records, prefixes and meta merged
    /// into one sorted run each), returning when that is done. Reads and
    /// writes go on meanwhile. Worth it after a bulk load; engines with
    /// nothing to merge do nothing.
    fn compact(&self) -> Result<()> {
        Ok(())
    }

    /// Writes a consistent copy of the whole store (every key space and
    /// the change log, as of one committed transaction) into `dir`, which
    /// must not exist yet (its parent must), and returns the sequence
    /// number of the last change in it. The copy is a store directory that
    /// the engine opens as it is. RocksDB: a checkpoint (SST files hard
    /// linked when on the same filesystem, so it is fast and small);
    /// engines that cannot copy themselves to disk (memory) fail with
    /// [`StoreError::Engine`] saying so.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<u64> {
        let _ = dir;
        Err(StoreError::Engine(
            "checkpoints are not supported by this storage engine".to_owned(),
        ))
    }

    /// Why this store refuses writes, when it does ([`ReadOnlyStore`]: a
    /// mirror, where to write instead); `None` for a store that takes
    /// them. Lets a front end refuse before it asks for credentials.
    fn refuses_writes(&self) -> Option<&str> {
        None
    }

    /// Starts replacing the whole store (every key space and the change
    /// log) with a copy of another store's, as of that store's sequence
    /// number: what a mirror does when its primary no longer holds the
    /// changes it misses. Holds the writer lock until finished or dropped.
    /// The store is emptied first; entries are then put one by one and
    /// [`Replace::finish`] sets the sequence number. Until it finishes,
    /// a crash or a drop leaves the store empty at sequence 0 (the next
    /// open finishes emptying it), never a mix of old and new.
    fn replace(&self) -> Result<Box<dyn Replace + '_>> {
        Err(StoreError::Engine(
            "replacing the store's contents is not supported by this storage engine".to_owned(),
        ))
    }
}

/// A replacement of a store's contents in progress; see [`Store::replace`].
pub trait Replace {
    /// Stores `value` under `key` (engines write in batches of their own).
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<()>;

    /// Makes the copy whole: the store's sequence number becomes
    /// `sequence` (its change log is empty, the next change is
    /// `sequence + 1`). Durable when it returns.
    fn finish(self: Box<Self>, sequence: u64) -> Result<()>;
}

/// A consistent read-only view of a store; see [`Store::snapshot`].
pub trait Snapshot: Send {
    /// The sequence number of the last change in the view (0 when none).
    fn sequence(&self) -> u64;

    /// As [`Store::scan`], in the view.
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>>;
}

/// An open write transaction. Dropping it without `commit` discards it.
pub trait WriteTxn {
    /// Reads `key`, seeing this transaction's own pending writes.
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>>;

    /// Stages a put; returns the sequence number it will carry.
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> u64;

    /// Stages a delete; returns the sequence number it will carry.
    fn delete(&mut self, space: Space, key: &[u8]) -> u64;

    /// Records `origin` (who writes, from where: opaque bytes) with every
    /// change this transaction stages from now on, in the change log.
    fn set_origin(&mut self, origin: Bytes);

    /// Stages a change as another store committed it: its own sequence
    /// number (which must be the next one of this transaction: the last
    /// committed or staged plus one) and its own origin. What a mirror
    /// applies of its primary's change log, so that both logs stay
    /// identical. Fails, staging nothing, on a sequence number out of
    /// order.
    fn apply(&mut self, change: Change) -> Result<()> {
        let _ = change;
        Err(StoreError::Engine(
            "replicated changes are not supported by this storage engine".to_owned(),
        ))
    }

    /// Commits every staged change as one atomic, durable batch and returns
    /// the last sequence number (the current one when nothing was staged).
    fn commit(self: Box<Self>) -> Result<u64>;
}

/// Staged changes, shared by the engines' transactions.
#[derive(Debug, Default)]
pub struct Staged {
    /// Sequence number of the last committed change when the txn began.
    pub base: u64,
    pub changes: Vec<Change>,
    /// The origin given to the changes staged from now on.
    pub origin: Option<Bytes>,
}

impl Staged {
    pub fn new(base: u64) -> Self {
        Self {
            base,
            changes: Vec::new(),
            origin: None,
        }
    }

    /// The latest staged value of `key`: `Some(Some(v))` put, `Some(None)`
    /// deleted, `None` not touched.
    pub fn lookup(&self, space: Space, key: &[u8]) -> Option<Option<Bytes>> {
        self.changes
            .iter()
            .rev()
            .find(|c| c.space == space && c.key == key)
            .map(|c| c.value.clone())
    }

    pub fn stage(&mut self, space: Space, key: &[u8], value: Option<Bytes>) -> u64 {
        let sequence = self.base + self.changes.len() as u64 + 1;
        self.changes.push(Change {
            sequence,
            space,
            key: key.to_vec(),
            value,
            origin: self.origin.clone(),
        });
        sequence
    }

    /// Stages `change` as it is (sequence and origin), when it is the next
    /// one; see [`WriteTxn::apply`].
    pub fn stage_replicated(&mut self, change: Change) -> Result<()> {
        let next = self.last() + 1;
        if change.sequence != next {
            return Err(StoreError::Engine(format!(
                "a replicated change has sequence number {}, the next one here is {next}",
                change.sequence
            )));
        }
        self.changes.push(change);
        Ok(())
    }

    /// The sequence number once committed.
    pub fn last(&self) -> u64 {
        self.base + self.changes.len() as u64
    }
}

/// Encodes a change-log entry: space tag, key length (u32) and key, then a
/// marker: 0 delete, 1 put followed by the value; with an origin, 2 delete
/// and 3 put, each followed by the origin's length (u32) and bytes before
/// the value. The sequence number is the entry's key.
pub fn encode_change(change: &Change) -> Vec<u8> {
    let value_len = change.value.as_ref().map_or(0, |v| v.len());
    let origin_len = change.origin.as_ref().map_or(0, |o| 4 + o.len());
    let mut out = Vec::with_capacity(1 + 4 + change.key.len() + 1 + origin_len + value_len);
    out.push(change.space.tag());
    out.extend_from_slice(&(change.key.len() as u32).to_be_bytes());
    out.extend_from_slice(&change.key);
    let put = u8::from(change.value.is_some());
    match &change.origin {
        Some(origin) => {
            out.push(2 + put);
            out.extend_from_slice(&(origin.len() as u32).to_be_bytes());
            out.extend_from_slice(origin);
        }
        None => out.push(put),
    }
    if let Some(v) = &change.value {
        out.extend_from_slice(v);
    }
    out
}

/// Decodes a change-log entry written by [`encode_change`].
pub fn decode_change(sequence: u64, bytes: &[u8]) -> Result<Change> {
    let corrupt = || StoreError::Corrupt(format!("change-log entry {sequence} is malformed"));
    let (&tag, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let space = Space::from_tag(tag).ok_or_else(corrupt)?;
    if rest.len() < 4 {
        return Err(corrupt());
    }
    let key_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let rest = &rest[4..];
    if key_len >= rest.len() {
        return Err(corrupt());
    }
    let (key, rest) = rest.split_at(key_len);
    let (&marker, mut rest) = rest.split_first().ok_or_else(corrupt)?;
    let origin = if marker >= 2 {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let end = len.checked_add(4).ok_or_else(corrupt)?;
        let origin = rest.get(4..end).ok_or_else(corrupt)?;
        rest = &rest[end..];
        Some(Bytes::copy_from_slice(origin))
    } else {
        None
    };
    let value = match marker {
        0 | 2 if rest.is_empty() => None,
        1 | 3 => Some(Bytes::copy_from_slice(rest)),
        _ => return Err(corrupt()),
    };
    Ok(Change {
        sequence,
        space,
        key: key.to_vec(),
        value,
        origin,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn change_entries_round_trip_with_and_without_origin() {
        for value in [
            None,
            Some(Bytes::from_static(b"")),
            Some(Bytes::from_static(b"v1")),
        ] {
            for origin in [
                None,
                Some(Bytes::from_static(b"")),
                Some(Bytes::from_static(b"who")),
            ] {
                let change = Change {
                    sequence: 9,
                    space: Space::Records,
                    key: b"88.1/A".to_vec(),
                    value: value.clone(),
                    origin: origin.clone(),
                };
                let bytes = encode_change(&change);
                assert_eq!(decode_change(9, &bytes).unwrap(), change);
                // No truncation decodes to a different change.
                for cut in 0..bytes.len() {
                    if let Ok(other) = decode_change(9, &bytes[..cut]) {
                        assert_ne!(other, change);
                    }
                }
            }
        }
        // An origin longer than the entry is corrupt, not a panic.
        let mut bad = vec![1, 0, 0, 0, 1, b'k', 3];
        bad.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_change(1, &bad).is_err());
        // Entries written before origins existed still decode.
        assert_eq!(
            decode_change(1, &[1, 0, 0, 0, 1, b'k', 1, b'v'])
                .unwrap()
                .value,
            Some(Bytes::from_static(b"v"))
        );
    }
}
