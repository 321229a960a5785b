//! Characters that may not be written into an identifier or a value type:
//! controls, and the invisible and bidirectional-control characters that
//! make two different identifiers look the same, or one look like another
//! (`88.100.1/ABC` with a zero-width space inside, a right-to-left override
//! that shows `1-CBA` as `ABC-1`).
//!
//! The registry checks them on every write; reads do not (an identifier
//! that was never written is simply not found), so the resolution path
//! pays nothing for them.

use crate::Error;
use std::fmt;

/// The name of a character refused in identifiers and value types, or
/// `None` when it is allowed there:
///
/// - C0 and C1 controls and DEL (U+0000..U+001F, U+007F..U+009F);
/// - invisible characters: U+00AD SOFT HYPHEN, U+200B..U+200D (zero-width
///   space, non-joiner, joiner), U+2060..U+2064 (word joiner and the
///   invisible operators), U+FEFF ZERO WIDTH NO-BREAK SPACE;
/// - bidirectional controls: U+061C, U+200E, U+200F, U+202A..U+202E,
///   U+2066..U+2069.
pub fn forbidden_char(c: char) -> Option<&'static str> {
    Some(match c {
        '\0' => "NULL",
        '\t' => "CHARACTER TABULATION",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\u{1b}' => "ESCAPE",
        '\u{01}'..='\u{1f}' => "C0 CONTROL",
        '\u{7f}' => "DELETE",
        '\u{85}' => "NEXT LINE",
        '\u{9b}' => "CONTROL SEQUENCE INTRODUCER",
        '\u{9d}' => "OPERATING SYSTEM COMMAND",
        '\u{80}'..='\u{9f}' => "C1 CONTROL",
        '\u{ad}' => "SOFT HYPHEN",
        '\u{61c}' => "ARABIC LETTER MARK",
        '\u{200b}' => "ZERO WIDTH SPACE",
        '\u{200c}' => "ZERO WIDTH NON-JOINER",
        '\u{200d}' => "ZERO WIDTH JOINER",
        '\u{200e}' => "LEFT-TO-RIGHT MARK",
        '\u{200f}' => "RIGHT-TO-LEFT MARK",
        '\u{202a}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202b}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202c}' => "POP DIRECTIONAL FORMATTING",
        '\u{202d}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202e}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}' => "FUNCTION APPLICATION",
        '\u{2062}' => "INVISIBLE TIMES",
        '\u{2063}' => "INVISIBLE SEPARATOR",
        '\u{2064}' => "INVISIBLE PLUS",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{feff}' => "ZERO WIDTH NO-BREAK SPACE",
        _ => return None,
    })
}

/// The first refused character of `text` and its byte offset.
pub fn find_forbidden(text: &str) -> Option<(usize, char)> {
    if text.is_ascii() {
        // Only C0 controls and DEL are refused in ASCII.
        return text
            .bytes()
            .position(|b| b < 0x20 || b == 0x7f)
            .map(|at| (at, char::from(text.as_bytes()[at])));
    }
    text.char_indices()
        .find(|&(_, c)| forbidden_char(c).is_some())
}

/// Refuses `text` when it holds a character of [`forbidden_char`]; the
/// error names `what` (`identifier`, `value type`), the character and its
/// byte offset.
pub fn check_text(what: &'static str, text: &str) -> Result<(), Error> {
    match find_forbidden(text) {
        Some((at, c)) => Err(Error::ForbiddenCharacter(what, CharAt { c, at })),
        None => Ok(()),
    }
}

/// A character and where it is: shown as `U+202E RIGHT-TO-LEFT OVERRIDE
/// at byte 12` (the name when this crate knows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharAt {
    pub c: char,
    pub at: usize,
}

impl fmt::Display for CharAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", u32::from(self.c))?;
        if let Some(name) = char_name(self.c) {
            write!(f, " {name}")?;
        }
        write!(f, " at byte {}", self.at)
    }
}

/// The Unicode name of the characters errors talk about: the refused ones
/// and the look-alikes of the ASCII a prefix is made of.
fn char_name(c: char) -> Option<&'static str> {
    const FULLWIDTH_DIGITS: [&str; 10] = [
        "FULLWIDTH DIGIT ZERO",
        "FULLWIDTH DIGIT ONE",
        "FULLWIDTH DIGIT TWO",
        "FULLWIDTH DIGIT THREE",
        "FULLWIDTH DIGIT FOUR",
        "FULLWIDTH DIGIT FIVE",
        "FULLWIDTH DIGIT SIX",
        "FULLWIDTH DIGIT SEVEN",
        "FULLWIDTH DIGIT EIGHT",
        "FULLWIDTH DIGIT NINE",
    ];
    match c {
        '\u{ff10}'..='\u{ff19}' => Some(FULLWIDTH_DIGITS[(u32::from(c) - 0xff10) as usize]),
        '\u{ff0e}' => Some("FULLWIDTH FULL STOP"),
        '\u{3002}' => Some("IDEOGRAPHIC FULL STOP"),
        '\u{ff61}' => Some("HALFWIDTH IDEOGRAPHIC FULL STOP"),
        '\u{a0}' => Some("NO-BREAK SPACE"),
        '\u{3000}' => Some("IDEOGRAPHIC SPACE"),
        _ => forbidden_char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_what_it_refuses() {
        let e = check_text("identifier", "88.100.1/AB\u{202e}C").unwrap_err();
        assert_eq!(
            e.to_string(),
            "identifier contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 11; control, invisible \
             and bidirectional-control characters are not allowed"
        );
        for (text, c, at) in [
            ("a\u{200b}b", '\u{200b}', 1),
            ("ab\u{ad}", '\u{ad}', 2),
            ("\u{feff}x", '\u{feff}', 0),
            ("ä\u{85}", '\u{85}', 2),
            ("x\u{9f}", '\u{9f}', 1),
            ("x\u{2066}", '\u{2066}', 1),
            ("x\u{2064}", '\u{2064}', 1),
            ("x\u{1b}[31m", '\u{1b}', 1),
            ("x\u{7f}", '\u{7f}', 1),
        ] {
            assert_eq!(find_forbidden(text), Some((at, c)), "{text:?}");
        }
        assert_eq!(check_text("value type", "URL"), Ok(()));
        assert_eq!(check_text("value type", "产品名称ä"), Ok(()));
        assert_eq!(
            CharAt {
                c: '\u{ff11}',
                at: 3
            }
            .to_string(),
            "U+FF11 FULLWIDTH DIGIT ONE at byte 3"
        );
        assert_eq!(CharAt { c: 'ß', at: 0 }.to_string(), "U+00DF at byte 0");
    }

    proptest! {
        #[test]
        fn ascii_fast_path_agrees(text in "[\\x00-\\x7f]{0,40}") {
            let slow = text.char_indices().find(|&(_, c)| forbidden_char(c).is_some());
            prop_assert_eq!(find_forbidden(&text), slow);
        }

        #[test]
        fn refuses_every_control(c in proptest::char::range('\0', '\u{9f}'), pre in "[a-z]{0,5}") {
            let text = format!("{pre}{c}");
            let expected = c.is_control().then_some((pre.len(), c));
            prop_assert_eq!(find_forbidden(&text), expected);
        }
    }
}
