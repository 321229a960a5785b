use crate::support::{Fixture, T0, url};
use idnode_registry::{BatchItem, RegistryError};

fn item(id: &str, data: &str, overwrite: bool) -> BatchItem {
    BatchItem {
        identifier: id.into(),
        values: vec![url(1, data)],
        overwrite,
    }
}

#[test]
fn one_commit_and_bad_items_fail_alone() {
    let f = Fixture::with_prefix();
    let commits = f.commits();
    let mut items: Vec<BatchItem> = (0..1000)
        .map(|i| item(&format!("88.100.1/{i}"), "x", false))
        .collect();
    items[500].values[0].kind.clear();
    items[600].identifier = "99.9/not-homed".into();
    items[700].identifier = "bad".into();
    items[800].identifier = "88.100.1/8\u{2066}00".into();
    let results = f.registry.batch_create(items.clone());
    assert_eq!(f.commits(), commits + 1, "one commit for the whole batch");
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (500, Err(RegistryError::InvalidArgument { field, .. })) => {
                assert_eq!(field, "values[0].type")
            }
            (600, Err(RegistryError::FailedPrecondition(m))) => assert!(m.contains("99.9"), "{m}"),
            (700, Err(RegistryError::InvalidArgument { field, .. })) => {
                assert_eq!(field, "identifier")
            }
            (800, Err(RegistryError::InvalidArgument { field, message })) => {
                assert_eq!(field, "identifier");
                assert!(
                    message.contains("U+2066 LEFT-TO-RIGHT ISOLATE"),
                    "{message}"
                );
            }
            (_, Ok(rec)) => assert_eq!(rec.values[0].timestamp, T0),
            (i, other) => panic!("item {i}: {other:?}"),
        }
    }
    let versions: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.version)
        .collect();
    assert_eq!(versions.len(), 996);
    assert!(versions.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(*versions.last().unwrap(), f.sequence());

    // The same batch again: every good item succeeds, nothing is written.
    f.set_time(T0 + 100);
    let sequence = f.sequence();
    let again = f.registry.batch_create(items);
    assert_eq!(f.sequence(), sequence);
    assert_eq!(f.commits(), commits + 1);
    for (first, second) in results.iter().zip(&again) {
        match (first, second) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn existing_records_and_overwrite() {
    let f = Fixture::with_prefix();
    f.registry
        .create_identifier("88.100.1/a", vec![url(1, "old")], false)
        .unwrap();
    let results = f.registry.batch_create(vec![
        item("88.100.1/A", "new", false),
        item("88.100.1/b", "new", false),
    ]);
    let e = results[0].as_ref().unwrap_err();
    assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
    assert!(e.to_string().contains("88.100.1/A"), "{e}");
    assert!(results[1].is_ok());
    let results = f
        .registry
        .batch_create(vec![item("88.100.1/A", "new", true)]);
    assert_eq!(results[0].as_ref().unwrap().values[0].data, "new");
    assert_eq!(
        f.registry.get_identifier("88.100.1/a").unwrap().values[0].data,
        "new"
    );
}

#[test]
fn duplicates_within_a_batch_act_in_order() {
    let f = Fixture::with_prefix();
    let before = f.sequence();
    let results = f.registry.batch_create(vec![
        item("88.100.1/d", "1", false),
        item("88.100.1/D", "1", false),
        item("88.100.1/d", "2", false),
        item("88.100.1/d", "3", true),
    ]);
    let v0 = results[0].as_ref().unwrap().version;
    assert_eq!(
        results[1].as_ref().unwrap().version,
        v0,
        "identical: no second write"
    );
    assert!(matches!(results[2], Err(RegistryError::AlreadyExists(_))));
    let last = results[3].as_ref().unwrap();
    assert_eq!(last.values[0].data, "3");
    assert_eq!(f.sequence(), before + 2);
    assert_eq!(f.registry.get_identifier("88.100.1/d").unwrap(), *last);
}

#[test]
fn empty_and_all_bad_batches_do_not_commit() {
    let f = Fixture::with_prefix();
    let commits = f.commits();
    assert!(f.registry.batch_create(vec![]).is_empty());
    let results = f.registry.batch_create(vec![item("x", "1", false)]);
    assert!(results[0].is_err());
    assert_eq!(f.commits(), commits);
}

/// Registrations are counted where they are written: the identifiers a
/// create or a batch wrote, one timed call each; refused items, a batch
/// that writes nothing new and other writes are not registrations.
#[test]
fn registrations_are_counted_with_their_calls() {
    use std::sync::atomic::Ordering::Relaxed;
    let f = Fixture::with_prefix();
    let counted = |f: &Fixture| {
        let r = f.registry.registrations();
        let mut latency = idnode_core::latency::LatencyTotals::default();
        r.latency.add_to(&mut latency);
        (r.registered.load(Relaxed), latency.count())
    };
    let before = counted(&f);
    f.registry
        .create_identifier("88.100.1/one", vec![url(1, "x")], false)
        .unwrap();
    assert!(
        f.registry
            .create_identifier("88.100.1/one", vec![url(1, "x")], false)
            .is_err()
    );
    let items = vec![
        item("88.100.1/two", "x", false),
        item("88.100.1/three", "x", false),
        item("bad", "x", false),
    ];
    f.registry.batch_create(items.clone());
    // The same again: nothing written, nothing counted.
    f.registry.batch_create(items);
    f.registry
        .add_values("88.100.1/one", vec![url(2, "y")])
        .unwrap();
    let (registered, calls) = counted(&f);
    assert_eq!((registered - before.0, calls - before.1), (3, 2));
    let seen = f.registry.registrations().latency.take_extremes();
    assert!(seen.any() && seen.min_ns <= seen.max_ns);
}
