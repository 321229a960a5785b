//! The RocksDB engine against the conformance suite, plus what only a disk
//! engine has: durability across reopen, the directory lock, corrupt data.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use bytes::Bytes;
use idnode_store::{Change, Result, Snapshot, Space, Store, StoreError, WriteTxn, conformance};
use idnode_store_rocksdb::{CHANGELOG_CF, RocksOptions, RocksStore};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// A store in a temporary directory that lives as long as the store.
struct TempStore {
    // Field order matters: the store closes before its directory goes.
    store: RocksStore,
    _dir: TempDir,
}

impl TempStore {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let store = RocksStore::open(dir.path(), &small()).unwrap();
        Self { store, _dir: dir }
    }
}

impl Store for TempStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        self.store.get(space, key)
    }
    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.store.multi_get(space, keys)
    }
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>> {
        self.store.scan(space, prefix, after, limit)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        self.store.snapshot()
    }
    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        self.store.begin()
    }
    fn last_sequence(&self) -> u64 {
        self.store.last_sequence()
    }
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.store.changes_since(after, limit)
    }
    fn trim_changes(&self, upto: u64) -> Result<u64> {
        self.store.trim_changes(upto)
    }
    fn replace(&self) -> Result<Box<dyn idnode_store::Replace + '_>> {
        self.store.replace()
    }
}

/// Test options: a small cache, and syncing as in production.
fn small() -> RocksOptions {
    RocksOptions {
        block_cache_bytes: 8 << 20,
        ..RocksOptions::default()
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn conforms() {
    conformance::run_all(&|| Box::new(TempStore::new()));
}

#[test]
fn default_options() {
    let options = RocksOptions::default();
    assert_eq!(options.block_cache_bytes, 256 << 20);
    assert!(options.sync);
}

#[test]
fn a_loaded_copy_keeps_its_sequence_across_reopen_and_an_interrupted_load_is_emptied() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), &small());
    {
        let store = RocksStore::open(dir.path(), &small()).unwrap();
        let mut replace = store.replace().unwrap();
        replace.put(Space::Records, b"88.2/X", b("x")).unwrap();
        replace.finish(1000).unwrap();
    }
    {
        let store = RocksStore::open(dir.path(), &small()).unwrap();
        assert_eq!(store.last_sequence(), 1000);
        assert_eq!(store.snapshot().unwrap().sequence(), 1000);
        assert_eq!(store.get(Space::Records, b"88.1/B").unwrap(), None);
        assert_eq!(store.get(Space::Records, b"88.2/X").unwrap(), Some(b("x")));
        let mut txn = store.begin().unwrap();
        assert_eq!(txn.put(Space::Records, b"88.2/Y", b("y")), 1001);
        txn.commit().unwrap();
        // A load that never finishes (the process dies in it).
        let mut replace = store.replace().unwrap();
        replace.put(Space::Records, b"88.3/Z", b("z")).unwrap();
        std::mem::forget(replace);
    }
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    assert_eq!(store.last_sequence(), 0);
    for space in Space::ALL {
        assert_eq!(store.scan(space, b"", None, 10).unwrap(), Vec::new());
    }
    assert_eq!(store.changes_since(0, 10).unwrap(), Vec::new());
}

/// Writes three changes in two transactions to a store at `path`.
fn write_some(path: &Path, options: &RocksOptions) {
    let store = RocksStore::open(path, options).unwrap();
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88.1/A", b("alpha"));
    txn.put(Space::Prefixes, b"88.1", b("home"));
    assert_eq!(txn.commit().unwrap(), 2);
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Records, b"88.1/A");
    txn.put(Space::Records, b"88.1/B", b("beta"));
    assert_eq!(txn.commit().unwrap(), 4);
}

fn check_some(store: &RocksStore) {
    assert_eq!(store.last_sequence(), 4);
    assert_eq!(store.get(Space::Records, b"88.1/A").unwrap(), None);
    assert_eq!(
        store.get(Space::Records, b"88.1/B").unwrap(),
        Some(b("beta"))
    );
    assert_eq!(
        store.get(Space::Prefixes, b"88.1").unwrap(),
        Some(b("home"))
    );
    let changes = store.changes_since(0, 100).unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.sequence).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(changes[1].space, Space::Prefixes);
    assert_eq!(changes[2].value, None);
    assert_eq!(changes[3].value, Some(b("beta")));
}

#[test]
fn compaction_merges_the_records_into_one_sorted_run_and_keeps_the_latest_of_each() {
    let dir = TempDir::new().unwrap();
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    // Three flushed generations (three level-0 files: below RocksDB's
    // trigger of four, so no compaction of its own merges them), each
    // rewriting part of the previous one, then a fourth left in the
    // memtable with a delete.
    for round in 0..3u32 {
        let mut txn = store.begin().unwrap();
        for n in (round * 100)..(round * 100 + 200) {
            txn.put(
                Space::Records,
                format!("88.1/K{n:04}").as_bytes(),
                b(&format!("v{round}")),
            );
        }
        txn.commit().unwrap();
        store.flush().unwrap();
    }
    assert_eq!(store.sorted_runs(Space::Records).unwrap(), 3);
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88.1/K0000", b("last"));
    txn.delete(Space::Records, b"88.1/K0399");
    txn.commit().unwrap();
    let before = store.changes_since(0, 10_000).unwrap();

    store.compact().unwrap();

    assert_eq!(store.sorted_runs(Space::Records).unwrap(), 1);
    let expected = |n: u32| match n {
        0 => Some(b("last")),
        1..=99 => Some(b("v0")),
        100..=199 => Some(b("v1")),
        399 => None,
        _ => Some(b("v2")),
    };
    for n in 0..400 {
        let key = format!("88.1/K{n:04}");
        assert_eq!(
            store.get(Space::Records, key.as_bytes()).unwrap(),
            expected(n),
            "{key}"
        );
    }
    assert_eq!(
        store
            .scan(Space::Records, b"88.1/", None, 1000)
            .unwrap()
            .len(),
        399
    );
    assert_eq!(store.changes_since(0, 10_000).unwrap(), before);
}

#[test]
fn commits_survive_reopen() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), &small());
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    check_some(&store);
    // Sequence numbers continue where they stopped.
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.put(Space::Meta, b"seeded", b("yes")), 5);
    assert_eq!(txn.commit().unwrap(), 5);
    drop(store);
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    assert_eq!(store.last_sequence(), 5);
    assert_eq!(store.get(Space::Meta, b"seeded").unwrap(), Some(b("yes")));
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            return on_disk(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn trimmed_changes_and_replaced_values_leave_the_disk() {
    let dir = TempDir::new().unwrap();
    let options = RocksOptions {
        sync: true,
        ..small()
    };
    // An uncompressible secret: LZ4 would not hide it anyway, but random
    // bytes cannot be found by chance.
    let secret: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    {
        let store = RocksStore::open(dir.path(), &options).unwrap();
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, b"88/A", Bytes::from(secret.clone()));
        txn.commit().unwrap();
        store.compact().unwrap();
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, b"88/A", b("public now"));
        txn.put(Space::Records, b"88/B", b("another"));
        txn.commit().unwrap();
        store.compact().unwrap();
        // Replaced, but the change log still holds the old version.
        assert!(
            on_disk(dir.path(), &secret),
            "the test cannot see the secret at all"
        );
        assert_eq!(store.trim_changes(2).unwrap(), 2);
        store.compact().unwrap();
        assert!(
            !on_disk(dir.path(), &secret),
            "a replaced value stayed on disk"
        );
        assert_eq!(store.last_sequence(), 3);
        assert_eq!(store.first_sequence().unwrap(), 3);
    }
    // The sequence survives a reopen with one entry left.
    let store = RocksStore::open(dir.path(), &options).unwrap();
    assert_eq!(store.last_sequence(), 3);
    assert_eq!(
        store.get(Space::Records, b"88/A").unwrap(),
        Some(b("public now"))
    );
}

#[test]
fn unsynced_commits_survive_a_clean_close() {
    let dir = TempDir::new().unwrap();
    let options = RocksOptions {
        sync: false,
        ..small()
    };
    write_some(dir.path(), &options);
    check_some(&RocksStore::open(dir.path(), &options).unwrap());
}

#[test]
fn opening_creates_the_directory_and_reopens_empty() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested").join("data");
    drop(RocksStore::open(&path, &small()).unwrap());
    let store = RocksStore::open(&path, &small()).unwrap();
    assert_eq!(store.last_sequence(), 0);
    assert!(store.changes_since(0, 10).unwrap().is_empty());
    assert_eq!(store.path(), path);
}

#[test]
fn a_second_open_in_this_process_is_refused() {
    let dir = TempDir::new().unwrap();
    let _first = RocksStore::open(dir.path(), &small()).unwrap();
    let error = RocksStore::open(dir.path(), &small()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Open { .. }), "{message}");
    assert!(message.contains("in use"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

/// Environment variable naming the store directory of a helper test run in
/// a child process; the helpers do nothing without it (`--ignored` by hand).
const HELPER_DIR: &str = "IDNODE_TEST_STORE_DIR";

/// Runs the ignored test `name` of this binary in a child process, on the
/// store directory `dir`, with piped stdin and stdout.
fn spawn_helper(name: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER_DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Child process of `an_open_in_another_process_is_refused`: opens the
/// store, says READY, and holds it until stdin closes.
#[test]
#[ignore = "helper, run in a child process by another test"]
fn hold_store_helper() {
    let Some(path) = std::env::var_os(HELPER_DIR) else {
        return;
    };
    let _store = RocksStore::open(Path::new(&path), &small()).unwrap();
    println!("READY");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn an_open_in_another_process_is_refused() {
    let dir = TempDir::new().unwrap();
    let mut child = spawn_helper("hold_store_helper", dir.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|line| line.unwrap().contains("READY")),
        "the helper did not open the store"
    );
    let error = RocksStore::open(dir.path(), &small()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Open { .. }), "{message}");
    assert!(message.contains("in use"), "{message}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // Once the other process is gone, the store opens.
    RocksStore::open(dir.path(), &small()).unwrap();
}

/// Child process of `a_killed_writer_loses_no_acknowledged_commit`: commits
/// one record per transaction forever, printing `ACK <sequence>` after each
/// commit returns.
#[test]
#[ignore = "helper, run in a child process by another test"]
fn write_until_killed_helper() {
    let Some(path) = std::env::var_os(HELPER_DIR) else {
        return;
    };
    let store = RocksStore::open(Path::new(&path), &small()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 1u64.. {
        let mut txn = store.begin().unwrap();
        let key = format!("88.1/{i:08}");
        txn.put(
            Space::Records,
            key.as_bytes(),
            Bytes::copy_from_slice(&i.to_be_bytes()),
        );
        let sequence = txn.commit().unwrap();
        writeln!(out, "ACK {sequence}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_commit() {
    let dir = TempDir::new().unwrap();
    let mut child = spawn_helper("write_until_killed_helper", dir.path());
    // Keep reading end open until the kill, so the helper never sees a
    // closed pipe and exits on its own.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = 0;
    for line in lines.by_ref() {
        if let Some(sequence) = line.unwrap().strip_prefix("ACK ") {
            acknowledged = sequence.parse().unwrap();
            if acknowledged >= 300 {
                break;
            }
        }
    }
    assert!(acknowledged >= 300, "the helper stopped at {acknowledged}");
    child.kill().unwrap(); // SIGKILL: no destructor, no clean close
    child.wait().unwrap();
    drop(lines);

    let store = RocksStore::open(dir.path(), &small()).unwrap();
    let last = store.last_sequence();
    assert!(
        last >= acknowledged,
        "acknowledged {acknowledged}, recovered {last}"
    );
    for i in 1..=last {
        let key = format!("88.1/{i:08}");
        let value = store.get(Space::Records, key.as_bytes()).unwrap();
        assert_eq!(value.as_deref(), Some(&i.to_be_bytes()[..]), "{key}");
    }
    let changes = store.changes_since(0, usize::MAX).unwrap();
    let sequences: Vec<u64> = changes.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, (1..=last).collect::<Vec<_>>());
}

#[test]
fn a_path_that_is_a_file_is_an_open_error() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let error = RocksStore::open(&file, &small()).unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error}");
}

/// Writes `key` = `value` into the change log behind the store's back.
fn tamper_with_changelog(path: &Path, key: &[u8], value: &[u8]) {
    let options = rocksdb::Options::default();
    let families = ["records", "prefixes", "meta", CHANGELOG_CF];
    let db = rocksdb::DB::open_cf(&options, path, families).unwrap();
    let log = db.cf_handle(CHANGELOG_CF).unwrap();
    db.put_cf(log, key, value).unwrap();
}

#[test]
fn a_garbage_changelog_entry_is_corrupt() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), &small());
    tamper_with_changelog(dir.path(), &3u64.to_be_bytes(), b"\x09garbage");
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    assert_eq!(store.last_sequence(), 4);
    let error = store.changes_since(0, 100).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    // Entries before the bad one still read.
    assert_eq!(store.changes_since(0, 2).unwrap().len(), 2);
    assert_eq!(store.changes_since(3, 10).unwrap().len(), 1);
}

#[test]
fn a_garbage_changelog_key_is_corrupt_at_open() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), &small());
    tamper_with_changelog(dir.path(), b"zzz", b"");
    let error = RocksStore::open(dir.path(), &small()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
}

#[test]
fn column_families_of_a_newer_version_do_not_stop_the_open() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), &small());
    {
        let mut options = rocksdb::Options::default();
        options.create_missing_column_families(true);
        let families = ["records", "prefixes", "meta", CHANGELOG_CF, "templates"];
        rocksdb::DB::open_cf(&options, dir.path(), families).unwrap();
    }
    check_some(&RocksStore::open(dir.path(), &small()).unwrap());
}

#[test]
fn lookups_and_scans_read_flushed_tables() {
    // Enough data to leave the memtable (the default is 64 MiB; a reopen
    // does not flush, so write big values and many keys), then reopen so
    // reads go through table files, bloom filters and the block cache.
    let dir = TempDir::new().unwrap();
    {
        let store = RocksStore::open(dir.path(), &small()).unwrap();
        let value = Bytes::from(vec![b'v'; 64 << 10]);
        for batch in 0..20 {
            let mut txn = store.begin().unwrap();
            for i in 0..60 {
                let key = format!("88.{batch}/{i:04}");
                txn.put(Space::Records, key.as_bytes(), value.clone());
            }
            txn.commit().unwrap();
        }
    }
    let store = RocksStore::open(dir.path(), &small()).unwrap();
    assert_eq!(store.last_sequence(), 1200);
    assert_eq!(
        store
            .get(Space::Records, b"88.7/0042")
            .unwrap()
            .unwrap()
            .len(),
        64 << 10
    );
    assert_eq!(store.get(Space::Records, b"88.7/9999").unwrap(), None);
    let got = store
        .multi_get(
            Space::Records,
            &[b"88.19/0059".as_slice(), b"nope", b"88.0/0000"],
        )
        .unwrap();
    assert!(got[0].is_some() && got[1].is_none() && got[2].is_some());
    let page = store
        .scan(Space::Records, b"88.1/", Some(b"88.1/0057"), 10)
        .unwrap();
    let keys: Vec<&[u8]> = page.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [b"88.1/0058".as_slice(), b"88.1/0059"]);
    assert_eq!(store.changes_since(1190, 100).unwrap().len(), 10);
}

/// Every entry of every key space and the change log, through the store.
fn everything(store: &dyn Store) -> Vec<(Space, Vec<u8>, Bytes)> {
    let mut out = Vec::new();
    for space in Space::ALL {
        for (key, value) in store.scan(space, b"", None, usize::MAX).unwrap() {
            out.push((space, key, value));
        }
    }
    out
}

#[test]
fn a_checkpoint_taken_under_writes_opens_with_the_same_records_and_sequence() {
    let dir = TempDir::new().unwrap();
    let store = std::sync::Arc::new(RocksStore::open(&dir.path().join("db"), &small()).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 200 {
                let mut txn = store.begin().unwrap();
                txn.put(Space::Records, format!("88.1/{n}").as_bytes(), b("v"));
                txn.put(Space::Meta, b"counter", b(&n.to_string()));
                txn.commit().unwrap();
                n += 1;
            }
        })
    };
    // Let some writes land first.
    while store.last_sequence() < 100 {
        std::thread::yield_now();
    }
    let copy = dir.path().join("backup");
    let sequence = store.checkpoint(&copy).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(sequence >= 100, "{sequence}");
    assert!(store.last_sequence() > sequence);

    // A second checkpoint into the same directory is refused, not merged.
    assert!(matches!(
        store.checkpoint(&copy),
        Err(StoreError::Engine(m)) if m.contains("exists")
    ));

    let restored = RocksStore::open(&copy, &small()).unwrap();
    assert_eq!(restored.last_sequence(), sequence);
    // Its records are exactly the original's as of `sequence`: replay the
    // change log up to it into a fresh memory store and compare.
    let replayed = idnode_store::MemoryStore::new();
    let mut txn = replayed.begin().unwrap();
    for change in store.changes_since(0, sequence as usize).unwrap() {
        match change.value {
            Some(v) => txn.put(change.space, &change.key, v),
            None => txn.delete(change.space, &change.key),
        };
    }
    txn.commit().unwrap();
    assert_eq!(everything(&restored), everything(&replayed));
    assert_eq!(
        restored.changes_since(0, usize::MAX).unwrap(),
        store.changes_since(0, sequence as usize).unwrap()
    );
    // And it takes writes of its own from there.
    let mut txn = restored.begin().unwrap();
    txn.put(Space::Records, b"88.1/after", b("x"));
    assert_eq!(txn.commit().unwrap(), sequence + 1);
}

#[test]
fn the_memory_engine_has_no_checkpoints() {
    let dir = TempDir::new().unwrap();
    let error = idnode_store::MemoryStore::new()
        .checkpoint(&dir.path().join("backup"))
        .unwrap_err();
    assert!(error.to_string().contains("not supported"), "{error}");
}

/// The SST files in `dir`.
fn ssts(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    found.sort();
    found
}

/// A store whose records `88.1/OLD-*` are in one set of SST files and
/// `88.1/NEW-*` in newer ones: the newer files of the records family.
fn two_flushes(dir: &Path) -> Vec<std::path::PathBuf> {
    let store = RocksStore::open(dir, &small()).unwrap();
    let write = |name: &str| {
        let mut txn = store.begin().unwrap();
        for n in 0..200 {
            let key = format!("88.1/{name}-{n}");
            txn.put(Space::Records, key.as_bytes(), b(&key.repeat(4)));
        }
        txn.commit().unwrap();
        store.flush().unwrap();
    };
    write("OLD");
    let before = ssts(dir);
    write("NEW");
    ssts(dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        // The records family's file has a bloom filter, the change log's not.
        .filter(|p| {
            let raw = std::fs::read(p).unwrap();
            raw.windows(26).any(|w| w == b"rocksdb.BuiltinBloomFilter")
        })
        .collect()
}

#[test]
fn a_damaged_sst_stops_the_open_naming_it_and_repair_keeps_the_rest() {
    let dir = TempDir::new().unwrap();
    let newer = two_flushes(dir.path());
    assert_eq!(newer.len(), 1, "{newer:?}");
    let damaged = &newer[0];
    let mut raw = std::fs::read(damaged).unwrap();
    for byte in &mut raw[40..72] {
        *byte ^= 0x5a;
    }
    std::fs::write(damaged, raw).unwrap();

    match RocksStore::open(dir.path(), &small()) {
        Err(StoreError::Corrupt(message)) => {
            let name = damaged.file_name().unwrap().to_string_lossy();
            assert!(message.contains(&*name), "{message}");
        }
        other => panic!("opened a damaged store: {other:?}"),
    }

    let repaired = RocksStore::repair(dir.path(), &small()).unwrap();
    assert_eq!(repaired.set_aside.len(), 1, "{repaired:?}");
    assert_eq!(
        repaired.set_aside[0].file_name(),
        damaged.file_name(),
        "{repaired:?}"
    );
    assert!(repaired.set_aside[0].starts_with(dir.path().join("lost")));
    assert!(
        repaired.entries.contains(&(Space::Records, 200)),
        "{repaired:?}"
    );
    // Both transactions' change-log entries were in intact files.
    assert_eq!(repaired.last_sequence, 400);

    let store = RocksStore::open(dir.path(), &small()).unwrap();
    for n in 0..200 {
        let key = format!("88.1/OLD-{n}");
        assert_eq!(
            store.get(Space::Records, key.as_bytes()).unwrap(),
            Some(b(&key.repeat(4)))
        );
        let key = format!("88.1/NEW-{n}");
        assert_eq!(store.get(Space::Records, key.as_bytes()).unwrap(), None);
    }
    assert_eq!(store.last_sequence(), 400);
}

#[test]
fn a_missing_sst_stops_the_open_naming_it() {
    let dir = TempDir::new().unwrap();
    let newer = two_flushes(dir.path());
    std::fs::remove_file(&newer[0]).unwrap();
    match RocksStore::open(dir.path(), &small()) {
        Err(StoreError::Corrupt(message)) => {
            let name = newer[0].file_name().unwrap().to_string_lossy();
            assert!(message.contains(&*name), "{message}");
        }
        other => panic!("opened a store with a file missing: {other:?}"),
    }
    let repaired = RocksStore::repair(dir.path(), &small()).unwrap();
    assert!(
        repaired.entries.contains(&(Space::Records, 200)),
        "{repaired:?}"
    );
}
