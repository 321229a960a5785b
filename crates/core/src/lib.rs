//! The data model of idnode, shared by every other crate.
//!
//! This crate owns identifiers (parsing, normalization, the `0.NA/<prefix>`
//! form, and the stricter rules of what may be written: [`text`] and
//! [`Identifier::check_new`]), values and records as RFC 3651 defines them, what the store keeps
//! about a prefix ([`PrefixInfo`]: homed or delegated, and its metadata
//! [`Template`], whose rules `template` parses and judges values by), the
//! limits that every entrance enforces, and the binary encoding of values (the Handle wire
//! form, which the store also uses so that answers are cheap to build).
//!
//! It also holds the latency counters the serving crates share
//! ([`latency`]: log-scale histograms of atomics).
//!
//! It depends on nothing that does I/O: no sockets, no clock, no storage.

mod error;
mod identifier;
pub mod jsonl;
pub mod latency;
pub mod limits;
pub mod net;
mod prefix_info;
pub mod template;
pub mod text;
mod value;
pub mod wire;
pub mod workers;

pub use error::Error;
pub use identifier::{Identifier, Prefix, normalize_into};
pub use prefix_info::PrefixInfo;
pub use template::Template;
pub use value::{Permissions, Record, Reference, Ttl, Value};
