//! UDP: splitting a message into datagrams of at most 512 bytes, and
//! reassembling a request that arrived in several.
//!
//! A message longer than one datagram is sent as `ceil(len / 492)`
//! datagrams; each carries a copy of the envelope with `sequence` = packet
//! index, the whole message's `message_length`, and the TRUNCATED flag
//! (which CNRI's client sets and CNRI's server uses to recognize a part),
//! then up to 492 bytes of the message after the envelope. The receiver
//! places each part at `sequence * 492`.

use crate::{DecodeError, ENVELOPE_LEN, Envelope, MAX_DATAGRAM, UDP_PAYLOAD, flags};

/// How many datagrams `message` (envelope included) takes.
pub fn datagram_count(message: &[u8]) -> usize {
    if message.len() <= MAX_DATAGRAM {
        1
    } else {
        (message.len() - ENVELOPE_LEN).div_ceil(UDP_PAYLOAD)
    }
}

/// Writes datagram `index` of `message` into `buf` and returns its length,
/// or `None` past the last one. A message that fits one datagram is copied
/// as it is.
pub fn datagram(message: &[u8], index: usize, buf: &mut [u8; MAX_DATAGRAM]) -> Option<usize> {
    if index >= datagram_count(message) {
        return None;
    }
    if message.len() <= MAX_DATAGRAM {
        buf[..message.len()].copy_from_slice(message);
        return Some(message.len());
    }
    let payload = &message[ENVELOPE_LEN..];
    let start = index * UDP_PAYLOAD;
    let part = &payload[start..payload.len().min(start + UDP_PAYLOAD)];
    buf[..ENVELOPE_LEN].copy_from_slice(&message[..ENVELOPE_LEN]);
    buf[2] |= flags::TRUNCATED;
    buf[12..16].copy_from_slice(&(index as u32).to_be_bytes());
    buf[ENVELOPE_LEN..ENVELOPE_LEN + part.len()].copy_from_slice(part);
    Some(ENVELOPE_LEN + part.len())
}

/// Calls `f` with each datagram of `message` (a complete message starting
/// with its envelope, as the response encoders write it), in order. A
/// message of at most 512 bytes is passed as it is; a longer one is split
/// through a stack buffer, without allocating.
pub fn for_each_datagram(message: &[u8], mut f: impl FnMut(&[u8])) {
    if message.len() <= MAX_DATAGRAM {
        f(message);
        return;
    }
    let mut buf = [0; MAX_DATAGRAM];
    let mut index = 0;
    while let Some(len) = datagram(message, index, &mut buf) {
        f(&buf[..len]);
        index += 1;
    }
}

/// Whether a received datagram is one part of a multi-packet message (give
/// it to a [`Reassembly`]) rather than a whole message.
pub fn is_fragment(envelope: &Envelope, datagram_len: usize) -> bool {
    envelope.is_truncated() || datagram_len != ENVELOPE_LEN + envelope.message_length as usize
}

/// Collects the datagrams of one multi-packet message. The caller owns the
/// map of pending reassemblies (keyed by peer and request id), its size cap
/// and expiry.
///
/// Memory grows with the bytes actually received, not with the length the
/// envelope claims (bounded by [`crate::MAX_MESSAGE_LEN`] anyway).
///
/// ```
/// # use idnode_handle::Reassembly;
/// # fn f(first: &[u8]) -> Result<(), idnode_handle::DecodeError> {
/// let mut pending = Reassembly::new(first)?;
/// if let Some(message) = pending.insert(first)? {
///     // a one-part message: complete already
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Reassembly {
    envelope: Envelope,
    parts: usize,
    /// Received parts, sorted by sequence number.
    received: Vec<(u32, Vec<u8>)>,
}

impl Reassembly {
    /// Starts from any datagram of the message (it is not stored: pass it
    /// to [`insert`](Self::insert) too).
    pub fn new(first: &[u8]) -> Result<Self, DecodeError> {
        let envelope = Envelope::decode(first)?;
        if envelope.message_length == 0 {
            return Err(DecodeError::Malformed("message length 0"));
        }
        Ok(Self {
            envelope,
            parts: (envelope.message_length as usize).div_ceil(UDP_PAYLOAD),
            received: Vec::new(),
        })
    }

    /// The envelope of the first datagram seen.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Adds one datagram. Returns the whole message (envelope with sequence
    /// 0 and no TRUNCATED flag, then the payload) once every part arrived.
    /// A duplicate part is ignored; a datagram whose envelope differs from
    /// the first one's, whose sequence is out of range, or whose payload
    /// has the wrong size for its place is refused.
    pub fn insert(&mut self, datagram: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLong("datagram", datagram.len() as u32));
        }
        let e = Envelope::decode(datagram)?;
        let first = &self.envelope;
        let same = (e.major, e.minor, e.suggested_major, e.suggested_minor)
            == (
                first.major,
                first.minor,
                first.suggested_major,
                first.suggested_minor,
            )
            && (e.session_id, e.request_id, e.message_length)
                == (first.session_id, first.request_id, first.message_length)
            && e.flags & !flags::TRUNCATED == first.flags & !flags::TRUNCATED;
        if !same {
            return Err(DecodeError::Malformed(
                "datagram envelope (differs from the first)",
            ));
        }
        let seq = e.sequence as usize;
        if seq >= self.parts {
            return Err(DecodeError::Malformed(
                "datagram sequence number (out of range)",
            ));
        }
        let total = e.message_length as usize;
        let expected = (total - seq * UDP_PAYLOAD).min(UDP_PAYLOAD);
        let payload = &datagram[ENVELOPE_LEN..];
        if payload.len() != expected {
            return Err(DecodeError::LengthMismatch("datagram payload"));
        }
        match self.received.binary_search_by_key(&e.sequence, |(s, _)| *s) {
            Ok(_) => return Ok(None),
            Err(at) => self.received.insert(at, (e.sequence, payload.to_vec())),
        }
        if self.received.len() < self.parts {
            return Ok(None);
        }
        let mut envelope = self.envelope;
        envelope.sequence = 0;
        envelope.flags &= !flags::TRUNCATED;
        let mut message = Vec::with_capacity(ENVELOPE_LEN + total);
        message.extend_from_slice(&envelope.to_bytes());
        for (_, part) in self.received.drain(..) {
            message.extend_from_slice(&part);
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let envelope = Envelope {
            major: 2,
            minor: 11,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 0,
            request_id: 42,
            sequence: 0,
            message_length: len as u32,
        };
        let mut m = envelope.to_bytes().to_vec();
        m.extend((0..len).map(|i| (i % 251) as u8));
        m
    }

    fn split(m: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for_each_datagram(m, |d| out.push(d.to_vec()));
        out
    }

    #[test]
    fn small_message_is_one_datagram_as_is() {
        let m = message(492);
        assert_eq!(split(&m), vec![m.clone()]);
        assert_eq!(datagram_count(&m), 1);
    }

    #[test]
    fn long_message_splits_at_492() {
        let m = message(493);
        let parts = split(&m);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 512);
        assert_eq!(parts[1].len(), 21);
        for (i, p) in parts.iter().enumerate() {
            let e = Envelope::decode(p).unwrap();
            assert_eq!(e.sequence, i as u32);
            assert_eq!(e.message_length, 493);
            assert!(e.is_truncated());
            assert!(is_fragment(&e, p.len()));
        }
        assert_eq!(parts[1][20], m[20 + 492]);
    }

    #[test]
    fn reassembles_in_any_order_with_duplicates() {
        let m = message(1500);
        let parts = split(&m);
        assert_eq!(parts.len(), 4);
        let mut r = Reassembly::new(&parts[2]).unwrap();
        for i in [2, 0, 2, 3, 0] {
            assert_eq!(r.insert(&parts[i]), Ok(None));
        }
        assert_eq!(r.insert(&parts[1]), Ok(Some(m)));
    }

    #[test]
    fn refuses_inconsistent_parts() {
        let m = message(1000);
        let parts = split(&m);
        let mut r = Reassembly::new(&parts[0]).unwrap();
        let mut other = parts[1].clone();
        other[11] ^= 1;
        assert!(matches!(r.insert(&other), Err(DecodeError::Malformed(_))));
        let mut late = parts[1].clone();
        late[15] = 9;
        assert!(matches!(r.insert(&late), Err(DecodeError::Malformed(_))));
        let mut short = parts[0].clone();
        short.pop();
        assert_eq!(
            r.insert(&short),
            Err(DecodeError::LengthMismatch("datagram payload"))
        );
        let mut long = parts[0].clone();
        long.push(0);
        assert!(matches!(
            r.insert(&long),
            Err(DecodeError::TooLong("datagram", 513))
        ));
    }
}
