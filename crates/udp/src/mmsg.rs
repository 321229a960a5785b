//! Batched UDP system calls (`recvmmsg`, `sendmmsg`, through nix's safe
//! wrappers), as the node's UDP workers and the load generator use them: up
//! to [`BATCH`] datagrams per call, into buffers allocated once
//! (performance-critical path).
//!
//! nix's `MultiHeaders` hold raw pointers and so cannot move between
//! threads; each thread keeps its own in a thread-local, which lets the
//! socket halves that own the buffers be handed to driver threads.

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use nix::sys::time::TimeSpec;
use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram read; longer ones are truncated (a Handle datagram is
/// at most 512 bytes, a DNS query over UDP rarely more).
pub const RECV_BUF: usize = 2048;

thread_local! {
    static RECV_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> =
        const { RefCell::new(None) };
    static SEND_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> =
        const { RefCell::new(None) };
}

fn io_error(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Receive buffers for one socket.
#[derive(Debug)]
pub struct RecvBatch {
    inputs: Vec<[u8; RECV_BUF]>,
    lens: [usize; BATCH],
    peers: [Option<SockaddrStorage>; BATCH],
    arrivals: [Option<u64>; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            inputs: vec![[0u8; RECV_BUF]; BATCH],
            lens: [0; BATCH],
            peers: [None; BATCH],
            arrivals: [None; BATCH],
        }
    }

    /// Waits for a first datagram (up to the socket's read timeout, then
    /// `WouldBlock`) and takes what else is queued; returns how many.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let (inputs, lens, peers, arrivals) = (
            &mut self.inputs,
            &mut self.lens,
            &mut self.peers,
            &mut self.arrivals,
        );
        let n = RECV_HEADERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            // Room for a receive timestamp per datagram, on sockets that
            // ask for one (`SO_TIMESTAMPNS`).
            let headers = cell.get_or_insert_with(|| {
                MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)))
            });
            let mut buffers = inputs.iter_mut();
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    buffers.next().map_or(&mut [][..], |b| &mut b[..]),
                )]
            });
            let results = recvmmsg(
                fd,
                headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(io_error)?;
            let mut n = 0;
            for (i, msg) in results.enumerate() {
                lens[i] = msg.bytes.min(RECV_BUF);
                peers[i] = msg.address;
                arrivals[i] = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmTimestampns(t) => epoch_nanos(t),
                        _ => None,
                    })
                });
                n = i + 1;
            }
            Ok::<usize, io::Error>(n)
        })?;
        Ok(n)
    }

    /// Datagram `i` of the last [`recv`](Self::recv) (`i` below what it returned).
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.inputs[i][..self.lens[i]]
    }

    /// Who sent datagram `i`.
    pub fn peer(&self, i: usize) -> Option<SockaddrStorage> {
        self.peers[i]
    }

    /// Who sent each of the first `n` datagrams of the last
    /// [`recv`](Self::recv) (`n` at most [`BATCH`]).
    pub fn peers(&self, n: usize) -> &[Option<SockaddrStorage>] {
        &self.peers[..n.min(BATCH)]
    }

    /// When the kernel received datagram `i`, in nanoseconds since the
    /// Unix epoch: on a socket with [`stamp_arrivals`] on, else `None`.
    pub fn arrival(&self, i: usize) -> Option<u64> {
        self.arrivals[i]
    }
}

/// Has the kernel stamp each datagram `socket` receives with the time it
/// arrived (`SO_TIMESTAMPNS`), which [`RecvBatch::arrival`] then returns.
pub fn stamp_arrivals(socket: &UdpSocket) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
        .map_err(io_error)
}

fn epoch_nanos(t: TimeSpec) -> Option<u64> {
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let nanos = u64::try_from(t.tv_nsec()).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Sends `messages` (each one datagram) to `addrs` (`None` on a connected
/// socket) with as few `sendmmsg` calls as the kernel allows. A datagram
/// the kernel refuses is skipped; the first such error is returned after
/// the rest went out.
pub fn send_all(
    socket: &UdpSocket,
    messages: &[IoSlice<'_>],
    addrs: &[Option<SockaddrStorage>],
) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    let count = messages.len().min(addrs.len());
    let mut first_error = None;
    SEND_HEADERS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
        let mut offset = 0;
        while offset < count {
            let end = count.min(offset + BATCH);
            let batch: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [messages
                    .get(offset + i)
                    .copied()
                    .unwrap_or(IoSlice::new(&[]))]
            });
            match sendmmsg(
                fd,
                headers,
                batch[..end - offset].iter(),
                &addrs[offset..end],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let sent = results.count();
                    if sent == 0 {
                        break;
                    }
                    offset += sent;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    first_error.get_or_insert(io_error(e));
                    offset += 1;
                }
            }
        }
    });
    first_error.map_or(Ok(()), Err)
}
