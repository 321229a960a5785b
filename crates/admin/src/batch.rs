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
use idnode_registry::{BatchItem, Registry};
use prost::Message;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// Most items committed together.
pub const MAX_CHUNK: usize = 1000;
/// Most encoded request bytes buffered in one chunk, so that a stream of
/// large items cannot make a chunk hold 1000 times tonic's 4 MiB message
/// limit.
pub const MAX_CHUNK_BYTES: usize = 16 << 20;

/// The response stream of BatchCreate.
pub type BatchStream = ReceiverStream<Result<BatchResult, Status>>;

type Chunk = Result<Vec<CreateIdentifierRequest>, Status>;

/// Starts the reader and writer tasks for one BatchCreate call.
pub(crate) fn start(
    registry: Arc<Registry>,
    input: Streaming<CreateIdentifierRequest>,
) -> BatchStream {
    let (chunks_tx, chunks_rx) = mpsc::channel(2);
    let (results_tx, results_rx) = mpsc::channel(2 * MAX_CHUNK);
    tokio::spawn(read_chunks(input, chunks_tx));
    tokio::spawn(write_chunks(registry, chunks_rx, results_tx));
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
