//! Certified (signed) answers: the credential section, the bytes a
//! signature covers, signing a finished response and verifying one.
//!
//! # When and how (docs/handle-protocol.md, "Certified answers")
//! A request with CT gets every response signed (successes, errors,
//! referrals, GET_SITE_INFO) with the private key whose public half the
//! server publishes in its site record: an HS_SIGNED credential. The hash
//! is CNRI's rule [`hash_for`]; hdllib verifies whatever hash the
//! credential names. Sessions (HS_MAC) are not handled here.
//!
//! # Credential (after the body: int4 length, then)
//! version (1 byte, 0), reserved (1 byte, 0), flags (int2, 0), signer
//! handle (str, empty), signer index (int4: the session counter, 0 outside
//! sessions), type (str `HS_SIGNED`; hdllib also accepts the legacy
//! `HS_DSAPUBKEY`), signature section length (int4), then in that section:
//! hash algorithm (str `SHA-256` or `SHA1`) and signature (str).
//!
//! # Signed bytes, by the protocol version of the message ([`signed_bytes`])
//! | version | bytes |
//! |---|---|
//! | >= 2.8 | major, minor, suggested major, suggested minor, session id, request id, counter, HB |
//! | 2.7 | major, minor, session id, request id, counter, HB |
//! | 2.6 | major, minor, top 2 bytes of the session id, counter, 6 zero bytes, HB (a CNRI offset bug) |
//! | <= 2.5 | HB |
//!
//! HB is the 24-byte header and the body as sent (RD digest included), up
//! to the credential length. The counter is the credential's signer index.
//! Not covered: envelope flags, sequence number and message length (so a
//! signed message may be split into datagrams afterwards), and the
//! credential.

use crate::keys::{HashAlg, KeyError, KeyKind, PublicKey, ServerKey};
use crate::message::{Parts, split};
use crate::{DecodeError, ENVELOPE_LEN, Envelope, HEADER_LEN, MAX_MESSAGE_LEN};
use idnode_core::wire::{Reader, put_bytes, put_u32};
use thiserror::Error;

/// Credential type of a signature by the server key.
pub const HS_SIGNED: &[u8] = b"HS_SIGNED";
/// Legacy name of [`HS_SIGNED`], still accepted by hdllib.
pub const HS_DSAPUBKEY: &[u8] = b"HS_DSAPUBKEY";
/// Credential type of a session MAC (not verified here).
pub const HS_MAC: &[u8] = b"HS_MAC";

/// Longest signer handle, type or hash name read from a credential.
const MAX_CREDENTIAL_NAME: usize = 1024;

/// A credential section, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    pub version: u8,
    pub reserved: u8,
    pub flags: u16,
    pub signer_handle: &'a [u8],
    /// The session counter (0 outside sessions); part of the signed bytes.
    pub signer_index: u32,
    /// `HS_SIGNED`, `HS_DSAPUBKEY`, `HS_MAC`...
    pub kind: &'a [u8],
    /// The hash algorithm as written (see [`HashAlg::from_name`]).
    pub hash: &'a [u8],
    pub signature: &'a [u8],
}

impl<'a> Credential<'a> {
    /// Decodes the credential bytes (after the 4-byte credential length).
    /// Every length is checked against what remains; bytes after the
    /// signature section, and inside it after the signature, are ignored.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("credential version")?;
        let reserved = r.u8("credential reserved byte")?;
        let flags = r.u16("credential flags")?;
        let signer_handle = name(&mut r, "credential signer handle")?;
        let signer_index = r.u32("credential signer index")?;
        let kind = name(&mut r, "credential type")?;
        let section_len = r.u32("credential signature section length")? as usize;
        let section = r.take(section_len, "credential signature section")?;
        let mut s = Reader::new(section);
        let hash = name(&mut s, "credential hash algorithm")?;
        let signature = s.bytes("credential signature")?;
        Ok(Self {
            version,
            reserved,
            flags,
            signer_handle,
            signer_index,
            kind,
            hash,
            signature,
        })
    }

    /// The hash algorithm, when it is one this node verifies.
    pub fn hash_alg(&self) -> Option<HashAlg> {
        HashAlg::from_name(self.hash)
    }

    /// Length of [`encode_into`](Self::encode_into)'s output.
    pub fn encoded_len(&self) -> usize {
        4 + 4
            + self.signer_handle.len()
            + 4
            + 4
            + self.kind.len()
            + 4
            + 4
            + self.hash.len()
            + 4
            + self.signature.len()
    }

    /// Appends the credential bytes (without the credential length).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.reserved);
        out.extend_from_slice(&self.flags.to_be_bytes());
        put_bytes(out, self.signer_handle);
        put_u32(out, self.signer_index);
        put_bytes(out, self.kind);
        put_u32(out, (4 + self.hash.len() + 4 + self.signature.len()) as u32);
        put_bytes(out, self.hash);
        put_bytes(out, self.signature);
    }
}

fn name<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let b = r.bytes(what)?;
    if b.len() > MAX_CREDENTIAL_NAME {
        return Err(DecodeError::TooLong(what, b.len() as u32));
    }
    Ok(b)
}

/// The credential of a complete message (envelope included), if it has one
/// (`None` for no credential length or a zero one).
pub fn parse_credential(message: &[u8]) -> Result<Option<Credential<'_>>, DecodeError> {
    let parts = split(message)?;
    if parts.credential.is_empty() {
        return Ok(None);
    }
    Credential::decode(parts.credential).map(Some)
}

/// CNRI's hash for an HS_SIGNED response of protocol `version` signed
/// with a key of `kind`: SHA-256 from 2.11, or from 2.7 with an RSA key;
/// SHA-1 otherwise (a DSA server answering a 2.7 to 2.10 client).
pub fn hash_for(version: (u8, u8), kind: KeyKind) -> HashAlg {
    if version >= (2, 11) || (version >= (2, 7) && kind == KeyKind::Rsa) {
        HashAlg::Sha256
    } else {
        HashAlg::Sha1
    }
}

/// The bytes before HB in the signed bytes (up to 16), by version.
pub(crate) fn signed_prefix(envelope: &Envelope, counter: u32) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    let version = (envelope.major, envelope.minor);
    let (sid, rid, ctr) = (
        envelope.session_id.to_be_bytes(),
        envelope.request_id.to_be_bytes(),
        counter.to_be_bytes(),
    );
    let len = if version >= (2, 8) {
        let (smajor, sminor) = envelope.suggested_version();
        b[..4].copy_from_slice(&[envelope.major, envelope.minor, smajor, sminor]);
        b[4..8].copy_from_slice(&sid);
        b[8..12].copy_from_slice(&rid);
        b[12..16].copy_from_slice(&ctr);
        16
    } else if version == (2, 7) {
        b[..2].copy_from_slice(&[envelope.major, envelope.minor]);
        b[2..6].copy_from_slice(&sid);
        b[6..10].copy_from_slice(&rid);
        b[10..14].copy_from_slice(&ctr);
        14
    } else if version == (2, 6) {
        // CNRI wrote each int at the offset the previous write returned
        // (its length, 4) instead of advancing: the request id and then
        // the counter land over the session id's low half.
        b[..2].copy_from_slice(&[envelope.major, envelope.minor]);
        b[2..4].copy_from_slice(&sid[..2]);
        b[4..8].copy_from_slice(&ctr);
        14
    } else {
        0
    };
    (b, len)
}

/// The counter a message's signature covers: its credential's signer index
/// (0 without a credential).
fn counter_of(parts: &Parts<'_>) -> Result<u32, DecodeError> {
    if parts.credential.is_empty() {
        Ok(0)
    } else {
        Ok(Credential::decode(parts.credential)?.signer_index)
    }
}

/// The bytes a signature of this complete message covers (module
/// documentation), with the counter taken from its credential (0 when it
/// has none). For inspection and tests: signing and verifying hash the
/// parts without copying.
pub fn signed_bytes(message: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let parts = split(message)?;
    let mut out = Vec::new();
    signed_bytes_into(&parts, counter_of(&parts)?, &mut out);
    Ok(out)
}

fn signed_bytes_into(parts: &Parts<'_>, counter: u32, out: &mut Vec<u8>) {
    let (prefix, len) = signed_prefix(&parts.envelope, counter);
    out.extend_from_slice(&prefix[..len]);
    out.extend_from_slice(parts.digest_input);
}

/// Why a response could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("not a complete message: {0}")]
    Decode(#[from] DecodeError),
    /// The message already carries a credential.
    #[error("the message already has a credential")]
    AlreadySigned,
    #[error(transparent)]
    Key(#[from] KeyError),
    /// With the credential the message would exceed
    /// [`MAX_MESSAGE_LEN`]; it is left unchanged.
    #[error("the signed message would exceed the maximum message length")]
    TooLong,
}

/// Signs a finished response in place: `message` is a complete message as
/// [`ResponseBuilder::finish`](crate::ResponseBuilder::finish) leaves it
/// (body, then a zero credential length, or nothing after the body). The
/// empty credential is replaced by an HS_SIGNED credential (signer index
/// 0) over the signed bytes of the message's version, made with `key` and
/// `hash` (see [`hash_for`]), and the envelope's message length is
/// patched. On error `message` is unchanged.
pub fn sign_response(
    message: &mut Vec<u8>,
    key: &ServerKey,
    hash: HashAlg,
) -> Result<(), SignError> {
    let parts = split(message)?;
    if !parts.credential.is_empty() {
        return Err(SignError::AlreadySigned);
    }
    let (prefix, prefix_len) = signed_prefix(&parts.envelope, 0);
    let prehash = hash.digest_parts(&[&prefix[..prefix_len], parts.digest_input]);
    let hb_end = ENVELOPE_LEN + parts.digest_input.len();
    let signature = key.sign_prehash(&prehash)?;
    let credential = Credential {
        version: 0,
        reserved: 0,
        flags: 0,
        signer_handle: b"",
        signer_index: 0,
        kind: HS_SIGNED,
        hash: hash.name().as_bytes(),
        signature: &signature,
    };
    let total = hb_end + 4 + credential.encoded_len();
    if total - ENVELOPE_LEN > MAX_MESSAGE_LEN {
        return Err(SignError::TooLong);
    }
    message.truncate(hb_end);
    message.reserve(total - hb_end);
    put_u32(message, credential.encoded_len() as u32);
    credential.encode_into(message);
    let message_length = (message.len() - ENVELOPE_LEN) as u32;
    message[16..20].copy_from_slice(&message_length.to_be_bytes());
    debug_assert!(message.len() >= ENVELOPE_LEN + HEADER_LEN);
    Ok(())
}

/// Why a response did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("not a complete message: {0}")]
    Decode(#[from] DecodeError),
    /// No credential (or an empty one).
    #[error("the message is not signed")]
    Unsigned,
    /// A credential other than HS_SIGNED / HS_DSAPUBKEY (e.g. a session
    /// MAC).
    #[error("the credential is not a server signature (HS_SIGNED)")]
    CredentialType,
    /// A hash this node does not verify (MD5, unknown).
    #[error("unsupported signature hash algorithm")]
    UnsupportedHash,
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    BadSignature,
}

/// Verifies the HS_SIGNED (or legacy HS_DSAPUBKEY) credential of a complete
/// message against `key` (the public key of the server the request went
/// to, from the site record that pointed there), with the hash the
/// credential names and the counter it carries.
pub fn verify_response(message: &[u8], key: &PublicKey) -> Result<(), VerifyError> {
    let parts = split(message)?;
    if parts.credential.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let credential = Credential::decode(parts.credential)?;
    if credential.kind != HS_SIGNED && credential.kind != HS_DSAPUBKEY {
        return Err(VerifyError::CredentialType);
    }
    let hash = credential.hash_alg().ok_or(VerifyError::UnsupportedHash)?;
    let (prefix, prefix_len) = signed_prefix(&parts.envelope, credential.signer_index);
    let prehash = hash.digest_parts(&[&prefix[..prefix_len], parts.digest_input]);
    if key.verify_prehash(&prehash, credential.signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn envelope(major: u8, minor: u8) -> Envelope {
        Envelope {
            major,
            minor,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 0x0102_0304,
            request_id: 0x0506_0708,
            sequence: 0,
            message_length: 0,
        }
    }

    #[test]
    fn signed_prefix_follows_the_version_table() {
        let ctr = 0x0a0b_0c0d;
        let (b, n) = signed_prefix(&envelope(2, 11), ctr);
        assert_eq!(
            &b[..n],
            &[2, 11, 2, 11, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        let (b, n) = signed_prefix(&envelope(2, 8), ctr);
        assert_eq!(&b[..4], &[2, 8, 2, 11]);
        assert_eq!(n, 16);
        let mut no_suggestion = envelope(2, 9);
        no_suggestion.suggested_major = 0;
        no_suggestion.suggested_minor = 0;
        let (b, _) = signed_prefix(&no_suggestion, ctr);
        assert_eq!(&b[..4], &[2, 9, 2, 9]);
        let (b, n) = signed_prefix(&envelope(2, 7), ctr);
        assert_eq!(
            &b[..n],
            &[2, 7, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        let (b, n) = signed_prefix(&envelope(2, 6), ctr);
        assert_eq!(
            &b[..n],
            &[2, 6, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(signed_prefix(&envelope(2, 5), ctr).1, 0);
        assert_eq!(signed_prefix(&envelope(2, 1), ctr).1, 0);
    }

    #[test]
    fn hash_choice_follows_cnri() {
        assert_eq!(hash_for((2, 11), KeyKind::Dsa), HashAlg::Sha256);
        assert_eq!(hash_for((2, 11), KeyKind::Rsa), HashAlg::Sha256);
        assert_eq!(hash_for((2, 10), KeyKind::Dsa), HashAlg::Sha1);
        assert_eq!(hash_for((2, 7), KeyKind::Rsa), HashAlg::Sha256);
        assert_eq!(hash_for((2, 7), KeyKind::Dsa), HashAlg::Sha1);
        assert_eq!(hash_for((2, 6), KeyKind::Rsa), HashAlg::Sha1);
    }

    proptest::proptest! {
        #[test]
        fn random_credentials_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Credential::decode(&bytes);
        }
    }

    #[test]
    fn credentials_round_trip_and_truncations_fail() {
        let c = Credential {
            version: 0,
            reserved: 0,
            flags: 0,
            signer_handle: b"0.NA/88",
            signer_index: 7,
            kind: HS_SIGNED,
            hash: b"SHA-256",
            signature: b"sig",
        };
        let mut b = Vec::new();
        c.encode_into(&mut b);
        assert_eq!(b.len(), c.encoded_len());
        assert_eq!(Credential::decode(&b), Ok(c));
        for cut in 0..b.len() {
            assert!(Credential::decode(&b[..cut]).is_err(), "cut {cut}");
        }
        // A section length beyond the bytes fails, not allocates.
        let at = 4 + 4 + 7 + 4 + 4 + 9;
        b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Credential::decode(&b),
            Err(DecodeError::Truncated("credential signature section"))
        );
    }
}
