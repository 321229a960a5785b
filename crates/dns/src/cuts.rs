//! Which prefixes are delegated away, held in memory, so that answering an
//! identifier's name needs no store read to know it lies under no zone
//! cut.
//!
//! - A map from every key of `Space::Prefixes` to whether that prefix is
//!   homed here, loaded from the store when the node starts (a node holds
//!   hundreds to tens of thousands of prefixes, a few megabytes at most).
//! - Kept current by every committed write ([`CommitObserver`]), before
//!   the write is acknowledged: a changed key of `Space::Prefixes` is read
//!   again from the store; a replaced store is loaded again whole.
//! - [`Cuts::delegated`] answers as the store would: the nearest prefix
//!   at or above an identifier's prefix that has an entry decides. When an
//!   entry could not be read back, the map is no longer trusted and every
//!   prefix counts as delegated, so the answers go to the store (which
//!   decides right) until the node restarts.

use idnode_core::{Prefix, PrefixInfo};
use idnode_store::{CommitObserver, Space, Store, StoreError};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Entries read from the store at a time while loading.
const PAGE: usize = 4096;

/// See the module docs.
pub struct Cuts {
    /// The store the entries are read from (the engine, below any
    /// observer).
    store: Arc<dyn Store>,
    /// Prefix key → homed here.
    homed: RwLock<FxHashMap<Box<str>, bool>>,
    /// False once an entry could not be read back.
    trusted: AtomicBool,
}

impl Cuts {
    /// Loads every prefix entry of `store`.
    pub fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let homed = read_all(&*store)?;
        Ok(Self {
            store,
            homed: RwLock::new(homed),
            trusted: AtomicBool::new(true),
        })
    }

    /// Whether `prefix` is at or under a prefix delegated away: the
    /// nearest of it and its parents with an entry is not homed here (an
    /// entry that does not decode counts as delegated, as in the answers
    /// read from the store).
    pub fn delegated(&self, prefix: &Prefix) -> bool {
        if !self.trusted.load(Ordering::Acquire) {
            return true;
        }
        let homed = self.homed.read().unwrap_or_else(|e| e.into_inner());
        if homed.is_empty() {
            return false;
        }
        let mut at = Some(prefix.clone());
        while let Some(p) = at {
            if let Some(&is_homed) = homed.get(p.key()) {
                return !is_homed;
            }
            at = p.parent();
        }
        false
    }

    /// Prefix entries held.
    pub fn len(&self) -> usize {
        self.homed.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reload(&self, key: &[u8]) {
        let Ok(text) = std::str::from_utf8(key) else {
            return;
        };
        let found = match self.store.get(Space::Prefixes, key) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(prefix = text, error = %e, "prefix entry not read back for the DNS");
                self.trusted.store(false, Ordering::Release);
                return;
            }
        };
        let mut homed = self.homed.write().unwrap_or_else(|e| e.into_inner());
        match found {
            Some(info) => {
                homed.insert(text.into(), PrefixInfo::homed_in(&info).unwrap_or(false));
            }
            None => {
                homed.remove(text);
            }
        }
    }
}

fn read_all(store: &dyn Store) -> Result<FxHashMap<Box<str>, bool>, StoreError> {
    let mut homed = FxHashMap::default();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Space::Prefixes, b"", after.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (key, info) in &page {
            if let Ok(text) = std::str::from_utf8(key) {
                homed.insert(text.into(), PrefixInfo::homed_in(info).unwrap_or(false));
            }
        }
        match page.into_iter().last() {
            Some((key, _)) if full => after = Some(key),
            _ => return Ok(homed),
        }
    }
}

impl CommitObserver for Cuts {
    fn committed(&self, changes: &[(Space, &[u8])]) {
        for (space, key) in changes {
            if *space == Space::Prefixes {
                self.reload(key);
            }
        }
    }

    fn replaced(&self) {
        match read_all(&*self.store) {
            Ok(all) => {
                *self.homed.write().unwrap_or_else(|e| e.into_inner()) = all;
                self.trusted.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::error!(error = %e, "prefix entries not read after the store was replaced");
                self.trusted.store(false, Ordering::Release);
            }
        }
    }
}
