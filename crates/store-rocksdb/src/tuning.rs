//! Engine settings and the RocksDB options built from them.
//!
//! The hot path is the point lookup of a record by its normalized
//! identifier, and many lookups miss (unknown identifiers, referrals), so
//! the lookup column families get whole-key bloom filters that are always
//! in memory, and data blocks with a hash index. This is what RocksDB's
//! `OptimizeForPointLookup` does, done by hand because that call would give
//! each column family its own block cache instead of the shared one.

use rocksdb::{
    BlockBasedOptions, BlockBasedTablePinningTier, Cache, DBCompressionType, DataBlockIndexType,
    Options,
};

/// Settings of the RocksDB engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksOptions {
    /// Size in bytes of the block cache that every column family shares
    /// (data, index and filter blocks): a HyperClockCache, whose lookups
    /// take no lock. Default: 256 MiB.
    pub block_cache_bytes: usize,
    /// Whether every commit syncs the WAL to disk before returning.
    /// Default: true. When false, a commit survives a crash of the process
    /// (it is in the OS page cache) but not a crash of the machine.
    pub sync: bool,
    /// Size in bytes of each column family's memtable (RocksDB's
    /// `write_buffer_size`): the writes gathered in memory before they are
    /// flushed to an SST file. Default: 64 MiB. It is also the free space
    /// RocksDB waits for before it takes writes again after the disk
    /// filled up (its file manager checks every 5 s, then flushes the
    /// memtables and resumes), so a small disk wants a small one.
    pub write_buffer_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 256 << 20,
            sync: true,
            write_buffer_bytes: 64 << 20,
        }
    }
}

/// Bits per key of the bloom filters: about 1% false positives.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Options of the database as a whole (and of the unused `default` column
/// family: its memtable counts too, in the free space RocksDB waits for
/// after a full disk, so it gets the same size as the others).
pub(crate) fn db_options(options: &RocksOptions) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(options.write_buffer_bytes);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    opts.increase_parallelism(i32::try_from(threads).unwrap_or(i32::MAX));
    // Spread SST writes out instead of one large fsync at the end of a file.
    opts.set_bytes_per_sync(1 << 20);
    // RocksDB's own info log lives in the data directory; keep it bounded.
    opts.set_max_log_file_size(16 << 20);
    opts.set_keep_log_file_num(5);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

/// Options of a column family read by point lookups: records, prefixes,
/// meta.
pub(crate) fn lookup_cf_options(cache: &Cache, options: &RocksOptions) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    // A full (not block-based) filter on the whole key: there is no prefix
    // extractor, identifiers have no fixed-length prefix worth filtering on.
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    table.set_whole_key_filtering(true);
    // Index and filter blocks are charged to the shared cache (so its size
    // bounds memory) and pinned there for every level: a lookup then reads
    // them without a cache lookup of its own.
    table.set_cache_index_and_filter_blocks(true);
    table.set_unpartitioned_pinning_tier(BlockBasedTablePinningTier::All);
    // A hash index inside each data block: a lookup finds its key without a
    // binary search of the block. It points at a restart point, so with a
    // restart at every key (no key delta encoding; LZ4 still compresses the
    // repeated prefixes) it points at the key itself instead of at the
    // start of up to 16 entries to decode and compare.
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    table.set_block_restart_interval(1);
    // 8 KiB data blocks (about 28 records each) halve the index of 4 KiB
    // ones, so its binary search has a step (a cache miss) less and the
    // pinned index takes less memory; the hash index makes the larger block
    // no slower to search. 16 KiB blocks were a few percent faster again on
    // block-cache hits, but a miss then reads and decompresses twice as
    // much (cold reads 23 % slower); 8 KiB ones cost a miss no more than
    // 4 KiB ones did.
    table.set_block_size(8 << 10);

    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_write_buffer_size(options.write_buffer_bytes);
    // A whole-key bloom filter on the memtable too, so a miss does not
    // search the skip list.
    opts.set_memtable_prefix_bloom_ratio(0.02);
    opts.set_memtable_whole_key_filtering(true);
    // Files older than a day are compacted again even when nothing else
    // would pick them: the versions a delete or an overwrite left in them
    // (a private value replaced, a record removed) leave the disk within a
    // day.
    opts.set_periodic_compaction_seconds(PERIODIC_COMPACTION_SECS);
    opts
}

/// See [`lookup_cf_options`].
const PERIODIC_COMPACTION_SECS: u64 = 24 * 3600;

/// Options of the change log: appended in key order and read by ranges, so
/// it needs no filter; it shares the block cache.
pub(crate) fn changelog_cf_options(cache: &Cache, options: &RocksOptions) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);

    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_write_buffer_size(options.write_buffer_bytes);
    opts
}
