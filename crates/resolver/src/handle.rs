use idnode_core::normalize_into;
use idnode_core::wire::RecordView;
use idnode_handle::{
    DecodeError, ResolutionQuery, ResponseContext, code, decode_request, encode_error_response,
    flags, opcode,
};
use idnode_store::{Space, Store};
use std::sync::Arc;

/// What the transport should do after [`HandleService::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send the buffer; `keep_open` is the request's keep-connection flag.
    Reply { keep_open: bool },
    /// Send nothing: the bytes were not a Handle message we can answer.
    Drop,
}

/// Per-worker buffers reused across requests.
#[derive(Debug, Default)]
pub struct Scratch {
    key: Vec<u8>,
}

/// Answers Handle protocol requests from a store.
pub struct HandleService {
    store: Arc<dyn Store>,
}

impl HandleService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Answers one complete request message (envelope included) into `out`.
    ///
    /// Every client is unauthenticated here (no sessions yet), so values
    /// without public read permission are never sent.
    pub fn respond(
        &self,
        message: &[u8],
        now: u32,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        out.clear();
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => return protocol_error(message, e, now, out),
        };
        let ctx = ResponseContext::for_request(&request, now);
        let keep_open = request.header.op_flags & flags::KC != 0;
        let reply = Outcome::Reply { keep_open };
        match request.header.opcode {
            opcode::RESOLUTION => {}
            op => {
                let msg = format!("operation {op} is not supported by this node");
                encode_error_response(out, &ctx, op, code::OPERATION_NOT_SUPPORTED, &msg);
                return reply;
            }
        }
        let query = match ResolutionQuery::decode(request.body) {
            Ok(q) => q,
            Err(e) => {
                let msg = format!("malformed resolution request: {e}");
                encode_error_response(out, &ctx, opcode::RESOLUTION, code::PROTOCOL_ERROR, &msg);
                return reply;
            }
        };
        if !is_valid_handle(query.handle) {
            encode_error_response(
                out,
                &ctx,
                opcode::RESOLUTION,
                code::INVALID_HANDLE,
                "handle must be UTF-8 `prefix/suffix`",
            );
            return reply;
        }
        normalize_into(query.handle, &mut scratch.key);
        let stored = match self.store.get(Space::Records, &scratch.key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                encode_error_response(
                    out,
                    &ctx,
                    opcode::RESOLUTION,
                    code::HANDLE_NOT_FOUND,
                    "handle not found",
                );
                return reply;
            }
            Err(e) => {
                tracing::error!(error = %e, "store read failed");
                encode_error_response(out, &ctx, opcode::RESOLUTION, code::ERROR, "internal error");
                return reply;
            }
        };
        let view = match RecordView::parse(&stored) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "stored record does not decode");
                encode_error_response(out, &ctx, opcode::RESOLUTION, code::ERROR, "internal error");
                return reply;
            }
        };
        let selected = view
            .values()
            .filter_map(Result::ok)
            .filter(|v| v.permissions.public_read() && query.wants(v.index, v.kind))
            .map(|v| v.raw);
        let count = idnode_handle::encode_resolution_response(out, &ctx, query.handle, selected);
        if count == 0 && query.has_filters() {
            encode_error_response(
                out,
                &ctx,
                opcode::RESOLUTION,
                code::VALUES_NOT_FOUND,
                "no value matches the requested indexes and types",
            );
        }
        reply
    }
}

fn is_valid_handle(handle: &[u8]) -> bool {
    std::str::from_utf8(handle).is_ok_and(|s| {
        s.split_once('/')
            .is_some_and(|(p, suffix)| !p.is_empty() && !suffix.is_empty())
    })
}

/// A request that does not decode gets PROTOCOL_ERROR when its envelope is
/// readable (so the client learns why), and is dropped otherwise.
fn protocol_error(message: &[u8], error: DecodeError, now: u32, out: &mut Vec<u8>) -> Outcome {
    match ResponseContext::for_undecodable(message, now) {
        Some(ctx) => {
            let msg = format!("cannot decode request: {error}");
            encode_error_response(out, &ctx, 0, code::PROTOCOL_ERROR, &msg);
            Outcome::Reply { keep_open: false }
        }
        None => Outcome::Drop,
    }
}
