use crate::support::{Node, create, prefix, url};
use idnode_admin::proto::{self, BatchResult};
use tokio_stream::wrappers::ReceiverStream;

async fn run_batch(
    ids: &mut proto::identifiers_client::IdentifiersClient<idnode_admin::AdminChannel>,
    items: Vec<proto::CreateIdentifierRequest>,
) -> Vec<BatchResult> {
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

fn items(n: usize) -> Vec<proto::CreateIdentifierRequest> {
    let mut items: Vec<_> = (0..n)
        .map(|i| create(&format!("88.100.1/batch-{i:05}"), vec![url(1, "x")]))
        .collect();
    items[1234].values[0].r#type.clear();
    items[2001].identifier = "99.9/elsewhere".into();
    items[2002].values[0].permissions = Some(0x100);
    items
}

#[tokio::test]
async fn bad_items_fail_alone_and_a_retry_changes_nothing() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    let before = node.sequence();

    let results = run_batch(&mut ids, items(2500)).await;
    assert_eq!(results.len(), 2500);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.item, i as u64);
        match i {
            1234 => {
                assert_eq!(r.code, 3);
                assert_eq!(r.message, "values[0].type: value type is empty");
                assert_eq!(r.identifier, "88.100.1/batch-01234");
            }
            2001 => {
                assert_eq!(r.code, 9);
                assert!(r.message.contains("99.9"), "{}", r.message);
            }
            2002 => {
                assert_eq!(r.code, 3);
                assert!(
                    r.message.starts_with("values[0].permissions: "),
                    "{}",
                    r.message
                );
            }
            _ => {
                assert_eq!((r.code, r.message.as_str()), (0, ""), "item {i}");
                assert!(r.version > before);
            }
        }
    }
    assert_eq!(node.sequence(), before + 2497);

    let again = run_batch(&mut ids, items(2500)).await;
    assert_eq!(again, results, "same results, same versions");
    assert_eq!(
        node.sequence(),
        before + 2497,
        "a retried batch writes nothing"
    );

    // A different record under an existing identifier is ALREADY_EXISTS,
    // unless the item overwrites.
    let mut changed = create("88.100.1/batch-00000", vec![url(1, "other")]);
    let r = run_batch(&mut ids, vec![changed.clone()]).await;
    assert_eq!(r[0].code, 6, "{}", r[0].message);
    changed.overwrite = true;
    let r = run_batch(&mut ids, vec![changed]).await;
    assert_eq!(r[0].code, 0);
    assert_eq!(r[0].version, node.sequence());
    node.stop().await;
}

#[tokio::test]
async fn a_client_in_lockstep_gets_each_result_before_sending_more() {
    let node = Node::start().await;
    let (mut prefixes, mut ids) = node.admin().await;
    prefixes.create_prefix(prefix("88.100.1")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut results = ids
        .batch_create(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5u64 {
        tx.send(create(&format!("88.100.1/step-{i}"), vec![url(1, "x")]))
            .await
            .unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), results.message())
            .await
            .expect("a result arrives while the stream stays open")
            .unwrap()
            .unwrap();
        assert_eq!((r.item, r.code), (i, 0));
    }
    drop(tx);
    assert!(results.message().await.unwrap().is_none());
    node.stop().await;
}
