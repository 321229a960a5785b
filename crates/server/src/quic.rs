//! Handle over QUIC (not part of the standard; ALPN `hdl`): the TCP framing
//! (envelope + message) on bidirectional streams, one request per stream,
//! many streams in flight on one connection.
//!
//! The machinery (endpoints, limits, stream tasks) is generic over a
//! `StreamProtocol`: one request read to the end of its stream, one answer
//! written, the stream finished. DNS over QUIC (RFC 9250, `dns.rs`) is the
//! other protocol served this way.
//!
//! Several quinn endpoints share the port through SO_REUSEPORT sockets, one
//! per worker, so QUIC packet processing is not bound to one core; each
//! worker is a thread with a single-threaded runtime of its own (see
//! `Worker`), like the UDP workers. A packet goes to the endpoint that
//! issued its destination connection ID (a BPF program on the group reads
//! it, see `cids.rs` and `idnode_udp::steer`), not by the peer's address, so a connection keeps
//! its endpoint when the client's address changes: connection migration
//! is on (NAT rebinding, a client moving between networks).
//!
//! Per stream (performance-critical path): read the request to the end of
//! the stream (at most one whole Handle message), answer it with
//! [`HandleService::respond_stream`] into pooled buffers, write the answer
//! and finish the stream. Nothing waits for the peer to acknowledge.
//! Administration, and a resolution asking for values without public read
//! (challenged, as on TCP), are answered later on a blocking thread.
//!
//! Limits, so that no client can exhaust the node:
//! - connections: at most `max_connections` over all workers; further ones
//!   are refused during the handshake;
//! - streams: at most `max_streams_per_connection` open bidirectional
//!   streams per connection (QUIC stream credit: the client cannot open
//!   more until earlier ones are done);
//! - time: a stream whose request and answer are not through within
//!   `request_timeout` is reset and stopped (code [`error_code::TIMEOUT`]),
//!   which gives its credit back; a connection silent for `idle_timeout`
//!   is closed;
//! - memory: the bytes a peer may send ahead of our reads are bounded by
//!   the flow-control windows below; requests already read are at most one
//!   message (256 KiB) per open stream, held for `request_timeout` at most
//!   (so `max_streams_per_connection` x 256 KiB per connection in the worst
//!   case: real resolution requests are around 100 bytes); at most
//!   [`RESPONDERS_PER_CONNECTION`] answers of one connection are being
//!   built or written at once.

use crate::cids::EndpointCids;
use crate::tls::{CERT_FILE, CertificateSource, Fingerprint, TLS_DIR, TlsIdentity};
use crate::unix_now;
use idnode_authority::{HandleService, Outcome, Scratch};
use idnode_handle::{ENVELOPE_LEN, MAX_MESSAGE_LEN};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, Incoming, ReadToEndError, VarInt};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

pub use idnode_handle::quic::ALPN;

/// Application error codes on streams (RESET_STREAM, STOP_SENDING) and
/// connections (CONNECTION_CLOSE).
pub mod error_code {
    /// Connection closed because the node shuts down.
    pub const SHUTDOWN: u32 = 0;
    /// The request did not arrive in full, or its answer was not taken,
    /// within the request timeout.
    pub const TIMEOUT: u32 = 1;
    /// More bytes on the stream than one Handle message may hold.
    pub const TOO_LONG: u32 = 2;
    /// Not a Handle message the node can answer, even with an error.
    pub const UNANSWERABLE: u32 = 3;
}

/// Request bytes one connection may have in flight ahead of our reads.
const CONNECTION_RECEIVE_WINDOW: u32 = 1 << 20;
/// Answer bytes one connection may have buffered, not yet acknowledged.
const CONNECTION_SEND_WINDOW: u64 = 4 << 20;
/// Answers of one connection built or written at once (each holds an
/// answer buffer while the peer takes it).
pub const RESPONDERS_PER_CONNECTION: usize = 32;
/// Answer buffers larger than this are not kept for reuse.
const POOLED_BUFFER_MAX: usize = 64 * 1024;

/// Settings of the QUIC listener.
#[derive(Debug, Clone)]
pub struct QuicOptions {
    pub listen: SocketAddr,
    /// Endpoints on SO_REUSEPORT sockets; 0 means one per core.
    pub workers: usize,
    /// Most connections at once, over all workers.
    pub max_connections: usize,
    /// Most bidirectional streams (requests) open at once per connection.
    pub max_streams_per_connection: u32,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
    /// Time allowed for a stream's request to arrive and its answer to be
    /// taken.
    pub request_timeout: Duration,
    pub certificate: CertificateSource,
    /// Whether requests, answers and their times are counted (`metrics`).
    pub metrics: bool,
}

/// A running QUIC listener: Handle (ALPN `hdl`), or DNS over QUIC (ALPN
/// `doq`, [`QuicListener::start_dns`]).
pub struct QuicListener {
    pub addr: SocketAddr,
    /// SHA-256 of the certificate the listener presents (clients pin it).
    pub fingerprint: Fingerprint,
    /// The PEM file of that certificate (generated or configured).
    pub certificate: PathBuf,
    /// What the listener counts.
    pub counts: Arc<crate::metrics::StreamCounts>,
    endpoints: Vec<Endpoint>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    /// One per worker thread, resolved when it has stopped.
    done: Vec<oneshot::Receiver<()>>,
    stop: CancellationToken,
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for QuicListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicListener")
            .field("addr", &self.addr)
            .field("fingerprint", &self.fingerprint)
            .field("workers", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// How a stream fails: what the listener resets, or closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Reset the stream (and stop reading it) with this application code.
    Stream(u32),
    /// Close the whole connection with this application code.
    Connection(u32),
}

/// A request-answer protocol on QUIC bidirectional streams: one request
/// per stream, read to the stream's end, one answer written, the stream
/// finished.
pub(crate) trait StreamProtocol: Send + Sync + 'static {
    /// The most bytes one request stream may carry.
    const REQUEST_LIMIT: usize;
    /// How a stream fails whose request and answer are not through within
    /// the request timeout.
    const TIMEOUT: Failure;
    /// How a stream fails that carries more than [`Self::REQUEST_LIMIT`].
    const TOO_LONG: Failure;
    /// How a stream fails that cannot be read or written (reset by the
    /// peer, connection lost).
    const BROKEN: Failure;
    /// Working memory of one answer, pooled per connection.
    type Scratch: Default + Send;
    /// Writes the bytes to send in answer to `request` (framing included)
    /// into `out`, or says how the stream fails. Never panics, whatever the
    /// request holds.
    fn answer(
        &self,
        request: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Self::Scratch,
    ) -> Result<Answer, Failure>;

    /// Writes the answer that [`answer`](Self::answer) deferred; `peer`
    /// is the client's address.
    fn answer_deferred<'a>(
        &'a self,
        _request: &'a [u8],
        _out: &'a mut Vec<u8>,
        _peer: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        async {}
    }

    /// Whether a deferred request counts as a resolution or query in the
    /// metrics (administration does not).
    fn deferred_is_counted(&self, _request: &[u8]) -> bool {
        true
    }

    /// Whether an answer (as written to the stream) says success.
    fn succeeded(answer: &[u8]) -> bool;
}

/// What [`StreamProtocol::answer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The answer is in `out`.
    Ready,
    /// The answer needs waiting (recursion upstream): call
    /// [`StreamProtocol::answer_deferred`].
    Deferred,
}

/// The Handle protocol on QUIC streams.
struct HandleStreams {
    service: Arc<HandleService>,
}

impl StreamProtocol for HandleStreams {
    const REQUEST_LIMIT: usize = ENVELOPE_LEN + MAX_MESSAGE_LEN;
    const TIMEOUT: Failure = Failure::Stream(error_code::TIMEOUT);
    const TOO_LONG: Failure = Failure::Stream(error_code::TOO_LONG);
    const BROKEN: Failure = Failure::Stream(error_code::UNANSWERABLE);
    type Scratch = Scratch;

    fn answer(
        &self,
        request: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Result<Answer, Failure> {
        // The codec checks the envelope against the stream's length: a
        // truncated message or trailing bytes get a protocol error answer.
        match self
            .service
            .respond_stream(request, unix_now(), out, scratch)
        {
            Outcome::Drop => Err(Failure::Stream(error_code::UNANSWERABLE)),
            Outcome::Reply { .. } => Ok(Answer::Ready),
            Outcome::Recurse { .. } | Outcome::Admin { .. } => Ok(Answer::Deferred),
        }
    }

    async fn answer_deferred(&self, request: &[u8], out: &mut Vec<u8>, peer: std::net::SocketAddr) {
        // Admin requests, challenge answers and resolutions that need
        // authentication, as `respond_stream` decided; the rest recursed.
        if self.service.defers_to_admin(request) {
            // Every message of the answer on the stream, in order.
            out.clear();
            for message in crate::tcp::admin(&self.service, request, "handle-quic", peer).await {
                out.extend_from_slice(&message);
            }
        } else if self.service.may_recurse_for(peer.ip()) {
            self.service.recurse(request, out, unix_now).await;
        } else {
            self.service.refuse_recursion(request, unix_now(), out);
        }
    }

    fn deferred_is_counted(&self, request: &[u8]) -> bool {
        !self.service.defers_to_admin(request)
    }

    fn succeeded(answer: &[u8]) -> bool {
        crate::metrics::handle_succeeded(answer)
    }
}

/// What every connection task of one listener shares.
struct Shared<P> {
    protocol: Arc<P>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    request_timeout: Duration,
    counts: Arc<crate::metrics::StreamCounts>,
}

/// Time a client has to complete its handshake (the idle timeout would
/// let half-open connections hold their slots far longer).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

impl QuicListener {
    /// Loads or generates the certificate (see [`TlsIdentity::load`]),
    /// binds the worker endpoints and serves until `shutdown` is cancelled.
    pub async fn start(
        options: &QuicOptions,
        service: Arc<HandleService>,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let protocol = Arc::new(HandleStreams { service });
        Self::serve(options, protocol, ALPN, "handle-quic", data_dir, shutdown).await
    }

    /// Starts a listener of `protocol` under the ALPN name `alpn`.
    pub(crate) async fn serve<P: StreamProtocol>(
        options: &QuicOptions,
        protocol: Arc<P>,
        alpn: &[u8],
        surface: &'static str,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let identity = TlsIdentity::load(&options.certificate, data_dir)?;
        let certificate = match &options.certificate.cert {
            Some(path) => path.clone(),
            None => data_dir.join(TLS_DIR).join(CERT_FILE),
        };
        let tls = identity.server_config(&[alpn]).map_err(io::Error::other)?;
        let crypto = QuicServerConfig::try_from(tls).map_err(io::Error::other)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport_config(options, P::REQUEST_LIMIT)?));
        // One stateless-reset key for every worker; each issues connection
        // IDs that name it.
        let endpoint_config = EndpointConfig::default();

        let workers = match options.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let max_connections = options.max_connections.max(1);
        let connections = Arc::new(Semaphore::new(max_connections));
        let counts = crate::metrics::StreamCounts::new(surface, options.metrics);
        let shared = Arc::new(Shared {
            protocol,
            connections: connections.clone(),
            max_connections,
            request_timeout: options.request_timeout,
            counts: counts.clone(),
        });
        // Dropping the listener stops its workers too.
        let stop = shutdown.child_token();
        let mut endpoints = Vec::with_capacity(workers);
        let mut done = Vec::with_capacity(workers);
        let sockets = idnode_udp::bind(options.listen, workers, None)?;
        // Packets follow their connection ID to its endpoint whatever
        // address they come from, so clients may move. Where the program
        // cannot be attached the kernel's address hash places them, and a
        // client that moved would reach another endpoint: no migration.
        let steered = match sockets.first() {
            Some(first) if sockets.len() > 1 => idnode_udp::by_quic_connection_id(first, sockets.len())
                .map_err(|e| tracing::warn!(error = %e, "QUIC endpoints chosen by the address hash; connection migration off"))
                .is_ok(),
            _ => true,
        };
        server_config.migration(steered);
        for (index, socket) in sockets.into_iter().enumerate() {
            let mut endpoint_config = endpoint_config.clone();
            if workers > 1 {
                let ids = EndpointCids::new(index, workers).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "at most 256 QUIC workers")
                })?;
                endpoint_config.cid_generator(move || -> Box<dyn quinn::ConnectionIdGenerator> {
                    Box::new(ids)
                });
            }
            let worker = Worker {
                index,
                socket,
                endpoint_config,
                server_config: server_config.clone(),
                shared: shared.clone(),
                stop: stop.clone(),
            };
            let (endpoint, finished) = match worker.spawn().await {
                Ok(started) => started,
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            };
            endpoints.push(endpoint);
            done.push(finished);
        }
        let addr = endpoints
            .first()
            .ok_or_else(|| io::Error::other("no QUIC endpoint bound"))?
            .local_addr()?;
        Ok(Self {
            addr,
            fingerprint: identity.fingerprint,
            certificate,
            counts,
            endpoints,
            connections,
            max_connections,
            done,
            stop,
        })
    }

    /// Connections open now (handshaking included), over all workers.
    pub fn connections(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }

    /// Waits until the listener has stopped (after shutdown) and, for a
    /// moment at most, until the peers were told their connections closed.
    pub async fn join(mut self) {
        for finished in std::mem::take(&mut self.done) {
            let _ = finished.await;
        }
    }
}

/// One endpoint and the thread that serves it: a single-threaded runtime
/// of its own, so a connection's stream tasks and quinn's driver of that
/// connection take turns on one core. The answers of the stream tasks that
/// ran in one turn leave together (fewer, fuller packets), and no other
/// core contends for the connection's state.
struct Worker<P: StreamProtocol> {
    index: usize,
    socket: std::net::UdpSocket,
    endpoint_config: EndpointConfig,
    server_config: quinn::ServerConfig,
    shared: Arc<Shared<P>>,
    stop: CancellationToken,
}

impl<P: StreamProtocol> Worker<P> {
    /// Starts the thread; returns its endpoint once bound, and what
    /// resolves when the thread has stopped.
    async fn spawn(self) -> io::Result<(Endpoint, oneshot::Receiver<()>)> {
        let (started_tx, started) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("idnode-quic-{}", self.index))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(self.run(started_tx));
                // Streams still being answered end with the runtime.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        let endpoint = started
            .await
            .map_err(|_| io::Error::other("QUIC worker thread ended before it started"))??;
        Ok((endpoint, done))
    }

    async fn run(self, started: oneshot::Sender<io::Result<Endpoint>>) {
        let endpoint = match Endpoint::new(
            self.endpoint_config,
            Some(self.server_config),
            self.socket,
            Arc::new(quinn::TokioRuntime),
        ) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let _ = started.send(Ok(endpoint.clone()));
        accept_loop(endpoint.clone(), self.shared, self.stop).await;
        // Let the peers learn that their connections closed, for a moment.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}

fn transport_config(
    options: &QuicOptions,
    request_limit: usize,
) -> io::Result<quinn::TransportConfig> {
    let idle = IdleTimeout::try_from(options.idle_timeout).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "QUIC idle timeout is too long")
    })?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(options.max_streams_per_connection.max(1)))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(idle))
        .stream_receive_window(VarInt::from_u32(
            u32::try_from(request_limit).unwrap_or(u32::MAX),
        ))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(CONNECTION_SEND_WINDOW)
        .datagram_receive_buffer_size(None);
    Ok(transport)
}

async fn accept_loop<P: StreamProtocol>(
    endpoint: Endpoint,
    shared: Arc<Shared<P>>,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break, // the endpoint was closed
            },
            _ = shutdown.cancelled() => break,
        };
        // Once half the slots are taken, a client must first show that it
        // receives at its address (a stateless Retry) before it gets one:
        // first flights from spoofed or throwaway addresses then take no
        // slot.
        let busy = shared.connections.available_permits() < shared.max_connections / 2;
        if busy && !incoming.remote_address_validated() && incoming.may_retry() {
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::debug!(peer = %incoming.remote_address(), "QUIC connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        tokio::spawn(connection(
            incoming,
            shared.clone(),
            permit,
            shutdown.clone(),
        ));
    }
    endpoint.close(VarInt::from_u32(error_code::SHUTDOWN), b"shutting down");
}

/// One connection: accepts its streams until it closes, each on a task of
/// its own. Holds a connection permit for as long as it lives.
async fn connection<P: StreamProtocol>(
    incoming: Incoming,
    shared: Arc<Shared<P>>,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let peer = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
    };
    let conn = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "QUIC handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "QUIC handshake not completed in time");
                return;
            }
        },
        _ = shutdown.cancelled() => return,
    };
    let streams = Arc::new(Streams {
        shared,
        conn: conn.clone(),
        responders: Semaphore::new(RESPONDERS_PER_CONNECTION),
        buffers: Mutex::new(Vec::new()),
    });
    loop {
        let (send, recv) = tokio::select! {
            r = conn.accept_bi() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "QUIC connection ended");
                    return;
                }
            },
            _ = shutdown.cancelled() => {
                conn.close(VarInt::from_u32(error_code::SHUTDOWN), b"shutting down");
                return;
            }
        };
        let streams = streams.clone();
        tokio::spawn(async move { streams.serve(send, recv).await });
    }
}

/// The buffers one answer is built in, reused across the streams of a
/// connection.
#[derive(Default)]
struct Buffers<S> {
    out: Vec<u8>,
    scratch: S,
}

/// Per connection: what its stream tasks share.
struct Streams<P: StreamProtocol> {
    shared: Arc<Shared<P>>,
    conn: quinn::Connection,
    /// Caps the answers being built or written at once.
    responders: Semaphore,
    /// Free answer buffers (at most one per responder).
    buffers: Mutex<Vec<Buffers<P::Scratch>>>,
}

impl<P: StreamProtocol> Streams<P> {
    /// Answers one stream, or resets it (or closes the connection) with an
    /// error code.
    async fn serve(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let exchange = self.exchange(&mut send, &mut recv);
        let failure = match tokio::time::timeout(self.shared.request_timeout, exchange).await {
            Ok(Ok(())) => return,
            Ok(Err(failure)) => failure,
            Err(_) => P::TIMEOUT,
        };
        match failure {
            Failure::Stream(code) => {
                // Either may already be closed (finished, reset by the peer
                // or the connection gone): nothing more to do then.
                let _ = recv.stop(VarInt::from_u32(code));
                let _ = send.reset(VarInt::from_u32(code));
            }
            Failure::Connection(code) => {
                self.conn.close(VarInt::from_u32(code), b"protocol error");
            }
        }
    }

    /// Reads the request, answers it, and finishes the send side.
    async fn exchange(
        &self,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
    ) -> Result<(), Failure> {
        let request = match recv.read_to_end(P::REQUEST_LIMIT).await {
            Ok(request) => request,
            Err(ReadToEndError::TooLong) => return Err(P::TOO_LONG),
            Err(ReadToEndError::Read(e)) => {
                tracing::trace!(error = %e, "QUIC request stream failed");
                return Err(P::BROKEN);
            }
        };
        // The semaphore is never closed; a wait here counts against the
        // request timeout.
        let counts = &self.shared.counts;
        let started = counts.start();
        let Ok(_responder) = self.responders.acquire().await else {
            return Err(P::BROKEN);
        };
        let mut buffers = self.take_buffers();
        let protocol = &self.shared.protocol;
        let mut answered = protocol.answer(&request, &mut buffers.out, &mut buffers.scratch);
        let counted = answered != Ok(Answer::Deferred) || protocol.deferred_is_counted(&request);
        if answered == Ok(Answer::Deferred) {
            let peer = self.conn.remote_address();
            protocol
                .answer_deferred(&request, &mut buffers.out, peer)
                .await;
            answered = Ok(Answer::Ready);
        }
        let result = match answered {
            Err(failure) => Err(failure),
            Ok(_) => match send.write_all(&buffers.out).await {
                Ok(()) => {
                    // Finished: quinn delivers the rest on its own; no wait
                    // for the acknowledgement.
                    let _ = send.finish();
                    if counted {
                        counts.answered(started, P::succeeded(&buffers.out));
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::trace!(error = %e, "QUIC answer not delivered");
                    Err(P::BROKEN)
                }
            },
        };
        if result.is_err() && counted {
            counts.unanswered();
        }
        self.put_buffers(buffers);
        result
    }

    fn take_buffers(&self) -> Buffers<P::Scratch> {
        match self.buffers.lock() {
            Ok(mut free) => free.pop().unwrap_or_default(),
            Err(_) => Buffers::default(),
        }
    }

    fn put_buffers(&self, buffers: Buffers<P::Scratch>) {
        if buffers.out.capacity() > POOLED_BUFFER_MAX {
            return;
        }
        if let Ok(mut free) = self.buffers.lock()
            && free.len() < RESPONDERS_PER_CONNECTION
        {
            free.push(buffers);
        }
    }
}
