//! Binding a SO_REUSEPORT group: one UDP socket a worker, all on the same
//! port, with the buffer sizes idnode's listeners ask for.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Kernel receive and send buffer asked for on each socket (the kernel may
/// grant less; that is not an error).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Binds `sockets` (at least one) UDP sockets on `addr` with SO_REUSEPORT;
/// with port 0 the first picks a free port and the others join it. With a
/// `read_timeout`, a blocking receive returns `WouldBlock` after it (a
/// worker thread then looks at its stop flag). No steering program is
/// attached: see [`crate::steer`].
pub fn bind(
    addr: SocketAddr,
    sockets: usize,
    read_timeout: Option<Duration>,
) -> std::io::Result<Vec<UdpSocket>> {
    let mut bound = Vec::with_capacity(sockets.max(1));
    let mut addr = addr;
    for _ in 0..sockets.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        if read_timeout.is_some() {
            socket.set_read_timeout(read_timeout)?;
        }
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        // Later sockets join the port the first one got (for port 0).
        addr = socket.local_addr()?;
        bound.push(socket);
    }
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_each_socket_receives() {
        let group = bind("127.0.0.1:0".parse().unwrap(), 3, None).unwrap();
        assert_eq!(group.len(), 3);
        let port = group[0].local_addr().unwrap().port();
        assert!(group.iter().all(|s| s.local_addr().unwrap().port() == port));
        // Another socket without SO_REUSEPORT cannot take the port.
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn the_read_timeout_bounds_a_blocking_receive() {
        let timeout = Duration::from_millis(20);
        let group = bind("127.0.0.1:0".parse().unwrap(), 1, Some(timeout)).unwrap();
        assert_eq!(group[0].read_timeout().unwrap(), Some(timeout));
        let mut buf = [0u8; 16];
        let err = group[0].recv_from(&mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }
}
