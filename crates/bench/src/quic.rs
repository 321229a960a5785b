//! Handle over QUIC (ALPN `hdl`, idnode's extension): one QUIC connection a
//! channel, one request per bidirectional stream, as many streams in
//! flight on a connection as the driver keeps requests outstanding on its
//! channel (closed loop: its share of `--concurrency`).
//!
//! The connection is the one `idnode-client` opens
//! ([`idnode_client::quic::connect_endpoint`]: an endpoint of its own, the
//! server checked with a pinned fingerprint, a CA file, or not at all). So
//! the connections of a run come from different UDP ports and spread over
//! the server's SO_REUSEPORT workers, as separate clients would.
//!
//! The closed loop drives connections on its own runtimes (the driver's
//! `quic_closed_loop`, with `Quic::connect` and `ask`); the channel
//! form below serves the open loop.
//!
//! quinn is async and the driver is not: each channel runs a
//! single-threaded tokio runtime on a thread of its own (`bench-quic-<n>`).
//! [`SendHalf::flush`] hands the requests queued since the last flush to it
//! in one message (one wake-up a batch); there every request gets a task
//! that opens a stream, writes the request, finishes the stream and reads
//! the answer to the end of the stream. Answers come back through a
//! channel that [`RecvHalf::recv`] waits on for at most [`POLL`]; the
//! driver matches them by request id as on UDP and TCP. A stream the server
//! resets fails that request alone ([`Recv::Failed`]); a closed connection
//! closes the channel, and the driver reopens it (closed loop).

use crate::transport::{Arrival, Channel, POLL, Recv, RecvHalf, SendHalf, Transport};
use idnode_client::TlsOptions;
use idnode_client::quic::{ANSWER_LIMIT, connect_endpoint};
use idnode_handle::Envelope;
use quinn::{Connection, ReadError, ReadToEndError, VarInt, WriteError};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc as async_mpsc, oneshot};

/// The least time the QUIC handshake gets (else `timeout`).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most time a closing connection gets to tell the server (so that
/// the server frees its connection slot at once, not at its idle timeout).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests handed to the connection's thread in one message at most.
const BATCH: usize = 64;
/// Answers handed to the driver in one [`RecvHalf::recv`] call at most.
const DRAIN: usize = 1024;

/// Handle over QUIC to `server`, the server checked as `tls` says.
#[derive(Debug, Clone)]
pub struct Quic {
    pub server: SocketAddr,
    /// Needs [`TlsOptions::auth`]: `--insecure`, `--pin` or `--ca-file`.
    pub tls: TlsOptions,
    /// `--timeout`: a stream still unanswered this long is dropped (the
    /// driver has counted its request as a timeout by then), and the time
    /// the handshake gets (1 s at least).
    pub timeout: Duration,
}

impl Quic {
    pub fn new(server: SocketAddr, tls: TlsOptions) -> Self {
        Self {
            server,
            tls,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Names the connections' threads.
static THREADS: AtomicUsize = AtomicUsize::new(0);

impl Transport for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    fn server(&self) -> SocketAddr {
        self.server
    }

    /// A failed send means the connection's thread is gone: reopen.
    fn is_stream(&self) -> bool {
        true
    }

    fn quic(&self) -> Option<&Quic> {
        Some(self)
    }

    fn open(&self) -> io::Result<Channel> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (requests_tx, requests_rx) = async_mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel();
        let (gone_tx, gone_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let quic = self.clone();
        let n = THREADS.fetch_add(1, Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name(format!("bench-quic-{n}"))
            .spawn(move || {
                runtime.block_on(quic.serve(requests_rx, events_tx, gone_rx, ready_tx));
            })?;
        let receiver = QuicReceiver {
            events: events_rx,
            gone: Some(gone_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            // The receiver's drop joins the thread, which is ending.
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("the QUIC connection's thread stopped")),
        }
        Ok(Channel {
            sender: Box::new(QuicSender {
                requests: requests_tx,
                batch: Vec::with_capacity(BATCH),
            }),
            receiver: Box::new(receiver),
        })
    }
}

/// What the connection's thread tells the receiving half.
enum Event {
    /// A whole answer (the stream's bytes to its end).
    Answer(Vec<u8>),
    /// The server refused this request alone (reset or stopped its stream).
    Failed { request_id: u32, error: String },
    /// The connection is closed; nothing more will come.
    Closed(String),
}

impl Quic {
    /// Connects (an endpoint of its own), within `timeout` (1 s at least).
    pub(crate) async fn connect(&self) -> io::Result<(quinn::Endpoint, Connection)> {
        let limit = self.timeout.max(MIN_CONNECT_TIMEOUT);
        let connected = tokio::time::timeout(limit, connect_endpoint(self.server, &self.tls));
        match connected.await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(io::Error::new(ErrorKind::ConnectionRefused, e.to_string())),
            Err(_) => Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("no QUIC handshake with {} within {limit:?}", self.server),
            )),
        }
    }

    /// Closes a connection and gives the server a moment to hear it.
    pub(crate) async fn close(endpoint: &quinn::Endpoint, connection: &Connection) {
        connection.close(VarInt::from_u32(0), b"bench done");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.wait_idle()).await;
    }

    /// The connection's thread: connects, reports on `ready`, then serves
    /// requests until the receiving half is dropped (`gone`).
    async fn serve(
        self,
        mut requests: async_mpsc::UnboundedReceiver<Vec<Vec<u8>>>,
        events: mpsc::Sender<Event>,
        mut gone: oneshot::Receiver<()>,
        ready: mpsc::SyncSender<io::Result<()>>,
    ) {
        let (endpoint, connection) = match self.connect().await {
            Ok(pair) => pair,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        {
            // One report when the connection goes, whatever the streams saw.
            let connection = connection.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let reason = connection.closed().await;
                let _ = events.send(Event::Closed(format!("QUIC connection closed: {reason}")));
            });
        }
        loop {
            tokio::select! {
                biased;
                _ = &mut gone => break,
                batch = requests.recv() => match batch {
                    Some(batch) => {
                        for message in batch {
                            tokio::spawn(exchange(
                                connection.clone(),
                                message,
                                events.clone(),
                                self.timeout,
                            ));
                        }
                    }
                    // The sender is done (open loop): answers may still come.
                    None => {
                        let _ = (&mut gone).await;
                        break;
                    }
                },
            }
        }
        Self::close(&endpoint, &connection).await;
    }
}

/// One request on a stream of its own; its answer (or why there is none)
/// goes to `events`. Nothing is reported when the connection is lost (the
/// connection's own event says so) or after `timeout` (the driver counts
/// timeouts itself).
async fn exchange(
    connection: Connection,
    message: Vec<u8>,
    events: mpsc::Sender<Event>,
    timeout: Duration,
) {
    let event = match tokio::time::timeout(timeout, ask(&connection, &message)).await {
        Ok(Ok(answer)) => Event::Answer(answer),
        Ok(Err(Some(error))) => Event::Failed {
            // The driver encoded it: it decodes.
            request_id: Envelope::decode(&message).map_or(0, |e| e.request_id),
            error,
        },
        Ok(Err(None)) | Err(_) => return,
    };
    let _ = events.send(event);
}

/// One request on a stream of its own: its answer, or why the server
/// refused it (`Some`), or `None` when the connection is lost.
pub(crate) async fn ask(
    connection: &Connection,
    message: &[u8],
) -> Result<Vec<u8>, Option<String>> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|_| None)?;
    send.write_all(message).await.map_err(|e| match e {
        WriteError::ConnectionLost(_) => None,
        WriteError::Stopped(code) => Some(format!(
            "the server stopped the request stream (code {code})"
        )),
        other => Some(format!("cannot write the request: {other}")),
    })?;
    // Fails only when the stream is closed already: the read says why.
    let _ = send.finish();
    recv.read_to_end(ANSWER_LIMIT).await.map_err(|e| match e {
        ReadToEndError::Read(ReadError::ConnectionLost(_)) => None,
        ReadToEndError::Read(ReadError::Reset(code)) => {
            Some(format!("the server reset the request stream (code {code})"))
        }
        ReadToEndError::TooLong => Some(format!("an answer longer than {ANSWER_LIMIT} bytes")),
        other => Some(format!("cannot read the answer: {other}")),
    })
}

/// Queues encoded requests until [`SendHalf::flush`] (or a full batch).
struct QuicSender {
    requests: async_mpsc::UnboundedSender<Vec<Vec<u8>>>,
    batch: Vec<Vec<u8>>,
}

impl SendHalf for QuicSender {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.batch.push(message.to_vec());
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.requests.send(batch).map_err(|_| {
            io::Error::new(
                ErrorKind::BrokenPipe,
                "the QUIC connection's thread has stopped",
            )
        })
    }
}

struct QuicReceiver {
    events: mpsc::Receiver<Event>,
    /// Dropped to stop the connection's thread.
    gone: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RecvHalf for QuicReceiver {
    fn recv(&mut self, on_message: &mut dyn FnMut(&[u8], Arrival)) -> io::Result<Recv> {
        let mut event = match self.events.recv_timeout(POLL) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(Recv::Idle),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::new(
                    ErrorKind::NotConnected,
                    "the QUIC connection's thread has stopped",
                ));
            }
        };
        let mut whole = 0;
        loop {
            match event {
                Event::Answer(message) => {
                    on_message(&message, None);
                    whole += 1;
                }
                // Answers before it were counted; those after it wait for
                // the next call.
                Event::Failed { request_id, error } => {
                    return Ok(Recv::Failed {
                        request_id,
                        error: io::Error::other(error),
                    });
                }
                Event::Closed(reason) => {
                    return Err(io::Error::new(ErrorKind::ConnectionAborted, reason));
                }
            }
            if whole >= DRAIN {
                break;
            }
            match self.events.try_recv() {
                Ok(e) => event = e,
                Err(_) => break,
            }
        }
        Ok(Recv::Messages(whole))
    }
}

impl Drop for QuicReceiver {
    /// Stops the connection's thread and waits until it told the server
    /// (at most about [`CLOSE_TIMEOUT`]).
    fn drop(&mut self) {
        drop(self.gone.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn receiver() -> (mpsc::Sender<Event>, QuicReceiver) {
        let (tx, rx) = mpsc::channel();
        let receiver = QuicReceiver {
            events: rx,
            gone: None,
            thread: None,
        };
        (tx, receiver)
    }

    fn recv(r: &mut QuicReceiver) -> (io::Result<Recv>, Vec<Vec<u8>>) {
        let mut got = Vec::new();
        let result = r.recv(&mut |m, _| got.push(m.to_vec()));
        (result, got)
    }

    #[test]
    fn answers_failures_and_the_close_reach_the_driver_in_order() {
        let (tx, mut r) = receiver();
        assert!(matches!(recv(&mut r).0, Ok(Recv::Idle)));
        tx.send(Event::Answer(b"a".to_vec())).unwrap();
        tx.send(Event::Answer(b"b".to_vec())).unwrap();
        tx.send(Event::Failed {
            request_id: 7,
            error: "reset (code 1)".into(),
        })
        .unwrap();
        tx.send(Event::Answer(b"c".to_vec())).unwrap();
        tx.send(Event::Closed("gone".into())).unwrap();
        let (result, got) = recv(&mut r);
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        match result.unwrap() {
            Recv::Failed { request_id, error } => {
                assert_eq!(request_id, 7);
                assert!(error.to_string().contains("code 1"));
            }
            other => panic!("{other:?}"),
        }
        let (result, got) = recv(&mut r);
        assert_eq!(got, [b"c".to_vec()]);
        assert_eq!(result.unwrap_err().to_string(), "gone");
        drop(tx);
        assert!(recv(&mut r).0.is_err(), "the thread is gone");
    }

    #[test]
    fn a_send_to_a_stopped_connection_fails() {
        let (tx, rx) = async_mpsc::unbounded_channel();
        let mut sender = QuicSender {
            requests: tx,
            batch: Vec::new(),
        };
        sender.send(b"one").unwrap();
        sender.flush().unwrap();
        drop(rx);
        sender.send(b"two").unwrap();
        assert_eq!(sender.flush().unwrap_err().kind(), ErrorKind::BrokenPipe);
    }
}
