//! Which socket of a SO_REUSEPORT group gets a datagram, and where the
//! UDP workers run.
//!
//! - The UDP workers: `idnode-reuseport` ([`by_cpu`], and with
//!   `pin_udp_workers` [`worker_cpus`] and [`pin_current_thread`]), shared
//!   with the bench's echo server so both keep one worker model.
//! - [`by_connection_id`] (the QUIC endpoints): the socket whose endpoint
//!   issued the packet's destination connection ID. A connection then stays
//!   on its endpoint when the client's address changes (NAT rebinding, a
//!   scanner moving between networks), which the address hash cannot give.
//!   The endpoints issue their IDs with [`EndpointCids`].

pub(crate) use idnode_reuseport::{allowed_cpus, by_cpu, pin_current_thread, worker_cpus};
use std::net::UdpSocket;

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
        use idnode_reuseport::{attach, group_size, op};
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
}
