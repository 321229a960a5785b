//! The Handle protocol (RFC 3652, DONA's DO-IRP) as a sans-IO codec.
//!
//! This crate owns the wire form of Handle messages: the 20-byte envelope,
//! the 24-byte header, resolution requests and responses, error responses,
//! the request digest (RD flag), the split of a message into UDP datagrams
//! and their reassembly, and the completeness check of a TCP frame. It also
//! owns site records ([`site`]: HS_SITE / HS_SITE.PREFIX data), server keys
//! ([`keys`]: the HS_PUBKEY encoding of the public key a site record
//! publishes, RSA and DSA signing and verification, PKCS#8 private keys)
//! and certified answers ([`certify`]: the HS_SIGNED credential, the bytes
//! a signature covers by protocol version, signing a finished response and
//! verifying one). Administration has three modules: [`admin`] (the bodies
//! of CREATE_HANDLE to LIST_HANDLES and of their results, HS_ADMIN and
//! HS_VLIST data, and the authorization rule: which record's HS_ADMIN
//! values govern an operation and whether they admit an identity),
//! [`auth`] (the 402 challenge, the CHALLENGE_RESPONSE answer and its
//! verification against HS_SECKEY or HS_PUBKEY values, the pending
//! challenge table, VERIFY_RESPONSE) and [`session`] (SESSION_SETUP with
//! Diffie-Hellman, the session key, HS_MAC). The facts it follows are in
//! `docs/handle-protocol.md`
//! and the hierarchy and authentication specs; where those are silent, it
//! follows what CNRI's Handle.Net 9.x library (`hdllib`) does.
//!
//! It must not depend on anything that does I/O or keeps time: no tokio, no
//! sockets, no clock (callers pass `now` in unix seconds), no store. Values
//! and their wire form come from `idnode-core` ([`idnode_core::wire`]); this
//! crate only frames them. The one exception is randomness: generating a
//! server key, a challenge nonce ([`auth::random_nonce`]) or a DH private
//! value ([`session::dh_private`]) reads the OS RNG.
//!
//! # Performance-critical path
//! A UDP or TCP resolution runs [`frame_len`] (TCP), [`decode_request`],
//! [`ResolutionQuery::decode`], [`ResolutionQuery::wants`],
//! [`ResponseContext::for_request`] and [`encode_resolution_response`] (or
//! [`encode_error_response`]), then [`for_each_datagram`] (UDP). None of these
//! allocate: requests are borrowed views over the received bytes, the request
//! digest is kept inline, and responses are written into a caller-owned
//! buffer whose capacity is reused. Multi-packet reassembly ([`Reassembly`])
//! and the client side ([`decode_response`]) allocate, bounded by the bytes
//! actually received.
//!
//! Certified answers (requests with CT) add one private-key operation,
//! [`certify::sign_response`], on the finished message; it hashes the
//! signed bytes in place and only allocates the signature. Unsigned answers
//! do not touch [`keys`] or [`certify`].
//!
//! # Hostile input
//! Every decoder bounds each length and count against the bytes that remain
//! before slicing or allocating, never panics, and fails with a small `Copy`
//! [`DecodeError`]. Public keys from the network ([`keys::PublicKey::decode`])
//! are bounded to 8192-bit integers before any big-number allocation.
//! Challenge answers are compared in constant time, and the work an answer
//! may ask for (PBKDF2 iterations, key length) is capped
//! ([`auth::VerifyPolicy`]); HS_VLIST group searches are bounded
//! ([`admin::MAX_GROUP_LOOKUPS`]).

pub mod admin;
pub mod auth;
pub mod certify;
mod client;
mod digest;
mod envelope;
mod error;
pub mod keys;
mod message;
pub mod quic;
mod resolution;
mod response;
pub mod session;
pub mod site;
mod udp;

pub use client::{
    RequestOptions, RequestParams, Response, ResponseBody, decode_response, encode_request,
    encode_resolution_request, encode_resolution_request_with,
};
pub use digest::{Digest, DigestAlgorithm};
pub use envelope::{Envelope, Header, frame_len};
pub use error::DecodeError;
pub use keys::{HashAlg, KeyKind, PublicKey, ServerKey};
pub use message::{Request, decode_request};
pub use resolution::{Indexes, ResolutionQuery, Types};
pub use response::{
    EXPIRATION_SECS, ResponseBuilder, ResponseContext, encode_error_response,
    encode_resolution_response, encode_values_response, response_version,
};
pub use site::{
    HashOption, Interface, InterfaceKind, InterfaceProtocol, ServerInfo, SiteInfo, server_index,
};
pub use udp::{Reassembly, datagram, datagram_count, for_each_datagram, is_fragment};

/// Protocol major version this node speaks.
pub const VERSION_MAJOR: u8 = 2;
/// Protocol minor version this node speaks (CNRI Handle.Net 9.x: 2.11).
pub const VERSION_MINOR: u8 = 11;
/// Lowest minor version accepted in a request envelope (with major 2).
pub const MIN_VERSION_MINOR: u8 = 1;
/// Size of the message envelope.
pub const ENVELOPE_LEN: usize = 20;
/// Size of the message header.
pub const HEADER_LEN: usize = 24;
/// Largest UDP datagram (envelope included).
pub const MAX_DATAGRAM: usize = 512;
/// Payload bytes after the envelope in one UDP datagram.
pub const UDP_PAYLOAD: usize = MAX_DATAGRAM - ENVELOPE_LEN;
/// Largest message length (the envelope's `message_length`, which excludes
/// the envelope itself).
pub const MAX_MESSAGE_LEN: usize = 262_144;

/// Operation codes (header `opcode`).
pub mod opcode {
    pub const RESERVED: u32 = 0;
    pub const RESOLUTION: u32 = 1;
    pub const GET_SITE_INFO: u32 = 2;
    pub const CREATE_HANDLE: u32 = 100;
    pub const DELETE_HANDLE: u32 = 101;
    pub const ADD_VALUE: u32 = 102;
    pub const REMOVE_VALUE: u32 = 103;
    pub const MODIFY_VALUE: u32 = 104;
    pub const LIST_HANDLES: u32 = 105;
    /// A client's answer to an authentication challenge.
    pub const CHALLENGE_RESPONSE: u32 = 200;
    /// A server asking another to verify a challenge answer.
    pub const VERIFY_RESPONSE: u32 = 201;
    pub const HOME_NA: u32 = 300;
    pub const UNHOME_NA: u32 = 301;
    pub const LIST_HOMED_NAS: u32 = 302;
    pub const SESSION_SETUP: u32 = 400;
    pub const SESSION_TERMINATE: u32 = 401;
    pub const SESSION_EXCHANGE_KEY: u32 = 402;
    pub const GET_NEXT_TXN_ID: u32 = 1000;
    pub const RETRIEVE_TXN_LOG: u32 = 1001;
    pub const DUMP_HANDLES: u32 = 1002;
    pub const BACKUP_SERVER: u32 = 1003;
    /// Login, an extension seen in the CAICT SDKs.
    pub const LOGIN: u32 = 2001;
}

/// Response codes (header `response_code`; 0 in a request).
pub mod code {
    pub const RESERVED: u32 = 0;
    pub const SUCCESS: u32 = 1;
    pub const ERROR: u32 = 2;
    pub const SERVER_TOO_BUSY: u32 = 3;
    pub const PROTOCOL_ERROR: u32 = 4;
    pub const OPERATION_NOT_SUPPORTED: u32 = 5;
    pub const RECURSION_COUNT_TOO_HIGH: u32 = 6;
    pub const SERVER_BACKUP: u32 = 7;
    pub const HANDLE_NOT_FOUND: u32 = 100;
    pub const HANDLE_ALREADY_EXISTS: u32 = 101;
    pub const INVALID_HANDLE: u32 = 102;
    pub const VALUES_NOT_FOUND: u32 = 200;
    pub const VALUE_ALREADY_EXISTS: u32 = 201;
    pub const INVALID_VALUE: u32 = 202;
    pub const OUT_OF_DATE_SITE_INFO: u32 = 300;
    pub const SERVER_NOT_RESP: u32 = 301;
    pub const SERVICE_REFERRAL: u32 = 302;
    pub const PREFIX_REFERRAL: u32 = 303;
    pub const INVALID_ADMIN: u32 = 400;
    pub const INSUFFICIENT_PERMISSIONS: u32 = 401;
    pub const AUTHENTICATION_NEEDED: u32 = 402;
    pub const AUTHENTICATION_FAILED: u32 = 403;
    pub const INVALID_CREDENTIAL: u32 = 404;
    pub const AUTHEN_TIMEOUT: u32 = 405;
    pub const AUTHEN_ERROR: u32 = 406;
    pub const SESSION_TIMEOUT: u32 = 500;
    pub const SESSION_FAILED: u32 = 501;
    pub const INVALID_SESSION_KEY: u32 = 502;
    pub const NEED_RSAKEY_FOR_SESSIONEXCHANGE: u32 = 503;
    pub const INVALID_SESSIONSETUP_REQUEST: u32 = 504;
    pub const SESSION_MESSAGE_REJECTED: u32 = 505;
    /// CAICT SDK extension: daily request limit reached.
    pub const DAILY_REQUEST_LIMIT: u32 = 603;
    /// CAICT SDK extension: registration count limit reached.
    pub const REGISTRATION_COUNT_LIMIT: u32 = 604;
    /// CAICT SDK extension: prefix limit reached.
    pub const PREFIX_LIMIT: u32 = 605;

    /// Whether a response with this code carries an error message string
    /// as its body (after the request digest, if any).
    pub fn has_error_message(code: u32) -> bool {
        matches!(
            code,
            ERROR..=SERVER_BACKUP
                | HANDLE_NOT_FOUND..=INVALID_HANDLE
                | VALUES_NOT_FOUND..=INVALID_VALUE
                | OUT_OF_DATE_SITE_INFO
                | SERVER_NOT_RESP
                | INVALID_ADMIN
                | INSUFFICIENT_PERMISSIONS
                | AUTHENTICATION_FAILED..=AUTHEN_ERROR
                | SESSION_TIMEOUT..=SESSION_MESSAGE_REJECTED
                | DAILY_REQUEST_LIMIT..=PREFIX_LIMIT
        )
    }

    /// Whether a response with this code is a referral (handle, values).
    pub fn is_referral(code: u32) -> bool {
        matches!(code, SERVICE_REFERRAL | PREFIX_REFERRAL)
    }
}

/// Header op flags and envelope flag bits.
pub mod flags {
    /// Authoritative: answer from a primary, no cache.
    pub const AT: u32 = 0x8000_0000;
    /// Certify: sign the response.
    pub const CT: u32 = 0x4000_0000;
    /// Encrypt the response.
    pub const ENC: u32 = 0x2000_0000;
    /// Recursive: resolve on the client's behalf if not homed here.
    pub const REC: u32 = 0x1000_0000;
    /// Cache-certify: a cache should sign its responses.
    pub const CA: u32 = 0x0800_0000;
    /// Continuous: more messages follow this one.
    pub const CN: u32 = 0x0400_0000;
    /// Keep the connection open for more requests.
    pub const KC: u32 = 0x0200_0000;
    /// Public values only.
    pub const PO: u32 = 0x0100_0000;
    /// Return a digest of the request at the start of the response body.
    pub const RD: u32 = 0x0080_0000;
    /// Overwrite an existing handle or value.
    pub const OW: u32 = 0x0040_0000;
    /// Mint a new suffix (create).
    pub const MNS: u32 = 0x0020_0000;
    /// Do not refer: do not answer with a referral.
    pub const DNR: u32 = 0x0010_0000;

    /// Envelope byte 2: the message body is compressed.
    pub const COMPRESSED: u8 = 0x80;
    /// Envelope byte 2: the message body is encrypted.
    pub const ENCRYPTED: u8 = 0x40;
    /// Envelope byte 2: the message is split over several UDP datagrams.
    pub const TRUNCATED: u8 = 0x20;
    /// The envelope flag bits of byte 2 (the low 5 bits are the suggested
    /// major version).
    pub const ENVELOPE_MASK: u8 = COMPRESSED | ENCRYPTED | TRUNCATED;
}
