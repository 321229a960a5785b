use crate::support::{Fixture, T0, url};
use idnode_core::{Permissions, Value};
use idnode_registry::{RegistryError, public_view};

fn field_of(e: RegistryError) -> (String, String) {
    match e {
        RegistryError::InvalidArgument { field, message } => (field, message),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn create_get_and_case_insensitivity() {
    let f = Fixture::with_prefix();
    f.set_time(T0 + 5);
    let mut v = url(2, "https://b");
    v.timestamp = 42; // ignored: the node sets timestamps
    let rec = f
        .registry
        .create_identifier("88.100.1/Abc", vec![v, url(1, "https://a")], false)
        .unwrap();
    assert_eq!(rec.identifier, "88.100.1/Abc");
    assert_eq!(rec.version, f.sequence());
    assert_eq!(
        rec.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(rec.values.iter().all(|v| v.timestamp == T0 + 5));
    assert_eq!(f.registry.get_identifier("88.100.1/ABC").unwrap(), rec);

    let e = f
        .registry
        .create_identifier("88.100.1/aBC", vec![url(1, "z")], false)
        .unwrap_err();
    assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
    assert_eq!(e.to_string(), "identifier 88.100.1/aBC already exists");

    let replaced = f
        .registry
        .create_identifier("88.100.1/aBC", vec![url(1, "z")], true)
        .unwrap();
    assert!(replaced.version > rec.version);
    assert_eq!(f.registry.get_identifier("88.100.1/abc").unwrap(), replaced);
    assert_eq!(replaced.identifier, "88.100.1/aBC");
}

#[test]
fn create_refusals_name_the_problem() {
    let f = Fixture::with_prefix();
    let before = f.sequence();
    let e = f
        .registry
        .create_identifier("99.1/x", vec![], false)
        .unwrap_err();
    assert!(matches!(e, RegistryError::FailedPrecondition(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "prefix 99.1 is not homed on this node; create it first"
    );

    let (field, _) = field_of(
        f.registry
            .create_identifier("no-slash", vec![], false)
            .unwrap_err(),
    );
    assert_eq!(field, "identifier");

    let values = vec![
        url(1, "a"),
        url(2, "b"),
        url(3, "c"),
        Value::new(4, "DATA", vec![0u8; 64 * 1024 + 1]),
    ];
    let (field, message) = field_of(
        f.registry
            .create_identifier("88.100.1/x", values, false)
            .unwrap_err(),
    );
    assert_eq!(field, "values[3].data");
    assert!(message.contains("65537"), "{message}");

    let (field, _) = field_of(
        f.registry
            .create_identifier("88.100.1/x", vec![Value::new(1, "", "")], false)
            .unwrap_err(),
    );
    assert_eq!(field, "values[0].type");

    let (field, message) = field_of(
        f.registry
            .create_identifier("88.100.1/x", vec![url(7, "a"), url(7, "b")], false)
            .unwrap_err(),
    );
    assert_eq!(field, "values[1].index");
    assert!(message.contains("values[0]"), "{message}");

    let big: Vec<Value> = (1..=5)
        .map(|i| Value::new(i, "DATA", vec![b'x'; 64 * 1024]))
        .collect();
    let (field, message) = field_of(
        f.registry
            .create_identifier("88.100.1/x", big, false)
            .unwrap_err(),
    );
    assert_eq!(field, "values");
    assert!(message.contains("record is"), "{message}");

    assert_eq!(f.sequence(), before, "refused creates write nothing");
}

#[test]
fn creates_refuse_look_alike_identifiers_and_write_nothing() {
    let f = Fixture::with_prefix();
    let before = f.sequence();
    for (id, starts) in [
        (
            "88.100.1/ABC\u{200b}-1",
            "identifier contains U+200B ZERO WIDTH SPACE at byte 12",
        ),
        (
            "88.100.1/ABC\u{202e}1-",
            "identifier contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 12",
        ),
        (
            "88.100.1/A\u{85}B",
            "identifier contains U+0085 NEXT LINE at byte 10",
        ),
        (
            "88.１００.1/A",
            "prefix `88.１００.1` contains U+FF11 FULLWIDTH DIGIT ONE at byte 3",
        ),
    ] {
        let (field, message) = field_of(
            f.registry
                .create_identifier(id, vec![url(1, "a")], false)
                .unwrap_err(),
        );
        assert_eq!(field, "identifier");
        assert!(message.starts_with(starts), "{id:?}: {message}");
    }
    let (field, message) = field_of(
        f.registry
            .create_identifier(
                "88.100.1/x",
                vec![url(1, "a"), Value::new(2, "\u{1b}[31mURL", "b")],
                false,
            )
            .unwrap_err(),
    );
    assert_eq!(field, "values[1].type");
    assert!(message.contains("U+001B ESCAPE at byte 0"), "{message}");
    assert_eq!(f.sequence(), before, "refused creates write nothing");

    // Written decomposed, the text is kept in NFC: one identifier, found
    // however it is spelled, and a second create in the other spelling
    // finds it there.
    let made = f
        .registry
        .create_identifier("88.100.1/Ba\u{308}r", vec![url(1, "a")], false)
        .unwrap();
    assert_eq!(made.identifier, "88.100.1/B\u{e4}r");
    assert!(f.registry.get_identifier("88.100.1/B\u{e4}R").is_ok());
    assert!(f.registry.get_identifier("88.100.1/Ba\u{308}r").is_ok());
    assert!(
        f.registry
            .create_identifier("88.100.1/B\u{e4}r", vec![url(1, "a")], false)
            .is_err()
    );
}

#[test]
fn get_and_delete() {
    let f = Fixture::with_prefix();
    let e = f.registry.get_identifier("88.100.1/none").unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)));
    assert_eq!(e.to_string(), "identifier 88.100.1/none not found");
    assert!(matches!(
        f.registry.delete_identifier("88.100.1/none"),
        Err(RegistryError::NotFound(_))
    ));
    f.registry
        .create_identifier("88.100.1/a", vec![url(1, "x")], false)
        .unwrap();
    f.registry.delete_identifier("88.100.1/A").unwrap();
    assert!(matches!(
        f.registry.get_identifier("88.100.1/a"),
        Err(RegistryError::NotFound(_))
    ));
}

#[test]
fn add_modify_remove_values() {
    let f = Fixture::with_prefix();
    f.registry
        .create_identifier("88.100.1/a", vec![url(1, "x"), url(2, "y")], false)
        .unwrap();
    f.set_time(T0 + 10);

    let rec = f
        .registry
        .add_values("88.100.1/a", vec![url(3, "z")])
        .unwrap();
    assert_eq!(rec.values.len(), 3);
    assert_eq!(rec.value(3).unwrap().timestamp, T0 + 10);
    assert_eq!(rec.value(1).unwrap().timestamp, T0);
    assert_eq!(rec.version, f.sequence());
    let e = f
        .registry
        .add_values("88.100.1/a", vec![url(4, "w"), url(2, "again")])
        .unwrap_err();
    assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
    assert!(e.to_string().contains("index 2 (values[1])"), "{e}");
    assert_eq!(
        f.registry.get_identifier("88.100.1/a").unwrap(),
        rec,
        "unchanged"
    );
    let (field, _) = field_of(f.registry.add_values("88.100.1/a", vec![]).unwrap_err());
    assert_eq!(field, "values");

    f.set_time(T0 + 20);
    let rec = f
        .registry
        .modify_values("88.100.1/a", vec![url(2, "Y")])
        .unwrap();
    assert_eq!(rec.value(2).unwrap().data, "Y");
    assert_eq!(rec.value(2).unwrap().timestamp, T0 + 20);
    assert_eq!(rec.value(3).unwrap().timestamp, T0 + 10);
    let e = f
        .registry
        .modify_values("88.100.1/a", vec![url(9, "n")])
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "identifier 88.100.1/a has no value at index 9 (values[0])"
    );

    let before = f.sequence();
    let e = f.registry.remove_values("88.100.1/a", &[1, 8]).unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e:?}");
    assert!(e.to_string().contains("index 8 (indexes[1])"), "{e}");
    assert_eq!(f.sequence(), before);
    let rec = f.registry.remove_values("88.100.1/a", &[1, 3, 1]).unwrap();
    assert_eq!(rec.values.iter().map(|v| v.index).collect::<Vec<_>>(), [2]);
    let (field, _) = field_of(f.registry.remove_values("88.100.1/a", &[]).unwrap_err());
    assert_eq!(field, "indexes");

    for e in [
        f.registry
            .add_values("88.100.1/b", vec![url(1, "x")])
            .unwrap_err(),
        f.registry
            .modify_values("88.100.1/b", vec![url(1, "x")])
            .unwrap_err(),
        f.registry.remove_values("88.100.1/b", &[1]).unwrap_err(),
    ] {
        assert!(matches!(e, RegistryError::NotFound(_)), "{e:?}");
    }
}

#[test]
fn public_view_hides_private_values() {
    let f = Fixture::with_prefix();
    let mut secret = Value::new(2, "SECRET", "s");
    secret.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    let rec = f
        .registry
        .create_identifier("88.100.1/a", vec![url(1, "x"), secret], false)
        .unwrap();
    let public = public_view(rec);
    assert_eq!(
        public.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1]
    );
}

#[test]
fn list_identifiers_pages_through_one_prefix() {
    let f = Fixture::with_prefix();
    f.registry.create_prefix("88.100.10").unwrap();
    f.registry
        .create_identifier("88.100.10/other", vec![], false)
        .unwrap();
    for i in 0..250 {
        let id = format!("88.100.1/item-{i:03}");
        f.registry
            .create_identifier(&id, vec![url(1, "x")], false)
            .unwrap();
    }
    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = f
            .registry
            .list_identifiers("88.100.1", 100, &token)
            .unwrap();
        pages += 1;
        all.extend(page.identifiers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 250);
    assert_eq!(all[0], "88.100.1/item-000");
    assert_eq!(all[249], "88.100.1/item-249");

    // Exactly one full page: no empty page after it.
    let page = f.registry.list_identifiers("88.100.10", 1, "").unwrap();
    assert_eq!(page.identifiers, ["88.100.10/other"]);
    assert!(page.next_page_token.is_empty());

    assert_eq!(
        f.registry
            .list_identifiers("88.100.1", 0, "")
            .unwrap()
            .identifiers
            .len(),
        100
    );
    assert_eq!(
        f.registry
            .list_identifiers("88.100.1", 5000, "")
            .unwrap()
            .identifiers
            .len(),
        250
    );
    let prefixes = f.registry.list_identifiers("0.NA", 0, "").unwrap();
    assert_eq!(prefixes.identifiers, ["0.NA/88.100.1", "0.NA/88.100.10"]);

    let (field, _) = field_of(
        f.registry
            .list_identifiers("88.100.1", 10, "zz")
            .unwrap_err(),
    );
    assert_eq!(field, "page_token");
    let other = f
        .registry
        .list_identifiers("88.100.1", 1, "")
        .unwrap()
        .next_page_token;
    let (field, _) = field_of(
        f.registry
            .list_identifiers("88.100.10", 1, &other)
            .unwrap_err(),
    );
    assert_eq!(field, "page_token");
    let e = f.registry.list_identifiers("77", 10, "").unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e:?}");
}

#[test]
fn export_reads_a_prefix_and_those_below_it_from_one_snapshot() {
    let f = Fixture::with_prefix();
    for p in ["88.100.10", "88.100.1.7"] {
        f.registry.create_prefix(p).unwrap();
    }
    f.registry
        .create_identifier("88.100.10/other", vec![url(1, "x")], false)
        .unwrap();
    f.registry
        .create_identifier("88.100.1.7/below", vec![url(1, "x")], false)
        .unwrap();
    for i in 0..25 {
        f.registry
            .create_identifier(&format!("88.100.1/item-{i:02}"), vec![url(1, "x")], false)
            .unwrap();
    }
    let sequence = f.sequence();
    let mut seen = Vec::new();
    let mut pages = 0;
    let at = f
        .registry
        .export(Some("88.100.1"), 10, |s, records| {
            assert_eq!(s, sequence);
            pages += 1;
            seen.extend(records.into_iter().map(|r| r.identifier));
            true
        })
        .unwrap();
    assert_eq!(at, sequence);
    assert_eq!(seen.len(), 26, "{seen:?}");
    assert_eq!(seen[0], "88.100.1.7/below");
    assert!(!seen.iter().any(|i| i.starts_with("88.100.10/")));
    assert!(pages >= 3);

    // Every record, prefix records included; stopping early stops.
    let mut all = 0;
    f.registry
        .export(None, 1000, |_, records| {
            all += records.len();
            true
        })
        .unwrap();
    assert!(all > 27 && seen.len() < all, "{all}");
    let mut calls = 0;
    f.registry
        .export(None, 1, |_, _| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert!(
        f.registry
            .export(Some("not a prefix/"), 10, |_, _| true)
            .is_err()
    );
}
