//! Which socket of a SO_REUSEPORT group gets a datagram: classic BPF
//! programs attached to the group (SO_ATTACH_REUSEPORT_CBPF).
//!
//! - [`by_cpu`]: each datagram to socket `cpu % sockets`, the CPU being the
//!   one that received it. Without a program the kernel picks a socket by a
//!   hash of the peer's address, and a few busy clients can all land on one
//!   worker while another idles.
//! - [`by_quic_connection_id`]: each QUIC packet to the socket named by the
//!   first byte of its destination connection ID, so that a connection
//!   stays on the endpoint that issued its IDs when the client's address
//!   changes.
//!
//! [`attach`], [`op`] and [`group_size`] are the parts programs are built
//! from. The sockets are indexed in the order they were bound; a program
//! returns the index. When a program cannot read the bytes it needs (a
//! datagram too short), the kernel takes index 0.

use std::net::UdpSocket;

/// Hands each datagram to socket `cpu % sockets`, where `cpu` is the CPU
/// that received it (the sender's on loopback, the receive queue's on a
/// network card).
pub fn by_cpu(socket: &UdpSocket, sockets: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_K, BPF_LD, BPF_MOD, BPF_RET, BPF_W};
        let sockets = group_size(sockets)?;
        let mut program = [
            // A = the receiving CPU
            op(
                BPF_LD | BPF_W | BPF_ABS,
                (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
            ),
            op(BPF_ALU | BPF_MOD | BPF_K, sockets),
            op(BPF_RET | BPF_A, 0),
        ];
        attach(socket, &mut program)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, sockets);
        Ok(())
    }
}

/// Hands each QUIC packet to socket `dcid[0] % sockets`, where `dcid[0]` is
/// the first byte of its destination connection ID: at offset 6 in a long
/// header (flags, version, ID length, ID), at offset 1 in a short one. A
/// client's first packets carry an ID the client chose (at random), so a
/// new connection lands on any endpoint, and all of them on the same one;
/// that endpoint then issues IDs whose first byte names it, which the
/// client uses from then on.
pub fn by_quic_connection_id(socket: &UdpSocket, sockets: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET};
        use libc::{BPF_K, BPF_LD, BPF_MOD, BPF_RET};
        let sockets = group_size(sockets)?;
        let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let mut program = [
            /* 0 */ op(BPF_LD | BPF_B | BPF_ABS, 0), // the flags byte
            /* 1 */ jump(BPF_JMP | BPF_JSET | BPF_K, 0x80, 0, 4), // long header?
            /* 2 */ op(BPF_LD | BPF_B | BPF_ABS, 5), // the ID's length
            /* 3 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0), // none: A = 0
            /* 4 */ op(BPF_LD | BPF_B | BPF_ABS, 6), // long: its first byte
            /* 5 */ op(BPF_JMP | BPF_JA, 1),
            /* 6 */ op(BPF_LD | BPF_B | BPF_ABS, 1), // short: its first byte
            /* 7 */ op(BPF_ALU | BPF_MOD | BPF_K, sockets),
            /* 8 */ op(BPF_RET | BPF_A, 0),
        ];
        attach(socket, &mut program)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, sockets);
        Ok(())
    }
}

/// The size of a SO_REUSEPORT group as a program's operand: 1 to 2^32-1.
#[cfg(target_os = "linux")]
pub fn group_size(sockets: usize) -> std::io::Result<u32> {
    u32::try_from(sockets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| std::io::Error::other("a SO_REUSEPORT group of 1 to 2^32-1 sockets"))
}

/// A classic BPF instruction without jumps.
#[cfg(target_os = "linux")]
pub fn op(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Attaches `program` to the SO_REUSEPORT group of `socket`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one setsockopt that neither nix nor socket2 wraps
pub fn attach(socket: &UdpSocket, program: &mut [libc::sock_filter]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(std::io::Error::other)?,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
