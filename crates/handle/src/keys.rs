//! Server keys: the public key a site record publishes for each server, and
//! the private half a server signs its certified answers with.
//!
//! # HS_PUBKEY encoding (docs/handle-protocol.md, "Certified answers")
//! The public-key field of a server inside HS_SITE (and the data of an
//! HS_PUBKEY value) is CNRI's key encoding: key type (str), flags (int2, 0),
//! then the integers, each a str holding Java's two's-complement big-endian
//! form (a leading 00 when the top bit is set; read unsigned):
//! - `RSA_PUB_KEY`: exponent e, modulus n, then 4 zero bytes (a CNRI sizing
//!   quirk: written, ignored when read);
//! - `DSA_PUB_KEY`: q, p, g, y.
//!
//! `DH_PUB_KEY` (session key exchange) is not a signing key and is refused.
//!
//! # Signatures
//! RSA: RSASSA-PKCS1-v1_5 with a DigestInfo (deterministic: a key signs the
//! same bytes the same way). DSA: a DER `SEQUENCE { r, s }`; we sign with
//! RFC 6979 deterministic nonces, CNRI (Java) with random ones, and either
//! verifies. Hashes: SHA-1 and SHA-256; MD5, which CNRI still reads, is
//! refused.
//!
//! Nothing here does I/O; [`ServerKey::generate_rsa`] reads the OS RNG.

use crate::DecodeError;
use dsa::signature::SignatureEncoding as _;
use dsa::signature::hazmat::PrehashVerifier as _;
use idnode_core::wire::{Reader, put_bytes};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding, PrivateKeyInfoRef};
use rsa::traits::PublicKeyParts as _;
use rsa::{BoxedUint, Pkcs1v15Sign};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::fmt;
use thiserror::Error;

/// Key type of an RSA public key in CNRI's encoding.
pub const RSA_PUB_KEY: &[u8] = b"RSA_PUB_KEY";
/// Key type of a DSA public key in CNRI's encoding.
pub const DSA_PUB_KEY: &[u8] = b"DSA_PUB_KEY";
/// Key type of a Diffie-Hellman key (sessions only; not a signing key).
pub const DH_PUB_KEY: &[u8] = b"DH_PUB_KEY";

/// Largest integer field of an encoded key: 8192 bits and Java's sign byte.
/// Bounds the allocation a hostile key can cause.
pub const MAX_KEY_INT_LEN: usize = 8192 / 8 + 1;
/// Longest key type name accepted.
const MAX_KEY_TYPE_LEN: usize = 64;
/// RSA modulus sizes accepted from the network, in bits (the `rsa` crate's
/// own range; CNRI generates 2048).
const RSA_BITS: std::ops::RangeInclusive<usize> = 1024..=8192;
/// The RSA key size [`ServerKey::generate_rsa`] is usually called with
/// (CNRI's `hdl-setup-server` default).
pub const DEFAULT_RSA_BITS: usize = 2048;

/// Why a key did not decode, load or sign.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The encoded key is truncated or a length is out of bounds.
    #[error("public key: {0}")]
    Decode(#[from] DecodeError),
    /// A key type other than `RSA_PUB_KEY` / `DSA_PUB_KEY` (lossy UTF-8).
    #[error("unsupported key type `{0}` (expected RSA_PUB_KEY or DSA_PUB_KEY)")]
    UnsupportedType(String),
    /// The integers do not form a usable key (the text says which check
    /// failed).
    #[error("invalid key: {0}")]
    Invalid(&'static str),
    /// A PEM / PKCS#8 private key did not load or encode.
    #[error("PKCS#8 private key: {0}")]
    Pkcs8(String),
    /// Key generation failed.
    #[error("key generation: {0}")]
    Generate(String),
    /// The private-key operation failed.
    #[error("signing: {0}")]
    Sign(String),
}

/// A hash algorithm of a signature (named in the credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    /// Reads the algorithm field of a credential or HS_PUBKEY answer:
    /// `SHA-256` / `SHA256`, `SHA-1` / `SHA1` (ASCII case-insensitive), or
    /// the single byte 02 (SHA-1) / 03 (SHA-256). `None` for MD5 (`MD5`,
    /// byte 01), which CNRI still reads but this node refuses, and anything
    /// else.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            [2] => Some(Self::Sha1),
            [3] => Some(Self::Sha256),
            n if n.eq_ignore_ascii_case(b"SHA-256") || n.eq_ignore_ascii_case(b"SHA256") => {
                Some(Self::Sha256)
            }
            n if n.eq_ignore_ascii_case(b"SHA-1") || n.eq_ignore_ascii_case(b"SHA1") => {
                Some(Self::Sha1)
            }
            _ => None,
        }
    }

    /// The name CNRI writes: `SHA-256` or `SHA1`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Length of the digest.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Hashes the concatenation of `parts` (no copy).
    pub(crate) fn digest_parts(self, parts: &[&[u8]]) -> Prehash {
        let mut bytes = [0u8; 32];
        match self {
            Self::Sha1 => {
                let mut h = Sha1::new();
                parts.iter().for_each(|p| h.update(p));
                bytes[..20].copy_from_slice(&h.finalize());
            }
            Self::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                bytes.copy_from_slice(&h.finalize());
            }
        }
        Prehash { alg: self, bytes }
    }
}

/// A digest computed for signing or verifying.
#[derive(Clone, Copy)]
pub(crate) struct Prehash {
    alg: HashAlg,
    bytes: [u8; 32],
}

impl Prehash {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.alg.output_len()]
    }

    fn pkcs1v15(&self) -> Pkcs1v15Sign {
        match self.alg {
            HashAlg::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
            HashAlg::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        }
    }
}

/// Which signature scheme a key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa,
    Dsa,
}

/// A server's public key, as published in its site record.
#[derive(Debug, Clone, PartialEq)]
pub enum PublicKey {
    Rsa(rsa::PublicKey),
    Dsa(dsa::VerifyingKey),
}

/// Reads one integer field: a str, bounded, read unsigned (leading zero
/// bytes, including Java's sign byte, dropped). Never empty or zero.
fn read_int<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], KeyError> {
    let raw = r.bytes(what).map_err(DecodeError::from)?;
    if raw.len() > MAX_KEY_INT_LEN {
        return Err(DecodeError::TooLong(what, raw.len() as u32).into());
    }
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let magnitude = &raw[start..];
    if magnitude.is_empty() {
        return Err(KeyError::Invalid(what));
    }
    Ok(magnitude)
}

/// An unsigned big-endian magnitude at its own precision (public values
/// only: the precision follows the length).
fn uint(magnitude: &[u8]) -> BoxedUint {
    BoxedUint::from_be_slice_vartime(magnitude)
}

/// An unsigned magnitude at `like`'s precision, or `None` when it does not
/// fit (the value is then larger than anything of that precision).
fn uint_like(magnitude: &[u8], like: &BoxedUint) -> Option<BoxedUint> {
    BoxedUint::from_be_slice(magnitude, like.bits_precision()).ok()
}

/// Appends `magnitude` as Java's `BigInteger.toByteArray()` writes it, as a
/// str: minimal, with a 00 byte when the top bit is set.
fn put_java_int(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let magnitude = &be[start..];
    if magnitude.is_empty() {
        put_bytes(out, &[0]);
    } else if magnitude[0] & 0x80 != 0 {
        out.extend_from_slice(&(magnitude.len() as u32 + 1).to_be_bytes());
        out.push(0);
        out.extend_from_slice(magnitude);
    } else {
        put_bytes(out, magnitude);
    }
}

impl PublicKey {
    /// Decodes CNRI's key encoding (the public-key field of a server record,
    /// or HS_PUBKEY value data). Bytes after the last integer are ignored
    /// (RSA keys carry 4 of them). Every length is bounded before anything
    /// is allocated; the integers are checked as a key (RSA: modulus of
    /// 1024 to 8192 bits, odd, exponent odd and small; DSA: a (L, N) size of
    /// FIPS 186-4 or 1024/160, g and y in range).
    pub fn decode(data: &[u8]) -> Result<Self, KeyError> {
        let mut r = Reader::new(data);
        let kind = r.bytes("key type").map_err(DecodeError::from)?;
        if kind.len() > MAX_KEY_TYPE_LEN {
            return Err(DecodeError::TooLong("key type", kind.len() as u32).into());
        }
        let unsupported = || KeyError::UnsupportedType(String::from_utf8_lossy(kind).into_owned());
        if kind != RSA_PUB_KEY && kind != DSA_PUB_KEY {
            return Err(unsupported());
        }
        let _flags = r.u16("key flags").map_err(DecodeError::from)?;
        if kind == RSA_PUB_KEY {
            let e = read_int(&mut r, "RSA exponent")?;
            let n = read_int(&mut r, "RSA modulus")?;
            if e.len() > 8 {
                return Err(KeyError::Invalid("RSA exponent (too large)"));
            }
            let key = rsa::PublicKey::new_with_size_limits(uint(n), uint(e), RSA_BITS)
                .map_err(|_| KeyError::Invalid("RSA key (modulus size, parity or exponent)"))?;
            Ok(Self::Rsa(key))
        } else {
            let q = read_int(&mut r, "DSA q")?;
            let p = read_int(&mut r, "DSA p")?;
            let g = read_int(&mut r, "DSA g")?;
            let y = read_int(&mut r, "DSA y")?;
            let p = uint(p);
            let g = uint_like(g, &p).ok_or(KeyError::Invalid("DSA g (not below p)"))?;
            let y = uint_like(y, &p).ok_or(KeyError::Invalid("DSA y (not below p)"))?;
            if y >= p {
                return Err(KeyError::Invalid("DSA y (not below p)"));
            }
            let components = dsa::Components::from_components(p, uint(q), g).map_err(|_| {
                KeyError::Invalid("DSA parameters (sizes 1024/160, 2048/224, 2048/256, 3072/256)")
            })?;
            let key = dsa::VerifyingKey::from_components(components, y)
                .map_err(|_| KeyError::Invalid("DSA y (not in the subgroup)"))?;
            Ok(Self::Dsa(key))
        }
    }

    /// Appends CNRI's encoding (what [`decode`](Self::decode) reads; RSA
    /// with the 4 trailing zero bytes CNRI writes).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Rsa(key) => {
                put_bytes(out, RSA_PUB_KEY);
                out.extend_from_slice(&[0, 0]);
                put_java_int(out, &key.e().to_be_bytes());
                put_java_int(out, &key.n().to_be_bytes());
                out.extend_from_slice(&[0; 4]);
            }
            Self::Dsa(key) => {
                let c = key.components();
                put_bytes(out, DSA_PUB_KEY);
                out.extend_from_slice(&[0, 0]);
                put_java_int(out, &c.q().to_be_bytes());
                put_java_int(out, &c.p().to_be_bytes());
                put_java_int(out, &c.g().to_be_bytes());
                put_java_int(out, &key.y().to_be_bytes());
            }
        }
    }

    /// CNRI's encoding, for the public-key field of a server record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Rsa(_) => KeyKind::Rsa,
            Self::Dsa(_) => KeyKind::Dsa,
        }
    }

    /// Whether `signature` is a valid `<hash>with<RSA|DSA>` signature of
    /// `data`. Any malformed signature is simply invalid.
    pub fn verify(&self, hash: HashAlg, data: &[u8], signature: &[u8]) -> bool {
        self.verify_parts(hash, &[data], signature)
    }

    /// [`verify`](Self::verify) over the concatenation of `parts`, without
    /// copying them.
    pub fn verify_parts(&self, hash: HashAlg, parts: &[&[u8]], signature: &[u8]) -> bool {
        self.verify_prehash(&hash.digest_parts(parts), signature)
    }

    pub(crate) fn verify_prehash(&self, hash: &Prehash, signature: &[u8]) -> bool {
        match self {
            Self::Rsa(key) => key
                .verify(hash.pkcs1v15(), hash.as_bytes(), signature)
                .is_ok(),
            Self::Dsa(key) => {
                // r and s above q are rejected before any arithmetic; the
                // DER itself is bounded by the message it came in.
                let Ok(sig) = dsa::Signature::try_from(signature) else {
                    return false;
                };
                key.verify_prehash(hash.as_bytes(), &sig).is_ok()
            }
        }
    }
}

/// A server's private key (RSA or DSA), for signing certified answers.
/// `Debug` shows only the kind and size.
#[derive(Clone)]
pub struct ServerKey {
    inner: Private,
}

#[derive(Clone)]
enum Private {
    Rsa(rsa::PrivateKey),
    Dsa(dsa::SigningKey),
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Private::Rsa(k) => write!(f, "ServerKey::Rsa({} bits)", k.n().bit_width_vartime()),
            Private::Dsa(k) => write!(
                f,
                "ServerKey::Dsa({} bits)",
                k.verifying_key().components().p().bit_width_vartime()
            ),
        }
    }
}

/// PKCS#8 algorithm identifiers.
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

impl ServerKey {
    /// A new RSA key of `bits` bits (at least 1024; use
    /// [`DEFAULT_RSA_BITS`]), exponent 65537, from the OS RNG. Takes about
    /// a second for 2048 bits in a release build, longer in debug.
    pub fn generate_rsa(bits: usize) -> Result<Self, KeyError> {
        let mut rng = rand::rngs::SysRng;
        let key =
            rsa::PrivateKey::new(&mut rng, bits).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self {
            inner: Private::Rsa(key),
        })
    }

    /// Loads an unencrypted PKCS#8 private key (`-----BEGIN PRIVATE
    /// KEY-----`), RSA or DSA.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, doc) = rsa::pkcs8::SecretDocument::from_pem(pem)
            .map_err(|e| KeyError::Pkcs8(format!("not a PEM document: {e}")))?;
        if label != "PRIVATE KEY" {
            return Err(KeyError::Pkcs8(format!(
                "PEM label `{label}` (expected PRIVATE KEY: unencrypted PKCS#8)"
            )));
        }
        Self::from_pkcs8_der(doc.as_bytes())
    }

    /// Loads an unencrypted PKCS#8 private key in DER, RSA or DSA.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = PrivateKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Pkcs8(format!("not PKCS#8: {e}")))?;
        let oid = info.algorithm.oid;
        let inner = if oid.to_string() == RSA_ENCRYPTION_OID {
            Private::Rsa(
                rsa::PrivateKey::from_pkcs8_der(der)
                    .map_err(|e| KeyError::Pkcs8(format!("RSA key: {e}")))?,
            )
        } else if oid == dsa::OID {
            Private::Dsa(
                dsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| KeyError::Pkcs8(format!("DSA key: {e}")))?,
            )
        } else {
            return Err(KeyError::Pkcs8(format!(
                "algorithm {oid} (expected RSA or DSA)"
            )));
        };
        Ok(Self { inner })
    }

    /// The key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`,
    /// LF line endings). The returned string is not zeroized on drop.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let pem = match &self.inner {
            Private::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            Private::Dsa(k) => k.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        Ok(pem.as_str().to_owned())
    }

    /// The public half, to publish in the server's site record.
    pub fn public_key(&self) -> PublicKey {
        match &self.inner {
            Private::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            Private::Dsa(k) => PublicKey::Dsa(k.verifying_key().clone()),
        }
    }

    pub fn kind(&self) -> KeyKind {
        match &self.inner {
            Private::Rsa(_) => KeyKind::Rsa,
            Private::Dsa(_) => KeyKind::Dsa,
        }
    }

    /// Signs `data` with `<hash>with<RSA|DSA>`: RSA PKCS#1 v1.5 bytes (the
    /// modulus length), or a DSA DER `SEQUENCE { r, s }`.
    pub fn sign(&self, hash: HashAlg, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.sign_parts(hash, &[data])
    }

    /// [`sign`](Self::sign) over the concatenation of `parts`, without
    /// copying them.
    pub fn sign_parts(&self, hash: HashAlg, parts: &[&[u8]]) -> Result<Vec<u8>, KeyError> {
        self.sign_prehash(&hash.digest_parts(parts))
    }

    pub(crate) fn sign_prehash(&self, hash: &Prehash) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Private::Rsa(k) => k
                .sign(hash.pkcs1v15(), hash.as_bytes())
                .map_err(|e| KeyError::Sign(e.to_string())),
            Private::Dsa(k) => {
                let sig = match hash.alg {
                    HashAlg::Sha1 => k.sign_prehashed_rfc6979::<Sha1>(hash.as_bytes()),
                    HashAlg::Sha256 => k.sign_prehashed_rfc6979::<Sha256>(hash.as_bytes()),
                }
                .map_err(|e| KeyError::Sign(e.to_string()))?;
                Ok(sig.to_vec())
            }
        }
    }

    /// The largest signature this key makes, in bytes (RSA: the modulus
    /// length; DSA: the DER of two integers below q).
    pub fn max_signature_len(&self) -> usize {
        match &self.inner {
            Private::Rsa(k) => k.size(),
            Private::Dsa(k) => {
                let q_bytes =
                    (k.verifying_key().components().q().bit_width_vartime() as usize).div_ceil(8);
                // SEQUENCE header (up to 4) + 2 * (INTEGER header 2 + sign byte + q).
                4 + 2 * (2 + 1 + q_bytes)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(kind: &[u8], ints: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put_bytes(&mut b, kind);
        b.extend_from_slice(&[0, 0]);
        for i in ints {
            put_bytes(&mut b, i);
        }
        b.extend_from_slice(tail);
        b
    }

    /// An odd big-endian number of exactly `bits` bits (top bit set).
    fn sized(bits: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), bits / 8).prop_map(|mut v| {
            v[0] |= 0x80;
            if let Some(last) = v.last_mut() {
                *last |= 1;
            }
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_keys_never_panic(
            rsa in any::<bool>(),
            ints in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let kind = if rsa { RSA_PUB_KEY } else { DSA_PUB_KEY };
            let _ = PublicKey::decode(&encoded(kind, &ints, &tail));
        }

        #[test]
        fn random_dsa_keys_of_a_valid_size_fail_cleanly(
            q in sized(256),
            p in sized(2048),
            g in proptest::collection::vec(any::<u8>(), 1..260),
            y in proptest::collection::vec(any::<u8>(), 1..260),
        ) {
            // Random numbers almost never form a subgroup; what matters is
            // an error, not a panic (debug builds assert on precisions).
            let _ = PublicKey::decode(&encoded(DSA_PUB_KEY, &[q, p, g, y], &[]));
        }

        #[test]
        fn random_rsa_moduli_verify_nothing(n in sized(1024), sig in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(key) = PublicKey::decode(&encoded(RSA_PUB_KEY, &[vec![1, 0, 1], n], &[0; 4])) {
                prop_assert!(!key.verify(HashAlg::Sha256, b"data", &sig));
            }
        }
    }

    #[test]
    fn hash_names_follow_cnri() {
        for (name, want) in [
            (&b"SHA-256"[..], Some(HashAlg::Sha256)),
            (b"SHA256", Some(HashAlg::Sha256)),
            (b"sha-256", Some(HashAlg::Sha256)),
            (b"SHA1", Some(HashAlg::Sha1)),
            (b"SHA-1", Some(HashAlg::Sha1)),
            (&[3], Some(HashAlg::Sha256)),
            (&[2], Some(HashAlg::Sha1)),
            (&[1], None),
            (b"MD5", None),
            (b"", None),
            (b"SHA-512", None),
        ] {
            assert_eq!(HashAlg::from_name(name), want, "{name:?}");
        }
        assert_eq!(
            HashAlg::from_name(HashAlg::Sha1.name().as_bytes()),
            Some(HashAlg::Sha1)
        );
        assert_eq!(
            HashAlg::from_name(HashAlg::Sha256.name().as_bytes()),
            Some(HashAlg::Sha256)
        );
    }

    #[test]
    fn java_integers_are_minimal_with_a_sign_byte() {
        let mut out = Vec::new();
        put_java_int(&mut out, &[0, 0, 1, 0, 1]);
        assert_eq!(out, [0, 0, 0, 3, 1, 0, 1]);
        out.clear();
        put_java_int(&mut out, &[0, 0x80]);
        assert_eq!(out, [0, 0, 0, 2, 0, 0x80]);
        out.clear();
        put_java_int(&mut out, &[0, 0]);
        assert_eq!(out, [0, 0, 0, 1, 0]);
    }

    #[test]
    fn bad_encodings_fail_cleanly() {
        let mut b = Vec::new();
        put_bytes(&mut b, DH_PUB_KEY);
        assert!(matches!(
            PublicKey::decode(&b),
            Err(KeyError::UnsupportedType(t)) if t == "DH_PUB_KEY"
        ));
        assert!(matches!(
            PublicKey::decode(&[]),
            Err(KeyError::Decode(DecodeError::Truncated("key type")))
        ));
        let mut b = Vec::new();
        put_bytes(&mut b, RSA_PUB_KEY);
        b.extend_from_slice(&[0, 0]);
        put_bytes(&mut b, &[1, 0, 1]);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            PublicKey::decode(&b),
            Err(KeyError::Decode(DecodeError::Truncated("RSA modulus")))
        ));
        // A modulus longer than 8192 bits is refused before allocating.
        let mut b = Vec::new();
        put_bytes(&mut b, RSA_PUB_KEY);
        b.extend_from_slice(&[0, 0]);
        put_bytes(&mut b, &[1, 0, 1]);
        put_bytes(&mut b, &vec![0xff; MAX_KEY_INT_LEN + 1]);
        assert!(matches!(
            PublicKey::decode(&b),
            Err(KeyError::Decode(DecodeError::TooLong("RSA modulus", _)))
        ));
        // A small or even modulus is not a key.
        for n in [vec![0x7f; 64], vec![0xfe; 256], vec![0]] {
            let mut b = Vec::new();
            put_bytes(&mut b, RSA_PUB_KEY);
            b.extend_from_slice(&[0, 0]);
            put_bytes(&mut b, &[1, 0, 1]);
            put_bytes(&mut b, &n);
            assert!(matches!(PublicKey::decode(&b), Err(KeyError::Invalid(_))));
        }
    }

    #[test]
    fn generated_rsa_keys_sign_verify_and_round_trip() {
        let key = ServerKey::generate_rsa(1024).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa);
        assert!(format!("{key:?}").contains("1024 bits"));
        let public = key.public_key();
        let encoded = public.encode();
        assert_eq!(PublicKey::decode(&encoded).unwrap(), public);
        assert_eq!(&encoded[encoded.len() - 4..], &[0; 4]);
        for hash in [HashAlg::Sha1, HashAlg::Sha256] {
            let sig = key.sign(hash, b"signed bytes").unwrap();
            assert_eq!(sig.len(), 128);
            assert!(sig.len() <= key.max_signature_len());
            assert!(public.verify(hash, b"signed bytes", &sig));
            assert!(public.verify_parts(hash, &[b"signed ", b"bytes"], &sig));
            assert!(!public.verify(hash, b"signed bytez", &sig));
            let other = if hash == HashAlg::Sha1 {
                HashAlg::Sha256
            } else {
                HashAlg::Sha1
            };
            assert!(!public.verify(other, b"signed bytes", &sig));
            assert!(!public.verify(hash, b"signed bytes", &sig[1..]));
            assert!(!public.verify(hash, b"signed bytes", &[]));
        }
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = ServerKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key(), public);
        assert!(matches!(
            ServerKey::from_pkcs8_pem("not pem"),
            Err(KeyError::Pkcs8(_))
        ));
    }
}
