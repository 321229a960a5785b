//! Handle over UDP: one SO_REUSEPORT socket per worker, each worker taking a
//! datagram from receive to send on its own (performance-critical path).

use crate::unix_now;
use idnode_handle::{ENVELOPE_LEN, Envelope, MAX_DATAGRAM, Reassembly, for_each_datagram};
use idnode_resolver::{HandleService, Outcome, Scratch};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Multi-packet requests being reassembled, per worker.
const MAX_PENDING: usize = 1024;
const PENDING_TTL: Duration = Duration::from_secs(5);

pub(crate) fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        // Later workers join the port the first one got (for port 0).
        addr = std_socket.local_addr()?;
        sockets.push(UdpSocket::from_std(std_socket)?);
    }
    Ok(sockets)
}

pub(crate) async fn serve(
    socket: UdpSocket,
    service: Arc<HandleService>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Scratch::default();
    let mut pending: HashMap<(SocketAddr, u32), (Reassembly, Instant)> = HashMap::new();
    loop {
        let (len, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let datagram = &buf[..len];
        let Ok(envelope) = Envelope::decode(datagram) else {
            continue; // Not even an envelope: drop silently.
        };
        let whole = ENVELOPE_LEN + envelope.message_length as usize;
        let outcome = if whole == len || len < ENVELOPE_LEN + 1 || whole < len {
            service.respond(datagram, unix_now(), &mut out, &mut scratch)
        } else {
            match reassemble(&mut pending, peer, &envelope, datagram) {
                Some(message) => service.respond(&message, unix_now(), &mut out, &mut scratch),
                None => continue,
            }
        };
        if outcome == Outcome::Drop || out.is_empty() {
            continue;
        }
        send(&socket, peer, &out).await;
    }
}

fn reassemble(
    pending: &mut HashMap<(SocketAddr, u32), (Reassembly, Instant)>,
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

async fn send(socket: &UdpSocket, peer: SocketAddr, message: &[u8]) {
    if message.len() <= MAX_DATAGRAM {
        if let Err(e) = socket.send_to(message, peer).await {
            tracing::debug!(error = %e, %peer, "udp send failed");
        }
        return;
    }
    let mut datagrams = Vec::new();
    for_each_datagram(message, |d| datagrams.push(d.to_vec()));
    for d in datagrams {
        if let Err(e) = socket.send_to(&d, peer).await {
            tracing::debug!(error = %e, %peer, "udp send failed");
            return;
        }
    }
}
