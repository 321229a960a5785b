//! The client side: writing requests and decoding responses.
//!
//! Decoding a response allocates (owned handle, values and strings), but
//! every count and length is bounded against the bytes that remain first.

use crate::message::split;
use crate::{
    DecodeError, Digest, ENVELOPE_LEN, Envelope, HEADER_LEN, Header, VERSION_MAJOR, VERSION_MINOR,
    code, flags, opcode,
};
use idnode_core::wire::{MIN_VALUE_LEN, Reader, decode_value, put_bytes, put_u32};
use idnode_core::{Value, limits};

/// The per-request fields of a request message. The protocol version and
/// recursion count are in [`RequestOptions`] (CNRI 9.x's defaults unless
/// [`encode_resolution_request_with`] is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestParams<'a> {
    pub request_id: u32,
    pub session_id: u32,
    /// Op flags; CNRI's client sends REC | CA | PO.
    pub op_flags: u32,
    /// Serial of the site information used; -1 when unknown.
    pub site_serial: i16,
    /// Unix seconds after which the request is no longer valid.
    pub expiration: u32,
    pub handle: &'a [u8],
    /// Requested indexes (empty: all).
    pub indexes: &'a [u32],
    /// Requested types (empty: all); a type ending in `.` names a family.
    pub types: &'a [&'a [u8]],
}

/// The less common fields of a request. [`Default`] is what CNRI's 9.x
/// client sends through a site: version 2.11 suggesting 2.11, recursion 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    pub major: u8,
    pub minor: u8,
    pub suggested_major: u8,
    pub suggested_minor: u8,
    /// How many servers already forwarded this request (a recursive node
    /// adds one when it asks on a client's behalf).
    pub recursion: u8,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            major: VERSION_MAJOR,
            minor: VERSION_MINOR,
            suggested_major: VERSION_MAJOR,
            suggested_minor: VERSION_MINOR,
            recursion: 0,
        }
    }
}

/// Clears `out` and writes a request with opcode `opcode` and `body`, and
/// an empty credential. Returns the whole length.
pub fn encode_request(
    out: &mut Vec<u8>,
    params: &RequestParams<'_>,
    options: &RequestOptions,
    opcode: u32,
    body: &[u8],
) -> usize {
    out.clear();
    out.extend_from_slice(&[0; ENVELOPE_LEN + HEADER_LEN]);
    out.extend_from_slice(body);
    finish_request(out, params, options, opcode)
}

/// Clears `out` and writes a RESOLUTION request for `params.handle` with
/// its index and type lists, as version 2.11. Returns the whole length.
pub fn encode_resolution_request(out: &mut Vec<u8>, params: &RequestParams<'_>) -> usize {
    encode_resolution_request_with(out, params, &RequestOptions::default())
}

/// [`encode_resolution_request`] with a chosen version and recursion count.
pub fn encode_resolution_request_with(
    out: &mut Vec<u8>,
    params: &RequestParams<'_>,
    options: &RequestOptions,
) -> usize {
    out.clear();
    out.extend_from_slice(&[0; ENVELOPE_LEN + HEADER_LEN]);
    put_bytes(out, params.handle);
    put_u32(out, params.indexes.len() as u32);
    for index in params.indexes {
        put_u32(out, *index);
    }
    put_u32(out, params.types.len() as u32);
    for kind in params.types {
        put_bytes(out, kind);
    }
    finish_request(out, params, options, opcode::RESOLUTION)
}

/// `out` holds room for the envelope and header, then the body: appends the
/// empty credential and writes the envelope and header over the room.
fn finish_request(
    out: &mut Vec<u8>,
    params: &RequestParams<'_>,
    options: &RequestOptions,
    opcode: u32,
) -> usize {
    let body_len = out.len() - ENVELOPE_LEN - HEADER_LEN;
    put_u32(out, 0);
    let envelope = Envelope {
        major: options.major,
        minor: options.minor,
        flags: 0,
        suggested_major: options.suggested_major,
        suggested_minor: options.suggested_minor,
        session_id: params.session_id,
        request_id: params.request_id,
        sequence: 0,
        message_length: (out.len() - ENVELOPE_LEN) as u32,
    };
    let header = Header {
        opcode,
        response_code: code::RESERVED,
        op_flags: params.op_flags,
        site_serial: params.site_serial,
        recursion: options.recursion,
        expiration: params.expiration,
        body_len: body_len as u32,
    };
    out[..ENVELOPE_LEN].copy_from_slice(&envelope.to_bytes());
    out[ENVELOPE_LEN..ENVELOPE_LEN + HEADER_LEN].copy_from_slice(&header.to_bytes());
    out.len()
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub envelope: Envelope,
    pub header: Header,
    /// The request digest, present when the header has RD.
    pub digest: Option<Digest>,
    pub body: ResponseBody,
}

/// The body of a response, by response code and opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseBody {
    /// SUCCESS to RESOLUTION.
    Resolution { handle: String, values: Vec<Value> },
    /// SERVICE_REFERRAL or PREFIX_REFERRAL: where to ask instead.
    Referral { handle: String, values: Vec<Value> },
    /// An error code and its message (lossy UTF-8).
    Error { message: String },
    /// Anything else: the body bytes after the digest.
    Other(Vec<u8>),
}

/// Decodes one complete response message (envelope included). Bytes after
/// the fields a body kind defines are ignored, as CNRI ignores them.
pub fn decode_response(message: &[u8]) -> Result<Response, DecodeError> {
    let parts = split(message)?;
    let header = parts.header;
    if header.response_code == code::RESERVED {
        return Err(DecodeError::Malformed("response: response code is 0"));
    }
    let mut r = Reader::new(parts.body);
    let digest = if header.op_flags & flags::RD != 0 {
        Some(Digest::read(&mut r)?)
    } else {
        None
    };
    let body = match header.response_code {
        code::SUCCESS if header.opcode == opcode::RESOLUTION => {
            let (handle, values) = handle_and_values(&mut r, false)?;
            ResponseBody::Resolution { handle, values }
        }
        c if code::is_referral(c) => {
            let (handle, values) = handle_and_values(&mut r, true)?;
            ResponseBody::Referral { handle, values }
        }
        c if code::has_error_message(c) => {
            // CNRI (2.0 and older peers) may omit the message entirely.
            let message = if r.remaining() == 0 {
                &[][..]
            } else {
                r.bytes("error message")?
            };
            ResponseBody::Error {
                message: String::from_utf8_lossy(message).into_owned(),
            }
        }
        _ => ResponseBody::Other(r.take(r.remaining(), "body")?.to_vec()),
    };
    Ok(Response {
        envelope: parts.envelope,
        header,
        digest,
        body,
    })
}

/// Reads a handle string and a value list; a referral may end after the
/// handle (CNRI writes no list when it has no values).
fn handle_and_values(
    r: &mut Reader<'_>,
    list_optional: bool,
) -> Result<(String, Vec<Value>), DecodeError> {
    let handle = r.bytes("handle")?;
    if handle.len() > limits::MAX_IDENTIFIER_BYTES {
        return Err(DecodeError::TooLong("handle", handle.len() as u32));
    }
    let handle = std::str::from_utf8(handle)
        .map_err(|_| DecodeError::Malformed("handle (not UTF-8)"))?
        .to_owned();
    if list_optional && r.remaining() == 0 {
        return Ok((handle, Vec::new()));
    }
    let count = r.count("value count", MIN_VALUE_LEN)?;
    if count > limits::MAX_VALUES {
        return Err(DecodeError::TooLong("value count", count as u32));
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(decode_value(r)?);
    }
    Ok((handle, values))
}
