//! The hand-off to the recursive role: a request with REC set for a prefix
//! not homed here is resolved through an [`Upstream`] and answered from
//! what it found, with the request's filters applied.

use crate::answer::answer;
use crate::cache::Entry;
use crate::service::HandleService;
use idnode_core::wire::encode_value;
use idnode_handle::{
    ResolutionQuery, ResponseContext, decode_request, encode_error_response, opcode,
};
use std::sync::Arc;

/// What the recursive resolution upstream found, for
/// [`HandleService::answer_recursed`].
#[derive(Debug, Clone, Copy)]
pub enum Recursed<'a> {
    /// The record, every value (the request's filters are applied here).
    Found {
        handle: &'a str,
        values: &'a [idnode_core::Value],
    },
    /// A Handle response code and a message saying why.
    Failed { code: u32, message: &'a str },
}

/// Recursion count beyond which a request is refused (the spec's limit).
pub const MAX_RECURSION: u8 = 10;

/// What a recursive resolution upstream found: the whole record (every
/// value; the request's filters are applied by [`HandleService`]), or a
/// Handle response code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAnswer {
    Found {
        handle: String,
        values: Vec<idnode_core::Value>,
    },
    Failed {
        code: u32,
        message: String,
    },
}

/// Resolves identifiers on other nodes (the recursive role), for
/// [`HandleService::recurse`]. Implemented outside this crate, which owns
/// no sockets.
pub trait Upstream: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = UpstreamAnswer> + Send + 'a>>;
}

impl HandleService {
    /// Lets requests with REC set be resolved through `upstream` (the
    /// transport calls [`recurse`](Self::recurse) on
    /// [`Outcome::Recurse`]) instead of referred.
    pub fn set_upstream(&mut self, upstream: Arc<dyn Upstream>) {
        self.upstream = Some(upstream);
    }

    /// Answers `message`, which got [`Outcome::Recurse`], by resolving it
    /// upstream. `out` is left empty only for a message that does not
    /// decode (which `respond` never sends here).
    pub async fn recurse(&self, message: &[u8], out: &mut Vec<u8>, now: impl Fn() -> u32) {
        out.clear();
        let (Some(upstream), Some(handle)) = (&self.upstream, Self::question(message)) else {
            return;
        };
        let answer = upstream.resolve(&handle).await;
        let recursed = match &answer {
            UpstreamAnswer::Found { handle, values } => Recursed::Found { handle, values },
            UpstreamAnswer::Failed { code, message } => Recursed::Failed {
                code: *code,
                message,
            },
        };
        self.answer_recursed(message, now(), recursed, out);
    }

    /// The handle a request asks about, for the transport to resolve
    /// upstream after [`Outcome::Recurse`].
    pub fn question(message: &[u8]) -> Option<String> {
        let request = decode_request(message).ok()?;
        let query = ResolutionQuery::decode(request.body).ok()?;
        std::str::from_utf8(query.handle).ok().map(str::to_owned)
    }

    /// Answers `message` (which got [`Outcome::Recurse`]) from what the
    /// recursive resolution found, with the request's filters applied.
    pub fn answer_recursed(
        &self,
        message: &[u8],
        now: u32,
        recursed: Recursed<'_>,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let Ok(request) = decode_request(message) else {
            return;
        };
        let ctx = ResponseContext::for_request(&request, now);
        let op = opcode::RESOLUTION;
        let Ok(query) = ResolutionQuery::decode(request.body) else {
            return;
        };
        match recursed {
            Recursed::Found { values, .. } => {
                let mut encoded = Vec::new();
                let mut count = 0u32;
                for value in values.iter().filter(|v| v.permissions.public_read()) {
                    encode_value(&mut encoded, value);
                    count += 1;
                }
                let public = Entry::Found {
                    count,
                    values: &encoded,
                };
                answer(out, &ctx, &query, public);
            }
            Recursed::Failed { code, message } => {
                encode_error_response(out, &ctx, op, code, message);
            }
        }
    }
}
