//! What zone transfers will read: the serial, the whole zone, one record's
//! set.

use crate::support::*;
use idnode_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use idnode_store::Space;

fn names_and_types(records: &[Record]) -> Vec<(Name, RecordType)> {
    records
        .iter()
        .map(|r| (r.name.clone(), r.record_type()))
        .collect()
}

#[test]
fn the_zone_holds_apex_records_then_every_public_record() {
    let node = node();
    let service = node.plain();
    let zone: Vec<Record> = service.zone(0, NOW).collect::<Result<_, _>>().unwrap();
    let RData::SOA(soa) = &zone[0].data else {
        panic!("the zone starts with its SOA");
    };
    assert_eq!(soa.serial, service.soa_serial());
    assert_eq!(service.soa_serial(), node.store.last_sequence() as u32);
    let seen = names_and_types(&zone);
    assert_eq!(seen[1], (name(APEX), RecordType::NS));
    assert_eq!(seen[2], (name("ns1.idnode.internal."), RecordType::A));
    let abc = identifier_name("88.100.1/Abc-123");
    let count = |n: &Name, t: RecordType| seen.iter().filter(|s| s.0 == *n && s.1 == t).count();
    assert_eq!(count(&abc, RecordType::TXT), 4);
    assert_eq!(count(&abc, RecordType::Unknown(256)), 2);
    assert_eq!(count(&abc, RecordType::NAPTR), 2);
    assert_eq!(
        count(&identifier_name("88.100.1/hidden"), RecordType::TXT),
        0
    );
    let ons = name("0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.");
    assert_eq!(count(&ons, RecordType::NAPTR), 1);
    let ors = name("100.156.2.1.oid-res.idnode.internal.");
    assert_eq!(count(&ors, RecordType::NAPTR), 2);
    let text = format!("{zone:?}");
    assert!(!text.contains("costPrice"));
    // The zone agrees with the answers.
    let m = ask(service, &abc, RecordType::TXT);
    let mut from_zone: Vec<_> = zone
        .iter()
        .filter(|r| r.name == abc && r.record_type() == RecordType::TXT)
        .cloned()
        .collect();
    let mut answered = m.answers.clone();
    from_zone.sort_by_key(|r| format!("{:?}", r.data));
    answered.sort_by_key(|r| format!("{:?}", r.data));
    assert_eq!(from_zone.len(), answered.len());
    for (a, b) in from_zone.iter().zip(&answered) {
        assert_eq!(a.data, b.data);
        assert_eq!(a.ttl, b.ttl);
        assert!(a.name.eq_ignore_root(&b.name));
    }
    assert!(service.zone(1, NOW).next().is_none());
}

#[test]
fn the_zone_pages_through_many_records() {
    let node = empty(&config());
    for i in 0..600 {
        put(
            &*node.store,
            &format!("88.100.1/item-{i:04}"),
            vec![idnode_core::Value::new(1, "URL", "https://e/x")],
        );
    }
    let zone: Vec<Record> = node.plain().zone(0, NOW).collect::<Result<_, _>>().unwrap();
    let txt = zone
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .count();
    assert_eq!(txt, 600);
}

#[test]
fn record_sets_of_one_record() {
    let node = node();
    let stored = node
        .store
        .get(Space::Records, b"88.100.3/00866993371400")
        .unwrap()
        .unwrap();
    let set = node.plain().record_set(0, &stored, NOW).unwrap();
    let seen = names_and_types(&set);
    let own = identifier_name("88.100.3/00866993371400");
    assert!(seen.contains(&(own.clone(), RecordType::TXT)));
    assert!(seen.contains(&(own, RecordType::NAPTR)));
    let ons = name("0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.");
    assert!(seen.contains(&(ons, RecordType::NAPTR)));
    assert_eq!(set.len(), 2 + 1 + 1 + 1);
    assert!(node.plain().record_set(0, b"not a record", NOW).is_err());
    assert!(node.plain().record_set(5, &stored, NOW).unwrap().is_empty());
}

#[test]
fn apex_records_and_soa() {
    let node = node();
    let records = node.plain().apex_records(0);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0], node.plain().soa_record(0).unwrap());
    assert!(node.plain().soa_record(1).is_none());
}
