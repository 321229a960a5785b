//! A registry over a store that counts commits, with a settable clock.

use bytes::Bytes;
use idnode_registry::Registry;
use idnode_store::{Change, MemoryStore, Result, Snapshot, Space, Store, WriteTxn};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A [`MemoryStore`] that counts commits that staged something.
#[derive(Default)]
pub struct CountingStore {
    inner: MemoryStore,
    pub commits: AtomicUsize,
}

struct CountingTxn<'a> {
    inner: Box<dyn WriteTxn + 'a>,
    commits: &'a AtomicUsize,
    staged: bool,
}

impl WriteTxn for CountingTxn<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(space, key)
    }
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> u64 {
        self.staged = true;
        self.inner.put(space, key, value)
    }
    fn delete(&mut self, space: Space, key: &[u8]) -> u64 {
        self.staged = true;
        self.inner.delete(space, key)
    }
    fn set_origin(&mut self, origin: Bytes) {
        self.inner.set_origin(origin);
    }
    fn commit(self: Box<Self>) -> Result<u64> {
        if self.staged {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.commit()
    }
}

impl Store for CountingStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(space, key)
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
        Ok(Box::new(CountingTxn {
            inner: self.inner.begin()?,
            commits: &self.commits,
            staged: false,
        }))
    }
    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.inner.changes_since(after, limit)
    }
    fn trim_changes(&self, upto: u64) -> Result<u64> {
        self.inner.trim_changes(upto)
    }
}

pub struct Fixture {
    pub registry: Registry,
    pub store: Arc<CountingStore>,
    pub clock: Arc<AtomicU32>,
}

pub const T0: u32 = 1_700_000_000;

impl Fixture {
    pub fn new() -> Self {
        let store = Arc::new(CountingStore::default());
        let clock = Arc::new(AtomicU32::new(T0));
        let time = clock.clone();
        let registry = Registry::with_clock(store.clone(), move || time.load(Ordering::SeqCst));
        Self {
            registry,
            store,
            clock,
        }
    }

    /// A fixture with prefix `88.100.1` homed.
    pub fn with_prefix() -> Self {
        let f = Self::new();
        f.registry.create_prefix("88.100.1").unwrap();
        f
    }

    pub fn set_time(&self, t: u32) {
        self.clock.store(t, Ordering::SeqCst);
    }

    pub fn commits(&self) -> usize {
        self.store.commits.load(Ordering::SeqCst)
    }

    pub fn sequence(&self) -> u64 {
        self.store.last_sequence()
    }
}

pub fn url(index: u32, data: &str) -> idnode_core::Value {
    idnode_core::Value::new(index, "URL", data.to_owned())
}
