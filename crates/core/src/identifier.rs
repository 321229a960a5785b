//! Identifiers (`88.100.1/ABC-123`) and prefixes (`88.100.1`).

use crate::Error;
use crate::limits::MAX_IDENTIFIER_BYTES;
use crate::text::{CharAt, check_text};
use std::fmt;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The prefix under which prefixes themselves are identifiers: `0.NA/88.100`.
pub const PREFIX_AUTHORITY: &str = "0.NA";

/// A parsed identifier: `prefix/suffix`.
///
/// Keeps the spelling it was given, in Unicode NFC ([`Identifier::as_str`]:
/// `a` and a combining diaeresis become `ä`, so two spellings of one text
/// are one identifier), and its normalized form ([`Identifier::key`], that
/// spelling ASCII upper-cased), which is what comparison, hashing and
/// storage use.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    text: String,
    key: String,
    slash: usize,
}

impl Identifier {
    /// Parses and checks an identifier.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::EmptyIdentifier);
        }
        if text.len() > MAX_IDENTIFIER_BYTES {
            return Err(Error::IdentifierTooLong(text.len()));
        }
        if let Some(at) = text.bytes().position(|b| b < 0x20 || b == 0x7f) {
            return Err(Error::ControlCharacter(at));
        }
        let nfc;
        let text = match nfc_of(text) {
            Some(normalized) => {
                nfc = normalized;
                if nfc.len() > MAX_IDENTIFIER_BYTES {
                    return Err(Error::IdentifierTooLong(nfc.len()));
                }
                nfc.as_str()
            }
            None => text,
        };
        let slash = text
            .find('/')
            .ok_or_else(|| Error::MissingSlash(text.to_owned()))?;
        let (prefix, suffix) = (&text[..slash], &text[slash + 1..]);
        if suffix.is_empty() {
            return Err(Error::EmptySuffix);
        }
        check_prefix(prefix)?;
        let mut key = String::with_capacity(text.len());
        key.push_str(text);
        key.make_ascii_uppercase();
        Ok(Self {
            text: text.to_owned(),
            key,
            slash,
        })
    }

    /// The rules an identifier must also meet to be written, beyond those
    /// of [`Identifier::parse`] (which reads use: an identifier that breaks
    /// them was never written, so a read of it finds nothing):
    ///
    /// - no control, invisible or bidirectional-control character anywhere
    ///   ([`crate::text::forbidden_char`]);
    /// - the prefix in ASCII ([`Prefix::check_new`]), and so the prefix of
    ///   a prefix record `0.NA/<prefix>`.
    ///
    /// (The suffix needs no check of its form: [`Identifier::parse`] keeps
    /// it in NFC.) An identifier in ASCII meets them once it parses.
    pub fn check_new(&self) -> Result<(), Error> {
        if self.text.is_ascii() {
            return Ok(());
        }
        check_text("identifier", &self.text)?;
        check_prefix_ascii(self.prefix())?;
        if let Some(prefix) = self.as_prefix_record() {
            prefix.check_new()?;
        }
        Ok(())
    }

    /// The identifier as it was registered.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalized form: the key of the record in the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The prefix part, as spelled.
    pub fn prefix(&self) -> &str {
        &self.text[..self.slash]
    }

    /// The suffix part, as spelled.
    pub fn suffix(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// The prefix this identifier lives under, as a [`Prefix`].
    pub fn prefix_parsed(&self) -> Prefix {
        Prefix::from_checked(self.prefix())
    }

    /// When this identifier is a prefix record (`0.NA/88.100`), that prefix.
    pub fn as_prefix_record(&self) -> Option<Prefix> {
        if self.key[..self.slash] == *PREFIX_AUTHORITY.to_ascii_uppercase() {
            Prefix::parse(self.suffix()).ok()
        } else {
            None
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({:?})", self.text)
    }
}

/// A prefix: dot-separated segments, each level a delegation (`88.100.1`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Prefix {
    text: String,
    key: String,
}

impl Prefix {
    /// Parses and checks a prefix.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_IDENTIFIER_BYTES - PREFIX_AUTHORITY.len() - 1 {
            return Err(Error::IdentifierTooLong(text.len()));
        }
        if let Some(at) = text.bytes().position(|b| b < 0x20 || b == 0x7f) {
            return Err(Error::ControlCharacter(at));
        }
        check_prefix(text)?;
        Ok(Self::from_checked(text))
    }

    /// The rules a prefix must also meet to be created or delegated,
    /// beyond those of [`Prefix::parse`]: it is ASCII, as DNS names and
    /// Handle clients expect. A prefix spelled with look-alikes (`88.１００`,
    /// full-width digits) is refused with its ASCII spelling suggested.
    pub fn check_new(&self) -> Result<(), Error> {
        check_prefix_ascii(&self.text)
    }

    fn from_checked(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            key: text.to_ascii_uppercase(),
        }
    }

    /// The prefix as spelled.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalized form.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The identifier of this prefix's own record: `0.NA/<prefix>`.
    pub fn record_identifier(&self) -> Identifier {
        let text = format!("{PREFIX_AUTHORITY}/{}", self.text);
        // The prefix was checked and `0.NA` is a valid prefix, so the joined
        // text parses unless it is too long, which `parse` ruled out.
        Identifier::parse(&text).unwrap_or_else(|_| unreachable!("checked prefix"))
    }

    /// The parent prefix (`88.100` for `88.100.1`), if any.
    pub fn parent(&self) -> Option<Prefix> {
        self.text
            .rfind('.')
            .map(|dot| Self::from_checked(&self.text[..dot]))
    }

    /// The segments, as spelled.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.text.split('.')
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &Prefix) -> bool {
        other.key == self.key
            || (other.key.starts_with(&self.key)
                && other.key.as_bytes().get(self.key.len()) == Some(&b'.'))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({:?})", self.text)
    }
}

fn check_prefix(prefix: &str) -> Result<(), Error> {
    let bad = |why| Err(Error::InvalidPrefix(prefix.to_owned(), why));
    if prefix.is_empty() {
        return bad("it is empty");
    }
    for segment in prefix.split('.') {
        if segment.is_empty() {
            return bad("a segment between dots is empty");
        }
        if segment == "_" {
            return bad("a segment may not be `_` (it separates suffix from prefix in the DNS)");
        }
        if segment.contains('/') {
            return bad("a segment may not contain `/`");
        }
        if segment.chars().any(char::is_whitespace) {
            return bad("a segment may not contain whitespace");
        }
        if segment.len() > 63 {
            return bad("a segment has more than 63 bytes");
        }
    }
    Ok(())
}

/// The write rule of prefixes ([`Prefix::check_new`]).
fn check_prefix_ascii(prefix: &str) -> Result<(), Error> {
    if prefix.is_ascii() {
        return Ok(());
    }
    check_text("prefix", prefix)?;
    let Some((at, c)) = prefix.char_indices().find(|(_, c)| !c.is_ascii()) else {
        return Ok(());
    };
    // Full-width digits and stops: NFKC folds the digits to ASCII, the
    // ideographic full stop is a dot.
    let ascii: String = prefix
        .nfkc()
        .map(|c| if c == '\u{3002}' { '.' } else { c })
        .collect();
    let hint = (ascii.is_ascii() && check_prefix(&ascii).is_ok()).then_some(ascii);
    Err(Error::NonAsciiPrefix(
        prefix.to_owned(),
        CharAt { c, at },
        hint,
    ))
}

/// `text` in Unicode NFC when that differs from `text`; `None` for text
/// already in NFC (all ASCII text is).
fn nfc_of(text: &str) -> Option<String> {
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return None;
    }
    let nfc: String = text.nfc().collect();
    (nfc != text).then_some(nfc)
}

/// Writes the normalized form of `raw` into `out` (its NFC spelling, as
/// [`Identifier::parse`] keeps it, ASCII upper-cased), reusing its
/// allocation: the hot path's way to build a lookup key. ASCII, and text
/// already in NFC, take the fast path.
#[inline]
pub fn normalize_into(raw: &[u8], out: &mut Vec<u8>) {
    if !raw.is_ascii()
        && let Ok(text) = std::str::from_utf8(raw)
        && let Some(nfc) = nfc_of(text)
    {
        out.clear();
        out.extend_from_slice(nfc.as_bytes());
        out.make_ascii_uppercase();
        return;
    }
    out.clear();
    out.resize(raw.len(), 0);
    // Equal lengths and no branch per byte: the compiler vectorizes it.
    for (o, &b) in out.iter_mut().zip(raw) {
        *o = b.to_ascii_uppercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn normalize_into_upper_cases_ascii_only(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut out = vec![1, 2, 3];
            normalize_into(&raw, &mut out);
            let expected = match std::str::from_utf8(&raw).ok().and_then(nfc_of) {
                Some(nfc) => nfc.into_bytes().to_ascii_uppercase(),
                None => raw.to_ascii_uppercase(),
            };
            prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn parses_parts_and_keeps_spelling() {
        let id = Identifier::parse("88.100.1/Abc-123").unwrap();
        assert_eq!(id.prefix(), "88.100.1");
        assert_eq!(id.suffix(), "Abc-123");
        assert_eq!(id.as_str(), "88.100.1/Abc-123");
        assert_eq!(id.key(), "88.100.1/ABC-123");
        assert_eq!(
            Identifier::parse("88.100.1/abc-123").unwrap().key(),
            id.key()
        );
    }

    #[test]
    fn suffix_may_hold_slashes_and_utf8() {
        let id = Identifier::parse("88.100.1/a/b/ä").unwrap();
        assert_eq!(id.suffix(), "a/b/ä");
        // Non-ASCII letters are compared as they are.
        assert_eq!(id.key(), "88.100.1/A/B/ä");
    }

    #[test]
    fn rejects_bad_identifiers() {
        assert_eq!(Identifier::parse(""), Err(Error::EmptyIdentifier));
        assert!(matches!(
            Identifier::parse("88.100"),
            Err(Error::MissingSlash(_))
        ));
        assert_eq!(Identifier::parse("88/"), Err(Error::EmptySuffix));
        assert!(matches!(
            Identifier::parse("/x"),
            Err(Error::InvalidPrefix(..))
        ));
        assert!(matches!(
            Identifier::parse("88..1/x"),
            Err(Error::InvalidPrefix(..))
        ));
        assert!(matches!(
            Identifier::parse("88._/x"),
            Err(Error::InvalidPrefix(..))
        ));
        assert_eq!(
            Identifier::parse("88/a\nb"),
            Err(Error::ControlCharacter(4))
        );
        let long = format!("88/{}", "x".repeat(2046));
        assert_eq!(
            Identifier::parse(&long),
            Err(Error::IdentifierTooLong(2049))
        );
        assert!(Identifier::parse(&long[..2048]).is_ok());
    }

    #[test]
    fn new_identifiers_refuse_invisible_bidi_and_control_characters() {
        let check = |text: &str| Identifier::parse(text).unwrap().check_new();
        assert_eq!(check("88.100.1/ABC-123"), Ok(()));
        assert_eq!(check("88.100.1/产品-ä"), Ok(()));
        let e = check("88.100.1/ABC\u{202e}321").unwrap_err();
        assert_eq!(
            e.to_string(),
            "identifier contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 12; control, invisible \
             and bidirectional-control characters are not allowed"
        );
        for (text, at) in [
            ("88.100.1/A\u{200b}B", 10),
            ("88.100.1/\u{feff}AB", 9),
            ("88.100.1/AB\u{ad}", 11),
            ("88.100.1/A\u{9b}31m", 10),
            ("88.100.1/A\u{2069}", 10),
            ("88\u{200d}.1/A", 2),
        ] {
            assert!(
                matches!(check(text), Err(Error::ForbiddenCharacter("identifier", c)) if c.at == at),
                "{text:?}: {:?}",
                check(text)
            );
        }
        // Reads still parse them: they are simply not found.
        assert!(Identifier::parse("88.100.1/A\u{200b}B").is_ok());
    }

    #[test]
    fn new_prefixes_are_ascii() {
        let e = Prefix::parse("88.１００").unwrap().check_new().unwrap_err();
        assert_eq!(
            e.to_string(),
            "prefix `88.１００` contains U+FF11 FULLWIDTH DIGIT ONE at byte 3; prefixes are \
             written in ASCII (did you mean `88.100`?)"
        );
        let e = Identifier::parse("88.１００/X")
            .unwrap()
            .check_new()
            .unwrap_err();
        assert!(
            matches!(e, Error::NonAsciiPrefix(_, _, Some(ref a)) if a == "88.100"),
            "{e}"
        );
        // The prefix of a prefix record is a prefix too.
        let e = Identifier::parse("0.NA/88。1")
            .unwrap()
            .check_new()
            .unwrap_err();
        assert!(
            matches!(e, Error::NonAsciiPrefix(_, _, Some(ref a)) if a == "88.1"),
            "{e}"
        );
        let e = Prefix::parse("88.ä").unwrap().check_new().unwrap_err();
        assert!(matches!(e, Error::NonAsciiPrefix(_, _, None)), "{e}");
        assert_eq!(Prefix::parse("88.a-1").unwrap().check_new(), Ok(()));
    }

    #[test]
    fn suffixes_are_kept_and_compared_in_nfc() {
        let composed = "88.100.1/x\u{e4}";
        let decomposed = "88.100.1/xa\u{308}";
        let one = Identifier::parse(composed).unwrap();
        let other = Identifier::parse(decomposed).unwrap();
        assert_eq!(other.as_str(), composed);
        assert_eq!(one, other);
        assert_eq!(other.key(), "88.100.1/X\u{e4}");
        assert_eq!(other.check_new(), Ok(()));
        // The hot path's key is the parsed identifier's key.
        let mut key = Vec::new();
        normalize_into(decomposed.as_bytes(), &mut key);
        assert_eq!(key, other.key().as_bytes());
        normalize_into(composed.as_bytes(), &mut key);
        assert_eq!(key, other.key().as_bytes());
        // Invalid UTF-8 is upper-cased byte by byte, as ever.
        normalize_into(b"88.1/a\xff", &mut key);
        assert_eq!(key, b"88.1/A\xff");
    }

    #[test]
    fn prefixes_and_their_records() {
        let p = Prefix::parse("88.100.1").unwrap();
        assert_eq!(p.record_identifier().as_str(), "0.NA/88.100.1");
        assert_eq!(p.parent().unwrap().as_str(), "88.100");
        assert_eq!(p.parent().unwrap().parent().unwrap().as_str(), "88");
        assert!(p.parent().unwrap().parent().unwrap().parent().is_none());
        assert!(Prefix::parse("88").unwrap().contains(&p));
        assert!(!Prefix::parse("88.10").unwrap().contains(&p));
        let rec = Identifier::parse("0.na/88.100.1").unwrap();
        assert_eq!(rec.as_prefix_record().unwrap().key(), "88.100.1");
        assert!(
            Identifier::parse("88.100/1")
                .unwrap()
                .as_prefix_record()
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn parse_round_trips(prefix in "[0-9A-Za-z-]{1,8}(\\.[0-9A-Za-z-]{1,8}){0,4}",
                             suffix in "[^\\x00-\\x1f\\x7f]{1,60}") {
            let text = format!("{prefix}/{suffix}");
            let id = Identifier::parse(&text).unwrap();
            // Kept in NFC: the text itself when it is in NFC.
            let suffix: String = suffix.nfc().collect();
            let text = format!("{prefix}/{suffix}");
            prop_assert_eq!(id.as_str(), text.as_str());
            prop_assert_eq!(id.prefix(), prefix.as_str());
            prop_assert_eq!(id.suffix(), suffix.as_str());
            let again = Identifier::parse(id.as_str()).unwrap();
            prop_assert_eq!(again.key(), id.key());
            let mut key = Vec::new();
            normalize_into(text.as_bytes(), &mut key);
            prop_assert_eq!(key.as_slice(), id.key().as_bytes());
        }

        #[test]
        fn never_panics_and_rejects_control_bytes(text in "\\PC{0,40}[\\x00-\\x1f]\\PC{0,40}") {
            prop_assert!(Identifier::parse(&text).is_err());
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,100}") {
            if let Ok(id) = Identifier::parse(&text) {
                let _ = id.check_new();
            }
            if let Ok(prefix) = Prefix::parse(&text) {
                let _ = prefix.check_new();
            }
        }

        #[test]
        fn what_check_new_accepts_is_nfc_without_forbidden_characters(text in "\\PC{0,30}") {
            let text = format!("88.1/x{text}");
            if let Ok(id) = Identifier::parse(&text)
                && id.check_new().is_ok()
            {
                prop_assert!(crate::text::find_forbidden(&text).is_none());
                prop_assert_eq!(id.suffix().nfc().collect::<String>(), id.suffix());
            }
        }
    }
}
