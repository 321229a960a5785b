//! Zone cuts: a prefix delegated to other servers is answered with a
//! referral (NS at the cut, glue, AA clear), as the Handle protocol
//! answers 303 from the same prefix table.

use crate::support::*;
use idnode_core::{Record as StoredRecord, Ttl, Value};
use idnode_dns::Transport;
use idnode_dns::hickory_proto::op::{Message, ResponseCode};
use idnode_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use idnode_handle::site::{HashOption, ServerInfo, SiteInfo};
use idnode_store::{Space, Store};

const CUT: &str = "2.100.88.idnode.internal.";

/// Delegates `prefix` as `Registry::delegate_prefix` does: the prefix
/// known but not homed (homed byte 0), and `0.NA/<prefix>` with one
/// `HS_SITE.PREFIX` value per site.
fn delegate(store: &dyn Store, prefix: &str, sites: &[&[(u32, &str)]], ttl: Ttl) {
    let values = sites
        .iter()
        .enumerate()
        .map(|(i, servers)| {
            let servers = servers
                .iter()
                .map(|(id, urls)| ServerInfo::from_urls(*id, urls).unwrap())
                .collect();
            let site = SiteInfo::single(servers, HashOption::Suffix).encode();
            let mut v = Value::new(i as u32 + 1, "HS_SITE.PREFIX", site);
            v.ttl = ttl;
            v
        })
        .collect();
    let identifier = format!("0.NA/{prefix}");
    let record = StoredRecord {
        identifier: identifier.clone(),
        values,
        version: store.last_sequence() + 1,
    };
    let info = idnode_core::PrefixInfo {
        prefix: prefix.into(),
        homed: false,
        created: 0,
        template: None,
    }
    .encode();
    let mut txn = store.begin().unwrap();
    txn.put(
        Space::Prefixes,
        prefix.to_ascii_uppercase().as_bytes(),
        info.into(),
    );
    txn.put(
        Space::Records,
        identifier.to_ascii_uppercase().as_bytes(),
        record.encode().into(),
    );
    txn.commit().unwrap();
}

fn undelegate(store: &dyn Store, prefix: &str) {
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Prefixes, prefix.to_ascii_uppercase().as_bytes());
    txn.delete(
        Space::Records,
        format!("0.NA/{prefix}").to_ascii_uppercase().as_bytes(),
    );
    txn.commit().unwrap();
}

/// The node of [`node`], with `88.100` homed and `88.100.2` delegated to
/// two sites: servers 1 (IPv4) and 2 (IPv6), and server 7 (IPv4).
fn delegated() -> Node {
    let node = node();
    home(&*node.store, "88.100");
    delegate(
        &*node.store,
        "88.100.2",
        &[
            &[
                (1, "udp://192.0.2.1:2641,tcp://192.0.2.1:2641"),
                (2, "tcp://[2001:db8::2]:2641"),
            ],
            &[(7, "udp://198.51.100.7:2641")],
        ],
        Ttl::Relative(3600),
    );
    node
}

fn assert_referral(m: &Message, cut: &str) {
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(!m.authoritative, "a referral is not authoritative");
    assert!(m.answers.is_empty(), "{:?}", m.answers);
    let cut = name(cut);
    let mut ns: Vec<String> = m
        .authorities
        .iter()
        .map(|r| {
            assert_eq!(r.name, cut);
            assert_eq!(r.ttl, 3600);
            match &r.data {
                RData::NS(ns) => ns.0.to_ascii().to_ascii_lowercase(),
                other => panic!("not NS in a referral: {other:?}"),
            }
        })
        .collect();
    ns.sort();
    let under = |id: &str| format!("ns{id}.{cut}");
    assert_eq!(ns, [under("1"), under("2"), under("7")]);
    let mut glue: Vec<(String, String)> = m
        .additionals
        .iter()
        .map(|r| {
            assert_eq!(r.ttl, 3600);
            let addr = match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => panic!("not glue: {other:?}"),
            };
            (r.name.to_ascii().to_ascii_lowercase(), addr)
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            (under("1"), "192.0.2.1".to_owned()),
            (under("2"), "2001:db8::2".to_owned()),
            (under("7"), "198.51.100.7".to_owned()),
        ]
    );
}

#[test]
fn names_at_and_below_the_cut_get_a_referral() {
    let node = delegated();
    for text in [
        CUT,
        "_.2.100.88.idnode.internal.",
        "abc._.2.100.88.idnode.internal.",
        "ABC._.2.100.88.IDNODE.internal.",
        "5.2.100.88.idnode.internal.",
        "x._.9.5.2.100.88.idnode.internal.",
        // Not the name of any identifier (a short label before a suffix
        // tail), still under the cut.
        "a.b._.2.100.88.idnode.internal.",
    ] {
        for qtype in [
            RecordType::TXT,
            RecordType::A,
            RecordType::NAPTR,
            RecordType::Unknown(256),
            RecordType::SOA,
            RecordType::ANY,
        ] {
            let m = ask_all(&node, &name(text), qtype);
            assert_referral(&m, CUT);
        }
    }
}

#[test]
fn ns_at_the_cut_is_a_referral_and_ds_is_answered_from_the_parent() {
    let node = delegated();
    let m = ask_all(&node, &name(CUT), RecordType::NS);
    assert_referral(&m, CUT);
    let m = ask_all(&node, &name(CUT), RecordType::DS);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Below the cut, DS belongs to the child: a referral.
    let m = ask_all(&node, &name("5.2.100.88.idnode.internal."), RecordType::DS);
    assert_referral(&m, CUT);
}

#[test]
fn names_above_and_beside_the_cut_are_still_answered_here() {
    let node = delegated();
    // Homed prefix 88.100.1 beside the cut: answers as before.
    let m = ask_all(&node, &identifier_name("88.100.1/Abc-123"), RecordType::TXT);
    assert!(m.authoritative);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(txt_strings(&m).len(), 4);
    let m = ask_all(
        &node,
        &name("nope._.1.100.88.idnode.internal."),
        RecordType::TXT,
    );
    assert!(m.authoritative);
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    // The homed parent: it exists (NODATA), authoritative.
    let m = ask_all(&node, &name("100.88.idnode.internal."), RecordType::TXT);
    assert!(m.authoritative);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities[0].record_type() == RecordType::SOA);
    // The apex still answers its own NS.
    let m = ask_all(&node, &name(APEX), RecordType::NS);
    assert!(m.authoritative && !m.answers.is_empty());
    // A prefix homed below a delegated one is answered here (nearest wins).
    home(&*node.store, "88.100.2.8");
    let m = ask_all(&node, &name("8.2.100.88.idnode.internal."), RecordType::TXT);
    assert!(m.authoritative);
    assert_eq!(m.response_code, ResponseCode::NoError);
    let m = ask_all(&node, &name("9.2.100.88.idnode.internal."), RecordType::TXT);
    assert_referral(&m, CUT);
}

#[test]
fn a_delegation_without_a_usable_site_is_servfail_and_not_cached() {
    let node = node();
    delegate(
        &*node.store,
        "88.100.6",
        &[&[(1, "udp://0.0.0.0:2641")]],
        Ttl::Relative(60),
    );
    let owner = name("x._.6.100.88.idnode.internal.");
    for _ in 0..2 {
        let m = ask(node.cached(), &owner, RecordType::TXT);
        assert_eq!(m.response_code, ResponseCode::ServFail);
    }
    assert!(node.cache.is_empty());
}

#[test]
fn delegations_made_or_removed_after_the_cache_is_warm_are_seen() {
    let node = node();
    home(&*node.store, "88.100");
    let service = node.cached();
    let names = [
        name("x._.2.100.88.idnode.internal."),
        name("7.2.100.88.idnode.internal."),
        name(CUT),
    ];
    for owner in &names {
        for _ in 0..2 {
            let m = ask(service, owner, RecordType::TXT);
            assert_eq!(m.response_code, ResponseCode::NXDomain, "{owner}");
            assert!(m.authoritative);
        }
    }
    delegate(
        &*node.store,
        "88.100.2",
        &[
            &[
                (1, "udp://192.0.2.1:2641,tcp://192.0.2.1:2641"),
                (2, "tcp://[2001:db8::2]:2641"),
            ],
            &[(7, "udp://198.51.100.7:2641")],
        ],
        Ttl::Relative(3600),
    );
    for owner in &names {
        for _ in 0..2 {
            assert_referral(&ask(service, owner, RecordType::TXT), CUT);
        }
    }
    // Sites changed on the prefix's record alone: the new glue is seen.
    let hits = node.cache.len();
    assert!(hits > 0);
    delegate(
        &*node.store,
        "88.100.2",
        &[&[(1, "udp://192.0.2.99:2641")]],
        Ttl::Relative(3600),
    );
    let m = ask(service, &names[0], RecordType::TXT);
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(
        m.additionals[0].data,
        RData::A("192.0.2.99".parse::<std::net::Ipv4Addr>().unwrap().into())
    );
    undelegate(&*node.store, "88.100.2");
    for owner in &names {
        let m = ask(service, owner, RecordType::TXT);
        assert_eq!(m.response_code, ResponseCode::NXDomain, "{owner}");
        assert!(m.authoritative);
    }
}

#[test]
fn absolute_ttls_count_down_and_are_not_cached() {
    let node = node();
    home(&*node.store, "88.100");
    delegate(
        &*node.store,
        "88.100.2",
        &[&[(3, "udp://192.0.2.3:2641")]],
        Ttl::Absolute(NOW + 100),
    );
    let m = ask(node.cached(), &name(CUT), RecordType::TXT);
    assert!(
        m.authorities
            .iter()
            .chain(&m.additionals)
            .all(|r| r.ttl == 100)
    );
    ask(node.cached(), &name(CUT), RecordType::TXT);
    assert!(node.cache.is_empty());
}

#[test]
fn referrals_are_truncated_over_udp_without_edns_only_when_too_long() {
    let node = delegated();
    let bytes = query(
        &name("abc._.2.100.88.idnode.internal."),
        RecordType::TXT,
        None,
    );
    let m = Message::from_vec(&raw(node.plain(), &bytes, Transport::Udp)).unwrap();
    assert!(!m.truncation);
    assert_eq!(m.authorities.len(), 3);
}

#[test]
fn the_zone_holds_the_cut_and_its_glue() {
    let node = delegated();
    let zone: Vec<Record> = node.plain().zone(0, NOW).collect::<Result<_, _>>().unwrap();
    let cut = name(CUT);
    let ns: Vec<&Record> = zone
        .iter()
        .filter(|r| r.name == cut && r.record_type() == RecordType::NS)
        .collect();
    assert_eq!(ns.len(), 3);
    for id in ["1", "2", "7"] {
        let host: Name = name(&format!("ns{id}.{CUT}"));
        assert!(
            zone.iter()
                .any(|r| r.name == host
                    && matches!(r.record_type(), RecordType::A | RecordType::AAAA)),
            "glue of {host}"
        );
    }
    // The set of the prefix's record alone, for IXFR differences.
    let stored = node
        .store
        .get(Space::Records, b"0.NA/88.100.2")
        .unwrap()
        .unwrap();
    let set = node.plain().record_set(0, &stored, NOW).unwrap();
    assert_eq!(
        set.iter()
            .filter(|r| matches!(
                r.record_type(),
                RecordType::NS | RecordType::A | RecordType::AAAA
            ))
            .count(),
        6
    );
}

#[test]
fn a_prefix_delegated_through_a_service_handle_is_a_cut_to_its_sites() {
    let node = node();
    home(&*node.store, "88.100");
    let site = SiteInfo::single(
        vec![ServerInfo::from_urls(3, "udp://192.0.2.33:2641").unwrap()],
        HashOption::Whole,
    )
    .encode();
    // The service handle, homed here, holds the site.
    let mut hs_site = Value::new(1, "HS_SITE", site);
    hs_site.ttl = Ttl::Relative(3600);
    put(&*node.store, "88.100/SERVICE-1", vec![hs_site]);
    // The delegation names it instead of carrying sites.
    let mut txn = node.store.begin().unwrap();
    let info = idnode_core::PrefixInfo {
        prefix: "88.100.2".into(),
        homed: false,
        created: 0,
        template: None,
    };
    txn.put(Space::Prefixes, b"88.100.2", info.encode().into());
    let record = StoredRecord {
        identifier: "0.NA/88.100.2".into(),
        values: vec![
            Value::new(1, "HS_SERV", "88.100/SERVICE-1"),
            Value::new(2, "HS_SERV.PREFIX", "88.100/service-1"),
        ],
        version: node.store.last_sequence() + 1,
    };
    txn.put(Space::Records, b"0.NA/88.100.2", record.encode().into());
    txn.commit().unwrap();
    for service in &node.services {
        let m = ask(
            service,
            &name("abc._.2.100.88.idnode.internal."),
            RecordType::TXT,
        );
        assert_eq!(m.response_code, ResponseCode::NoError);
        let ns: Vec<String> = m
            .authorities
            .iter()
            .map(|r| match &r.data {
                RData::NS(ns) => ns.0.to_ascii().to_ascii_lowercase(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ns, [format!("ns3.{CUT}")]);
        let glue: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(glue, ["192.0.2.33"]);
    }
    // Without the service handle's record, no usable server: SERVFAIL.
    let mut txn = node.store.begin().unwrap();
    txn.delete(Space::Records, b"88.100/SERVICE-1");
    txn.commit().unwrap();
    for service in &node.services {
        let m = ask(
            service,
            &name("xyz._.2.100.88.idnode.internal."),
            RecordType::TXT,
        );
        assert_eq!(m.response_code, ResponseCode::ServFail);
    }
}
