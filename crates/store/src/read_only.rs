//! A store that refuses writes: what a mirror's callers see. The mirror
//! applies its primary's changes to the store underneath.

use crate::{Change, EngineStats, Replace, Result, Snapshot, Space, Store, StoreError, WriteTxn};
use bytes::Bytes;
use std::sync::Arc;

/// Wraps a store; every read passes through, every write
/// ([`Store::begin`], [`Store::replace`]) fails with
/// [`StoreError::ReadOnly`] carrying `reason`.
pub struct ReadOnlyStore {
    inner: Arc<dyn Store>,
    reason: String,
}

impl ReadOnlyStore {
    /// `reason` is what a refused writer is told (where to write instead).
    pub fn new(inner: Arc<dyn Store>, reason: impl Into<String>) -> Self {
        Self {
            inner,
            reason: reason.into(),
        }
    }
}

impl Store for ReadOnlyStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(space, key)
    }

    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.inner.multi_get(space, keys)
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>> {
        self.inner.scan(space, prefix, after, limit)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        self.inner.snapshot()
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        Err(StoreError::ReadOnly(self.reason.clone()))
    }

    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }

    fn engine_stats(&self) -> EngineStats {
        self.inner.engine_stats()
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.inner.changes_since(after, limit)
    }

    fn first_sequence(&self) -> Result<u64> {
        self.inner.first_sequence()
    }

    // Upkeep, not a write of this node's callers: a mirror trims its own
    // change log by its own retention.
    fn trim_changes(&self, upto: u64) -> Result<u64> {
        self.inner.trim_changes(upto)
    }

    fn compact(&self) -> Result<()> {
        self.inner.compact()
    }

    fn checkpoint(&self, dir: &std::path::Path) -> Result<u64> {
        self.inner.checkpoint(dir)
    }

    fn replace(&self) -> Result<Box<dyn Replace + '_>> {
        Err(StoreError::ReadOnly(self.reason.clone()))
    }

    fn refuses_writes(&self) -> Option<&str> {
        Some(&self.reason)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn reads_pass_and_writes_are_refused_with_the_reason() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut txn = inner.begin().unwrap();
        txn.put(Space::Records, b"k", Bytes::from_static(b"v"));
        txn.commit().unwrap();
        let store = ReadOnlyStore::new(inner, "write to the primary");
        assert_eq!(
            store.get(Space::Records, b"k").unwrap(),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(store.last_sequence(), 1);
        match store.begin() {
            Err(StoreError::ReadOnly(m)) => assert_eq!(m, "write to the primary"),
            _ => panic!("a write began on a read-only store"),
        }
        assert!(matches!(store.replace(), Err(StoreError::ReadOnly(_))));
        assert_eq!(store.refuses_writes(), Some("write to the primary"));
    }
}
