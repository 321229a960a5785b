//! BatchCreate: a client stream of items in, one result per item out.
//!
//! PERFORMANCE: the bulk registration path. A reader task takes from the
//! client stream whatever has arrived, up to [`MAX_CHUNK`] items or until
//! the stream pauses (or [`MAX_CHUNK_BYTES`]), and hands the chunk on; a writer task runs one
//! `Registry::batch_create` (one store commit) per chunk on a blocking
//! thread and streams back the results in order. The two run concurrently,
//! so the next chunk is read while the current one is committed, and a
//! client that waits for results before sending more never deadlocks.

use crate::error;
use crate::proto::{BatchResult, CreateIdentifierRequest};
use crate::site::SitePeers;
use idnode_registry::{BatchItem, Registry};
use prost::Message;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// Most items committed together (one WAL sync): 4000 loads 1M identifiers
/// at 110-118k/s on the two-core machine, against 96-114k/s with 1000.
pub const MAX_CHUNK: usize = 4000;
/// Most encoded request bytes buffered in one chunk, so that a stream of
/// large items cannot make a chunk hold [`MAX_CHUNK`] times tonic's 4 MiB message
/// limit.
pub const MAX_CHUNK_BYTES: usize = 16 << 20;

/// The response stream of BatchCreate.
pub type BatchStream = ReceiverStream<Result<BatchResult, Status>>;

type Chunk = Result<Vec<CreateIdentifierRequest>, Status>;

/// Starts the reader and writer tasks for one BatchCreate call.
pub(crate) fn start(
    registry: Arc<Registry>,
    site: Option<Arc<SitePeers>>,
    input: Streaming<CreateIdentifierRequest>,
) -> BatchStream {
    let (chunks_tx, chunks_rx) = mpsc::channel(2);
    let (results_tx, results_rx) = mpsc::channel(2 * MAX_CHUNK);
    tokio::spawn(read_chunks(input, chunks_tx));
    tokio::spawn(write_chunks(registry, site, chunks_rx, results_tx));
    ReceiverStream::new(results_rx)
}

/// Polls the stream once: an item if one is ready, `Pending` if not.
async fn ready_item<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *stream).poll_next(cx))).await
}

async fn read_chunks(mut input: Streaming<CreateIdentifierRequest>, chunks: mpsc::Sender<Chunk>) {
    loop {
        // Wait for the first item of a chunk, then take what is ready.
        let first = match input.message().await {
            Ok(Some(item)) => item,
            Ok(None) => return,
            Err(status) => {
                let _ = chunks.send(Err(status)).await;
                return;
            }
        };
        let mut bytes = first.encoded_len();
        let mut items = Vec::with_capacity(MAX_CHUNK);
        items.push(first);
        let mut end: Option<Result<(), Status>> = None;
        while items.len() < MAX_CHUNK && bytes < MAX_CHUNK_BYTES {
            match ready_item(&mut input).await {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(item))) => {
                    bytes += item.encoded_len();
                    items.push(item);
                }
                Poll::Ready(Some(Err(status))) => {
                    end = Some(Err(status));
                    break;
                }
                Poll::Ready(None) => {
                    end = Some(Ok(()));
                    break;
                }
            }
        }
        if chunks.send(Ok(items)).await.is_err() {
            return; // the writer is gone: the client went away
        }
        match end {
            None => {}
            Some(Ok(())) => return,
            Some(Err(status)) => {
                let _ = chunks.send(Err(status)).await;
                return;
            }
        }
    }
}

async fn write_chunks(
    registry: Arc<Registry>,
    site: Option<Arc<SitePeers>>,
    mut chunks: mpsc::Receiver<Chunk>,
    results: mpsc::Sender<Result<BatchResult, Status>>,
) {
    let mut next_item: u64 = 0;
    while let Some(chunk) = chunks.recv().await {
        let items = match chunk {
            Ok(items) => items,
            Err(status) => {
                let _ = results.send(Err(status)).await;
                return;
            }
        };
        tracing::debug!(items = items.len(), first = next_item, "batch chunk");
        let first = next_item;
        next_item += items.len() as u64;
        if let Some(site) = &site {
            for result in site_chunk(&registry, site, first, items).await {
                if results.send(result).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let registry = Arc::clone(&registry);
        let judged = tokio::task::spawn_blocking(move || judge(&registry, first, items)).await;
        let judged = match judged {
            Ok(judged) => judged,
            Err(e) => {
                tracing::error!(error = %e, "a batch registration panicked or was cancelled");
                let _ = results
                    .send(Err(Status::internal("the batch failed inside the node")))
                    .await;
                return;
            }
        };
        for result in judged {
            if results.send(Ok(result)).await.is_err() {
                return; // the client went away
            }
        }
    }
}

/// Converts and registers one chunk (on a blocking thread); one result per
/// item, numbered from `first`.
fn judge(registry: &Registry, first: u64, items: Vec<CreateIdentifierRequest>) -> Vec<BatchResult> {
    let mut out: Vec<BatchResult> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (at, request) in items.into_iter().enumerate() {
        let mut result = BatchResult {
            item: first + at as u64,
            identifier: request.identifier.clone(),
            ..Default::default()
        };
        match BatchItem::try_from(request) {
            Ok(item) => {
                valid.push(item);
                positions.push(at);
            }
            Err(e) => {
                result.code = Code::InvalidArgument as i32;
                result.message = e.to_string();
            }
        }
        out.push(result);
    }
    for (at, outcome) in positions.into_iter().zip(registry.batch_create(valid)) {
        let result = &mut out[at];
        match outcome {
            Ok(record) => result.version = record.version,
            Err(e) => {
                result.code = error::code(&e) as i32;
                result.message = error::message(&e);
            }
        }
    }
    out
}

/// One chunk on a server of a multi-server site: the items this server
/// owns are judged here, the others sent to their owners as one
/// BatchCreate stream each; the results come back in the chunk's order.
async fn site_chunk(
    registry: &Arc<Registry>,
    site: &SitePeers,
    first: u64,
    items: Vec<CreateIdentifierRequest>,
) -> Vec<Result<BatchResult, Status>> {
    let count = items.len();
    let mut slots: Vec<Option<BatchResult>> = (0..count).map(|_| None).collect();
    let mut local = (Vec::new(), Vec::new());
    let mut remote: BTreeMap<usize, (Vec<usize>, Vec<CreateIdentifierRequest>)> = BTreeMap::new();
    for (at, item) in items.into_iter().enumerate() {
        match site.owner_index(&item.identifier) {
            Some(owner) => {
                let group = remote.entry(owner).or_default();
                group.0.push(at);
                group.1.push(item);
            }
            None => {
                local.0.push(at);
                local.1.push(item);
            }
        }
    }
    for (owner, (positions, items)) in remote {
        let name = items
            .first()
            .map(|i| i.identifier.clone())
            .unwrap_or_default();
        let identifiers: Vec<String> = items.iter().map(|i| i.identifier.clone()).collect();
        let answered = forward(site, owner, &name, items).await;
        for (n, at) in positions.into_iter().enumerate() {
            let mut result = match &answered {
                Ok(results) => results.get(n).cloned().unwrap_or_else(|| BatchResult {
                    code: Code::Unavailable as i32,
                    message: "the owning site server returned no result for this item".into(),
                    ..Default::default()
                }),
                Err(status) => BatchResult {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    ..Default::default()
                },
            };
            result.item = first + at as u64;
            result.identifier = identifiers[n].clone();
            slots[at] = Some(result);
        }
    }
    let (positions, items) = local;
    if !items.is_empty() {
        let registry = Arc::clone(registry);
        match tokio::task::spawn_blocking(move || judge(&registry, 0, items)).await {
            Ok(judged) => {
                for (at, mut result) in positions.into_iter().zip(judged) {
                    result.item = first + at as u64;
                    slots[at] = Some(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a batch registration panicked or was cancelled");
                return vec![Err(Status::internal("the batch failed inside the node"))];
            }
        }
    }
    slots
        .into_iter()
        .map(|r| r.ok_or_else(|| Status::internal("a batch item got no result")))
        .collect()
}

/// Sends `items` to site server `owner` as one BatchCreate stream.
async fn forward(
    site: &SitePeers,
    owner: usize,
    name: &str,
    items: Vec<CreateIdentifierRequest>,
) -> Result<Vec<BatchResult>, Status> {
    let mut client = site.client(owner, name).await?;
    let mut stream = client
        .batch_create(tokio_stream::iter(items))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(result) = stream.message().await? {
        out.push(result);
    }
    Ok(out)
}
