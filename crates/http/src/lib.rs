//! The web side of a node (docs/http.md): the JSON REST API in the shape
//! of Handle.Net's (`/api/handles/...`, what pyhandle and the other Handle
//! tools call) and the browser proxy (`/88.100.1/ABC-123` redirects to the
//! identifier's URL; `?noredirect` shows its public values as a page).
//!
//! Reads go through the node's [`HandleService`], as a Handle resolution
//! does, so they share its response cache, its referrals and its rule that
//! only public values leave without credentials. Writes go through the
//! [`Registry`], authenticated by the node's scoped tokens (`Bearer`) or by
//! a Handle administrator's secret key (HTTP Basic, `index:handle` and the
//! HS_SECKEY), checked against the same permissions as gRPC and the
//! Handle protocol, and recorded in the audit trail with surface `http`.
//!
//! This crate owns HTTP: routing, JSON, HTML, the listener (HTTP/1.1 and
//! HTTP/2 on one port, plain or over TLS, keep-alive, request size and time
//! limits, graceful shutdown). It holds no state of its own.

mod api;
mod credentials;
mod json;
pub mod metrics;
mod pages;
mod proxy;
pub mod qr;
pub mod target;

use axum::Router;
use idnode_admin::Auth;
use idnode_authority::HandleService;
use idnode_registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request body accepted (a PUT of a record), in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the handlers share; a clone (one a request, by axum's `State`)
/// is one reference count.
#[derive(Clone)]
pub struct Web(Arc<Shared>);

impl std::ops::Deref for Web {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    pub(crate) service: Arc<HandleService>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) metrics: Option<Metrics>,
    /// The base of the proxy URLs the record pages' QR codes carry; `None`:
    /// the scheme and host the request came to.
    pub(crate) base_url: Option<Arc<str>>,
    /// What the listener's workers count.
    pub(crate) counts: Arc<metrics::HttpCounts>,
}

/// Renders the node's metrics (OpenMetrics text) for `GET /metrics`.
pub type Metrics = Arc<dyn Fn() -> String + Send + Sync>;

impl Web {
    /// `service` answers reads (it must serve the same store `registry`
    /// writes to); `auth` checks Bearer tokens.
    pub fn new(service: Arc<HandleService>, registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self(Arc::new(Shared {
            service,
            registry,
            auth,
            metrics: None,
            base_url: None,
            counts: Arc::default(),
        }))
    }

    /// Serves `GET /metrics` with what `render` returns.
    pub fn with_metrics(mut self, render: Metrics) -> Self {
        Arc::make_mut(&mut self.0).metrics = Some(render);
        self
    }

    /// The base of the proxy URLs in the record pages' QR codes (`[http]
    /// base_url`, as [`qr::base_url`] checks it), for a node behind a
    /// proxy or known by another name; without it, `http://` and the
    /// request's `Host`.
    pub fn with_base_url(mut self, base_url: Option<String>) -> Self {
        Arc::make_mut(&mut self.0).base_url = base_url.map(|b| b.trim_end_matches('/').into());
        self
    }

    /// What the listener counts (answers by status class, handler time),
    /// for the node's metrics.
    pub fn counts(&self) -> Arc<metrics::HttpCounts> {
        self.counts.clone()
    }

    /// Every route: the REST API under `/api/handles`, the proxy and its
    /// pages everywhere else.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", axum::routing::get(metrics))
            .merge(api::routes())
            .merge(proxy::routes())
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }
}

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must arrive within this time.
    pub header_timeout: Duration,
    /// A request must be answered within this time (its body included).
    pub request_timeout: Duration,
    /// Most connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1 with keep-alive and HTTP/2;
/// over TLS when `tls` is given, both then offered by ALPN) until
/// `shutdown`, then lets the requests in flight finish (at most
/// `limits.request_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    counts: Arc<metrics::HttpCounts>,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    let worker = counts.worker();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = Connection {
            router: router.clone(),
            peer,
            deadline: limits.request_timeout,
            counts: worker.clone(),
        };
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let served = match acceptor {
                None => serve_connection(&builder, stream, service, watcher).await,
                // The handshake gets the time the headers would have had:
                // a client that opens a connection and stalls is dropped.
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, stream, service, watcher).await
                        }
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}").into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "http connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("http: connections still open at shutdown were dropped");
    }
}

/// Binds `workers` listening sockets on `addr` sharing its port
/// (SO_REUSEPORT: the kernel spreads new connections over them); with
/// port 0, the first socket picks the port and the others take it.
pub fn bind_workers(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::with_capacity(workers.max(1));
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        at = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// [`serve`] on each of `listeners` (from [`bind_workers`]), each on a
/// thread of its own with a single-threaded runtime, as nginx's workers
/// (and the node's UDP workers) run: a connection stays on one thread, with
/// no hand-off between threads on the way. `limits.max_connections` is
/// shared out among them. Returns once every worker has shut down.
pub async fn serve_workers(
    listeners: Vec<std::net::TcpListener>,
    router: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    counts: Arc<metrics::HttpCounts>,
    shutdown: CancellationToken,
) {
    let per_worker = Limits {
        max_connections: (limits.max_connections / listeners.len().max(1)).max(1),
        ..limits
    };
    let mut done = Vec::with_capacity(listeners.len());
    for (n, listener) in listeners.into_iter().enumerate() {
        let (router, tls, counts, shutdown) = (
            router.clone(),
            tls.clone(),
            counts.clone(),
            shutdown.clone(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("idnode-http-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "http worker: cannot start its runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            serve(listener, router, per_worker, tls, counts, shutdown).await
                        }
                        Err(e) => tracing::error!(error = %e, "http worker: bad listener"),
                    }
                });
                drop(tx);
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(error = %e, "http worker: cannot start its thread"),
        }
    }
    for rx in done {
        let _ = rx.await;
    }
}

type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// One connection, plain or TLS, until it closes or the listener shuts
/// down (then its requests in flight finish first).
async fn serve_connection<I>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    service: Connection,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), ConnectionError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder
        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service)
        .into_owned();
    watcher.watch(connection).await
}

async fn metrics(axum::extract::State(web): axum::extract::State<Web>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &web.metrics {
        Some(render) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// The client's address, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// One connection's requests: each gets the client's address ([`Peer`])
/// and goes to the router, under its deadline when it carries a body, and
/// its answer is counted. (A hyper service of our own rather than axum
/// middleware and layers: nothing is boxed and cloned per request but the
/// answer's future.)
#[derive(Clone)]
pub(crate) struct Connection {
    router: Router,
    peer: SocketAddr,
    deadline: Duration,
    counts: Arc<metrics::WorkerCounts>,
}

type Answer = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>
            + Send,
    >,
>;

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Connection {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, mut req: hyper::Request<hyper::body::Incoming>) -> Answer {
        use axum::response::IntoResponse;
        use tower::ServiceExt;
        req.extensions_mut().insert(Peer(self.peer));
        let router = self.router.clone();
        let (deadline, counts) = (self.deadline, self.counts.clone());
        Box::pin(async move {
            let started = std::time::Instant::now();
            // Reads are answered from the node's own cache and store
            // without waiting on the client or anything else: no timer for
            // them (one per request costs on the read path). Requests with
            // a body can stall.
            let bodiless = matches!(
                *req.method(),
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            let response = if bodiless {
                router.oneshot(req).await
            } else {
                match tokio::time::timeout(deadline, router.oneshot(req)).await {
                    Ok(response) => response,
                    Err(_) => Ok((
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "the request took too long",
                    )
                        .into_response()),
                }
            };
            let response = match response {
                Ok(response) => response,
                Err(never) => match never {},
            };
            counts.record(response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}
