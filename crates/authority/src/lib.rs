//! The authoritative side of the Handle protocol: "what does this node say
//! to this question".
//!
//! Transports hand it one complete Handle message and a buffer; it decodes
//! the request, looks the identifier up in the store, filters the values
//! (index, type, public read) and encodes the answer into the buffer. It owns
//! no sockets and no clock (the caller passes `now`), so every Handle
//! transport (UDP, TCP, QUIC) answers from this one place.
//!
//! - [`service`]: [`HandleService`], one request ([`HandleService::respond`])
//!   or a batch ([`HandleService::respond_batch`]);
//! - [`answer`](mod@answer): a record's public values filtered into an
//!   answer, and the error answers;
//! - `referral`: where a question with no record here belongs (100, 303
//!   with the delegated prefix's sites, 301);
//! - [`upstream`]: the hand-off to the recursive role ([`Upstream`]);
//! - `prewarm`: filling the response cache from the records at start;
//! - [`cache`]: the response cache;
//! - [`admin`](mod@admin): Handle administration (admin requests, 402
//!   challenges, challenge answers) through the registry;
//! - `read`: authenticated resolution (values without public read to an
//!   admin with read value, over TCP and QUIC after a 402 challenge).
//!
//! Performance-critical: [`HandleService::respond`] runs once per request
//! on every transport. It reuses the caller's buffers ([`Scratch`]),
//! answers from the [`ResponseCache`] when it can (no allocation, no store
//! read), and copies values into the answer in their wire form without
//! decoding them. See PERFORMANCE.md at the root of the repository.

pub mod admin;
mod answer;
pub mod cache;
mod prewarm;
mod read;
mod referral;
pub mod service;
mod session;
pub mod upstream;

pub use answer::project;
pub use cache::ResponseCache;
pub use prewarm::Prewarmed;
pub use service::{Batch, HandleService, Outcome, Scratch};
pub use upstream::{MAX_RECURSION, Recursed, Upstream, UpstreamAnswer};
