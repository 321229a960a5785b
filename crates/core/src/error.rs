use thiserror::Error;

/// Why an identifier, value or record was refused, or bytes did not decode.
///
/// Each variant names the rule that was broken, so that the message can be
/// shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("identifier is empty")]
    EmptyIdentifier,
    #[error("identifier has {0} bytes; at most {max} are allowed", max = crate::limits::MAX_IDENTIFIER_BYTES)]
    IdentifierTooLong(usize),
    #[error("identifier `{0}` has no `/` between prefix and suffix")]
    MissingSlash(String),
    #[error("identifier has an empty suffix after `/`")]
    EmptySuffix,
    #[error("prefix `{0}` is invalid: {1}")]
    InvalidPrefix(String, &'static str),
    #[error("identifier contains a control character at byte {0}")]
    ControlCharacter(usize),
    /// A character refused on write ([`crate::text::forbidden_char`]) in
    /// the field named first: `identifier`, `value type`.
    #[error(
        "{0} contains {1}; control, invisible and bidirectional-control characters are not allowed"
    )]
    ForbiddenCharacter(&'static str, crate::text::CharAt),
    /// A prefix written with a character outside ASCII; the last field is
    /// the ASCII spelling it looks like, when there is one.
    #[error("prefix `{0}` contains {1}; prefixes are written in ASCII{hint}", hint = ascii_hint(.2))]
    NonAsciiPrefix(String, crate::text::CharAt, Option<String>),
    #[error("value type has {0} bytes; at most {max} are allowed", max = crate::limits::MAX_TYPE_BYTES)]
    TypeTooLong(usize),
    #[error("value type is empty")]
    EmptyType,
    #[error("value data has {0} bytes; at most {max} are allowed", max = crate::limits::MAX_DATA_BYTES)]
    DataTooLarge(usize),
    #[error("record has {0} values; at most {max} are allowed", max = crate::limits::MAX_VALUES)]
    TooManyValues(usize),
    #[error("value has {0} references; at most {max} are allowed", max = crate::limits::MAX_REFERENCES)]
    TooManyReferences(usize),
    #[error("record is {0} bytes encoded; at most {max} are allowed", max = crate::limits::MAX_RECORD_BYTES)]
    RecordTooLarge(usize),
    #[error("two values share index {0}")]
    DuplicateIndex(u32),
    #[error("value index 0 is reserved; use 1 or more")]
    ZeroIndex,
    #[error("bytes end before the {0} they should hold")]
    Truncated(&'static str),
    #[error("{0} has length {1}, more than the {2} bytes that remain")]
    LengthOutOfBounds(&'static str, u64, usize),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("unknown {0} {1}")]
    UnknownTag(&'static str, u32),
    #[error("the stored template does not parse")]
    InvalidTemplate,
    #[error("{0} trailing bytes after the end")]
    TrailingBytes(usize),
}

fn ascii_hint(ascii: &Option<String>) -> String {
    match ascii {
        Some(ascii) => format!(" (did you mean `{ascii}`?)"),
        None => String::new(),
    }
}
