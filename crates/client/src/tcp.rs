//! Handle over TCP on one connection with the keep-connection flag: many
//! requests in flight (pipelined), answers matched by request id.
//!
//! One task writes (it takes whole messages from a queue, so a request
//! abandoned by its caller never leaves half a message on the stream) and
//! one reads. When either fails or the server closes, every request in
//! flight fails with [`ClientError::Closed`] and the client reconnects.

use crate::pending::{Pending, Waiter};
use crate::{AbortOnDrop, ClientError, set_request_id};
use idnode_handle::{Envelope, frame_len};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Messages queued for the writer.
const QUEUE: usize = 1024;

#[derive(Debug)]
pub(crate) struct TcpChannel {
    server: SocketAddr,
    queue: mpsc::Sender<Vec<u8>>,
    pending: Arc<Pending>,
    _reader: AbortOnDrop,
    _writer: AbortOnDrop,
}

impl TcpChannel {
    pub(crate) async fn connect(server: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(server)
            .await
            .map_err(|source| ClientError::Io {
                addr: server,
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let (queue, rx) = mpsc::channel(QUEUE);
        let reader = tokio::spawn(read_answers(read, pending.clone()));
        let writer = tokio::spawn(write_requests(write, rx, pending.clone()));
        Ok(Self {
            server,
            queue,
            pending,
            _reader: AbortOnDrop(reader),
            _writer: AbortOnDrop(writer),
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.pending.is_closed()
    }

    /// Sends `message` under a fresh request id from `ids` and waits for
    /// its answer. The caller bounds the wait.
    pub(crate) async fn exchange(
        &self,
        message: &mut [u8],
        ids: impl FnMut() -> u32,
    ) -> Result<(u32, Vec<u8>), ClientError> {
        let mut waiter: Waiter = self.pending.register(ids).map_err(|_| self.closed())?;
        set_request_id(message, waiter.id);
        self.queue
            .send(message.to_vec())
            .await
            .map_err(|_| self.closed())?;
        match (&mut waiter.answer).await {
            Ok(Ok(answer)) => Ok((waiter.id, answer)),
            Ok(Err(_)) | Err(_) => Err(self.closed()),
        }
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed { addr: self.server }
    }
}

/// Writes queued messages, several per write when they pile up.
async fn write_requests(
    mut stream: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    pending: Arc<Pending>,
) {
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match queue.try_recv() {
                Ok(next) => batch.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        if stream.write_all(&batch).await.is_err() {
            break;
        }
    }
    pending.close();
}

/// Reads answers until the connection ends and hands each to the request
/// waiting for its id.
async fn read_answers(mut stream: OwnedReadHalf, pending: Arc<Pending>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        loop {
            match frame_len(&buf) {
                Ok(Some(total)) => {
                    let message: Vec<u8> = buf.drain(..total).collect();
                    if let Ok(envelope) = Envelope::decode(&message) {
                        pending.complete(envelope.request_id, message);
                    }
                }
                Ok(None) => break,
                Err(_) => break 'read, // not Handle framing: give up on the connection
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    pending.close();
}
