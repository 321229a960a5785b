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

/// Accepts connections until `shutdown`, each served by `handle` on a task
/// of its own while it holds one of `max_connections` permits; a connection
/// over the cap is closed at once.
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let connection = handle(stream);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = connection => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "tcp connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
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
    limits: Limits,
    shutdown: CancellationToken,
) {
    accept_loop(listener, limits.max_connections, shutdown, |stream| {
        if let Ok(peer) = stream.peer_addr() {
            verified.saw(peer.ip());
        }
        let service = service.clone();
        async move { connection(stream, service, limits).await }
    })
    .await;
}

async fn connection(
    mut stream: TcpStream,
    service: Arc<HandleService>,
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
                        stream.write_all(&out).await?;
                    }
                    return Ok(());
                }
            };
            // An admin interface: a resolution asking for values without
            // public read may be challenged (`Outcome::Admin`).
            let mut outcome =
                service.respond_stream(&buf[..total], unix_now(), &mut out, &mut scratch);
            if let Outcome::Recurse { keep_open } = outcome {
                service.recurse(&buf[..total], &mut out, unix_now).await;
                outcome = Outcome::Reply { keep_open };
            }
            if let Outcome::Admin { keep_open } = outcome {
                for message in admin(&service, &buf[..total], "handle-tcp", peer).await {
                    stream.write_all(&message).await?;
                }
                out.clear();
                outcome = Outcome::Reply { keep_open };
            }
            buf.drain(..total);
            match outcome {
                Outcome::Drop | Outcome::Recurse { .. } | Outcome::Admin { .. } => return Ok(()),
                Outcome::Reply { keep_open } => {
                    if !out.is_empty() {
                        stream.write_all(&out).await?;
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
