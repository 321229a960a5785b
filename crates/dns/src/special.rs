//! GS1 ONS 2.0 and OID ORS (ITU-T X.672) names, answered through the same
//! store (docs/dns-mapping.md, "GS1 ONS and OID ORS names").
//!
//! GS1: a GTIN is registered as an identifier under the configured GS1
//! prefix, its suffix the 14 digits of the GTIN-14 (shorter GTINs padded
//! with zeros on the left, check digit included): `88.100.3/00866993371400`.
//! Its ONS name is its digits without the check digit, the first
//! (indicator) digit kept as the leftmost label, the other twelve reversed,
//! a label each, under `gtin.gs1.id.<apex>`:
//! `0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.<apex>`. Keeping the indicator
//! aside puts the GS1 company prefix's digits next to `gtin`, so a company
//! prefix is one subtree. The name is answered with NAPTR records built from
//! the identifier's URL values (as at the identifier's own name).
//!
//! ORS: an OID is registered as an identifier under the configured OID
//! prefix, its suffix the dotted OID (`1.2.156.100`); its name is its arcs
//! reversed, a label each, under `oid-res.<apex>`: `100.156.2.1.oid-res.<apex>`.
//! It is answered with NAPTR records whose services are ORS service types,
//! from the values whose type [`ors_service`] maps:
//!
//! | value type (ASCII case-insensitive) | ORS service |
//! |---|---|
//! | `URL` | `UINF` (a URI for the node) |
//! | `COID`, `CINF`, `RINF`, `MINF`, `UINF`, `LINF` | the same name |
//! | anything else | none: not published through ORS |
//!
//! Every ORS NAPTR record has flags `u` and the regexp `!^.*$!<data>!`.
//!
//! When GS1 is on, the subtree `gs1.id.<apex>` belongs to it, and when ORS
//! is on, `oid-res.<apex>` belongs to it: prefixes whose first segments are
//! `id.gs1` or `oid-res` cannot be reached through the DNS there.

use crate::DnsError;
use crate::name::Apex;
use hickory_proto::rr::Name;

/// The labels of the GS1 subtree below the apex, leftmost first.
pub const GTIN_SUBTREE: [&[u8]; 3] = [b"gtin", b"gs1", b"id"];
/// The label of the ORS subtree below the apex.
pub const ORS_SUBTREE: &[u8] = b"oid-res";
/// Digits of a GTIN-14.
pub const GTIN_DIGITS: usize = 14;

/// What a name in the GS1 or ORS subtree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Special {
    /// The ONS name of this GTIN-14.
    Gtin(String),
    /// The ORS name of this dotted OID.
    Oid(String),
    /// `id`, `gs1.id`, `gtin.gs1.id`, `oid-res`, and the partial GTIN
    /// names above a full one: nodes that exist without records. (Partial
    /// GTIN names are said to exist whether or not a GTIN is below them:
    /// NODATA where NXDOMAIN would be exact, never the reverse, which would
    /// cut off the names below for resolvers that trust NXDOMAIN, RFC 8020.)
    Branch,
    /// In a subtree, but no name of it.
    Nowhere,
}

/// Whether the labels below an apex (leftmost first) are in the GS1 or
/// ORS subtree, and what they name there.
pub(crate) fn classify(labels: &[&[u8]], gs1: bool, ors: bool) -> Option<Special> {
    let n = labels.len();
    let is = |label: &[u8], want: &[u8]| label.eq_ignore_ascii_case(want);
    if gs1 && n >= 1 && is(labels[n - 1], GTIN_SUBTREE[2]) {
        if n == 1 {
            return Some(Special::Branch);
        }
        if is(labels[n - 2], GTIN_SUBTREE[1]) {
            if n == 2 {
                return Some(Special::Branch);
            }
            if !is(labels[n - 3], GTIN_SUBTREE[0]) {
                return Some(Special::Nowhere);
            }
            let digits = &labels[..n - 3];
            if digits.len() > GTIN_DIGITS - 1 || !digits.iter().all(|l| is_digit_label(l)) {
                return Some(Special::Nowhere);
            }
            return Some(match gtin_from_labels(digits) {
                Some(gtin) => Special::Gtin(gtin),
                None => Special::Branch,
            });
        }
    }
    if ors && n >= 1 && is(labels[n - 1], ORS_SUBTREE) {
        if n == 1 {
            return Some(Special::Branch);
        }
        return Some(match oid_from_labels(&labels[..n - 1]) {
            Some(oid) => Special::Oid(oid),
            None => Special::Nowhere,
        });
    }
    None
}

fn is_digit_label(label: &[u8]) -> bool {
    label.len() == 1 && label[0].is_ascii_digit()
}

/// The GS1 check digit of the ASCII digits before it (mod 10, weights 3
/// and 1 from the right; an octet that is no digit counts as 0).
pub fn gtin_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let value = if d.is_ascii_digit() { d - b'0' } else { 0 };
            u32::from(value) * if i % 2 == 0 { 3 } else { 1 }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// Whether `text` is a GTIN-14: 14 digits, the last the check digit.
pub fn is_gtin14(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == GTIN_DIGITS
        && b.iter().all(u8::is_ascii_digit)
        && gtin_check_digit(&b[..GTIN_DIGITS - 1]) == b[GTIN_DIGITS - 1]
}

/// The 13 labels of a GTIN-14's ONS name (first digit, then digits 13
/// down to 2), leftmost first.
pub fn gtin_labels(gtin14: &str) -> Option<[[u8; 1]; GTIN_DIGITS - 1]> {
    if !is_gtin14(gtin14) {
        return None;
    }
    let b = gtin14.as_bytes();
    let mut labels = [[0u8; 1]; GTIN_DIGITS - 1];
    labels[0] = [b[0]];
    for (i, label) in labels[1..].iter_mut().enumerate() {
        *label = [b[GTIN_DIGITS - 2 - i]];
    }
    Some(labels)
}

/// The ONS name of a GTIN-14.
pub fn gtin_name(gtin14: &str, apex: &Apex) -> Result<Name, DnsError> {
    let labels = gtin_labels(gtin14)
        .ok_or_else(|| DnsError::InvalidConfig(format!("{gtin14:?} is not a GTIN-14")))?;
    apex.child(labels.iter().map(|l| &l[..]).chain(GTIN_SUBTREE))
}

/// The GTIN-14 of the 13 digit labels of an ONS name (check digit
/// computed), or `None` for fewer labels.
fn gtin_from_labels(labels: &[&[u8]]) -> Option<String> {
    if labels.len() != GTIN_DIGITS - 1 {
        return None;
    }
    let mut digits = Vec::with_capacity(GTIN_DIGITS);
    digits.push(*labels[0].first()?);
    for label in labels[1..].iter().rev() {
        digits.push(*label.first()?);
    }
    digits.push(gtin_check_digit(&digits));
    String::from_utf8(digits).ok()
}

/// Whether `text` is a dotted OID of canonical decimal arcs.
pub fn is_oid(text: &str) -> bool {
    !text.is_empty() && text.split('.').all(|arc| is_arc(arc.as_bytes()))
}

fn is_arc(arc: &[u8]) -> bool {
    // 39 digits hold any 128-bit arc; no leading zeros, so one spelling.
    !arc.is_empty()
        && arc.len() <= 39
        && arc.iter().all(u8::is_ascii_digit)
        && (arc[0] != b'0' || arc.len() == 1)
}

/// The ORS name of a dotted OID.
pub fn oid_name(oid: &str, apex: &Apex) -> Result<Name, DnsError> {
    if !is_oid(oid) {
        return Err(DnsError::InvalidConfig(format!("{oid:?} is not an OID")));
    }
    apex.child(
        oid.split('.')
            .rev()
            .map(str::as_bytes)
            .chain(std::iter::once(ORS_SUBTREE)),
    )
}

/// The dotted OID of the arc labels (leftmost = last arc).
fn oid_from_labels(labels: &[&[u8]]) -> Option<String> {
    let mut oid = String::new();
    for (i, arc) in labels.iter().rev().enumerate() {
        if !is_arc(arc) {
            return None;
        }
        if i > 0 {
            oid.push('.');
        }
        // Checked: ASCII digits.
        oid.push_str(std::str::from_utf8(arc).ok()?);
    }
    Some(oid)
}

/// The ORS service a value type is published as (see the module table).
pub fn ors_service(kind: &[u8]) -> Option<&'static str> {
    const SERVICES: [&str; 6] = ["COID", "CINF", "RINF", "MINF", "UINF", "LINF"];
    if kind.eq_ignore_ascii_case(b"URL") {
        return Some("UINF");
    }
    SERVICES
        .into_iter()
        .find(|s| kind.eq_ignore_ascii_case(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;
    use crate::name::Apex;

    fn labels_of(name: &Name, apex: &Apex) -> Vec<Vec<u8>> {
        let n = name.num_labels() as usize - apex.name().num_labels() as usize;
        name.iter().take(n).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn the_ons_example() {
        let apex = Apex::parse("onsepc.example.").unwrap();
        // The example of the spec, read as: first digit kept, then the rest
        // reversed.
        let gtin = "00866993371400";
        assert!(is_gtin14(gtin));
        let name = gtin_name(gtin, &apex).unwrap();
        assert_eq!(
            name.to_ascii(),
            "0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.onsepc.example."
        );
        let labels = labels_of(&name, &apex);
        let slices: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
        assert_eq!(
            classify(&slices, true, false),
            Some(Special::Gtin(gtin.into()))
        );
        assert_eq!(classify(&slices, false, true), None);
    }

    #[test]
    fn check_digits() {
        // GS1's own example: GTIN-13 629104150021 + check digit 3.
        assert_eq!(gtin_check_digit(b"629104150021"), b'3');
        assert!(is_gtin14("06291041500213"));
        assert!(!is_gtin14("06291041500214"));
        assert!(!is_gtin14("6291041500213"));
    }

    #[test]
    fn subtree_nodes() {
        let c = |labels: &[&[u8]]| classify(labels, true, true);
        assert_eq!(c(&[b"id"]), Some(Special::Branch));
        assert_eq!(c(&[b"GS1", b"ID"]), Some(Special::Branch));
        assert_eq!(c(&[b"gtin", b"gs1", b"id"]), Some(Special::Branch));
        assert_eq!(c(&[b"0", b"gtin", b"gs1", b"id"]), Some(Special::Branch));
        assert_eq!(c(&[b"x", b"gtin", b"gs1", b"id"]), Some(Special::Nowhere));
        assert_eq!(c(&[b"x", b"gs1", b"id"]), Some(Special::Nowhere));
        assert_eq!(c(&[b"x", b"id"]), None);
        let fourteen = [&b"1"[..]; 14];
        let mut labels = fourteen.to_vec();
        labels.extend_from_slice(&GTIN_SUBTREE);
        assert_eq!(c(&labels), Some(Special::Nowhere));
        assert_eq!(c(&[b"oid-res"]), Some(Special::Branch));
        assert_eq!(
            c(&[b"100", b"156", b"2", b"1", b"OID-RES"]),
            Some(Special::Oid("1.2.156.100".into()))
        );
        assert_eq!(c(&[b"01", b"oid-res"]), Some(Special::Nowhere));
        assert_eq!(c(&[b"a", b"oid-res"]), Some(Special::Nowhere));
        assert_eq!(classify(&[b"oid-res"], true, false), None);
    }

    #[test]
    fn oid_names_round_trip() {
        let apex = Apex::parse("idnode.internal").unwrap();
        for oid in [
            "1",
            "0.0",
            "1.2.156.100",
            "2.25.329800735698586629295641978511506172918",
        ] {
            let name = oid_name(oid, &apex).unwrap();
            let labels = labels_of(&name, &apex);
            let slices: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
            assert_eq!(
                classify(&slices, false, true),
                Some(Special::Oid(oid.into()))
            );
        }
        assert_eq!(
            oid_name("1.2.156.100", &apex).unwrap().to_ascii(),
            "100.156.2.1.oid-res.idnode.internal."
        );
        assert!(oid_name("1..2", &apex).is_err());
        assert!(!is_oid("1.02"));
    }

    #[test]
    fn ors_services() {
        assert_eq!(ors_service(b"url"), Some("UINF"));
        assert_eq!(ors_service(b"CINF"), Some("CINF"));
        assert_eq!(ors_service(b"rinf"), Some("RINF"));
        assert_eq!(ors_service(b"EMAIL"), None);
    }
}
