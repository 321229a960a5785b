//! The RocksDB engine of the store: [`RocksStore`] implements
//! [`idnode_store::Store`] over an embedded RocksDB under a data directory.
//!
//! This crate owns everything that is RocksDB-specific:
//! - the column families: one per [`Space`](idnode_store::Space), named by
//!   `Space::name()`, and [`CHANGELOG_CF`], keyed by the big-endian sequence
//!   number, holding `idnode_store::encode_change` entries;
//! - their tuning for point lookups (module `tuning`): one block cache
//!   (HyperClockCache) shared by every column family, whole-key bloom
//!   filters, index and filter blocks pinned in the cache at every level,
//!   8 KiB data blocks hash-indexed down to each key, LZ4;
//! - the write path: one transaction at a time, committed as one WriteBatch
//!   holding every change and its change-log entry, synced to the WAL
//!   before `commit` returns (unless [`RocksOptions::sync`] is off);
//! - compaction on request (`Store::compact`, after a bulk load): the
//!   lookup families merged into one sorted run each.
//! - faults: `open` reads every block of every SST file once, so that a
//!   damaged or missing file is [`StoreError::Corrupt`](idnode_store::StoreError)
//!   (RocksDB's message names it) before anything is served; a write on a
//!   full disk is `StoreError::NoSpace`, and RocksDB's file manager resumes
//!   writes by itself once a memtable's worth of space is free;
//!   [`RocksStore::repair`] runs RocksDB's repair and says what is left.
//!
//! Nothing above the store trait may depend on this crate: the resolver,
//! the servers and the admin service see `dyn Store`, and only the wiring
//! in the binary names [`RocksStore`]. That keeps their tests on the
//! in-memory engine and RocksDB's C++ out of their builds.

mod store;
mod tuning;

pub use store::{CHANGELOG_CF, Repaired, RocksStore};
pub use tuning::RocksOptions;
