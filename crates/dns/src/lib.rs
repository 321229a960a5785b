//! Identifiers in the DNS (docs/dns-mapping.md at the root of the
//! repository): the name mapping and the answers, from the store, to DNS
//! queries and zone transfers.
//!
//! This crate owns:
//! - the name mapping ([`name`]): an identifier `88.100.1/ABC-123` is the
//!   name `ABC-123._.1.100.88.<apex>`, a prefix `88.100.1` is
//!   `1.100.88.<apex>`, and the reverse, exactly;
//! - the GS1 ONS and OID ORS names ([`special`]): GTINs under
//!   `gtin.gs1.id.<apex>` and OIDs under `oid-res.<apex>`, each answered
//!   from an identifier under a configured prefix;
//! - the records an identifier's publicly readable values become (TXT,
//!   URI, NAPTR) and the apex records (SOA, NS, glue) ([`records`]);
//! - [`DnsService::respond`]: one query message in, one answer message out
//!   (NXDOMAIN, NODATA, REFUSED, FORMERR, EDNS(0), truncation, RFC 8482
//!   ANY, referrals at the zone cuts of delegated prefixes); the TXT
//!   question for an identifier, the common one, is answered from the
//!   Handle response cache of `idnode-authority` (the public values of
//!   recently resolved records, in wire form), its records written
//!   straight into the answer, with the delegated prefixes held in memory
//!   ([`cuts`]) so that such an answer reads no store;
//! - zone transfers ([`transfer`]): [`transfer::transfer`] turns an AXFR
//!   or IXFR query from a peer into a stream of answer messages, each
//!   packed as soon as it is full (the zone from [`DnsService::zone`],
//!   paged from a store snapshot; differences from the store's change log
//!   through [`DnsService::record_set`]), signed with TSIG ([`tsig`]) when
//!   the query was; the listener only frames and sends them.
//!
//! It is sans-IO: no sockets, no tokio, no clock (callers pass `now`).
//! Listeners (UDP, TCP, QUIC) live above it; it must
//! not depend on a storage engine (only on the `Store` trait) nor on a
//! transport. Messages are parsed by [`query`] (header and question only,
//! bounds-checked, never following compression pointers) and answers are
//! encoded with hickory-proto's record types.
//!
//! Performance-critical: [`DnsService::respond`]. The TXT answer of an
//! identifier held in the response cache parses the header and question,
//! maps the name to the identifier, looks the prefix map and the cache up
//! and writes the records from the cached values: no store read, no
//! record objects.

pub mod config;
pub mod cookie;
pub mod cuts;
mod direct;
mod error;
mod message;
pub mod name;
pub mod query;
pub mod records;
mod service;
pub mod special;
pub mod transfer;
pub mod tsig;
mod zone;

pub use config::{DnsConfig, NameServerConfig, SoaTimers, Zones};
pub use cuts::Cuts;
pub use error::DnsError;
pub use name::{Apex, Mapped};
pub use service::{BatchScratch, DnsService, Outcome, Transport};
pub use zone::ZoneRecords;

/// Re-exported so that callers build and read records with the same
/// version of hickory-proto.
pub use hickory_proto;
