//! The audit trail: each change keeps who made it, and `audit` finds it by
//! identifier, actor and time.

use crate::support::{Fixture, url};
use idnode_registry::{Action, AuditFilter, Origin, with_actor, with_origin};

fn at(time: u64, actor: &str, surface: &str, address: &str) -> Origin {
    Origin {
        time,
        actor: actor.into(),
        surface: surface.into(),
        address: address.into(),
    }
}

#[test]
fn every_change_says_who_made_it() {
    let f = Fixture::with_prefix();
    let r = &f.registry;
    let a = at(100, "token:aaaa", "grpc", "10.0.0.1:4000");
    let b = at(200, "token:bbbb", "grpc", "10.0.0.2:4000");
    with_origin(a.clone(), || {
        r.create_identifier("88.100.1/pump-1", vec![url(1, "https://a")], false)
            .unwrap();
        r.create_identifier("88.100.1/OTHER", vec![url(1, "https://o")], false)
            .unwrap();
    });
    with_origin(b.clone(), || {
        with_actor("handle:300:0.NA/88.100.1", || {
            r.add_values("88.100.1/PUMP-1", vec![url(2, "https://b")])
                .unwrap();
        });
        r.delete_identifier("88.100.1/PUMP-1").unwrap();
    });
    // Without an origin: recorded without one.
    r.create_identifier("88.100.1/PUMP-1", vec![url(1, "https://c")], false)
        .unwrap();

    let history = r
        .audit(&AuditFilter {
            identifier: Some("88.100.1/Pump-1".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    let seen: Vec<(Action, Option<&str>)> = history
        .iter()
        .map(|e| (e.action, e.origin.as_ref().map(|o| o.actor.as_str())))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Action::Created, Some("token:aaaa")),
            (Action::Updated, Some("handle:300:0.NA/88.100.1")),
            (Action::Deleted, Some("token:bbbb")),
            (Action::Created, None),
        ]
    );
    assert!(history.iter().all(|e| e.subject == "88.100.1/PUMP-1"));
    assert_eq!(history[1].origin.as_ref().unwrap().address, "10.0.0.2:4000");
    assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));

    // By actor, since a time, and the newest `limit`.
    let by_a = r
        .audit(&AuditFilter {
            actor: Some("token:aaaa".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(by_a.len(), 2);
    assert_eq!(by_a[1].subject, "88.100.1/OTHER");
    let late = r
        .audit(&AuditFilter {
            since: Some(150),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(late.len(), 2);
    let newest = r
        .audit(&AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].origin, None);
    // The prefix's creation is there too, without an origin.
    let all = r.audit(&AuditFilter::default()).unwrap();
    assert!(
        all.iter()
            .any(|e| e.kind == "prefix" && e.subject == "88.100.1")
    );
}
