//! Writing answers: a record's public projection, filtered by the
//! question, and the error answers every path shares.

use crate::cache::Entry;
use crate::service::Outcome;
use idnode_core::wire::{Reader, RecordView, ValueView};
use idnode_handle::{
    DecodeError, ResolutionQuery, ResponseBuilder, ResponseContext, code, encode_error_response,
    encode_resolution_response, flags, opcode,
};
use idnode_store::StoreError;

/// The public projection of a stored record (`None`: there is none): the
/// wire form of its publicly readable values, written into `values`.
pub fn project<'v>(
    stored: Option<&[u8]>,
    values: &'v mut Vec<u8>,
) -> Result<Entry<'v>, StoreError> {
    values.clear();
    let Some(stored) = stored else {
        return Ok(Entry::Missing);
    };
    let view = RecordView::parse(stored)
        .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
    let mut count = 0;
    for value in view.values() {
        let value =
            value.map_err(|e| StoreError::Corrupt(format!("value does not decode: {e}")))?;
        if value.permissions.public_read() {
            values.extend_from_slice(value.raw);
            count += 1;
        }
    }
    Ok(Entry::Found { count, values })
}

/// Writes the answer to `query` from a record's public projection. False
/// when there is no record (`out` then holds HANDLE_NOT_FOUND, which the
/// caller may replace by a referral).
#[inline]
pub(crate) fn answer(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    query: &ResolutionQuery<'_>,
    public: Entry<'_>,
) -> bool {
    let (count, values) = match public {
        Entry::Found { count, values } => (count, values),
        Entry::Missing => {
            let msg = "handle not found";
            encode_error_response(out, ctx, opcode::RESOLUTION, code::HANDLE_NOT_FOUND, msg);
            return false;
        }
    };
    if !query.has_filters() {
        // The hot case: every public value, one copy of the stored bytes.
        let mut b = ResponseBuilder::start(out, ctx, opcode::RESOLUTION, code::SUCCESS);
        b.put_bytes(query.handle);
        b.put_u32(count);
        b.buffer().extend_from_slice(values);
        if b.fits() {
            b.finish();
        } else {
            let msg = "answer exceeds the maximum message length";
            encode_error_response(out, ctx, opcode::RESOLUTION, code::ERROR, msg);
        }
        return true;
    }
    let mut reader = Reader::new(values);
    let selected = std::iter::from_fn(|| {
        (reader.remaining() > 0)
            .then(|| ValueView::read(&mut reader).ok())
            .flatten()
    })
    .filter(|v| query.wants(v.index, v.kind))
    .map(|v| v.raw);
    if encode_resolution_response(out, ctx, query.handle, selected) == 0 {
        let msg = "no value matches the requested indexes and types";
        encode_error_response(out, ctx, opcode::RESOLUTION, code::VALUES_NOT_FOUND, msg);
    }
    true
}

#[inline]
pub(crate) fn is_valid_handle(handle: &[u8]) -> bool {
    // The first `/` byte is the first `/` character in UTF-8 too.
    let Some(slash) = handle.iter().position(|&b| b == b'/') else {
        return false;
    };
    slash > 0
        && slash + 1 < handle.len()
        && (handle.is_ascii() || std::str::from_utf8(handle).is_ok())
}

/// The answer when the store failed: logged here, the client learns only
/// that it was an internal error.
pub(crate) fn internal_error(
    error: &StoreError,
    header: &idnode_handle::Header,
    ctx: &ResponseContext,
    out: &mut Vec<u8>,
) -> Outcome {
    tracing::error!(%error, "store read failed");
    encode_error_response(out, ctx, header.opcode, code::ERROR, "internal error");
    reply_to(header)
}

/// Send the answer, keeping the connection open if the request asked to
/// (KC).
#[inline]
pub(crate) fn reply_to(header: &idnode_handle::Header) -> Outcome {
    Outcome::Reply {
        keep_open: header.op_flags & flags::KC != 0,
    }
}

/// The question of a RESOLUTION request, or PROTOCOL_ERROR written into
/// `out` (and the outcome to return) when its body does not decode.
#[inline]
pub(crate) fn question<'m>(
    request: &idnode_handle::Request<'m>,
    ctx: &ResponseContext,
    out: &mut Vec<u8>,
) -> Result<ResolutionQuery<'m>, Outcome> {
    ResolutionQuery::decode(request.body).map_err(|e| {
        let msg = format!("malformed resolution request: {e}");
        encode_error_response(out, ctx, opcode::RESOLUTION, code::PROTOCOL_ERROR, &msg);
        reply_to(&request.header)
    })
}

/// A request that does not decode gets PROTOCOL_ERROR when its envelope is
/// readable (so the client learns why), and is dropped otherwise.
pub(crate) fn protocol_error(
    message: &[u8],
    error: DecodeError,
    now: u32,
    out: &mut Vec<u8>,
) -> Outcome {
    match ResponseContext::for_undecodable(message, now) {
        Some(ctx) => {
            let msg = format!("cannot decode request: {error}");
            encode_error_response(out, &ctx, 0, code::PROTOCOL_ERROR, &msg);
            Outcome::Reply { keep_open: false }
        }
        None => Outcome::Drop,
    }
}
