//! BatchCreate: a client stream of items in, one result per item out.
//!
//! PERFORMANCE: the bulk registration path. A reader task takes from the
//! client stream whatever has arrived, up to [`MAX_CHUNK`] items or until
//! the stream pauses (or [`MAX_CHUNK_BYTES`]), and hands the chunk on; a writer task runs one
//! `Registry::batch_create` (one store commit) per chunk on a blocking
//! thread and streams back the results in order. The two run concurrently,
//! so the next chunk is read while the current one is committed, and a
//! client that waits for results before sending more never deadlocks. For
//! the operator's token on a node without site peers the writer is two
//! stages: one converts and checks a chunk (what needs no store) while the
//! other commits the chunk before it, so the commits follow each other
//! with little in between.
//!
//! A scoped token's items are checked one by one before a chunk is
//! written: an item outside its prefixes (or beyond its quota) gets its own
//! PERMISSION_DENIED (or RESOURCE_EXHAUSTED, beyond its quota or its
//! write rate) result and the others proceed.
//! The token is looked up again before each chunk, so a revocation stops a
//! running stream.

use crate::auth::{Auth, Grant};
use crate::error;
use crate::proto::{BatchResult, CreateIdentifierRequest};
use crate::quota::{self, Quota};
use crate::site::SitePeers;
use crate::tokens::{ADD_HANDLE, DELETE_HANDLE};
use idnode_core::Identifier;
use idnode_registry::{BatchItem, PreparedBatch, Registry};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
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

/// What one BatchCreate call writes with, and for whom.
pub(crate) struct Context {
    pub registry: Arc<Registry>,
    pub site: Option<Arc<SitePeers>>,
    pub auth: Arc<Auth>,
    /// The caller's token.
    pub grant: Grant,
    /// Who writes, from where: recorded with every change.
    pub origin: idnode_registry::Origin,
}

/// Starts the reader and writer tasks for one BatchCreate call.
pub(crate) fn start(context: Context, input: Streaming<CreateIdentifierRequest>) -> BatchStream {
    let (chunks_tx, chunks_rx) = mpsc::channel(2);
    let (results_tx, results_rx) = mpsc::channel(2 * MAX_CHUNK);
    tokio::spawn(read_chunks(input, chunks_tx));
    if context.grant.is_operator() && context.site.is_none() {
        let (judging_tx, judging_rx) = mpsc::channel(1);
        let registry = Arc::clone(&context.registry);
        // Two threads of their own for the stream's life: each stage keeps
        // its allocator's memory (a chunk's write batch is megabytes) and
        // its caches warm from one chunk to the next.
        let started = std::thread::Builder::new()
            .name("idnode-batch-prep".into())
            .spawn(move || prepare_chunks(&registry, chunks_rx, judging_tx))
            .and_then(|_| {
                let results = results_tx.clone();
                std::thread::Builder::new()
                    .name("idnode-batch-commit".into())
                    .spawn(move || commit_chunks(&context, judging_rx, &results))
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "no thread for a batch registration");
            let status = Status::resource_exhausted("the node cannot start a thread for the batch");
            let _ = results_tx.try_send(Err(status));
        }
    } else {
        tokio::spawn(write_chunks(context, chunks_rx, results_tx));
    }
    ReceiverStream::new(results_rx)
}

/// A chunk ready to commit, or why the stream ends.
type Prepared = Result<Judging, Status>;

/// The operator's stream on a node without site peers, first stage (a
/// thread of its own): each chunk is converted and checked (what needs no
/// store) while the chunk before it commits.
fn prepare_chunks(
    registry: &Registry,
    mut chunks: mpsc::Receiver<Chunk>,
    prepared: mpsc::Sender<Prepared>,
) {
    let mut next_item: u64 = 0;
    while let Some(chunk) = chunks.blocking_recv() {
        let ready = chunk.map(|items| {
            let first = next_item;
            next_item += items.len() as u64;
            prepare(registry, first, items)
        });
        let failed = ready.is_err();
        if prepared.blocking_send(ready).is_err() || failed {
            return; // the committer is gone, or the stream failed
        }
    }
}

/// The second stage (a thread of its own): one commit per chunk, in
/// order, then its results.
fn commit_chunks(
    context: &Context,
    mut prepared: mpsc::Receiver<Prepared>,
    results: &mpsc::Sender<Result<BatchResult, Status>>,
) {
    while let Some(ready) = prepared.blocking_recv() {
        let judging = match ready {
            Ok(judging) => judging,
            Err(status) => {
                let _ = results.blocking_send(Err(status));
                return;
            }
        };
        if let Err(status) = context
            .auth
            .recheck(&context.grant, &**context.registry.store())
        {
            let _ = results.blocking_send(Err(status));
            return;
        }
        let judged = idnode_registry::with_origin(context.origin.clone(), || {
            commit(&context.registry, judging)
        });
        for result in judged {
            // Most results fit the channel at once; parking the thread on
            // a runtime for each would cost more than the result.
            let result = match results.try_send(Ok(result)) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(result)) => result,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            };
            if results.blocking_send(result).is_err() {
                return; // the client went away
            }
        }
    }
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
    context: Context,
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
        if let Err(status) = context
            .auth
            .recheck(&context.grant, &**context.registry.store())
        {
            let _ = results.send(Err(status)).await;
            return;
        }
        tracing::debug!(items = items.len(), first = next_item, "batch chunk");
        let first = next_item;
        next_item += items.len() as u64;
        let judged = match context.grant.is_operator() {
            true => write_chunk(&context, first, items).await,
            false => screen_chunk(&context, first, items).await,
        };
        for result in judged {
            let failed = result.is_err();
            if results.send(result).await.is_err() || failed {
                return; // the client went away, or the batch failed
            }
        }
    }
}

/// Writes one chunk here or on the site servers that own its items: one
/// result per item, numbered from `first` (a single error when the chunk
/// failed as a whole).
async fn write_chunk(
    context: &Context,
    first: u64,
    items: Vec<CreateIdentifierRequest>,
) -> Vec<Result<BatchResult, Status>> {
    if let Some(site) = &context.site {
        return site_chunk(&context.registry, &context.origin, site, first, items).await;
    }
    let registry = Arc::clone(&context.registry);
    let origin = context.origin.clone();
    let judged = tokio::task::spawn_blocking(move || {
        idnode_registry::with_origin(origin, || judge(&registry, first, items))
    });
    match judged.await {
        Ok(judged) => judged.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::error!(error = %e, "a batch registration panicked or was cancelled");
            vec![Err(Status::internal("the batch failed inside the node"))]
        }
    }
}

/// A per-item refusal.
fn refused(item: u64, identifier: &str, code: Code, message: String) -> BatchResult {
    BatchResult {
        item,
        identifier: identifier.to_owned(),
        code: code as i32,
        message,
        ..Default::default()
    }
}

/// [`write_chunk`] for a scoped token: items outside its scope, or beyond
/// its quota, are refused alone; the others are written, and the ones
/// that created an identifier are counted against the quota.
async fn screen_chunk(
    context: &Context,
    first: u64,
    items: Vec<CreateIdentifierRequest>,
) -> Vec<Result<BatchResult, Status>> {
    let store = context.registry.store();
    let mut slots: Vec<Option<Result<BatchResult, Status>>> =
        (0..items.len()).map(|_| None).collect();
    let mut kept = Vec::with_capacity(items.len());
    for (at, item) in items.into_iter().enumerate() {
        let need = match item.overwrite {
            true => ADD_HANDLE | DELETE_HANDLE,
            false => ADD_HANDLE,
        };
        let allowed = context
            .grant
            .check_identifier(&item.identifier, need)
            .and_then(|()| context.auth.take_write(&context.grant));
        match allowed {
            Ok(()) => kept.push((at, item)),
            Err(status) => {
                let result = refused(
                    first + at as u64,
                    &item.identifier,
                    status.code(),
                    status.message().to_owned(),
                );
                slots[at] = Some(Ok(result));
            }
        }
    }
    let quota = match Quota::acquire(&context.auth, &context.grant, store).await {
        Ok(quota) => quota,
        Err(status) => return vec![Err(status)],
    };
    // Which kept items would add an identifier: what the quota counts.
    let mut new = vec![false; kept.len()];
    if let Some(quota) = &quota {
        let (mut keys, mut local) = (Vec::new(), Vec::new());
        for (n, (_, item)) in kept.iter().enumerate() {
            let remote = context
                .site
                .as_ref()
                .is_some_and(|site| site.owner_index(&item.identifier).is_some());
            match Identifier::parse(&item.identifier) {
                Ok(_) if remote => new[n] = true,
                Ok(id) => {
                    keys.push(id.key().to_owned());
                    local.push(n);
                }
                Err(_) => {}
            }
        }
        match quota::absent(store, keys).await {
            Ok(absent) => {
                for (n, absent) in local.into_iter().zip(absent) {
                    new[n] = absent;
                }
            }
            Err(status) => return vec![Err(status)],
        }
        let mut left = quota.left();
        let mut seen = HashSet::new();
        let mut within = Vec::with_capacity(kept.len());
        let mut counted = Vec::with_capacity(kept.len());
        for ((at, item), is_new) in kept.into_iter().zip(new) {
            let is_new = is_new && seen.insert(item.identifier.to_ascii_uppercase());
            if is_new {
                if left == 0 {
                    let result = refused(
                        first + at as u64,
                        &item.identifier,
                        Code::ResourceExhausted,
                        quota.message(),
                    );
                    slots[at] = Some(Ok(result));
                    continue;
                }
                left -= 1;
            }
            within.push((at, item));
            counted.push(is_new);
        }
        kept = within;
        new = counted;
    }
    let (positions, items): (Vec<usize>, Vec<_>) = kept.into_iter().unzip();
    let mut created = 0u64;
    if !items.is_empty() {
        let judged = write_chunk(context, 0, items).await;
        if judged.len() != positions.len() {
            if let Some(quota) = quota {
                quota.add(0).await;
            }
            return judged; // the chunk failed as a whole
        }
        for ((at, mut result), is_new) in positions.into_iter().zip(judged).zip(new) {
            if let Ok(r) = &mut result {
                r.item = first + at as u64;
                if is_new && r.code == 0 {
                    created += 1;
                }
            }
            slots[at] = Some(result);
        }
    }
    if let Some(quota) = quota {
        quota.add(created).await;
    }
    slots
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Status::internal("a batch item got no result"))))
        .collect()
}

/// Converts and registers one chunk (on a blocking thread); one result per
/// item, numbered from `first`.
fn judge(registry: &Registry, first: u64, items: Vec<CreateIdentifierRequest>) -> Vec<BatchResult> {
    let judging = prepare(registry, first, items);
    commit(registry, judging)
}

/// A chunk converted and checked without the store, waiting for its
/// commit: the results so far, and where the prepared items go in them.
struct Judging {
    out: Vec<BatchResult>,
    positions: Vec<usize>,
    prepared: PreparedBatch,
}

/// The first half of [`judge`]: what needs no store.
fn prepare(registry: &Registry, first: u64, items: Vec<CreateIdentifierRequest>) -> Judging {
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
    Judging {
        out,
        positions,
        prepared: registry.prepare_batch(valid),
    }
}

/// The second half of [`judge`]: the commit, and the results.
fn commit(registry: &Registry, judging: Judging) -> Vec<BatchResult> {
    let Judging {
        mut out,
        positions,
        prepared,
    } = judging;
    let mut full = false;
    for (at, outcome) in positions.into_iter().zip(registry.commit_batch(prepared)) {
        let result = &mut out[at];
        match outcome {
            Ok(record) => result.version = record.version,
            Err(e) => {
                if e.is_no_space() && !full {
                    full = true;
                    tracing::warn!(error = %e, "batch items refused: the disk is full");
                }
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
    origin: &idnode_registry::Origin,
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
        let origin = origin.clone();
        let judged = tokio::task::spawn_blocking(move || {
            idnode_registry::with_origin(origin, || judge(&registry, 0, items))
        });
        match judged.await {
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
