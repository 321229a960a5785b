//! How requests reach a server: a [`Transport`] opens channels (a UDP
//! socket, a TCP connection, a QUIC connection), each split into a sending
//! and a receiving half that blocking driver threads own.
//!
//! Adding a transport means implementing [`Transport`], [`SendHalf`] and
//! [`RecvHalf`]: an async library runs its own runtime inside the channel
//! and hands finished responses to [`RecvHalf::recv`] through a channel,
//! since the driver only needs whole response messages and a bounded wait
//! (see [`crate::quic`]).

use idnode_handle::{
    ENVELOPE_LEN, Envelope, MAX_DATAGRAM, Reassembly, flags, for_each_datagram, frame_len,
};
use idnode_udp::mmsg::{BATCH, RecvBatch, send_all, stamp_arrivals};
use nix::sys::socket::SockaddrStorage;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// How long [`RecvHalf::recv`] waits before returning [`Recv::Idle`], so
/// that drivers notice timeouts and the end of a run.
pub const POLL: Duration = Duration::from_millis(5);

/// Opens channels to one server.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// `udp`, `tcp`, `quic`.
    fn name(&self) -> &'static str;
    /// The server driven.
    fn server(&self) -> SocketAddr;
    /// Op flags every request on this transport carries (TCP: KC).
    fn op_flags(&self) -> u32 {
        0
    }
    /// A byte stream (TCP, QUIC): a failed send leaves the stream in an
    /// unknown state, so the channel is closed and reopened. A datagram
    /// transport only loses the datagrams that failed.
    fn is_stream(&self) -> bool {
        false
    }
    /// Opens one channel (a socket, a connection).
    fn open(&self) -> io::Result<Channel>;
    /// The QUIC transport, which the closed loop drives on its own runtime
    /// instead of through [`Channel`]s.
    fn quic(&self) -> Option<&crate::quic::Quic> {
        None
    }
}

/// One socket or connection, split so that a sender thread and a receiver
/// thread can own a half each.
pub struct Channel {
    pub sender: Box<dyn SendHalf>,
    pub receiver: Box<dyn RecvHalf>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").finish_non_exhaustive()
    }
}

pub trait SendHalf: Send {
    /// Sends (or queues, until [`flush`](Self::flush)) one whole request.
    fn send(&mut self, message: &[u8]) -> io::Result<()>;
    /// Writes what [`send`](Self::send) queued.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one [`RecvHalf::recv`] call saw.
#[derive(Debug)]
pub enum Recv {
    /// This many whole messages were handed to the callback.
    Messages(usize),
    /// No whole message arrived within about [`POLL`] (nothing, or only
    /// parts of a multi-datagram response).
    Idle,
    /// A failure the channel survives (an ICMP "port unreachable" reported
    /// on a UDP socket, for example).
    Error(io::Error),
    /// The request with this id failed, and only it (a QUIC stream the
    /// server reset): it counts as an error at once. Messages handed to the
    /// callback before it in the same call count as usual.
    Failed { request_id: u32, error: io::Error },
}

/// When a message reached this machine, in nanoseconds since the Unix
/// epoch, as the kernel stamped it (UDP: `SO_TIMESTAMPNS`; a
/// multi-datagram response: its last datagram); `None` where the
/// transport cannot tell (TCP, QUIC), and the driver then takes the time
/// it reads the message.
pub type Arrival = Option<u64>;

pub trait RecvHalf: Send {
    /// Waits at most about [`POLL`] for responses and calls `on_message`
    /// with each whole message that arrived (multi-datagram UDP responses
    /// reassembled, TCP frames cut) and its [`Arrival`]. `Err` means the
    /// channel is closed.
    fn recv(&mut self, on_message: &mut dyn FnMut(&[u8], Arrival)) -> io::Result<Recv>;

    /// A descriptor that polls readable when [`recv`](Self::recv) has a
    /// datagram to return at once, for a generator that sends and receives
    /// on one thread (the open loop over UDP). `None` when `recv` may wait
    /// for more than what polled ready (stream framing, QUIC).
    fn readiness(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

fn is_idle(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Handle over UDP: one connected socket a channel, requests and answers
/// moved in batches (`sendmmsg`, `recvmmsg`).
#[derive(Debug, Clone)]
pub struct Udp {
    pub server: SocketAddr,
}

impl Transport for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn server(&self) -> SocketAddr {
        self.server
    }

    fn open(&self) -> io::Result<Channel> {
        let socket = Socket::new(
            Domain::for_address(self.server),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        // Large buffers so that bursts are not dropped by the client side.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        let local: SocketAddr = if self.server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        socket.bind(&local.into())?;
        socket.connect(&self.server.into())?;
        socket.set_read_timeout(Some(POLL))?;
        let socket: UdpSocket = socket.into();
        // Latency ends when the answer reaches the machine, not when this
        // generator (sharing the cores with the server) gets to read it;
        // without stamps, the driver takes its own reading time.
        let _ = stamp_arrivals(&socket);
        let sender = UdpSender {
            socket: socket.try_clone()?,
            queue: Vec::with_capacity(BATCH * MAX_DATAGRAM),
            spans: Vec::with_capacity(BATCH),
        };
        Ok(Channel {
            sender: Box::new(sender),
            receiver: Box::new(UdpReceiver {
                socket,
                batch: RecvBatch::new(),
                pending: HashMap::new(),
            }),
        })
    }
}

/// Requests queued until [`SendHalf::flush`] (or a full batch) sends
/// them with one `sendmmsg`.
struct UdpSender {
    socket: UdpSocket,
    queue: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

const NO_ADDRESSES: [Option<SockaddrStorage>; BATCH] = [None; BATCH];

impl SendHalf for UdpSender {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        if message.len() > MAX_DATAGRAM {
            // Rare (an identifier near the 2048-byte limit): split it and
            // send the parts one by one.
            self.flush()?;
            let mut result = Ok(());
            for_each_datagram(message, |d| {
                if result.is_ok() {
                    result = self.socket.send(d).map(drop);
                }
            });
            return result;
        }
        let start = self.queue.len();
        self.queue.extend_from_slice(message);
        self.spans.push((start, self.queue.len()));
        if self.spans.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.spans.is_empty() {
            return Ok(());
        }
        let (queue, spans) = (&self.queue, &self.spans);
        let slices: [IoSlice<'_>; BATCH] = std::array::from_fn(|i| {
            spans
                .get(i)
                .map_or(IoSlice::new(&[]), |&(a, b)| IoSlice::new(&queue[a..b]))
        });
        let n = spans.len();
        let result = send_all(&self.socket, &slices[..n], &NO_ADDRESSES[..n]);
        self.queue.clear();
        self.spans.clear();
        result
    }
}

/// Most multi-datagram responses being reassembled on one socket.
const MAX_PENDING: usize = 1024;

struct UdpReceiver {
    socket: UdpSocket,
    batch: RecvBatch,
    pending: HashMap<u32, Reassembly>,
}

impl RecvHalf for UdpReceiver {
    fn readiness(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.socket.as_fd())
    }

    fn recv(&mut self, on_message: &mut dyn FnMut(&[u8], Arrival)) -> io::Result<Recv> {
        let n = match self.batch.recv(&self.socket) {
            Ok(n) => n,
            Err(e) if is_idle(&e) => return Ok(Recv::Idle),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Recv::Idle),
            Err(e) => return Ok(Recv::Error(e)),
        };
        let mut whole = 0;
        let mut failure = None;
        for i in 0..n {
            let datagram = self.batch.datagram(i);
            let arrival = self.batch.arrival(i);
            match take_datagram(&mut self.pending, datagram, &mut |m| {
                on_message(m, arrival);
            }) {
                Ok(true) => whole += 1,
                Ok(false) => {}
                Err(e) => failure = Some(e),
            }
        }
        Ok(match (whole, failure) {
            (0, Some(e)) => Recv::Error(e),
            (0, None) => Recv::Idle,
            (n, _) => Recv::Messages(n),
        })
    }
}

/// Hands a whole message to `on_message` (true), or keeps a part of a
/// multi-datagram response until it is complete.
fn take_datagram(
    pending: &mut HashMap<u32, Reassembly>,
    datagram: &[u8],
    on_message: &mut dyn FnMut(&[u8]),
) -> io::Result<bool> {
    let Ok(envelope) = Envelope::decode(datagram) else {
        // Not a Handle message: let the driver count it as undecodable.
        on_message(datagram);
        return Ok(true);
    };
    if !envelope.is_truncated() && ENVELOPE_LEN + envelope.message_length as usize == datagram.len()
    {
        on_message(datagram);
        return Ok(true);
    }
    let id = envelope.request_id;
    if !pending.contains_key(&id) {
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        match Reassembly::new(datagram) {
            Ok(r) => {
                pending.insert(id, r);
            }
            Err(_) => {
                on_message(datagram);
                return Ok(true);
            }
        }
    }
    let Some(reassembly) = pending.get_mut(&id) else {
        return Ok(false);
    };
    match reassembly.insert(datagram) {
        Ok(Some(message)) => {
            pending.remove(&id);
            on_message(&message);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            pending.remove(&id);
            Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("multi-datagram response: {e}"),
            ))
        }
    }
}

/// Handle over TCP: one connection a channel, requests pipelined on it
/// with the keep-connection flag (KC).
#[derive(Debug, Clone)]
pub struct Tcp {
    pub server: SocketAddr,
}

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn server(&self) -> SocketAddr {
        self.server
    }

    fn op_flags(&self) -> u32 {
        flags::KC
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn open(&self) -> io::Result<Channel> {
        let stream = TcpStream::connect_timeout(&self.server, Duration::from_secs(3))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        // A server that stops reading must not hang the run.
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let writer = stream.try_clone()?;
        Ok(Channel {
            sender: Box::new(TcpSender {
                stream: writer,
                out: Vec::with_capacity(16 * 1024),
            }),
            receiver: Box::new(TcpReceiver {
                stream,
                buf: Vec::with_capacity(64 * 1024),
                chunk: vec![0; 64 * 1024],
            }),
        })
    }
}

struct TcpSender {
    stream: TcpStream,
    out: Vec<u8>,
}

impl SendHalf for TcpSender {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(message);
        if self.out.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out);
        self.out.clear();
        result
    }
}

struct TcpReceiver {
    stream: TcpStream,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl RecvHalf for TcpReceiver {
    fn recv(&mut self, on_message: &mut dyn FnMut(&[u8], Arrival)) -> io::Result<Recv> {
        let n = match self.stream.read(&mut self.chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if is_idle(&e) => return Ok(Recv::Idle),
            Err(e) => return Err(e),
        };
        self.buf.extend_from_slice(&self.chunk[..n]);
        let mut at = 0;
        let mut count = 0;
        loop {
            match frame_len(&self.buf[at..]) {
                Ok(Some(len)) => {
                    on_message(&self.buf[at..at + len], None);
                    at += len;
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("undecodable frame from the server: {e}"),
                    ));
                }
            }
        }
        self.buf.drain(..at);
        Ok(if count == 0 {
            Recv::Idle
        } else {
            Recv::Messages(count)
        })
    }
}
