//! The binary encoding of values (the Handle wire form of RFC 3652 section
//! 3.1) and of stored records.
//!
//! Integers are big-endian; a byte string is a 4-byte length then the bytes.
//! [`Reader`] bounds every length against what remains before it slices, so
//! hostile input yields an [`Error`], never a panic or a large allocation.
//!
//! A stored record is: format byte `1`, version (u64), identifier (string),
//! value count (u32), then each value in Handle form. Because values are kept
//! in wire form, [`RecordView`] can walk a stored record without allocating
//! and an answer is built by copying the matching values' bytes.

use crate::value::{Permissions, Record, Reference, Ttl, Value};
use crate::{Error, limits};
use bytes::Bytes;

const RECORD_FORMAT: u8 = 1;

/// A bounds-checked cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Offset of the next byte.
    #[inline]
    pub fn position(&self) -> usize {
        self.at
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated(what));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        let hi = self.u32(what)? as u64;
        let lo = self.u32(what)? as u64;
        Ok(hi << 32 | lo)
    }

    /// A length-prefixed byte string, its length bounded by what remains.
    #[inline]
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.u32(what)? as usize;
        if len > self.remaining() {
            return Err(Error::LengthOutOfBounds(what, len as u64, self.remaining()));
        }
        self.take(len, what)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| Error::InvalidUtf8(what))
    }

    /// A count of items that each take at least `min_item` bytes, bounded
    /// by what remains, so that a caller may allocate `count` items.
    #[inline]
    pub fn count(&mut self, what: &'static str, min_item: usize) -> Result<usize, Error> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(Error::LengthOutOfBounds(what, n as u64, self.remaining()));
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), Error> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }
}

/// Appends a length-prefixed byte string.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Encoded size of one value in Handle form.
pub fn value_len(v: &Value) -> usize {
    4 + 4
        + 1
        + 4
        + 1
        + 4
        + v.kind.len()
        + 4
        + v.data.len()
        + 4
        + v.references
            .iter()
            .map(|r| 4 + r.identifier.len() + 4)
            .sum::<usize>()
}

/// Appends one value in Handle form.
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    put_u32(out, v.index);
    put_u32(out, v.timestamp);
    let (ttl_type, ttl) = match v.ttl {
        Ttl::Relative(s) => (0, s),
        Ttl::Absolute(t) => (1, t),
    };
    out.push(ttl_type);
    put_u32(out, ttl);
    out.push(v.permissions.0);
    put_bytes(out, v.kind.as_bytes());
    put_bytes(out, &v.data);
    put_u32(out, v.references.len() as u32);
    for r in &v.references {
        put_bytes(out, r.identifier.as_bytes());
        put_u32(out, r.index);
    }
}

/// Smallest encoded value: fixed fields and three empty lengths.
pub const MIN_VALUE_LEN: usize = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4;

/// Decodes one value in Handle form.
pub fn decode_value(r: &mut Reader<'_>) -> Result<Value, Error> {
    let view = ValueView::read(r)?;
    view.to_value()
}

/// A value in wire form, borrowed: the fields a filter needs and the raw
/// bytes to copy into an answer.
#[derive(Debug, Clone, Copy)]
pub struct ValueView<'a> {
    pub index: u32,
    pub kind: &'a [u8],
    pub permissions: Permissions,
    /// The whole encoded value.
    pub raw: &'a [u8],
}

impl<'a> ValueView<'a> {
    /// Reads one value, checking its structure but not copying it.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let index = r.u32("value index")?;
        r.u32("value timestamp")?;
        let ttl_type = r.u8("value ttl type")?;
        if ttl_type > 1 {
            return Err(Error::UnknownTag("ttl type", ttl_type as u32));
        }
        r.u32("value ttl")?;
        let permissions = Permissions(r.u8("value permissions")?);
        let kind = r.bytes("value type")?;
        if kind.len() > limits::MAX_TYPE_BYTES {
            return Err(Error::TypeTooLong(kind.len()));
        }
        let data = r.bytes("value data")?;
        if data.len() > limits::MAX_DATA_BYTES {
            return Err(Error::DataTooLarge(data.len()));
        }
        let refs = r.count("reference count", 8)?;
        if refs > limits::MAX_REFERENCES {
            return Err(Error::TooManyReferences(refs));
        }
        for _ in 0..refs {
            r.bytes("reference identifier")?;
            r.u32("reference index")?;
        }
        let raw = &r.input()[start..r.position()];
        Ok(Self {
            index,
            kind,
            permissions,
            raw,
        })
    }

    /// Copies the view into an owned [`Value`].
    pub fn to_value(&self) -> Result<Value, Error> {
        let mut r = Reader::new(self.raw);
        let index = r.u32("value index")?;
        let timestamp = r.u32("value timestamp")?;
        let ttl_type = r.u8("value ttl type")?;
        let ttl_value = r.u32("value ttl")?;
        let ttl = if ttl_type == 0 {
            Ttl::Relative(ttl_value)
        } else {
            Ttl::Absolute(ttl_value)
        };
        let permissions = Permissions(r.u8("value permissions")?);
        let kind = r.str("value type")?.to_owned();
        let data = Bytes::copy_from_slice(r.bytes("value data")?);
        let n = r.count("reference count", 8)?;
        let mut references = Vec::with_capacity(n);
        for _ in 0..n {
            let identifier = r.str("reference identifier")?.to_owned();
            let index = r.u32("reference index")?;
            references.push(Reference { identifier, index });
        }
        Ok(Value {
            index,
            kind,
            data,
            ttl,
            timestamp,
            permissions,
            references,
        })
    }
}

/// A stored record, borrowed: walk its values without allocating.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    pub version: u64,
    pub identifier: &'a str,
    count: usize,
    values: Reader<'a>,
}

impl<'a> RecordView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let format = r.u8("record format")?;
        if format != RECORD_FORMAT {
            return Err(Error::UnknownTag("record format", format as u32));
        }
        let version = r.u64("record version")?;
        let identifier = r.str("record identifier")?;
        let count = r.count("value count", MIN_VALUE_LEN)?;
        if count > limits::MAX_VALUES {
            return Err(Error::TooManyValues(count));
        }
        Ok(Self {
            version,
            identifier,
            count,
            values: r,
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in stored (index) order.
    pub fn values(&self) -> impl Iterator<Item = Result<ValueView<'a>, Error>> + use<'a> {
        let mut r = self.values.clone();
        (0..self.count).map(move |_| ValueView::read(&mut r))
    }
}

pub(crate) fn record_len(rec: &Record) -> usize {
    1 + 8 + 4 + rec.identifier.len() + 4 + rec.values.iter().map(value_len).sum::<usize>()
}

pub(crate) fn encode_record(rec: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(record_len(rec));
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&rec.version.to_be_bytes());
    put_bytes(&mut out, rec.identifier.as_bytes());
    put_u32(&mut out, rec.values.len() as u32);
    for v in &rec.values {
        encode_value(&mut out, v);
    }
    out
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record, Error> {
    let view = RecordView::parse(bytes)?;
    let mut values = Vec::with_capacity(view.len());
    let mut end = 0;
    for v in view.values() {
        let v = v?;
        end = v.raw.as_ptr() as usize + v.raw.len() - bytes.as_ptr() as usize;
        values.push(v.to_value()?);
    }
    if view.is_empty() {
        end = bytes.len() - view.values.remaining();
    }
    if end != bytes.len() {
        return Err(Error::TrailingBytes(bytes.len() - end));
    }
    Ok(Record {
        identifier: view.identifier.to_owned(),
        values,
        version: view.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Value> {
        (
            1u32..5000,
            any::<u32>(),
            any::<bool>(),
            any::<u32>(),
            any::<u8>(),
            "[A-Za-z_.]{1,20}",
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(("[ -~]{1,20}", any::<u32>()), 0..3),
        )
            .prop_map(|(index, ts, abs, ttl, perm, kind, data, refs)| Value {
                index,
                kind,
                data: data.into(),
                ttl: if abs {
                    Ttl::Absolute(ttl)
                } else {
                    Ttl::Relative(ttl)
                },
                timestamp: ts,
                permissions: Permissions(perm),
                references: refs
                    .into_iter()
                    .map(|(identifier, index)| Reference { identifier, index })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn record_round_trips(values in proptest::collection::vec(arb_value(), 0..8),
                              version in any::<u64>(), id in "[ -~]{1,40}") {
            let rec = Record { identifier: id, values, version };
            let bytes = rec.encode();
            prop_assert_eq!(bytes.len(), rec.encoded_len());
            prop_assert_eq!(Record::decode(&bytes).unwrap(), rec.clone());
            let view = RecordView::parse(&bytes).unwrap();
            let indexes: Vec<u32> = view.values().map(|v| v.unwrap().index).collect();
            let expected: Vec<u32> = rec.values.iter().map(|v| v.index).collect();
            prop_assert_eq!(indexes, expected);
        }

        #[test]
        fn truncated_records_fail_cleanly(values in proptest::collection::vec(arb_value(), 1..4),
                                          cut in any::<prop::sample::Index>()) {
            let bytes = Record { identifier: "88/x".into(), values, version: 1 }.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(Record::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Record::decode(&bytes);
            let mut with_format = vec![1u8];
            with_format.extend_from_slice(&bytes);
            let _ = Record::decode(&with_format);
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&7u64.to_be_bytes());
        put_bytes(&mut bytes, b"88/x");
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Record::decode(&bytes),
            Err(Error::LengthOutOfBounds("value count", _, 0))
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(matches!(r.bytes("x"), Err(Error::LengthOutOfBounds(..))));
    }
}
