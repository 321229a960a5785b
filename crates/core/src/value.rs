//! Values and records, as RFC 3651 defines them.

use crate::Error;
use crate::limits::{MAX_DATA_BYTES, MAX_RECORD_BYTES, MAX_REFERENCES, MAX_TYPE_BYTES, MAX_VALUES};
use bytes::Bytes;

/// How long a value may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Seconds from the time it was resolved.
    Relative(u32),
    /// Until this unix time.
    Absolute(u32),
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl::Relative(86_400)
    }
}

/// Who may read and write a value (RFC 3651 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions(pub u8);

impl Permissions {
    pub const ADMIN_READ: u8 = 0x08;
    pub const ADMIN_WRITE: u8 = 0x04;
    pub const PUBLIC_READ: u8 = 0x02;
    pub const PUBLIC_WRITE: u8 = 0x01;

    pub fn public_read(self) -> bool {
        self.0 & Self::PUBLIC_READ != 0
    }
}

impl Default for Permissions {
    /// Admin read and write, public read: what CNRI's tools give a new value.
    fn default() -> Self {
        Permissions(Self::ADMIN_READ | Self::ADMIN_WRITE | Self::PUBLIC_READ)
    }
}

/// A reference from a value to a value of another identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub identifier: String,
    pub index: u32,
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub index: u32,
    /// The value's type: `URL`, `HS_ADMIN`, `productName`...
    pub kind: String,
    pub data: Bytes,
    pub ttl: Ttl,
    /// Unix seconds of the last change.
    pub timestamp: u32,
    pub permissions: Permissions,
    pub references: Vec<Reference>,
}

impl Value {
    /// A value with default TTL and permissions and no references.
    pub fn new(index: u32, kind: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            index,
            kind: kind.into(),
            data: data.into(),
            ttl: Ttl::default(),
            timestamp: 0,
            permissions: Permissions::default(),
            references: Vec::new(),
        }
    }

    /// Checks the limits of one value, and that its type holds no control,
    /// invisible or bidirectional-control character.
    pub fn validate(&self) -> Result<(), Error> {
        if self.index == 0 {
            return Err(Error::ZeroIndex);
        }
        if self.kind.is_empty() {
            return Err(Error::EmptyType);
        }
        if self.kind.len() > MAX_TYPE_BYTES {
            return Err(Error::TypeTooLong(self.kind.len()));
        }
        // Types are shown as text (by clients, in tables, on terminals).
        crate::text::check_text("value type", &self.kind)?;
        if self.data.len() > MAX_DATA_BYTES {
            return Err(Error::DataTooLarge(self.data.len()));
        }
        if self.references.len() > MAX_REFERENCES {
            return Err(Error::TooManyReferences(self.references.len()));
        }
        Ok(())
    }

    /// Whether this value's type matches a filter: equal (ASCII
    /// case-insensitively), or a family ending in `.` (`HS_SITE.` matches
    /// `HS_SITE.PREFIX`).
    pub fn type_matches(kind: &[u8], filter: &[u8]) -> bool {
        if filter.last() == Some(&b'.') {
            kind.len() >= filter.len() && kind[..filter.len()].eq_ignore_ascii_case(filter)
                || kind.eq_ignore_ascii_case(&filter[..filter.len() - 1])
        } else {
            kind.eq_ignore_ascii_case(filter)
        }
    }
}

/// A record: an identifier and its ordered values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The identifier as it was registered.
    pub identifier: String,
    /// Values in ascending index order.
    pub values: Vec<Value>,
    /// The change-log sequence number of the write that stored this
    /// version (0 before it was stored).
    pub version: u64,
}

impl Record {
    /// Sorts values by index and checks every limit.
    pub fn normalize_and_validate(&mut self) -> Result<(), Error> {
        if self.values.len() > MAX_VALUES {
            return Err(Error::TooManyValues(self.values.len()));
        }
        self.values.sort_by_key(|v| v.index);
        for pair in self.values.windows(2) {
            if pair[0].index == pair[1].index {
                return Err(Error::DuplicateIndex(pair[0].index));
            }
        }
        for value in &self.values {
            value.validate()?;
        }
        let size = self.encoded_len();
        if size > MAX_RECORD_BYTES {
            return Err(Error::RecordTooLarge(size));
        }
        Ok(())
    }

    /// The value at `index`, if any.
    pub fn value(&self, index: u32) -> Option<&Value> {
        self.values.iter().find(|v| v.index == index)
    }

    /// The size of [`Record::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        crate::wire::record_len(self)
    }

    /// The storage form (see [`crate::wire`]).
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode_record(self)
    }

    /// Decodes the storage form; never panics, bounds every length.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        crate::wire::decode_record(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_families() {
        assert!(Value::type_matches(b"HS_SITE.PREFIX", b"HS_SITE."));
        assert!(Value::type_matches(b"HS_SITE", b"HS_SITE."));
        assert!(Value::type_matches(b"url", b"URL"));
        assert!(!Value::type_matches(b"URL2", b"URL"));
        assert!(!Value::type_matches(b"HS_SITEX", b"HS_SITE."));
    }

    #[test]
    fn validation() {
        let mut r = Record {
            identifier: "88/1".into(),
            values: vec![Value::new(2, "URL", "b"), Value::new(1, "URL", "a")],
            version: 0,
        };
        r.normalize_and_validate().unwrap();
        assert_eq!(r.values[0].index, 1);
        r.values.push(Value::new(1, "X", ""));
        assert_eq!(r.normalize_and_validate(), Err(Error::DuplicateIndex(1)));
        r.values.retain(|v| v.kind != "X");
        r.values
            .push(Value::new(3, "X", vec![0u8; MAX_DATA_BYTES + 1]));
        assert_eq!(
            r.normalize_and_validate(),
            Err(Error::DataTooLarge(MAX_DATA_BYTES + 1))
        );
        r.values.retain(|v| v.index != 3);
        r.values.push(Value::new(0, "X", ""));
        assert_eq!(r.normalize_and_validate(), Err(Error::ZeroIndex));
        r.values.retain(|v| v.index != 0);
        r.values.push(Value::new(4, "T".repeat(129), ""));
        assert_eq!(r.normalize_and_validate(), Err(Error::TypeTooLong(129)));
    }

    #[test]
    fn types_hold_no_control_or_invisible_characters() {
        assert_eq!(Value::new(1, "产品名称", "").validate(), Ok(()));
        for (kind, at) in [("URL\u{1b}[2J", 3), ("U\u{9b}RL", 1), ("\u{202e}LRU", 0)] {
            let e = Value::new(1, kind, "").validate().unwrap_err();
            assert!(
                matches!(e, Error::ForbiddenCharacter("value type", c) if c.at == at),
                "{kind:?}: {e}"
            );
        }
    }

    #[test]
    fn whole_record_limit() {
        let mut r = Record {
            identifier: "88/1".into(),
            values: (1..=5)
                .map(|i| Value::new(i, "DATA", vec![b'x'; MAX_DATA_BYTES]))
                .collect(),
            version: 0,
        };
        assert!(matches!(
            r.normalize_and_validate(),
            Err(Error::RecordTooLarge(_))
        ));
    }
}
