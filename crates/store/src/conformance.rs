//! The conformance suite: one set of checks that every engine must pass.
//!
//! Engines call [`run_all`] from their tests with a factory that makes a
//! fresh, empty store. Each check panics with a message on failure.

use crate::{Space, Store};
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
    assert!(store.scan(Space::Prefixes, b"88", None, 10).unwrap().is_empty());
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
