//! Quotas: the most identifiers a token may create.
//!
//! A token's count of created identifiers is kept in the meta key space
//! (`token_count/<id>`) and raised after each successful create. The
//! creates of one token with a quota run one at a time on this server (a
//! lock per token, held from reading the count to writing it back), so
//! concurrent calls cannot pass the quota together. An identifier counts
//! when it did not exist before the call (items that exist already, even
//! when overwritten, do not); an item forwarded to another server of the
//! site counts when it succeeds.

use crate::auth::{Auth, Grant};
use crate::tokens;
use idnode_store::{Space, Store};
use std::sync::Arc;
use tokio::sync::OwnedMutexGuard;
use tonic::Status;

/// The quota of one token, held for the length of one create call.
pub(crate) struct Quota {
    _turn: OwnedMutexGuard<()>,
    id: String,
    max: u64,
    used: u64,
    store: Arc<dyn Store>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "quota bookkeeping failed");
    Status::internal("cannot read the token's quota; the node's log has the details")
}

impl Quota {
    /// For a grant with a quota: waits until the token's other creates are
    /// done, then reads its count. `None` for a grant without a quota.
    pub(crate) async fn acquire(
        auth: &Auth,
        grant: &Grant,
        store: &Arc<dyn Store>,
    ) -> Result<Option<Self>, Status> {
        let Some(max) = grant.max_identifiers() else {
            return Ok(None);
        };
        let turn = auth.quota_lock(grant.id()).lock_owned().await;
        let (reader, id) = (Arc::clone(store), grant.id().to_owned());
        let used = tokio::task::spawn_blocking(move || tokens::created_count(&*reader, &id))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(Some(Self {
            _turn: turn,
            id: grant.id().to_owned(),
            max,
            used,
            store: Arc::clone(store),
        }))
    }

    /// How many more identifiers the token may create.
    pub(crate) fn left(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Why a create beyond the quota is refused.
    pub(crate) fn message(&self) -> String {
        format!(
            "token {} reached its quota of {} identifiers ({} created)",
            self.id, self.max, self.used
        )
    }

    /// RESOURCE_EXHAUSTED, with [`Quota::message`].
    pub(crate) fn exhausted(&self) -> Status {
        Status::resource_exhausted(self.message())
    }

    /// Adds `created` identifiers to the stored count and lets the token's
    /// next create go. A failure to write is logged (the identifiers are
    /// created; the count stays behind by them).
    pub(crate) async fn add(self, created: u64) {
        if created == 0 {
            return;
        }
        let (store, id) = (Arc::clone(&self.store), self.id.clone());
        let written =
            tokio::task::spawn_blocking(move || tokens::add_created(&*store, &id, created)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, token = self.id, created, "cannot count created identifiers")
            }
            Err(e) => {
                tracing::error!(error = %e, token = self.id, created, "cannot count created identifiers")
            }
        }
    }
}

/// Whether each record key is absent from `store` (one multi-get, on a
/// blocking thread).
pub(crate) async fn absent(store: &Arc<dyn Store>, keys: Vec<String>) -> Result<Vec<bool>, Status> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        store
            .multi_get(Space::Records, &keys)
            .map(|found| found.iter().map(Option::is_none).collect())
    })
    .await
    .map_err(internal)?
    .map_err(internal)
}
