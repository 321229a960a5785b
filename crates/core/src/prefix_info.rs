//! What the store keeps about a prefix, in the `prefixes` key space under
//! the prefix's normalized key: written by the registry, read by every
//! answering path (Handle referrals, DNS zone cuts) to learn whether a
//! prefix is homed here or delegated.

use crate::Error;
use crate::wire::{Reader, put_bytes, put_u32};

const PREFIX_INFO_FORMAT: u8 = 1;

/// What the store keeps about a prefix (in the `prefixes` key space, under
/// [`Prefix::key`](crate::Prefix::key)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The prefix as it was created.
    pub prefix: String,
    /// Whether this node homes the prefix.
    pub homed: bool,
    /// Unix seconds when it was created here.
    pub created: u32,
}

impl PrefixInfo {
    /// A prefix homed on this node, created at `created` (Unix seconds).
    pub fn homed_here(prefix: impl Into<String>, created: u32) -> Self {
        Self {
            prefix: prefix.into(),
            homed: true,
            created,
        }
    }

    /// The stored form: format byte `1`, homed byte, created (u32), prefix
    /// (length-prefixed string).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 1 + 4 + 4 + self.prefix.len());
        out.push(PREFIX_INFO_FORMAT);
        out.push(u8::from(self.homed));
        put_u32(&mut out, self.created);
        put_bytes(&mut out, self.prefix.as_bytes());
        out
    }

    /// Decodes the stored form; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let format = r.u8("prefix info format")?;
        if format != PREFIX_INFO_FORMAT {
            return Err(Error::UnknownTag("prefix info format", format.into()));
        }
        let homed = r.u8("prefix homed flag")? != 0;
        let created = r.u32("prefix creation time")?;
        let prefix = r.str("prefix")?.to_owned();
        r.finish()?;
        Ok(Self {
            prefix,
            homed,
            created,
        })
    }
}

impl PrefixInfo {
    /// Whether the stored form `bytes` says the prefix is homed here,
    /// without decoding the rest (the answering paths ask this once per
    /// question that has no record). `None` when it is not a stored
    /// `PrefixInfo`.
    pub fn homed_in(bytes: &[u8]) -> Option<bool> {
        match bytes {
            [PREFIX_INFO_FORMAT, homed, ..] => Some(*homed != 0),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn homed_in_reads_the_flag_of_the_stored_form() {
        for homed in [true, false] {
            let info = PrefixInfo {
                prefix: "88.100".into(),
                homed,
                created: 7,
            };
            assert_eq!(PrefixInfo::homed_in(&info.encode()), Some(homed));
        }
        assert_eq!(PrefixInfo::homed_in(&[]), None);
        assert_eq!(PrefixInfo::homed_in(&[2, 1]), None);
    }
}
