//! The write side of idnode: validated mutations of prefixes and records.
//!
//! This crate owns what may be written and how: a prefix is homed here
//! before identifiers are created under it, every value is checked against
//! the limits (errors name the offending field, `values[3].data`), a new
//! identifier or prefix and every value type against the write rules of
//! [`Identifier::check_new`](idnode_core::Identifier::check_new) (no
//! control, invisible or bidi-control character, an ASCII prefix; reads
//! do not check them; identifiers arrive parsed into their NFC spelling),
//! the node
//! sets timestamps, and each operation is one store transaction, committed
//! once, durably. Records live in [`Space::Records`](idnode_store::Space)
//! under [`Identifier::key`](idnode_core::Identifier::key), encoded with
//! [`Record::encode`], their `version` being the change-log sequence number
//! of the write that stored them; prefixes live in `Space::Prefixes` as
//! [`PrefixInfo`].
//!
//! A prefix may carry a metadata [`Template`] (`template.rs`): the value
//! types its identifiers must or may hold and what their data must look
//! like. The prefixes below it without one of their own inherit it, and
//! every write of a record here is checked against the one that applies
//! ([`Registry::template_for`]), so every surface that writes through the
//! registry enforces it; a refusal names the identifier, the value
//! (`values[2].data`) and the rule, and stores nothing.
//!
//! Each change records its [`Origin`] (who, over which surface, from
//! where, when) in the change log, and [`Registry::audit`] reads that trail
//! back (`audit.rs`).
//!
//! It works over any [`Store`] and is synchronous: callers on an async
//! runtime run it in `spawn_blocking`. It must not depend on a transport
//! (no tonic, no sockets) nor on a storage engine (no RocksDB).

mod audit;
mod batch;
mod error;
mod identifiers;
pub mod policy;
mod prefixes;
pub mod retention;
mod template;
mod txn;
mod validate;

pub use audit::{Action, AuditEntry, AuditFilter, Origin, with_actor, with_origin};
pub use batch::{BatchItem, PreparedBatch};
pub use error::{RegistryError, Result};
pub use identifiers::Page;
pub use idnode_core::PrefixInfo;
pub use idnode_core::template::{Field, Kind, Template};
pub use prefixes::{
    ALL_ADMIN_PERMISSIONS, OWN_SITE_INDEX, PREFIX_ADMIN_INDEX, PREFIX_ADMIN_KEY_INDEX,
    SERVICE_PREFIX_TYPE, SERVICE_TYPE, SITE_PREFIX_TYPE, SITE_TYPE, SiteSync, hs_admin_data,
};
pub use template::AppliedTemplate;

use bytes::Bytes;
use idnode_core::Record;
use idnode_store::Store;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Page size of [`Registry::list_identifiers`] when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page of [`Registry::list_identifiers`].
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where the registry reads the time (unix seconds) it stamps on values.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u32;
}

impl<F: Fn() -> u32 + Send + Sync + 'static> Clock for F {
    fn now(&self) -> u32 {
        self()
    }
}

/// The system clock, in unix seconds (0 before 1970, saturating in 2106).
pub fn system_clock() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Validated mutations of prefixes and records over a [`Store`].
pub struct Registry {
    store: Arc<dyn Store>,
    clock: Box<dyn Clock>,
    /// This node's encoded HS_SITE, once known: written on the records of
    /// the prefixes it homes.
    own_site: RwLock<Option<Bytes>>,
    /// The change log's retention policy and the readers holding it.
    retention: RwLock<retention::Retention>,
    holds: Arc<retention::Holds>,
    registrations: RegistrationCounts,
}

/// What the registry counts of registrations: the identifiers a create
/// wrote (one, or the items of a batch), and how long each such call took
/// here (validation, the template, the durable commit), a batch being one
/// call. Kept in memory only, never in the store (whose change log is
/// replicated): the node's daily report samples them.
#[derive(Debug, Default)]
pub struct RegistrationCounts {
    pub registered: std::sync::atomic::AtomicU64,
    pub latency: idnode_core::latency::Latency,
}

impl RegistrationCounts {
    fn count(&self, written: u64, started: std::time::Instant) {
        if written == 0 {
            return;
        }
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.registered
            .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
        self.latency.record(ns);
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry writing to `store`, stamping values with the system
    /// clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, system_clock)
    }

    /// A registry stamping values with `clock` (a fixed or settable
    /// function in tests).
    pub fn with_clock(store: Arc<dyn Store>, clock: impl Clock) -> Self {
        Self {
            store,
            clock: Box::new(clock),
            own_site: RwLock::new(None),
            retention: RwLock::new(retention::Retention::default()),
            holds: Arc::default(),
            registrations: RegistrationCounts::default(),
        }
    }

    /// The store this registry writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> u32 {
        self.clock.now()
    }

    /// The registrations counted since the registry was made.
    pub fn registrations(&self) -> &RegistrationCounts {
        &self.registrations
    }

    fn own_site(&self) -> Option<Bytes> {
        self.own_site
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_own_site(&self, site: Bytes) {
        *self.own_site.write().unwrap_or_else(|p| p.into_inner()) = Some(site);
    }
}

/// Keeps only the values anyone may read: what an unauthenticated caller
/// is shown.
pub fn public_view(mut record: Record) -> Record {
    record.values.retain(|v| v.permissions.public_read());
    record
}
