//! How long the change log keeps what it holds.
//!
//! The change log keeps a full copy of every version of every record,
//! deleted ones and private values included: it feeds IXFR, mirrors and
//! the audit trail. A change leaves it once it is older than
//! [`Retention::hours`], is not among the newest [`Retention::min_entries`]
//! (what IXFR answers from, so a secondary a few writes behind still gets
//! differences) and is no longer needed by a mirror following the log (a
//! [`LogHold`]). The store then drops it from its files, and with it the
//! values no record holds any more ([`idnode_store::Store::trim_changes`]).
//! The newest change always stays: its number is the store's sequence.

use crate::Registry;
use crate::audit::Origin;
use idnode_store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The retention policy of the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Changes younger than this many hours stay.
    pub hours: u32,
    /// The newest this many changes stay, however old.
    pub min_entries: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hours: 72,
            min_entries: 10_000,
        }
    }
}

/// What one pass of [`Registry::trim_change_log`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Change-log entries removed.
    pub removed: u64,
    /// The oldest change left (0 when the log is empty).
    pub first_left: u64,
}

/// The positions of the readers that still need the log (mirrors): no
/// change above the lowest is trimmed.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    next: AtomicU64,
    at: Mutex<HashMap<u64, u64>>,
}

/// A reader's claim on the change log after a sequence number; released
/// when dropped.
#[derive(Debug)]
pub struct LogHold {
    holds: Arc<Holds>,
    id: u64,
}

impl LogHold {
    /// The reader has applied everything up to `sequence`: changes up to
    /// it may go.
    pub fn advance(&self, sequence: u64) {
        let mut at = self.holds.at.lock().unwrap_or_else(|e| e.into_inner());
        at.insert(self.id, sequence);
    }
}

impl Drop for LogHold {
    fn drop(&mut self) {
        let mut at = self.holds.at.lock().unwrap_or_else(|e| e.into_inner());
        at.remove(&self.id);
    }
}

/// Changes read at a time while looking for the first young one.
const PAGE: usize = 1024;

impl Registry {
    /// Sets the change log's retention policy (the default until then).
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.write().unwrap_or_else(|e| e.into_inner()) = retention;
    }

    pub fn retention(&self) -> Retention {
        *self.retention.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps every change after `after` in the log until the hold is
    /// advanced or dropped.
    pub fn hold_change_log(&self, after: u64) -> LogHold {
        let id = self.holds.next.fetch_add(1, Ordering::Relaxed);
        let hold = LogHold {
            holds: self.holds.clone(),
            id,
        };
        hold.advance(after);
        hold
    }

    /// Removes the changes the policy no longer keeps (blocking: store
    /// reads, then the engine's trim and compaction of what went).
    pub fn trim_change_log(&self) -> Result<Trimmed, StoreError> {
        let store = self.store();
        let policy = self.retention();
        let last = store.last_sequence();
        let mut limit = last
            .saturating_sub(1)
            .min(last.saturating_sub(policy.min_entries));
        let held = {
            let at = self.holds.at.lock().unwrap_or_else(|e| e.into_inner());
            at.values().copied().min()
        };
        if let Some(held) = held {
            limit = limit.min(held);
        }
        let cutoff = u64::from(self.clock.now()).saturating_sub(u64::from(policy.hours) * 3600);
        // The last change up to `limit` older than the cutoff, walking from
        // the oldest: the log is in time order (changes without an origin,
        // such as seeded data, count as old).
        let mut upto = 0;
        let mut after = store.first_sequence()?.saturating_sub(1);
        'pages: while after < limit {
            let page = store.changes_since(after, PAGE)?;
            let Some(end) = page.last().map(|c| c.sequence) else {
                break;
            };
            for change in &page {
                if change.sequence > limit {
                    break 'pages;
                }
                let time = change
                    .origin
                    .as_deref()
                    .and_then(Origin::decode)
                    .map_or(0, |o| o.time);
                if time > cutoff {
                    break 'pages;
                }
                upto = change.sequence;
            }
            after = end;
        }
        let removed = if upto > 0 {
            store.trim_changes(upto)?
        } else {
            0
        };
        Ok(Trimmed {
            removed,
            first_left: store.first_sequence()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use idnode_store::{MemoryStore, Space, Store};
    use std::sync::atomic::AtomicU32;

    const HOUR: u64 = 3600;

    /// A registry whose store holds changes 1 to 10, change `i` made at
    /// hour `i`, and whose clock reads hour 10.
    fn registry() -> Registry {
        let store = Arc::new(MemoryStore::new());
        for i in 1..=10u64 {
            let mut txn = store.begin().unwrap();
            let origin = Origin {
                time: i * HOUR,
                actor: "test".into(),
                surface: "grpc".into(),
                address: "127.0.0.1".into(),
            };
            txn.set_origin(origin.encode());
            txn.put(Space::Records, b"88/A", Bytes::from(vec![i as u8; 4]));
            txn.commit().unwrap();
        }
        let now = Arc::new(AtomicU32::new((10 * HOUR) as u32));
        Registry::with_clock(store, move || now.load(Ordering::Relaxed))
    }

    #[test]
    fn trims_what_is_old_beyond_the_newest_and_not_held() {
        let r = registry();
        r.set_retention(Retention {
            hours: 3,
            min_entries: 2,
        });
        // Hours 1 to 7 are 3 hours old or more; 9 and 10 are the newest two.
        let hold = r.hold_change_log(3);
        assert_eq!(
            r.trim_change_log().unwrap(),
            Trimmed {
                removed: 3,
                first_left: 4
            }
        );
        hold.advance(5);
        assert_eq!(r.trim_change_log().unwrap().first_left, 6);
        drop(hold);
        assert_eq!(
            r.trim_change_log().unwrap(),
            Trimmed {
                removed: 2,
                first_left: 8
            }
        );
        // Nothing more is old enough.
        assert_eq!(r.trim_change_log().unwrap().removed, 0);
        r.set_retention(Retention {
            hours: 0,
            min_entries: 0,
        });
        // Everything is old now, but the newest change stays.
        assert_eq!(r.trim_change_log().unwrap().first_left, 10);
        assert_eq!(r.store().last_sequence(), 10);
    }

    #[test]
    fn the_newest_entries_stay_however_old() {
        let r = registry();
        r.set_retention(Retention {
            hours: 0,
            min_entries: 6,
        });
        assert_eq!(r.trim_change_log().unwrap().first_left, 5);
    }
}
