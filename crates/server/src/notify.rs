//! NOTIFY (RFC 1996) to the configured secondaries after writes.
//!
//! A task looks at the SOA serial every [`POLL`]; when it moved, it sends
//! one NOTIFY per apex to each target over UDP (opcode NOTIFY, AA, the
//! apex SOA as question, the current SOA as answer), each from a socket of
//! its own, sent again up to [`ATTEMPTS`] times until an answer with the
//! same id and the NOTIFY opcode arrives. Writers never wait for it:
//! polling the serial batches the writes of a poll interval into one
//! NOTIFY (the debounce), and a slow or absent secondary only keeps its
//! own sending task busy.

use idnode_dns::DnsService;
use idnode_dns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use idnode_dns::hickory_proto::rr::RecordType;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// How often the serial is looked at.
pub const POLL: Duration = Duration::from_millis(200);
/// Sends of one NOTIFY before giving up on an answer.
pub const ATTEMPTS: u32 = 5;
/// Wait for an answer after the first send; doubled after each.
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// Watches the serial until `shutdown` and notifies `targets` whenever it
/// differs from the last one notified (at first: `start`, the serial when
/// the listeners started).
pub async fn run(
    service: Arc<DnsService>,
    targets: Vec<SocketAddr>,
    start: u32,
    shutdown: CancellationToken,
) {
    if targets.is_empty() {
        return;
    }
    let ids = Arc::new(AtomicU16::new(seed()));
    let mut notified = start;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => return,
        }
        let serial = service.soa_serial();
        if serial == notified {
            continue;
        }
        notified = serial;
        for apex in 0..service.zones().apexes().len() {
            let Some(soa) = service.soa_record(apex) else {
                continue;
            };
            for &target in &targets {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
                m.metadata.authoritative = true;
                m.add_query(Query::query(soa.name.clone(), RecordType::SOA));
                m.add_answer(soa.clone());
                let bytes = match m.to_vec() {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "NOTIFY could not be encoded");
                        continue;
                    }
                };
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        r = send(target, id, &bytes) => match r {
                            Ok(true) => tracing::debug!(%target, serial, "NOTIFY answered"),
                            Ok(false) => tracing::warn!(%target, serial, "NOTIFY not answered"),
                            Err(e) => tracing::warn!(%target, error = %e, "NOTIFY failed"),
                        },
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
        }
    }
}

/// A starting message id that differs between runs.
fn seed() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

/// Sends `bytes` to `target` until an answer to `id` arrives (true) or the
/// attempts run out (false).
async fn send(target: SocketAddr, id: u16, bytes: &[u8]) -> std::io::Result<bool> {
    let local = match target.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    let mut buf = vec![0u8; 4096];
    let mut wait = FIRST_WAIT;
    for _ in 0..ATTEMPTS {
        // A refused send (nobody listening yet) counts as an unanswered one.
        let _ = socket.send(bytes).await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => {
                    // ICMP unreachable from an earlier send: wait it out.
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Err(_) => break,
            };
            let Some(answer) = buf.get(..n).and_then(|b| Message::from_vec(b).ok()) else {
                continue;
            };
            if answer.metadata.id == id
                && answer.metadata.message_type == MessageType::Response
                && answer.metadata.op_code == OpCode::Notify
            {
                return Ok(true);
            }
        }
        wait *= 2;
    }
    Ok(false)
}
