//! Writing responses into a caller-owned buffer.
//!
//! # What a response carries
//! - Envelope: the version from [`response_version`], suggested version
//!   2.11 (ours), the request's session and request ids, sequence 0, no
//!   envelope flags ([`crate::for_each_datagram`] sets TRUNCATED when it
//!   splits a message).
//! - Header: the request's opcode, the response code, the op flags below,
//!   the site serial from the context (-1 unless the caller sets its
//!   HS_SITE serial, which CNRI clients compare against the serial they
//!   hold), the request's recursion count, and an expiration
//!   [`EXPIRATION_SECS`] after `now` (CNRI's own default; its client
//!   rejects a response that has expired, so clocks may disagree by hours).
//! - Op flags, as CNRI's `AbstractResponse` sets them: the request's CT,
//!   ENC, CA, PO and DNR echoed (`takeValuesFrom`), REC always (CNRI's
//!   default, never cleared on a response), RD exactly when the body starts
//!   with a request digest (CNRI's reader looks for a digest only when RD is
//!   set). AT, which CNRI sets when the answering site is primary, and the
//!   site serial come from the server's own site record: the caller sets
//!   them with [`ResponseContext::with_site`]. CN (more messages follow) is
//!   left to the caller: `ctx.op_flags |= flags::CN`.
//! - Body: the request digest first when the request set RD, then the
//!   opcode's body; then a 4-byte zero credential length.
//! - Certified answers (CT in the request): the finished message is signed
//!   afterwards with [`crate::certify::sign_response`], which replaces the
//!   empty credential. Nothing here depends on CT.

use crate::{
    Digest, ENVELOPE_LEN, Envelope, HEADER_LEN, Header, MAX_MESSAGE_LEN, MIN_VERSION_MINOR,
    Request, VERSION_MAJOR, VERSION_MINOR, code, flags, opcode,
};
use idnode_core::wire::put_bytes;

/// How long a response stays valid after `now`: 12 hours, as CNRI.
pub const EXPIRATION_SECS: u32 = 12 * 60 * 60;

/// Request flags a response echoes.
const ECHOED_FLAGS: u32 = flags::CT | flags::ENC | flags::CA | flags::PO | flags::DNR;

/// The version a response to this envelope carries: the suggested version
/// (the envelope's own when the suggested bits are 0), capped at ours
/// (2.11). A suggestion below 2.1, which no client we accept makes, falls
/// back to the envelope version, so that a response is always a version
/// this crate decodes.
#[inline]
pub fn response_version(envelope: &Envelope) -> (u8, u8) {
    let suggested = envelope.suggested_version();
    if suggested > (VERSION_MAJOR, VERSION_MINOR) {
        (VERSION_MAJOR, VERSION_MINOR)
    } else if suggested < (VERSION_MAJOR, MIN_VERSION_MINOR) {
        (envelope.major, envelope.minor)
    } else {
        suggested
    }
}

/// Everything a response needs from its request, copied out so the request
/// bytes may be dropped. Fields are public so a caller can adjust them
/// (for example `op_flags |= flags::AT`, or `site_serial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    pub request_id: u32,
    pub session_id: u32,
    pub major: u8,
    pub minor: u8,
    /// Op flags of the response; RD is set or cleared at encoding to match
    /// `digest`.
    pub op_flags: u32,
    pub site_serial: i16,
    pub recursion: u8,
    /// Unix seconds; in the future.
    pub expiration: u32,
    /// The request digest, present when the request set RD.
    pub digest: Option<Digest>,
}

impl ResponseContext {
    /// The context of a response to `req` (see the module documentation).
    /// Computes the request digest when RD is set; does not allocate.
    #[inline]
    pub fn for_request(req: &Request<'_>, now: u32) -> Self {
        let (major, minor) = response_version(&req.envelope);
        let wants_digest = req.header.op_flags & flags::RD != 0;
        let digest = wants_digest.then(|| Digest::for_version(major, minor, req.digest_input));
        Self {
            request_id: req.envelope.request_id,
            session_id: req.envelope.session_id,
            major,
            minor,
            op_flags: (req.header.op_flags & ECHOED_FLAGS) | flags::REC,
            site_serial: -1,
            recursion: req.header.recursion,
            expiration: now.saturating_add(EXPIRATION_SECS),
            digest,
        }
    }

    /// Sets what comes from the answering server's own site record, as
    /// CNRI writes it: the site serial (its HS_SITE serial, whatever the
    /// request carried), and AT when the site is primary (primary-mask bit
    /// 0x80), whatever the request said. A mirror (`primary` false) leaves
    /// AT as it is; CNRI's mirrors echo the request's AT, which a caller
    /// gets with `ctx.op_flags |= req.header.op_flags & flags::AT`.
    #[inline]
    #[must_use]
    pub fn with_site(mut self, serial: u16, primary: bool) -> Self {
        self.site_serial = serial as i16;
        if primary {
            self.op_flags |= flags::AT;
        }
        self
    }

    /// A context for answering bytes that did not decode as a request, so
    /// the client learns why (PROTOCOL_ERROR). `None` when the envelope
    /// does not decode (not a Handle message: drop it) or when the message
    /// is a response (answering responses could loop between two nodes).
    pub fn for_undecodable(message: &[u8], now: u32) -> Option<Self> {
        let envelope = Envelope::decode(message).ok()?;
        if let Ok(header) = Header::decode(&message[ENVELOPE_LEN..])
            && header.response_code != code::RESERVED
        {
            return None;
        }
        let (major, minor) = response_version(&envelope);
        Some(Self {
            request_id: envelope.request_id,
            session_id: envelope.session_id,
            major,
            minor,
            op_flags: flags::REC,
            site_serial: -1,
            recursion: 0,
            expiration: now.saturating_add(EXPIRATION_SECS),
            digest: None,
        })
    }
}

/// Writes one response: envelope and header (lengths patched at
/// [`ResponseBuilder::finish`]), the request digest when the context has
/// one, then whatever body bytes the caller appends.
#[derive(Debug)]
pub struct ResponseBuilder<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseBuilder<'o> {
    /// Clears `out` (keeping its capacity) and writes the envelope, header
    /// and request digest.
    #[inline]
    pub fn start(
        out: &'o mut Vec<u8>,
        ctx: &ResponseContext,
        opcode: u32,
        response_code: u32,
    ) -> Self {
        out.clear();
        let envelope = Envelope {
            major: ctx.major,
            minor: ctx.minor,
            flags: 0,
            suggested_major: VERSION_MAJOR,
            suggested_minor: VERSION_MINOR,
            session_id: ctx.session_id,
            request_id: ctx.request_id,
            sequence: 0,
            message_length: 0,
        };
        let mut op_flags = ctx.op_flags & !flags::RD;
        if ctx.digest.is_some() {
            op_flags |= flags::RD;
        }
        let header = Header {
            opcode,
            response_code,
            op_flags,
            site_serial: ctx.site_serial,
            recursion: ctx.recursion,
            expiration: ctx.expiration,
            body_len: 0,
        };
        out.extend_from_slice(&envelope.to_bytes());
        out.extend_from_slice(&header.to_bytes());
        if let Some(digest) = &ctx.digest {
            digest.write(out);
        }
        Self { out }
    }

    /// The message so far (envelope, header, digest, body written so far),
    /// to append body bytes to, for example with
    /// [`idnode_core::wire::encode_value`]. Append only: what is already
    /// there must stay.
    #[inline]
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    #[inline]
    pub fn put_u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a length-prefixed byte string.
    #[inline]
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        put_bytes(self.out, bytes);
    }

    /// Body bytes written so far (digest included).
    #[inline]
    pub fn body_len(&self) -> usize {
        self.out.len() - ENVELOPE_LEN - HEADER_LEN
    }

    /// Appends the empty credential, patches the body and message lengths,
    /// and returns the whole length (envelope included). The caller keeps
    /// the message within [`MAX_MESSAGE_LEN`] (see [`fits`](Self::fits)).
    ///
    /// # Panics
    /// If the caller shortened [`buffer`](Self::buffer) below the header.
    #[inline]
    pub fn finish(self) -> usize {
        let body_len = self.body_len() as u32;
        self.out.extend_from_slice(&0u32.to_be_bytes());
        let message_length = (self.out.len() - ENVELOPE_LEN) as u32;
        self.out[16..20].copy_from_slice(&message_length.to_be_bytes());
        let at = ENVELOPE_LEN + 20;
        self.out[at..at + 4].copy_from_slice(&body_len.to_be_bytes());
        self.out.len()
    }

    /// Whether the message, once finished, is within [`MAX_MESSAGE_LEN`].
    #[inline]
    pub fn fits(&self) -> bool {
        self.out.len() + 4 - ENVELOPE_LEN <= MAX_MESSAGE_LEN
    }
}

/// Writes a response whose body is a handle and a list of values in wire
/// form (RESOLUTION success, and the referrals 302/303), into `out`.
///
/// `values` yields each value's raw wire bytes (`ValueView::raw`); the
/// count is written after them. Returns how many values were written. If
/// the answer would exceed [`MAX_MESSAGE_LEN`], `out` holds an ERROR
/// response instead (the count is still returned).
pub fn encode_values_response<'v>(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    opcode: u32,
    response_code: u32,
    handle: &[u8],
    values: impl IntoIterator<Item = &'v [u8]>,
) -> usize {
    let mut b = ResponseBuilder::start(out, ctx, opcode, response_code);
    b.put_bytes(handle);
    let count_at = b.buffer().len();
    b.put_u32(0);
    let mut count = 0usize;
    for raw in values {
        b.buffer().extend_from_slice(raw);
        count += 1;
    }
    let fits = b.fits();
    b.buffer()[count_at..count_at + 4].copy_from_slice(&(count as u32).to_be_bytes());
    b.finish();
    if !fits {
        encode_error_response(
            out,
            ctx,
            opcode,
            code::ERROR,
            "answer exceeds the maximum message length",
        );
    }
    count
}

/// Writes a successful RESOLUTION response (see [`encode_values_response`]).
pub fn encode_resolution_response<'v>(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    handle: &[u8],
    values: impl IntoIterator<Item = &'v [u8]>,
) -> usize {
    encode_values_response(out, ctx, opcode::RESOLUTION, code::SUCCESS, handle, values)
}

/// Writes an error response: the body is the request digest (if any) and
/// `message` as a length-prefixed UTF-8 string. Returns the whole length.
pub fn encode_error_response(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    opcode: u32,
    response_code: u32,
    message: &str,
) -> usize {
    let mut b = ResponseBuilder::start(out, ctx, opcode, response_code);
    b.put_bytes(message.as_bytes());
    b.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::{ResponseBody, decode_response};

    fn ctx() -> ResponseContext {
        ResponseContext {
            request_id: 9,
            session_id: 0,
            major: 2,
            minor: 11,
            op_flags: flags::REC,
            site_serial: 4,
            recursion: 0,
            expiration: 100,
            digest: Some(Digest::for_version(2, 11, b"request")),
        }
    }

    #[test]
    fn builder_writes_custom_bodies_after_the_digest() {
        let mut out = vec![1, 2, 3];
        let mut b = ResponseBuilder::start(&mut out, &ctx(), opcode::GET_SITE_INFO, code::SUCCESS);
        assert_eq!(b.body_len(), 33);
        b.buffer().extend_from_slice(b"site record");
        assert!(b.fits());
        let len = b.finish();
        assert_eq!(len, out.len());
        let r = decode_response(&out).unwrap();
        assert_eq!(r.header.site_serial, 4);
        assert_eq!(r.header.body_len, 33 + 11);
        assert_eq!(r.digest, ctx().digest);
        assert_eq!(r.body, ResponseBody::Other(b"site record".to_vec()));
    }

    #[test]
    fn with_site_sets_the_serial_and_at_on_primaries() {
        let base = ResponseContext {
            site_serial: -1,
            ..ctx()
        };
        let primary = base.with_site(3, true);
        assert_eq!(primary.site_serial, 3);
        assert_eq!(primary.op_flags, flags::REC | flags::AT);
        let mirror = base.with_site(0xffff, false);
        assert_eq!(mirror.site_serial, -1);
        assert_eq!(mirror.op_flags, flags::REC);
        assert_eq!(
            ResponseContext {
                op_flags: flags::REC | flags::AT,
                ..base
            }
            .with_site(2, false)
            .op_flags,
            flags::REC | flags::AT,
            "a mirror keeps an AT the caller echoed"
        );
    }

    #[test]
    fn oversized_answers_become_errors() {
        let big = vec![0u8; 64 * 1024];
        let values = [big.as_slice(); 5];
        let mut out = Vec::new();
        let count = encode_resolution_response(&mut out, &ctx(), b"88/x", values);
        assert_eq!(count, 5);
        let r = decode_response(&out).unwrap();
        assert_eq!(r.header.response_code, code::ERROR);
        assert!(matches!(r.body, ResponseBody::Error { .. }));
    }
}
