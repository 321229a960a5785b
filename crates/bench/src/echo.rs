//! The ceiling to compare idnode against: a UDP responder with idnode's
//! worker model (as `idnode-server`'s `udp.rs`: one SO_REUSEPORT socket a
//! worker thread, batches of up to 32 datagrams through `recvmmsg` and
//! `sendmmsg`, buffers allocated once) that answers every request with a
//! fixed, precomputed Handle response the size of idnode's answer for an
//! identifier of the synthetic data set, with the request's ids patched in.
//!
//! What idnode adds on top of this loop (decoding the request, the lookup,
//! encoding the answer) is the difference between the two runs; what this
//! loop reaches is what loopback UDP request/response allows on the machine
//! with this socket model. Keep the worker model in step with the server's
//! when that one changes (batching, threads); the CPU steering of the
//! SO_REUSEPORT group and the optional pinning of each worker to the CPUs
//! steered to it are the node's own code (`idnode-udp`).

use crate::workload::Synthetic;
use idnode_core::wire::encode_value;
use idnode_handle::{
    ENVELOPE_LEN, EXPIRATION_SECS, Envelope, HEADER_LEN, MAX_DATAGRAM, ResponseContext,
    VERSION_MAJOR, VERSION_MINOR, encode_resolution_response, flags, for_each_datagram,
    is_fragment,
};
use idnode_udp::mmsg::{BATCH, RecvBatch, send_all};
use idnode_udp::{allowed_cpus, by_cpu, pin_current_thread, worker_cpus};
use nix::sys::socket::SockaddrStorage;
use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How to run an echo server.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    pub listen: SocketAddr,
    /// Worker sockets; 0 means one per core (idnode's default).
    pub workers: usize,
    /// Whether each worker runs only on the CPUs whose datagrams it
    /// receives (idnode's `pin_udp_workers`).
    pub pin: bool,
    /// The data set whose typical answer the response imitates.
    pub data_set: Synthetic,
}

/// The response idnode gives to a RESOLUTION (public values only, no
/// request digest) of a typical identifier of `set`, with request id 0.
pub fn typical_response(set: &Synthetic) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let n = set.count / 2;
    let mut raw = Vec::new();
    for mut value in set.values(n) {
        let mut bytes = Vec::with_capacity(128);
        value.timestamp = now;
        encode_value(&mut bytes, &value);
        raw.push(bytes);
    }
    let ctx = ResponseContext {
        request_id: 0,
        session_id: 0,
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
        op_flags: flags::PO | flags::REC,
        site_serial: -1,
        recursion: 0,
        expiration: now.saturating_add(EXPIRATION_SECS),
        digest: None,
    };
    let mut out = Vec::with_capacity(512);
    encode_resolution_response(
        &mut out,
        &ctx,
        set.identifier(n).as_bytes(),
        raw.iter().map(Vec::as_slice),
    );
    out
}

/// A running echo server; [`stop`](Self::stop) ends it.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    response_len: usize,
    answered: Vec<Arc<AtomicU64>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Binds the worker sockets and starts one thread each. Port 0 picks a
    /// free port that every worker shares.
    pub fn start(options: &EchoOptions) -> std::io::Result<Self> {
        let workers = match options.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let sockets = bind(options.listen, workers)?;
        let addr = sockets[0].local_addr()?;
        let response: Arc<[u8]> = typical_response(&options.data_set).into();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(workers);
        let mut answered = Vec::with_capacity(workers);
        let mut cpus = if options.pin {
            worker_cpus(&allowed_cpus(), sockets.len())
        } else {
            Vec::new()
        }
        .into_iter();
        for (i, socket) in sockets.into_iter().enumerate() {
            let counter = Arc::new(AtomicU64::new(0));
            answered.push(counter.clone());
            let (response, worker_stop) = (response.clone(), stop.clone());
            let cpus = cpus.next().unwrap_or_default();
            let spawned = std::thread::Builder::new()
                .name(format!("bench-echo-{i}"))
                .spawn(move || {
                    if !cpus.is_empty() {
                        // Unpinned, the worker still answers.
                        let _ = pin_current_thread(&cpus);
                    }
                    serve(&socket, &response, &counter, &worker_stop)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(Self {
            addr,
            response_len: response.len(),
            answered,
            stop,
            threads,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Size of each answer, envelope included.
    pub fn response_len(&self) -> usize {
        self.response_len
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops every worker and waits for them (each wakes within
    /// [`WAKE`]).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// How often a blocked worker wakes to look at the stop flag.
pub const WAKE: Duration = Duration::from_millis(100);

/// One socket a worker, all on the same port (SO_REUSEPORT), as idnode's
/// UDP listener binds them: each datagram to the worker of its CPU.
fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    let sockets = idnode_udp::bind(addr, workers, Some(WAKE))?;
    if let Some(first) = sockets.first()
        && sockets.len() > 1
    {
        let _ = by_cpu(first, sockets.len());
    }
    Ok(sockets)
}

/// One worker: a batch in (`recvmmsg`), the template patched per request
/// into preallocated buffers, the batch out (`sendmmsg`).
fn serve(socket: &UdpSocket, response: &[u8], answered: &AtomicU64, stop: &AtomicBool) {
    let mut batch = RecvBatch::new();
    let mut outputs: Vec<Vec<u8>> = (0..BATCH).map(|_| response.to_vec()).collect();
    let mut peers: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut ready = [false; BATCH];
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(_) => continue, // timeout (look at the stop flag) or EINTR
        };
        let mut count = 0;
        for i in 0..n {
            ready[i] = false;
            let datagram = batch.datagram(i);
            let Ok(envelope) = Envelope::decode(datagram) else {
                continue;
            };
            // Whole requests only; and never answer a response (bytes
            // 24..28, the response code, are 0 in a request), as idnode.
            if is_fragment(&envelope, datagram.len())
                || datagram.len() < ENVELOPE_LEN + HEADER_LEN
                || datagram[ENVELOPE_LEN + 4..ENVELOPE_LEN + 8] != [0; 4]
            {
                continue;
            }
            let out = &mut outputs[i];
            out[4..8].copy_from_slice(&envelope.session_id.to_be_bytes());
            out[8..12].copy_from_slice(&envelope.request_id.to_be_bytes());
            ready[i] = true;
            count += 1;
        }
        if out_of_datagram(response) {
            // Not with the synthetic data set; kept for other templates.
            for i in (0..n).filter(|&i| ready[i]) {
                if let Some(peer) = batch.peer(i).and_then(|p| to_std(&p)) {
                    for_each_datagram(&outputs[i], |d| {
                        let _ = socket.send_to(d, peer);
                    });
                }
            }
        } else {
            let mut slices: [IoSlice<'_>; BATCH] = std::array::from_fn(|_| IoSlice::new(&[]));
            let mut k = 0;
            for i in (0..n).filter(|&i| ready[i]) {
                slices[k] = IoSlice::new(&outputs[i]);
                peers[k] = batch.peer(i);
                k += 1;
            }
            let _ = send_all(socket, &slices[..k], &peers[..k]);
        }
        answered.fetch_add(count, Ordering::Relaxed);
    }
}

fn out_of_datagram(message: &[u8]) -> bool {
    message.len() > MAX_DATAGRAM
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use idnode_handle::{ResponseBody, decode_response};

    #[test]
    fn typical_response_decodes_and_fits_a_datagram() {
        let set = Synthetic::new(1_000_000, 100).unwrap();
        let message = typical_response(&set);
        assert!(message.len() <= MAX_DATAGRAM, "{}", message.len());
        let r = decode_response(&message).unwrap();
        let ResponseBody::Resolution { handle, values } = r.body else {
            panic!("{:?}", r.body);
        };
        assert_eq!(handle, set.identifier(500_000));
        assert_eq!(values.len(), 5);
    }
}
