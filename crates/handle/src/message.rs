//! A whole message (envelope, header, body, credential) and the request view.

use crate::{DecodeError, ENVELOPE_LEN, Envelope, HEADER_LEN, Header, code, flags};

/// A request message, borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub envelope: Envelope,
    pub header: Header,
    /// The body (`header.body_len` bytes), opcode-specific.
    pub body: &'a [u8],
    /// The credential section (empty when the sender sent none).
    pub credential: &'a [u8],
    /// Header and body: what a request digest (RD) covers.
    pub digest_input: &'a [u8],
}

/// The parts of one complete message, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub envelope: Envelope,
    pub header: Header,
    pub body: &'a [u8],
    pub credential: &'a [u8],
    pub digest_input: &'a [u8],
}

/// Splits one complete message: checks the envelope's length against the
/// bytes present, the body length against the message, and the credential
/// length against what follows the body.
///
/// Like CNRI, a message that ends right after its body has no credential;
/// otherwise the 4-byte credential length must account for every byte left.
#[inline]
pub(crate) fn split(message: &[u8]) -> Result<Parts<'_>, DecodeError> {
    let envelope = Envelope::decode(message)?;
    let rest = &message[ENVELOPE_LEN..];
    if rest.len() != envelope.message_length as usize {
        return Err(DecodeError::LengthMismatch("message length"));
    }
    if envelope.flags & (flags::COMPRESSED | flags::ENCRYPTED) != 0 {
        return Err(DecodeError::UnsupportedFlags(envelope.flags));
    }
    let header = Header::decode(rest)?;
    let after_header = rest.len() - HEADER_LEN;
    let body_len = header.body_len as usize;
    if body_len > after_header {
        return Err(DecodeError::Truncated("message body"));
    }
    let digest_input = &rest[..HEADER_LEN + body_len];
    let body = &digest_input[HEADER_LEN..];
    let tail = &rest[HEADER_LEN + body_len..];
    let credential = match tail.split_first_chunk::<4>() {
        None if tail.is_empty() => &tail[..0],
        None => return Err(DecodeError::LengthMismatch("credential length")),
        Some((len, credential)) => {
            if u32::from_be_bytes(*len) as usize != credential.len() {
                return Err(DecodeError::LengthMismatch("credential"));
            }
            credential
        }
    };
    Ok(Parts {
        envelope,
        header,
        body,
        credential,
        digest_input,
    })
}

/// Decodes one complete request message: the envelope followed by exactly
/// `message_length` bytes (a TCP frame from [`crate::frame_len`], a single
/// UDP datagram, or a [`crate::Reassembly`] result).
///
/// Checks every length, refuses compressed or encrypted messages and
/// messages whose response code is not 0 (responses must never be answered,
/// or two nodes could bounce errors forever). Does not allocate; the body is
/// left to the opcode's decoder ([`crate::ResolutionQuery::decode`]).
#[inline]
pub fn decode_request(message: &[u8]) -> Result<Request<'_>, DecodeError> {
    let parts = split(message)?;
    if parts.header.response_code != code::RESERVED {
        return Err(DecodeError::Malformed("request: response code is not 0"));
    }
    Ok(Request {
        envelope: parts.envelope,
        header: parts.header,
        body: parts.body,
        credential: parts.credential,
        digest_input: parts.digest_input,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn message(body: &[u8], credential: Option<&[u8]>, response_code: u32) -> Vec<u8> {
        let header = Header {
            opcode: 1,
            response_code,
            op_flags: 0,
            site_serial: 0,
            recursion: 0,
            expiration: 0,
            body_len: body.len() as u32,
        };
        let mut rest = header.to_bytes().to_vec();
        rest.extend_from_slice(body);
        if let Some(c) = credential {
            rest.extend_from_slice(&(c.len() as u32).to_be_bytes());
            rest.extend_from_slice(c);
        }
        let envelope = Envelope {
            major: 2,
            minor: 11,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 0,
            request_id: 1,
            sequence: 0,
            message_length: rest.len() as u32,
        };
        let mut out = envelope.to_bytes().to_vec();
        out.extend_from_slice(&rest);
        out
    }

    #[test]
    fn splits_body_and_credential() {
        let m = message(b"body", Some(b"cred"), 0);
        let r = decode_request(&m).unwrap();
        assert_eq!(r.body, b"body");
        assert_eq!(r.credential, b"cred");
        assert_eq!(r.digest_input, &m[20..20 + 24 + 4]);
        let m = message(b"body", None, 0);
        assert_eq!(decode_request(&m).unwrap().credential, b"");
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        let mut m = message(b"body", Some(b""), 0);
        m.push(0);
        assert_eq!(
            decode_request(&m),
            Err(DecodeError::LengthMismatch("message length"))
        );
        let mut m = message(b"body", Some(b"cred"), 0);
        m[19] += 1;
        m.push(0);
        assert_eq!(
            decode_request(&m),
            Err(DecodeError::LengthMismatch("credential"))
        );
        let mut m = message(b"body", None, 0);
        m[20 + 23] = 5;
        assert_eq!(
            decode_request(&m),
            Err(DecodeError::Truncated("message body"))
        );
        let mut m = message(b"body", None, 0);
        m[20 + 20..20 + 24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_request(&m),
            Err(DecodeError::Truncated("message body"))
        );
        let mut m = message(b"body", Some(b""), 0);
        m.truncate(m.len() - 2);
        m[19] -= 2;
        assert_eq!(
            decode_request(&m),
            Err(DecodeError::LengthMismatch("credential length"))
        );
    }

    #[test]
    fn rejects_responses_and_encrypted_messages() {
        let m = message(b"", Some(b""), code::ERROR);
        assert!(matches!(decode_request(&m), Err(DecodeError::Malformed(_))));
        let mut m = message(b"", Some(b""), 0);
        m[2] |= flags::ENCRYPTED;
        assert!(matches!(
            decode_request(&m),
            Err(DecodeError::UnsupportedFlags(_))
        ));
    }
}
