//! Prefixes: which ones this node homes, and their `0.NA/<prefix>` records.

use crate::error::{RegistryError, Result};
use crate::txn::Txn;
use crate::{Registry, validate};
use bytes::Bytes;
use idnode_core::{Identifier, Prefix, PrefixInfo, Record, Value};
use idnode_store::{Space, StoreError};

/// Index of the HS_ADMIN value that [`Registry::create_prefix`] writes.
pub const PREFIX_ADMIN_INDEX: u32 = 100;
/// Index of the admin's key value that the HS_ADMIN value names.
pub const PREFIX_ADMIN_KEY_INDEX: u32 = 200;
/// Every HS_ADMIN permission bit (add handle 0x1 ... list 0x800).
pub const ALL_ADMIN_PERMISSIONS: u16 = 0x0fff;

/// The type of the values that delegate the prefixes below a prefix (its
/// derived prefixes, `0.NA/88.100.*`) to a site: what a parent's 303
/// referral carries.
pub const SITE_PREFIX_TYPE: &str = "HS_SITE.PREFIX";
/// The type of the values that name the site homing a prefix: what a
/// client that looked the prefix record up asks for.
pub const SITE_TYPE: &str = "HS_SITE";
/// The type of the value that names a service handle holding the sites of
/// a prefix.
pub const SERVICE_TYPE: &str = "HS_SERV";
/// The type of the value that names a service handle holding the sites of
/// the prefixes below a prefix.
pub const SERVICE_PREFIX_TYPE: &str = "HS_SERV.PREFIX";
/// Index of the HS_SITE value this node keeps on the records of the
/// prefixes it homes (its own site).
pub const OWN_SITE_INDEX: u32 = 1;

/// The prefix under which prefixes are identifiers (`0.NA/88.100`); the
/// same text as `idnode_core`'s private constant.
pub(crate) const PREFIX_AUTHORITY: &str = "0.NA";

/// The binary HS_ADMIN data (permission mask, admin identifier, admin
/// index), as docs/handle-protocol.md ("HS_ADMIN") describes it.
pub fn hs_admin_data(permissions: u16, admin: &str, admin_index: u32) -> Vec<u8> {
    idnode_handle::admin::HsAdmin {
        permissions: idnode_handle::admin::AdminPerms(permissions),
        admin: idnode_handle::admin::AdminRef::new(admin, admin_index),
        legacy: false,
    }
    .encode()
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
    /// HS_ADMIN value at index 100 naming `0.NA/<prefix>`:200 as its admin
    /// and, once the node's site is known ([`Registry::publish_site`]),
    /// this node's HS_SITE at index 1.
    pub fn create_prefix(&self, prefix: &str) -> Result<PrefixInfo> {
        let prefix = validate::new_prefix(prefix, "prefix")?;
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
        let mut values = vec![admin];
        if let Some(site) = self.own_site() {
            let mut own = Value::new(OWN_SITE_INDEX, SITE_TYPE, site);
            own.timestamp = now;
            values.insert(0, own);
        }
        let mut record = Record {
            identifier: record_id.as_str().to_owned(),
            values,
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
    /// `0.NA/<prefix>` as the global Handle system keeps it, with each site
    /// (`sites` holds encoded HS_SITE data) twice: as an `HS_SITE` value
    /// (indexes 1 to n: the sites homing the prefix, what a client that
    /// looks the record up uses) and as an `HS_SITE.PREFIX` value (n+1 to
    /// 2n: the sites of the prefixes below it, what a 303 referral for
    /// them carries); relative TTL `ttl`. The prefix stays known but not
    /// homed here.
    ///
    /// A prefix above it must be homed here (the parent is what delegates);
    /// delegating a prefix again replaces its sites; a prefix homed here is
    /// refused (delete it first).
    pub fn delegate_prefix(&self, prefix: &str, sites: Vec<Bytes>, ttl: u32) -> Result<PrefixInfo> {
        if sites.is_empty() {
            return Err(RegistryError::invalid(
                "sites",
                "a delegation needs at least one site",
            ));
        }
        let now = self.now();
        let values = delegation_values(&sites, idnode_core::Ttl::Relative(ttl), now);
        self.delegate(prefix, values)
    }

    /// Delegates `prefix` through a service handle (`88.100/SERVICE-1`),
    /// whose record holds the sites: `0.NA/<prefix>` gets an `HS_SERV`
    /// value (index 1, for the prefix itself) and an `HS_SERV.PREFIX` value
    /// (index 2, for the prefixes below it) naming it; relative TTL `ttl`.
    /// Clients resolve the service handle for its HS_SITE values. The same
    /// rules as [`Registry::delegate_prefix`] apply.
    pub fn delegate_prefix_to_service(
        &self,
        prefix: &str,
        service: &str,
        ttl: u32,
    ) -> Result<PrefixInfo> {
        let service = Identifier::parse(service.trim()).map_err(|e| {
            RegistryError::invalid("service", format!("`{service}` is not an identifier: {e}"))
        })?;
        let now = self.now();
        let values = [(1, SERVICE_TYPE), (2, SERVICE_PREFIX_TYPE)]
            .into_iter()
            .map(|(index, kind)| {
                let mut value = Value::new(index, kind, Bytes::from(service.as_str().to_owned()));
                value.timestamp = now;
                value.ttl = idnode_core::Ttl::Relative(ttl);
                value
            })
            .collect();
        self.delegate(prefix, values)
    }

    /// Writes a delegation of `prefix` with `values` on its record.
    fn delegate(&self, prefix: &str, values: Vec<Value>) -> Result<PrefixInfo> {
        let prefix = validate::new_prefix(prefix, "prefix")?;
        if is_reserved(&prefix) {
            return Err(RegistryError::invalid(
                "prefix",
                format!("prefix {prefix} is reserved: {PREFIX_AUTHORITY} holds prefix records"),
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
            template: None,
        };
        let record_id = prefix.record_identifier();
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

    /// Makes the prefix records agree with this node's site (`site`: its
    /// encoded HS_SITE) and with the way delegations are kept: the record
    /// of each prefix homed here gets `site` as its HS_SITE at index 1
    /// (added, or replaced when it differs; an index 1 holding another type
    /// is left alone), and a delegation stored with HS_SITE.PREFIX values
    /// only is rewritten with an HS_SITE copy of each. Remembers `site` for
    /// the prefixes created from now on. Run at start, once the listeners
    /// are bound; one transaction a changed record.
    pub fn publish_site(&self, site: &[u8]) -> Result<SiteSync> {
        self.set_own_site(Bytes::copy_from_slice(site));
        let mut done = SiteSync::default();
        for info in self.list_prefixes()? {
            let Ok(prefix) = Prefix::parse(&info.prefix) else {
                continue;
            };
            let record_id = prefix.record_identifier();
            let mut txn = Txn::begin(&*self.store)?;
            let Some(mut record) = txn.record(record_id.key())? else {
                continue;
            };
            let changed = if info.homed {
                own_site_value(&mut record.values, site, self.now())
            } else {
                migrate_delegation(&mut record.values)
            };
            if changed {
                txn.put_record(record_id.key(), &mut record)?;
                txn.commit()?;
                if info.homed {
                    done.homed += 1;
                } else {
                    done.delegations += 1;
                }
            }
        }
        Ok(done)
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

/// What [`Registry::publish_site`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteSync {
    /// Records of prefixes homed here whose HS_SITE was added or replaced.
    pub homed: usize,
    /// Delegations rewritten with HS_SITE values.
    pub delegations: usize,
}

/// The values of a delegation to `sites`: HS_SITE at 1..=n, HS_SITE.PREFIX
/// at n+1..=2n, the same site data in the same order.
fn delegation_values(sites: &[Bytes], ttl: idnode_core::Ttl, now: u32) -> Vec<Value> {
    let n = sites.len() as u32;
    let mut values = Vec::with_capacity(sites.len() * 2);
    for (kind, first) in [(SITE_TYPE, 1), (SITE_PREFIX_TYPE, n + 1)] {
        for (i, site) in sites.iter().enumerate() {
            let mut value = Value::new(first + i as u32, kind, site.clone());
            value.timestamp = now;
            value.ttl = ttl;
            values.push(value);
        }
    }
    values
}

/// Sets `site` as the HS_SITE at [`OWN_SITE_INDEX`]; true when it changed.
fn own_site_value(values: &mut Vec<Value>, site: &[u8], now: u32) -> bool {
    match values.iter_mut().find(|v| v.index == OWN_SITE_INDEX) {
        Some(v) if v.kind.eq_ignore_ascii_case(SITE_TYPE) => {
            if v.data.as_ref() == site {
                return false;
            }
            v.data = Bytes::copy_from_slice(site);
            v.timestamp = now;
            true
        }
        // Index 1 holds something an administrator put there.
        Some(_) => false,
        None => {
            let mut own = Value::new(OWN_SITE_INDEX, SITE_TYPE, Bytes::copy_from_slice(site));
            own.timestamp = now;
            values.push(own);
            values.sort_by_key(|v| v.index);
            true
        }
    }
}

/// Rewrites a delegation kept as HS_SITE.PREFIX values only into the form
/// of [`delegation_values`] (timestamps and TTL kept); true when it did.
fn migrate_delegation(values: &mut Vec<Value>) -> bool {
    let is = |v: &Value, kind: &str| v.kind.eq_ignore_ascii_case(kind);
    if values.iter().any(|v| is(v, SITE_TYPE)) {
        return false;
    }
    let prefix_sites: Vec<&Value> = values.iter().filter(|v| is(v, SITE_PREFIX_TYPE)).collect();
    let Some(first) = prefix_sites.first() else {
        return false;
    };
    let (ttl, now) = (first.ttl, first.timestamp);
    let sites: Vec<Bytes> = prefix_sites.iter().map(|v| v.data.clone()).collect();
    let others: Vec<Value> = values
        .iter()
        .filter(|v| !is(v, SITE_PREFIX_TYPE))
        .cloned()
        .collect();
    let mut rebuilt = delegation_values(&sites, ttl, now);
    let taken: Vec<u32> = rebuilt.iter().map(|v| v.index).collect();
    let mut next = taken.iter().max().copied().unwrap_or(0) + 1;
    for mut v in others {
        if taken.contains(&v.index) {
            v.index = next;
            next += 1;
        }
        rebuilt.push(v);
    }
    rebuilt.sort_by_key(|v| v.index);
    *values = rebuilt;
    true
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
    fn an_old_delegation_gains_hs_site_copies_and_keeps_its_other_values() {
        let mut a = Value::new(1, SITE_PREFIX_TYPE, Bytes::from_static(b"site-a"));
        a.ttl = idnode_core::Ttl::Relative(60);
        let mut b = a.clone();
        b.index = 2;
        b.data = Bytes::from_static(b"site-b");
        let note = Value::new(3, "DESC", Bytes::from_static(b"x"));
        let mut values = vec![a, b, note];
        assert!(migrate_delegation(&mut values));
        let seen: Vec<(u32, &str, &[u8])> = values
            .iter()
            .map(|v| (v.index, v.kind.as_str(), v.data.as_ref()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, SITE_TYPE, &b"site-a"[..]),
                (2, SITE_TYPE, b"site-b"),
                (3, SITE_PREFIX_TYPE, b"site-a"),
                (4, SITE_PREFIX_TYPE, b"site-b"),
                (5, "DESC", b"x"),
            ]
        );
        assert!(
            values
                .iter()
                .all(|v| v.kind == "DESC" || v.ttl == idnode_core::Ttl::Relative(60))
        );
        // Already migrated: left alone.
        assert!(!migrate_delegation(&mut values));
    }

    #[test]
    fn the_own_site_is_added_replaced_or_left_to_the_administrator() {
        let mut values = vec![Value::new(100, "HS_ADMIN", Bytes::from_static(b"a"))];
        assert!(own_site_value(&mut values, b"s1", 5));
        assert_eq!(values[0].index, OWN_SITE_INDEX);
        assert_eq!(values[0].data.as_ref(), b"s1");
        assert!(!own_site_value(&mut values, b"s1", 6));
        assert!(own_site_value(&mut values, b"s2", 7));
        assert_eq!(values[0].data.as_ref(), b"s2");
        let mut custom = vec![Value::new(1, "URL", Bytes::from_static(b"u"))];
        assert!(!own_site_value(&mut custom, b"s1", 5));
        assert_eq!(custom.len(), 1);
    }

    #[test]
    fn reserved_prefixes() {
        assert!(is_reserved(&Prefix::parse("0.na").unwrap()));
        assert!(is_reserved(&Prefix::parse("0.NA.1").unwrap()));
        assert!(!is_reserved(&Prefix::parse("0").unwrap()));
        assert!(!is_reserved(&Prefix::parse("88").unwrap()));
    }
}
