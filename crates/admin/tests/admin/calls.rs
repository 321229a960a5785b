use crate::support::{NOW, Node, create, prefix, url};
use idnode_admin::proto;
use tonic::Code;

#[tokio::test]
async fn prefixes_and_identifiers_round_trip() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;

    let p = prefixes
        .create_prefix(prefix("88.100.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (p.prefix.as_str(), p.homed, p.created),
        ("88.100.1", true, NOW)
    );
    let e = prefixes
        .create_prefix(prefix("88.100.1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.message(), "prefix 88.100.1 already exists");
    let got = prefixes
        .get_prefix(proto::GetPrefixRequest {
            prefix: "88.100.1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, p);
    let listed = prefixes
        .list_prefixes(proto::ListPrefixesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.prefixes, [p]);

    let made = ids
        .create_identifier(create(
            "88.100.1/ABC-123",
            vec![url(1, "https://a"), url(2, "b")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.identifier, "88.100.1/ABC-123");
    assert_eq!(made.version, node.sequence());
    assert!(made.values.iter().all(|v| v.timestamp == NOW));
    let got = ids
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "88.100.1/abc-123".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, made);
    let e = ids
        .create_identifier(create("88.100.1/ABC-123", vec![url(1, "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    let added = ids
        .add_values(proto::AddValuesRequest {
            identifier: "88.100.1/ABC-123".into(),
            values: vec![url(3, "c")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.values.len(), 3);
    let modified = ids
        .modify_values(proto::ModifyValuesRequest {
            identifier: "88.100.1/ABC-123".into(),
            values: vec![url(2, "B")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(modified.values[1].data, "B");
    let e = ids
        .modify_values(proto::ModifyValuesRequest {
            identifier: "88.100.1/ABC-123".into(),
            values: vec![url(9, "B")],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let removed = ids
        .remove_values(proto::RemoveValuesRequest {
            identifier: "88.100.1/ABC-123".into(),
            indexes: vec![1, 3],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        removed.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [2]
    );

    let e = prefixes
        .delete_prefix(proto::DeletePrefixRequest {
            prefix: "88.100.1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    ids.delete_identifier(proto::DeleteIdentifierRequest {
        identifier: "88.100.1/abc-123".into(),
    })
    .await
    .unwrap();
    let e = ids
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "88.100.1/ABC-123".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "identifier 88.100.1/ABC-123 not found");
    prefixes
        .delete_prefix(proto::DeletePrefixRequest {
            prefix: "88.100.1".into(),
        })
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test]
async fn invalid_arguments_name_the_field() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    let cases: Vec<(proto::CreateIdentifierRequest, &str)> = vec![
        (
            create("88.100.1/x", vec![url(1, "a"), url(0, "b")]),
            "values[1].index: ",
        ),
        (
            create(
                "88.100.1/x",
                vec![proto::Value {
                    index: 1,
                    ..Default::default()
                }],
            ),
            "values[0].type: value type is empty",
        ),
        (
            create(
                "88.100.1/x",
                vec![proto::Value {
                    permissions: Some(0x10),
                    ..url(1, "a")
                }],
            ),
            "values[0].permissions: 0x10",
        ),
        (
            create(
                "88.100.1/x",
                vec![url(1, "a"), url(2, &"x".repeat(65 * 1024))],
            ),
            "values[1].data: value data has 66560 bytes",
        ),
        (create("no-slash", vec![]), "identifier: "),
    ];
    for (request, expected) in cases {
        let e = ids.create_identifier(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with(expected),
            "{:?} vs {expected:?}",
            e.message()
        );
    }
    let e = prefixes.create_prefix(prefix("88..1")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("prefix: "), "{}", e.message());
    let e = ids
        .create_identifier(create("99.1/x", vec![]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("99.1"), "{}", e.message());
    node.stop().await;
}

#[tokio::test]
async fn list_identifiers_in_pages() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    for i in 0..25 {
        ids.create_identifier(create(&format!("88.100.1/n{i:02}"), vec![url(1, "x")]))
            .await
            .unwrap();
    }
    // Listing needs list_handles: an anonymous caller is refused.
    let (_, mut anonymous) = node.clients(None).await;
    let e = anonymous
        .list_identifiers(proto::ListIdentifiersRequest {
            prefix: "88.100.1".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = ids
            .list_identifiers(proto::ListIdentifiersRequest {
                prefix: "88.100.1".into(),
                page_size: 10,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.identifiers.len() <= 10);
        seen.extend(page.identifiers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("88.100.1/n{i:02}")).collect();
    assert_eq!(seen, expected);
    let e = ids
        .list_identifiers(proto::ListIdentifiersRequest {
            prefix: "88.100.1".into(),
            page_size: 10,
            page_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("page_token: "), "{}", e.message());
    node.stop().await;
}

#[tokio::test]
async fn health_and_reflection() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let node = Node::start().await;
    let channel = tonic::transport::Endpoint::from_shared(node.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "idnode.v1.Prefixes",
        "idnode.v1.Identifiers",
        "idnode.v1.Tokens",
        "",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"idnode.v1.Prefixes".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"idnode.v1.Identifiers".to_owned()),
        "{names:?}"
    );
    node.stop().await;
}
