//! [`RocksStore`]: opening the database, reads, and the write transaction.

use crate::tuning::{self, RocksOptions};
use bytes::Bytes;
use idnode_store::{
    Change, Replace, Result, Snapshot, Space, Staged, Store, StoreError, WriteTxn, decode_change,
    encode_change,
};
use rocksdb::{
    BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor, CompactOptions, DB,
    DBRawIteratorWithThreadMode, ErrorKind, Options, PrefixRange, ReadOptions,
    SnapshotWithThreadMode, WriteBatch, WriteOptions,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The column family of the change log: key = sequence number (u64,
/// big-endian, so key order is sequence order), value =
/// `idnode_store::encode_change`.
pub const CHANGELOG_CF: &str = "changelog";

/// In the default column family: the sequence number of the copy a
/// replacement loaded ([`Store::replace`]; u64, big-endian), the store's
/// sequence while its change log is empty.
const FLOOR_KEY: &[u8] = b"sequence_floor";
/// In the default column family while a replacement is in progress: a
/// store opened with it holds part of a copy, and is emptied.
const REPLACING_KEY: &[u8] = b"replacing";
/// Bytes of a replacement's batch before it is written.
const REPLACE_BATCH_BYTES: usize = 4 << 20;

/// A store in an embedded RocksDB database.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Held by the open write transaction: transactions are serialized.
    writer: Mutex<()>,
    /// The sequence number of the last committed change. Written only by a
    /// commit, under `writer`, after its batch is in the WAL.
    last: AtomicU64,
    /// Read options of point lookups, made once: creating them allocates.
    point_read: ReadOptions,
    /// Write options of commits (sync per [`RocksOptions::sync`]).
    write: WriteOptions,
    sync: bool,
}

impl RocksStore {
    /// Opens (creating it if needed) the store in the directory `path`,
    /// creating missing column families.
    ///
    /// Fails with [`StoreError::Open`] when the directory cannot be used,
    /// for example when another process has it open, and with
    /// [`StoreError::Corrupt`] when the change log cannot be read.
    pub fn open(path: &Path, options: &RocksOptions) -> Result<RocksStore> {
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let cache = Cache::new_hyper_clock_cache(options.block_cache_bytes, 0);
        let db_options = tuning::db_options(options);
        let mut families: Vec<ColumnFamilyDescriptor> = Space::ALL
            .into_iter()
            .map(|space| {
                ColumnFamilyDescriptor::new(
                    space.name(),
                    tuning::lookup_cf_options(&cache, options),
                )
            })
            .collect();
        families.push(ColumnFamilyDescriptor::new(
            CHANGELOG_CF,
            tuning::changelog_cf_options(&cache, options),
        ));
        // Named here, or the crate would open it with RocksDB's default
        // options (a 64 MiB memtable, whatever `write_buffer_bytes` says).
        families.push(ColumnFamilyDescriptor::new(
            rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
            tuning::db_options(options),
        ));
        // RocksDB refuses to open a database without naming every column
        // family in it, so families written by a newer version are opened
        // too (untuned). Listing fails when there is no database yet.
        if let Ok(existing) = DB::list_cf(&db_options, path) {
            for name in existing {
                if !families.iter().any(|f| f.name() == name) {
                    let mut untuned = Options::default();
                    untuned.set_write_buffer_size(options.write_buffer_bytes);
                    families.push(ColumnFamilyDescriptor::new(name, untuned));
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_options, path, families).map_err(|e| {
            match e.kind() {
                // A file the MANIFEST lists is missing, truncated or not
                // an SST: RocksDB's message names it.
                ErrorKind::Corruption => StoreError::Corrupt(e.into_string()),
                _ if is_missing_file(e.as_ref()) => StoreError::Corrupt(e.into_string()),
                _ => open_error(explain_open_error(e)),
            }
        })?;
        verify(&db)?;
        if db.get(REPLACING_KEY).map_err(engine_error)?.is_some() {
            tracing::warn!(
                path = %path.display(),
                "the store holds part of a copy whose load was interrupted: emptied"
            );
            let mut batch = clear_all(&db)?;
            batch.delete(REPLACING_KEY);
            db.write(batch).map_err(engine_error)?;
        }
        let last = recover_last_sequence(&db)?;
        let mut write = WriteOptions::default();
        write.set_sync(options.sync);
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
            writer: Mutex::new(()),
            last: AtomicU64::new(last),
            point_read: ReadOptions::default(),
            write,
            sync: options.sync,
        })
    }

    /// Runs RocksDB's repair on the store in `path` (which no process may
    /// have open): it rebuilds the MANIFEST from the files there, keeps
    /// every entry of the SST files it can read whole and moves the files
    /// it cannot into `path/lost/`. Then opens the store (which checks
    /// every block) and says what it holds.
    pub fn repair(path: &Path, options: &RocksOptions) -> Result<Repaired> {
        let lost_before = lost_files(path);
        DB::repair(&tuning::db_options(options), path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: format!("repair failed: {}", explain_open_error(e)),
        })?;
        let store = RocksStore::open(path, options)?;
        let mut entries = Vec::new();
        for space in Space::ALL {
            let family = store.family(space.name())?;
            let mut options = ReadOptions::default();
            options.fill_cache(false);
            let mut iter = store.db.raw_iterator_cf_opt(family, options);
            iter.seek_to_first();
            let mut count = 0u64;
            while iter.valid() {
                count += 1;
                iter.next();
            }
            iter.status().map_err(engine_error)?;
            entries.push((space, count));
        }
        // The repair also moves the old MANIFEST and the write-ahead logs
        // (whose entries it wrote into new SST files) into `lost/`: only
        // the SST files there are data left out.
        let set_aside = lost_files(path)
            .into_iter()
            .filter(|f| !lost_before.contains(f))
            .filter(|f| f.extension().is_some_and(|e| e == "sst"))
            .collect();
        Ok(Repaired {
            entries,
            last_sequence: store.last_sequence(),
            set_aside,
        })
    }

    /// Writes every column family's memtable to an SST file (on disk, out
    /// of the WAL), waiting until that is done.
    pub fn flush(&self) -> Result<()> {
        for name in Space::ALL
            .map(Space::name)
            .into_iter()
            .chain([CHANGELOG_CF])
        {
            self.db.flush_cf(self.family(name)?).map_err(engine_error)?;
        }
        Ok(())
    }

    /// How many sorted runs a lookup in `space` may have to search: the SST
    /// files of level 0 (each its own run) plus every deeper level that
    /// holds files. Memtables are not counted.
    pub fn sorted_runs(&self, space: Space) -> Result<u64> {
        let family = self.family(space.name())?;
        let level = |n: u32| -> Result<u64> {
            let property = format!("rocksdb.num-files-at-level{n}");
            self.db
                .property_int_value_cf(family, property.as_str())
                .map_err(engine_error)
                .map(|files| files.unwrap_or(0))
        };
        let mut runs = level(0)?;
        for n in 1..7 {
            runs += u64::from(level(n)? > 0);
        }
        Ok(runs)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn family(&self, name: &str) -> Result<&ColumnFamily> {
        // Every family named here is created by `open`, so this error means
        // a bug, not a state of the data.
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("column family `{name}` is not open")))
    }
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field("last_sequence", &self.last_sequence())
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // Unsynced commits are in the OS page cache; a clean close puts them
        // on disk. With `sync` every commit already did. Nothing to report
        // to on failure: the WAL is replayed on the next open either way.
        if !self.sync {
            let _ = self.db.flush_wal(true);
        }
    }
}

/// What [`RocksStore::repair`] left in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// How many entries each key space holds.
    pub entries: Vec<(Space, u64)>,
    /// The sequence number of the last change in the change log.
    pub last_sequence: u64,
    /// The files the repair could not read whole and moved aside (paths
    /// under `lost/`), their entries not in the store.
    pub set_aside: Vec<PathBuf>,
}

/// The files under `db/lost/` (where RocksDB's repair moves what it
/// cannot use), sorted.
fn lost_files(path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![path.join("lost")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(_) => found.push(entry.path()),
                Err(_) => {}
            }
        }
    }
    found.sort();
    found
}

/// Reads every entry of every column family, so that RocksDB checks the
/// checksum of every block of every SST file: a damaged file is found
/// here, at open, and the store is refused, rather than a resolution
/// meeting it later. Sequential reads with readahead, not kept in the
/// block cache; on a store of a million identifiers it takes about as long
/// as reading the files once.
fn verify(db: &DB) -> Result<()> {
    let mut names: Vec<&str> = Space::ALL.iter().map(|s| s.name()).collect();
    names.push(CHANGELOG_CF);
    for name in names {
        let family = db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("column family `{name}` is not open")))?;
        let mut options = ReadOptions::default();
        options.fill_cache(false);
        options.set_verify_checksums(true);
        options.set_readahead_size(2 << 20);
        let mut iter = db.raw_iterator_cf_opt(family, options);
        iter.seek_to_first();
        while iter.valid() {
            iter.next();
        }
        iter.status().map_err(|e| match e.kind() {
            ErrorKind::Corruption => StoreError::Corrupt(e.into_string()),
            _ => engine_error(e),
        })?;
    }
    Ok(())
}

/// Whether an error of opening says a file RocksDB needs is not there
/// (an SST the MANIFEST lists, removed by hand or lost).
fn is_missing_file(message: &str) -> bool {
    message.contains("No such file or directory") && message.contains(".sst")
}

/// A RocksDB error as a store error.
fn engine_error(error: rocksdb::Error) -> StoreError {
    match error.kind() {
        ErrorKind::Corruption => StoreError::Corrupt(error.into_string()),
        ErrorKind::IOError if is_no_space(error.as_ref()) => {
            StoreError::NoSpace(error.into_string())
        }
        _ => StoreError::Engine(error.into_string()),
    }
}

/// Whether a RocksDB IO error says the disk is full. RocksDB's status of
/// ENOSPC reads "IO error: No space left on device: While appending to
/// file: ...", and the writes refused after it (the database is read-only
/// until it recovers) repeat that status; a space limit of its own file
/// manager reads "IO error: Space limit reached".
fn is_no_space(message: &str) -> bool {
    message.contains("No space left on device") || message.contains("Space limit reached")
}

/// The reason an open failed, in words an operator can act on.
fn explain_open_error(error: rocksdb::Error) -> String {
    let message = error.into_string();
    // RocksDB reports a held LOCK file as an IO error: "While lock file:
    // <dir>/LOCK: Resource temporarily unavailable" when another process
    // holds it, "lock hold by current process, ..." when this one does.
    if message.contains("While lock file") || message.contains("lock hold by current process") {
        format!(
            "the directory is in use by another store (another process, or this one): {message}"
        )
    } else {
        message
    }
}

/// The change-log key of `sequence`.
fn sequence_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// The sequence number a change-log key stands for.
fn sequence_of(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::Corrupt(format!(
                "change-log key {key:02x?} is not a sequence number"
            ))
        })
}

/// The sequence number of the last entry of the change log, or the
/// floor a replacement set when the log is empty (0 when neither).
fn recover_last_sequence(db: &DB) -> Result<u64> {
    let log = db
        .cf_handle(CHANGELOG_CF)
        .ok_or_else(|| StoreError::Engine(format!("column family `{CHANGELOG_CF}` is not open")))?;
    let mut iter = db.raw_iterator_cf(log);
    iter.seek_to_last();
    let last = match iter.key() {
        Some(key) => sequence_of(key)?,
        None => iter.status().map(|()| 0).map_err(engine_error)?,
    };
    let floor = floor_of(db.get(FLOOR_KEY).map_err(engine_error)?.as_deref())?;
    Ok(last.max(floor))
}

/// The floor stored under [`FLOOR_KEY`] (0 when none).
fn floor_of(value: Option<&[u8]>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                StoreError::Corrupt(format!("the sequence floor {bytes:02x?} is malformed"))
            }),
    }
}

/// A batch that deletes every key of every key space and of the change
/// log, and the sequence floor: one range deletion a family, up to just
/// past its last key.
fn clear_all(db: &DB) -> Result<WriteBatch> {
    let mut batch = WriteBatch::default();
    for name in Space::ALL
        .map(Space::name)
        .into_iter()
        .chain([CHANGELOG_CF])
    {
        let family = db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("column family `{name}` is not open")))?;
        let mut iter = db.raw_iterator_cf(family);
        iter.seek_to_last();
        if let Some(last) = iter.key() {
            let mut end = last.to_vec();
            end.push(0);
            batch.delete_range_cf(family, &b""[..], &end[..]);
        } else {
            iter.status().map_err(engine_error)?;
        }
    }
    batch.delete(FLOOR_KEY);
    Ok(batch)
}

impl Store for RocksStore {
    // Hot path: one lookup per resolution. The value is copied once, out of
    // the pinned block into the returned `Bytes`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        let family = self.family(space.name())?;
        let value = self
            .db
            .get_pinned_cf_opt(family, key, &self.point_read)
            .map_err(engine_error)?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    // Hot path for batches: RocksDB's batched multi-get, which reads the
    // keys' blocks together.
    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let family = self.family(space.name())?;
        self.db
            .batched_multi_get_cf_opt(family, keys.iter().copied(), false, &self.point_read)
            .into_iter()
            .map(|value| {
                value
                    .map(|v| v.map(|v| Bytes::copy_from_slice(&v)))
                    .map_err(engine_error)
            })
            .collect()
    }

    // A manual compaction of each lookup family over its whole key range:
    // RocksDB flushes the memtable first (always, for an unbounded range),
    // then merges every level into the last. Other compactions keep running
    // (not exclusive), so writes are not stalled. The C API reports no
    // error from it; a compaction that fails leaves the files as they were
    // (it never changes what is stored), so the worst case is no gain.
    fn compact(&self) -> Result<()> {
        let mut options = CompactOptions::default();
        options.set_exclusive_manual_compaction(false);
        // The last level too: the versions a delete or an overwrite left
        // there go (without it RocksDB keeps a last level it has nothing
        // to merge into).
        options.set_bottommost_level_compaction(BottommostLevelCompaction::ForceOptimized);
        for space in Space::ALL {
            let family = self.family(space.name())?;
            self.db
                .compact_range_cf_opt(family, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }

    // A RocksDB checkpoint, taken under the writer lock: no transaction
    // commits while it is made, so the sequence it returns is exactly the
    // last change in it. Reads go on; writes wait for the checkpoint
    // (a memtable flush and hard links: moments, not a copy of the data).
    fn checkpoint(&self, dir: &Path) -> Result<u64> {
        if dir.exists() {
            return Err(StoreError::Engine(format!(
                "cannot write a checkpoint to {}: it exists already",
                dir.display()
            )));
        }
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sequence = self.last_sequence();
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| {
                StoreError::Engine(format!(
                    "cannot write a checkpoint to {}: {}",
                    dir.display(),
                    e.into_string()
                ))
            })?;
        Ok(sequence)
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let family = self.family(space.name())?;
        let iter = self.db.raw_iterator_cf_opt(family, listing(prefix));
        page(iter, prefix, after, limit)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        let snapshot = self.db.snapshot();
        // The change log is written in the same batch as the changes, so
        // its last entry in the snapshot is the snapshot's sequence.
        let log = self.family(CHANGELOG_CF)?;
        let mut iter = snapshot.raw_iterator_cf(log);
        iter.seek_to_last();
        let sequence = match iter.key() {
            Some(key) => sequence_of(key)?,
            None => {
                iter.status().map_err(engine_error)?;
                floor_of(snapshot.get(FLOOR_KEY).map_err(engine_error)?.as_deref())?
            }
        };
        drop(iter);
        Ok(Box::new(RocksSnapshot {
            store: self,
            snapshot,
            sequence,
        }))
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        // A poisoned lock only means a transaction panicked; it wrote
        // nothing (writes happen in `commit`), so the store is intact.
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.last_sequence();
        Ok(Box::new(RocksTxn {
            store: self,
            _guard: guard,
            staged: Staged::new(base),
        }))
    }

    fn last_sequence(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    // Under the writer lock throughout: one batch empties the store and
    // marks it as being replaced (so that an open after a crash empties
    // it again), the entries follow in batches, and the last batch sets
    // the floor and removes the mark.
    fn replace(&self) -> Result<Box<dyn Replace + '_>> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = clear_all(&self.db)?;
        batch.put(REPLACING_KEY, b"");
        self.db
            .write_opt(batch, &self.write)
            .map_err(engine_error)?;
        self.last.store(0, Ordering::Release);
        Ok(Box::new(RocksReplace {
            store: self,
            _guard: guard,
            batch: WriteBatch::default(),
            finished: false,
        }))
    }

    fn engine_stats(&self) -> idnode_store::EngineStats {
        let mut stats = idnode_store::EngineStats::default();
        let property = |family: &ColumnFamily, name: &str| {
            self.db
                .property_int_value_cf(family, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        for name in Space::ALL
            .map(Space::name)
            .into_iter()
            .chain([CHANGELOG_CF])
        {
            let Ok(family) = self.family(name) else {
                continue;
            };
            stats.file_bytes += property(family, "rocksdb.total-sst-files-size");
            stats.memory_table_bytes += property(family, "rocksdb.cur-size-all-mem-tables");
            stats.level0_files += property(family, "rocksdb.num-files-at-level0");
            stats.pending_compaction_bytes +=
                property(family, "rocksdb.estimate-pending-compaction-bytes");
            if name == Space::Records.name() {
                stats.estimated_records = property(family, "rocksdb.estimate-num-keys");
            }
        }
        stats
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let log = self.family(CHANGELOG_CF)?;
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(sequence_key(first).to_vec());
        options.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(log, options);
        iter.seek(sequence_key(first));
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((key, value)) = iter.item() else {
                break;
            };
            out.push(decode_change(sequence_of(key)?, value)?);
            iter.next();
        }
        iter.status().map_err(engine_error)?;
        Ok(out)
    }

    // One range tombstone over the trimmed entries, a flush of every
    // family (so that the WAL files and memtables holding the old versions
    // go too), then a compaction of the trimmed range that rewrites the
    // last level, so no file keeps them. The key spaces' files drop the
    // values no key holds any more by their periodic compaction
    // (`tuning`), or at once with `compact`.
    fn trim_changes(&self, upto: u64) -> Result<u64> {
        let upto = upto.min(self.last_sequence().saturating_sub(1));
        let first = self.first_sequence()?;
        if first == 0 || upto < first {
            return Ok(0);
        }
        let log = self.family(CHANGELOG_CF)?;
        let end = sequence_key(upto + 1);
        self.db
            .delete_range_cf_opt(log, sequence_key(0), end, &self.write)
            .map_err(engine_error)?;
        for name in Space::ALL.iter().map(|s| s.name()).chain([CHANGELOG_CF]) {
            self.db.flush_cf(self.family(name)?).map_err(engine_error)?;
        }
        let mut options = CompactOptions::default();
        options.set_exclusive_manual_compaction(false);
        options.set_bottommost_level_compaction(BottommostLevelCompaction::ForceOptimized);
        self.db
            .compact_range_cf_opt(log, Some(sequence_key(0)), Some(end), &options);
        Ok(upto + 1 - first)
    }
}

/// Read options of a listing of the keys that start with `prefix`.
fn listing(prefix: &[u8]) -> ReadOptions {
    let mut options = ReadOptions::default();
    // Bounds make the iterator stop at the end of the prefix by itself;
    // total order keeps it correct whatever prefix settings a family has.
    options.set_iterate_range(PrefixRange(prefix));
    options.set_total_order_seek(true);
    // A listing must not evict the lookups' hot blocks.
    options.fill_cache(false);
    options
}

/// Up to `limit` entries from `iter` (made with [`listing`] of `prefix`),
/// after `after`.
fn page(
    mut iter: DBRawIteratorWithThreadMode<'_, DB>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Bytes)>> {
    match after {
        Some(after) if after > prefix => iter.seek(after),
        _ => iter.seek(prefix),
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let Some((key, value)) = iter.item() else {
            break;
        };
        if !key.starts_with(prefix) {
            break;
        }
        if Some(key) != after {
            out.push((key.to_vec(), Bytes::copy_from_slice(value)));
        }
        iter.next();
    }
    iter.status().map_err(engine_error)?;
    Ok(out)
}

/// A RocksDB snapshot; released when dropped.
struct RocksSnapshot<'a> {
    store: &'a RocksStore,
    snapshot: SnapshotWithThreadMode<'a, DB>,
    sequence: u64,
}

impl Snapshot for RocksSnapshot<'_> {
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let family = self.store.family(space.name())?;
        let iter = self.snapshot.raw_iterator_cf_opt(family, listing(prefix));
        page(iter, prefix, after, limit)
    }
}

/// The open write transaction; holds the writer lock until dropped.
struct RocksTxn<'a> {
    store: &'a RocksStore,
    _guard: MutexGuard<'a, ()>,
    staged: Staged,
}

impl WriteTxn for RocksTxn<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        match self.staged.lookup(space, key) {
            Some(value) => Ok(value),
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
        let store = self.store;
        let last = self.staged.last();
        if self.staged.changes.is_empty() {
            return Ok(last);
        }
        let log = store.family(CHANGELOG_CF)?;
        // Sized up front: each change is written twice (its space and the
        // change log), and a batch that grows copies itself as it goes.
        let bytes: usize = self
            .staged
            .changes
            .iter()
            .map(|c| 2 * (c.key.len() + c.value.as_ref().map_or(0, |v| v.len())) + 64)
            .sum();
        let mut batch = WriteBatch::with_capacity_bytes(bytes);
        for change in &self.staged.changes {
            let family = store.family(change.space.name())?;
            match &change.value {
                Some(value) => batch.put_cf(family, &change.key, value),
                None => batch.delete_cf(family, &change.key),
            }
            batch.put_cf(log, sequence_key(change.sequence), encode_change(change));
        }
        // One atomic batch: the changes and their change-log entries land
        // together or not at all. On error nothing is acknowledged and the
        // sequence stays where it was.
        store
            .db
            .write_opt(batch, &store.write)
            .map_err(engine_error)?;
        // Still under the writer lock (`self` is dropped on return), so the
        // next transaction starts from this sequence.
        store.last.store(last, Ordering::Release);
        Ok(last)
    }
}

/// A replacement in progress; holds the writer lock until dropped.
struct RocksReplace<'a> {
    store: &'a RocksStore,
    _guard: MutexGuard<'a, ()>,
    batch: WriteBatch,
    finished: bool,
}

impl RocksReplace<'_> {
    /// Writes the pending batch (not synced: the last batch's sync
    /// covers every earlier write of the WAL).
    fn write_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.store.db.write(batch).map_err(engine_error)
    }
}

impl Replace for RocksReplace<'_> {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<()> {
        let family = self.store.family(space.name())?;
        self.batch.put_cf(family, key, &value);
        if self.batch.size_in_bytes() >= REPLACE_BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, sequence: u64) -> Result<()> {
        self.batch.put(FLOOR_KEY, sequence.to_be_bytes());
        self.batch.delete(REPLACING_KEY);
        let batch = std::mem::take(&mut self.batch);
        self.store
            .db
            .write_opt(batch, &self.store.write)
            .map_err(engine_error)?;
        self.store.last.store(sequence, Ordering::Release);
        self.finished = true;
        Ok(())
    }
}

impl Drop for RocksReplace<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Given up: empty again. Should that fail, the mark stays and the
        // next open empties the store.
        let cleared = clear_all(&self.store.db).and_then(|mut batch| {
            batch.delete(REPLACING_KEY);
            self.store.db.write(batch).map_err(engine_error)
        });
        if let Err(e) = cleared {
            tracing::error!(error = %e, "cannot empty the store after a replacement was given up");
        }
        self.store.last.store(0, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn sequence_keys_sort_in_sequence_order() {
        let keys: Vec<[u8; 8]> = [1u64, 255, 256, 1 << 40, u64::MAX]
            .into_iter()
            .map(sequence_key)
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for key in keys {
            assert_eq!(sequence_key(sequence_of(&key).unwrap()), key);
        }
    }

    #[test]
    fn a_full_disk_is_told_apart_from_other_io_errors() {
        assert!(is_no_space(
            "IO error: No space left on device: While appending to file: \
             /d/db/000004.log: No space left on device"
        ));
        assert!(is_no_space("IO error: Space limit reached"));
        assert!(!is_no_space(
            "IO error: While open a file for appending: /d/db/x: Permission denied"
        ));
    }

    #[test]
    fn a_malformed_sequence_key_is_corrupt() {
        assert!(matches!(sequence_of(b"abc"), Err(StoreError::Corrupt(_))));
        assert!(matches!(sequence_of(&[0; 9]), Err(StoreError::Corrupt(_))));
    }
}
