//! Handle over TCP: envelope + message, repeated on the stream; the
//! keep-connection flag (KC) keeps it open for the next request. The accept
//! loop with its connection cap ([`accept_loop`]) serves DNS over TCP too.

use crate::unix_now;
use idnode_authority::{HandleService, Outcome, Scratch};
use idnode_handle::{MAX_MESSAGE_LEN, frame_len};
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    /// Silence allowed between requests.
    pub idle_timeout: Duration,
    /// Time allowed from a request's first byte to its last.
    pub request_timeout: Duration,
}

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Most connections one source address may hold at once: an eighth of
/// the listener's cap, at least 16, so that one host cannot take every
/// slot.
pub(crate) fn per_source_cap(max_connections: usize) -> usize {
    (max_connections / 8).max(16)
}

/// Open connections by source address.
#[derive(Default)]
struct BySource(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl BySource {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for `ip` unless it holds `cap` already.
    fn take(&self, ip: std::net::IpAddr, cap: usize) -> bool {
        let mut map = self.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, ip: std::net::IpAddr) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// Accepts connections until `shutdown`, each served by `handle` on a task
/// of its own while it holds one of `max_connections` permits and one of
/// its source's [`per_source_cap`] slots; a connection over either cap is
/// closed at once.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(TcpStream) -> F,
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let by_source = Arc::new(BySource::default());
    let source_cap = per_source_cap(max_connections);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        if !by_source.take(peer.ip(), source_cap) {
            tracing::debug!(%peer, cap = source_cap, "per-source connection limit reached; closing new connection");
            drop(stream);
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            by_source.give_back(peer.ip());
            drop(stream);
            continue;
        };
        let connection = handle(stream);
        let shutdown = shutdown.clone();
        let by_source = by_source.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = connection => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "tcp connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
            by_source.give_back(peer.ip());
            drop(permit);
        });
    }
}

/// Handle over TCP until `shutdown`.
/// Each connection's source is recorded in `verified`: it has shown that
/// it receives what is sent to it (see `rrl::VerifiedSources`).
pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<HandleService>,
    verified: Arc<crate::rrl::VerifiedSources>,
    counts: Arc<crate::metrics::StreamCounts>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    accept_loop(listener, limits.max_connections, shutdown, |stream| {
        if let Ok(peer) = stream.peer_addr() {
            verified.saw(peer.ip());
        }
        let (service, counts) = (service.clone(), counts.clone());
        async move { connection(stream, service, counts, limits).await }
    })
    .await;
}

async fn connection(
    mut stream: TcpStream,
    service: Arc<HandleService>,
    counts: Arc<crate::metrics::StreamCounts>,
    limits: Limits,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Scratch::default();
    let mut chunk = vec![0u8; 16 * 1024];
    // When the first byte of a still-incomplete request arrived.
    let mut partial_since: Option<Instant> = None;
    loop {
        // Answer every complete message already buffered (pipelining).
        loop {
            let total = match frame_len(&buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => {
                    // A frame we will never accept (bad envelope, or longer
                    // than MAX_MESSAGE_LEN): answer if we can, then close.
                    let end = buf.len().min(MAX_MESSAGE_LEN);
                    if service.respond(&buf[..end], unix_now(), &mut out, &mut scratch)
                        != Outcome::Drop
                    {
                        send(&mut stream, &out, limits.request_timeout).await?;
                    }
                    return Ok(());
                }
            };
            let started = counts.start();
            // An admin interface: a resolution asking for values without
            // public read may be challenged (`Outcome::Admin`).
            let mut outcome =
                service.respond_stream(&buf[..total], unix_now(), &mut out, &mut scratch);
            if let Outcome::Recurse { keep_open } = outcome {
                if service.may_recurse_for(peer.ip()) {
                    service.recurse(&buf[..total], &mut out, unix_now).await;
                } else {
                    service.refuse_recursion(&buf[..total], unix_now(), &mut out);
                }
                outcome = Outcome::Reply { keep_open };
            }
            // Administration (and authenticated reads) are not counted
            // as resolutions.
            let counted = !matches!(outcome, Outcome::Admin { .. });
            if let Outcome::Admin { keep_open } = outcome {
                for message in admin(&service, &buf[..total], "handle-tcp", peer).await {
                    send(&mut stream, &message, limits.request_timeout).await?;
                }
                out.clear();
                outcome = Outcome::Reply { keep_open };
            }
            buf.drain(..total);
            match outcome {
                Outcome::Drop | Outcome::Recurse { .. } | Outcome::Admin { .. } => {
                    if counted {
                        counts.unanswered();
                    }
                    return Ok(());
                }
                Outcome::Reply { keep_open } => {
                    if !out.is_empty() {
                        send(&mut stream, &out, limits.request_timeout).await?;
                        if counted {
                            let succeeded = crate::metrics::handle_succeeded(&out);
                            counts.answered(started, succeeded);
                        }
                    } else if counted {
                        counts.unanswered();
                    }
                    if !keep_open && buf.is_empty() {
                        stream.shutdown().await?;
                        return Ok(());
                    }
                }
            }
        }
        let wait = match (buf.is_empty(), partial_since) {
            (true, _) => {
                partial_since = None;
                limits.idle_timeout
            }
            (false, Some(since)) => limits.request_timeout.saturating_sub(since.elapsed()),
            (false, None) => {
                partial_since = Some(Instant::now());
                limits.request_timeout
            }
        };
        let n = match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()), // idle, or a request that trickles in too slowly
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes an answer, or fails when the client does not take it within
/// `limit` (a client that pipelines requests and never reads would
/// otherwise hold its connection and the answers queued for it forever).
async fn send(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not take its answer in time",
        )),
    }
}

/// Answers an admin request, a challenge answer or a resolution that
/// needs authentication on a blocking thread
/// (it reads and writes the store, and may verify a signature): the
/// messages to send, in order.
pub(crate) async fn admin(
    service: &Arc<HandleService>,
    message: &[u8],
    surface: &'static str,
    peer: std::net::SocketAddr,
) -> Vec<Vec<u8>> {
    let (service, message) = (service.clone(), message.to_vec());
    let answer = move || service.respond_admin_from(&message, unix_now(), surface, Some(peer));
    match tokio::task::spawn_blocking(answer).await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(error = %e, "handle admin task failed");
            Vec::new()
        }
    }
}
