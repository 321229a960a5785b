//! Challenge-response authentication of admin requests
//! (docs/handle-admin.md; CNRI Handle.Net 9.x behaviour).
//!
//! # Flow (the server owns the storage and the clock)
//! 1. An admin request arrives without an authenticated session. After
//!    the checks the spec makes before the challenge, the server draws a
//!    nonce ([`random_nonce`]) and a fresh non-zero session id, builds a
//!    [`Challenge`] ([`Challenge::new`]), keeps it with the original request
//!    in a table keyed by session id ([`PendingChallenges`]), and answers
//!    402 with [`encode_challenge`].
//! 2. The client answers with CHALLENGE_RESPONSE (200) on a new connection
//!    with the challenge's session id. The server takes the entry
//!    ([`PendingChallenges::take`], one-shot: 500 SESSION_TIMEOUT when
//!    unknown, 405 AUTHEN_TIMEOUT when expired), decodes the answer
//!    ([`ChallengeAnswer::decode`]), checks authorization first
//!    ([`crate::admin::authorize`], 400 INVALID_ADMIN) and then the answer
//!    against the key handle's HS_SECKEY / HS_PUBKEY values
//!    ([`verify_answer`]: 403 / 404 / 406 from
//!    [`FailReason::response_code`]).
//! 3. On success it runs the original request and answers with the
//!    answer's request id ([`crate::admin::result_context`]).
//!
//! # What is signed or MACed
//! M = nonce || request digest (the raw digest of the original request's
//! header and body, without the algorithm byte). The request digest is
//! SHA-256 for a challenge at protocol >= 2.7, SHA-1 at 2.1 to 2.6, MD5
//! below (then the 402 has the 2.0 layout and the answer is a bare MD5).
//!
//! | HS_SECKEY answer | computation (K = the HS_SECKEY data) |
//! |---|---|
//! | 16 bytes (challenge below 2.1) | MD5(K \|\| M \|\| K) |
//! | `01` + 16 | MD5(K \|\| M \|\| K) (refused unless [`VerifyPolicy::allow_md5`]) |
//! | `02` + 20 | SHA-1(K \|\| M \|\| K) |
//! | `03` + 32 | SHA-256(K \|\| M \|\| K) |
//! | `12` + 20 | HMAC-SHA1(K, M) |
//! | `13` + 32 | HMAC-SHA256(K, M) |
//! | `22` salt(str) iterations(int4) bits(int4) mac(str) | HMAC-SHA1(PBKDF2-HMAC-SHA1(K', salt, iterations, bits/8), M); K' = K read as ISO-8859-1 and written as UTF-8 (Java) |
//!
//! HS_PUBKEY answer: hash name (str: `SHA-256`, `SHA256`, `SHA1`, `SHA-1`,
//! `MD5`, or one byte 01/02/03) and signature (str) over M:
//! RSASSA-PKCS1-v1_5 for `RSA_PUB_KEY`, DER `SEQUENCE{r,s}` for
//! `DSA_PUB_KEY`.
//!
//! Every comparison is constant-time; PBKDF2 iterations and key lengths
//! are capped ([`VerifyPolicy`]) because the answer chooses them.

use crate::admin::AdminRef;
use crate::keys::{HashAlg, KeyError, PublicKey, ServerKey};
use crate::{
    DecodeError, Digest, DigestAlgorithm, Request, ResponseBuilder, ResponseContext, code,
    response_version,
};
use dsa::signature::hazmat::PrehashVerifier as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use idnode_core::wire::{Reader, put_bytes, put_u32};
use idnode_core::{Value, limits};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq as _;
use thiserror::Error;

/// Auth type (and value type) of a secret key.
pub const HS_SECKEY: &[u8] = b"HS_SECKEY";
/// Auth type (and value type) of a public key.
pub const HS_PUBKEY: &[u8] = b"HS_PUBKEY";
/// Nonce length (CNRI: 16 bytes from a CSPRNG).
pub const NONCE_LEN: usize = 16;
/// How long a challenge may be answered, in seconds (spec section 9).
pub const CHALLENGE_TTL_SECS: u32 = 60;
/// Default cap on PBKDF2 iterations an answer may ask for (CNRI sends
/// 10 000).
pub const MAX_PBKDF2_ITERATIONS: u32 = 100_000;
/// Largest PBKDF2 derived key, in bits (CNRI sends 160).
pub const MAX_PBKDF2_BITS: u32 = 1024;
/// Longest auth type or hash name read.
const MAX_NAME_LEN: usize = 64;
/// Longest nonce, salt or digest read from a body.
const MAX_FIELD_LEN: usize = 1024;

/// Answer algorithm codes (first byte of an HS_SECKEY answer).
pub mod seckey_code {
    pub const MD5: u8 = 0x01;
    pub const SHA1: u8 = 0x02;
    pub const SHA256: u8 = 0x03;
    pub const HMAC_SHA1: u8 = 0x12;
    pub const HMAC_SHA256: u8 = 0x13;
    pub const PBKDF2_HMAC_SHA1: u8 = 0x22;
}

/// The OS random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the OS random number generator failed")]
pub struct RngError;

/// A fresh nonce from the OS CSPRNG (the one place this module reads
/// randomness; tests and fixed vectors pass their own nonce instead).
pub fn random_nonce() -> Result<[u8; NONCE_LEN], RngError> {
    use rand::TryRng as _;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::SysRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| RngError)?;
    Ok(nonce)
}

// ---------------------------------------------------------------------------
// The challenge.

/// Why a challenge answer cannot be matched to a pending challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No pending challenge under that session id: 500 SESSION_TIMEOUT
    /// (spec section 1; a session id of 0 gets 405 instead, as CNRI).
    #[error("no pending challenge for this session id")]
    Unknown,
    /// Answered too late: 405 AUTHEN_TIMEOUT.
    #[error("the challenge expired")]
    Expired,
    /// Already answered once (idnode makes challenges one-shot): 405.
    #[error("the challenge was already answered")]
    Used,
}

impl ChallengeError {
    pub fn response_code(&self) -> u32 {
        match self {
            Self::Unknown => code::SESSION_TIMEOUT,
            Self::Expired | Self::Used => code::AUTHEN_TIMEOUT,
        }
    }
}

/// A challenge the server sent and keeps until it is answered: nonce,
/// request digest, the 402's protocol version, and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The session id of the 402 envelope, which the answer carries.
    pub session_id: u32,
    pub nonce: [u8; NONCE_LEN],
    /// Digest of the original request's header and body.
    pub digest: Digest,
    /// Protocol version of the 402 (decides the layout and whether a
    /// bare-MD5 answer is expected).
    pub version: (u8, u8),
    /// Unix seconds when it was issued, and after which it is refused.
    pub issued: u32,
    pub expires: u32,
    used: bool,
}

impl Challenge {
    /// The challenge for `request` (the admin request being challenged):
    /// version as the response will carry it ([`response_version`]),
    /// request digest by that version, valid for `ttl_secs` from `now`
    /// (use [`CHALLENGE_TTL_SECS`]).
    pub fn new(
        request: &Request<'_>,
        session_id: u32,
        nonce: [u8; NONCE_LEN],
        now: u32,
        ttl_secs: u32,
    ) -> Self {
        let version = response_version(&request.envelope);
        let digest = Digest::for_version(version.0, version.1, request.digest_input);
        Self::from_parts(session_id, nonce, digest, version, now, ttl_secs)
    }

    /// A challenge from its parts (for example at protocol 2.0, whose
    /// requests [`crate::decode_request`] refuses).
    pub fn from_parts(
        session_id: u32,
        nonce: [u8; NONCE_LEN],
        digest: Digest,
        version: (u8, u8),
        now: u32,
        ttl_secs: u32,
    ) -> Self {
        Self {
            session_id,
            nonce,
            digest,
            version,
            issued: now,
            expires: now.saturating_add(ttl_secs),
            used: false,
        }
    }

    /// Whether the challenge may no longer be answered.
    pub fn is_expired(&self, now: u32) -> bool {
        now >= self.expires
    }

    /// Whether [`redeem`](Self::redeem) already succeeded once.
    pub fn is_used(&self) -> bool {
        self.used
    }

    /// Marks the challenge answered: fails when it was already used or has
    /// expired. Call it once per answer before verifying, so one challenge
    /// admits at most one attempt.
    pub fn redeem(&mut self, now: u32) -> Result<(), ChallengeError> {
        if self.used {
            return Err(ChallengeError::Used);
        }
        if self.is_expired(now) {
            return Err(ChallengeError::Expired);
        }
        self.used = true;
        Ok(())
    }

    /// Whether answers are in the pre-2.1 form (bare MD5).
    pub fn is_legacy(&self) -> bool {
        self.version < (2, 1)
    }

    /// M = nonce || raw digest: what every answer signs or MACs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        [&self.nonce[..], self.digest.as_bytes()].concat()
    }
}

/// Writes the 402 AUTHENTICATION_NEEDED for a challenged request.
/// `ctx` is the request's context
/// (`ResponseContext::for_request(req, now).with_site(serial, primary)`);
/// the envelope takes the challenge's session id and version. At >= 2.1
/// RD is set and the body is the request digest (algorithm byte and
/// digest) then the nonce (str); below 2.1 RD is clear and the body is the
/// nonce (str) then the MD5 digest (str). Returns the whole length.
pub fn encode_challenge(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    opcode: u32,
    challenge: &Challenge,
) -> usize {
    let mut ctx = *ctx;
    ctx.session_id = challenge.session_id;
    (ctx.major, ctx.minor) = challenge.version;
    if challenge.is_legacy() {
        ctx.digest = None;
        let mut b = ResponseBuilder::start(out, &ctx, opcode, code::AUTHENTICATION_NEEDED);
        b.put_bytes(&challenge.nonce);
        b.put_bytes(challenge.digest.as_bytes());
        b.finish()
    } else {
        ctx.digest = Some(challenge.digest);
        let mut b = ResponseBuilder::start(out, &ctx, opcode, code::AUTHENTICATION_NEEDED);
        b.put_bytes(&challenge.nonce);
        b.finish()
    }
}

/// A 402 body as a client reads it, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeBody<'a> {
    pub nonce: &'a [u8],
    pub digest: Digest,
}

impl<'a> ChallengeBody<'a> {
    /// Decodes a 402 body: with `rd` (protocol >= 2.1) the digest with its
    /// algorithm byte then the nonce (str); without, the nonce (str) then
    /// an MD5 digest (str of 16 bytes).
    pub fn decode(body: &'a [u8], rd: bool) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        if rd {
            let digest = Digest::read(&mut r)?;
            let nonce = field(&mut r, "nonce")?;
            Ok(Self { nonce, digest })
        } else {
            let nonce = field(&mut r, "nonce")?;
            let raw = field(&mut r, "request digest")?;
            if raw.len() != 16 {
                return Err(DecodeError::Malformed("request digest length"));
            }
            Ok(Self {
                nonce,
                digest: digest_from_raw(DigestAlgorithm::Md5Legacy, raw)?,
            })
        }
    }
}

fn digest_from_raw(alg: DigestAlgorithm, raw: &[u8]) -> Result<Digest, DecodeError> {
    // Digest has no raw constructor; read its wire form back.
    let mut wire = Vec::with_capacity(4 + raw.len());
    match alg {
        DigestAlgorithm::Md5Legacy => put_bytes(&mut wire, raw),
        other => {
            wire.push(other.code());
            wire.extend_from_slice(raw);
        }
    }
    Digest::read(&mut Reader::new(&wire))
}

fn field<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let b = r.bytes(what)?;
    if b.len() > MAX_FIELD_LEN {
        return Err(DecodeError::TooLong(what, b.len() as u32));
    }
    Ok(b)
}

fn name<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let b = r.bytes(what)?;
    if b.len() > MAX_NAME_LEN {
        return Err(DecodeError::TooLong(what, b.len() as u32));
    }
    Ok(b)
}

fn key_handle<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    let h = r.bytes("key handle")?;
    if h.len() > limits::MAX_IDENTIFIER_BYTES {
        return Err(DecodeError::TooLong("key handle", h.len() as u32));
    }
    std::str::from_utf8(h).map_err(|_| DecodeError::Malformed("key handle (not UTF-8)"))
}

// ---------------------------------------------------------------------------
// Pending challenges.

/// The server's table of pending challenges, keyed by session id: bounded,
/// entries one-shot ([`take`](Self::take) removes) and expiring. `T` is
/// whatever the server keeps with a challenge (the original request bytes,
/// the peer address...). No clock: every call gets `now`.
#[derive(Debug)]
pub struct PendingChallenges<T> {
    entries: HashMap<u32, (Challenge, T)>,
    capacity: usize,
}

/// The pending-challenge table is full (after dropping expired entries):
/// answer 3 SERVER_TOO_BUSY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("too many pending challenges")]
pub struct TableFull;

impl<T> PendingChallenges<T> {
    /// An empty table holding at most `capacity` challenges.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a session id is taken (to draw another fresh one).
    pub fn contains(&self, session_id: u32) -> bool {
        self.entries.contains_key(&session_id)
    }

    /// The pending entry of a session id, untouched (for a duplicate
    /// request, which gets the same challenge again).
    pub fn get(&self, session_id: u32) -> Option<&(Challenge, T)> {
        self.entries.get(&session_id)
    }

    /// Stores a challenge (replacing one under the same session id).
    /// When full, expired entries are dropped first.
    pub fn insert(&mut self, challenge: Challenge, pending: T, now: u32) -> Result<(), TableFull> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&challenge.session_id)
        {
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return Err(TableFull);
            }
        }
        self.entries
            .insert(challenge.session_id, (challenge, pending));
        Ok(())
    }

    /// Removes and returns the challenge answered under `session_id`
    /// (one-shot): [`ChallengeError::Unknown`] when there is none,
    /// [`ChallengeError::Expired`] when it is too old (it is dropped).
    pub fn take(&mut self, session_id: u32, now: u32) -> Result<(Challenge, T), ChallengeError> {
        let (mut challenge, pending) = self
            .entries
            .remove(&session_id)
            .ok_or(ChallengeError::Unknown)?;
        challenge.redeem(now)?;
        Ok((challenge, pending))
    }

    /// Drops expired entries; returns how many.
    pub fn sweep(&mut self, now: u32) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (c, _)| !c.is_expired(now));
        before - self.entries.len()
    }
}

// ---------------------------------------------------------------------------
// CHALLENGE_RESPONSE (200).

/// The auth type of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType<'a> {
    /// `HS_SECKEY`
    SecretKey,
    /// `HS_PUBKEY`
    PublicKey,
    /// Anything else: 404 INVALID_CREDENTIAL (after the admin check).
    Other(&'a [u8]),
}

impl<'a> AuthType<'a> {
    pub fn from_bytes(b: &'a [u8]) -> Self {
        match b {
            HS_SECKEY => Self::SecretKey,
            HS_PUBKEY => Self::PublicKey,
            other => Self::Other(other),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::SecretKey => HS_SECKEY,
            Self::PublicKey => HS_PUBKEY,
            Self::Other(b) => b,
        }
    }
}

/// The body of a CHALLENGE_RESPONSE request, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeAnswer<'a> {
    pub auth_type: AuthType<'a>,
    /// The handle holding the key (the admin identity's handle).
    pub key_handle: &'a str,
    /// Index of the key value; 0 = any key of that type.
    pub key_index: u32,
    /// The answer, laid out per auth type (module documentation).
    pub answer: &'a [u8],
}

impl<'a> ChallengeAnswer<'a> {
    /// Decodes the body: auth type (str), key handle (str), key index
    /// (int4), answer (str). Bounded; trailing bytes ignored.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let auth_type = AuthType::from_bytes(name(&mut r, "auth type")?);
        let key_handle = key_handle(&mut r)?;
        let key_index = r.u32("key index")?;
        let answer = r.bytes("answer")?;
        Ok(Self {
            auth_type,
            key_handle,
            key_index,
            answer,
        })
    }

    /// Appends the body (what [`decode`](Self::decode) reads).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.auth_type.as_bytes());
        put_bytes(out, self.key_handle.as_bytes());
        put_u32(out, self.key_index);
        put_bytes(out, self.answer);
    }

    /// The admin identity the answer claims: (key handle, key index).
    pub fn identity(&self) -> AdminRef {
        AdminRef::new(self.key_handle, self.key_index)
    }
}

// ---------------------------------------------------------------------------
// Verification.

/// Why an answer was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FailReason {
    /// Neither HS_SECKEY nor HS_PUBKEY: 404 INVALID_CREDENTIAL.
    #[error("unknown auth type")]
    UnknownAuthType,
    /// The key handle has no key of that type (at that index): 403.
    #[error("no key of that type at that index")]
    NoKey,
    /// The MAC, digest or signature does not match: 403.
    #[error("the answer does not match")]
    Mismatch,
    /// An answer algorithm or hash this node does not know: 403.
    #[error("unsupported answer algorithm")]
    UnsupportedAlgorithm,
    /// Refused by policy (MD5, PBKDF2 iterations or key length out of
    /// bounds): 403.
    #[error("answer refused by policy")]
    Refused,
    /// The answer's own fields do not parse (CNRI throws: 406
    /// AUTHEN_ERROR).
    #[error("malformed answer")]
    Malformed,
}

impl FailReason {
    /// The response code to send (spec sections 3 to 5).
    pub fn response_code(&self) -> u32 {
        match self {
            Self::UnknownAuthType => code::INVALID_CREDENTIAL,
            Self::Malformed => code::AUTHEN_ERROR,
            Self::NoKey | Self::Mismatch | Self::UnsupportedAlgorithm | Self::Refused => {
                code::AUTHENTICATION_FAILED
            }
        }
    }
}

/// The outcome of [`verify_answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The answer verifies with the key value at this index (with key
    /// index 0 in the answer, the one that verified).
    Verified {
        key_index: u32,
    },
    Failed(FailReason),
}

impl Verification {
    pub fn is_verified(&self) -> bool {
        matches!(self, Self::Verified { .. })
    }
}

/// Limits on what an answer may ask of the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Accept MD5 answers (`01`, the bare pre-2.1 form, `MD5` signatures).
    /// CNRI does; default true.
    pub allow_md5: bool,
    /// Most PBKDF2 iterations computed for one answer.
    pub max_pbkdf2_iterations: u32,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            allow_md5: true,
            max_pbkdf2_iterations: MAX_PBKDF2_ITERATIONS,
        }
    }
}

/// One value of the key handle, as [`verify_answer`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValue<'a> {
    pub index: u32,
    /// The value type (`HS_SECKEY`, `HS_PUBKEY`, ...).
    pub kind: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> From<&'a Value> for KeyValue<'a> {
    fn from(v: &'a Value) -> Self {
        Self {
            index: v.index,
            kind: v.kind.as_bytes(),
            data: &v.data,
        }
    }
}

/// Verifies a CHALLENGE_RESPONSE against the key handle's values
/// (locally all of them, non-public included; remotely what a certified
/// resolution returns):
/// - key index > 0: only the value at that index, whose type must be the
///   auth type (`HS_SECKEY` / `HS_PUBKEY`), else [`FailReason::NoKey`];
/// - key index 0: every value of that type in index order; the first that
///   verifies wins ([`Verification::Verified`] names it).
///
/// An unknown auth type is [`FailReason::UnknownAuthType`] (404). The
/// answer is checked against `challenge`'s nonce and digest, in the bare
/// MD5 form when the challenge is below 2.1.
pub fn verify_answer<'k>(
    answer: &ChallengeAnswer<'_>,
    challenge: &Challenge,
    keys: impl IntoIterator<Item = KeyValue<'k>>,
    policy: &VerifyPolicy,
) -> Verification {
    let wanted = match answer.auth_type {
        AuthType::SecretKey => HS_SECKEY,
        AuthType::PublicKey => HS_PUBKEY,
        AuthType::Other(_) => return Verification::Failed(FailReason::UnknownAuthType),
    };
    let check = |data: &[u8]| -> Result<(), FailReason> {
        let (nonce, digest) = (&challenge.nonce[..], challenge.digest.as_bytes());
        match answer.auth_type {
            AuthType::SecretKey => verify_seckey(
                answer.answer,
                data,
                nonce,
                digest,
                challenge.is_legacy(),
                policy,
            ),
            _ => verify_pubkey(answer.answer, data, nonce, digest, policy),
        }
    };
    if answer.key_index > 0 {
        let Some(key) = keys.into_iter().find(|k| k.index == answer.key_index) else {
            return Verification::Failed(FailReason::NoKey);
        };
        if key.kind != wanted {
            return Verification::Failed(FailReason::NoKey);
        }
        return match check(key.data) {
            Ok(()) => Verification::Verified {
                key_index: key.index,
            },
            Err(reason) => Verification::Failed(reason),
        };
    }
    let mut candidates: Vec<KeyValue<'k>> = keys.into_iter().filter(|k| k.kind == wanted).collect();
    candidates.sort_by_key(|k| k.index);
    let mut last = FailReason::NoKey;
    for key in candidates {
        match check(key.data) {
            Ok(()) => {
                return Verification::Verified {
                    key_index: key.index,
                };
            }
            // A structural error in the answer is the same for every key.
            Err(FailReason::Malformed) => return Verification::Failed(FailReason::Malformed),
            Err(reason) => last = reason,
        }
    }
    Verification::Failed(last)
}

/// The HS_SECKEY answer algorithms, and how to compute one (client side
/// and tests; the server uses [`verify_seckey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKeyAnswer<'a> {
    /// Bare MD5, no algorithm byte (challenges below 2.1).
    LegacyMd5,
    Md5,
    Sha1,
    Sha256,
    HmacSha1,
    HmacSha256,
    /// What CNRI 9.x sends (random 16-byte salt, 10 000 iterations, 160
    /// bits).
    Pbkdf2HmacSha1 {
        salt: &'a [u8],
        iterations: u32,
        bits: u32,
    },
}

impl<'a> SecretKeyAnswer<'a> {
    /// The algorithm byte (`None` for [`Self::LegacyMd5`]).
    pub fn code(&self) -> Option<u8> {
        Some(match self {
            Self::LegacyMd5 => return None,
            Self::Md5 => seckey_code::MD5,
            Self::Sha1 => seckey_code::SHA1,
            Self::Sha256 => seckey_code::SHA256,
            Self::HmacSha1 => seckey_code::HMAC_SHA1,
            Self::HmacSha256 => seckey_code::HMAC_SHA256,
            Self::Pbkdf2HmacSha1 { .. } => seckey_code::PBKDF2_HMAC_SHA1,
        })
    }

    /// Splits an answer into its algorithm and MAC (`legacy`: a challenge
    /// below 2.1, where the whole answer is the MD5).
    pub fn parse(answer: &'a [u8], legacy: bool) -> Result<(Self, &'a [u8]), FailReason> {
        if legacy {
            return Ok((Self::LegacyMd5, answer));
        }
        let (&first, rest) = answer.split_first().ok_or(FailReason::Malformed)?;
        let alg = match first {
            seckey_code::MD5 => Self::Md5,
            seckey_code::SHA1 => Self::Sha1,
            seckey_code::SHA256 => Self::Sha256,
            seckey_code::HMAC_SHA1 => Self::HmacSha1,
            seckey_code::HMAC_SHA256 => Self::HmacSha256,
            seckey_code::PBKDF2_HMAC_SHA1 => {
                let mut r = Reader::new(rest);
                let salt = r.bytes("salt").map_err(|_| FailReason::Malformed)?;
                let iterations = r.u32("iterations").map_err(|_| FailReason::Malformed)?;
                let bits = r.u32("key length").map_err(|_| FailReason::Malformed)?;
                let mac = r.bytes("mac").map_err(|_| FailReason::Malformed)?;
                if r.remaining() != 0 {
                    // The whole re-encoded tail must match.
                    return Err(FailReason::Mismatch);
                }
                return Ok((
                    Self::Pbkdf2HmacSha1 {
                        salt,
                        iterations,
                        bits,
                    },
                    mac,
                ));
            }
            _ => return Err(FailReason::UnsupportedAlgorithm),
        };
        Ok((alg, rest))
    }

    /// The MAC part of the answer for this secret and M = nonce || digest.
    /// PBKDF2 parameters are checked against `policy` (iterations 1 to
    /// the cap, bits a non-zero multiple of 8 up to [`MAX_PBKDF2_BITS`]).
    pub fn mac(
        &self,
        secret: &[u8],
        nonce: &[u8],
        digest: &[u8],
        policy: &VerifyPolicy,
    ) -> Result<Vec<u8>, FailReason> {
        let hashed = |h: &mut dyn FnMut(&[u8])| {
            h(secret);
            h(nonce);
            h(digest);
            h(secret);
        };
        Ok(match *self {
            Self::LegacyMd5 | Self::Md5 => {
                if !policy.allow_md5 {
                    return Err(FailReason::Refused);
                }
                let mut d = Md5::new();
                hashed(&mut |b| d.update(b));
                d.finalize().to_vec()
            }
            Self::Sha1 => {
                let mut d = Sha1::new();
                hashed(&mut |b| d.update(b));
                d.finalize().to_vec()
            }
            Self::Sha256 => {
                let mut d = Sha256::new();
                hashed(&mut |b| d.update(b));
                d.finalize().to_vec()
            }
            Self::HmacSha1 => hmac_sha1(secret, nonce, digest),
            Self::HmacSha256 => {
                // HMAC accepts keys of any length.
                let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return Err(FailReason::Malformed);
                };
                m.update(nonce);
                m.update(digest);
                m.finalize().into_bytes().to_vec()
            }
            Self::Pbkdf2HmacSha1 {
                salt,
                iterations,
                bits,
            } => {
                let key = pbkdf2_key(secret, salt, iterations, bits, policy)?;
                hmac_sha1(&key, nonce, digest)
            }
        })
    }

    /// The whole answer (algorithm byte, PBKDF2 fields, MAC) as a client
    /// sends it.
    pub fn compute(
        &self,
        secret: &[u8],
        nonce: &[u8],
        digest: &[u8],
        policy: &VerifyPolicy,
    ) -> Result<Vec<u8>, FailReason> {
        let mac = self.mac(secret, nonce, digest, policy)?;
        let mut out = Vec::with_capacity(mac.len() + 32);
        if let Some(c) = self.code() {
            out.push(c);
        }
        if let Self::Pbkdf2HmacSha1 {
            salt,
            iterations,
            bits,
        } = self
        {
            put_bytes(&mut out, salt);
            put_u32(&mut out, *iterations);
            put_u32(&mut out, *bits);
            put_bytes(&mut out, &mac);
        } else {
            out.extend_from_slice(&mac);
        }
        Ok(out)
    }
}

fn hmac_sha1(key: &[u8], nonce: &[u8], digest: &[u8]) -> Vec<u8> {
    // `new_from_slice` accepts any key length for HMAC; the fallback is
    // unreachable but keeps this free of panics.
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(nonce);
            m.update(digest);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The PBKDF2-HMAC-SHA1 key of a `22` answer: the secret re-encoded as
/// Java does ([`latin1_to_utf8`]), `bits / 8` bytes. Refuses iterations
/// outside 1 to the policy's cap and lengths that are not a non-zero
/// multiple of 8 up to [`MAX_PBKDF2_BITS`].
pub fn pbkdf2_key(
    secret: &[u8],
    salt: &[u8],
    iterations: u32,
    bits: u32,
    policy: &VerifyPolicy,
) -> Result<Vec<u8>, FailReason> {
    if iterations == 0 || iterations > policy.max_pbkdf2_iterations {
        return Err(FailReason::Refused);
    }
    if bits == 0 || !bits.is_multiple_of(8) || bits > MAX_PBKDF2_BITS {
        return Err(FailReason::Refused);
    }
    let password = latin1_to_utf8(secret);
    let mut key = vec![0u8; (bits / 8) as usize];
    pbkdf2::pbkdf2::<Hmac<Sha1>>(&password, salt, iterations, &mut key)
        .map_err(|_| FailReason::Malformed)?;
    Ok(key)
}

/// The bytes of `secret` read as ISO-8859-1 and written as UTF-8, as
/// Java's PBKDF2 key spec does with CNRI's `new String(secret, "ISO-8859-1")`
/// (ASCII unchanged; each byte >= 0x80 becomes two bytes).
pub fn latin1_to_utf8(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() * 2);
    for &b in secret {
        if b < 0x80 {
            out.push(b);
        } else {
            out.push(0xc0 | (b >> 6));
            out.push(0x80 | (b & 0x3f));
        }
    }
    out
}

/// Verifies an HS_SECKEY answer against the secret (the HS_SECKEY value
/// data, used byte for byte), the nonce and the raw request digest.
/// `legacy`: the challenge was below 2.1 (bare MD5 answer).
pub fn verify_seckey(
    answer: &[u8],
    secret: &[u8],
    nonce: &[u8],
    digest: &[u8],
    legacy: bool,
    policy: &VerifyPolicy,
) -> Result<(), FailReason> {
    let (alg, mac) = SecretKeyAnswer::parse(answer, legacy)?;
    let expected = alg.mac(secret, nonce, digest, policy)?;
    if bool::from(expected.as_slice().ct_eq(mac)) {
        Ok(())
    } else {
        Err(FailReason::Mismatch)
    }
}

/// The hash of an HS_PUBKEY answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureHash {
    Md5,
    Sha1,
    Sha256,
}

impl SignatureHash {
    /// `SHA-256`/`SHA256`, `SHA1`/`SHA-1`, `MD5` (ASCII case-insensitive)
    /// or the bytes 03 / 02 / 01.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        if name == [1] || name.eq_ignore_ascii_case(b"MD5") {
            return Some(Self::Md5);
        }
        Some(match HashAlg::from_name(name)? {
            HashAlg::Sha1 => Self::Sha1,
            HashAlg::Sha256 => Self::Sha256,
        })
    }
}

/// Verifies an HS_PUBKEY answer (hash name, signature) against the
/// HS_PUBKEY value data (`RSA_PUB_KEY` or `DSA_PUB_KEY`), over nonce ||
/// digest. A key that does not decode counts as not verifying
/// ([`FailReason::Mismatch`]).
pub fn verify_pubkey(
    answer: &[u8],
    key_data: &[u8],
    nonce: &[u8],
    digest: &[u8],
    policy: &VerifyPolicy,
) -> Result<(), FailReason> {
    let mut r = Reader::new(answer);
    let hash = name(&mut r, "hash").map_err(|_| FailReason::Malformed)?;
    let signature = r.bytes("signature").map_err(|_| FailReason::Malformed)?;
    let hash = SignatureHash::from_name(hash).ok_or(FailReason::UnsupportedAlgorithm)?;
    let Ok(key) = PublicKey::decode(key_data) else {
        return Err(FailReason::Mismatch);
    };
    let ok = match hash {
        SignatureHash::Sha1 => key.verify_parts(HashAlg::Sha1, &[nonce, digest], signature),
        SignatureHash::Sha256 => key.verify_parts(HashAlg::Sha256, &[nonce, digest], signature),
        SignatureHash::Md5 => {
            if !policy.allow_md5 {
                return Err(FailReason::Refused);
            }
            let mut d = Md5::new();
            d.update(nonce);
            d.update(digest);
            let h = d.finalize();
            match &key {
                PublicKey::Rsa(k) => k
                    .verify(rsa::Pkcs1v15Sign::new::<Md5>(), &h[..], signature)
                    .is_ok(),
                PublicKey::Dsa(k) => dsa::Signature::try_from(signature)
                    .is_ok_and(|sig| k.verify_prehash(&h[..], &sig).is_ok()),
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(FailReason::Mismatch)
    }
}

/// An HS_PUBKEY answer signed with `key` (client side and tests): hash
/// name (`SHA-256` or `SHA1`) and signature over nonce || digest.
pub fn pubkey_answer(
    key: &ServerKey,
    hash: HashAlg,
    nonce: &[u8],
    digest: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let signature = key.sign_parts(hash, &[nonce, digest])?;
    let mut out = Vec::with_capacity(signature.len() + 20);
    put_bytes(&mut out, hash.name().as_bytes());
    put_bytes(&mut out, &signature);
    Ok(out)
}

// ---------------------------------------------------------------------------
// VERIFY_RESPONSE (201).

/// The body of a VERIFY_RESPONSE request (a server asking the key
/// handle's home server to check an HS_SECKEY answer), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyRequest<'a> {
    pub key_handle: &'a str,
    pub key_index: u32,
    pub nonce: &'a [u8],
    /// The raw request digest.
    pub digest: &'a [u8],
    /// The client's HS_SECKEY answer verbatim.
    pub answer: &'a [u8],
}

impl<'a> VerifyRequest<'a> {
    /// Decodes the body: key handle (str), key index (int4), nonce (str),
    /// digest (str; or, RFC form, an algorithm byte 1/2/3 and the digest
    /// of that size: a first byte 0 means the length prefix), answer
    /// (str).
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let key_handle = key_handle(&mut r)?;
        let key_index = r.u32("key index")?;
        let nonce = field(&mut r, "nonce")?;
        let rest = r.input().get(r.position()..).unwrap_or_default();
        let digest = match rest.first() {
            Some(&alg @ 1..=3) => {
                r.u8("digest algorithm")?;
                let len = DigestAlgorithm::from_code(alg)
                    .map(DigestAlgorithm::digest_len)
                    .ok_or(DecodeError::Malformed("digest algorithm"))?;
                r.take(len, "request digest")?
            }
            _ => field(&mut r, "request digest")?,
        };
        let answer = r.bytes("answer")?;
        Ok(Self {
            key_handle,
            key_index,
            nonce,
            digest,
            answer,
        })
    }

    /// Appends the body as CNRI writes it (digest length-prefixed).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.key_handle.as_bytes());
        put_u32(out, self.key_index);
        put_bytes(out, self.nonce);
        put_bytes(out, self.digest);
        put_bytes(out, self.answer);
    }
}

/// Writes the answer to a VERIFY_RESPONSE: SUCCESS, body (after the RD
/// digest) one byte, 1 = valid, 0 = not. The asking server trusts it only
/// when signed: sign it with [`crate::certify::sign_response`] (the
/// request sets CT). Returns the whole length.
pub fn encode_verify_result(out: &mut Vec<u8>, ctx: &ResponseContext, valid: bool) -> usize {
    let mut b = ResponseBuilder::start(out, ctx, crate::opcode::VERIFY_RESPONSE, code::SUCCESS);
    b.buffer().push(u8::from(valid));
    b.finish()
}

/// Reads the result byte of a VERIFY_RESPONSE answer body (after the RD
/// digest).
pub fn decode_verify_result(body: &[u8]) -> Result<bool, DecodeError> {
    match body.first() {
        Some(&b) => Ok(b == 1),
        None => Err(DecodeError::Truncated("verification result")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const NONCE: [u8; 16] = *b"NONCE-0123456789";

    fn challenge(version: (u8, u8)) -> Challenge {
        let digest = Digest::for_version(version.0, version.1, b"header and body");
        Challenge::from_parts(7, NONCE, digest, version, 1000, CHALLENGE_TTL_SECS)
    }

    #[test]
    fn every_seckey_algorithm_round_trips() {
        let policy = VerifyPolicy::default();
        let c = challenge((2, 11));
        let d = c.digest.as_bytes();
        for alg in [
            SecretKeyAnswer::Md5,
            SecretKeyAnswer::Sha1,
            SecretKeyAnswer::Sha256,
            SecretKeyAnswer::HmacSha1,
            SecretKeyAnswer::HmacSha256,
            SecretKeyAnswer::Pbkdf2HmacSha1 {
                salt: b"salt",
                iterations: 10,
                bits: 160,
            },
        ] {
            let answer = alg.compute(b"s3cret", &NONCE, d, &policy).unwrap();
            assert_eq!(
                verify_seckey(&answer, b"s3cret", &NONCE, d, false, &policy),
                Ok(())
            );
            assert_eq!(
                verify_seckey(&answer, b"wrong", &NONCE, d, false, &policy),
                Err(FailReason::Mismatch)
            );
            assert_eq!(
                verify_seckey(&answer, b"s3cret", b"other nonce", d, false, &policy),
                Err(FailReason::Mismatch)
            );
            for cut in 1..answer.len() {
                assert!(
                    verify_seckey(&answer[..cut], b"s3cret", &NONCE, d, false, &policy).is_err()
                );
            }
        }
        assert_eq!(
            verify_seckey(&[], b"k", &NONCE, d, false, &policy),
            Err(FailReason::Malformed)
        );
        assert_eq!(
            verify_seckey(&[0x99, 1, 2], b"k", &NONCE, d, false, &policy),
            Err(FailReason::UnsupportedAlgorithm)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bodies_and_answers_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let _ = ChallengeAnswer::decode(&bytes);
            let _ = VerifyRequest::decode(&bytes);
            let _ = ChallengeBody::decode(&bytes, true);
            let _ = ChallengeBody::decode(&bytes, false);
            let policy = VerifyPolicy { max_pbkdf2_iterations: 100, ..VerifyPolicy::default() };
            let _ = verify_seckey(&bytes, b"k", &NONCE, &[0; 32], false, &policy);
            let _ = verify_pubkey(&bytes, &bytes, &NONCE, &[0; 32], &policy);
            let _ = crate::admin::HsAdmin::decode(&bytes);
            let _ = crate::admin::decode_vlist(&bytes);
            for op in 100..=105 {
                let _ = crate::admin::AdminRequest::decode(op, &bytes);
            }
            let _ = crate::session::SessionSetupRequest::decode(&bytes);
            let _ = crate::session::DhPublicKey::decode(&bytes);
        }
    }

    #[test]
    fn pbkdf2_parameters_are_capped() {
        let policy = VerifyPolicy::default();
        let d = [0u8; 32];
        for (iterations, bits) in [
            (0, 160),
            (MAX_PBKDF2_ITERATIONS + 1, 160),
            (10, 0),
            (10, 161),
            (10, 4096),
        ] {
            let alg = SecretKeyAnswer::Pbkdf2HmacSha1 {
                salt: b"s",
                iterations,
                bits,
            };
            assert_eq!(alg.mac(b"k", &NONCE, &d, &policy), Err(FailReason::Refused));
        }
        // A hostile answer asking for 2^31 iterations is refused before any work.
        let mut answer = vec![seckey_code::PBKDF2_HMAC_SHA1];
        put_bytes(&mut answer, b"salt");
        put_u32(&mut answer, 0x8000_0000);
        put_u32(&mut answer, 160);
        put_bytes(&mut answer, &[0; 20]);
        assert_eq!(
            verify_seckey(&answer, b"k", &NONCE, &d, false, &policy),
            Err(FailReason::Refused)
        );
        answer.push(0);
        assert_eq!(
            verify_seckey(&answer, b"k", &NONCE, &d, false, &policy),
            Err(FailReason::Mismatch),
            "trailing bytes after the MAC"
        );
    }

    #[test]
    fn md5_follows_policy() {
        let strict = VerifyPolicy {
            allow_md5: false,
            ..VerifyPolicy::default()
        };
        let d = [0u8; 16];
        let answer = SecretKeyAnswer::LegacyMd5
            .compute(b"k", &NONCE, &d, &VerifyPolicy::default())
            .unwrap();
        assert_eq!(answer.len(), 16);
        assert_eq!(
            verify_seckey(&answer, b"k", &NONCE, &d, true, &VerifyPolicy::default()),
            Ok(())
        );
        assert_eq!(
            verify_seckey(&answer, b"k", &NONCE, &d, true, &strict),
            Err(FailReason::Refused)
        );
    }

    #[test]
    fn latin1_secrets_are_reencoded() {
        assert_eq!(latin1_to_utf8(b"abc"), b"abc");
        assert_eq!(
            latin1_to_utf8(&[0x73, 0xe9, 0x33]),
            [0x73, 0xc3, 0xa9, 0x33]
        );
        assert_eq!(latin1_to_utf8(&[0x80, 0xff]), [0xc2, 0x80, 0xc3, 0xbf]);
    }

    #[test]
    fn challenges_are_one_shot_and_expire() {
        let mut c = challenge((2, 11));
        assert!(!c.is_expired(1059));
        assert!(c.is_expired(1060));
        assert_eq!(c.clone().redeem(1060), Err(ChallengeError::Expired));
        assert_eq!(c.redeem(1001), Ok(()));
        assert!(c.is_used());
        assert_eq!(c.redeem(1001), Err(ChallengeError::Used));
        assert_eq!(ChallengeError::Used.response_code(), code::AUTHEN_TIMEOUT);
        assert_eq!(
            ChallengeError::Unknown.response_code(),
            code::SESSION_TIMEOUT
        );

        let mut table = PendingChallenges::new(2);
        table.insert(challenge((2, 11)), "a", 1000).unwrap();
        let mut second = challenge((2, 11));
        second.session_id = 8;
        table.insert(second.clone(), "b", 1000).unwrap();
        let mut third = challenge((2, 11));
        third.session_id = 9;
        assert_eq!(table.insert(third.clone(), "c", 1000), Err(TableFull));
        // Once the others expire, there is room again.
        assert_eq!(table.insert(third, "c", 2000), Ok(()));
        assert_eq!(table.len(), 1);
        assert_eq!(table.take(9, 1000).map(|(_, t)| t), Ok("c"));
        assert_eq!(table.take(9, 1000).err(), Some(ChallengeError::Unknown));
        table.insert(second, "b", 1000).unwrap();
        assert_eq!(table.take(8, 5000).err(), Some(ChallengeError::Expired));
        assert!(table.is_empty());
    }

    #[test]
    fn answers_round_trip_and_select_keys() {
        let policy = VerifyPolicy::default();
        let c = challenge((2, 11));
        let mac = SecretKeyAnswer::HmacSha256
            .compute(b"s3cret", &c.nonce, c.digest.as_bytes(), &policy)
            .unwrap();
        let answer = ChallengeAnswer {
            auth_type: AuthType::SecretKey,
            key_handle: "0.NA/88",
            key_index: 0,
            answer: &mac,
        };
        let mut body = Vec::new();
        answer.encode_body(&mut body);
        assert_eq!(ChallengeAnswer::decode(&body).unwrap(), answer);
        for cut in 0..body.len() {
            assert!(ChallengeAnswer::decode(&body[..cut]).is_err());
        }
        let keys = [
            Value::new(5, "HS_SECKEY", b"wrong".to_vec()),
            Value::new(3, "URL", b"s3cret".to_vec()),
            Value::new(9, "HS_SECKEY", b"s3cret".to_vec()),
        ];
        assert_eq!(
            verify_answer(&answer, &c, keys.iter().map(KeyValue::from), &policy),
            Verification::Verified { key_index: 9 }
        );
        let at = |key_index| ChallengeAnswer {
            key_index,
            ..answer
        };
        assert_eq!(
            verify_answer(&at(9), &c, keys.iter().map(KeyValue::from), &policy),
            Verification::Verified { key_index: 9 }
        );
        assert_eq!(
            verify_answer(&at(5), &c, keys.iter().map(KeyValue::from), &policy),
            Verification::Failed(FailReason::Mismatch)
        );
        assert_eq!(
            verify_answer(&at(3), &c, keys.iter().map(KeyValue::from), &policy),
            Verification::Failed(FailReason::NoKey)
        );
        assert_eq!(
            verify_answer(&at(4), &c, keys.iter().map(KeyValue::from), &policy),
            Verification::Failed(FailReason::NoKey)
        );
        let other = ChallengeAnswer {
            auth_type: AuthType::Other(b"HS_OTHER"),
            ..answer
        };
        let v = verify_answer(&other, &c, keys.iter().map(KeyValue::from), &policy);
        assert_eq!(v, Verification::Failed(FailReason::UnknownAuthType));
        assert_eq!(
            FailReason::UnknownAuthType.response_code(),
            code::INVALID_CREDENTIAL
        );
        assert_eq!(FailReason::Malformed.response_code(), code::AUTHEN_ERROR);
        assert_eq!(
            FailReason::Mismatch.response_code(),
            code::AUTHENTICATION_FAILED
        );
        assert_eq!(
            verify_answer(&answer, &c, std::iter::empty(), &policy),
            Verification::Failed(FailReason::NoKey)
        );
    }

    #[test]
    fn pubkey_answers_verify() {
        let key = ServerKey::generate_rsa(1024).unwrap();
        let data = key.public_key().encode();
        let policy = VerifyPolicy::default();
        for hash in [HashAlg::Sha1, HashAlg::Sha256] {
            let answer = pubkey_answer(&key, hash, &NONCE, b"digest").unwrap();
            assert_eq!(
                verify_pubkey(&answer, &data, &NONCE, b"digest", &policy),
                Ok(())
            );
            assert_eq!(
                verify_pubkey(&answer, &data, &NONCE, b"digesT", &policy),
                Err(FailReason::Mismatch)
            );
            assert_eq!(
                verify_pubkey(&answer, b"garbage", &NONCE, b"digest", &policy),
                Err(FailReason::Mismatch)
            );
            assert_eq!(
                verify_pubkey(
                    &answer[..answer.len() - 1],
                    &data,
                    &NONCE,
                    b"digest",
                    &policy
                ),
                Err(FailReason::Malformed)
            );
        }
        let mut md5 = Vec::new();
        put_bytes(&mut md5, b"MD5");
        put_bytes(&mut md5, &[0; 128]);
        assert_eq!(
            verify_pubkey(&md5, &data, &NONCE, b"d", &policy),
            Err(FailReason::Mismatch)
        );
        let strict = VerifyPolicy {
            allow_md5: false,
            ..policy
        };
        assert_eq!(
            verify_pubkey(&md5, &data, &NONCE, b"d", &strict),
            Err(FailReason::Refused)
        );
        let mut other = Vec::new();
        put_bytes(&mut other, b"SHA-512");
        put_bytes(&mut other, &[0; 128]);
        assert_eq!(
            verify_pubkey(&other, &data, &NONCE, b"d", &policy),
            Err(FailReason::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn challenge_bodies_decode_in_both_layouts() {
        let d = Digest::for_version(2, 11, b"x");
        let mut body = Vec::new();
        d.write(&mut body);
        put_bytes(&mut body, &NONCE);
        let b = ChallengeBody::decode(&body, true).unwrap();
        assert_eq!((b.nonce, b.digest), (&NONCE[..], d));
        let legacy = Digest::for_version(2, 0, b"x");
        let mut body = Vec::new();
        put_bytes(&mut body, &NONCE);
        put_bytes(&mut body, legacy.as_bytes());
        let b = ChallengeBody::decode(&body, false).unwrap();
        assert_eq!((b.nonce, b.digest), (&NONCE[..], legacy));
        assert!(ChallengeBody::decode(&body[..10], false).is_err());
        assert!(random_nonce().unwrap() != random_nonce().unwrap());
    }

    #[test]
    fn verify_requests_read_both_digest_forms() {
        let req = VerifyRequest {
            key_handle: "0.NA/88",
            key_index: 300,
            nonce: &NONCE,
            digest: &[7; 32],
            answer: b"answer",
        };
        let mut body = Vec::new();
        req.encode_body(&mut body);
        assert_eq!(VerifyRequest::decode(&body).unwrap(), req);
        let mut rfc = Vec::new();
        put_bytes(&mut rfc, b"0.NA/88");
        put_u32(&mut rfc, 300);
        put_bytes(&mut rfc, &NONCE);
        rfc.push(3);
        rfc.extend_from_slice(&[7; 32]);
        put_bytes(&mut rfc, b"answer");
        assert_eq!(VerifyRequest::decode(&rfc).unwrap(), req);
        for cut in 0..body.len() {
            assert!(VerifyRequest::decode(&body[..cut]).is_err());
        }
        assert_eq!(decode_verify_result(&[1]), Ok(true));
        assert_eq!(decode_verify_result(&[0]), Ok(false));
        assert!(decode_verify_result(&[]).is_err());
    }
}
