//! The resolver engine: "what do I say to this question".
//!
//! Transports hand it one complete Handle message and a buffer; it decodes
//! the request, looks the identifier up in the store, filters the values
//! (index, type, public read) and encodes the answer into the buffer. It owns
//! no sockets and no clock (the caller passes `now`), so every transport
//! (UDP, TCP, later QUIC) answers from this one place.
//!
//! Performance-critical: [`HandleService::respond`] runs once per request
//! on every transport. It reuses the caller's buffers ([`Scratch`]),
//! answers from the [`ResponseCache`] when it can (no allocation, no store
//! read), and copies values into the answer in their wire form without
//! decoding them. See PERFORMANCE.md at the root.

pub mod cache;
mod handle;

pub use cache::ResponseCache;
pub use handle::{
    Batch, HandleService, MAX_RECURSION, Outcome, Prewarmed, Recursed, Scratch, Upstream,
    UpstreamAnswer,
};
