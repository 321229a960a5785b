//! UDP worker threads, the fast path of Handle and DNS over UDP: one
//! SO_REUSEPORT socket per worker thread, each thread taking a batch of
//! datagrams from receive (`recvmmsg`) through its [`Responder`] to send
//! (`sendmmsg`) on its own: no task spawn, no channel, no lock shared with
//! other workers, and buffers allocated once per worker
//! (performance-critical path).
//!
//! [`HandleDatagrams`] answers the Handle protocol: the whole messages of a
//! batch together (the records the response cache lacks read with one
//! multi-get); multi-packet requests (rare: a request over 512 bytes) are
//! reassembled in a small map the workers share (the one lock they share);
//! answers over 512 bytes are split into datagrams and sent one by one. The
//! DNS responder lives in `dns.rs`.

use crate::rrl::{RateLimiter, Verdict, VerifiedSources};
use crate::unix_now;
use idnode_authority::{Batch, HandleService, Outcome, Scratch};
use idnode_handle::{
    ENVELOPE_LEN, Envelope, HEADER_LEN, MAX_DATAGRAM, Reassembly, for_each_datagram,
};
use idnode_udp::{BATCH, RecvBatch, send_all};
use nix::sys::socket::SockaddrStorage;
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a blocked worker wakes to look at the shutdown flag.
const WAKE: Duration = Duration::from_millis(100);
/// Multi-packet requests being reassembled, all workers together.
const MAX_PENDING: usize = 4096;
const PENDING_TTL: Duration = Duration::from_secs(5);

/// How the kernel hands a datagram to one of the workers' sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steering {
    /// To the worker of the CPU that received it (a BPF program): even
    /// with few clients, the Handle protocol's case (PERFORMANCE.md).
    Cpu,
    /// By the kernel's hash of the addresses (SO_REUSEPORT's own way):
    /// many clients spread evenly, and a client on loopback does not share
    /// its CPU with the worker that answers it, the DNS's case.
    Hash,
}

/// One socket a worker on `addr` (SO_REUSEPORT), each datagram steered as
/// `steering` says.
pub(crate) fn bind(
    addr: SocketAddr,
    workers: usize,
    steering: Steering,
) -> std::io::Result<Vec<UdpSocket>> {
    let sockets = idnode_udp::bind(addr, workers, Some(WAKE))?;
    if steering == Steering::Cpu
        && let Some(first) = sockets.first()
        && sockets.len() > 1
        && let Err(e) = idnode_udp::by_cpu(first, sockets.len())
    {
        tracing::debug!(error = %e, "UDP workers chosen by the kernel's address hash");
    }
    Ok(sockets)
}

/// What a worker does with each datagram it receives.
pub(crate) trait Responder: Send + 'static {
    /// The labels of the response-code buckets of [`code_bucket`](Self::code_bucket).
    const CODE_LABELS: &'static [&'static str];

    /// The bucket of an answer's response code, for the metrics.
    fn code_bucket(answer: &[u8]) -> usize;

    /// Answers `datagram` from `peer` into `out`. True when `out` holds one
    /// datagram to send with the batch; false when there is nothing to
    /// send, or the responder sent the answer itself on `socket` (answers
    /// too long for one datagram). Never panics, whatever the datagram
    /// holds.
    fn respond(
        &mut self,
        datagram: &[u8],
        peer: &SockaddrStorage,
        out: &mut Vec<u8>,
        socket: &UdpSocket,
    ) -> bool;

    /// Answers a received batch: `ready[i]` tells whether `outs[i]` holds
    /// the one datagram answering `datagrams[i]` (from `peers[i]`; `None`:
    /// nothing to answer). By default each in turn through
    /// [`respond`](Self::respond); a responder whose answers read a store
    /// can read the records of the whole batch at once.
    fn respond_all(
        &mut self,
        datagrams: &[&[u8]],
        peers: &[Option<SockaddrStorage>],
        outs: &mut [Vec<u8>],
        ready: &mut [bool],
        socket: &UdpSocket,
    ) {
        for (((datagram, peer), out), ready) in datagrams.iter().zip(peers).zip(outs).zip(ready) {
            *ready = match peer {
                Some(peer) => self.respond(datagram, peer, out, socket),
                None => false,
            };
        }
    }
}

/// Starts one worker thread per socket, named `<name>-<n>`, each with the
/// responder `make` gives it; they stop when `stop` is set. With `pin`,
/// worker `n` runs only on the CPUs whose datagrams [`bind`]'s steering
/// hands it (`idnode_udp::worker_cpus`); a worker that would get no CPU, or
/// whose pinning fails, runs where the scheduler puts it. Returns once
/// every worker is placed, so the node never reports itself started with a
/// worker still running outside its CPUs.
pub(crate) fn spawn<R: Responder>(
    sockets: Vec<UdpSocket>,
    name: &str,
    mut make: impl FnMut() -> R,
    stop: Arc<AtomicBool>,
    pin: bool,
    counts: &crate::metrics::ListenerCounts,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut cpus = if pin {
        idnode_udp::worker_cpus(&idnode_udp::allowed_cpus(), sockets.len())
    } else {
        Vec::new()
    }
    .into_iter();
    let (placed_tx, placed) = std::sync::mpsc::channel::<()>();
    let workers = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (responder, stop, placed) = (make(), stop.clone(), placed_tx.clone());
            // With metrics on, the kernel stamps each datagram's arrival:
            // the answer time counts from there, queueing included.
            let counts = counts.enabled.then(|| counts.worker());
            if counts.is_some()
                && let Err(e) = idnode_udp::stamp_arrivals(&socket)
            {
                tracing::debug!(error = %e, "UDP arrival times not stamped: latency not counted");
            }
            let cpus = cpus.next().unwrap_or_default();
            let thread = format!("{name}-{i}");
            std::thread::Builder::new()
                .name(thread.clone())
                .spawn(move || {
                    if !cpus.is_empty()
                        && let Err(e) = idnode_udp::pin_current_thread(&cpus)
                    {
                        tracing::debug!(thread, error = %e, "UDP worker not pinned");
                    }
                    drop(placed);
                    Worker::new(socket, responder, counts).run(&stop)
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(placed_tx);
    // Every sender is dropped once its worker is placed (or has died), so
    // this returns then and never blocks for good.
    let _ = placed.recv();
    Ok(workers)
}

struct Worker<R> {
    socket: UdpSocket,
    responder: R,
    received: RecvBatch,
    outputs: Vec<Vec<u8>>,
    /// `None`: metrics off, nothing counted.
    counts: Option<Arc<crate::metrics::WorkerCounts>>,
}

impl<R: Responder> Worker<R> {
    fn new(
        socket: UdpSocket,
        responder: R,
        counts: Option<Arc<crate::metrics::WorkerCounts>>,
    ) -> Self {
        Self {
            socket,
            responder,
            received: RecvBatch::new(),
            outputs: (0..BATCH).map(|_| Vec::with_capacity(1024)).collect(),
            counts,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            // Receive a batch: block for the first datagram (up to the
            // socket's read timeout), take what else is already queued.
            let n = match self.received.recv(&self.socket) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            };
            // Answer them, collecting the one-datagram answers for one
            // sendmmsg.
            let mut ready = [false; BATCH];
            let mut datagrams: [&[u8]; BATCH] = [&[]; BATCH];
            for (i, datagram) in datagrams.iter_mut().enumerate().take(n) {
                *datagram = self.received.datagram(i);
            }
            let peers = self.received.peers(n);
            self.responder.respond_all(
                &datagrams[..n],
                peers,
                &mut self.outputs[..n],
                &mut ready[..n],
                &self.socket,
            );
            if let Some(counts) = &self.counts {
                self.count(counts, &datagrams[..n], &ready[..n]);
            }
            self.send_batch(&ready[..n], peers);
        }
    }

    /// Counts a batch: datagrams and bytes in, answers, bytes and codes
    /// out, and each answer's time from the datagram's arrival (the
    /// kernel's stamp) to now, read once for the batch (answers longer
    /// than a datagram, which the responder sends itself, count as
    /// received only).
    fn count(&self, c: &crate::metrics::WorkerCounts, datagrams: &[&[u8]], ready: &[bool]) {
        use crate::metrics::bump;
        bump(&c.received, datagrams.len() as u64);
        bump(&c.bytes_in, datagrams.iter().map(|d| d.len() as u64).sum());
        let answered = || {
            ready
                .iter()
                .enumerate()
                .filter(|(_, r)| **r)
                .map(|(i, _)| i)
        };
        for i in answered() {
            let out = &self.outputs[i];
            bump(&c.answered, 1);
            bump(&c.bytes_out, out.len() as u64);
            let bucket = R::code_bucket(out).min(crate::metrics::CODE_BUCKETS - 1);
            bump(&c.codes[bucket], 1);
        }
        c.latency.record_arrivals(
            answered().filter_map(|i| self.received.arrival(i)),
            epoch_nanos,
        );
    }

    /// Sends the ready answers of a batch with as few `sendmmsg` as the
    /// kernel allows; a datagram it refuses is skipped.
    fn send_batch(&self, ready: &[bool], peers: &[Option<SockaddrStorage>]) {
        let mut slices: [IoSlice<'_>; BATCH] = [IoSlice::new(&[]); BATCH];
        let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let mut count = 0;
        for (i, _) in ready.iter().enumerate().filter(|(_, r)| **r) {
            slices[count] = IoSlice::new(&self.outputs[i]);
            addrs[count] = peers[i];
            count += 1;
        }
        if let Err(e) = send_all(&self.socket, &slices[..count], &addrs[..count]) {
            tracing::debug!(error = %e, "udp send failed");
        }
    }
}

/// Nanoseconds since the Unix epoch now, the clock of the kernel's
/// receive timestamps (`SO_TIMESTAMPNS`).
fn epoch_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Multi-packet requests being reassembled, by sender and request id:
/// shared by the workers, since the datagrams of one request can reach
/// different workers (they go to the worker of the CPU that received them,
/// and a sender can move between CPUs). Touched only by multi-packet
/// requests, which are rare.
pub(crate) type Reassemblies = Arc<std::sync::Mutex<Pending>>;
type Pending = HashMap<(SocketAddr, u32), (Reassembly, Instant)>;

/// The Handle protocol over UDP, with this worker's scratch buffers and the
/// workers' shared reassembly map.
pub(crate) struct HandleDatagrams {
    service: Arc<HandleService>,
    scratch: Scratch,
    pending: Reassemblies,
    /// Where questions resolved upstream run (recursion is async), and
    /// this worker's socket for sending their answers.
    runtime: tokio::runtime::Handle,
    socket: Option<Arc<UdpSocket>>,
    /// A received batch's whole messages (answered together) and their
    /// outcomes; kept to reuse the allocations.
    batch: Batch,
    whole: Vec<bool>,
    outcomes: Vec<Outcome>,
    /// This worker's response rate limiter, and the sources known to
    /// receive what is sent to them (they get long answers whole).
    limiter: RateLimiter,
    verified: Arc<VerifiedSources>,
}

impl HandleDatagrams {
    pub(crate) fn new(
        service: Arc<HandleService>,
        runtime: tokio::runtime::Handle,
        pending: Reassemblies,
        limiter: RateLimiter,
        verified: Arc<VerifiedSources>,
    ) -> Self {
        Self {
            service,
            scratch: Scratch::default(),
            pending,
            runtime,
            socket: None,
            batch: Batch::default(),
            whole: Vec::new(),
            outcomes: Vec::new(),
            limiter,
            verified,
        }
    }

    /// Resolves `message` upstream on the runtime and sends the answer to
    /// `peer` from this worker's socket when it comes; the worker goes on.
    fn recurse(&mut self, message: &[u8], peer: &SockaddrStorage, socket: &UdpSocket) {
        let Some(addr) = to_std(peer) else { return };
        if !self.service.may_recurse_for(addr.ip()) {
            let mut out = Vec::new();
            self.service.refuse_recursion(message, unix_now(), &mut out);
            if !out.is_empty()
                && let Err(e) = socket.send_to(&out, addr)
            {
                tracing::debug!(error = %e, %addr, "udp send failed");
            }
            return;
        }
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => match socket.try_clone() {
                Ok(s) => self.socket.insert(Arc::new(s)).clone(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share the UDP socket for recursion");
                    return;
                }
            },
        };
        let (service, message) = (self.service.clone(), message.to_vec());
        let whole = self.limiter.exempt(addr.ip()) || self.verified.verified(addr.ip());
        let cap = if whole {
            usize::MAX
        } else {
            self.limiter.amplification_cap(message.len())
        };
        let counters = self.limiter.counters();
        self.runtime.spawn(async move {
            let mut out = Vec::new();
            service.recurse(&message, &mut out, unix_now).await;
            if out.len() > cap {
                counters
                    .capped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                capped(&message, &mut out, cap);
            }
            for_each_datagram(&out, |d| {
                if let Err(e) = socket.send_to(d, addr) {
                    tracing::debug!(error = %e, %addr, "udp send failed");
                }
            });
        });
    }
}

impl HandleDatagrams {
    /// What to do with the service's answer to `message` from `peer`:
    /// true when `out` holds one datagram for the batch's send; answers
    /// longer than a datagram are sent here, one datagram after another,
    /// and questions for another node are resolved upstream.
    ///
    /// Every answer passes the response rate limiter first (dropped, or
    /// replaced by a short "ask over TCP" error). A source not verified
    /// (no TCP connection from it lately, not exempt from rate limiting)
    /// gets an answer larger than the amplification cap (a few times the
    /// question) as that short error too, so a spoofed address draws little
    /// from the node. With the cap off, an unverified source gets only the
    /// first datagram of an answer longer than one (its reassembly times
    /// out and it asks over TCP).
    fn deliver(
        &mut self,
        outcome: Outcome,
        message: &[u8],
        peer: &SockaddrStorage,
        out: &mut Vec<u8>,
        socket: &UdpSocket,
    ) -> bool {
        match outcome {
            Outcome::Recurse { .. } => {
                self.recurse(message, peer, socket);
                return false;
            }
            Outcome::Drop | Outcome::Admin { .. } => return false,
            Outcome::Reply { .. } if out.is_empty() => return false,
            Outcome::Reply { .. } => {}
        }
        let Some(addr) = to_std(peer) else {
            return false;
        };
        let question = message.get(ENVELOPE_LEN + HEADER_LEN..).unwrap_or(message);
        match self.limiter.check(addr.ip(), question) {
            Verdict::Send => {}
            Verdict::Drop => return false,
            Verdict::Slip => {
                slip(message, out);
                return !out.is_empty();
            }
        }
        let cap = self.limiter.amplification_cap(message.len());
        if out.len() <= MAX_DATAGRAM.min(cap) {
            return true;
        }
        let whole = self.limiter.exempt(addr.ip()) || self.verified.verified(addr.ip());
        if !whole && out.len() > cap {
            // A spoofed source would be an amplifier's victim.
            self.limiter.count_capped();
            capped(message, out, cap);
            return !out.is_empty();
        }
        if out.len() <= MAX_DATAGRAM {
            return true;
        }
        let mut sent = 0;
        for_each_datagram(out, |d| {
            if whole || sent == 0 {
                if let Err(e) = socket.send_to(d, addr) {
                    tracing::debug!(error = %e, %addr, "udp send failed");
                }
                sent += 1;
            }
        });
        false
    }
}

/// The short answer a rate-limited question gets instead of its answer:
/// 3 SERVER_TOO_BUSY saying to ask over TCP, no longer than the question
/// (nothing when it would be).
fn slip(message: &[u8], out: &mut Vec<u8>) {
    ask_over_tcp(message, out, "rate limited: ask over TCP", message.len());
}

/// The short answer that replaces one the amplification cap refuses to
/// send: 3 SERVER_TOO_BUSY saying to ask over TCP, at most `cap` octets.
fn capped(message: &[u8], out: &mut Vec<u8>, cap: usize) {
    ask_over_tcp(
        message,
        out,
        "answer too large for UDP to an unverified address: ask over TCP",
        cap,
    );
}

/// 3 SERVER_TOO_BUSY with `text`, at most `max` octets (nothing when it
/// would be longer).
fn ask_over_tcp(message: &[u8], out: &mut Vec<u8>, text: &str, max: usize) {
    out.clear();
    let Ok(request) = idnode_handle::decode_request(message) else {
        return;
    };
    let mut ctx = idnode_handle::ResponseContext::for_request(&request, unix_now());
    ctx.digest = None;
    idnode_handle::encode_error_response(
        out,
        &ctx,
        request.header.opcode,
        idnode_handle::code::SERVER_TOO_BUSY,
        text,
    );
    if out.len() > max {
        out.clear();
    }
}

/// Whether `datagram` holds a whole message (`None`: not even an envelope).
fn is_whole(datagram: &[u8]) -> Option<bool> {
    let envelope = Envelope::decode(datagram).ok()?;
    Some(ENVELOPE_LEN + envelope.message_length as usize <= datagram.len())
}

impl Responder for HandleDatagrams {
    const CODE_LABELS: &'static [&'static str] =
        &["1", "100", "200", "301", "303", "3", "2", "other"];

    fn code_bucket(answer: &[u8]) -> usize {
        let code = answer
            .get(ENVELOPE_LEN + 4..ENVELOPE_LEN + 8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(u32::MAX, u32::from_be_bytes);
        match code {
            1 => 0,
            100 => 1,
            200 => 2,
            301 => 3,
            303 => 4,
            3 => 5,
            2 => 6,
            _ => 7,
        }
    }

    fn respond(
        &mut self,
        datagram: &[u8],
        peer: &SockaddrStorage,
        out: &mut Vec<u8>,
        socket: &UdpSocket,
    ) -> bool {
        let Ok(envelope) = Envelope::decode(datagram) else {
            return false; // Not even an envelope: drop silently.
        };
        let message = if ENVELOPE_LEN + envelope.message_length as usize <= datagram.len() {
            std::borrow::Cow::Borrowed(datagram)
        } else {
            let Some(addr) = to_std(peer) else {
                return false;
            };
            // A poisoned lock only means another worker panicked while
            // holding it; the map is still a valid map.
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match reassemble(&mut pending, addr, &envelope, datagram) {
                Some(message) => std::borrow::Cow::Owned(message),
                None => return false,
            }
        };
        let mut outcome = self
            .service
            .respond(&message, unix_now(), out, &mut self.scratch);
        if let Outcome::Admin { .. } = outcome {
            // UDP is a query-only interface.
            outcome = self.service.refuse_admin(&message, unix_now(), out);
        }
        self.deliver(outcome, &message, peer, out, socket)
    }

    /// Whole messages are answered together, their records read with one
    /// multi-get; the parts of multi-datagram requests one by one.
    fn respond_all(
        &mut self,
        datagrams: &[&[u8]],
        peers: &[Option<SockaddrStorage>],
        outs: &mut [Vec<u8>],
        ready: &mut [bool],
        socket: &UdpSocket,
    ) {
        let now = unix_now();
        let n = datagrams.len();
        let (mut outcomes, mut whole) = (
            std::mem::take(&mut self.outcomes),
            std::mem::take(&mut self.whole),
        );
        outcomes.clear();
        outcomes.resize(n, Outcome::Drop);
        whole.clear();
        whole.resize(n, false);
        self.service.prefetch(datagrams, &mut self.batch);
        for (i, ((datagram, peer), out)) in
            datagrams.iter().zip(peers).zip(outs.iter_mut()).enumerate()
        {
            let (Some(peer), Some(ready)) = (peer, ready.get_mut(i)) else {
                continue;
            };
            *ready = false;
            match is_whole(datagram) {
                Some(true) => {
                    whole[i] = true;
                    // Answered now, or by `finish_batch` below.
                    if let Some(outcome) =
                        self.service
                            .begin_in(&mut self.batch, i, datagram, now, out)
                    {
                        outcomes[i] = outcome;
                    }
                }
                Some(false) => *ready = self.respond(datagram, peer, out, socket),
                None => {}
            }
        }
        self.service
            .finish_batch(&mut self.batch, datagrams, now, outs, &mut outcomes);
        for i in (0..n).filter(|&i| whole[i]) {
            let (Some(Some(peer)), Some(out), Some(datagram)) =
                (peers.get(i), outs.get_mut(i), datagrams.get(i))
            else {
                continue;
            };
            if let Outcome::Admin { .. } = outcomes[i] {
                // UDP is a query-only interface.
                outcomes[i] = self.service.refuse_admin(datagram, now, out);
            }
            let sent = self.deliver(outcomes[i], datagram, peer, out, socket);
            if let Some(ready) = ready.get_mut(i) {
                *ready = sent;
            }
        }
        (self.outcomes, self.whole) = (outcomes, whole);
    }
}

/// The IP address of a datagram's sender.
pub(crate) fn peer_ip(addr: &SockaddrStorage) -> Option<std::net::IpAddr> {
    to_std(addr).map(|a| a.ip())
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

fn reassemble(
    pending: &mut Pending,
    peer: SocketAddr,
    envelope: &Envelope,
    datagram: &[u8],
) -> Option<Vec<u8>> {
    let now = Instant::now();
    let key = (peer, envelope.request_id);
    if !pending.contains_key(&key) {
        pending.retain(|_, (_, at)| now.duration_since(*at) < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return None;
        }
        let reassembly = Reassembly::new(datagram).ok()?;
        pending.insert(key, (reassembly, now));
    }
    let (reassembly, _) = pending.get_mut(&key)?;
    match reassembly.insert(datagram) {
        Ok(Some(message)) => {
            pending.remove(&key);
            Some(message)
        }
        Ok(None) => None,
        Err(_) => {
            pending.remove(&key);
            None
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;

    /// Answers every datagram with its worker's number, then the CPUs the
    /// worker may run on (u16 each).
    struct Tag(u8);

    impl Responder for Tag {
        const CODE_LABELS: &'static [&'static str] = &["any"];

        fn code_bucket(_: &[u8]) -> usize {
            0
        }

        fn respond(
            &mut self,
            _datagram: &[u8],
            _peer: &SockaddrStorage,
            out: &mut Vec<u8>,
            _socket: &UdpSocket,
        ) -> bool {
            out.clear();
            out.push(self.0);
            for cpu in idnode_udp::allowed_cpus() {
                out.extend_from_slice(&u16::try_from(cpu).unwrap().to_le_bytes());
            }
            true
        }
    }

    /// On loopback a datagram is received on the CPU that sent it, so a
    /// client pinned to CPU `c` must be answered by worker `c % workers`
    /// every time (with the kernel's address hash, a client socket sticks
    /// to one worker whatever its CPU).
    /// Two CPUs this process may run on (`None`: only one).
    fn two_cpus() -> Option<Vec<usize>> {
        let cpus: Vec<usize> = idnode_udp::allowed_cpus().into_iter().take(2).collect();
        (cpus.len() == 2).then_some(cpus)
    }

    /// Runs `f` on a thread that may run on `cpu` only.
    fn on_cpu<T: Send + 'static>(cpu: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            let mut only = CpuSet::new();
            only.set(cpu).unwrap();
            sched_setaffinity(Pid::from_raw(0), &only).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// A worker's answer: its number and the CPUs it may run on.
    type Answer = (u8, Vec<usize>);

    /// Starts two workers (`Tag(0)`, `Tag(1)`), pinned or not, and from
    /// each of two CPUs sends 20 datagrams on one client socket (so only
    /// the CPU decides): for each CPU, what answered (the worker's number
    /// and the CPUs it may run on). `None` where this process may run on one
    /// CPU only.
    fn answers_from_each_cpu(name: &str, pin: bool) -> Option<Vec<(usize, Vec<Answer>)>> {
        let Some(cpus) = two_cpus() else {
            eprintln!("skipped: this process may run on one CPU only");
            return None;
        };
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 2, Steering::Cpu).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut next = 0u8;
        let make = || {
            next += 1;
            Tag(next - 1)
        };
        let counts = crate::metrics::ListenerCounts::new("test", &["any"], Arc::default(), true);
        let workers = spawn(sockets, name, make, stop.clone(), pin, &counts).unwrap();
        let client = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let answers = cpus
            .into_iter()
            .map(|cpu| {
                let client = client.clone();
                let answered_by = on_cpu(cpu, move || {
                    (0..20)
                        .map(|_| {
                            client.send_to(b"which", addr).unwrap();
                            let mut answer = [0u8; 2048];
                            let (n, _) = client.recv_from(&mut answer).unwrap();
                            let runs_on = answer[1..n]
                                .chunks_exact(2)
                                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                                .collect();
                            (answer[0], runs_on)
                        })
                        .collect()
                });
                (cpu, answered_by)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        Some(answers)
    }

    #[test]
    fn each_datagram_goes_to_the_worker_of_its_cpu() {
        let Some(answers) = answers_from_each_cpu("test-steer", false) else {
            return;
        };
        for (cpu, answered_by) in answers {
            let expected = u8::try_from(cpu % 2).unwrap();
            assert!(
                answered_by.iter().all(|(w, _)| *w == expected),
                "sent from CPU {cpu}, answered by workers {answered_by:?}"
            );
        }
    }

    /// Pinned, the worker that answers a datagram sent from CPU `c` may run
    /// only on the CPUs steered to it, `c`'s among them.
    #[test]
    fn pinned_workers_run_on_the_cpus_whose_datagrams_they_receive() {
        let Some(answers) = answers_from_each_cpu("test-pin", true) else {
            return;
        };
        let allowed = idnode_udp::allowed_cpus();
        for (cpu, answered_by) in answers {
            let expected: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|c| c % 2 == cpu % 2)
                .collect();
            for (worker, runs_on) in answered_by {
                assert_eq!(usize::from(worker), cpu % 2, "sent from CPU {cpu}");
                assert!(runs_on.contains(&cpu), "{runs_on:?} lacks CPU {cpu}");
                assert_eq!(runs_on, expected, "the worker of CPU {cpu}");
            }
        }
    }

    /// The datagrams of one request sent from two CPUs reach two workers
    /// (the test above), and the request must still be reassembled and
    /// answered.
    #[test]
    fn a_request_whose_datagrams_reach_two_workers_is_answered() {
        use idnode_core::PrefixInfo;
        use idnode_handle::{RequestParams, decode_response, encode_resolution_request};
        use idnode_store::{MemoryStore, Space, Store};

        let Some(cpus) = two_cpus() else {
            eprintln!("skipped: this process may run on one CPU only");
            return;
        };
        let store = MemoryStore::new();
        let mut txn = store.begin().unwrap();
        let info = PrefixInfo::homed_here("88.100.1", 0);
        txn.put(Space::Prefixes, b"88.100.1", info.encode().into());
        txn.commit().unwrap();
        let service = Arc::new(HandleService::new(Arc::new(store)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 2, Steering::Cpu).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pending = Reassemblies::default();
        let make = || {
            HandleDatagrams::new(
                service.clone(),
                runtime.handle().clone(),
                pending.clone(),
                RateLimiter::new(Arc::default(), Arc::default()),
                Arc::default(),
            )
        };
        let counts = crate::metrics::ListenerCounts::new("test", &[], Arc::default(), true);
        let workers = spawn(
            sockets,
            "test-reassemble",
            make,
            stop.clone(),
            true,
            &counts,
        )
        .unwrap();

        // A handle long enough for a request of two datagrams.
        let handle = format!("88.100.1/{}", "L".repeat(700));
        let mut request = Vec::new();
        encode_resolution_request(
            &mut request,
            &RequestParams {
                request_id: 77,
                handle: handle.as_bytes(),
                ..Default::default()
            },
        );
        let mut datagrams = Vec::new();
        for_each_datagram(&request, |d| datagrams.push(d.to_vec()));
        assert_eq!(datagrams.len(), 2);
        let client = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for (cpu, datagram) in cpus.into_iter().zip(datagrams) {
            let client = client.clone();
            on_cpu(cpu, move || client.send_to(&datagram, addr).unwrap());
        }
        let mut answer = vec![0u8; 2048];
        let (len, _) = client
            .recv_from(&mut answer)
            .expect("no answer: the request was not reassembled");
        let response = decode_response(&answer[..len]).unwrap();
        assert_eq!(response.envelope.request_id, 77);
        assert_eq!(
            response.header.response_code,
            idnode_handle::code::HANDLE_NOT_FOUND
        );
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
    }
}
