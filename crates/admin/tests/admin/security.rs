use crate::support::{Node, TOKEN, create, prefix, url};
use idnode_admin::{Auth, connect, proto, serve};
use idnode_registry::Registry;
use idnode_store::MemoryStore;
use std::sync::Arc;
use tonic::Code;

#[tokio::test]
async fn writes_without_the_token_are_refused_and_change_nothing() {
    let node = Node::start().await;
    let (mut admin_prefixes, mut admin_ids) = node.admin().await;
    admin_prefixes
        .create_prefix(prefix("88.100.1"))
        .await
        .unwrap();
    admin_ids
        .create_identifier(create("88.100.1/a", vec![url(1, "x")]))
        .await
        .unwrap();
    let before = node.sequence();

    for token in [None, Some("wrong-token"), Some("")] {
        let (mut prefixes, mut ids) = node.clients(token).await;
        let mut codes = vec![
            prefixes
                .create_prefix(prefix("88.100.2"))
                .await
                .unwrap_err(),
            prefixes
                .delete_prefix(proto::DeletePrefixRequest {
                    prefix: "88.100.1".into(),
                })
                .await
                .unwrap_err(),
            ids.create_identifier(create("88.100.1/b", vec![url(1, "x")]))
                .await
                .unwrap_err(),
            ids.add_values(proto::AddValuesRequest {
                identifier: "88.100.1/a".into(),
                values: vec![url(2, "y")],
            })
            .await
            .unwrap_err(),
            ids.modify_values(proto::ModifyValuesRequest {
                identifier: "88.100.1/a".into(),
                values: vec![url(1, "y")],
            })
            .await
            .unwrap_err(),
            ids.remove_values(proto::RemoveValuesRequest {
                identifier: "88.100.1/a".into(),
                indexes: vec![1],
            })
            .await
            .unwrap_err(),
            ids.delete_identifier(proto::DeleteIdentifierRequest {
                identifier: "88.100.1/a".into(),
            })
            .await
            .unwrap_err(),
        ];
        let batch = ids
            .batch_create(tokio_stream::iter([create(
                "88.100.1/c",
                vec![url(1, "x")],
            )]))
            .await;
        codes.push(batch.unwrap_err());
        for status in codes {
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{token:?}: {status:?}"
            );
            assert!(!status.message().is_empty());
        }
    }
    assert_eq!(node.sequence(), before, "refused calls wrote nothing");

    // A wrong token is refused on reads too: the caller meant to be admin.
    let (_, mut wrong) = node.clients(Some("wrong-token")).await;
    let e = wrong
        .get_identifier(proto::GetIdentifierRequest {
            identifier: "88.100.1/a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "the token is not valid for this node");
    node.stop().await;
}

#[tokio::test]
async fn anonymous_reads_see_only_public_values() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    let private = proto::Value {
        permissions: Some(0x0c), // admin read and write only
        ..url(2, "secret")
    };
    ids.create_identifier(create("88.100.1/a", vec![url(1, "public"), private]))
        .await
        .unwrap();
    let request = || proto::GetIdentifierRequest {
        identifier: "88.100.1/a".into(),
    };

    let (_, mut anonymous) = node.clients(None).await;
    let seen = anonymous
        .get_identifier(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.values.iter().map(|v| v.index).collect::<Vec<_>>(), [1]);
    let all = ids.get_identifier(request()).await.unwrap().into_inner();
    assert_eq!(
        all.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(all.values[1].permissions, Some(0x0c));
    node.stop().await;
}

#[tokio::test]
async fn the_token_file_of_a_new_node_opens_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let auth = Arc::new(Auth::load_or_create(dir.path(), &*store).unwrap());
    let token = std::fs::read_to_string(auth.token_file().unwrap()).unwrap();
    assert_ne!(token.trim(), TOKEN);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let registry = Arc::new(Registry::new(store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, registry, auth, async move {
        let _ = stopped.await;
    }));
    let (mut prefixes, _) = connect(&endpoint, Some(token)).await.unwrap();
    prefixes.create_prefix(prefix("88.7")).await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn connect_rejects_bad_input() {
    assert!(matches!(
        connect("http://127.0.0.1:1", Some("bad\ntoken".into())).await,
        Err(idnode_admin::Error::InvalidToken(_))
    ));
    assert!(matches!(
        connect("http://[not a uri", None).await,
        Err(idnode_admin::Error::InvalidEndpoint { .. })
    ));
}

#[test]
fn errors_can_cross_threads_into_anyhow() {
    fn is_error<T: std::error::Error + Send + Sync + 'static>() {}
    is_error::<idnode_admin::Error>();
    is_error::<idnode_registry::RegistryError>();
}
