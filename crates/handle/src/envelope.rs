//! The 20-byte message envelope, the 24-byte message header, and the TCP
//! frame completeness check.

use crate::{
    DecodeError, ENVELOPE_LEN, HEADER_LEN, MAX_MESSAGE_LEN, MIN_VERSION_MINOR, VERSION_MAJOR,
    VERSION_MINOR, flags,
};

/// The message envelope (RFC 3652 section 2.2.2).
///
/// Byte 2 packs the envelope flags (top 3 bits, see [`flags::COMPRESSED`],
/// [`flags::ENCRYPTED`], [`flags::TRUNCATED`]) with the suggested major
/// version (low 5 bits); byte 3 is the suggested minor version. Real clients
/// (CNRI 9.x) always fill the suggested version: `02 0b 02 0b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub major: u8,
    pub minor: u8,
    /// Envelope flag bits (only the top 3 bits are kept).
    pub flags: u8,
    /// Suggested major version (low 5 bits of byte 2); 0 when not given.
    pub suggested_major: u8,
    pub suggested_minor: u8,
    pub session_id: u32,
    pub request_id: u32,
    /// Packet index of a multi-packet UDP message; 0 otherwise.
    pub sequence: u32,
    /// Length of the message after the envelope (whole message, also in
    /// every datagram of a split one).
    pub message_length: u32,
}

/// Reads a big-endian u32; callers pass a slice already cut to the fixed
/// envelope or header size, so `at + 3` is always in range.
#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Envelope {
    /// Decodes the envelope at the start of `bytes` (which may go on).
    ///
    /// Accepts major version 2 with minor 1..=11, any envelope flags and any
    /// suggested version; rejects a message length above
    /// [`MAX_MESSAGE_LEN`].
    #[inline]
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some(b) = bytes.get(..ENVELOPE_LEN) else {
            return Err(DecodeError::Truncated("message envelope"));
        };
        let (major, minor) = (b[0], b[1]);
        if major != VERSION_MAJOR || !(MIN_VERSION_MINOR..=VERSION_MINOR).contains(&minor) {
            return Err(DecodeError::BadVersion(major, minor));
        }
        let envelope = Envelope {
            major,
            minor,
            flags: b[2] & flags::ENVELOPE_MASK,
            suggested_major: b[2] & !flags::ENVELOPE_MASK,
            suggested_minor: b[3],
            session_id: be32(b, 4),
            request_id: be32(b, 8),
            sequence: be32(b, 12),
            message_length: be32(b, 16),
        };
        if envelope.message_length as usize > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong(
                "message length",
                envelope.message_length,
            ));
        }
        Ok(envelope)
    }

    /// Writes the envelope into `out`.
    #[inline]
    pub fn encode(&self, out: &mut [u8; ENVELOPE_LEN]) {
        out[0] = self.major;
        out[1] = self.minor;
        out[2] =
            (self.flags & flags::ENVELOPE_MASK) | (self.suggested_major & !flags::ENVELOPE_MASK);
        out[3] = self.suggested_minor;
        out[4..8].copy_from_slice(&self.session_id.to_be_bytes());
        out[8..12].copy_from_slice(&self.request_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..20].copy_from_slice(&self.message_length.to_be_bytes());
    }

    /// The encoded envelope.
    #[inline]
    pub fn to_bytes(&self) -> [u8; ENVELOPE_LEN] {
        let mut out = [0; ENVELOPE_LEN];
        self.encode(&mut out);
        out
    }

    /// The version the sender suggests for the answer: the suggested bits,
    /// or the envelope version when they are 0 (as CNRI reads them).
    #[inline]
    pub fn suggested_version(&self) -> (u8, u8) {
        if self.suggested_major == 0 {
            (self.major, self.minor)
        } else {
            (self.suggested_major, self.suggested_minor)
        }
    }

    pub fn is_compressed(&self) -> bool {
        self.flags & flags::COMPRESSED != 0
    }

    pub fn is_encrypted(&self) -> bool {
        self.flags & flags::ENCRYPTED != 0
    }

    /// Set on every datagram of a message split over several datagrams.
    pub fn is_truncated(&self) -> bool {
        self.flags & flags::TRUNCATED != 0
    }
}

/// The message header (RFC 3652 section 2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub opcode: u32,
    /// 0 in a request.
    pub response_code: u32,
    pub op_flags: u32,
    /// Serial of the site information the sender used; -1 when unknown.
    pub site_serial: i16,
    pub recursion: u8,
    /// Unix seconds after which the message is no longer valid.
    pub expiration: u32,
    /// Length of the body that follows the header.
    pub body_len: u32,
}

impl Header {
    /// Decodes the header at the start of `bytes` (which may go on). The
    /// reserved byte is ignored.
    #[inline]
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated("message header"));
        };
        Ok(Header {
            opcode: be32(b, 0),
            response_code: be32(b, 4),
            op_flags: be32(b, 8),
            site_serial: i16::from_be_bytes([b[12], b[13]]),
            recursion: b[14],
            expiration: be32(b, 16),
            body_len: be32(b, 20),
        })
    }

    /// Writes the header into `out` (reserved byte 0).
    #[inline]
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&self.opcode.to_be_bytes());
        out[4..8].copy_from_slice(&self.response_code.to_be_bytes());
        out[8..12].copy_from_slice(&self.op_flags.to_be_bytes());
        out[12..14].copy_from_slice(&self.site_serial.to_be_bytes());
        out[14] = self.recursion;
        out[15] = 0;
        out[16..20].copy_from_slice(&self.expiration.to_be_bytes());
        out[20..24].copy_from_slice(&self.body_len.to_be_bytes());
    }

    /// The encoded header.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        self.encode(&mut out);
        out
    }

    /// Whether every bit of `flag` is set in the op flags.
    pub fn has(&self, flag: u32) -> bool {
        self.op_flags & flag == flag
    }
}

/// TCP (and QUIC stream) framing: `Ok(Some(total))` once `buf` holds a whole
/// message (envelope plus `message_length` bytes; `total` counts both),
/// `Ok(None)` while more bytes are needed, and an error when the envelope
/// cannot start a valid message (the stream should then be closed).
///
/// Cheap: reads only the envelope.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < ENVELOPE_LEN {
        return Ok(None);
    }
    let envelope = Envelope::decode(buf)?;
    let total = ENVELOPE_LEN + envelope.message_length as usize;
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            major: 2,
            minor: 11,
            flags: flags::TRUNCATED,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 7,
            request_id: 0x1234_5678,
            sequence: 3,
            message_length: 1000,
        }
    }

    #[test]
    fn envelope_round_trips_and_packs_byte_two() {
        let e = sample();
        let bytes = e.to_bytes();
        assert_eq!(&bytes[..4], &[2, 11, 0x22, 11]);
        assert_eq!(Envelope::decode(&bytes), Ok(e));
    }

    #[test]
    fn envelope_rejects_versions_and_lengths() {
        let mut bytes = sample().to_bytes();
        bytes[1] = 0;
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::BadVersion(2, 0)));
        bytes[1] = 12;
        assert_eq!(
            Envelope::decode(&bytes),
            Err(DecodeError::BadVersion(2, 12))
        );
        bytes[0] = 5;
        bytes[1] = 3;
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::BadVersion(5, 3)));
        let mut e = sample();
        e.message_length = MAX_MESSAGE_LEN as u32 + 1;
        assert!(matches!(
            Envelope::decode(&e.to_bytes()),
            Err(DecodeError::TooLong("message length", _))
        ));
        e.message_length = u32::MAX;
        assert!(Envelope::decode(&e.to_bytes()).is_err());
        assert_eq!(
            Envelope::decode(&[2, 11, 2]),
            Err(DecodeError::Truncated("message envelope"))
        );
    }

    #[test]
    fn suggested_version_falls_back_to_envelope() {
        let mut e = sample();
        e.minor = 3;
        assert_eq!(e.suggested_version(), (2, 11));
        e.suggested_major = 0;
        e.suggested_minor = 0;
        assert_eq!(e.suggested_version(), (2, 3));
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            opcode: 1,
            response_code: 0,
            op_flags: flags::REC | flags::CA | flags::PO,
            site_serial: -1,
            recursion: 4,
            expiration: 0x6553_f100,
            body_len: 28,
        };
        let bytes = h.to_bytes();
        assert_eq!(bytes[12..16], [0xff, 0xff, 4, 0]);
        assert_eq!(Header::decode(&bytes), Ok(h));
        assert!(h.has(flags::REC | flags::PO));
        assert!(!h.has(flags::RD));
        assert_eq!(
            Header::decode(&bytes[..23]),
            Err(DecodeError::Truncated("message header"))
        );
    }

    #[test]
    fn frame_len_waits_for_whole_message() {
        let mut e = sample();
        e.message_length = 5;
        let mut buf = e.to_bytes().to_vec();
        assert_eq!(frame_len(&buf[..19]), Ok(None));
        assert_eq!(frame_len(&buf), Ok(None));
        buf.extend_from_slice(&[0; 4]);
        assert_eq!(frame_len(&buf), Ok(None));
        buf.extend_from_slice(&[0; 6]);
        assert_eq!(frame_len(&buf), Ok(Some(25)));
        buf[0] = 9;
        assert!(frame_len(&buf).is_err());
    }
}
