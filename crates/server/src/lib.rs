//! Listeners and runtime wiring.
//!
//! Transports are thin: bytes in, [`idnode_authority::HandleService`] or
//! [`idnode_dns::DnsService`] out, bytes back. This crate owns the sockets
//! (UDP worker threads on SO_REUSEPORT sockets with batched receive and
//! send, a TCP acceptor with a connection cap, QUIC endpoints), multi-packet
//! UDP reassembly state, timeouts and graceful shutdown. It does not know
//! which storage engine is behind the services, nor the configuration file
//! (`idnode-node` turns that into the listeners' options).
//!
//! Handle: [`HandleListeners`] (UDP, TCP) and [`QuicListener::start`]
//! (ALPN `hdl`); on [`idnode_authority::Outcome::Recurse`] each transport
//! awaits the upstream resolution (UDP hands it to a task and sends the
//! answer from the worker's socket). DNS: [`DnsListeners`] (UDP, TCP) and
//! [`QuicListener::start_dns`] (ALPN `doq`), zone transfers over TCP (the
//! messages from [`idnode_dns::transfer`]) and NOTIFY ([`notify`]).

mod cids;
pub mod dns;
pub mod metrics;
pub mod notify;
pub mod quic;
pub mod rrl;
mod tcp;
pub mod tls;
mod udp;

pub use dns::{DnsListenerOptions, DnsListeners};
pub use quic::{QuicListener, QuicOptions};
pub use tls::{CertificateSource, Fingerprint, TlsIdentity};

use idnode_authority::HandleService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Unix seconds now, for the codec's expiration fields.
pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Settings of the Handle listeners.
#[derive(Debug, Clone)]
pub struct HandleListenerOptions {
    pub listen: SocketAddr,
    /// UDP worker sockets; 0 means one per core.
    pub udp_workers: usize,
    /// Whether each UDP worker runs only on the CPUs whose datagrams it
    /// receives (see `idnode_udp::pin`).
    pub pin_udp_workers: bool,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Duration,
    pub request_timeout: Duration,
    /// Response rate limiting of the UDP answers (`rrl`).
    pub rate_limit: Arc<rrl::RateLimitOptions>,
    /// Whether the listeners count requests, answers and their times
    /// (`metrics`); off, the UDP workers count nothing.
    pub metrics: bool,
}

/// Running Handle listeners.
pub struct HandleListeners {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// What the UDP workers count.
    pub counts: Arc<metrics::ListenerCounts>,
    /// What the TCP listener counts.
    pub tcp_counts: Arc<metrics::StreamCounts>,
    tasks: JoinSet<()>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
}

impl HandleListeners {
    /// Binds UDP and TCP on the same port (the UDP port decides when port 0
    /// is asked for) and starts serving until `shutdown` is cancelled.
    pub async fn start(
        options: &HandleListenerOptions,
        service: Arc<HandleService>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let workers = match options.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (sockets, udp_addr, tcp_listener) =
            bind_udp_and_tcp(options.listen, workers, udp::Steering::Cpu)?;
        let tcp_addr = tcp_listener.local_addr()?;
        let mut tasks = JoinSet::new();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_service = service.clone();
        let runtime = tokio::runtime::Handle::current();
        let reassemblies = udp::Reassemblies::default();
        let verified = Arc::new(rrl::VerifiedSources::default());
        let counters = Arc::new(rrl::RateLimitCounters::default());
        let counts = metrics::ListenerCounts::new(
            "handle-udp",
            <udp::HandleDatagrams as udp::Responder>::CODE_LABELS,
            counters.clone(),
            options.metrics,
        );
        let tcp_counts = metrics::StreamCounts::new("handle-tcp", options.metrics);
        let udp_threads = udp::spawn(
            sockets,
            "idnode-udp",
            || {
                udp::HandleDatagrams::new(
                    udp_service.clone(),
                    runtime.clone(),
                    reassemblies.clone(),
                    rrl::RateLimiter::new(options.rate_limit.clone(), counters.clone()),
                    verified.clone(),
                )
            },
            stop.clone(),
            options.pin_udp_workers,
            &counts,
        )?;
        let udp_shutdown = shutdown.clone();
        tasks.spawn(async move {
            udp_shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        });
        tasks.spawn(tcp::serve(
            tcp_listener,
            service,
            verified,
            tcp_counts.clone(),
            tcp::Limits {
                max_connections: options.tcp_max_connections,
                idle_timeout: options.tcp_idle_timeout,
                request_timeout: options.request_timeout,
            },
            shutdown,
        ));
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_addr,
            counts,
            tcp_counts,
            tasks,
            udp_threads,
        })
    }

    /// Waits until every listener task has stopped (after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
        join_threads(std::mem::take(&mut self.udp_threads)).await;
    }
}

/// Waits for worker threads to end, off the async runtime's threads.
pub(crate) async fn join_threads(threads: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// Binds `workers` UDP sockets and a TCP listener on the same port. With
/// port 0 the UDP sockets pick a free port, which TCP may find taken: then
/// it tries again with a new port, a bounded number of times.
pub(crate) fn bind_udp_and_tcp(
    listen: SocketAddr,
    workers: usize,
    steering: udp::Steering,
) -> std::io::Result<(
    Vec<std::net::UdpSocket>,
    SocketAddr,
    tokio::net::TcpListener,
)> {
    let mut attempts = 0;
    loop {
        let sockets = udp::bind(listen, workers, steering)?;
        let udp_addr = sockets
            .first()
            .ok_or_else(|| std::io::Error::other("no UDP socket bound"))?
            .local_addr()?;
        match tcp::bind(SocketAddr::new(listen.ip(), udp_addr.port())) {
            Ok(tcp) => return Ok((sockets, udp_addr, tcp)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
