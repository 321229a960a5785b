//! Sessions as CNRI Handle.Net 9.x makes them, codec pieces: the
//! SESSION_SETUP (400) request and response bodies, Diffie-Hellman key
//! exchange and the session key, and the HS_MAC credential of session
//! messages. The server does not serve sessions yet
//! (docs/handle-admin.md).
//!
//! Not here: the RSA key-exchange modes 1 to 3 (decoded, answered 504 by
//! the server). The session table (id, key, identity, counters, idle
//! timeout) belongs to the server (`idnode-authority`).
//!
//! # SESSION_SETUP request body
//! mode int2 (1 client RSA key, 2 server RSA key, 3 key from a handle, 4
//! Diffie-Hellman), timeout int4 (idle seconds), identity handle str,
//! identity index int4, then for modes 1 and 4 the client key (str; a
//! `DH_PUB_KEY` for 4), for mode 3 a handle str and index int4, for mode 2
//! nothing; then 2 zero bytes. Trailing bytes are ignored.
//!
//! # Response body (after the RD digest; code 1, new session id in the
//! envelope, signed because the request sets CT)
//! mode int2, data str, 2 zero bytes; for DH the data is cipher int4 (3 =
//! AES) and the server's `DH_PUB_KEY` on the client's p and g.
//!
//! # Session key
//! Z = the DH shared secret big-endian, left-padded to the length of p;
//! leading zero bytes are skipped only while more than 32 bytes remain; the
//! key is the next 32 bytes. HS_MAC = HMAC-SHA256(key, signed bytes of
//! [`crate::certify::signed_bytes`]); AES uses key[0..16].
//!
//! # Encrypted messages
//! Envelope flag 0x40 ([`crate::flags::ENCRYPTED`]): the message after the
//! envelope is a 16-byte IV followed by AES-128-CBC (PKCS#5 padding) of
//! header + body + credential, and the envelope's message length counts
//! that payload. [`decrypt_message`] gives back the plain message (flag
//! cleared, length patched) that the rest of the codec reads;
//! [`encrypt_message`] does the reverse.

use crate::auth::RngError;
use crate::certify::{Credential, HS_MAC, signed_prefix};
use crate::envelope::Envelope;
use crate::keys::DH_PUB_KEY;
use crate::{DecodeError, ResponseBuilder, ResponseContext, code, opcode};
use crate::{ENVELOPE_LEN, MAX_MESSAGE_LEN, flags};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt as _, BlockModeEncrypt as _, KeyIvInit as _};
use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use hmac::{Hmac, KeyInit as _, Mac as _};
use idnode_core::limits;
use idnode_core::wire::{Reader, put_bytes, put_u32};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use thiserror::Error;

/// Key exchange modes of SESSION_SETUP.
pub mod mode {
    pub const CLIENT_RSA: u16 = 1;
    pub const SERVER_RSA: u16 = 2;
    pub const HANDLE_KEY: u16 = 3;
    pub const DIFFIE_HELLMAN: u16 = 4;
}

/// Session ciphers.
pub mod cipher {
    pub const DES: u32 = 1;
    pub const DES3: u32 = 2;
    pub const AES: u32 = 3;
}

/// MAC algorithm name of HS_MAC at >= 2.7.
pub const HMAC_SHA256: &[u8] = b"HMAC-SHA256";
/// Session key length.
pub const SESSION_KEY_LEN: usize = 32;
/// Largest DH modulus accepted, in bytes (8192 bits).
pub const MAX_DH_BYTES: usize = 1024;
/// Smallest DH modulus accepted, in bytes (512 bits; CNRI's JDK sends 1024).
pub const MIN_DH_BYTES: usize = 64;

/// Why a session message or key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Malformed body or message: 4 PROTOCOL_ERROR (504 for a setup).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A DH key or group that is not usable: 504 INVALID_SESSIONSETUP_REQUEST.
    #[error("invalid Diffie-Hellman key: {0}")]
    InvalidKey(&'static str),
    /// No HS_MAC credential on a session request: 404 INVALID_CREDENTIAL.
    #[error("the session message has no HS_MAC")]
    MissingMac,
    /// The HS_MAC does not verify: 502 INVALID_SESSION_KEY.
    #[error("the session MAC does not verify")]
    BadMac,
    /// An encrypted message that does not decrypt with the session key
    /// (length not whole blocks, bad padding, or a plain message that is
    /// not a message): 502 INVALID_SESSION_KEY.
    #[error("the encrypted message does not decrypt with the session key")]
    BadCiphertext,
}

impl SessionError {
    pub fn response_code(&self) -> u32 {
        match self {
            Self::Decode(_) | Self::InvalidKey(_) => code::INVALID_SESSIONSETUP_REQUEST,
            Self::MissingMac => code::INVALID_CREDENTIAL,
            Self::BadMac | Self::BadCiphertext => code::INVALID_SESSION_KEY,
        }
    }
}

impl From<idnode_core::Error> for SessionError {
    fn from(e: idnode_core::Error) -> Self {
        Self::Decode(e.into())
    }
}

/// A `DH_PUB_KEY`: y, p, g as unsigned big-endian magnitudes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhPublicKey {
    pub y: Vec<u8>,
    pub p: Vec<u8>,
    pub g: Vec<u8>,
}

fn magnitude<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], SessionError> {
    let raw = r.bytes(what)?;
    if raw.len() > MAX_DH_BYTES + 1 {
        return Err(DecodeError::TooLong(what, raw.len() as u32).into());
    }
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    Ok(&raw[start..])
}

fn put_java_int(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let m = &magnitude[start..];
    if m.is_empty() {
        put_bytes(out, &[0]);
    } else if m[0] & 0x80 != 0 {
        put_u32(out, m.len() as u32 + 1);
        out.push(0);
        out.extend_from_slice(m);
    } else {
        put_bytes(out, m);
    }
}

impl DhPublicKey {
    /// Decodes `DH_PUB_KEY` data: key type str, flags int2, y, p, g (str
    /// each, Java two's complement read unsigned). Checks sizes
    /// ([`MIN_DH_BYTES`] to [`MAX_DH_BYTES`]), that p is odd, and that
    /// 1 < y < p - 1 and 1 < g < p.
    pub fn decode(data: &[u8]) -> Result<Self, SessionError> {
        let mut r = Reader::new(data);
        if r.bytes("key type")? != DH_PUB_KEY {
            return Err(SessionError::InvalidKey("key type is not DH_PUB_KEY"));
        }
        r.u16("key flags")?;
        let y = magnitude(&mut r, "DH y")?.to_vec();
        let p = magnitude(&mut r, "DH p")?.to_vec();
        let g = magnitude(&mut r, "DH g")?.to_vec();
        let key = Self { y, p, g };
        key.check()?;
        Ok(key)
    }

    fn check(&self) -> Result<(), SessionError> {
        if !(MIN_DH_BYTES..=MAX_DH_BYTES).contains(&self.p.len()) {
            return Err(SessionError::InvalidKey("modulus size"));
        }
        let p = modulus(&self.p)?;
        let one = BoxedUint::one_with_precision(p.bits_precision());
        let p_minus_1 = p.wrapping_sub(&one);
        let g = same_precision(&self.g, &p)?;
        if g <= one || g >= *p {
            return Err(SessionError::InvalidKey("generator out of range"));
        }
        let y = same_precision(&self.y, &p)?;
        if y <= one || y >= p_minus_1 {
            return Err(SessionError::InvalidKey("public value out of range"));
        }
        Ok(())
    }

    /// Appends the `DH_PUB_KEY` data (Java integer forms).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_bytes(out, DH_PUB_KEY);
        out.extend_from_slice(&[0, 0]);
        put_java_int(out, &self.y);
        put_java_int(out, &self.p);
        put_java_int(out, &self.g);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn modulus(p: &[u8]) -> Result<Odd<BoxedUint>, SessionError> {
    let p = BoxedUint::from_be_slice_vartime(p);
    Option::from(Odd::new(p)).ok_or(SessionError::InvalidKey("even modulus"))
}

fn same_precision(magnitude: &[u8], p: &BoxedUint) -> Result<BoxedUint, SessionError> {
    BoxedUint::from_be_slice(magnitude, p.bits_precision())
        .map_err(|_| SessionError::InvalidKey("integer larger than the modulus"))
}

/// base^x mod p, big-endian, left-padded to the length of p.
fn mod_pow(base: &[u8], x: &[u8], p: &[u8]) -> Result<Vec<u8>, SessionError> {
    let modulus = modulus(p)?;
    let base = same_precision(base, &modulus)?;
    let exponent = BoxedUint::from_be_slice_vartime(x);
    let params = BoxedMontyParams::new(modulus);
    let result = BoxedMontyForm::new(base, &params).pow(&exponent).retrieve();
    let bytes = result.to_be_bytes();
    // `to_be_bytes` is at the precision (whole limbs): keep len(p) bytes.
    let skip = bytes.len().saturating_sub(p.len());
    Ok(bytes[skip..].to_vec())
}

/// A random DH private value (32 bytes from the OS RNG, read as an
/// unsigned integer).
pub fn dh_private() -> Result<[u8; 32], RngError> {
    use rand::TryRng as _;
    let mut x = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut x)
        .map_err(|_| RngError)?;
    Ok(x)
}

/// Our public key on the peer's group: y = g^x mod p.
pub fn dh_public(peer: &DhPublicKey, x: &[u8]) -> Result<DhPublicKey, SessionError> {
    let y = mod_pow(&peer.g, x, &peer.p)?;
    let start = y.iter().position(|&b| b != 0).unwrap_or(y.len());
    Ok(DhPublicKey {
        y: y[start..].to_vec(),
        p: peer.p.clone(),
        g: peer.g.clone(),
    })
}

/// The session key from the peer's public key and our private value.
pub fn session_key(peer: &DhPublicKey, x: &[u8]) -> Result<[u8; SESSION_KEY_LEN], SessionError> {
    peer.check()?;
    let z = mod_pow(&peer.y, x, &peer.p)?;
    key_from_shared(&z)
}

/// The session key from Z (the shared secret padded to the length of p).
pub fn key_from_shared(z: &[u8]) -> Result<[u8; SESSION_KEY_LEN], SessionError> {
    let mut at = 0;
    while z.len() - at > SESSION_KEY_LEN && z[at] == 0 {
        at += 1;
    }
    z.get(at..at + SESSION_KEY_LEN)
        .and_then(|k| <[u8; SESSION_KEY_LEN]>::try_from(k).ok())
        .ok_or(SessionError::InvalidKey(
            "shared secret shorter than 32 bytes",
        ))
}

/// How the session key is agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupKey<'a> {
    /// Modes 1 (client RSA key) and 4 (its `DH_PUB_KEY`): the key data.
    Client(&'a [u8]),
    /// Mode 3: the key is the value at this handle and index.
    Handle { handle: &'a str, index: u32 },
    /// Mode 2: the server's RSA key.
    Server,
}

/// The body of a SESSION_SETUP request, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSetupRequest<'a> {
    pub mode: u16,
    /// Idle timeout in seconds.
    pub timeout: u32,
    pub identity_handle: &'a str,
    pub identity_index: u32,
    pub key: SetupKey<'a>,
}

fn handle<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a str, SessionError> {
    let h = r.bytes(what)?;
    if h.len() > limits::MAX_IDENTIFIER_BYTES {
        return Err(DecodeError::TooLong(what, h.len() as u32).into());
    }
    std::str::from_utf8(h).map_err(|_| DecodeError::Malformed(what).into())
}

impl<'a> SessionSetupRequest<'a> {
    /// Decodes the body (module documentation); trailing bytes ignored.
    pub fn decode(body: &'a [u8]) -> Result<Self, SessionError> {
        let mut r = Reader::new(body);
        let mode = r.u16("key exchange mode")?;
        let timeout = r.u32("session timeout")?;
        let identity_handle = handle(&mut r, "identity handle")?;
        let identity_index = r.u32("identity index")?;
        let key = match mode {
            mode::CLIENT_RSA | mode::DIFFIE_HELLMAN => SetupKey::Client(r.bytes("client key")?),
            mode::HANDLE_KEY => SetupKey::Handle {
                handle: handle(&mut r, "key handle")?,
                index: r.u32("key index")?,
            },
            mode::SERVER_RSA => SetupKey::Server,
            _ => return Err(DecodeError::Malformed("key exchange mode").into()),
        };
        Ok(Self {
            mode,
            timeout,
            identity_handle,
            identity_index,
            key,
        })
    }

    /// Appends the body as CNRI writes it (with the 2 trailing zero bytes).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mode.to_be_bytes());
        put_u32(out, self.timeout);
        put_bytes(out, self.identity_handle.as_bytes());
        put_u32(out, self.identity_index);
        match self.key {
            SetupKey::Client(k) => put_bytes(out, k),
            SetupKey::Handle { handle, index } => {
                put_bytes(out, handle.as_bytes());
                put_u32(out, index);
            }
            SetupKey::Server => {}
        }
        out.extend_from_slice(&[0, 0]);
    }
}

/// Writes the SUCCESS of a DH SESSION_SETUP: `ctx` is the request's
/// context with the new session id in `ctx.session_id` (the request sets
/// RD, so the digest comes first). Sign it afterwards with
/// [`crate::certify::sign_response`] (the request sets CT). Returns the
/// whole length.
pub fn encode_dh_setup_response(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    cipher: u32,
    server_key: &DhPublicKey,
) -> usize {
    let mut data = Vec::new();
    put_u32(&mut data, cipher);
    server_key.encode_into(&mut data);
    let mut b = ResponseBuilder::start(out, ctx, opcode::SESSION_SETUP, code::SUCCESS);
    b.buffer()
        .extend_from_slice(&mode::DIFFIE_HELLMAN.to_be_bytes());
    b.put_bytes(&data);
    b.buffer().extend_from_slice(&[0, 0]);
    b.finish()
}

/// Reads a DH SESSION_SETUP response body (after the RD digest): the
/// cipher and the server's key.
pub fn decode_dh_setup_response(body: &[u8]) -> Result<(u32, DhPublicKey), SessionError> {
    let mut r = Reader::new(body);
    if r.u16("key exchange mode")? != mode::DIFFIE_HELLMAN {
        return Err(DecodeError::Malformed("key exchange mode").into());
    }
    let data = r.bytes("exchange data")?;
    let mut d = Reader::new(data);
    let cipher = d.u32("cipher")?;
    let key = DhPublicKey::decode(&data[d.position()..])?;
    Ok((cipher, key))
}

/// HMAC-SHA256 with the session key over the signed bytes of a complete
/// message (its counter from its credential).
pub fn session_mac(message: &[u8], key: &[u8; SESSION_KEY_LEN]) -> Result<[u8; 32], SessionError> {
    let signed = crate::certify::signed_bytes(message)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|_| SessionError::InvalidKey("session key"))?;
    mac.update(&signed);
    Ok(mac.finalize().into_bytes().into())
}

/// Verifies the HS_MAC credential of a complete session message; returns
/// its session counter (for the server's replay window: a counter seen
/// before gets 505).
pub fn verify_session_mac(
    message: &[u8],
    key: &[u8; SESSION_KEY_LEN],
) -> Result<u32, SessionError> {
    let parts = crate::message::split(message)?;
    if parts.credential.is_empty() {
        return Err(SessionError::MissingMac);
    }
    let credential = Credential::decode(parts.credential)?;
    if credential.kind != HS_MAC {
        return Err(SessionError::MissingMac);
    }
    if !credential.hash.eq_ignore_ascii_case(HMAC_SHA256) {
        return Err(SessionError::BadMac);
    }
    let expected = session_mac(message, key)?;
    if bool::from(expected.as_slice().ct_eq(credential.signature)) {
        Ok(credential.signer_index)
    } else {
        Err(SessionError::BadMac)
    }
}

/// Adds an HS_MAC credential (HMAC-SHA256 with the session key, signer
/// index `counter`) to a complete message that has none (a request a
/// client sends in a session, or a response to a request that set CT),
/// patching the envelope's message length. On error `message` is
/// unchanged.
pub fn add_session_mac(
    message: &mut Vec<u8>,
    key: &[u8; SESSION_KEY_LEN],
    counter: u32,
) -> Result<(), SessionError> {
    let parts = crate::message::split(message)?;
    if !parts.credential.is_empty() {
        return Err(DecodeError::Malformed("credential (the message has one already)").into());
    }
    let (prefix, prefix_len) = signed_prefix(&parts.envelope, counter);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|_| SessionError::InvalidKey("session key"))?;
    mac.update(&prefix[..prefix_len]);
    mac.update(parts.digest_input);
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    let hb_end = ENVELOPE_LEN + parts.digest_input.len();
    let credential = Credential {
        version: 0,
        reserved: 0,
        flags: 0,
        signer_handle: b"",
        signer_index: counter,
        kind: HS_MAC,
        hash: HMAC_SHA256,
        signature: &tag,
    };
    let total = hb_end + 4 + credential.encoded_len();
    if total - ENVELOPE_LEN > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong("message", (total - ENVELOPE_LEN) as u32).into());
    }
    message.truncate(hb_end);
    put_u32(message, credential.encoded_len() as u32);
    credential.encode_into(message);
    patch_length(message);
    Ok(())
}

fn patch_length(message: &mut [u8]) {
    let len = (message.len() - ENVELOPE_LEN) as u32;
    message[16..20].copy_from_slice(&len.to_be_bytes());
}

/// The plain message of an encrypted one (module documentation): the
/// envelope with the encrypted flag cleared and its length patched, then
/// the decrypted header, body and credential. The payload length is
/// checked before anything is allocated; a result that does not split
/// into header, body and credential is [`SessionError::BadCiphertext`].
pub fn decrypt_message(
    message: &[u8],
    key: &[u8; SESSION_KEY_LEN],
) -> Result<Vec<u8>, SessionError> {
    let envelope = Envelope::decode(message)?;
    let payload = &message[ENVELOPE_LEN..];
    if payload.len() != envelope.message_length as usize {
        return Err(DecodeError::LengthMismatch("message length").into());
    }
    if envelope.flags & flags::ENCRYPTED == 0 {
        return Err(DecodeError::Malformed("envelope (the message is not encrypted)").into());
    }
    if payload.len() > MAX_MESSAGE_LEN + 32
        || payload.len() < 32
        || !payload.len().is_multiple_of(16)
    {
        return Err(SessionError::BadCiphertext);
    }
    let (iv, ciphertext) = payload.split_at(16);
    let plain = cbc::Decryptor::<aes::Aes128>::new_from_slices(&key[..16], iv)
        .map_err(|_| SessionError::InvalidKey("session key"))?
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| SessionError::BadCiphertext)?;
    let mut out = Vec::with_capacity(ENVELOPE_LEN + plain.len());
    out.extend_from_slice(&message[..ENVELOPE_LEN]);
    out[2] &= !flags::ENCRYPTED;
    out.extend_from_slice(&plain);
    patch_length(&mut out);
    crate::message::split(&out).map_err(|_| SessionError::BadCiphertext)?;
    Ok(out)
}

/// The encrypted form of a complete plain message with the IV `iv` (draw
/// it at random per message; [`random_iv`]): envelope with the encrypted
/// flag set and its length patched, then IV and ciphertext.
pub fn encrypt_message(
    message: &[u8],
    key: &[u8; SESSION_KEY_LEN],
    iv: &[u8; 16],
) -> Result<Vec<u8>, SessionError> {
    crate::message::split(message)?;
    let ciphertext = cbc::Encryptor::<aes::Aes128>::new_from_slices(&key[..16], iv)
        .map_err(|_| SessionError::InvalidKey("session key"))?
        .encrypt_padded_vec::<Pkcs7>(&message[ENVELOPE_LEN..]);
    let mut out = Vec::with_capacity(ENVELOPE_LEN + 16 + ciphertext.len());
    out.extend_from_slice(&message[..ENVELOPE_LEN]);
    out[2] |= flags::ENCRYPTED;
    out.extend_from_slice(iv);
    out.extend_from_slice(&ciphertext);
    patch_length(&mut out);
    Ok(out)
}

/// A random IV from the OS RNG.
pub fn random_iv() -> Result<[u8; 16], RngError> {
    use rand::TryRng as _;
    let mut iv = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut iv)
        .map_err(|_| RngError)?;
    Ok(iv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn key_derivation_skips_zeros_only_above_32_bytes() {
        let mut z = vec![0u8; 128];
        z[100] = 7;
        let k = key_from_shared(&z).unwrap();
        assert_eq!(k[4], 7);
        let mut z = vec![0u8; 40];
        z[0] = 1;
        assert_eq!(key_from_shared(&z).unwrap()[0], 1);
        assert!(key_from_shared(&[1; 31]).is_err());
        assert_eq!(key_from_shared(&[0; 32]).unwrap(), [0; 32]);
    }

    #[test]
    fn bad_groups_are_refused() {
        let p = {
            let mut p = vec![0xff; 64];
            p[63] = 0xfe;
            p
        };
        let key = DhPublicKey {
            y: vec![5],
            p,
            g: vec![2],
        };
        assert!(matches!(
            DhPublicKey::decode(&key.encode()),
            Err(SessionError::InvalidKey(_))
        ));
        let small = DhPublicKey {
            y: vec![5],
            p: vec![0xff; 8],
            g: vec![2],
        };
        assert!(DhPublicKey::decode(&small.encode()).is_err());
        let mut odd = vec![0xff; 64];
        odd[63] = 0xfd;
        let y_one = DhPublicKey {
            y: vec![1],
            p: odd.clone(),
            g: vec![2],
        };
        assert!(DhPublicKey::decode(&y_one.encode()).is_err());
        let fine = DhPublicKey {
            y: vec![9],
            p: odd,
            g: vec![2],
        };
        assert_eq!(DhPublicKey::decode(&fine.encode()).unwrap(), fine);
        let e = fine.encode();
        for cut in 0..e.len() {
            assert!(DhPublicKey::decode(&e[..cut]).is_err());
        }
    }
}
