//! The in-memory engine: for tests, and a reference for what the trait means.

use crate::{Change, Replace, Result, Snapshot, Space, Staged, Store, WriteTxn};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

type Spaces = BTreeMap<(Space, Vec<u8>), Bytes>;

#[derive(Debug, Default)]
struct State {
    /// Shared with the snapshots taken since the last commit; a commit
    /// copies it when one is still held (copy on write).
    spaces: Arc<Spaces>,
    log: Vec<Change>,
    /// The sequence number when the log is empty: that of the copy a
    /// replacement loaded (0 otherwise).
    floor: u64,
}

impl State {
    fn last_sequence(&self) -> u64 {
        self.log.last().map_or(self.floor, |c| c.sequence)
    }
}

/// A store that keeps everything in memory and loses it on drop.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    writer: Mutex<()>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.read().spaces.get(&(space, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>> {
        Ok(scan(&self.read().spaces, space, prefix, after, limit))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        let state = self.read();
        Ok(Box::new(MemorySnapshot {
            spaces: state.spaces.clone(),
            sequence: state.last_sequence(),
        }))
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.last_sequence();
        Ok(Box::new(MemoryTxn {
            store: self,
            _guard: guard,
            staged: Staged::new(base),
        }))
    }

    fn last_sequence(&self) -> u64 {
        self.read().last_sequence()
    }

    fn replace(&self) -> Result<Box<dyn Replace + '_>> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = State::default();
        Ok(Box::new(MemoryReplace {
            store: self,
            _guard: guard,
            finished: false,
        }))
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let state = self.read();
        let start = state.log.partition_point(|c| c.sequence <= after);
        Ok(state.log[start..].iter().take(limit).cloned().collect())
    }

    fn trim_changes(&self, upto: u64) -> Result<u64> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let keep_last = state.log.len().saturating_sub(1);
        let end = state
            .log
            .partition_point(|c| c.sequence <= upto)
            .min(keep_last);
        state.log.drain(..end);
        Ok(end as u64)
    }
}

/// Up to `limit` entries of `space` whose keys start with `prefix`, after
/// `after`.
fn scan(
    spaces: &Spaces,
    space: Space,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Bytes)> {
    let start = (space, after.unwrap_or(prefix).to_vec());
    spaces
        .range(start..)
        .filter(|((_, k), _)| Some(k.as_slice()) != after)
        .take_while(|((s, k), _)| *s == space && k.starts_with(prefix))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// The maps as one commit left them.
struct MemorySnapshot {
    spaces: Arc<Spaces>,
    sequence: u64,
}

impl Snapshot for MemorySnapshot {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>> {
        Ok(scan(&self.spaces, space, prefix, after, limit))
    }
}

struct MemoryTxn<'a> {
    store: &'a MemoryStore,
    _guard: MutexGuard<'a, ()>,
    staged: Staged,
}

impl WriteTxn for MemoryTxn<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        match self.staged.lookup(space, key) {
            Some(v) => Ok(v),
            None => self.store.get(space, key),
        }
    }

    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> u64 {
        self.staged.stage(space, key, Some(value))
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> u64 {
        self.staged.stage(space, key, None)
    }

    fn set_origin(&mut self, origin: Bytes) {
        self.staged.origin = Some(origin);
    }

    fn apply(&mut self, change: Change) -> Result<()> {
        self.staged.stage_replicated(change)
    }

    fn commit(self: Box<Self>) -> Result<u64> {
        let last = self.staged.last();
        if self.staged.changes.is_empty() {
            return Ok(last);
        }
        let mut state = self.store.state.write().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let spaces = Arc::make_mut(&mut state.spaces);
        for change in self.staged.changes {
            let key = (change.space, change.key.clone());
            match &change.value {
                Some(v) => spaces.insert(key, v.clone()),
                None => spaces.remove(&key),
            };
            state.log.push(change);
        }
        Ok(last)
    }
}

/// A replacement in progress: holds the writer lock.
struct MemoryReplace<'a> {
    store: &'a MemoryStore,
    _guard: MutexGuard<'a, ()>,
    finished: bool,
}

impl Replace for MemoryReplace<'_> {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<()> {
        let mut state = self.store.state.write().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(&mut state.spaces).insert((space, key.to_vec()), value);
        Ok(())
    }

    fn finish(mut self: Box<Self>, sequence: u64) -> Result<()> {
        let mut state = self.store.state.write().unwrap_or_else(|e| e.into_inner());
        state.log.clear();
        state.floor = sequence;
        self.finished = true;
        Ok(())
    }
}

impl Drop for MemoryReplace<'_> {
    fn drop(&mut self) {
        // Given up: empty, never a part of the copy.
        if !self.finished {
            *self.store.state.write().unwrap_or_else(|e| e.into_inner()) = State::default();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conforms() {
        crate::conformance::run_all(&|| Box::new(super::MemoryStore::new()));
    }
}
