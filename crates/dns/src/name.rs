//! The name mapping (docs/dns-mapping.md, "Names").
//!
//! - A prefix `88.100.1` is its segments reversed under the apex:
//!   `1.100.88.<apex>`.
//! - An identifier `88.100.1/ABC-123` is its suffix, the label `_`, then
//!   its prefix's name: `ABC-123._.1.100.88.<apex>`. The suffix is its raw
//!   UTF-8 octets cut into labels of 63 octets, first octets leftmost (the
//!   last, rightmost suffix label may be shorter). Octets such as `.`, `/`
//!   or `:` stay as they are inside a label (RFC 2181 section 11).
//! - No prefix segment may be `_` (`idnode-core` refuses it), so the
//!   rightmost `_` label of a name is the separator, and the identifier
//!   `88.100.1/5` (`5._.1.100.88`) never shares a name with the prefix
//!   `88.100.1.5` (`5.1.100.88`).
//! - The reverse is exact: a name maps back only when it is the name an
//!   identifier or prefix maps to (every suffix label but the rightmost
//!   has 63 octets, prefix labels hold no `.`, the text is valid), so
//!   `name(map(n)) == n` and `map(name(x)) == x`. Comparison is ASCII
//!   case-insensitive, as for identifiers and in the DNS: a name spelled in
//!   another case maps to an identifier with the same key.
//! - A name passes 255 octets (wire form, RFC 1035) sooner than an
//!   identifier passes its 2048-byte limit: such identifiers cannot be
//!   reached through the DNS ([`DnsError::NameTooLong`]; a query for them
//!   cannot even be asked).

use crate::DnsError;
use hickory_proto::rr::Name;
use idnode_core::{Identifier, Prefix};

/// Longest name, in wire octets (RFC 1035 section 2.3.4).
pub const MAX_NAME_OCTETS: usize = 255;
/// Longest label, in octets.
pub const MAX_LABEL_OCTETS: usize = 63;
/// The label between an identifier's suffix and its prefix.
pub const SEPARATOR: &[u8] = b"_";
/// Most labels a name of 255 octets can have.
pub const MAX_LABELS: usize = 127;

/// One configured apex name, such as `idnode.internal.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apex {
    name: Name,
    /// The wire form, ASCII lower-cased, for matching query names.
    wire: Box<[u8]>,
}

impl Apex {
    /// Parses an apex name; a missing final dot is implied.
    pub fn parse(text: &str) -> Result<Self, DnsError> {
        let name = absolute_name(text)?;
        if name.is_root() {
            return Err(DnsError::InvalidName {
                name: text.to_owned(),
                reason: "the root cannot be an apex".into(),
            });
        }
        let mut wire = Vec::with_capacity(name.len());
        push_labels(&mut wire, name.iter());
        wire.push(0);
        wire.make_ascii_lowercase();
        Ok(Self {
            name,
            wire: wire.into(),
        })
    }

    /// The apex as configured.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The wire form, ASCII lower-cased, root label included.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The name `labels` (leftmost first) below this apex.
    pub fn child<'l>(&self, labels: impl IntoIterator<Item = &'l [u8]>) -> Result<Name, DnsError> {
        let too_long = |_| DnsError::NameTooLong(format!("a name under {}", self.name));
        let mut name = Name::root();
        for label in labels {
            name = name.append_label(label).map_err(too_long)?;
        }
        for label in self.name.iter() {
            name = name.append_label(label).map_err(too_long)?;
        }
        Ok(name)
    }
}

/// Parses an absolute domain name from configuration text.
pub(crate) fn absolute_name(text: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(text).map_err(|e| DnsError::InvalidName {
        name: text.to_owned(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    Ok(name)
}

/// What a name below an apex maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// The apex itself.
    Apex,
    /// A prefix: `1.100.88.<apex>`.
    Prefix(Prefix),
    /// The `_` node of a prefix (`_.1.100.88.<apex>`): the parent of its
    /// identifiers' names.
    Separator(Prefix),
    /// An identifier: `ABC-123._.1.100.88.<apex>`.
    Identifier(Identifier),
}

/// The labels of a prefix below the apex, leftmost first.
pub fn prefix_labels(prefix: &Prefix) -> impl Iterator<Item = &[u8]> {
    prefix.segments().rev().map(str::as_bytes)
}

/// The labels of an identifier below the apex, leftmost first.
pub fn identifier_labels(id: &Identifier) -> impl Iterator<Item = &[u8]> {
    id.suffix()
        .as_bytes()
        .chunks(MAX_LABEL_OCTETS)
        .chain(std::iter::once(SEPARATOR))
        .chain(id.prefix().split('.').rev().map(str::as_bytes))
}

/// The DNS name of an identifier, spelled as the identifier is.
pub fn identifier_name(id: &Identifier, apex: &Apex) -> Result<Name, DnsError> {
    apex.child(identifier_labels(id))
        .map_err(|_| DnsError::NameTooLong(id.as_str().to_owned()))
}

/// The DNS name of a prefix, spelled as the prefix is.
pub fn prefix_name(prefix: &Prefix, apex: &Apex) -> Result<Name, DnsError> {
    apex.child(prefix_labels(prefix))
        .map_err(|_| DnsError::NameTooLong(prefix.as_str().to_owned()))
}

/// What `name` maps to below `apex`; `None` when it is not below the apex
/// or is no identifier's or prefix's name.
pub fn map_name(name: &Name, apex: &Apex) -> Option<Mapped> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let apex_labels: Vec<&[u8]> = apex.name.iter().collect();
    let below = labels.len().checked_sub(apex_labels.len())?;
    let matches = labels[below..]
        .iter()
        .zip(&apex_labels)
        .all(|(a, b)| a.eq_ignore_ascii_case(b));
    if !matches {
        return None;
    }
    map_labels(&labels[..below])
}

/// What the labels below an apex (leftmost first) map to; `None` when they
/// are no identifier's or prefix's labels. Never panics.
pub fn map_labels(labels: &[&[u8]]) -> Option<Mapped> {
    let Some(separator) = labels.iter().rposition(|l| *l == SEPARATOR) else {
        if labels.is_empty() {
            return Some(Mapped::Apex);
        }
        return prefix_from_labels(labels).map(Mapped::Prefix);
    };
    let prefix = prefix_from_labels(&labels[separator + 1..])?;
    let suffix_labels = &labels[..separator];
    let Some((last, full)) = suffix_labels.split_last() else {
        return Some(Mapped::Separator(prefix));
    };
    if full.iter().any(|l| l.len() != MAX_LABEL_OCTETS) || last.is_empty() {
        // Not how a suffix is cut: no identifier has this name.
        return None;
    }
    let mut suffix = Vec::with_capacity(full.len() * MAX_LABEL_OCTETS + last.len());
    for label in suffix_labels {
        suffix.extend_from_slice(label);
    }
    let suffix = std::str::from_utf8(&suffix).ok()?;
    let text = format!("{}/{suffix}", prefix.as_str());
    let id = Identifier::parse(&text).ok()?;
    // The prefix holds no `/`, so the parse split where we joined.
    (id.suffix() == suffix).then_some(Mapped::Identifier(id))
}

/// A prefix from its labels (rightmost = first segment), if every label is
/// a valid segment that holds no `.`.
fn prefix_from_labels(labels: &[&[u8]]) -> Option<Prefix> {
    if labels.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(labels.iter().map(|l| l.len() + 1).sum());
    for (i, label) in labels.iter().rev().enumerate() {
        let segment = std::str::from_utf8(label).ok()?;
        if segment.contains('.') {
            return None;
        }
        if i > 0 {
            text.push('.');
        }
        text.push_str(segment);
    }
    let prefix = Prefix::parse(&text).ok()?;
    (prefix.segments().count() == labels.len()).then_some(prefix)
}

/// Appends labels in wire form (length octet, octets), without the root.
pub(crate) fn push_labels<'l>(out: &mut Vec<u8>, labels: impl IntoIterator<Item = &'l [u8]>) {
    for label in labels {
        // Labels come from `Name`s or were checked to be at most 63 octets.
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;
    use proptest::prelude::*;

    fn apex() -> Apex {
        Apex::parse("idnode.internal.").unwrap()
    }

    fn wire_len(name: &Name) -> usize {
        name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    fn id(text: &str) -> Identifier {
        Identifier::parse(text).unwrap()
    }

    #[test]
    fn the_examples_of_the_spec() {
        let apex = Apex::parse("id.example").unwrap();
        let name = identifier_name(&id("88.100.1/ABC-123"), &apex).unwrap();
        assert_eq!(name.to_ascii(), "ABC-123._.1.100.88.id.example.");
        let prefix = Prefix::parse("88.100.1").unwrap();
        assert_eq!(
            prefix_name(&prefix, &apex).unwrap().to_ascii(),
            "1.100.88.id.example."
        );
        // `88.100.1/5` and `88.100.1.5` never share a name.
        let a = identifier_name(&id("88.100.1/5"), &apex).unwrap();
        let b = prefix_name(&Prefix::parse("88.100.1.5").unwrap(), &apex).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            map_name(&a, &apex),
            Some(Mapped::Identifier(id("88.100.1/5")))
        );
        assert_eq!(
            map_name(&b, &apex),
            Some(Mapped::Prefix(Prefix::parse("88.100.1.5").unwrap()))
        );
    }

    #[test]
    fn dots_and_slashes_stay_inside_labels() {
        let name = identifier_name(&id("88.100.1/a.b/c:d"), &apex()).unwrap();
        let labels: Vec<&[u8]> = name.iter().collect();
        assert_eq!(labels[0], b"a.b/c:d");
        assert_eq!(labels[1], b"_");
        assert_eq!(
            map_name(&name, &apex()),
            Some(Mapped::Identifier(id("88.100.1/a.b/c:d")))
        );
    }

    #[test]
    fn case_insensitive_and_spelling_kept() {
        let apex = apex();
        let upper = Name::from_ascii("ABC-123._.1.100.88.IDNODE.Internal.").unwrap();
        let Some(Mapped::Identifier(found)) = map_name(&upper, &apex) else {
            panic!("not an identifier");
        };
        assert_eq!(found.key(), id("88.100.1/abc-123").key());
        assert_eq!(found.as_str(), "88.100.1/ABC-123");
    }

    #[test]
    fn suffix_label_edges() {
        let apex = apex();
        for len in [1, 62, 63, 64, 125, 126, 127] {
            let suffix = "x".repeat(len);
            let ident = id(&format!("88/{suffix}"));
            let name = identifier_name(&ident, &apex).unwrap();
            let labels: Vec<usize> = name.iter().map(<[u8]>::len).collect();
            let full = len / 63;
            let rest = len % 63;
            let mut expected = vec![63; full];
            if rest > 0 {
                expected.push(rest);
            }
            assert_eq!(labels[..expected.len()], expected[..], "len {len}");
            assert_eq!(map_name(&name, &apex), Some(Mapped::Identifier(ident)));
        }
    }

    #[test]
    fn non_canonical_names_map_to_nothing() {
        let apex = apex();
        let at = |text: &str| map_name(&Name::from_ascii(text).unwrap(), &apex);
        // A short label left of another suffix label.
        assert_eq!(at("a.b._.88.idnode.internal."), None);
        // `_` with no prefix, a prefix label holding a dot.
        assert_eq!(at("a._.idnode.internal."), None);
        let dotted = Name::from_labels([&b"1.2"[..], b"88", b"idnode", b"internal"]).unwrap();
        assert_eq!(map_name(&dotted, &apex), None);
        // Outside the apex.
        assert_eq!(at("a._.88.example."), None);
        assert_eq!(at("idnode.internal."), Some(Mapped::Apex));
        assert_eq!(
            at("_.88.idnode.internal."),
            Some(Mapped::Separator(Prefix::parse("88").unwrap()))
        );
        // A suffix with control octets or invalid UTF-8.
        let bad = Name::from_labels([&b"a\x01"[..], b"_", b"88", b"idnode", b"internal"]).unwrap();
        assert_eq!(map_name(&bad, &apex), None);
        let bad = Name::from_labels([&b"\xff"[..], b"_", b"88", b"idnode", b"internal"]).unwrap();
        assert_eq!(map_name(&bad, &apex), None);
    }

    #[test]
    fn names_past_255_octets_are_refused() {
        let apex = apex();
        // A suffix of s octets costs s + ceil(s / 63) octets; `_.88` 5 and
        // the apex 17 more: 229 octets fit exactly, 230 do not.
        let ok = id(&format!("88/{}", "y".repeat(229)));
        let name = identifier_name(&ok, &apex).unwrap();
        assert_eq!(wire_len(&name), 255);
        assert_eq!(map_name(&name, &apex), Some(Mapped::Identifier(ok)));
        let too_long = id(&format!("88/{}", "y".repeat(230)));
        assert!(matches!(
            identifier_name(&too_long, &apex),
            Err(DnsError::NameTooLong(_))
        ));
    }

    fn arb_segment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,4}",
            "[A-Za-z0-9:-]{1,12}",
            "[^./_\\s\\x00-\\x1f\\x7f]{1,6}",
            Just("x".repeat(63)),
        ]
        .prop_filter("not `_`", |s| s != "_" && s.len() <= 63)
    }

    fn arb_suffix() -> impl Strategy<Value = String> {
        prop_oneof![
            "[^\\x00-\\x1f\\x7f]{1,40}",
            "[a-z./:_]{1,10}",
            (1usize..4, 0usize..3).prop_map(|(n, extra)| "a".repeat(63 * n + extra)),
            (0usize..3, "[é中🦀]{1,30}").prop_map(|(n, s)| format!("{}{s}", "b".repeat(62 * n))),
            Just("z".repeat(64)),
            Just("_".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn identifiers_round_trip(
            segments in proptest::collection::vec(arb_segment(), 1..4),
            suffix in arb_suffix(),
        ) {
            let apex = apex();
            let text = format!("{}/{suffix}", segments.join("."));
            let ident = id(&text);
            match identifier_name(&ident, &apex) {
                Ok(name) => {
                    prop_assert!(wire_len(&name) <= MAX_NAME_OCTETS);
                    prop_assert_eq!(map_name(&name, &apex), Some(Mapped::Identifier(ident.clone())));
                    // Another case maps to the same key.
                    let upper = Name::from_labels(name.iter().map(<[u8]>::to_ascii_uppercase)).unwrap();
                    let Some(Mapped::Identifier(again)) = map_name(&upper, &apex) else {
                        return Err(TestCaseError::fail("upper-cased name does not map"));
                    };
                    prop_assert_eq!(again.key(), ident.key());
                }
                Err(DnsError::NameTooLong(_)) => {
                    let wire: usize = identifier_labels(&ident).map(|l| l.len() + 1).sum::<usize>()
                        + apex.wire().len();
                    prop_assert!(wire > MAX_NAME_OCTETS);
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            let prefix = ident.prefix_parsed();
            let name = prefix_name(&prefix, &apex).unwrap();
            prop_assert_eq!(map_name(&name, &apex), Some(Mapped::Prefix(prefix)));
        }

        #[test]
        fn names_that_map_are_canonical(labels in proptest::collection::vec(
            prop_oneof![
                Just(b"_".to_vec()),
                proptest::collection::vec(any::<u8>(), 1..4),
                proptest::collection::vec(b'a'..=b'c', 63..=63),
                "[a-z0-9.]{1,5}".prop_map(String::into_bytes),
            ], 0..6)) {
            let apex = apex();
            let slices: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
            let name = match apex.child(slices.iter().copied()) {
                Ok(name) => name,
                Err(_) => return Ok(()),
            };
            match map_name(&name, &apex) {
                Some(Mapped::Identifier(ident)) => {
                    let back = identifier_name(&ident, &apex).unwrap();
                    prop_assert!(back.eq_case(&name));
                }
                Some(Mapped::Prefix(prefix)) => {
                    prop_assert!(prefix_name(&prefix, &apex).unwrap().eq_case(&name));
                }
                Some(Mapped::Separator(prefix)) => {
                    let back = apex.child(std::iter::once(SEPARATOR).chain(prefix_labels(&prefix))).unwrap();
                    prop_assert!(back.eq_case(&name));
                }
                Some(Mapped::Apex) => prop_assert!(labels.is_empty()),
                None => {}
            }
        }
    }
}
