//! Which worker of a SO_REUSEPORT group gets a datagram, and where that
//! worker runs: shared by the node's UDP workers (`idnode-server`) and the
//! echo server that measures their ceiling (`idnode-bench`), so the two keep
//! one worker model.
//!
//! - [`by_cpu`]: a classic BPF program on the group (SO_ATTACH_REUSEPORT_CBPF)
//!   handing each datagram to socket `cpu % sockets`, the CPU being the one
//!   that received it. Without a program the kernel picks a socket by a hash
//!   of the peer's address, and a few busy clients can all land on one
//!   worker while another idles. [`attach`], [`op`] and [`group_size`] are
//!   the parts other programs are built from (the server's QUIC steering).
//! - [`worker_cpus`] and [`pin_current_thread`]: each worker may run only on
//!   the CPUs whose datagrams [`by_cpu`] hands it, so it is woken where its
//!   datagram arrived. Worth it where receiving is spread over the CPUs; where
//!   one CPU receives most datagrams, its worker would share that CPU with
//!   the receiving while the others idle, so callers make it optional.
//!
//! The sockets are indexed in the order they were bound; a program returns
//! the index. When a program cannot read the bytes it needs (a datagram too
//! short), the kernel takes index 0.

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

/// The CPUs each of `workers` workers steered [`by_cpu`] receives the
/// datagrams of, among the CPUs this process may run on (`allowed`):
/// worker `w` gets every allowed CPU `c` with `c % workers == w`. A worker
/// that gets none (more workers than CPUs) receives no datagram an allowed
/// CPU takes in.
pub fn worker_cpus(allowed: &[usize], workers: usize) -> Vec<Vec<usize>> {
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
pub fn allowed_cpus() -> Vec<usize> {
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
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
