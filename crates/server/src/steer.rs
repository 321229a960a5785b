//! Which socket of a SO_REUSEPORT group gets a datagram: small classic BPF
//! programs attached to the group (SO_ATTACH_REUSEPORT_CBPF). Without one
//! the kernel picks a socket by a hash of the peer's address.
//!
//! - [`by_cpu`] (the UDP workers): the socket of the CPU that received the
//!   datagram, so that a few busy clients cannot all land on one worker.
//! - [`by_connection_id`] (the QUIC endpoints): the socket whose endpoint
//!   issued the packet's destination connection ID. A connection then stays
//!   on its endpoint when the client's address changes (NAT rebinding, a
//!   scanner moving between networks), which the address hash cannot give.
//!   The endpoints issue their IDs with [`EndpointCids`].
//!
//! The sockets are indexed in the order they were bound; a program returns
//! the index. When a program cannot read the bytes it needs (a datagram too
//! short), the kernel takes index 0.
//!
//! [`worker_cpus`] and [`pin_current_thread`] complete [`by_cpu`] where the
//! operator asks for it (`pin_udp_workers`): each UDP worker thread then
//! runs on the CPUs whose datagrams it receives, so it is woken on the CPU
//! where its datagram arrived, with the datagram in that CPU's caches,
//! rather than on whichever CPU the scheduler picks. Off by default: where
//! one CPU receives most datagrams, its worker would share that CPU with
//! the receiving while the others idle.

use std::net::UdpSocket;

/// Hands each datagram to socket `cpu % sockets`, where `cpu` is the CPU
/// that received it (the sender's on loopback, the receive queue's on a
/// network card).
pub(crate) fn by_cpu(socket: &UdpSocket, sockets: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_K, BPF_LD, BPF_MOD, BPF_RET, BPF_W};
        let sockets = count(sockets)?;
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

/// The CPUs each of `workers` workers steered [`by_cpu`] receives the
/// datagrams of, among the CPUs this process may run on (`allowed`):
/// worker `w` gets every allowed CPU `c` with `c % workers == w`. A worker
/// that gets none (more workers than CPUs) receives no datagram an allowed
/// CPU takes in.
pub(crate) fn worker_cpus(allowed: &[usize], workers: usize) -> Vec<Vec<usize>> {
    (0..workers)
        .map(|w| {
            allowed
                .iter()
                .copied()
                .filter(|&c| c % workers == w)
                .collect()
        })
        .collect()
}

/// The CPUs this process may run on (its affinity mask); empty where that
/// cannot be read.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_getaffinity};
        match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            Ok(set) => (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Lets the calling thread run on `cpus` only.
pub(crate) fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_setaffinity};
        let mut set = CpuSet::new();
        for &cpu in cpus {
            set.set(cpu).map_err(std::io::Error::from)?;
        }
        sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        Ok(())
    }
}

/// Hands each QUIC packet to socket `dcid[0] % sockets`, where `dcid[0]` is
/// the first byte of its destination connection ID: at offset 6 in a long
/// header (flags, version, ID length, ID), at offset 1 in a short one. A
/// client's first packets carry an ID the client chose (at random), so a
/// new connection lands on any endpoint, and all of them on the same one;
/// that endpoint issues IDs whose first byte names it ([`EndpointCids`]),
/// which the client uses from then on.
pub(crate) fn by_connection_id(socket: &UdpSocket, sockets: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET};
        use libc::{BPF_K, BPF_LD, BPF_MOD, BPF_RET};
        let sockets = count(sockets)?;
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

/// The connection IDs of the QUIC endpoint at `index` of `sockets`: 8
/// random bytes whose first byte is `index` modulo `sockets`, so that
/// [`by_connection_id`] brings their packets to this endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointCids {
    index: u8,
    sockets: u8,
}

/// Length of the connection IDs the endpoints issue (quinn's default).
const CID_LEN: usize = 8;

impl EndpointCids {
    /// `None` when there are more than 256 endpoints (a byte names them).
    pub(crate) fn new(index: usize, sockets: usize) -> Option<Self> {
        let sockets = u8::try_from(sockets).ok().filter(|&s| s > 0)?;
        let index = u8::try_from(index).ok().filter(|&i| i < sockets)?;
        Some(Self { index, sockets })
    }
}

impl quinn::ConnectionIdGenerator for EndpointCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        rand::fill(&mut bytes[..]);
        // A random multiple of `sockets` (below 256) plus the index: the
        // byte keeps what randomness the routing leaves it.
        let multiples = 256 / u16::from(self.sockets);
        let multiple = u16::from(bytes[0]) % multiples;
        bytes[0] = u8::try_from(multiple * u16::from(self.sockets) + u16::from(self.index))
            .unwrap_or(self.index);
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(target_os = "linux")]
fn count(sockets: usize) -> std::io::Result<u32> {
    u32::try_from(sockets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| std::io::Error::other("a SO_REUSEPORT group of 1 to 2^32-1 sockets"))
}

#[cfg(target_os = "linux")]
fn op(code: u32, k: u32) -> libc::sock_filter {
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
fn attach(socket: &UdpSocket, program: &mut [libc::sock_filter]) -> std::io::Result<()> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use quinn::ConnectionIdGenerator;

    #[test]
    fn connection_ids_name_their_endpoint_and_stay_random() {
        for sockets in [1usize, 2, 3, 7, 200] {
            for index in 0..sockets {
                let mut cids = EndpointCids::new(index, sockets).unwrap();
                let ids: Vec<quinn::ConnectionId> = (0..64).map(|_| cids.generate_cid()).collect();
                for id in &ids {
                    assert_eq!(id.len(), CID_LEN);
                    assert_eq!(usize::from(id[0]) % sockets, index, "{sockets} sockets");
                }
                // Random apart from the routing: no two IDs alike.
                let mut distinct = ids.clone();
                distinct.sort_by(|a, b| a[..].cmp(&b[..]));
                distinct.dedup();
                assert_eq!(distinct.len(), ids.len());
            }
        }
        assert!(EndpointCids::new(2, 2).is_none());
        assert!(EndpointCids::new(0, 300).is_none());
    }

    #[test]
    fn each_worker_gets_the_allowed_cpus_it_receives_the_datagrams_of() {
        assert_eq!(worker_cpus(&[0, 1], 2), [vec![0], vec![1]]);
        assert_eq!(worker_cpus(&[0, 1, 2, 3], 2), [vec![0, 2], vec![1, 3]]);
        // A process confined to CPUs 2 and 3 (taskset): worker 0 gets 2.
        assert_eq!(worker_cpus(&[2, 3], 2), [vec![2], vec![3]]);
        assert_eq!(worker_cpus(&[0, 1, 2], 1), [vec![0, 1, 2]]);
        // More workers than CPUs: the extra ones get none (not pinned).
        assert_eq!(worker_cpus(&[0, 1], 4), [vec![0], vec![1], vec![], vec![]]);
        assert!(worker_cpus(&[0, 1], 0).is_empty());
    }
}
