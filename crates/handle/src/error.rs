//! Why bytes did not decode as a Handle message.

use thiserror::Error;

/// Why bytes did not decode. Small and `Copy`, so the hot path can return it
/// without allocating; the `&'static str` names the field concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before this field does.
    #[error("message ends inside its {0}")]
    Truncated(&'static str),
    /// A length or count exceeds what the protocol or our limits allow.
    #[error("{0} of {1} exceeds the limit")]
    TooLong(&'static str, u32),
    /// The envelope names a protocol version this node does not speak.
    #[error("unsupported protocol version {0}.{1}")]
    BadVersion(u8, u8),
    /// Two lengths that must agree do not (envelope and bytes received,
    /// header and body, credential and what remains).
    #[error("{0} does not match the bytes present")]
    LengthMismatch(&'static str),
    /// The envelope says the message is compressed or encrypted, which this
    /// node does not support (no sessions).
    #[error("envelope flags {0:#04x} (compressed or encrypted) are not supported")]
    UnsupportedFlags(u8),
    /// A field holds a value that is not allowed there.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

impl From<idnode_core::Error> for DecodeError {
    /// Maps the errors of [`idnode_core::wire::Reader`] and value decoding
    /// to their `Copy` form.
    fn from(e: idnode_core::Error) -> Self {
        use idnode_core::Error as E;
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match e {
            E::Truncated(what) | E::LengthOutOfBounds(what, _, _) => DecodeError::Truncated(what),
            E::InvalidUtf8(what) | E::UnknownTag(what, _) => DecodeError::Malformed(what),
            E::TypeTooLong(n) => DecodeError::TooLong("value type", clamp(n)),
            E::DataTooLarge(n) => DecodeError::TooLong("value data", clamp(n)),
            E::TooManyValues(n) => DecodeError::TooLong("value count", clamp(n)),
            E::TooManyReferences(n) => DecodeError::TooLong("reference count", clamp(n)),
            E::IdentifierTooLong(n) => DecodeError::TooLong("handle", clamp(n)),
            E::RecordTooLarge(n) => DecodeError::TooLong("record", clamp(n)),
            E::TrailingBytes(_) => DecodeError::LengthMismatch("trailing bytes"),
            _ => DecodeError::Malformed("value"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn stays_small_and_maps_core_errors() {
        assert!(std::mem::size_of::<DecodeError>() <= 24);
        assert_eq!(
            DecodeError::from(idnode_core::Error::LengthOutOfBounds("value data", 9, 1)),
            DecodeError::Truncated("value data")
        );
        assert_eq!(
            DecodeError::from(idnode_core::Error::TypeTooLong(200)),
            DecodeError::TooLong("value type", 200)
        );
        assert_eq!(
            DecodeError::Truncated("message header").to_string(),
            "message ends inside its message header"
        );
    }
}
