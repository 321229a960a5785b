//! The DNS on the network (docs/dns-mapping.md, "Transports"): answers
//! from [`DnsService::respond`] over UDP, TCP and QUIC.
//!
//! - UDP (RFC 1035): the worker threads of the Handle fast path (`udp.rs`),
//!   one SO_REUSEPORT socket per worker, `recvmmsg`/`sendmmsg` batches. An
//!   answer is always one datagram: the service cuts it to the client's
//!   EDNS payload size (at most `udp_max_payload`) and sets TC.
//! - TCP (RFC 7766): two-octet length framing; several queries on one
//!   connection (pipelined) are answered in order, the answers of a batch
//!   written together; a connection silent for the idle timeout, or whose
//!   message or answer takes longer than that to pass, is closed; at most
//!   `tcp_max_connections` at once (more are closed at accept). Something
//!   that is no query (shorter than a header, or a response) closes the
//!   connection.
//! - QUIC (RFC 9250, ALPN `doq`): through the QUIC machinery of `quic.rs`
//!   with the node's TLS certificate, on its own port. One query per
//!   bidirectional stream: two-octet length, message, FIN; the answer goes
//!   back the same way. A stream whose length prefix disagrees with its
//!   bytes, a message id other than 0, or something that is no query is a
//!   protocol error: the connection is closed with `DOQ_PROTOCOL_ERROR`. A
//!   stream not through within the request timeout is reset with
//!   `DOQ_REQUEST_CANCELLED`.
//!
//! Zone transfers (AXFR, IXFR) are served over TCP to the peers of
//! `allow_transfer` ([`idnode_dns::transfer`]), each message sent while
//! the next is built on a blocking thread; over UDP and QUIC,
//! [`Outcome::Transfer`] sends the NOTIMP answer the service wrote. After
//! writes, NOTIFY goes to the `notify` targets ([`crate::notify`]).

use crate::quic::{Answer, Failure, QuicListener, QuicOptions, StreamProtocol};
use crate::udp::{self, Responder};
use crate::{tcp, unix_now};
use idnode_dns::{DnsService, Outcome, Transport};
use nix::sys::socket::SockaddrStorage;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The ALPN protocol name of DNS over QUIC (RFC 9250 section 4.1.1).
pub const DOQ_ALPN: &[u8] = b"doq";

/// The DoQ error codes (RFC 9250 section 4.3).
pub mod doq_error {
    pub const NO_ERROR: u32 = 0x0;
    pub const INTERNAL_ERROR: u32 = 0x1;
    pub const PROTOCOL_ERROR: u32 = 0x2;
    pub const REQUEST_CANCELLED: u32 = 0x3;
    pub const EXCESSIVE_LOAD: u32 = 0x4;
    pub const UNSPECIFIED_ERROR: u32 = 0x5;
}

/// Largest DNS message: what a two-octet length can say.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Bytes read from a TCP connection at once.
const TCP_CHUNK: usize = 16 * 1024;
/// Pipelined TCP answers are written once this many bytes are waiting.
const TCP_FLUSH_AT: usize = 64 * 1024;
/// Transfer messages (up to 64 KiB each) built ahead of the peer.
const TRANSFER_QUEUE: usize = 4;

/// Settings of the DNS listeners on UDP and TCP.
#[derive(Debug, Clone)]
pub struct DnsListenerOptions {
    /// UDP and TCP address (the same port on both).
    pub listen: SocketAddr,
    /// UDP worker sockets; 0 means one per core.
    pub udp_workers: usize,
    /// Whether each UDP worker runs only on the CPUs whose datagrams it
    /// receives.
    pub pin_udp_workers: bool,
    pub tcp_max_connections: usize,
    /// Silence allowed between queries on a TCP connection, and time
    /// allowed for one query to arrive or its answer to be taken.
    pub tcp_idle_timeout: Duration,
    /// Peers allowed to transfer zones (AXFR, IXFR) over TCP.
    pub allow_transfer: Vec<IpAddr>,
    /// TSIG keys; when there are any, a transfer must be signed with one.
    pub tsig_keys: Vec<idnode_dns::tsig::TsigKey>,
    /// Secondaries sent a NOTIFY (UDP) after writes.
    pub notify: Vec<SocketAddr>,
    /// Response rate limiting of the UDP answers (`rrl`).
    pub rate_limit: Arc<crate::rrl::RateLimitOptions>,
    /// Whether the listeners count queries, answers and their times
    /// (`metrics`); off, the UDP workers count nothing.
    pub metrics: bool,
}

/// Running DNS listeners on UDP and TCP.
pub struct DnsListeners {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// What the UDP workers count.
    pub counts: Arc<crate::metrics::ListenerCounts>,
    /// What the TCP listener counts.
    pub tcp_counts: Arc<crate::metrics::StreamCounts>,
    tasks: JoinSet<()>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for DnsListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsListeners")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("udp_workers", &self.udp_threads.len())
            .finish_non_exhaustive()
    }
}

impl DnsListeners {
    /// Binds UDP and TCP on the same port (the UDP port decides when port 0
    /// is asked for) and answers queries until `shutdown` is cancelled.
    pub async fn start(
        options: &DnsListenerOptions,
        service: Arc<DnsService>,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let workers = match options.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // By the kernel's hash, as NSD and Knot do: DNS questions come from
        // many resolvers, and with one busy client on loopback (dnsperf)
        // steering by CPU put the worker on the client's CPU: 251k-277k
        // queries a second against 319k-321k. Pinned workers need the
        // datagrams steered to their CPUs.
        let steering = match options.pin_udp_workers {
            true => udp::Steering::Cpu,
            false => udp::Steering::Hash,
        };
        let (sockets, udp_addr, tcp_listener) =
            crate::bind_udp_and_tcp(options.listen, workers, steering)?;
        let tcp_addr = tcp_listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let udp_service = service.clone();
        let counters = Arc::new(crate::rrl::RateLimitCounters::default());
        let counts = crate::metrics::ListenerCounts::new(
            "dns-udp",
            <DnsDatagrams as Responder>::CODE_LABELS,
            counters.clone(),
            options.metrics,
        );
        let mut key = [0u8; 16];
        rand::fill(&mut key[..]);
        let cookies = idnode_dns::cookie::CookieSecret::new(key);
        let verified = Arc::new(crate::rrl::VerifiedSources::default());
        let tcp_verified = verified.clone();
        let tcp_counts = crate::metrics::StreamCounts::new("dns-tcp", options.metrics);
        let udp_threads = udp::spawn(
            sockets,
            // `idnode-dns-<n>`: Linux keeps 15 bytes of a thread's name
            // (top -H, /proc), which `idnode-dns-udp-<n>` would lose the
            // worker's number to.
            "idnode-dns",
            || DnsDatagrams {
                service: udp_service.clone(),
                limiter: crate::rrl::RateLimiter::new(options.rate_limit.clone(), counters.clone()),
                cookies: cookies.clone(),
                verified: verified.clone(),
                scratch: idnode_dns::BatchScratch::default(),
                outcomes: Vec::new(),
            },
            stop.clone(),
            options.pin_udp_workers,
            &counts,
        )?;
        let mut tasks = JoinSet::new();
        let udp_shutdown = shutdown.clone();
        tasks.spawn(async move {
            udp_shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        });
        if !options.notify.is_empty() {
            tasks.spawn(crate::notify::run(
                service.clone(),
                options.notify.clone(),
                service.soa_serial(),
                shutdown.clone(),
            ));
        }
        let idle = options.tcp_idle_timeout;
        let max_connections = options.tcp_max_connections;
        let allow = Arc::new(idnode_dns::transfer::TransferPolicy {
            allow: options.allow_transfer.clone(),
            keys: options.tsig_keys.clone(),
        });
        let counted = tcp_counts.clone();
        tasks.spawn(async move {
            tcp::accept_loop(tcp_listener, max_connections, shutdown, |stream| {
                let service = service.clone();
                let allow = allow.clone();
                if let Ok(peer) = stream.peer_addr() {
                    tcp_verified.saw(peer.ip());
                }
                let counts = counted.clone();
                async move { tcp_connection(stream, service, idle, allow, counts).await }
            })
            .await;
        });
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
        crate::join_threads(std::mem::take(&mut self.udp_threads)).await;
    }
}

impl QuicListener {
    /// Starts DNS over QUIC (ALPN `doq`) with the limits and certificate of
    /// `options` (see [`TlsIdentity::load`](crate::TlsIdentity::load)).
    pub async fn start_dns(
        options: &QuicOptions,
        service: Arc<DnsService>,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let protocol = Arc::new(DoqStreams { service });
        Self::serve(options, protocol, DOQ_ALPN, "dns-quic", data_dir, shutdown).await
    }
}

/// DNS over UDP, for one worker thread.
struct DnsDatagrams {
    service: Arc<DnsService>,
    limiter: crate::rrl::RateLimiter,
    /// The key of this node's DNS server cookies.
    cookies: idnode_dns::cookie::CookieSecret,
    /// Sources that connected over TCP lately.
    verified: Arc<crate::rrl::VerifiedSources>,
    /// A batch's scratch and outcomes, kept to reuse their allocations.
    scratch: idnode_dns::BatchScratch,
    outcomes: Vec<Outcome>,
}

/// Where the question of a DNS message ends (after QNAME, QTYPE, QCLASS),
/// when it has one that fits.
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = *message.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None; // no compression in a question
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// The answer a rate-limited DNS query gets instead: the header with TC
/// set (QR, the query's id and opcode) and the question, nothing else; the
/// client asks over TCP.
fn truncated(query: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let Some(end) = question_end(query) else {
        return;
    };
    out.extend_from_slice(&query[..end]);
    // QR and TC set, RD kept; RA, AD, CD and RCODE cleared.
    out[2] = (query[2] & 0x01) | 0x80 | 0x02 | (query[2] & 0x78);
    out[3] = 0;
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..12].fill(0);
}

impl Responder for DnsDatagrams {
    const CODE_LABELS: &'static [&'static str] = &[
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "truncated",
        "other",
    ];

    fn code_bucket(answer: &[u8]) -> usize {
        match (answer.get(2), answer.get(3)) {
            (Some(flags), _) if flags & 0x02 != 0 => 6,
            (_, Some(rcode)) => usize::from(rcode & 0x0f).min(7),
            _ => 7,
        }
    }

    fn respond(
        &mut self,
        datagram: &[u8],
        peer: &SockaddrStorage,
        out: &mut Vec<u8>,
        _socket: &UdpSocket,
    ) -> bool {
        let outcome = self
            .service
            .respond(datagram, Transport::Udp, unix_now(), out);
        self.finish(datagram, peer, out, outcome)
    }

    /// The whole batch through [`DnsService::respond_batch`], which loads
    /// the cache entries of its questions together; then each answer is
    /// finished as [`respond`](Self::respond) finishes it.
    fn respond_all(
        &mut self,
        datagrams: &[&[u8]],
        peers: &[Option<SockaddrStorage>],
        outs: &mut [Vec<u8>],
        ready: &mut [bool],
        _socket: &UdpSocket,
    ) {
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        outcomes.resize(datagrams.len(), Outcome::Drop);
        self.service.respond_batch(
            datagrams,
            Transport::Udp,
            unix_now(),
            outs,
            &mut outcomes,
            &mut self.scratch,
        );
        for (i, ((datagram, peer), out)) in datagrams.iter().zip(peers).zip(outs).enumerate() {
            let answered = match (peer, outcomes.get(i)) {
                (Some(peer), Some(&outcome)) => self.finish(datagram, peer, out, outcome),
                _ => false,
            };
            if let Some(r) = ready.get_mut(i) {
                *r = answered;
            }
        }
        self.outcomes = outcomes;
    }
}

impl DnsDatagrams {
    /// After the service answered `datagram` from `peer` with `outcome`:
    /// the response rate limit, the amplification cap and cookies. True
    /// when `out` holds a datagram to send.
    fn finish(
        &mut self,
        datagram: &[u8],
        peer: &SockaddrStorage,
        out: &mut Vec<u8>,
        outcome: Outcome,
    ) -> bool {
        let answered = match outcome {
            Outcome::Drop => false,
            // Zone transfers go over TCP: `out` holds NOTIMP.
            Outcome::Reply | Outcome::Transfer { .. } => !out.is_empty(),
        };
        if !answered {
            return false;
        }
        let Some(ip) = crate::udp::peer_ip(peer) else {
            return false;
        };
        let question = datagram
            .get(12..question_end(datagram).unwrap_or(datagram.len()))
            .unwrap_or_default();
        match self.limiter.check(ip, question) {
            crate::rrl::Verdict::Send => {
                // The amplification cap and cookies; whether the source is
                // exempt or known by TCP matters (and is looked up) only
                // for an answer over the cap.
                let cap = self.limiter.amplification_cap(datagram.len());
                let verified =
                    out.len() > cap && (self.limiter.exempt(ip) || self.verified.verified(ip));
                let source = idnode_dns::cookie::UdpSource {
                    ip,
                    verified,
                    secret: &self.cookies,
                    // Only a cookie needs the time, and only a query with
                    // an additional section can carry one.
                    now: if datagram.get(10..12).is_some_and(|c| c != [0, 0]) {
                        unix_now()
                    } else {
                        0
                    },
                    amplification: self.limiter.amplification(),
                };
                if self.service.finish_udp(datagram, out, &source).capped {
                    self.limiter.count_capped();
                }
                !out.is_empty()
            }
            crate::rrl::Verdict::Drop => false,
            crate::rrl::Verdict::Slip => {
                truncated(datagram, out);
                !out.is_empty()
            }
        }
    }
}

/// One DNS-over-TCP connection: queries answered in order until the peer
/// closes, stays silent for `idle`, or sends something that is no query.
async fn tcp_connection(
    mut stream: TcpStream,
    service: Arc<DnsService>,
    idle: Duration,
    allow: Arc<idnode_dns::transfer::TransferPolicy>,
    counts: Arc<crate::metrics::StreamCounts>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?.ip();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; TCP_CHUNK];
    let mut out = Vec::with_capacity(1024);
    let mut answers: Vec<u8> = Vec::with_capacity(4096);
    // The queries whose answers are in `answers`: when each was taken up,
    // and whether its answer says NOERROR (counted once written).
    let mut waiting: Vec<(Option<Instant>, bool)> = Vec::new();
    // When the first byte of a still-incomplete message arrived.
    let mut partial_since: Option<Instant> = None;
    loop {
        // Answer every complete message already buffered, in order.
        let mut at = 0;
        let mut close = false;
        while let Some(prefix) = buf.get(at..at + 2) {
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            let Some(message) = buf.get(at + 2..at + 2 + len) else {
                break;
            };
            at += 2 + len;
            let started = counts.start();
            match service.respond(message, Transport::Stream, unix_now(), &mut out) {
                Outcome::Drop => {
                    counts.unanswered();
                    close = true;
                    break;
                }
                Outcome::Transfer { apex } => {
                    // Answers before it go first, then the transfer's
                    // messages, each sent while the next is built.
                    if !answers.is_empty() {
                        write_within(&mut stream, &answers, idle).await?;
                        answers.clear();
                        settle(&counts, &mut waiting);
                    }
                    let (mut messages, builder) = build_transfer(
                        service.clone(),
                        allow.clone(),
                        apex,
                        peer,
                        message.to_vec(),
                        out.clone(),
                    );
                    // On an error the receiver is dropped, which stops the
                    // builder.
                    while let Some(framed) = messages.recv().await {
                        write_within(&mut stream, &framed, idle).await?;
                    }
                    builder.await.map_err(io::Error::other)?;
                }
                Outcome::Reply => {
                    // The service keeps stream answers within 65535 octets.
                    let Ok(len) = u16::try_from(out.len()) else {
                        counts.unanswered();
                        close = true;
                        break;
                    };
                    answers.extend_from_slice(&len.to_be_bytes());
                    answers.extend_from_slice(&out);
                    if started.is_some() {
                        waiting.push((started, crate::metrics::dns_succeeded(&out)));
                    }
                }
            }
            if answers.len() >= TCP_FLUSH_AT {
                write_within(&mut stream, &answers, idle).await?;
                answers.clear();
                settle(&counts, &mut waiting);
            }
        }
        buf.drain(..at);
        if !answers.is_empty() {
            write_within(&mut stream, &answers, idle).await?;
            answers.clear();
            settle(&counts, &mut waiting);
        }
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        let wait = if buf.is_empty() {
            partial_since = None;
            idle
        } else {
            let since = *partial_since.get_or_insert_with(Instant::now);
            idle.saturating_sub(since.elapsed())
        };
        let n = match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            // Idle, or a message that trickles in too slowly.
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Counts the queries whose answers were just written.
fn settle(counts: &crate::metrics::StreamCounts, waiting: &mut Vec<(Option<Instant>, bool)>) {
    for (started, succeeded) in waiting.drain(..) {
        counts.answered(started, succeeded);
    }
}

/// Starts building the answer to the transfer `query` (AXFR, IXFR) of the
/// apex at `apex` on a blocking thread: the framed messages come out of
/// the receiver, at most [`TRANSFER_QUEUE`] ahead of the peer. When the
/// receiver is dropped (the peer went away or stopped taking them),
/// building stops too.
fn build_transfer(
    service: Arc<DnsService>,
    allow: Arc<idnode_dns::transfer::TransferPolicy>,
    apex: usize,
    peer: IpAddr,
    query: Vec<u8>,
    notimp: Vec<u8>,
) -> (
    tokio::sync::mpsc::Receiver<Vec<u8>>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, messages) = tokio::sync::mpsc::channel::<Vec<u8>>(TRANSFER_QUEUE);
    let builder = tokio::task::spawn_blocking(move || {
        let transfer = idnode_dns::transfer::transfer(
            &service,
            &query,
            apex,
            peer,
            &allow,
            unix_now(),
            &notimp,
        );
        for message in transfer {
            // Each within 65535 octets (`idnode_dns::transfer` sees to it).
            let Ok(len) = u16::try_from(message.len()) else {
                tracing::error!(len = message.len(), "zone transfer message too long");
                return;
            };
            let mut framed = Vec::with_capacity(2 + message.len());
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&message);
            // An error: the connection is gone.
            if sender.blocking_send(framed).is_err() {
                return;
            }
        }
    });
    (messages, builder)
}

/// Writes `bytes`, or fails when the peer takes longer than `limit` to
/// take them.
async fn write_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer does not take its answers",
        )),
    }
}

/// DNS over QUIC (RFC 9250): one query per stream.
struct DoqStreams {
    service: Arc<DnsService>,
}

impl StreamProtocol for DoqStreams {
    /// The length prefix and the longest message it can announce.
    const REQUEST_LIMIT: usize = 2 + MAX_MESSAGE;
    const TIMEOUT: Failure = Failure::Stream(doq_error::REQUEST_CANCELLED);
    /// More than one message on a stream (RFC 9250 section 4.3.3).
    const TOO_LONG: Failure = Failure::Connection(doq_error::PROTOCOL_ERROR);
    const BROKEN: Failure = Failure::Stream(doq_error::REQUEST_CANCELLED);
    /// The unframed answer.
    type Scratch = Vec<u8>;

    fn answer(
        &self,
        request: &[u8],
        out: &mut Vec<u8>,
        message_out: &mut Vec<u8>,
    ) -> Result<Answer, Failure> {
        const PROTOCOL_ERROR: Failure = Failure::Connection(doq_error::PROTOCOL_ERROR);
        let (Some(prefix), Some(message)) = (request.get(..2), request.get(2..)) else {
            return Err(PROTOCOL_ERROR);
        };
        // A FIN before the whole message, or bytes after it (section 4.3.3).
        if usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) != message.len() {
            return Err(PROTOCOL_ERROR);
        }
        // The message id must be 0 (section 4.2.1).
        if message.get(..2) != Some(&[0, 0][..]) {
            return Err(PROTOCOL_ERROR);
        }
        match self
            .service
            .respond(message, Transport::Stream, unix_now(), message_out)
        {
            Outcome::Drop => Err(PROTOCOL_ERROR),
            // Zone transfers are not served yet: `message_out` holds NOTIMP.
            Outcome::Reply | Outcome::Transfer { .. } => {
                let len = u16::try_from(message_out.len())
                    .map_err(|_| Failure::Stream(doq_error::INTERNAL_ERROR))?;
                out.clear();
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(message_out);
                Ok(Answer::Ready)
            }
        }
    }

    fn succeeded(answer: &[u8]) -> bool {
        answer.get(2..).is_some_and(crate::metrics::dns_succeeded)
    }
}
