//! What the store keeps about a prefix, in the `prefixes` key space under
//! the prefix's normalized key: written by the registry, read by every
//! answering path (Handle referrals, DNS zone cuts) to learn whether a
//! prefix is homed here or delegated; and the prefix's metadata template,
//! if it has one of its own.

use crate::Error;
use crate::template::Template;
use crate::wire::{Reader, put_bytes, put_u32};

/// The stored form without a template (what every entry was before
/// templates, so older entries decode unchanged).
const PREFIX_INFO_FORMAT: u8 = 1;
/// The stored form with a template after the prefix.
const PREFIX_INFO_WITH_TEMPLATE: u8 = 2;

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
    /// The prefix's own metadata template (docs/templates.md); `None` when
    /// it has none (it may inherit one from a prefix above it).
    pub template: Option<Template>,
}

impl PrefixInfo {
    /// A prefix homed on this node, created at `created` (Unix seconds).
    pub fn homed_here(prefix: impl Into<String>, created: u32) -> Self {
        Self {
            prefix: prefix.into(),
            homed: true,
            created,
            template: None,
        }
    }

    /// The stored form: format byte (`1` without a template, `2` with
    /// one), homed byte, created (u32), prefix (length-prefixed string),
    /// then with format 2 the template's JSON form (length-prefixed).
    pub fn encode(&self) -> Vec<u8> {
        let template = self.template.as_ref().map(Template::to_json);
        let extra = template.as_ref().map_or(0, |t| 4 + t.len());
        let mut out = Vec::with_capacity(1 + 1 + 4 + 4 + self.prefix.len() + extra);
        out.push(match template {
            Some(_) => PREFIX_INFO_WITH_TEMPLATE,
            None => PREFIX_INFO_FORMAT,
        });
        out.push(u8::from(self.homed));
        put_u32(&mut out, self.created);
        put_bytes(&mut out, self.prefix.as_bytes());
        if let Some(template) = template {
            put_bytes(&mut out, template.as_bytes());
        }
        out
    }

    /// Decodes the stored form; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let format = r.u8("prefix info format")?;
        if format != PREFIX_INFO_FORMAT && format != PREFIX_INFO_WITH_TEMPLATE {
            return Err(Error::UnknownTag("prefix info format", format.into()));
        }
        let homed = r.u8("prefix homed flag")? != 0;
        let created = r.u32("prefix creation time")?;
        let prefix = r.str("prefix")?.to_owned();
        let template = match format {
            PREFIX_INFO_WITH_TEMPLATE => {
                let text = r.str("prefix template")?;
                Some(Template::from_json(text).map_err(|_| Error::InvalidTemplate)?)
            }
            _ => None,
        };
        r.finish()?;
        Ok(Self {
            prefix,
            homed,
            created,
            template,
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
            [PREFIX_INFO_FORMAT | PREFIX_INFO_WITH_TEMPLATE, homed, ..] => Some(*homed != 0),
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
                template: None,
            };
            assert_eq!(PrefixInfo::homed_in(&info.encode()), Some(homed));
            let with = PrefixInfo {
                template: Some(Template::default()),
                ..info
            };
            assert_eq!(PrefixInfo::homed_in(&with.encode()), Some(homed));
        }
        assert_eq!(PrefixInfo::homed_in(&[]), None);
        assert_eq!(PrefixInfo::homed_in(&[3, 1]), None);
    }

    #[test]
    fn a_template_round_trips_and_old_entries_still_decode() {
        let plain = PrefixInfo::homed_here("88.100", 9);
        let old = plain.encode();
        assert_eq!(old[0], 1, "no template: the stored form of before");
        assert_eq!(PrefixInfo::decode(&old).unwrap(), plain);
        let template = Template::from_json(
            r#"{"fields": [{"type": "URL", "kind": "url", "required": true}]}"#,
        )
        .unwrap();
        let with = PrefixInfo {
            template: Some(template),
            ..plain
        };
        let bytes = with.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(PrefixInfo::decode(&bytes).unwrap(), with);
        for cut in 0..bytes.len() {
            assert!(PrefixInfo::decode(&bytes[..cut]).is_err());
        }
        // A stored template that no longer parses is corrupt, not a panic.
        let mut bad = old.clone();
        bad[0] = 2;
        put_bytes(&mut bad, b"{not json");
        assert_eq!(PrefixInfo::decode(&bad), Err(Error::InvalidTemplate));
    }
}
