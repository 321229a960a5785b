//! Metadata templates per prefix: kept on the prefix's entry in
//! `Space::Prefixes`, inherited by the prefixes below it that have none of
//! their own, and checked on every write of a record here (create,
//! overwrite, add, modify, remove, batch create), whichever surface asked.

use crate::error::{RegistryError, Result};
use crate::prefixes::decode_info;
use crate::txn::Txn;
use crate::{Registry, validate};
use bytes::Bytes;
use idnode_core::template::{Template, Violation};
use idnode_core::{Identifier, Prefix, PrefixInfo, Value};
use idnode_store::Space;
use std::sync::Arc;

/// The template that applies to a prefix, and the prefix that defines it
/// (the prefix itself, or the nearest prefix above it with a template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedTemplate {
    /// The prefix whose template this is, as it was created.
    pub prefix: String,
    pub template: Template,
}

/// Where a record's positions come from in an error: the request's values
/// are the record's (create), or the request sent these indexes in this
/// order (add, modify).
#[derive(Clone, Copy)]
pub(crate) enum Positions<'a> {
    /// Every value of the record is new; name it by its place in the
    /// request, `order` (its indexes as sent) when the request was not in
    /// index order.
    Record { order: Option<&'a [u32]> },
    /// Only the values at these indexes are new, sent in this order.
    Changed(&'a [u32]),
}

/// The request's index order when it is not already ascending (the
/// record sorts its values); `None` when it is, which costs nothing.
pub(crate) fn request_order(values: &[Value]) -> Option<Vec<u32>> {
    let sorted = values.windows(2).all(|w| w[0].index < w[1].index);
    (!sorted).then(|| values.iter().map(|v| v.index).collect())
}

/// The template applying to `prefix`, reading prefix entries with `get`:
/// its own, or the nearest ancestor's.
fn applying(
    mut get: impl FnMut(&[u8]) -> Result<Option<Bytes>>,
    prefix: &Prefix,
) -> Result<Option<Arc<AppliedTemplate>>> {
    let mut at = Some(prefix.clone());
    while let Some(p) = at {
        if let Some(bytes) = get(p.key().as_bytes())?
            && let Some(template) = decode_info(p.key().as_bytes(), &bytes)?.template
        {
            return Ok(Some(Arc::new(AppliedTemplate {
                prefix: p.as_str().to_owned(),
                template,
            })));
        }
        at = p.parent();
    }
    Ok(None)
}

/// The template that governs the record of `id`: none for a prefix record
/// (`0.NA/<prefix>`, the Handle system's own), else the one applying to
/// its prefix.
pub(crate) fn governing(
    txn: &mut Txn<'_>,
    id: &Identifier,
) -> Result<Option<Arc<AppliedTemplate>>> {
    if id.as_prefix_record().is_some() {
        return Ok(None);
    }
    applying(|key| txn.get(Space::Prefixes, key), &id.prefix_parsed())
}

impl AppliedTemplate {
    fn refusal(&self, id: &Identifier, field: String, violation: &Violation) -> RegistryError {
        RegistryError::invalid(
            field,
            format!(
                "identifier {id}: {} (template of prefix {})",
                violation.rule, self.prefix
            ),
        )
    }

    /// Checks a record about to be stored: its new values one by one, then
    /// the whole record's counts and required types. Errors name the value
    /// by its place in the request (`values[2].data`); a rule about a value
    /// that is not in the request, or one that is missing, names `values`.
    pub(crate) fn check(
        &self,
        id: &Identifier,
        record: &[Value],
        positions: Positions<'_>,
    ) -> Result<()> {
        let place = |index: u32| -> Option<usize> {
            match positions {
                Positions::Record { order: None } => record.iter().position(|v| v.index == index),
                Positions::Record { order: Some(order) } | Positions::Changed(order) => {
                    order.iter().position(|&i| i == index)
                }
            }
        };
        let field = |violation: &Violation| match violation.index.and_then(place) {
            Some(at) => format!("values[{at}].{}", violation.part),
            None => "values".to_owned(),
        };
        let judge = |value: &Value| {
            self.template
                .check_value(value)
                .map_err(|v| self.refusal(id, field(&v), &v))
        };
        match positions {
            Positions::Record { .. } => record.iter().try_for_each(judge)?,
            Positions::Changed(order) => {
                for index in order {
                    if let Some(value) = record.iter().find(|v| v.index == *index) {
                        judge(value)?;
                    }
                }
            }
        }
        self.template
            .check_counts(record)
            .map_err(|v| self.refusal(id, field(&v), &v))
    }

    /// Checks a record after values were removed from it (`removed`: the
    /// removed values, `indexes`: the request): a required type must keep
    /// a value. The error names the removed value (`indexes[1]`).
    pub(crate) fn check_removal(
        &self,
        id: &Identifier,
        record: &[Value],
        removed: &[Value],
        indexes: &[u32],
    ) -> Result<()> {
        self.template.check_counts(record).map_err(|v| {
            let removed_at = removed
                .iter()
                .filter(|r| r.kind.eq_ignore_ascii_case(&v.value_type))
                .find_map(|r| indexes.iter().position(|&i| i == r.index));
            let field = match removed_at {
                Some(at) => format!("indexes[{at}]"),
                None => "indexes".to_owned(),
            };
            self.refusal(id, field, &v)
        })
    }
}

impl Registry {
    /// Gives `prefix`, homed here, `template` as its own (replacing any it
    /// had). The prefixes below it without a template of their own inherit
    /// it. Records stored already are not re-checked: each is judged the
    /// next time it is written.
    pub fn set_template(&self, prefix: &str, template: Template) -> Result<PrefixInfo> {
        let prefix = validate::prefix(prefix, "prefix")?;
        template.validate().map_err(|e| {
            let field = match e.field.as_str() {
                "" => "template".to_owned(),
                f => format!("template.{f}"),
            };
            RegistryError::invalid(field, e.message)
        })?;
        self.change_template(&prefix, Some(template))
    }

    /// Removes the own template of `prefix`; it then inherits its parent's,
    /// if any. NOT_FOUND when it has none of its own.
    pub fn delete_template(&self, prefix: &str) -> Result<PrefixInfo> {
        let prefix = validate::prefix(prefix, "prefix")?;
        self.change_template(&prefix, None)
    }

    fn change_template(&self, prefix: &Prefix, template: Option<Template>) -> Result<PrefixInfo> {
        let key = prefix.key().as_bytes();
        let mut txn = Txn::begin(&*self.store)?;
        let Some(bytes) = txn.get(Space::Prefixes, key)? else {
            return Err(RegistryError::NotFound(format!(
                "prefix {prefix} not found"
            )));
        };
        let mut info = decode_info(key, &bytes)?;
        if !info.homed {
            return Err(RegistryError::FailedPrecondition(format!(
                "prefix {prefix} is delegated, not homed here: its identifiers are written \
                 elsewhere"
            )));
        }
        if template.is_none() && info.template.is_none() {
            return Err(RegistryError::NotFound(format!(
                "prefix {prefix} has no template of its own"
            )));
        }
        info.template = template;
        txn.put(Space::Prefixes, key, Bytes::from(info.encode()))?;
        txn.commit()?;
        Ok(info)
    }

    /// The template that applies to identifiers under `prefix`: its own,
    /// else the nearest one above it (`88.100.1`, then `88.100`, then
    /// `88`); `None` when no prefix on the way has one.
    pub fn template_for(&self, prefix: &str) -> Result<Option<AppliedTemplate>> {
        let prefix = validate::prefix(prefix, "prefix")?;
        let store = &*self.store;
        let found = applying(|key| Ok(store.get(Space::Prefixes, key)?), &prefix)?;
        Ok(found.map(Arc::unwrap_or_clone))
    }
}
