//! Identifiers: create, read, change values, delete, list.

use crate::error::{RegistryError, Result};
use crate::prefixes::PREFIX_AUTHORITY;
use crate::prefixes::{check_writable, is_homed};
use crate::template::{self, Positions};
use crate::txn::{Txn, decode_record};
use crate::{Registry, validate};
use idnode_core::wire::RecordView;
use idnode_core::{Identifier, Record, Value};
use idnode_store::{Space, StoreError};

/// One page of [`Registry::list_identifiers`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Identifiers as registered, in key order.
    pub identifiers: Vec<String>,
    /// Pass it back for the next page; empty when there are no more.
    pub next_page_token: String,
}

fn not_found(id: &Identifier) -> RegistryError {
    RegistryError::NotFound(format!("identifier {id} not found"))
}

impl Registry {
    /// Creates `identifier` with `values` under a prefix homed here. With
    /// `overwrite`, an existing record is replaced; without, ALREADY_EXISTS.
    /// The record must satisfy the template that applies to its prefix.
    pub fn create_identifier(
        &self,
        identifier: &str,
        values: Vec<Value>,
        overwrite: bool,
    ) -> Result<Record> {
        let started = std::time::Instant::now();
        let created = self.create(identifier, values, overwrite);
        if created.is_ok() {
            self.registrations.count(1, started);
        }
        created
    }

    fn create(&self, identifier: &str, values: Vec<Value>, overwrite: bool) -> Result<Record> {
        let id = validate::new_identifier(identifier, "identifier")?;
        validate::values(&values)?;
        let order = template::request_order(&values);
        let mut record = Record {
            identifier: id.as_str().to_owned(),
            values,
            version: 0,
        };
        validate::stamp(&mut record.values, self.now());
        validate::record(&mut record)?;
        let mut txn = Txn::begin(&*self.store)?;
        check_writable(&mut txn, &id)?;
        if !overwrite && txn.get(Space::Records, id.key().as_bytes())?.is_some() {
            return Err(RegistryError::AlreadyExists(format!(
                "identifier {id} already exists"
            )));
        }
        if let Some(rules) = template::governing(&mut txn, &id)? {
            let order = order.as_deref();
            rules.check(&id, &record.values, Positions::Record { order })?;
        }
        txn.put_record(id.key(), &mut record)?;
        txn.commit()?;
        Ok(record)
    }

    /// The record of `identifier`, every value included (filter with
    /// [`crate::public_view`] for an unauthenticated caller).
    pub fn get_identifier(&self, identifier: &str) -> Result<Record> {
        let id = validate::identifier(identifier, "identifier")?;
        match self.store.get(Space::Records, id.key().as_bytes())? {
            Some(bytes) => decode_record(id.key(), &bytes),
            None => Err(not_found(&id)),
        }
    }

    /// Deletes `identifier`. A homed prefix's own record is deleted with
    /// the prefix ([`Registry::delete_prefix`]), not here.
    pub fn delete_identifier(&self, identifier: &str) -> Result<()> {
        let id = validate::identifier(identifier, "identifier")?;
        let mut txn = Txn::begin(&*self.store)?;
        if txn.get(Space::Records, id.key().as_bytes())?.is_none() {
            return Err(not_found(&id));
        }
        if let Some(prefix) = id.as_prefix_record()
            && is_homed(&mut txn, &prefix)?
        {
            return Err(RegistryError::FailedPrecondition(format!(
                "{id} is the record of prefix {prefix}, homed here; delete the prefix instead"
            )));
        }
        txn.delete(Space::Records, id.key().as_bytes())?;
        txn.commit()?;
        Ok(())
    }

    /// Adds `values` to `identifier`; ALREADY_EXISTS when an index is taken.
    pub fn add_values(&self, identifier: &str, values: Vec<Value>) -> Result<Record> {
        self.change_values(identifier, values, |id, record, mut values, now| {
            for (at, value) in values.iter_mut().enumerate() {
                if record.value(value.index).is_some() {
                    return Err(RegistryError::AlreadyExists(format!(
                        "identifier {id} already has a value at index {} (values[{at}])",
                        value.index
                    )));
                }
                value.timestamp = now;
            }
            record.values.extend(values);
            Ok(())
        })
    }

    /// Adds `values` to `identifier`, replacing the values at indexes it
    /// holds already (a Handle ADD_VALUE with OW). Returns the record and
    /// whether a value was replaced.
    pub fn put_values(&self, identifier: &str, values: Vec<Value>) -> Result<(Record, bool)> {
        let mut replaced = false;
        let record = self.change_values(identifier, values, |_, record, values, now| {
            for mut value in values {
                value.timestamp = now;
                match record.values.iter_mut().find(|v| v.index == value.index) {
                    Some(slot) => {
                        replaced = true;
                        *slot = value;
                    }
                    None => record.values.push(value),
                }
            }
            Ok(())
        })?;
        Ok((record, replaced))
    }

    /// Whether this node may write `identifier`: its prefix is homed here
    /// (for a prefix record `0.NA/P`, P or a prefix above it is).
    pub fn is_writable(&self, identifier: &str) -> Result<bool> {
        let id = validate::identifier(identifier, "identifier")?;
        let mut txn = Txn::begin(&*self.store)?;
        match check_writable(&mut txn, &id) {
            Ok(()) => Ok(true),
            Err(RegistryError::FailedPrecondition(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `prefix` is homed on this node.
    pub fn is_homed(&self, prefix: &str) -> Result<bool> {
        let prefix = validate::prefix(prefix, "prefix")?;
        let mut txn = Txn::begin(&*self.store)?;
        is_homed(&mut txn, &prefix)
    }

    /// Replaces values at their indexes; NOT_FOUND when an index is absent.
    pub fn modify_values(&self, identifier: &str, values: Vec<Value>) -> Result<Record> {
        self.change_values(identifier, values, |id, record, values, now| {
            for (at, mut value) in values.into_iter().enumerate() {
                let Some(slot) = record.values.iter_mut().find(|v| v.index == value.index) else {
                    return Err(RegistryError::NotFound(format!(
                        "identifier {id} has no value at index {} (values[{at}])",
                        value.index
                    )));
                };
                value.timestamp = now;
                *slot = value;
            }
            Ok(())
        })
    }

    /// Removes the values at `indexes`; NOT_FOUND when an index is absent.
    /// The last value of a type the prefix's template requires stays.
    pub fn remove_values(&self, identifier: &str, indexes: &[u32]) -> Result<Record> {
        let id = validate::identifier(identifier, "identifier")?;
        if indexes.is_empty() {
            return Err(RegistryError::invalid("indexes", "no indexes given"));
        }
        let mut txn = Txn::begin(&*self.store)?;
        let mut record = txn.record(id.key())?.ok_or_else(|| not_found(&id))?;
        for (at, index) in indexes.iter().enumerate() {
            if record.value(*index).is_none() && !indexes[..at].contains(index) {
                return Err(RegistryError::NotFound(format!(
                    "identifier {id} has no value at index {index} (indexes[{at}])"
                )));
            }
        }
        let (removed, kept) = std::mem::take(&mut record.values)
            .into_iter()
            .partition(|v| indexes.contains(&v.index));
        record.values = kept;
        if let Some(rules) = template::governing(&mut txn, &id)? {
            rules.check_removal(&id, &record.values, &removed, indexes)?;
        }
        txn.put_record(id.key(), &mut record)?;
        txn.commit()?;
        Ok(record)
    }

    /// The shared path of [`Self::add_values`] and [`Self::modify_values`]:
    /// check the new values, apply `change` to the stored record, check the
    /// result (limits, then the template), write it.
    fn change_values(
        &self,
        identifier: &str,
        values: Vec<Value>,
        change: impl FnOnce(&Identifier, &mut Record, Vec<Value>, u32) -> Result<()>,
    ) -> Result<Record> {
        let id = validate::identifier(identifier, "identifier")?;
        if values.is_empty() {
            return Err(RegistryError::invalid("values", "no values given"));
        }
        validate::values(&values)?;
        let now = self.now();
        let order: Vec<u32> = values.iter().map(|v| v.index).collect();
        let mut txn = Txn::begin(&*self.store)?;
        let mut record = txn.record(id.key())?.ok_or_else(|| not_found(&id))?;
        change(&id, &mut record, values, now)?;
        validate::record(&mut record)?;
        if let Some(rules) = template::governing(&mut txn, &id)? {
            rules.check(&id, &record.values, Positions::Changed(&order))?;
        }
        txn.put_record(id.key(), &mut record)?;
        txn.commit()?;
        Ok(record)
    }

    /// Every record under `prefix` (its identifiers and those of the
    /// prefixes below it) or, with `None`, every record of the store, in
    /// key order, read from one snapshot: `each` gets them `page` at a time
    /// with the snapshot's sequence number, and stops the export by
    /// returning false. Returns that sequence number.
    pub fn export(
        &self,
        prefix: Option<&str>,
        page: usize,
        mut each: impl FnMut(u64, Vec<Record>) -> bool,
    ) -> Result<u64> {
        let prefix = prefix.map(|p| validate::prefix(p, "prefix")).transpose()?;
        let snapshot = self.store.snapshot()?;
        let sequence = snapshot.sequence();
        let scanned = prefix.as_ref().map_or(&b""[..], |p| p.key().as_bytes());
        let page = page.max(1);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = snapshot.scan(Space::Records, scanned, after.as_deref(), page)?;
            let Some((last, _)) = rows.last() else {
                return Ok(sequence);
            };
            after = Some(last.clone());
            let full = rows.len() == page;
            let mut records = Vec::with_capacity(rows.len());
            for (key, bytes) in rows {
                let key = String::from_utf8_lossy(&key);
                if let Some(prefix) = &prefix {
                    // The scan also finds 88.100.10/... for 88.100.1.
                    let own = key.split_once('/').map_or(&*key, |(p, _)| p);
                    let below = own
                        .strip_prefix(prefix.key())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
                    if !below {
                        continue;
                    }
                }
                records.push(decode_record(&key, &bytes)?);
            }
            if !records.is_empty() && !each(sequence, records) {
                return Ok(sequence);
            }
            if !full {
                return Ok(sequence);
            }
        }
    }

    /// Identifiers under `prefix`, in key order, `page_size` at a time (0
    /// means 100, at most 1000). `page_token` is empty for the first page,
    /// then the previous page's `next_page_token`.
    pub fn list_identifiers(&self, prefix: &str, page_size: u32, page_token: &str) -> Result<Page> {
        let prefix = validate::prefix(prefix, "prefix")?;
        let is_authority = prefix.key().eq_ignore_ascii_case(PREFIX_AUTHORITY);
        if !is_authority
            && self
                .store
                .get(Space::Prefixes, prefix.key().as_bytes())?
                .is_none()
        {
            return Err(RegistryError::NotFound(format!(
                "prefix {prefix} not found"
            )));
        }
        let under = format!("{}/", prefix.key());
        let after = match page_token {
            "" => None,
            token => {
                let key = hex::decode(token).map_err(|_| {
                    RegistryError::invalid("page_token", "not a token this node issued")
                })?;
                if !key.starts_with(under.as_bytes()) {
                    return Err(RegistryError::invalid(
                        "page_token",
                        format!("the token belongs to another listing than prefix {prefix}"),
                    ));
                }
                Some(key)
            }
        };
        let size = validate::page_size(page_size);
        let mut rows =
            self.store
                .scan(Space::Records, under.as_bytes(), after.as_deref(), size + 1)?;
        let more = rows.len() > size;
        rows.truncate(size);
        let mut page = Page {
            identifiers: Vec::with_capacity(rows.len()),
            next_page_token: String::new(),
        };
        for (key, bytes) in &rows {
            let view = RecordView::parse(bytes).map_err(|e| {
                let key = String::from_utf8_lossy(key);
                RegistryError::from(StoreError::Corrupt(format!("record {key}: {e}")))
            })?;
            page.identifiers.push(view.identifier.to_owned());
        }
        if more && let Some((last, _)) = rows.last() {
            page.next_page_token = hex::encode(last);
        }
        Ok(page)
    }
}
