//! The request digest a response carries when the request set RD.
//!
//! RFC 3652 section 2.2.4: the response body starts with a digest of the
//! request's header and body (not its credential). CNRI picks the algorithm
//! by the response's protocol version (`AbstractResponse.takeDigestOfRequest`):
//! 2.7 and later SHA-256 (code 3), 2.1 to 2.6 SHA-1 (code 2), older MD5 in
//! the "old format" (code 0), which has no algorithm byte: it is a 4-byte
//! length (16) followed by the MD5, and its first length byte, 0, is what a
//! reader takes for the code (`Encoder.decodeMessage`). Code 1 (MD5 with an
//! algorithm byte) is read but never written.

use crate::DecodeError;
use idnode_core::wire::Reader;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A digest algorithm and its code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// MD5 written as a length-prefixed byte string (versions before 2.1).
    Md5Legacy,
    Md5,
    Sha1,
    Sha256,
}

impl DigestAlgorithm {
    /// The algorithm CNRI uses for a response of this protocol version.
    pub fn for_version(major: u8, minor: u8) -> Self {
        if (major, minor) >= (2, 7) {
            DigestAlgorithm::Sha256
        } else if (major, minor) >= (2, 1) {
            DigestAlgorithm::Sha1
        } else {
            DigestAlgorithm::Md5Legacy
        }
    }

    /// The wire code (the first body byte).
    pub fn code(self) -> u8 {
        match self {
            DigestAlgorithm::Md5Legacy => 0,
            DigestAlgorithm::Md5 => 1,
            DigestAlgorithm::Sha1 => 2,
            DigestAlgorithm::Sha256 => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DigestAlgorithm::Md5Legacy,
            1 => DigestAlgorithm::Md5,
            2 => DigestAlgorithm::Sha1,
            3 => DigestAlgorithm::Sha256,
            _ => return None,
        })
    }

    /// Length of the digest itself.
    pub fn digest_len(self) -> usize {
        match self {
            DigestAlgorithm::Md5Legacy | DigestAlgorithm::Md5 => 16,
            DigestAlgorithm::Sha1 => 20,
            DigestAlgorithm::Sha256 => 32,
        }
    }

    /// Bytes the digest takes at the start of a response body.
    pub fn encoded_len(self) -> usize {
        match self {
            DigestAlgorithm::Md5Legacy => 4 + 16,
            other => 1 + other.digest_len(),
        }
    }
}

/// A digest, stored inline (no heap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    bytes: [u8; 32],
}

impl Digest {
    /// Digests `input` (a request's header and body) with `algorithm`.
    pub fn compute(algorithm: DigestAlgorithm, input: &[u8]) -> Self {
        let mut bytes = [0; 32];
        match algorithm {
            DigestAlgorithm::Md5Legacy | DigestAlgorithm::Md5 => {
                bytes[..16].copy_from_slice(&Md5::digest(input))
            }
            DigestAlgorithm::Sha1 => bytes[..20].copy_from_slice(&Sha1::digest(input)),
            DigestAlgorithm::Sha256 => bytes.copy_from_slice(&Sha256::digest(input)),
        }
        Self { algorithm, bytes }
    }

    /// Digests `input` with the algorithm of a response of this version.
    pub fn for_version(major: u8, minor: u8, input: &[u8]) -> Self {
        Self::compute(DigestAlgorithm::for_version(major, minor), input)
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.digest_len()]
    }

    /// Bytes taken at the start of a response body.
    pub fn encoded_len(&self) -> usize {
        self.algorithm.encoded_len()
    }

    /// Appends the wire form: code and digest, or for
    /// [`DigestAlgorithm::Md5Legacy`] a 4-byte length and the digest.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self.algorithm {
            DigestAlgorithm::Md5Legacy => out.extend_from_slice(&16u32.to_be_bytes()),
            other => out.push(other.code()),
        }
        out.extend_from_slice(self.as_bytes());
    }

    /// Reads the wire form at the start of a response body.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u8("request digest")?;
        let algorithm = DigestAlgorithm::from_code(code)
            .ok_or(DecodeError::Malformed("request digest algorithm"))?;
        if algorithm == DigestAlgorithm::Md5Legacy {
            // The code byte was the first byte of a 4-byte length.
            let rest = r.take(3, "request digest")?;
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]);
            if len != 16 {
                return Err(DecodeError::Malformed("request digest length"));
            }
        }
        let raw = r.take(algorithm.digest_len(), "request digest")?;
        let mut bytes = [0; 32];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Self { algorithm, bytes })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn algorithm_follows_version() {
        assert_eq!(DigestAlgorithm::for_version(2, 11), DigestAlgorithm::Sha256);
        assert_eq!(DigestAlgorithm::for_version(2, 7), DigestAlgorithm::Sha256);
        assert_eq!(DigestAlgorithm::for_version(2, 6), DigestAlgorithm::Sha1);
        assert_eq!(DigestAlgorithm::for_version(2, 1), DigestAlgorithm::Sha1);
        assert_eq!(
            DigestAlgorithm::for_version(2, 0),
            DigestAlgorithm::Md5Legacy
        );
        assert_eq!(
            DigestAlgorithm::for_version(1, 9),
            DigestAlgorithm::Md5Legacy
        );
        assert_eq!(DigestAlgorithm::for_version(3, 0), DigestAlgorithm::Sha256);
    }

    #[test]
    fn wire_forms_round_trip() {
        for alg in [
            DigestAlgorithm::Md5Legacy,
            DigestAlgorithm::Md5,
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Sha256,
        ] {
            let d = Digest::compute(alg, b"header and body");
            let mut out = Vec::new();
            d.write(&mut out);
            assert_eq!(out.len(), d.encoded_len());
            assert_eq!(d.as_bytes().len(), alg.digest_len());
            let mut r = Reader::new(&out);
            assert_eq!(Digest::read(&mut r), Ok(d));
            assert_eq!(r.remaining(), 0);
        }
        let legacy = Digest::compute(DigestAlgorithm::Md5Legacy, b"x");
        let mut out = Vec::new();
        legacy.write(&mut out);
        assert_eq!(&out[..4], &[0, 0, 0, 16]);
    }

    #[test]
    fn rejects_unknown_and_short_digests() {
        let mut r = Reader::new(&[9, 0, 0]);
        assert!(matches!(
            Digest::read(&mut r),
            Err(DecodeError::Malformed(_))
        ));
        let mut r = Reader::new(&[3, 1, 2]);
        assert_eq!(
            Digest::read(&mut r),
            Err(DecodeError::Truncated("request digest"))
        );
        let mut r = Reader::new(&[0, 0, 0, 17]);
        assert!(matches!(
            Digest::read(&mut r),
            Err(DecodeError::Malformed(_))
        ));
    }
}
