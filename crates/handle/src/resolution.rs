//! The RESOLUTION request body: handle, index list, type list.

use crate::DecodeError;
use idnode_core::wire::Reader;
use idnode_core::{Value, limits};

/// A decoded RESOLUTION request body, borrowed. The index and type lists
/// are kept as the validated raw bytes and walked by [`Indexes`] and
/// [`Types`] without allocating.
///
/// # Filter semantics
/// [`ResolutionQuery::wants`] follows CNRI (`Util.filterValues` and
/// `HandleServer.getRawHandleValuesWithTemplate`) and RFC 3652 section
/// 3.2.1: when both lists are empty every value is wanted; otherwise a
/// value is wanted when its index is in the index list **or** its type
/// matches an entry of the type list (a union, not an intersection). A type
/// entry ending in `.` also matches the family below it (`HS_SITE.` matches
/// `HS_SITE` and `HS_SITE.PREFIX`); comparison is ASCII case-insensitive
/// ([`Value::type_matches`]). Permission filtering (PO flag, public read) is
/// the resolver's job, not this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionQuery<'a> {
    /// The handle as sent (not normalized).
    pub handle: &'a [u8],
    indexes: Indexes<'a>,
    types: Types<'a>,
}

impl<'a> ResolutionQuery<'a> {
    /// Decodes a RESOLUTION request body. The handle is bounded by
    /// [`limits::MAX_IDENTIFIER_BYTES`]; list counts are bounded by the
    /// bytes that remain. Bytes after the type list are ignored, as CNRI
    /// ignores them. Does not allocate.
    #[inline]
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let handle = r.bytes("handle")?;
        if handle.len() > limits::MAX_IDENTIFIER_BYTES {
            return Err(DecodeError::TooLong("handle", handle.len() as u32));
        }
        let index_count = r.count("index list", 4)?;
        let index_bytes = r.take(index_count * 4, "index list")?;
        let type_count = r.count("type list", 4)?;
        let types_start = r.position();
        for _ in 0..type_count {
            r.bytes("type list entry")?;
        }
        let type_bytes = &body[types_start..r.position()];
        Ok(Self {
            handle,
            indexes: Indexes { rest: index_bytes },
            types: Types {
                rest: type_bytes,
                left: type_count,
            },
        })
    }

    /// The requested indexes, in request order.
    pub fn indexes(&self) -> Indexes<'a> {
        self.indexes
    }

    /// The requested types, in request order.
    pub fn types(&self) -> Types<'a> {
        self.types
    }

    /// Whether the request names any index or type (otherwise it wants the
    /// whole record).
    pub fn has_filters(&self) -> bool {
        self.indexes.len() != 0 || self.types.len() != 0
    }

    /// Whether a value with this index and type should be sent (see the
    /// type's documentation for the semantics).
    pub fn wants(&self, index: u32, kind: &[u8]) -> bool {
        if !self.has_filters() {
            return true;
        }
        self.indexes().any(|i| i == index) || self.types().any(|t| Value::type_matches(kind, t))
    }
}

/// The index list of a [`ResolutionQuery`]: big-endian `u32`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexes<'a> {
    rest: &'a [u8],
}

impl Iterator for Indexes<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (first, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        Some(u32::from_be_bytes(*first))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Indexes<'_> {}

/// The type list of a [`ResolutionQuery`]: length-prefixed byte strings,
/// validated when the query was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Types<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Types<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Decoding checked every entry, so these `?` never end early; they
        // keep the walk panic-free without an unchecked index.
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let (kind, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        self.rest = rest;
        self.left -= 1;
        Some(kind)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Types<'_> {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use idnode_core::wire::{put_bytes, put_u32};

    fn body(handle: &str, indexes: &[u32], types: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        put_bytes(&mut b, handle.as_bytes());
        put_u32(&mut b, indexes.len() as u32);
        for i in indexes {
            put_u32(&mut b, *i);
        }
        put_u32(&mut b, types.len() as u32);
        for t in types {
            put_bytes(&mut b, t.as_bytes());
        }
        b
    }

    #[test]
    fn decodes_lists_without_copying() {
        let b = body("88.100.1/ABC", &[1, 300], &["URL", "HS_SITE."]);
        let q = ResolutionQuery::decode(&b).unwrap();
        assert_eq!(q.handle, b"88.100.1/ABC");
        assert_eq!(q.indexes().collect::<Vec<_>>(), [1, 300]);
        assert_eq!(q.types().collect::<Vec<_>>(), [&b"URL"[..], b"HS_SITE."]);
        assert_eq!(q.indexes().len(), 2);
        assert_eq!(q.types().len(), 2);
    }

    #[test]
    fn empty_lists_want_everything() {
        let b = body("88/x", &[], &[]);
        let q = ResolutionQuery::decode(&b).unwrap();
        assert!(!q.has_filters());
        assert!(q.wants(1, b"URL"));
        assert!(q.wants(9999, b"anything"));
    }

    #[test]
    fn filters_are_a_union_of_index_and_type() {
        let b = body("88/x", &[7], &["url", "HS_SITE."]);
        let q = ResolutionQuery::decode(&b).unwrap();
        assert!(q.wants(7, b"EMAIL"), "index listed");
        assert!(q.wants(1, b"URL"), "type listed, case-insensitive");
        assert!(q.wants(2, b"HS_SITE.PREFIX"), "type family");
        assert!(q.wants(3, b"HS_SITE"), "family root");
        assert!(!q.wants(4, b"EMAIL"));
        assert!(!q.wants(5, b"HS_SITEX"));
        let b = body("88/x", &[7], &[]);
        let q = ResolutionQuery::decode(&b).unwrap();
        assert!(q.wants(7, b"URL"));
        assert!(
            !q.wants(1, b"URL"),
            "an index list alone does not select by type"
        );
    }

    #[test]
    fn hostile_counts_fail_before_walking() {
        let mut b = Vec::new();
        put_bytes(&mut b, b"88/x");
        put_u32(&mut b, u32::MAX);
        assert_eq!(
            ResolutionQuery::decode(&b),
            Err(DecodeError::Truncated("index list"))
        );
        let mut b = Vec::new();
        put_bytes(&mut b, b"88/x");
        put_u32(&mut b, 0);
        put_u32(&mut b, u32::MAX);
        assert_eq!(
            ResolutionQuery::decode(&b),
            Err(DecodeError::Truncated("type list"))
        );
        let mut b = Vec::new();
        put_u32(&mut b, u32::MAX);
        assert_eq!(
            ResolutionQuery::decode(&b),
            Err(DecodeError::Truncated("handle"))
        );
        let long = "8".repeat(limits::MAX_IDENTIFIER_BYTES + 1);
        let b = body(&long, &[], &[]);
        assert!(matches!(
            ResolutionQuery::decode(&b),
            Err(DecodeError::TooLong("handle", _))
        ));
    }
}
