//! A store wrapper that tells observers about every committed change
//! before the commit returns to its caller.
//!
//! The response cache uses it to invalidate: because observers run before
//! `commit` returns, no write is acknowledged while a stale answer is still
//! cached, whichever entrance (gRPC, import, seeding) made the write.

use crate::{Change, Replace, Result, Snapshot, Space, Store, WriteTxn};
use bytes::Bytes;
use std::sync::Arc;

/// Told about committed changes.
pub trait CommitObserver: Send + Sync + 'static {
    /// Called once per commit, after it is durable and before it returns.
    fn committed(&self, changes: &[(Space, &[u8])]);

    /// Called when the store's whole contents were replaced
    /// ([`Store::replace`]), once the replacement finished or was given
    /// up: nothing seen before may be kept.
    fn replaced(&self) {}
}

/// Wraps a store; see the module docs.
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    observers: Vec<Arc<dyn CommitObserver>>,
}

impl ObservedStore {
    pub fn new(inner: Arc<dyn Store>, observers: Vec<Arc<dyn CommitObserver>>) -> Self {
        Self { inner, observers }
    }
}

impl Store for ObservedStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(space, key)
    }

    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.inner.multi_get(space, keys)
    }

    fn checkpoint(&self, dir: &std::path::Path) -> Result<u64> {
        self.inner.checkpoint(dir)
    }

    fn compact(&self) -> Result<()> {
        self.inner.compact()
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
        Ok(Box::new(ObservedTxn {
            inner: self.inner.begin()?,
            observers: &self.observers,
            touched: Vec::new(),
        }))
    }

    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }

    fn replace(&self) -> Result<Box<dyn Replace + '_>> {
        let inner = self.inner.replace()?;
        // The store is empty now: what the caches hold is stale already.
        for observer in &self.observers {
            observer.replaced();
        }
        Ok(Box::new(ObservedReplace {
            inner: Some(inner),
            observers: &self.observers,
        }))
    }

    fn engine_stats(&self) -> crate::EngineStats {
        self.inner.engine_stats()
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.inner.changes_since(after, limit)
    }

    fn first_sequence(&self) -> Result<u64> {
        self.inner.first_sequence()
    }

    fn trim_changes(&self, upto: u64) -> Result<u64> {
        self.inner.trim_changes(upto)
    }
}

struct ObservedTxn<'a> {
    inner: Box<dyn WriteTxn + 'a>,
    observers: &'a [Arc<dyn CommitObserver>],
    touched: Vec<(Space, Vec<u8>)>,
}

impl WriteTxn for ObservedTxn<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(space, key)
    }

    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> u64 {
        self.touched.push((space, key.to_vec()));
        self.inner.put(space, key, value)
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> u64 {
        self.touched.push((space, key.to_vec()));
        self.inner.delete(space, key)
    }

    fn set_origin(&mut self, origin: Bytes) {
        self.inner.set_origin(origin);
    }

    fn apply(&mut self, change: Change) -> Result<()> {
        let touched = (change.space, change.key.clone());
        self.inner.apply(change)?;
        self.touched.push(touched);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<u64> {
        let this = *self;
        let sequence = this.inner.commit()?;
        if !this.touched.is_empty() {
            let changes: Vec<(Space, &[u8])> = this
                .touched
                .iter()
                .map(|(s, k)| (*s, k.as_slice()))
                .collect();
            for observer in this.observers {
                observer.committed(&changes);
            }
        }
        Ok(sequence)
    }
}

/// A replacement through the observed store: the observers hear of it
/// when it starts, and again when it ends, finished or dropped (a lookup
/// meanwhile may have cached a state of the partial copy).
struct ObservedReplace<'a> {
    inner: Option<Box<dyn Replace + 'a>>,
    observers: &'a [Arc<dyn CommitObserver>],
}

impl Replace for ObservedReplace<'_> {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<()> {
        match &mut self.inner {
            Some(inner) => inner.put(space, key, value),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>, sequence: u64) -> Result<()> {
        match self.inner.take() {
            Some(inner) => inner.finish(sequence),
            None => Ok(()),
        }
        // `self` drops here and tells the observers.
    }
}

impl Drop for ObservedReplace<'_> {
    fn drop(&mut self) {
        // The inner replacement first: it holds the writer lock, and a
        // lookup must not cache the partial copy after the observers
        // were told.
        drop(self.inner.take());
        for observer in self.observers {
            observer.replaced();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Vec<u8>>>);

    impl CommitObserver for Recorder {
        fn committed(&self, changes: &[(Space, &[u8])]) {
            let mut seen = self.0.lock().unwrap();
            seen.extend(changes.iter().map(|(_, k)| k.to_vec()));
        }
    }

    #[test]
    fn observers_see_committed_keys_only() {
        let recorder = Arc::new(Recorder::default());
        let store = ObservedStore::new(Arc::new(MemoryStore::new()), vec![recorder.clone()]);
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, b"dropped", Bytes::from_static(b"x"));
        drop(txn);
        assert!(recorder.0.lock().unwrap().is_empty());
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, b"a", Bytes::from_static(b"1"));
        txn.delete(Space::Records, b"b");
        txn.commit().unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn conforms() {
        crate::conformance::run_all(&|| {
            Box::new(ObservedStore::new(Arc::new(MemoryStore::new()), Vec::new()))
        });
    }
}
