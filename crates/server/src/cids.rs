//! The connection IDs the QUIC endpoints issue: each names its endpoint in
//! its first byte, which is what `idnode_udp::by_quic_connection_id` steers
//! by. A connection then stays on its endpoint when the client's address
//! changes (NAT rebinding, a scanner moving between networks), which the
//! kernel's address hash cannot give.

/// The connection IDs of the QUIC endpoint at `index` of `sockets`: 8
/// random bytes whose first byte is `index` modulo `sockets`, so that
/// `idnode_udp::by_quic_connection_id` brings their packets to this
/// endpoint.
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
