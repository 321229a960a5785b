use crate::cache::{Entry, ResponseCache};
use idnode_core::normalize_into;
use idnode_core::wire::{Reader, RecordView, ValueView};
use idnode_handle::{
    DecodeError, ResolutionQuery, ResponseBuilder, ResponseContext, code, decode_request,
    encode_error_response, encode_resolution_response, flags, opcode,
};
use idnode_store::{Space, Store, StoreError};
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
    values: Vec<u8>,
}

/// The public projection of a record, borrowed from the cache or scratch.
#[derive(Clone, Copy)]
enum Public<'a> {
    Found { count: u32, values: &'a [u8] },
    Missing,
}

impl<'a> From<&'a Entry> for Public<'a> {
    fn from(e: &'a Entry) -> Self {
        match e {
            Entry::Found { count, values } => Public::Found {
                count: *count,
                values,
            },
            Entry::Missing => Public::Missing,
        }
    }
}

/// Answers Handle protocol requests from a store, through a response cache
/// when one is given.
pub struct HandleService {
    store: Arc<dyn Store>,
    cache: Option<Arc<ResponseCache>>,
}

impl HandleService {
    /// A service that reads the store for every request.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cache: None }
    }

    /// A service that answers from `cache` when it can. The cache must be
    /// told about every write (register it as a
    /// [`CommitObserver`](idnode_store::CommitObserver) of the store).
    pub fn with_cache(store: Arc<dyn Store>, cache: Arc<ResponseCache>) -> Self {
        Self {
            store,
            cache: Some(cache),
        }
    }

    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_deref()
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
        let reply = Outcome::Reply {
            keep_open: request.header.op_flags & flags::KC != 0,
        };
        let op = request.header.opcode;
        if op != opcode::RESOLUTION {
            let msg = format!("operation {op} is not supported by this node");
            encode_error_response(out, &ctx, op, code::OPERATION_NOT_SUPPORTED, &msg);
            return reply;
        }
        let query = match ResolutionQuery::decode(request.body) {
            Ok(q) => q,
            Err(e) => {
                let msg = format!("malformed resolution request: {e}");
                encode_error_response(out, &ctx, op, code::PROTOCOL_ERROR, &msg);
                return reply;
            }
        };
        if !is_valid_handle(query.handle) {
            let msg = "handle must be UTF-8 `prefix/suffix`";
            encode_error_response(out, &ctx, op, code::INVALID_HANDLE, msg);
            return reply;
        }
        normalize_into(query.handle, &mut scratch.key);
        let loaded = match &self.cache {
            Some(cache) => {
                match cache.with(&scratch.key, |e| answer(out, &ctx, &query, e.into())) {
                    Ok(()) => return reply,
                    Err(ticket) => self.load(&scratch.key).map(|entry| {
                        answer(out, &ctx, &query, (&entry).into());
                        cache.insert(&scratch.key, ticket, entry);
                    }),
                }
            }
            None => self
                .load_into(&scratch.key, &mut scratch.values)
                .map(|public| answer(out, &ctx, &query, public)),
        };
        if let Err(e) = loaded {
            tracing::error!(error = %e, "store read failed");
            encode_error_response(out, &ctx, op, code::ERROR, "internal error");
        }
        reply
    }

    /// Reads a record and keeps its public projection, owned, for the cache.
    fn load(&self, key: &[u8]) -> Result<Entry, StoreError> {
        let mut values = Vec::new();
        Ok(match self.load_into(key, &mut values)? {
            Public::Found { count, .. } => Entry::Found {
                count,
                values: values.into_boxed_slice(),
            },
            Public::Missing => Entry::Missing,
        })
    }

    /// Reads a record and writes the wire form of its publicly readable
    /// values into `values`.
    fn load_into<'v>(&self, key: &[u8], values: &'v mut Vec<u8>) -> Result<Public<'v>, StoreError> {
        values.clear();
        let Some(stored) = self.store.get(Space::Records, key)? else {
            return Ok(Public::Missing);
        };
        let view = RecordView::parse(&stored)
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
        Ok(Public::Found { count, values })
    }
}

/// Writes the answer to `query` from a record's public projection.
fn answer(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    query: &ResolutionQuery<'_>,
    public: Public<'_>,
) {
    let (count, values) = match public {
        Public::Found { count, values } => (count, values),
        Public::Missing => {
            let msg = "handle not found";
            encode_error_response(out, ctx, opcode::RESOLUTION, code::HANDLE_NOT_FOUND, msg);
            return;
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
        return;
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
