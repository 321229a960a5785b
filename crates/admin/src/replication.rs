//! Mirrors: the `idnode.v1.Replication` service a primary answers
//! ([`ReplicationService`]: its change log as a stream, or a copy of its
//! whole store first when it no longer holds the changes a mirror
//! misses), and the task a mirror runs to follow it ([`spawn_mirror`]:
//! applies each batch in one transaction with the primary's own sequence
//! numbers, loads a copy through [`Store::replace`], reconnects with
//! backoff, reports how far behind it is through [`MirrorState`]).

use crate::auth::Auth;
use crate::proto;
use crate::proto::replication_client::ReplicationClient;
use crate::proto::replication_server::Replication;
use crate::tls::ClientTls;
use bytes::Bytes;
use idnode_registry::Registry;
use idnode_registry::retention::LogHold;
use idnode_store::{Change, Replace, Space, Store, StoreError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Changes read from the log at a time.
const READ_CHANGES: usize = 1000;
/// A message is sent once its changes or entries hold about this many
/// bytes (one larger change is sent alone).
const MESSAGE_BYTES: usize = 1 << 20;
/// Entries of a snapshot read at a time.
const SNAPSHOT_PAGE: usize = 1000;
/// How often the primary looks for new commits while there are none.
const POLL: Duration = Duration::from_millis(20);
/// A heartbeat is sent after this long without a message.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Largest message a mirror accepts (a batch holds one change at least,
/// whatever its size).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// The mirror's reconnection backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A mirror that hears nothing for this long (heartbeats come every
/// second) takes the stream for dead and reconnects.
const SILENCE: Duration = Duration::from_secs(10);

type FollowStream = ReceiverStream<Result<proto::FollowResponse, Status>>;

/// The Replication service of a node (primary or mirror: a mirror can be
/// followed in turn).
pub struct ReplicationService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for ReplicationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationService").finish_non_exhaustive()
    }
}

impl ReplicationService {
    /// Streams end when `stop` turns true (the node stops: a stream that
    /// never ends would hold the gRPC server's graceful shutdown). While a
    /// mirror follows, the registry's retention keeps the changes after
    /// what it was sent.
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>, stop: watch::Receiver<bool>) -> Self {
        Self {
            registry,
            auth,
            stop,
        }
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    type FollowStream = FollowStream;

    async fn follow(
        &self,
        request: Request<proto::FollowRequest>,
    ) -> Result<Response<FollowStream>, Status> {
        let caller = self
            .auth
            .caller(request.metadata(), &**self.registry.store())?;
        // The stream carries every key space, token hashes included: an
        // operator token, or one made only for this (`replicate`).
        caller
            .grant("following this node's change log")?
            .require_replicate("following this node's change log")?;
        let after = request.into_inner().after;
        let (tx, rx) = mpsc::channel(4);
        let store = self.registry.store().clone();
        let hold = self.registry.hold_change_log(after);
        let stop = self.stop.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(status) = feed(&*store, after, &hold, &tx, &stop) {
                let _ = tx.blocking_send(Err(status));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why a feed ended: the follower went away, the node stops, or an error
/// to send it.
enum Ended {
    Quietly,
    Failed(Status),
}

/// Sends the changes after `after`, then new ones as they commit, until
/// the follower goes away or the node stops (on a blocking thread).
fn feed(
    store: &dyn Store,
    after: u64,
    hold: &LogHold,
    tx: &mpsc::Sender<Result<proto::FollowResponse, Status>>,
    stop: &watch::Receiver<bool>,
) -> Result<(), Status> {
    match feed_until_ended(store, after, hold, tx, stop) {
        Ended::Quietly => Ok(()),
        Ended::Failed(status) => Err(status),
    }
}

fn feed_until_ended(
    store: &dyn Store,
    mut after: u64,
    hold: &LogHold,
    tx: &mpsc::Sender<Result<proto::FollowResponse, Status>>,
    stop: &watch::Receiver<bool>,
) -> Ended {
    let send = |message: proto::FollowResponse| -> Result<(), Ended> {
        tx.blocking_send(Ok(message)).map_err(|_| Ended::Quietly)
    };
    let mut last_sent = Instant::now();
    loop {
        if *stop.borrow() || tx.is_closed() {
            return Ended::Quietly;
        }
        // Read the last sequence first: the log read next holds it at
        // least (a change and its log entry are one batch).
        let primary = store.last_sequence();
        let changes = match store.changes_since(after, READ_CHANGES) {
            Ok(changes) => changes,
            Err(e) => return store_failure(&e),
        };
        if needs_copy(after, primary, &changes) {
            tracing::info!(
                after,
                primary,
                oldest = changes.first().map(|c| c.sequence),
                "a mirror needs changes this node no longer holds: sending a copy of the store"
            );
            match send_snapshot(store, &send) {
                Ok(sequence) => after = sequence,
                Err(ended) => return ended,
            }
            hold.advance(after);
            last_sent = Instant::now();
            continue;
        }
        if changes.is_empty() {
            if last_sent.elapsed() >= HEARTBEAT {
                if let Err(ended) = send(proto::FollowResponse {
                    primary_sequence: primary,
                    ..Default::default()
                }) {
                    return ended;
                }
                last_sent = Instant::now();
            }
            std::thread::sleep(POLL);
            continue;
        }
        let primary = primary.max(changes.last().map_or(0, |c| c.sequence));
        let mut batch = Vec::new();
        let mut bytes = 0;
        for change in changes {
            after = change.sequence;
            bytes += change.key.len()
                + change.value.as_ref().map_or(0, Bytes::len)
                + change.origin.as_ref().map_or(0, Bytes::len)
                + 16;
            batch.push(to_proto(change));
            if bytes >= MESSAGE_BYTES {
                let changes = std::mem::take(&mut batch);
                bytes = 0;
                if let Err(ended) = send(proto::FollowResponse {
                    changes,
                    primary_sequence: primary,
                    snapshot: None,
                }) {
                    return ended;
                }
            }
        }
        if !batch.is_empty()
            && let Err(ended) = send(proto::FollowResponse {
                changes: batch,
                primary_sequence: primary,
                snapshot: None,
            })
        {
            return ended;
        }
        hold.advance(after);
        last_sent = Instant::now();
    }
}

/// Whether a follower that applied up to `after` needs a copy of the whole
/// store rather than the log: the log no longer starts right after
/// `after` (trimmed, or this store was restored from an older copy than
/// the follower holds), or the follower is ahead of this store.
fn needs_copy(after: u64, last: u64, changes: &[Change]) -> bool {
    if after > last {
        return true;
    }
    after < last && changes.first().is_none_or(|c| c.sequence != after + 1)
}

fn store_failure(e: &StoreError) -> Ended {
    tracing::error!(error = %e, "cannot read the change log for a mirror");
    Ended::Failed(Status::internal(
        "cannot read the change log; the primary's log has the details",
    ))
}

/// Sends a copy of every key space as of one snapshot; returns its
/// sequence number.
fn send_snapshot(
    store: &dyn Store,
    send: &dyn Fn(proto::FollowResponse) -> Result<(), Ended>,
) -> Result<u64, Ended> {
    let snapshot = store.snapshot().map_err(|e| store_failure(&e))?;
    let sequence = snapshot.sequence();
    let part = |begin: bool, entries: Vec<proto::SnapshotEntry>, end: bool| proto::FollowResponse {
        changes: Vec::new(),
        primary_sequence: sequence,
        snapshot: Some(proto::SnapshotPart {
            begin,
            entries,
            end,
            sequence,
        }),
    };
    let mut begin = true;
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut total = 0u64;
    for space in Space::ALL {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snapshot
                .scan(space, b"", after.as_deref(), SNAPSHOT_PAGE)
                .map_err(|e| store_failure(&e))?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, value) in page {
                bytes += key.len() + value.len() + 8;
                total += 1;
                entries.push(proto::SnapshotEntry {
                    space: u32::from(space.tag()),
                    key,
                    value: value.to_vec(),
                });
                if bytes >= MESSAGE_BYTES {
                    send(part(begin, std::mem::take(&mut entries), false))?;
                    begin = false;
                    bytes = 0;
                }
            }
        }
    }
    send(part(begin, entries, true))?;
    tracing::info!(
        sequence,
        entries = total,
        "sent a copy of the store to a mirror"
    );
    Ok(sequence)
}

fn to_proto(change: Change) -> proto::ReplicatedChange {
    proto::ReplicatedChange {
        sequence: change.sequence,
        space: u32::from(change.space.tag()),
        key: change.key,
        value: change.value.map(|v| v.to_vec()),
        origin: change.origin.map(|o| o.to_vec()),
    }
}

fn space_of(tag: u32) -> Result<Space, String> {
    u8::try_from(tag)
        .ok()
        .and_then(Space::from_tag)
        .ok_or_else(|| format!("the primary sent key space {tag}, which this node does not know"))
}

fn from_proto(change: proto::ReplicatedChange) -> Result<Change, String> {
    Ok(Change {
        sequence: change.sequence,
        space: space_of(change.space)?,
        key: change.key,
        value: change.value.map(Bytes::from),
        origin: change.origin.map(Bytes::from),
    })
}

/// Where a mirror's primary is and how to reach it.
#[derive(Debug, Clone)]
pub struct MirrorSource {
    /// The primary's gRPC endpoint (`host:port`, `http://` or `https://`).
    pub primary: String,
    /// A token the primary accepts for Follow.
    pub token: String,
    /// TLS settings for an `https://` endpoint.
    pub tls: ClientTls,
}

/// How a mirror is doing, for `idnode status` and `/metrics`.
#[derive(Debug)]
pub struct MirrorState {
    primary: String,
    connected: AtomicBool,
    primary_sequence: AtomicU64,
    snapshots: AtomicU64,
    last_contact: Mutex<Option<Instant>>,
    last_error: Mutex<String>,
}

impl MirrorState {
    pub fn new(primary: impl Into<String>) -> Self {
        Self {
            primary: primary.into(),
            connected: AtomicBool::new(false),
            primary_sequence: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            last_contact: Mutex::new(None),
            last_error: Mutex::new(String::new()),
        }
    }

    /// The primary, as configured.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The primary's last sequence as it last said (0 before contact).
    pub fn primary_sequence(&self) -> u64 {
        self.primary_sequence.load(Ordering::Relaxed)
    }

    /// Copies of the primary's store loaded since the start.
    pub fn snapshots_loaded(&self) -> u64 {
        self.snapshots.load(Ordering::Relaxed)
    }

    /// Time since the primary last sent anything.
    pub fn since_contact(&self) -> Option<Duration> {
        self.last_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }

    /// The status message, given the sequence applied here.
    pub fn status(&self, applied: u64) -> proto::MirrorStatus {
        let primary_sequence = self.primary_sequence();
        proto::MirrorStatus {
            primary: self.primary.clone(),
            connected: self.connected(),
            applied_sequence: applied,
            primary_sequence,
            lag_changes: primary_sequence.saturating_sub(applied),
            seconds_since_contact: self.since_contact().map(|d| d.as_secs_f64()),
            snapshots_loaded: self.snapshots_loaded(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn contact(&self, primary_sequence: u64) {
        self.primary_sequence
            .store(primary_sequence, Ordering::Relaxed);
        *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn set_error(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_owned();
    }
}

/// Starts following `source` into `store` (the node's observed store, not
/// the read-only one its callers see) until `stop` completes. Runs on a
/// blocking thread: it owns the store's writes while a copy loads.
pub fn spawn_mirror(
    source: MirrorSource,
    store: Arc<dyn Store>,
    state: Arc<MirrorState>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || mirror_loop(&runtime, &source, &*store, &state, stop_rx))
}

/// What ended one stream.
enum StreamEnd {
    Stopped,
    Error(String),
}

fn mirror_loop(
    runtime: &tokio::runtime::Handle,
    source: &MirrorSource,
    store: &dyn Store,
    state: &MirrorState,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    loop {
        let started = Instant::now();
        match follow_once(runtime, source, store, state, &mut stop) {
            StreamEnd::Stopped => return,
            StreamEnd::Error(error) => {
                let was_connected = state.connected.swap(false, Ordering::Relaxed);
                state.set_error(&error);
                // Logged when the stream is lost and when the reason
                // changes, not at every retry.
                if was_connected || error != last_error {
                    tracing::warn!(primary = %source.primary, error = %error,
                        "mirror: cannot follow the primary; retrying");
                }
                last_error = error;
                if was_connected && started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_MIN;
                }
            }
        }
        let stopped = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(backoff) => false,
                _ = stop.wait_for(|s| *s) => true,
            }
        });
        if stopped {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects, follows until the stream ends; returns why.
fn follow_once(
    runtime: &tokio::runtime::Handle,
    source: &MirrorSource,
    store: &dyn Store,
    state: &MirrorState,
    stop: &mut watch::Receiver<bool>,
) -> StreamEnd {
    let after = store.last_sequence();
    let opened = runtime.block_on(async {
        let open = async {
            let channel = crate::client::open_channel(&source.primary, &source.tls)
                .await
                .map_err(|e| e.to_string())?;
            let interceptor =
                crate::client::BearerToken::new(Some(&source.token)).map_err(|e| e.to_string())?;
            let mut client = ReplicationClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            client
                .follow(proto::FollowRequest { after })
                .await
                .map(Response::into_inner)
                .map_err(|s| format!("{}: {}", s.code(), s.message()))
        };
        tokio::select! {
            r = open => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        }
    });
    let mut stream = match opened {
        None => return StreamEnd::Stopped,
        Some(Err(e)) => return StreamEnd::Error(e),
        Some(Ok(stream)) => stream,
    };
    state.connected.store(true, Ordering::Relaxed);
    state.set_error("");
    tracing::info!(primary = %source.primary, after, "mirror: following the primary");
    let mut loading: Option<Box<dyn Replace + '_>> = None;
    loop {
        let next = runtime.block_on(async {
            tokio::select! {
                m = tokio::time::timeout(SILENCE, stream.message()) => Some(m),
                _ = stop.wait_for(|s| *s) => None,
            }
        });
        let message = match next {
            None => return StreamEnd::Stopped,
            Some(Err(_)) => {
                return StreamEnd::Error(format!(
                    "the primary sent nothing for {} s",
                    SILENCE.as_secs()
                ));
            }
            Some(Ok(Err(status))) => {
                return StreamEnd::Error(format!("{}: {}", status.code(), status.message()));
            }
            Some(Ok(Ok(None))) => return StreamEnd::Error("the primary ended the stream".into()),
            Some(Ok(Ok(Some(message)))) => message,
        };
        state.contact(message.primary_sequence);
        if let Err(e) = apply(store, state, message, &mut loading) {
            return StreamEnd::Error(e);
        }
    }
}

/// Applies one message: a batch of changes in one transaction, or a part
/// of a copy.
fn apply<'s>(
    store: &'s dyn Store,
    state: &MirrorState,
    message: proto::FollowResponse,
    loading: &mut Option<Box<dyn Replace + 's>>,
) -> Result<(), String> {
    let failed = |e: StoreError| format!("cannot apply the primary's changes here: {e}");
    if let Some(part) = message.snapshot {
        if part.begin {
            // (A second beginning would wait forever for the writer lock
            // the first one holds.)
            if loading.is_some() {
                return Err("the primary began a copy in the middle of another".into());
            }
            tracing::info!(
                sequence = part.sequence,
                "mirror: loading a copy of the primary's store (it no longer holds the changes \
                 this mirror misses)"
            );
            *loading = Some(store.replace().map_err(failed)?);
        }
        let Some(replace) = loading.as_mut() else {
            return Err("the primary sent part of a copy without its beginning".into());
        };
        for entry in part.entries {
            let space = space_of(entry.space)?;
            replace
                .put(space, &entry.key, Bytes::from(entry.value))
                .map_err(failed)?;
        }
        if part.end {
            let Some(replace) = loading.take() else {
                return Err("the primary sent part of a copy without its beginning".into());
            };
            replace.finish(part.sequence).map_err(failed)?;
            state.snapshots.fetch_add(1, Ordering::Relaxed);
            tracing::info!(sequence = part.sequence, "mirror: copy loaded");
        }
        return Ok(());
    }
    if loading.is_some() {
        return Err("the primary sent changes in the middle of a copy".into());
    }
    if message.changes.is_empty() {
        return Ok(());
    }
    let mut txn = store.begin().map_err(failed)?;
    for change in message.changes {
        txn.apply(from_proto(change)?).map_err(failed)?;
    }
    txn.commit().map_err(failed)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn change(sequence: u64) -> Change {
        Change {
            sequence,
            space: Space::Records,
            key: b"k".to_vec(),
            value: None,
            origin: None,
        }
    }

    #[test]
    fn a_copy_is_needed_only_when_the_log_does_not_go_on_from_the_follower() {
        assert!(!needs_copy(0, 0, &[]));
        assert!(!needs_copy(5, 5, &[]));
        assert!(!needs_copy(0, 3, &[change(1)]));
        assert!(!needs_copy(4, 9, &[change(5)]));
        // Trimmed past the follower, or emptied.
        assert!(needs_copy(4, 9, &[change(7)]));
        assert!(needs_copy(4, 9, &[]));
        // The follower is ahead (this store is an older copy).
        assert!(needs_copy(10, 9, &[]));
    }

    #[test]
    fn unknown_key_spaces_are_refused_not_a_panic() {
        assert!(space_of(0).is_err());
        assert!(space_of(1 << 20).is_err());
        assert_eq!(space_of(1).unwrap(), Space::Records);
    }

    #[test]
    fn a_batch_applies_with_its_sequences_and_a_gap_applies_nothing() {
        let store = idnode_store::MemoryStore::new();
        let state = MirrorState::new("primary");
        let mut loading = None;
        let batch = |seqs: &[u64]| proto::FollowResponse {
            changes: seqs
                .iter()
                .map(|&s| {
                    to_proto(Change {
                        value: Some(Bytes::from(format!("v{s}"))),
                        ..change(s)
                    })
                })
                .collect(),
            primary_sequence: 9,
            snapshot: None,
        };
        apply(&store, &state, batch(&[1, 2]), &mut loading).unwrap();
        assert_eq!(store.last_sequence(), 2);
        assert!(apply(&store, &state, batch(&[3, 5]), &mut loading).is_err());
        assert_eq!(store.last_sequence(), 2);
        // A copy replaces everything and sets the sequence.
        let part = |begin, end| proto::FollowResponse {
            snapshot: Some(proto::SnapshotPart {
                begin,
                entries: vec![proto::SnapshotEntry {
                    space: 2,
                    key: if begin { b"a".to_vec() } else { b"b".to_vec() },
                    value: b"p".to_vec(),
                }],
                end,
                sequence: 40,
            }),
            ..Default::default()
        };
        assert!(apply(&store, &state, part(false, true), &mut loading).is_err());
        apply(&store, &state, part(true, false), &mut loading).unwrap();
        assert!(apply(&store, &state, part(true, false), &mut loading).is_err());
        apply(&store, &state, part(false, true), &mut loading).unwrap();
        assert_eq!(store.last_sequence(), 40);
        assert_eq!(store.get(Space::Records, b"k").unwrap(), None);
        assert_eq!(store.scan(Space::Prefixes, b"", None, 10).unwrap().len(), 2);
        assert_eq!(state.snapshots_loaded(), 1);
        apply(&store, &state, batch(&[41]), &mut loading).unwrap();
        assert_eq!(store.last_sequence(), 41);
    }
}
