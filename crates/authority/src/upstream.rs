//! The hand-off to the recursive role: a request with REC set for a prefix
//! not homed here is resolved through an [`Upstream`] and answered from
//! what it found, with the request's filters applied.

use crate::answer::answer;
use crate::cache::Entry;
use crate::service::HandleService;
use idnode_core::wire::encode_value;
use idnode_handle::{ResolutionQuery, decode_request, encode_error_response, flags, opcode};
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
    /// Resolves `handle` upstream. With `certified` (the client's request
    /// set CT) every upstream request carries CT and every upstream answer
    /// must verify with the key of the server it came from; one that does
    /// not is refused, never passed on (docs/hierarchy.md, "Certified answers and the node's key").
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
        certified: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = UpstreamAnswer> + Send + 'a>>;
}

impl HandleService {
    /// Lets requests with REC set be resolved through `upstream` (the
    /// transport calls [`recurse`](Self::recurse) on
    /// [`Outcome::Recurse`]) instead of referred.
    pub fn set_upstream(&mut self, upstream: Arc<dyn Upstream>) {
        self.upstream = Some(upstream);
    }

    /// Resolves upstream only for clients in these ranges (network, prefix
    /// length); others get [`refuse_recursion`](Self::refuse_recursion).
    /// Unset: every client (for a node only its own clients reach).
    pub fn set_recursion_clients(&mut self, clients: Vec<(std::net::IpAddr, u8)>) {
        self.recursion_clients = Some(clients);
    }

    /// Whether a request from `ip` that got [`Outcome::Recurse`] may be
    /// resolved upstream: the node is not an open resolver.
    pub fn may_recurse_for(&self, ip: std::net::IpAddr) -> bool {
        self.recursion_clients.as_ref().is_none_or(|ranges| {
            ranges
                .iter()
                .any(|&net| idnode_core::net::contains(net, ip))
        })
    }

    /// The answer to a request that got [`Outcome::Recurse`] from a client
    /// the node does not resolve for: 301 SERVER_NOT_RESP saying so.
    pub fn refuse_recursion(&self, message: &[u8], now: u32, out: &mut Vec<u8>) {
        out.clear();
        let Ok(request) = idnode_handle::decode_request(message) else {
            return;
        };
        let ctx = self.context(&request, now);
        idnode_handle::encode_error_response(
            out,
            &ctx,
            request.header.opcode,
            idnode_handle::code::SERVER_NOT_RESP,
            "this node resolves on behalf of its own clients only; ask the servers of the \
             identifier's prefix",
        );
    }

    /// Answers `message`, which got [`Outcome::Recurse`], by resolving it
    /// upstream: certified (every upstream answer verified) when the
    /// request set CT, and then signed with this node's key. `out` is left
    /// empty only for a message that does not decode (which `respond`
    /// never sends here).
    pub async fn recurse(&self, message: &[u8], out: &mut Vec<u8>, now: impl Fn() -> u32) {
        out.clear();
        let (Some(upstream), Some(handle)) = (&self.upstream, Self::question(message)) else {
            return;
        };
        let certified = Self::wants_certified(message);
        let answer = upstream.resolve(&handle, certified).await;
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

    /// Whether a request set CT (certified).
    fn wants_certified(message: &[u8]) -> bool {
        decode_request(message).is_ok_and(|r| r.header.op_flags & flags::CT != 0)
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
        let ctx = self.context(&request, now);
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
        // The recursive node signs its own answer with its own key.
        self.certify_if_asked(message, crate::Outcome::Reply { keep_open: false }, out);
    }
}
