//! Text from the node, made safe to print on a terminal: identifiers,
//! value types and data, audit subjects, error messages. A control
//! character (an escape sequence that clears the screen, retitles the
//! window or rewrites the line), an invisible or a bidirectional-control
//! character is printed escaped as `\u{1b}`, never raw: the characters the
//! node refuses to store in identifiers and types
//! ([`idnode_core::text::forbidden_char`]), which data may still hold.

use idnode_core::text::forbidden_char;
use std::borrow::Cow;
use std::fmt::Write as _;

fn is_unsafe(c: char) -> bool {
    forbidden_char(c).is_some()
}

/// `text` with every control, invisible and bidi-control character
/// escaped as `\u{..}`.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes shown as text: invalid UTF-8 as U+FFFD, then as [`text`].
pub fn bytes(bytes: &[u8]) -> String {
    text(&String::from_utf8_lossy(bytes)).into_owned()
}

/// A message of several lines, each line as [`text`].
pub fn lines(message: &str) -> String {
    message.split('\n').map(text).collect::<Vec<_>>().join("\n")
}

/// `value` as one line of JSON in which every control, invisible and
/// bidi-control character is a `\uXXXX` escape: serde_json escapes C0
/// controls only, and writes DEL, C1 controls and the rest raw. The JSON
/// means the same (these characters only occur inside strings).
pub fn json(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(is_unsafe) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if is_unsafe(c) {
            // Every refused character is in the Basic Multilingual Plane.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(text("88.100.1/ABC-123"), "88.100.1/ABC-123");
        assert!(matches!(text("产品 ä"), Cow::Borrowed(_)));
        assert_eq!(text("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(text("x\u{9b}31m\u{7f}"), "x\\u{9b}31m\\u{7f}");
        assert_eq!(text("AB\u{202e}C\u{200b}"), "AB\\u{202e}C\\u{200b}");
        assert_eq!(text("tab\there\r\n"), "tab\\u{9}here\\u{d}\\u{a}");
        assert_eq!(
            bytes(b"\x1b]0;owned\x07\xff"),
            "\\u{1b}]0;owned\\u{7}\u{fffd}"
        );
        assert_eq!(lines("one\u{1b}\ntwo"), "one\\u{1b}\ntwo");
    }

    #[test]
    fn json_stays_json_with_the_same_meaning() {
        let value = serde_json::json!({
            "handle": "88.1/a\u{202e}b",
            "data": "\u{1b}[31m\u{9b}\u{7f} ä",
        });
        let shown = json(&value);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert!(
            shown.contains("\\u202e") && shown.contains("\\u009b"),
            "{shown}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }
}
