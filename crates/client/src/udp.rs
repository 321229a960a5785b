//! Handle over UDP on one connected socket: many requests in flight, their
//! answers (reassembled when they span several datagrams) matched by
//! request id. A request unanswered after half the timeout is sent once
//! more, with the same id.

use crate::pending::{Answer, Pending, Waiter};
use crate::{AbortOnDrop, ClientError, set_request_id};
use idnode_handle::{Envelope, MAX_DATAGRAM, Reassembly, for_each_datagram, is_fragment};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Partial answers kept at most; past this, those nobody waits for go.
const MAX_PARTIAL: usize = 1024;

#[derive(Debug)]
pub(crate) struct UdpChannel {
    server: SocketAddr,
    socket: Arc<UdpSocket>,
    pending: Arc<Pending>,
    _reader: AbortOnDrop,
}

impl UdpChannel {
    pub(crate) async fn connect(server: SocketAddr) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            addr: server,
            source,
        };
        let bind = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        let socket = Arc::new(socket);
        let pending = Arc::new(Pending::default());
        let reader = tokio::spawn(read_answers(socket.clone(), pending.clone()));
        Ok(Self {
            server,
            socket,
            pending,
            _reader: AbortOnDrop(reader),
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.pending.is_closed()
    }

    /// Sends `message` under a fresh request id from `ids` and waits for
    /// its answer; resends once after `timeout / 2`. The caller bounds the
    /// whole exchange by `timeout`.
    pub(crate) async fn exchange(
        &self,
        message: &mut [u8],
        ids: impl FnMut() -> u32,
        timeout: Duration,
    ) -> Result<(u32, Vec<u8>), ClientError> {
        let mut waiter: Waiter = self.pending.register(ids).map_err(|_| self.closed())?;
        set_request_id(message, waiter.id);
        self.send(message).await?;
        if let Ok(answer) = tokio::time::timeout(timeout / 2, &mut waiter.answer).await {
            return self.answer(waiter.id, answer);
        }
        // No answer yet: one retry.
        self.send(message).await?;
        let answer = (&mut waiter.answer).await;
        self.answer(waiter.id, answer)
    }

    fn answer(
        &self,
        id: u32,
        answer: Result<Answer, oneshot::error::RecvError>,
    ) -> Result<(u32, Vec<u8>), ClientError> {
        match answer {
            Ok(Ok(message)) => Ok((id, message)),
            Ok(Err(kind)) => Err(ClientError::Io {
                addr: self.server,
                source: kind.into(),
            }),
            Err(_) => Err(self.closed()),
        }
    }

    async fn send(&self, message: &[u8]) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            addr: self.server,
            source,
        };
        if message.len() <= MAX_DATAGRAM {
            self.socket.send(message).await.map_err(io)?;
            return Ok(());
        }
        let mut datagrams = Vec::new();
        for_each_datagram(message, |d| datagrams.push(d.to_vec()));
        for d in &datagrams {
            self.socket.send(d).await.map_err(io)?;
        }
        Ok(())
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed { addr: self.server }
    }
}

/// Receives answers until the channel is dropped, and hands each to the
/// request waiting for its id.
async fn read_answers(socket: Arc<UdpSocket>, pending: Arc<Pending>) {
    let mut buf = vec![0u8; 65536];
    let mut partial: HashMap<u32, Reassembly> = HashMap::new();
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            // An ICMP error (port unreachable...) on the connected socket:
            // nobody listens there, so the requests in flight fail now
            // rather than at their timeout.
            Err(e) if is_unreachable(&e) => {
                pending.fail_all(e.kind());
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                pending.close();
                return;
            }
        };
        let datagram = &buf[..n];
        let Ok(envelope) = Envelope::decode(datagram) else {
            continue;
        };
        let id = envelope.request_id;
        if !is_fragment(&envelope, n) {
            pending.complete(id, datagram.to_vec());
            continue;
        }
        if !pending.is_waiting(id) {
            continue;
        }
        if partial.len() >= MAX_PARTIAL && !partial.contains_key(&id) {
            partial.retain(|id, _| pending.is_waiting(*id));
            if partial.len() >= MAX_PARTIAL {
                continue;
            }
        }
        let reassembly = match partial.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match Reassembly::new(datagram) {
                Ok(r) => v.insert(r),
                Err(_) => continue,
            },
        };
        match reassembly.insert(datagram) {
            Ok(None) => {}
            Ok(Some(message)) => {
                partial.remove(&id);
                pending.complete(id, message);
            }
            Err(_) => {
                partial.remove(&id);
            }
        }
    }
}

fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | HostUnreachable | NetworkUnreachable
    )
}
