//! Scoped tokens: each permission on its prefixes, the operator scope,
//! revocation, expiry, quotas, and the Tokens service itself.

use crate::support::{Node, TOKEN, create, prefix, url};
use idnode_admin::proto::{self, BatchResult};
use idnode_admin::tokens::PERMISSIONS;
use tonic::{Code, Status};

fn private(index: u32, data: &str) -> proto::Value {
    proto::Value {
        permissions: Some(0x0c), // admin read and write only
        ..url(index, data)
    }
}

fn admin_value(index: u32, admin: &str) -> proto::Value {
    proto::Value {
        index,
        r#type: "HS_ADMIN".into(),
        data: idnode_registry::hs_admin_data(0x0fff, admin, 200).into(),
        ..Default::default()
    }
}

fn has_private(record: &proto::Identifier) -> bool {
    record.values.iter().any(|v| v.index == 2)
}

/// Prepares a fresh target under `under` with the admin token (an
/// identifier with a public, a private and an HS_ADMIN value; for
/// delete_derived_prefix a prefix below `under`), then makes the call that
/// `permission` allows there with `secret`. A refused call must have
/// written nothing. read_value "fails" when the private value is hidden.
async fn attempt(
    node: &Node,
    secret: &str,
    permission: &str,
    under: &str,
    n: usize,
) -> Result<(), Status> {
    let (mut admin_prefixes, mut admin_ids) = node.admin().await;
    let target = format!("{under}/{permission}-{n}");
    admin_ids
        .create_identifier(create(
            &target,
            vec![
                url(1, "public"),
                private(2, "secret"),
                admin_value(100, "0.NA/88.100"),
            ],
        ))
        .await
        .unwrap();
    let derived = format!("{under}.{}", 1000 + n);
    if permission == "delete_derived_prefix" {
        admin_prefixes
            .create_prefix(prefix(&derived))
            .await
            .unwrap();
    }
    let before = node.sequence();
    let (mut prefixes, mut ids) = node.clients(Some(secret)).await;
    let identifier = target.clone();
    let outcome = match permission {
        "add_handle" => ids
            .create_identifier(create(&format!("{under}/made-{n}"), vec![url(1, "x")]))
            .await
            .map(drop),
        "delete_handle" => ids
            .delete_identifier(proto::DeleteIdentifierRequest { identifier })
            .await
            .map(drop),
        "add_derived_prefix" => prefixes.create_prefix(prefix(&derived)).await.map(drop),
        "delete_derived_prefix" => prefixes
            .delete_prefix(proto::DeletePrefixRequest { prefix: derived })
            .await
            .map(drop),
        "modify_value" => ids
            .modify_values(proto::ModifyValuesRequest {
                identifier,
                values: vec![url(1, "changed")],
            })
            .await
            .map(drop),
        "remove_value" => ids
            .remove_values(proto::RemoveValuesRequest {
                identifier,
                indexes: vec![1],
            })
            .await
            .map(drop),
        "add_value" => ids
            .add_values(proto::AddValuesRequest {
                identifier,
                values: vec![url(3, "more")],
            })
            .await
            .map(drop),
        "read_value" => {
            let got = ids
                .get_identifier(proto::GetIdentifierRequest { identifier })
                .await?
                .into_inner();
            assert!(got.values.iter().any(|v| v.index == 1), "public shown");
            match has_private(&got) {
                true => Ok(()),
                false => Err(Status::permission_denied("private values hidden")),
            }
        }
        "modify_admin" => ids
            .modify_values(proto::ModifyValuesRequest {
                identifier,
                values: vec![admin_value(100, "0.NA/88.200")],
            })
            .await
            .map(drop),
        "remove_admin" => ids
            .remove_values(proto::RemoveValuesRequest {
                identifier,
                indexes: vec![100],
            })
            .await
            .map(drop),
        "add_admin" => ids
            .add_values(proto::AddValuesRequest {
                identifier,
                values: vec![admin_value(101, "0.NA/88.300")],
            })
            .await
            .map(drop),
        "list_handles" => {
            let page = ids
                .list_identifiers(proto::ListIdentifiersRequest {
                    prefix: under.to_owned(),
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            assert!(page.identifiers.contains(&target));
            Ok(())
        }
        other => panic!("no call for {other}"),
    };
    if outcome.is_err() {
        assert_eq!(
            node.sequence(),
            before,
            "a refused {permission} wrote nothing"
        );
    }
    outcome
}

fn expect_denied(e: &Status, permission: &str, exact: bool, prefix: &str) {
    if permission == "read_value" {
        return; // not an error: the private values are hidden
    }
    assert_eq!(e.code(), Code::PermissionDenied, "{permission}: {e:?}");
    let lacks = match exact {
        true => format!("lacks {permission} "),
        false => "lacks ".to_owned(),
    };
    assert!(
        e.message().starts_with("token ")
            && e.message().contains(&lacks)
            && e.message().contains(prefix),
        "{permission}: {}",
        e.message()
    );
}

#[tokio::test]
async fn each_permission_allows_its_call_only_inside_its_prefixes() {
    let node = Node::start().await;
    let (mut prefixes, _) = node.admin().await;
    for p in ["88.100.1", "88.100.1.9", "88.100.2"] {
        prefixes.create_prefix(prefix(p)).await.unwrap();
    }
    let mut n = 0;
    for (name, bit) in PERMISSIONS {
        let with = node.token(&["88.100.1"], name, None).await;
        let others: Vec<&str> = PERMISSIONS
            .iter()
            .filter(|(_, b)| *b != bit)
            .map(|(n, _)| *n)
            .collect();
        let without = node.token(&["88.100.1"], &others.join(","), None).await;
        for under in ["88.100.1", "88.100.1.9"] {
            n += 1;
            attempt(&node, &with, name, under, n)
                .await
                .unwrap_or_else(|e| panic!("{name} on {under}: {e:?}"));
        }
        n += 1;
        let e = attempt(&node, &with, name, "88.100.2", n)
            .await
            .unwrap_err();
        expect_denied(&e, name, !name.starts_with("remove_"), "88.100.2");
        n += 1;
        let e = attempt(&node, &without, name, "88.100.1", n)
            .await
            .unwrap_err();
        expect_denied(&e, name, true, "88.100.1");
    }
    node.stop().await;
}

#[tokio::test]
async fn private_values_need_read_in_scope() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    ids.create_identifier(create(
        "88.100.1/a",
        vec![url(1, "public"), private(2, "secret")],
    ))
    .await
    .unwrap();
    let get = || proto::GetIdentifierRequest {
        identifier: "88.100.1/a".into(),
    };
    let reader = node.token(&["88.100.1"], "read", None).await;
    let elsewhere = node.token(&["88.100.2"], "read", None).await;
    let no_read = node.token(&["88.100.1"], "all", None).await;
    let scoped_all = node
        .token(&["88.100.1"], "add_handle,read_value", None)
        .await;
    for (token, sees) in [
        (None, false),
        (Some(elsewhere.as_str()), false),
        (Some(reader.as_str()), true),
        (Some(scoped_all.as_str()), true),
        (Some(TOKEN), true),
    ] {
        let (_, mut client) = node.clients(token).await;
        let got = client.get_identifier(get()).await.unwrap().into_inner();
        assert_eq!(has_private(&got), sees, "{token:?}");
        assert_eq!(got.values[0].index, 1);
    }
    // `all` is every HS_ADMIN permission, read_value among them.
    let (_, mut client) = node.clients(Some(&no_read)).await;
    assert!(has_private(
        &client.get_identifier(get()).await.unwrap().into_inner()
    ));
    node.stop().await;
}

#[tokio::test]
async fn the_operator_scope_can_do_everything() {
    let node = Node::start().await;
    let operator = node
        .tokens(Some(TOKEN))
        .await
        .create_token(proto::CreateTokenRequest {
            name: "ops".into(),
            permissions: vec!["operator".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(operator.token.as_ref().unwrap().permissions, ["operator"]);
    let secret = operator.secret;
    let (mut prefixes, mut ids) = node.clients(Some(&secret)).await;
    prefixes.create_prefix(prefix("88.100")).await.unwrap();
    prefixes.create_prefix(prefix("99")).await.unwrap();
    ids.create_identifier(create("99/a", vec![private(1, "x")]))
        .await
        .unwrap();
    let got = ids
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "99/a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.values.is_empty());
    ids.list_identifiers(proto::ListIdentifiersRequest {
        prefix: "99".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    ids.compact(proto::CompactRequest {}).await.unwrap();
    let site = proto::Site {
        servers: vec![proto::Server {
            id: 1,
            address: "127.0.0.1".into(),
            interfaces: vec![proto::Interface {
                protocol: proto::Protocol::Udp as i32,
                port: 2641,
            }],
            public_key: Vec::new(),
        }],
        hash: 0,
        encoded: Vec::new(),
    };
    prefixes
        .delegate_prefix(proto::DelegatePrefixRequest {
            prefix: "88.100.7".into(),
            sites: vec![site.clone()],
            ttl: None,
            service: String::new(),
        })
        .await
        .unwrap();
    let mut tokens = node.tokens(Some(&secret)).await;
    let listed = tokens
        .list_tokens(proto::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);

    // A scoped token with every HS_ADMIN permission still may not do what
    // only the operator does.
    let all = node.token(&["88.100"], "all", None).await;
    let (mut prefixes, mut ids) = node.clients(Some(&all)).await;
    let e = ids.compact(proto::CompactRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("lacks operator"), "{}", e.message());
    let e = prefixes
        .delegate_prefix(proto::DelegatePrefixRequest {
            prefix: "88.100.8".into(),
            sites: vec![site],
            ttl: None,
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut tokens = node.tokens(Some(&all)).await;
    let e = tokens
        .list_tokens(proto::ListTokensRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = tokens
        .revoke_token(proto::RevokeTokenRequest { id: "abc".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    node.stop().await;
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused_on_their_next_call() {
    let node = Node::start().await;
    let (mut prefixes, _) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    let mut admin_tokens = node.tokens(Some(TOKEN)).await;
    let made = admin_tokens
        .create_token(proto::CreateTokenRequest {
            name: "short-lived".into(),
            prefixes: vec!["88.100.1".into()],
            permissions: vec!["add_handle,read".into()],
            expires_in_seconds: 60,
            max_identifiers: None,
        })
        .await
        .unwrap()
        .into_inner();
    let info = made.token.unwrap();
    assert_eq!(info.expires, u64::from(crate::support::NOW) + 60);
    let expiring = made.secret;
    let revoked = node.token(&["88.100.1"], "add_handle,read", None).await;
    let revoked_id = revoked.split('.').next().unwrap().to_owned();

    let (_, mut ids) = node.clients(Some(&revoked)).await;
    ids.create_identifier(create("88.100.1/a", vec![url(1, "x")]))
        .await
        .unwrap();
    let listed = admin_tokens
        .revoke_token(proto::RevokeTokenRequest {
            id: revoked_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.revoked);
    let before = node.sequence();
    // The same connection: no lookup is cached across calls.
    let e = ids
        .create_identifier(create("88.100.1/b", vec![url(1, "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), format!("token {revoked_id} was revoked"));
    let e = ids
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "88.100.1/a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Revoking again changes nothing.
    admin_tokens
        .revoke_token(proto::RevokeTokenRequest { id: revoked_id })
        .await
        .unwrap();
    assert_eq!(node.sequence(), before);

    let (_, mut ids) = node.clients(Some(&expiring)).await;
    ids.create_identifier(create("88.100.1/c", vec![url(1, "x")]))
        .await
        .unwrap();
    node.advance(60);
    let e = ids
        .create_identifier(create("88.100.1/d", vec![url(1, "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());

    // A secret with a known id but other digits is refused.
    let forged = format!("{}.{}", info.id, "0".repeat(64));
    let (_, mut ids) = node.clients(Some(&forged)).await;
    let e = ids
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "88.100.1/a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    node.stop().await;
}

async fn batch(
    node: &Node,
    secret: &str,
    items: Vec<proto::CreateIdentifierRequest>,
) -> Vec<BatchResult> {
    let (_, mut ids) = node.clients(Some(secret)).await;
    let mut stream = ids
        .batch_create(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(result) = stream.message().await.unwrap() {
        out.push(result);
    }
    out
}

#[tokio::test]
async fn quotas_count_what_a_token_created() {
    let node = Node::start().await;
    let (mut prefixes, mut admin_ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    admin_ids
        .create_identifier(create("88.100.1/old", vec![url(1, "x")]))
        .await
        .unwrap();
    let secret = node
        .token(&["88.100.1"], "add_handle,delete_handle", Some(3))
        .await;
    let (_, mut ids) = node.clients(Some(&secret)).await;
    for i in 0..2 {
        ids.create_identifier(create(&format!("88.100.1/q{i}"), vec![url(1, "x")]))
            .await
            .unwrap();
    }
    // Replacing an identifier that exists creates nothing.
    let mut again = create("88.100.1/old", vec![url(1, "y")]);
    again.overwrite = true;
    ids.create_identifier(again).await.unwrap();
    ids.create_identifier(create("88.100.1/q2", vec![url(1, "x")]))
        .await
        .unwrap();
    let before = node.sequence();
    let e = ids
        .create_identifier(create("88.100.1/q3", vec![url(1, "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("quota of 3"), "{}", e.message());
    assert_eq!(node.sequence(), before);

    // A batch: items beyond the quota fail alone; an identical existing
    // item still succeeds.
    let secret = node.token(&["88.100.1"], "add_handle", Some(4)).await;
    let mut items: Vec<_> = (0..6)
        .map(|i| create(&format!("88.100.1/b{i}"), vec![url(1, "x")]))
        .collect();
    items.insert(0, create("88.100.1/q0", vec![url(1, "x")]));
    let results = batch(&node, &secret, items).await;
    let codes: Vec<i32> = results.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 8, 8]);
    assert_eq!(results[6].item, 6);
    assert!(results[6].message.contains("quota of 4"));
    let listed = node
        .tokens(Some(TOKEN))
        .await
        .list_tokens(proto::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    let id = secret.split('.').next().unwrap();
    let info = listed.tokens.iter().find(|t| t.id == id).unwrap();
    assert_eq!(
        (info.identifiers_created, info.max_identifiers),
        (4, Some(4))
    );

    // Concurrent creates together stay within the quota.
    let secret = node.token(&["88.100.1"], "add_handle", Some(5)).await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let (_, mut ids) = node.clients(Some(&secret)).await;
        calls.push(tokio::spawn(async move {
            ids.create_identifier(create(&format!("88.100.1/c{i}"), vec![url(1, "x")]))
                .await
                .map(drop)
        }));
    }
    let mut made = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => made += 1,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted),
        }
    }
    assert_eq!(made, 5);
    node.stop().await;
}

#[tokio::test]
async fn batch_items_outside_the_scope_fail_alone() {
    let node = Node::start().await;
    let (mut prefixes, _) = node.admin().await;
    for p in ["88.100.1", "88.100.2"] {
        prefixes.create_prefix(prefix(p)).await.unwrap();
    }
    let secret = node.token(&["88.100.1"], "add_handle", None).await;
    let mut replace = create("88.100.1/r", vec![url(1, "x")]);
    replace.overwrite = true; // needs delete_handle too
    let results = batch(
        &node,
        &secret,
        vec![
            create("88.100.1/a", vec![url(1, "x")]),
            create("88.100.2/a", vec![url(1, "x")]),
            replace,
            create("88.100.1/b", vec![url(1, "x")]),
        ],
    )
    .await;
    let codes: Vec<i32> = results.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 7, 7, 0]);
    assert!(
        results[1].message.contains("lacks add_handle on 88.100.2"),
        "{}",
        results[1].message
    );
    assert!(
        results[2]
            .message
            .contains("lacks delete_handle on 88.100.1")
    );
    assert_eq!(results[3].item, 3);

    // Anonymous callers cannot batch at all.
    let (_, mut anonymous) = node.clients(None).await;
    let e = anonymous
        .batch_create(tokio_stream::iter([create("88.100.1/z", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    node.stop().await;
}

#[tokio::test]
async fn the_tokens_service_checks_its_input() {
    let node = Node::start().await;
    let mut tokens = node.tokens(Some(TOKEN)).await;
    let ask = |prefixes: &[&str], permissions: &[&str]| proto::CreateTokenRequest {
        name: "t".into(),
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        ..Default::default()
    };
    for (request, expected) in [
        (
            ask(&["88.1"], &["fly"]),
            "permissions: unknown permission `fly`",
        ),
        (ask(&["88.1"], &[]), "permissions: give at least one"),
        (ask(&[], &["read"]), "prefixes: give at least one"),
        (ask(&["88..1"], &["read"]), "prefixes[0]: "),
        (ask(&["88.1"], &["operator"]), "prefixes: an operator token"),
    ] {
        let e = tokens.create_token(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(expected), "{}", e.message());
    }
    let made = tokens
        .create_token(ask(&["88.1", "88.2"], &["add_value", "READ", "list"]))
        .await
        .unwrap()
        .into_inner();
    let info = made.token.unwrap();
    assert_eq!(
        info.permissions,
        ["add_value", "read_value", "list_handles"]
    );
    assert_eq!(info.prefixes, ["88.1", "88.2"]);
    assert!(made.secret.starts_with(&format!("{}.", info.id)));
    assert_eq!(made.secret.len(), info.id.len() + 1 + 64);

    let listed = tokens
        .list_tokens(proto::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tokens, [info]);
    for (id, code) in [
        ("admin", Code::FailedPrecondition),
        ("ffffffff", Code::NotFound),
        ("../x", Code::InvalidArgument),
    ] {
        let e = tokens
            .revoke_token(proto::RevokeTokenRequest { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{id}");
    }
    let e = node
        .tokens(None)
        .await
        .list_tokens(proto::ListTokensRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    node.stop().await;
}
