use crate::support::{Fixture, T0, url};
use bytes::Bytes;
use idnode_core::Record;
use idnode_core::{Ttl, Value};
use idnode_registry::{
    OWN_SITE_INDEX, PrefixInfo, RegistryError, SITE_PREFIX_TYPE, SITE_TYPE, SiteSync, hs_admin_data,
};
use idnode_store::{Space, Store};

#[test]
fn create_prefix_homes_it_and_writes_its_record() {
    let f = Fixture::new();
    let info = f.registry.create_prefix("88.100.1").unwrap();
    assert_eq!(
        info,
        PrefixInfo {
            prefix: "88.100.1".into(),
            homed: true,
            created: T0,
            template: None,
        }
    );
    assert_eq!(f.commits(), 1);
    assert_eq!(f.registry.get_prefix("88.100.1").unwrap(), info);

    let record = f.registry.get_identifier("0.NA/88.100.1").unwrap();
    assert_eq!(record.identifier, "0.NA/88.100.1");
    assert_eq!(record.values.len(), 1);
    let admin = &record.values[0];
    assert_eq!((admin.index, admin.kind.as_str()), (100, "HS_ADMIN"));
    assert_eq!(admin.timestamp, T0);
    assert_eq!(admin.data, hs_admin_data(0x0fff, "0.NA/88.100.1", 200));
    // The version is the sequence number of the write that stored it.
    let stored = f
        .store
        .get(Space::Records, b"0.NA/88.100.1")
        .unwrap()
        .unwrap();
    assert_eq!(Record::decode(&stored).unwrap().version, f.sequence());
    assert_eq!(record.version, f.sequence());
}

#[test]
fn create_prefix_refusals() {
    let f = Fixture::with_prefix();
    let e = f.registry.create_prefix("88.100.1").unwrap_err();
    assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
    assert_eq!(e.to_string(), "prefix 88.100.1 already exists");
    // Comparison is case-insensitive.
    let f2 = Fixture::new();
    f2.registry.create_prefix("88.A").unwrap();
    assert!(matches!(
        f2.registry.create_prefix("88.a"),
        Err(RegistryError::AlreadyExists(_))
    ));

    let e = f.registry.create_prefix("88..1").unwrap_err();
    match e {
        RegistryError::InvalidArgument { field, message } => {
            assert_eq!(field, "prefix");
            assert!(message.contains("empty"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    for reserved in ["0.NA", "0.na.5"] {
        let e = f.registry.create_prefix(reserved).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }
    // Prefixes are ASCII: full-width digits are refused, with a hint.
    let e = f.registry.create_prefix("88.１００").unwrap_err();
    assert_eq!(
        e.to_string(),
        "prefix: prefix `88.１００` contains U+FF11 FULLWIDTH DIGIT ONE at byte 3; prefixes are \
         written in ASCII (did you mean `88.100`?)"
    );
    let e = f.registry.create_prefix("88.1\u{200b}").unwrap_err();
    assert!(
        e.to_string().contains("U+200B ZERO WIDTH SPACE at byte 4"),
        "{e}"
    );
    let e = f
        .registry
        .delegate_prefix("88.100.1.９", vec![Bytes::from_static(b"site")], 60)
        .unwrap_err();
    assert!(e.to_string().contains("did you mean `88.100.1.9`?"), "{e}");
    // A failed create writes nothing.
    assert_eq!(f.commits(), 1);
}

#[test]
fn list_and_delete_prefixes() {
    let f = Fixture::new();
    for p in ["88.100.2", "88.100.1", "86.5"] {
        f.registry.create_prefix(p).unwrap();
    }
    let listed: Vec<String> = f
        .registry
        .list_prefixes()
        .unwrap()
        .into_iter()
        .map(|p| p.prefix)
        .collect();
    assert_eq!(listed, ["86.5", "88.100.1", "88.100.2"]);

    f.registry
        .create_identifier("88.100.1/A", vec![url(1, "x")], false)
        .unwrap();
    let e = f.registry.delete_prefix("88.100.1").unwrap_err();
    assert!(matches!(e, RegistryError::FailedPrecondition(_)), "{e:?}");
    assert!(e.to_string().contains("88.100.1/A"), "{e}");

    f.registry.delete_identifier("88.100.1/A").unwrap();
    f.registry.delete_prefix("88.100.1").unwrap();
    assert!(matches!(
        f.registry.get_prefix("88.100.1"),
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        f.registry.get_identifier("0.NA/88.100.1"),
        Err(RegistryError::NotFound(_))
    ));
    let e = f.registry.delete_prefix("88.100.1").unwrap_err();
    assert_eq!(e.to_string(), "prefix 88.100.1 not found");
    assert_eq!(f.registry.list_prefixes().unwrap().len(), 2);
    // Identifiers of a longer sibling prefix do not block the deletion.
    f.registry.create_prefix("88.100").unwrap();
    f.registry
        .create_identifier("88.100.2/B", vec![url(1, "x")], false)
        .unwrap();
    f.registry.delete_prefix("88.100").unwrap();
}

#[test]
fn prefix_records_are_managed_through_prefixes() {
    let f = Fixture::with_prefix();
    // The record of a homed prefix takes values (delegation, sites)...
    let site = idnode_core::Value::new(1, "HS_SITE", vec![0u8; 4]);
    let rec = f.registry.add_values("0.NA/88.100.1", vec![site]).unwrap();
    assert_eq!(rec.values.len(), 2);
    // ...but is deleted with the prefix, not alone.
    let e = f.registry.delete_identifier("0.NA/88.100.1").unwrap_err();
    assert!(matches!(e, RegistryError::FailedPrecondition(_)), "{e:?}");
    // A derived prefix's record may be written by the node homing its parent.
    f.registry
        .create_identifier("0.NA/88.100.1.7", vec![url(1, "x")], false)
        .unwrap();
    f.registry.delete_identifier("0.NA/88.100.1.7").unwrap();
    // Not so for a prefix unrelated to this node.
    let e = f
        .registry
        .create_identifier("0.NA/99.1", vec![url(1, "x")], false)
        .unwrap_err();
    assert!(matches!(e, RegistryError::FailedPrecondition(_)), "{e:?}");
    assert!(e.to_string().contains("99.1"), "{e}");
    // A record already at 0.NA/P blocks creating prefix P.
    f.registry
        .create_identifier("0.NA/88.100.1.8", vec![url(1, "x")], false)
        .unwrap();
    let e = f.registry.create_prefix("88.100.1.8").unwrap_err();
    assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
}

#[test]
fn delegate_prefix_writes_site_values_under_a_homed_parent() {
    let f = Fixture::new();
    f.registry.create_prefix("88.100").unwrap();
    let sites = vec![Bytes::from_static(b"site-a"), Bytes::from_static(b"site-b")];
    let info = f
        .registry
        .delegate_prefix("88.100.1", sites.clone(), 3600)
        .unwrap();
    assert_eq!(
        info,
        PrefixInfo {
            prefix: "88.100.1".into(),
            homed: false,
            created: T0,
            template: None,
        }
    );
    let record = f.registry.get_identifier("0.na/88.100.1").unwrap();
    let got: Vec<_> = record
        .values
        .iter()
        .map(|v| (v.index, v.kind.as_str(), v.data.clone(), v.ttl))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, SITE_TYPE, sites[0].clone(), Ttl::Relative(3600)),
            (2, SITE_TYPE, sites[1].clone(), Ttl::Relative(3600)),
            (3, SITE_PREFIX_TYPE, sites[0].clone(), Ttl::Relative(3600)),
            (4, SITE_PREFIX_TYPE, sites[1].clone(), Ttl::Relative(3600)),
        ]
    );
    assert!(record.values.iter().all(|v| v.permissions.public_read()));

    // Identifiers under a delegated prefix are not written here.
    let refused = f
        .registry
        .create_identifier("88.100.1/X", vec![url(1, "https://x")], false)
        .unwrap_err();
    assert!(
        matches!(refused, RegistryError::FailedPrecondition(_)),
        "{refused}"
    );

    // Delegating again replaces the sites and keeps the creation time.
    f.set_time(T0 + 10);
    f.registry
        .delegate_prefix("88.100.1", vec![Bytes::from_static(b"site-c")], 60)
        .unwrap();
    let record = f.registry.get_identifier("0.NA/88.100.1").unwrap();
    assert_eq!(record.values.len(), 2);
    assert!(
        record
            .values
            .iter()
            .all(|v| v.data == Bytes::from_static(b"site-c"))
    );
    assert_eq!(f.registry.get_prefix("88.100.1").unwrap().created, T0);

    // Deleting the delegation removes the prefix and its record.
    f.registry.delete_prefix("88.100.1").unwrap();
    assert!(f.registry.get_identifier("0.NA/88.100.1").is_err());
}

#[test]
fn delegate_prefix_refusals() {
    let f = Fixture::new();
    f.registry.create_prefix("88.100").unwrap();
    let site = || vec![Bytes::from_static(b"site")];
    let before = f.sequence();
    let no_parent = f.registry.delegate_prefix("86.1", site(), 60).unwrap_err();
    assert!(
        no_parent.to_string().contains("no prefix above it"),
        "{no_parent}"
    );
    let homed = f
        .registry
        .delegate_prefix("88.100", site(), 60)
        .unwrap_err();
    assert!(homed.to_string().contains("homed on this node"), "{homed}");
    let empty = f
        .registry
        .delegate_prefix("88.100.1", vec![], 60)
        .unwrap_err();
    assert!(
        matches!(empty, RegistryError::InvalidArgument { .. }),
        "{empty}"
    );
    let reserved = f
        .registry
        .delegate_prefix("0.NA.1", site(), 60)
        .unwrap_err();
    assert!(reserved.to_string().contains("reserved"), "{reserved}");
    assert_eq!(f.sequence(), before, "a refused delegation writes nothing");
}

#[test]
fn publish_site_puts_the_node_site_on_homed_prefixes_and_migrates_delegations() {
    let f = Fixture::new();
    f.registry.create_prefix("88").unwrap();
    f.registry
        .delegate_prefix("88.100", vec![Bytes::from_static(b"child")], 60)
        .unwrap();
    // A delegation written the old way: HS_SITE.PREFIX only.
    let old = idnode_core::Record {
        identifier: "0.NA/88.100".into(),
        values: vec![Value::new(
            1,
            SITE_PREFIX_TYPE,
            Bytes::from_static(b"child"),
        )],
        version: 0,
    };
    let mut txn = f.store.begin().unwrap();
    txn.put(
        idnode_store::Space::Records,
        b"0.NA/88.100",
        Bytes::from(old.encode()),
    );
    txn.commit().unwrap();

    let done = f.registry.publish_site(b"own-site").unwrap();
    assert_eq!(
        done,
        SiteSync {
            homed: 1,
            delegations: 1
        }
    );
    let homed = f.registry.get_identifier("0.NA/88").unwrap();
    let own = homed.value(OWN_SITE_INDEX).unwrap();
    assert_eq!(
        (own.kind.as_str(), own.data.as_ref()),
        (SITE_TYPE, &b"own-site"[..])
    );
    let kinds: Vec<_> = f
        .registry
        .get_identifier("0.NA/88.100")
        .unwrap()
        .values
        .iter()
        .map(|v| (v.index, v.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [(1, SITE_TYPE.to_owned()), (2, SITE_PREFIX_TYPE.to_owned())]
    );
    // Nothing left to change; a prefix created now carries the site.
    assert_eq!(
        f.registry.publish_site(b"own-site").unwrap(),
        SiteSync::default()
    );
    f.registry.create_prefix("86").unwrap();
    let created = f.registry.get_identifier("0.NA/86").unwrap();
    assert_eq!(
        created.value(OWN_SITE_INDEX).unwrap().data.as_ref(),
        b"own-site"
    );
}

#[test]
fn delegate_prefix_to_a_service_handle_names_it_for_the_prefix_and_below() {
    let f = Fixture::new();
    f.registry.create_prefix("88.100").unwrap();
    f.registry
        .delegate_prefix_to_service("88.100.2", "88.100/SERVICE-1", 600)
        .unwrap();
    let values: Vec<_> = f
        .registry
        .get_identifier("0.NA/88.100.2")
        .unwrap()
        .values
        .into_iter()
        .map(|v| (v.index, v.kind, v.data, v.ttl))
        .collect();
    let named = Bytes::from_static(b"88.100/SERVICE-1");
    assert_eq!(
        values,
        [
            (1, "HS_SERV".to_owned(), named.clone(), Ttl::Relative(600)),
            (2, "HS_SERV.PREFIX".to_owned(), named, Ttl::Relative(600)),
        ]
    );
    assert!(!f.registry.get_prefix("88.100.2").unwrap().homed);
    let bad = f
        .registry
        .delegate_prefix_to_service("88.100.3", "no slash", 600)
        .unwrap_err();
    assert!(
        matches!(bad, RegistryError::InvalidArgument { .. }),
        "{bad:?}"
    );
}
