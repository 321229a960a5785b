//! Bulk registration: many identifiers in one transaction and one commit.
//!
//! PERFORMANCE: this is the bulk path (a target of 100k identifiers/s in
//! batches of about 1000). Per batch it does one commit, one multi-get of
//! the existing records and one prefix lookup per distinct prefix; per item
//! it parses, validates, encodes and stages, and clones a record only when
//! the same identifier appears twice in the batch.

use crate::error::{RegistryError, Result};
use crate::prefixes::check_writable;
use crate::template::{self, AppliedTemplate, Positions};
use crate::txn::{Txn, decode_record};
use crate::{Registry, validate};
use idnode_core::{Identifier, Record, Value};
use idnode_store::Space;
use std::collections::HashMap;
use std::sync::Arc;

/// One item of [`Registry::batch_create`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchItem {
    pub identifier: String,
    pub values: Vec<Value>,
    /// Replace a different existing record instead of failing.
    pub overwrite: bool,
}

/// An item that passed the checks that need no store.
struct Prepared {
    at: usize,
    id: Identifier,
    record: Record,
    overwrite: bool,
    /// The item's index order, when it was not ascending.
    order: Option<Vec<u32>>,
}

type Checked = (Identifier, Record, bool, Option<Vec<u32>>);

fn prepare(item: BatchItem, now: u32) -> Result<Checked> {
    let id = validate::new_identifier(&item.identifier, "identifier")?;
    validate::values(&item.values)?;
    let order = template::request_order(&item.values);
    let mut record = Record {
        identifier: id.as_str().to_owned(),
        values: item.values,
        version: 0,
    };
    validate::stamp(&mut record.values, now);
    validate::record(&mut record)?;
    Ok((id, record, item.overwrite, order))
}

/// A batch checked without the store ([`Registry::prepare_batch`]),
/// waiting for [`Registry::commit_batch`].
pub struct PreparedBatch {
    started: std::time::Instant,
    results: Vec<Option<Result<Record>>>,
    prepared: Vec<Prepared>,
}

impl Registry {
    /// Creates many identifiers in one transaction with one durable commit,
    /// returning one result per item, in order.
    ///
    /// Each item is judged alone: a bad item fails alone. An item whose
    /// values equal the stored ones (timestamps aside) succeeds without a
    /// write, so a retried batch is idempotent; a different existing record
    /// is ALREADY_EXISTS unless the item sets `overwrite`. An identifier
    /// that appears twice is judged against what the earlier item left, as
    /// if the items were created one after the other.
    pub fn batch_create(&self, items: Vec<BatchItem>) -> Vec<Result<Record>> {
        self.commit_batch(self.prepare_batch(items))
    }

    /// The first half of [`batch_create`](Self::batch_create): the checks
    /// that need no store (identifier, values, encoding), which may run
    /// while an earlier batch commits.
    pub fn prepare_batch(&self, items: Vec<BatchItem>) -> PreparedBatch {
        let started = std::time::Instant::now();
        let now = self.now();
        let mut results: Vec<Option<Result<Record>>> = Vec::with_capacity(items.len());
        let mut prepared = Vec::with_capacity(items.len());
        for (at, item) in items.into_iter().enumerate() {
            match prepare(item, now) {
                Ok((id, record, overwrite, order)) => {
                    results.push(None);
                    prepared.push(Prepared {
                        at,
                        id,
                        record,
                        overwrite,
                        order,
                    });
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        PreparedBatch {
            started,
            results,
            prepared,
        }
    }

    /// The second half of [`batch_create`](Self::batch_create): judges the
    /// prepared items against the store and commits them.
    pub fn commit_batch(&self, batch: PreparedBatch) -> Vec<Result<Record>> {
        let PreparedBatch {
            started,
            mut results,
            prepared,
        } = batch;
        match self.write_batch(prepared, &mut results) {
            Ok(written) => self.registrations.count(written, started),
            Err(e) => {
                // Nothing was committed: every item that had not failed alone
                // fails with the store's error.
                for slot in &mut results {
                    match slot {
                        Some(Err(_)) => {}
                        _ => *slot = Some(Err(e.duplicate())),
                    }
                }
            }
        }
        results
            .into_iter()
            // Every slot is filled above: by `prepare`, by `write_batch`, or
            // by the batch-wide failure; an empty one would be a bug here.
            .map(|r| r.unwrap_or_else(|| Err(RegistryError::invalid("", "item was not judged"))))
            .collect()
    }

    /// Judges and stages every prepared item, then commits; returns how
    /// many records it wrote. An `Err` means the batch as a whole failed
    /// and nothing was written.
    fn write_batch(
        &self,
        prepared: Vec<Prepared>,
        results: &mut [Option<Result<Record>>],
    ) -> Result<u64> {
        if prepared.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        let mut txn = Txn::begin(&*self.store)?;
        // Transactions are serialized, so reading the store directly sees
        // the state this transaction started from; later items see earlier
        // ones through `staged`.
        let keys: Vec<&[u8]> = prepared.iter().map(|p| p.id.key().as_bytes()).collect();
        let stored = self.store.multi_get(Space::Records, &keys)?;
        let mut seen: HashMap<&str, u32> = HashMap::with_capacity(prepared.len());
        for p in &prepared {
            *seen.entry(p.id.key()).or_default() += 1;
        }
        let repeated: Vec<String> = seen
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(k, _)| k.to_owned())
            .collect();
        let mut staged: HashMap<String, Record> = HashMap::new();
        let mut prefixes: HashMap<String, Option<String>> = HashMap::new();
        let mut templates: HashMap<String, Option<Arc<AppliedTemplate>>> = HashMap::new();

        for (p, stored) in prepared.into_iter().zip(stored) {
            let Prepared {
                at,
                id,
                mut record,
                overwrite,
                order,
            } = p;
            if let Some(why) = writable(&mut txn, &mut prefixes, &id)? {
                results[at] = Some(Err(RegistryError::FailedPrecondition(why)));
                continue;
            }
            let current = match staged.get(id.key()) {
                Some(r) => Some(r.clone()),
                None => stored.map(|b| decode_record(id.key(), &b)).transpose()?,
            };
            let outcome = match current {
                Some(current) if validate::same_values(&current.values, &record.values) => {
                    Ok(current)
                }
                Some(_) if !overwrite => Err(RegistryError::AlreadyExists(format!(
                    "identifier {id} already exists with other values"
                ))),
                _ => {
                    let rules = governing(&mut txn, &mut templates, &id)?;
                    if let Some(rules) = rules {
                        let order = order.as_deref();
                        let checked = rules.check(&id, &record.values, Positions::Record { order });
                        if let Err(refused) = checked {
                            results[at] = Some(Err(refused));
                            continue;
                        }
                    }
                    txn.put_record(id.key(), &mut record)?;
                    written += 1;
                    if repeated.iter().any(|k| k == id.key()) {
                        staged.insert(id.key().to_owned(), record.clone());
                    }
                    Ok(record)
                }
            };
            results[at] = Some(outcome);
        }
        txn.commit()?;
        Ok(written)
    }
}

/// The template governing `id`, remembered per prefix (prefix records
/// have none).
fn governing(
    txn: &mut Txn<'_>,
    cache: &mut HashMap<String, Option<Arc<AppliedTemplate>>>,
    id: &Identifier,
) -> Result<Option<Arc<AppliedTemplate>>> {
    if id.as_prefix_record().is_some() {
        return Ok(None);
    }
    let prefix = id.prefix_parsed();
    if let Some(found) = cache.get(prefix.key()) {
        return Ok(found.clone());
    }
    let found = template::governing(txn, id)?;
    cache.insert(prefix.key().to_owned(), found.clone());
    Ok(found)
}

/// Whether `id` may be written here, remembering the answer per prefix.
/// `Ok(Some(why))` refuses this item alone; `Err` is a store failure.
fn writable(
    txn: &mut Txn<'_>,
    cache: &mut HashMap<String, Option<String>>,
    id: &Identifier,
) -> Result<Option<String>> {
    // Prefix records (`0.NA/P`) are judged per record, the rest per prefix.
    let cache_key = match id.as_prefix_record() {
        Some(_) => id.key().to_owned(),
        None => id.prefix_parsed().key().to_owned(),
    };
    if let Some(answer) = cache.get(&cache_key) {
        return Ok(answer.clone());
    }
    let answer = match check_writable(txn, id) {
        Ok(()) => None,
        Err(RegistryError::FailedPrecondition(why)) => Some(why),
        Err(e) => return Err(e),
    };
    cache.insert(cache_key, answer.clone());
    Ok(answer)
}
