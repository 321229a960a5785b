//! Prefixes: which ones this node homes, and their `0.NA/<prefix>` records.

use crate::error::{RegistryError, Result};
use crate::txn::Txn;
use crate::{Registry, validate};
use bytes::Bytes;
use idnode_core::wire::{put_bytes, put_u32};
use idnode_core::{Identifier, Prefix, PrefixInfo, Record, Value};
use idnode_store::{Space, StoreError};

/// Index of the HS_ADMIN value that [`Registry::create_prefix`] writes.
pub const PREFIX_ADMIN_INDEX: u32 = 100;
/// Index of the admin's key value that the HS_ADMIN value names.
pub const PREFIX_ADMIN_KEY_INDEX: u32 = 200;
/// Every HS_ADMIN permission bit (add handle 0x1 ... list 0x800).
pub const ALL_ADMIN_PERMISSIONS: u16 = 0x0fff;

/// The type of the values that delegate a prefix to a site.
pub const SITE_PREFIX_TYPE: &str = "HS_SITE.PREFIX";

/// The prefix under which prefixes are identifiers (`0.NA/88.100`); the
/// same text as `idnode_core`'s private constant.
pub(crate) const PREFIX_AUTHORITY: &str = "0.NA";

/// The binary HS_ADMIN data (permission mask, admin identifier, admin
/// index), as docs/handle-protocol.md ("HS_ADMIN") describes it.
pub fn hs_admin_data(permissions: u16, admin: &str, admin_index: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 + admin.len() + 4);
    out.extend_from_slice(&permissions.to_be_bytes());
    put_bytes(&mut out, admin.as_bytes());
    put_u32(&mut out, admin_index);
    out
}

pub(crate) fn decode_info(key: &[u8], bytes: &[u8]) -> Result<PrefixInfo> {
    PrefixInfo::decode(bytes).map_err(|e| {
        let key = String::from_utf8_lossy(key);
        StoreError::Corrupt(format!("prefix {key}: {e}")).into()
    })
}

/// `0.NA` and the prefixes under it hold prefix records, not identifiers.
fn is_reserved(prefix: &Prefix) -> bool {
    Prefix::parse(PREFIX_AUTHORITY).is_ok_and(|authority| authority.contains(prefix))
}

/// Whether `prefix` is homed here, reading through `txn`.
pub(crate) fn is_homed(txn: &mut Txn<'_>, prefix: &Prefix) -> Result<bool> {
    match txn.get(Space::Prefixes, prefix.key().as_bytes())? {
        Some(bytes) => Ok(decode_info(prefix.key().as_bytes(), &bytes)?.homed),
        None => Ok(false),
    }
}

/// Refuses a write to `id` unless this node may write it: its prefix is
/// homed here, or, for a prefix record `0.NA/P`, P or an ancestor of P is.
pub(crate) fn check_writable(txn: &mut Txn<'_>, id: &Identifier) -> Result<()> {
    if let Some(named) = id.as_prefix_record() {
        let mut at = Some(named.clone());
        while let Some(prefix) = at {
            if is_homed(txn, &prefix)? {
                return Ok(());
            }
            at = prefix.parent();
        }
        return Err(RegistryError::FailedPrecondition(format!(
            "{id} is the record of prefix {named}, which is not homed here (nor is any \
             prefix above it)"
        )));
    }
    let prefix = id.prefix_parsed();
    if is_homed(txn, &prefix)? {
        Ok(())
    } else {
        Err(RegistryError::FailedPrecondition(format!(
            "prefix {prefix} is not homed on this node; create it first"
        )))
    }
}

impl Registry {
    /// Homes `prefix` here and writes its record `0.NA/<prefix>` with an
    /// HS_ADMIN value at index 100 naming `0.NA/<prefix>`:200 as its admin.
    pub fn create_prefix(&self, prefix: &str) -> Result<PrefixInfo> {
        let prefix = validate::prefix(prefix, "prefix")?;
        if is_reserved(&prefix) {
            return Err(RegistryError::invalid(
                "prefix",
                format!("prefix {prefix} is reserved: {PREFIX_AUTHORITY} holds prefix records"),
            ));
        }
        let now = self.now();
        let mut txn = Txn::begin(&*self.store)?;
        if txn.get(Space::Prefixes, prefix.key().as_bytes())?.is_some() {
            return Err(RegistryError::AlreadyExists(format!(
                "prefix {prefix} already exists"
            )));
        }
        let record_id = prefix.record_identifier();
        if txn
            .get(Space::Records, record_id.key().as_bytes())?
            .is_some()
        {
            return Err(RegistryError::AlreadyExists(format!(
                "prefix record {record_id} already exists; delete it before creating prefix \
                 {prefix}"
            )));
        }
        let info = PrefixInfo::homed_here(prefix.as_str(), now);
        let data = hs_admin_data(
            ALL_ADMIN_PERMISSIONS,
            record_id.as_str(),
            PREFIX_ADMIN_KEY_INDEX,
        );
        let mut admin = Value::new(PREFIX_ADMIN_INDEX, "HS_ADMIN", data);
        admin.timestamp = now;
        let mut record = Record {
            identifier: record_id.as_str().to_owned(),
            values: vec![admin],
            version: 0,
        };
        txn.put(
            Space::Prefixes,
            prefix.key().as_bytes(),
            Bytes::from(info.encode()),
        )?;
        txn.put_record(record_id.key(), &mut record)?;
        txn.commit()?;
        Ok(info)
    }

    /// Delegates `prefix` to other servers: writes its record
    /// `0.NA/<prefix>` with one `HS_SITE.PREFIX` value per site (`sites`
    /// holds encoded HS_SITE data, index 1, 2, ...; relative TTL `ttl`) and
    /// keeps the prefix as known but not homed, so that questions under it
    /// are referred (303) to those sites.
    ///
    /// A prefix above it must be homed here (the parent is what delegates);
    /// delegating a prefix again replaces its sites; a prefix homed here is
    /// refused (delete it first).
    pub fn delegate_prefix(&self, prefix: &str, sites: Vec<Bytes>, ttl: u32) -> Result<PrefixInfo> {
        let prefix = validate::prefix(prefix, "prefix")?;
        if is_reserved(&prefix) {
            return Err(RegistryError::invalid(
                "prefix",
                format!("prefix {prefix} is reserved: {PREFIX_AUTHORITY} holds prefix records"),
            ));
        }
        if sites.is_empty() {
            return Err(RegistryError::invalid(
                "sites",
                "a delegation needs at least one site",
            ));
        }
        let now = self.now();
        let mut txn = Txn::begin(&*self.store)?;
        let key = prefix.key().as_bytes();
        let created = match txn.get(Space::Prefixes, key)? {
            Some(bytes) => {
                let info = decode_info(key, &bytes)?;
                if info.homed {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "prefix {prefix} is homed on this node; delete it before delegating it"
                    )));
                }
                info.created
            }
            None => now,
        };
        let mut above = prefix.parent();
        loop {
            match above {
                Some(parent) if is_homed(&mut txn, &parent)? => break,
                Some(parent) => above = parent.parent(),
                None => {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "cannot delegate {prefix}: no prefix above it is homed on this node \
                         (home its parent first)"
                    )));
                }
            }
        }
        let info = PrefixInfo {
            prefix: prefix.as_str().to_owned(),
            homed: false,
            created,
        };
        let record_id = prefix.record_identifier();
        let mut values = Vec::with_capacity(sites.len());
        for (i, site) in sites.into_iter().enumerate() {
            let mut value = Value::new(i as u32 + 1, SITE_PREFIX_TYPE, site);
            value.timestamp = now;
            value.ttl = idnode_core::Ttl::Relative(ttl);
            values.push(value);
        }
        let mut record = Record {
            identifier: record_id.as_str().to_owned(),
            values,
            version: 0,
        };
        txn.put(Space::Prefixes, key, Bytes::from(info.encode()))?;
        txn.put_record(record_id.key(), &mut record)?;
        txn.commit()?;
        Ok(info)
    }

    /// What this node knows of `prefix`.
    pub fn get_prefix(&self, prefix: &str) -> Result<PrefixInfo> {
        let prefix = validate::prefix(prefix, "prefix")?;
        let key = prefix.key().as_bytes();
        match self.store.get(Space::Prefixes, key)? {
            Some(bytes) => decode_info(key, &bytes),
            None => Err(RegistryError::NotFound(format!(
                "prefix {prefix} not found"
            ))),
        }
    }

    /// Every prefix this node knows, in key order.
    pub fn list_prefixes(&self) -> Result<Vec<PrefixInfo>> {
        const CHUNK: usize = 1000;
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Space::Prefixes, b"", after.as_deref(), CHUNK)?;
            let full = page.len() == CHUNK;
            for (key, bytes) in &page {
                out.push(decode_info(key, bytes)?);
            }
            match page.into_iter().next_back() {
                Some((key, _)) if full => after = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// Deletes `prefix` and its record `0.NA/<prefix>`. Refused while any
    /// identifier remains under the prefix.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let prefix = validate::prefix(prefix, "prefix")?;
        let mut txn = Txn::begin(&*self.store)?;
        if txn.get(Space::Prefixes, prefix.key().as_bytes())?.is_none() {
            return Err(RegistryError::NotFound(format!(
                "prefix {prefix} not found"
            )));
        }
        // Transactions are serialized, so the store's state is the one this
        // transaction sees (it has staged nothing yet).
        let under = format!("{}/", prefix.key());
        if let Some((key, bytes)) = self
            .store
            .scan(Space::Records, under.as_bytes(), None, 1)?
            .into_iter()
            .next()
        {
            let key = String::from_utf8_lossy(&key).into_owned();
            let example = crate::txn::decode_record(&key, &bytes)?.identifier;
            return Err(RegistryError::FailedPrecondition(format!(
                "prefix {prefix} still holds identifiers (for example {example}); delete them \
                 first"
            )));
        }
        txn.delete(Space::Prefixes, prefix.key().as_bytes())?;
        txn.delete(Space::Records, prefix.record_identifier().key().as_bytes())?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn prefix_info_round_trips_and_rejects_garbage() {
        let info = PrefixInfo::homed_here("88.100.1", 1_700_000_000);
        assert_eq!(PrefixInfo::decode(&info.encode()).unwrap(), info);
        let bytes = info.encode();
        for cut in 0..bytes.len() {
            assert!(PrefixInfo::decode(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(PrefixInfo::decode(&long).is_err());
    }

    #[test]
    fn hs_admin_layout() {
        let data = hs_admin_data(0x0fff, "0.NA/88", 200);
        assert_eq!(&data[..2], &[0x0f, 0xff]);
        assert_eq!(&data[2..6], &7u32.to_be_bytes());
        assert_eq!(&data[6..13], b"0.NA/88");
        assert_eq!(&data[13..], &200u32.to_be_bytes());
    }

    #[test]
    fn reserved_prefixes() {
        assert!(is_reserved(&Prefix::parse("0.na").unwrap()));
        assert!(is_reserved(&Prefix::parse("0.NA.1").unwrap()));
        assert!(!is_reserved(&Prefix::parse("0").unwrap()));
        assert!(!is_reserved(&Prefix::parse("88").unwrap()));
    }
}
