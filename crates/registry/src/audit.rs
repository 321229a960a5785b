//! The audit trail: who made each change, over which surface, from which
//! address, when. Every write of the registry stores an [`Origin`] with each
//! of its change-log entries (the store keeps it opaque); [`Registry::audit`]
//! reads them back, for one identifier or one credential. Values' data is
//! never part of an origin nor of an audit entry.
//!
//! The writer says who it is with [`with_origin`] around its (synchronous)
//! registry calls: a thread-local that [`Txn`](crate::txn) reads when a
//! transaction begins. Callers on an async runtime make the calls, and set
//! the origin, inside the same `spawn_blocking` closure, never across an
//! `.await`. Writes without an origin (seeding the demo data, tests) are
//! recorded without one.

use crate::Registry;
use crate::error::Result;
use bytes::Bytes;
use idnode_core::wire::Reader;
use idnode_store::{Change, Space};
use std::cell::RefCell;

/// Longest actor, surface or address kept (longer ones are cut).
const MAX_FIELD: usize = 256;

/// Who made a change, over which surface, from which address, when.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// Unix seconds.
    pub time: u64,
    /// The credential: `token:<id>` for a gRPC token (`token:admin` for the
    /// node's operator token), `handle:<index>:<handle>` for a Handle
    /// administrator, `local` for the node itself.
    pub actor: String,
    /// `grpc`, `handle-tcp`, `handle-quic`, `http`...
    pub surface: String,
    /// The client's address (`ip:port`), empty when unknown.
    pub address: String,
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Origin {
    /// An origin stamped with the system clock.
    pub fn now(
        actor: impl Into<String>,
        surface: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        Self {
            time: crate::system_clock().into(),
            actor: actor.into(),
            surface: surface.into(),
            address: address.into(),
        }
    }

    /// Version 1: `1`, time (u64), then actor, surface, address (u32
    /// length and UTF-8 each, at most 256 bytes).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(9 + 12 + self.actor.len() + self.surface.len() + 24);
        out.push(1);
        out.extend_from_slice(&self.time.to_be_bytes());
        for field in [&self.actor, &self.surface, &self.address] {
            idnode_core::wire::put_bytes(&mut out, cut(field).as_bytes());
        }
        Bytes::from(out)
    }

    /// Reads [`encode`](Self::encode)'s bytes; `None` when they are not an
    /// origin this version knows.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        if r.u8("origin version").ok()? != 1 {
            return None;
        }
        let time = u64::from_be_bytes(r.take(8, "origin time").ok()?.try_into().ok()?);
        let mut field = || -> Option<String> {
            let b = r.bytes("origin field").ok()?;
            (b.len() <= MAX_FIELD).then(|| String::from_utf8_lossy(b).into_owned())
        };
        Some(Self {
            time,
            actor: field()?,
            surface: field()?,
            address: field()?,
        })
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Origin>> = const { RefCell::new(None) };
}

/// Runs `f` with `origin` as the origin of every registry write it makes on
/// this thread (restored afterwards, also when `f` panics).
pub fn with_origin<T>(origin: Origin, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Origin>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(origin)));
    f()
}

/// Runs `f` with the current origin's actor replaced by `actor` (the
/// surface and address stay): for a transport that knows the client's
/// address before it knows who the client is.
pub fn with_actor<T>(actor: impl Into<String>, f: impl FnOnce() -> T) -> T {
    let mut origin = current().unwrap_or_default();
    origin.actor = actor.into();
    if origin.time == 0 {
        origin.time = crate::system_clock().into();
    }
    with_origin(origin, f)
}

/// The origin set on this thread, if any.
pub fn current() -> Option<Origin> {
    CURRENT.with(|c| c.borrow().clone())
}

/// What a change did to a record or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Written where nothing was (as far as the change log shows).
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub sequence: u64,
    /// The identifier (normalized) or, for a prefix change, the prefix.
    pub subject: String,
    /// `identifier` or `prefix`.
    pub kind: &'static str,
    pub action: Action,
    /// `None` for a change written without one.
    pub origin: Option<Origin>,
}

/// Which changes [`Registry::audit`] returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only changes of this identifier (normalized as keys are).
    pub identifier: Option<String>,
    /// Only changes made by this actor (`token:<id>`, ...).
    pub actor: Option<String>,
    /// Only changes made at or after these unix seconds.
    pub since: Option<u64>,
    /// At most this many, the newest (0: 1000).
    pub limit: usize,
}

/// Change-log entries read per store call while scanning.
const SCAN_PAGE: usize = 4096;

impl Registry {
    /// The audited changes that match `filter`, oldest first (the newest
    /// `limit` of them). Reads the change log from its start: its cost
    /// grows with the number of changes the node has made.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        };
        let key = filter.identifier.as_deref().map(|i| {
            let mut k = Vec::new();
            idnode_core::normalize_into(i.as_bytes(), &mut k);
            k
        });
        let mut found: std::collections::VecDeque<AuditEntry> = Default::default();
        // Whether a key is live before the change at hand, as the change
        // log has shown it so far (created vs updated).
        let mut live: std::collections::HashSet<(Space, Vec<u8>)> = Default::default();
        let mut after = 0;
        loop {
            let page = self.store.changes_since(after, SCAN_PAGE)?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.sequence;
            for change in page {
                let Change {
                    sequence,
                    space,
                    key: changed,
                    value,
                    origin,
                } = change;
                if !matches!(space, Space::Records | Space::Prefixes) {
                    continue;
                }
                if key.as_ref().is_some_and(|k| *k != changed) {
                    continue;
                }
                let was_live = if value.is_some() {
                    !live.insert((space, changed.clone()))
                } else {
                    live.remove(&(space, changed.clone()))
                };
                let action = match (&value, was_live) {
                    (None, _) => Action::Deleted,
                    (Some(_), true) => Action::Updated,
                    (Some(_), false) => Action::Created,
                };
                let origin = origin.as_deref().and_then(Origin::decode);
                if let Some(actor) = &filter.actor
                    && origin.as_ref().is_none_or(|o| &o.actor != actor)
                {
                    continue;
                }
                if let Some(since) = filter.since
                    && origin.as_ref().is_none_or(|o| o.time < since)
                {
                    continue;
                }
                if found.len() == limit {
                    found.pop_front();
                }
                found.push_back(AuditEntry {
                    sequence,
                    subject: String::from_utf8_lossy(&changed).into_owned(),
                    kind: if space == Space::Records {
                        "identifier"
                    } else {
                        "prefix"
                    },
                    action,
                    origin,
                });
            }
        }
        Ok(found.into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip_and_bad_bytes_are_none() {
        let o = Origin {
            time: 1_800_000_000,
            actor: "token:ab12".into(),
            surface: "grpc".into(),
            address: "127.0.0.1:5000".into(),
        };
        let bytes = o.encode();
        assert_eq!(Origin::decode(&bytes), Some(o));
        for cut in 0..bytes.len() {
            assert_eq!(Origin::decode(&bytes[..cut]), None);
        }
        let long = Origin::now("x".repeat(1000), "grpc", "");
        assert_eq!(
            Origin::decode(&long.encode()).unwrap().actor.len(),
            MAX_FIELD
        );
    }

    #[test]
    fn with_origin_is_scoped() {
        assert_eq!(current(), None);
        let o = Origin::now("a", "grpc", "1.2.3.4:5");
        with_origin(o.clone(), || {
            assert_eq!(current(), Some(o.clone()));
            with_actor("handle:300:0.NA/88.1", || {
                let inner = current().unwrap();
                assert_eq!(inner.actor, "handle:300:0.NA/88.1");
                assert_eq!(inner.address, "1.2.3.4:5");
            });
            assert_eq!(current(), Some(o.clone()));
        });
        assert_eq!(current(), None);
    }
}
