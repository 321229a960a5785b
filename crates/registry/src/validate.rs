//! Checks of what a caller asks to write, with errors that name the field.

use crate::error::{RegistryError, Result};
use idnode_core::text::check_text;
use idnode_core::{Error as CoreError, Identifier, Prefix, Record, Value};
use std::collections::HashMap;

/// Parses an identifier; errors name the field `field`.
pub(crate) fn identifier(text: &str, field: &str) -> Result<Identifier> {
    Identifier::parse(text).map_err(|e| RegistryError::invalid(field, e))
}

/// Parses an identifier about to be created: the write rules of
/// [`Identifier::check_new`] too (no control, invisible or bidi-control
/// character, an ASCII prefix). Operations on an identifier
/// that exists use [`identifier`]: one stored before these rules can still
/// be read, changed and deleted.
pub(crate) fn new_identifier(text: &str, field: &str) -> Result<Identifier> {
    let id = identifier(text, field)?;
    id.check_new()
        .map_err(|e| RegistryError::invalid(field, e))?;
    Ok(id)
}

/// Parses a prefix; errors name the field `field`.
pub(crate) fn prefix(text: &str, field: &str) -> Result<Prefix> {
    Prefix::parse(text).map_err(|e| RegistryError::invalid(field, e))
}

/// Parses a prefix about to be created or delegated: it must be ASCII
/// ([`Prefix::check_new`]).
pub(crate) fn new_prefix(text: &str, field: &str) -> Result<Prefix> {
    let prefix = prefix(text, field)?;
    prefix
        .check_new()
        .map_err(|e| RegistryError::invalid(field, e))?;
    Ok(prefix)
}

/// The name of the field of a value that a core error is about.
fn value_field(error: &CoreError) -> &'static str {
    match error {
        CoreError::ZeroIndex => "index",
        CoreError::EmptyType
        | CoreError::TypeTooLong(_)
        | CoreError::ForbiddenCharacter("value type", _) => "type",
        CoreError::DataTooLarge(_) => "data",
        CoreError::TooManyReferences(_) => "references",
        _ => "",
    }
}

/// Checks each value alone, in the order the caller sent them, so an error
/// names the value by its position: `values[3].data`.
pub(crate) fn values(values: &[Value]) -> Result<()> {
    if values.len() > idnode_core::limits::MAX_VALUES {
        return Err(RegistryError::invalid(
            "values",
            CoreError::TooManyValues(values.len()),
        ));
    }
    let mut seen: HashMap<u32, usize> = HashMap::with_capacity(values.len());
    for (at, value) in values.iter().enumerate() {
        if let Err(e) = value.validate() {
            let field = match value_field(&e) {
                "" => format!("values[{at}]"),
                name => format!("values[{at}].{name}"),
            };
            return Err(RegistryError::invalid(field, e));
        }
        for (r, reference) in value.references.iter().enumerate() {
            if let Err(e) = Identifier::parse(&reference.identifier)
                .and_then(|_| check_text("identifier", &reference.identifier))
            {
                return Err(RegistryError::invalid(
                    format!("values[{at}].references[{r}].identifier"),
                    e,
                ));
            }
        }
        if let Some(first) = seen.insert(value.index, at) {
            return Err(RegistryError::invalid(
                format!("values[{at}].index"),
                format!(
                    "index {} is also used by values[{first}]; indexes must be unique",
                    value.index
                ),
            ));
        }
    }
    Ok(())
}

/// Sorts the record's values and checks the limits of the whole record
/// (its values were checked one by one before).
pub(crate) fn record(record: &mut Record) -> Result<()> {
    record.normalize_and_validate().map_err(|e| match e {
        CoreError::DuplicateIndex(i) => RegistryError::invalid(
            "values",
            format!("two values share index {i}; indexes must be unique"),
        ),
        other => RegistryError::invalid("values", other),
    })
}

/// Sets the timestamp of every value to `now`.
pub(crate) fn stamp(values: &mut [Value], now: u32) {
    for v in values {
        v.timestamp = now;
    }
}

/// Whether two value lists say the same thing, ignoring timestamps. Both
/// must be in index order (as stored records and validated records are).
pub(crate) fn same_values(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.index == y.index
                && x.kind == y.kind
                && x.data == y.data
                && x.ttl == y.ttl
                && x.permissions == y.permissions
                && x.references == y.references
        })
}

/// The page size to use for a requested one: 0 means 100, at most 1000.
pub(crate) fn page_size(requested: u32) -> usize {
    match requested {
        0 => crate::DEFAULT_PAGE_SIZE,
        n => (n as usize).min(crate::MAX_PAGE_SIZE),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn names_the_value_and_its_field() {
        let vals = vec![
            Value::new(1, "URL", "a"),
            Value::new(2, "", "b"),
            Value::new(0, "X", "c"),
        ];
        let e = values(&vals).unwrap_err();
        assert_eq!(e.to_string(), "values[1].type: value type is empty");
        let e = values(&vals[2..]).unwrap_err();
        assert!(e.to_string().starts_with("values[0].index: "), "{e}");
        let dup = vec![Value::new(5, "A", ""), Value::new(5, "B", "")];
        let e = values(&dup).unwrap_err();
        assert!(e.to_string().starts_with("values[1].index: index 5"), "{e}");
        let mut bad_ref = Value::new(1, "HS_VLIST", "");
        bad_ref.references.push(idnode_core::Reference {
            identifier: "no-slash".into(),
            index: 1,
        });
        let e = values(&[bad_ref]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("values[0].references[0].identifier: "),
            "{e}"
        );
    }

    #[test]
    fn refuses_invisible_characters_in_types_and_references() {
        let e =
            values(&[Value::new(1, "URL", "a"), Value::new(2, "T\u{1b}]0;x", "b")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("values[1].type: value type contains U+001B ESCAPE at byte 1"),
            "{e}"
        );
        let mut bad_ref = Value::new(1, "HS_VLIST", "");
        bad_ref.references.push(idnode_core::Reference {
            identifier: "88.1/A\u{200b}".into(),
            index: 1,
        });
        let e = values(&[bad_ref]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "values[0].references[0].identifier: identifier contains U+200B ZERO WIDTH SPACE"
            ),
            "{e}"
        );
        let e = new_identifier("88.１/A", "identifier").unwrap_err();
        assert!(
            e.to_string().starts_with("identifier: prefix `88.１`"),
            "{e}"
        );
        assert!(identifier("88.１/A", "identifier").is_ok());
        let e = new_prefix("８８", "prefix").unwrap_err();
        assert!(e.to_string().contains("did you mean `88`?"), "{e}");
    }

    #[test]
    fn compares_without_timestamps() {
        let mut a = vec![Value::new(1, "URL", "x")];
        let b = a.clone();
        a[0].timestamp = 99;
        assert!(same_values(&a, &b));
        a[0].data = "y".into();
        assert!(!same_values(&a, &b));
        assert!(!same_values(&a, &[]));
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(5000), 1000);
    }
}
