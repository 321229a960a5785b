//! The conformance suite: one set of checks that every engine must pass.
//!
//! Engines call [`run_all`] from their tests with a factory that makes a
//! fresh, empty store. Each check panics with a message on failure.

// This is test code compiled into the library so that engine crates can
// run it: a failed `unwrap` is a failed check.
#![allow(clippy::unwrap_used)]

use crate::{Change, Space, Store};
use bytes::Bytes;

/// Makes a fresh, empty store.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// Runs every check against fresh stores from `factory`.
pub fn run_all(factory: Factory<'_>) {
    get_put_delete(&*factory());
    spaces_are_separate(&*factory());
    transaction_sees_own_writes_and_drop_discards(&*factory());
    change_log_records_every_write(&*factory());
    scan_pages_in_key_order(&*factory());
    multi_get_matches_get(&*factory());
    binary_keys_and_empty_and_large_values(&*factory());
    scan_edges(&*factory());
    change_log_edges(&*factory());
    trimming_the_change_log(&*factory());
    transaction_reads_committed_state(&*factory());
    transactions_are_serialized(&*factory());
    snapshot_is_one_consistent_view(&*factory());
    snapshot_pages_while_writes_go_on(&*factory());
    replicated_changes_keep_sequence_and_origin(&*factory(), &*factory());
    replace_loads_a_copy_at_its_sequence(&*factory());
    replace_given_up_leaves_an_empty_store(&*factory());
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn get_put_delete(store: &dyn Store) {
    assert_eq!(store.get(Space::Records, b"88/A").unwrap(), None);
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/A", b("one"));
    assert_eq!(txn.commit().unwrap(), 1);
    assert_eq!(store.get(Space::Records, b"88/A").unwrap(), Some(b("one")));
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/A", b("two"));
    txn.commit().unwrap();
    assert_eq!(store.get(Space::Records, b"88/A").unwrap(), Some(b("two")));
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Records, b"88/A");
    assert_eq!(txn.commit().unwrap(), 3);
    assert_eq!(store.get(Space::Records, b"88/A").unwrap(), None);
}

pub fn spaces_are_separate(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"k", b("record"));
    txn.put(Space::Prefixes, b"k", b("prefix"));
    txn.commit().unwrap();
    assert_eq!(store.get(Space::Records, b"k").unwrap(), Some(b("record")));
    assert_eq!(store.get(Space::Prefixes, b"k").unwrap(), Some(b("prefix")));
    assert_eq!(store.get(Space::Meta, b"k").unwrap(), None);
}

pub fn transaction_sees_own_writes_and_drop_discards(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"x", b("1"));
    assert_eq!(txn.get(Space::Records, b"x").unwrap(), Some(b("1")));
    txn.delete(Space::Records, b"x");
    assert_eq!(txn.get(Space::Records, b"x").unwrap(), None);
    txn.put(Space::Records, b"y", b("2"));
    drop(txn);
    assert_eq!(store.get(Space::Records, b"y").unwrap(), None);
    assert_eq!(store.last_sequence(), 0);
    // An empty commit changes nothing and reports the current sequence.
    assert_eq!(store.begin().unwrap().commit().unwrap(), 0);
}

pub fn change_log_records_every_write(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.put(Space::Records, b"a", b("1")), 1);
    assert_eq!(txn.put(Space::Prefixes, b"p", b("2")), 2);
    txn.commit().unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.delete(Space::Records, b"a"), 3);
    txn.commit().unwrap();
    assert_eq!(store.last_sequence(), 3);
    let all = store.changes_since(0, 100).unwrap();
    let seqs: Vec<u64> = all.iter().map(|c| c.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(all[0].key, b"a");
    assert_eq!(all[0].value, Some(b("1")));
    assert_eq!(all[1].space, Space::Prefixes);
    assert_eq!(all[2].value, None);
    let tail = store.changes_since(1, 1).unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].sequence, 2);
    assert!(store.changes_since(3, 10).unwrap().is_empty());
    assert!(all.iter().all(|c| c.origin.is_none()));

    // The origin of a transaction goes with each of its changes.
    let mut txn = store.begin().unwrap();
    txn.set_origin(b("token:abc grpc 127.0.0.1"));
    txn.put(Space::Records, b"b", b("2"));
    txn.delete(Space::Records, b"b");
    txn.commit().unwrap();
    let log = store.changes_since(3, 10).unwrap();
    assert_eq!(log.len(), 2);
    for c in &log {
        assert_eq!(c.origin, Some(b("token:abc grpc 127.0.0.1")));
    }
    assert_eq!(
        (log[0].value.clone(), log[1].value.clone()),
        (Some(b("2")), None)
    );
}

pub fn scan_pages_in_key_order(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    for k in ["88.1/C", "88.1/A", "88.10/X", "88.1/B", "88.2/A"] {
        txn.put(Space::Records, k.as_bytes(), b(k));
    }
    txn.commit().unwrap();
    let keys = |v: Vec<(Vec<u8>, Bytes)>| -> Vec<String> {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    };
    let first = store.scan(Space::Records, b"88.1/", None, 2).unwrap();
    assert_eq!(keys(first), ["88.1/A", "88.1/B"]);
    let next = store
        .scan(Space::Records, b"88.1/", Some(b"88.1/B"), 2)
        .unwrap();
    assert_eq!(keys(next), ["88.1/C"]);
    assert!(
        store
            .scan(Space::Records, b"88.1/", Some(b"88.1/C"), 2)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(Space::Prefixes, b"88", None, 10)
            .unwrap()
            .is_empty()
    );
}

pub fn multi_get_matches_get(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"a", b("1"));
    txn.put(Space::Records, b"c", b("3"));
    txn.commit().unwrap();
    let got = store
        .multi_get(Space::Records, &[b"a", b"b", b"c"])
        .unwrap();
    assert_eq!(got, vec![Some(b("1")), None, Some(b("3"))]);
}

pub fn binary_keys_and_empty_and_large_values(store: &dyn Store) {
    let large = Bytes::from(vec![0xa5; 256 << 10]);
    let keys: [&[u8]; 4] = [b"\x00", b"\x00\x00", b"\xff\xff", b"a\x00b"];
    let mut txn = store.begin().unwrap();
    for (i, k) in keys.iter().enumerate() {
        txn.put(Space::Records, k, Bytes::from(vec![i as u8]));
    }
    txn.put(Space::Records, b"empty", Bytes::new());
    txn.put(Space::Records, b"large", large.clone());
    txn.commit().unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            store.get(Space::Records, k).unwrap(),
            Some(Bytes::from(vec![i as u8])),
            "key {k:?}"
        );
    }
    // An empty value is a value, not an absence, in the store and the log.
    assert_eq!(
        store.get(Space::Records, b"empty").unwrap(),
        Some(Bytes::new())
    );
    assert_eq!(
        store.get(Space::Records, b"large").unwrap(),
        Some(large.clone())
    );
    let log = store.changes_since(4, 10).unwrap();
    assert_eq!(log[0].value, Some(Bytes::new()));
    assert_eq!(log[1].value, Some(large));
}

pub fn scan_edges(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    for k in [&b"\xff"[..], b"\xff\xff", b"\xff\xff\x01", b"a", b"b"] {
        txn.put(Space::Records, k, Bytes::copy_from_slice(k));
    }
    txn.put(Space::Meta, b"m", b("other space"));
    txn.commit().unwrap();
    let keys =
        |v: Vec<(Vec<u8>, Bytes)>| -> Vec<Vec<u8>> { v.into_iter().map(|(k, _)| k).collect() };
    // A prefix of 0xff bytes has no upper bound key.
    assert_eq!(
        keys(store.scan(Space::Records, b"\xff\xff", None, 10).unwrap()),
        [b"\xff\xff".to_vec(), b"\xff\xff\x01".to_vec()]
    );
    // The empty prefix lists the whole space, and only that space.
    assert_eq!(
        keys(store.scan(Space::Records, b"", None, 10).unwrap()),
        [&b"a"[..], b"b", b"\xff", b"\xff\xff", b"\xff\xff\x01"].map(<[u8]>::to_vec)
    );
    assert_eq!(
        keys(store.scan(Space::Records, b"", Some(b"a"), 2).unwrap()),
        [b"b".to_vec(), b"\xff".to_vec()]
    );
    // Paging resumes after a key that is not (or no longer) stored.
    assert_eq!(
        keys(store.scan(Space::Records, b"", Some(b"aa"), 1).unwrap()),
        [b"b".to_vec()]
    );
    assert!(store.scan(Space::Records, b"", None, 0).unwrap().is_empty());
    // A key equal to the prefix is listed.
    assert_eq!(
        keys(store.scan(Space::Records, b"a", None, 10).unwrap()),
        [b"a".to_vec()]
    );
}

pub fn change_log_edges(store: &dyn Store) {
    assert!(store.changes_since(0, 10).unwrap().is_empty());
    // A dropped transaction uses up no sequence numbers.
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"dropped", b("x"));
    drop(txn);
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.put(Space::Records, b"k", b("1")), 1);
    assert_eq!(txn.put(Space::Records, b"k", b("2")), 2);
    assert_eq!(txn.get(Space::Records, b"k").unwrap(), Some(b("2")));
    assert_eq!(txn.commit().unwrap(), 2);
    // The last staged write of a key wins; both stay in the log.
    assert_eq!(store.get(Space::Records, b"k").unwrap(), Some(b("2")));
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 2);
    assert!(store.changes_since(0, 0).unwrap().is_empty());
    assert!(store.changes_since(u64::MAX, 10).unwrap().is_empty());
    assert!(store.changes_since(u64::MAX - 1, 10).unwrap().is_empty());
    // Deleting a key that was never stored is still a logged change.
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Prefixes, b"never");
    assert_eq!(txn.commit().unwrap(), 3);
    assert_eq!(store.changes_since(2, 10).unwrap()[0].value, None);
    assert_eq!(
        store.multi_get(Space::Records, &[]).unwrap(),
        Vec::<Option<Bytes>>::new()
    );
    assert_eq!(
        store.multi_get(Space::Records, &[b"k", b"k"]).unwrap(),
        vec![Some(b("2")), Some(b("2"))]
    );
}

/// Trimming removes the oldest entries, never the newest, and leaves the
/// data and the sequence alone.
pub fn trimming_the_change_log(store: &dyn Store) {
    assert_eq!(store.first_sequence().unwrap(), 0);
    assert_eq!(store.trim_changes(10).unwrap(), 0);
    for i in 0..10u8 {
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, &[b'k', i % 3], Bytes::from(vec![i; 3]));
        txn.commit().unwrap();
    }
    assert_eq!(store.first_sequence().unwrap(), 1);
    assert_eq!(store.trim_changes(4).unwrap(), 4);
    assert_eq!(store.first_sequence().unwrap(), 5);
    let left = store.changes_since(0, 100).unwrap();
    assert_eq!(left.first().map(|c| c.sequence), Some(5));
    assert_eq!(left.len(), 6);
    assert_eq!(store.changes_since(6, 1).unwrap()[0].sequence, 7);
    // Again below what is left: nothing.
    assert_eq!(store.trim_changes(3).unwrap(), 0);
    // Past the end: the newest stays, and with it the sequence.
    assert_eq!(store.trim_changes(u64::MAX).unwrap(), 5);
    assert_eq!(store.last_sequence(), 10);
    assert_eq!(store.first_sequence().unwrap(), 10);
    assert_eq!(
        store.get(Space::Records, b"k\x00").unwrap(),
        Some(Bytes::from(vec![9; 3]))
    );
    // Writes go on from the sequence.
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Records, b"k\x00");
    assert_eq!(txn.commit().unwrap(), 11);
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 2);
}

pub fn transaction_reads_committed_state(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"a", b("1"));
    txn.commit().unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.get(Space::Records, b"a").unwrap(), Some(b("1")));
    assert_eq!(txn.get(Space::Prefixes, b"a").unwrap(), None);
    txn.delete(Space::Records, b"a");
    assert_eq!(txn.get(Space::Records, b"a").unwrap(), None);
    // Not visible outside before commit.
    assert_eq!(store.get(Space::Records, b"a").unwrap(), Some(b("1")));
    txn.put(Space::Records, b"a", b("again"));
    txn.commit().unwrap();
    assert_eq!(store.get(Space::Records, b"a").unwrap(), Some(b("again")));
}

/// Two threads increment one counter by read-modify-write transactions; as
/// transactions are serialized, no increment is lost.
pub fn transactions_are_serialized(store: &dyn Store) {
    const PER_THREAD: u64 = 25;
    let increment = || {
        for _ in 0..PER_THREAD {
            let mut txn = store.begin().unwrap();
            let n = txn
                .get(Space::Meta, b"counter")
                .unwrap()
                .map_or(0, |v| u64::from_be_bytes(v[..].try_into().unwrap()));
            std::thread::yield_now();
            txn.put(
                Space::Meta,
                b"counter",
                Bytes::copy_from_slice(&(n + 1).to_be_bytes()),
            );
            txn.commit().unwrap();
        }
    };
    std::thread::scope(|s| {
        s.spawn(increment);
        s.spawn(increment);
    });
    let counter = store.get(Space::Meta, b"counter").unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(counter[..].try_into().unwrap()),
        2 * PER_THREAD
    );
    assert_eq!(store.last_sequence(), 2 * PER_THREAD);
    let seqs: Vec<u64> = store
        .changes_since(0, 1000)
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(seqs, (1..=2 * PER_THREAD).collect::<Vec<_>>());
}

/// A snapshot sees the store as it was when taken, with that sequence,
/// whatever is written afterwards; a new one sees the new state.
pub fn snapshot_is_one_consistent_view(store: &dyn Store) {
    let empty = store.snapshot().unwrap();
    assert_eq!(empty.sequence(), 0);
    assert!(
        empty
            .scan(Space::Records, b"", None, 10)
            .unwrap()
            .is_empty()
    );
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/A", b("a1"));
    txn.put(Space::Records, b"88/B", b("b1"));
    txn.put(Space::Prefixes, b"88", b("p1"));
    txn.commit().unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.sequence(), 3);
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Records, b"88/A");
    txn.put(Space::Records, b"88/B", b("b2"));
    txn.put(Space::Records, b"88/C", b("c2"));
    txn.delete(Space::Prefixes, b"88");
    txn.commit().unwrap();
    assert!(
        empty
            .scan(Space::Records, b"", None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(snapshot.sequence(), 3);
    assert_eq!(
        snapshot.scan(Space::Records, b"88/", None, 10).unwrap(),
        vec![(b"88/A".to_vec(), b("a1")), (b"88/B".to_vec(), b("b1"))]
    );
    assert_eq!(
        snapshot
            .scan(Space::Records, b"88/", Some(b"88/A"), 10)
            .unwrap(),
        vec![(b"88/B".to_vec(), b("b1"))]
    );
    assert_eq!(
        snapshot.scan(Space::Prefixes, b"", None, 10).unwrap(),
        vec![(b"88".to_vec(), b("p1"))]
    );
    assert!(
        snapshot
            .scan(Space::Records, b"88/", None, 0)
            .unwrap()
            .is_empty()
    );
    let now = store.snapshot().unwrap();
    assert_eq!(now.sequence(), 7);
    assert_eq!(
        now.scan(Space::Records, b"", None, 10).unwrap(),
        vec![(b"88/B".to_vec(), b("b2")), (b"88/C".to_vec(), b("c2"))]
    );
    assert!(now.scan(Space::Prefixes, b"", None, 10).unwrap().is_empty());
}

/// Paging through a snapshot while another thread rewrites every key
/// yields exactly the keys and values of one moment.
pub fn snapshot_pages_while_writes_go_on(store: &dyn Store) {
    const KEYS: usize = 200;
    let key = |i: usize| format!("88/{i:04}");
    let write = |round: usize| {
        let mut txn = store.begin().unwrap();
        for i in 0..KEYS {
            txn.put(Space::Records, key(i).as_bytes(), b(&round.to_string()));
        }
        txn.commit().unwrap();
    };
    write(0);
    let snapshot = store.snapshot().unwrap();
    let mut seen = Vec::new();
    std::thread::scope(|s| {
        let writer = s.spawn(|| (1..=5).for_each(write));
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snapshot
                .scan(Space::Records, b"88/", after.as_deref(), 7)
                .unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page);
            std::thread::yield_now();
        }
        writer.join().unwrap();
    });
    assert_eq!(snapshot.sequence(), KEYS as u64);
    assert_eq!(seen.len(), KEYS);
    for (i, (k, v)) in seen.iter().enumerate() {
        assert_eq!(k, key(i).as_bytes());
        assert_eq!(v, &b("0"));
    }
    assert_eq!(store.last_sequence(), 6 * KEYS as u64);
}

/// Everything of every key space, in order.
fn contents(store: &dyn Store) -> Vec<(Space, Vec<u8>, Bytes)> {
    let mut out = Vec::new();
    for space in Space::ALL {
        for (k, v) in store.scan(space, b"", None, usize::MAX).unwrap() {
            out.push((space, k, v));
        }
    }
    out
}

pub fn replicated_changes_keep_sequence_and_origin(primary: &dyn Store, mirror: &dyn Store) {
    let mut txn = primary.begin().unwrap();
    txn.put(Space::Records, b"88/A", b("one"));
    txn.put(Space::Prefixes, b"88", b("p"));
    txn.commit().unwrap();
    let mut txn = primary.begin().unwrap();
    txn.set_origin(b("alice"));
    txn.put(Space::Records, b"88/B", b("two"));
    txn.delete(Space::Records, b"88/A");
    txn.put(Space::Meta, b"m", b(""));
    txn.commit().unwrap();
    let mut txn = primary.begin().unwrap();
    txn.put(Space::Records, b"88/C", b("three"));
    txn.commit().unwrap();
    let log = primary.changes_since(0, 100).unwrap();
    assert_eq!(log.len(), 6);
    // Applied in two transactions, split inside the primary's second one.
    for part in [&log[..3], &log[3..]] {
        let mut txn = mirror.begin().unwrap();
        for change in part {
            txn.apply(change.clone()).unwrap();
        }
        assert_eq!(txn.commit().unwrap(), part.last().unwrap().sequence);
    }
    assert_eq!(mirror.changes_since(0, 100).unwrap(), log);
    assert_eq!(mirror.last_sequence(), primary.last_sequence());
    assert_eq!(contents(mirror), contents(primary));
    // Out of order: refused, nothing staged.
    let mut txn = mirror.begin().unwrap();
    let mut skipped: Change = log[0].clone();
    skipped.sequence = 8;
    assert!(txn.apply(skipped).is_err());
    let mut again = log[5].clone();
    assert!(txn.apply(again.clone()).is_err());
    again.sequence = 7;
    txn.apply(again).unwrap();
    // A local write after a replicated one takes the next number.
    assert_eq!(txn.put(Space::Records, b"88/D", b("four")), 8);
    assert_eq!(txn.commit().unwrap(), 8);
    assert_eq!(mirror.changes_since(6, 10).unwrap().len(), 2);
}

pub fn replace_loads_a_copy_at_its_sequence(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/OLD", b("old"));
    txn.put(Space::Meta, b"old", b("old"));
    txn.commit().unwrap();
    let mut replace = store.replace().unwrap();
    replace.put(Space::Records, b"88/A", b("a")).unwrap();
    replace.put(Space::Prefixes, b"88", b("p")).unwrap();
    replace.put(Space::Meta, b"m", b("")).unwrap();
    replace.finish(42).unwrap();
    assert_eq!(store.last_sequence(), 42);
    assert_eq!(store.changes_since(0, 10).unwrap(), Vec::new());
    assert_eq!(store.snapshot().unwrap().sequence(), 42);
    assert_eq!(
        contents(store),
        vec![
            (Space::Records, b"88/A".to_vec(), b("a")),
            (Space::Prefixes, b"88".to_vec(), b("p")),
            (Space::Meta, b"m".to_vec(), b("")),
        ]
    );
    // The log goes on from the copy's sequence, by commit or by apply.
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.put(Space::Records, b"88/B", b("b")), 43);
    txn.commit().unwrap();
    let mut txn = store.begin().unwrap();
    txn.apply(Change {
        sequence: 44,
        space: Space::Records,
        key: b"88/A".to_vec(),
        value: None,
        origin: Some(b("who")),
    })
    .unwrap();
    txn.commit().unwrap();
    let log = store.changes_since(0, 10).unwrap();
    assert_eq!(log.iter().map(|c| c.sequence).collect::<Vec<_>>(), [43, 44]);
    assert_eq!(log[1].origin, Some(b("who")));
    assert_eq!(store.get(Space::Records, b"88/A").unwrap(), None);
}

pub fn replace_given_up_leaves_an_empty_store(store: &dyn Store) {
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/OLD", b("old"));
    txn.commit().unwrap();
    let mut replace = store.replace().unwrap();
    replace.put(Space::Records, b"88/A", b("a")).unwrap();
    drop(replace);
    assert_eq!(store.last_sequence(), 0);
    assert_eq!(contents(store), Vec::new());
    assert_eq!(store.changes_since(0, 10).unwrap(), Vec::new());
    // And it takes writes again.
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88/B", b("b"));
    assert_eq!(txn.commit().unwrap(), 1);
}
