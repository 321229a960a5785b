//! The JSONL form of identifiers, shared by `idnode import` and the seeds:
//! one identifier with its values a line.
//!
//! ```json
//! {"identifier": "88.100.1/ABC-123", "values": [
//!   {"index": 1, "type": "URL", "data": "https://example.com/abc-123"},
//!   {"index": 7, "type": "costPrice", "data": "12.00 CNY", "permissions": 12, "ttl": 3600},
//!   {"index": 8, "type": "blob", "data_base64": "AAEC"}]}
//! ```
//!
//! A value may also carry `"ttl_absolute": <unix seconds>` (instead of
//! `ttl`) and `"references": [{"identifier": "...", "index": 1}]`.
//! [`to_line`] writes this form (what `idnode export` prints): every
//! field given, so that importing it stores the same values.

use crate::{Permissions, Reference, Ttl, Value};
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub identifier: String,
    pub values: Vec<LineValue>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub overwrite: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineValue {
    pub index: u32,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Relative TTL in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Absolute TTL: cached until these unix seconds (instead of `ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_absolute: Option<u32>,
    /// Permission bits (admin read 8, admin write 4, public read 2, public write 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<LineReference>,
}

/// A reference to a value of another identifier.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineReference {
    pub identifier: String,
    pub index: u32,
}

impl LineValue {
    /// The line form of `value`: its data as text when it is UTF-8, else
    /// base64; its TTL, permissions and references always. The timestamp
    /// is left out: the node sets it when it stores the value.
    pub fn from_value(value: &Value) -> LineValue {
        let (data, data_base64) = match std::str::from_utf8(&value.data) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&value.data)),
            ),
        };
        let (ttl, ttl_absolute) = match value.ttl {
            Ttl::Relative(s) => (Some(s), None),
            Ttl::Absolute(t) => (None, Some(t)),
        };
        LineValue {
            index: value.index,
            kind: value.kind.clone(),
            data,
            data_base64,
            ttl,
            ttl_absolute,
            permissions: Some(value.permissions.0),
            references: value
                .references
                .iter()
                .map(|r| LineReference {
                    identifier: r.identifier.clone(),
                    index: r.index,
                })
                .collect(),
        }
    }
}

/// One identifier and its values as a line (no newline), which
/// [`parse_line`] reads back to the same values (timestamps aside).
pub fn to_line(identifier: &str, values: &[Value]) -> String {
    let line = Line {
        identifier: identifier.to_owned(),
        values: values.iter().map(LineValue::from_value).collect(),
        overwrite: false,
    };
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

impl LineValue {
    /// The value this line form describes (the strings moved, not
    /// copied), or why it is not one.
    pub fn into_value(self) -> Result<Value, String> {
        let data = match (self.data, self.data_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("value {}: data_base64 is not base64: {e}", self.index))?,
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "value {}: give data or data_base64, not both",
                    self.index
                ));
            }
        };
        let mut value = Value::new(self.index, self.kind, data);
        match (self.ttl, self.ttl_absolute) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "value {}: give ttl or ttl_absolute, not both",
                    self.index
                ));
            }
            (Some(ttl), None) => value.ttl = Ttl::Relative(ttl),
            (None, Some(until)) => value.ttl = Ttl::Absolute(until),
            (None, None) => {}
        }
        value.references = self
            .references
            .into_iter()
            .map(|r| Reference {
                identifier: r.identifier,
                index: r.index,
            })
            .collect();
        if let Some(p) = self.permissions {
            value.permissions = Permissions(p);
        }
        Ok(value)
    }
}

/// Parses one line; blank lines and `#` comments give `Ok(None)`. The
/// values come back as [`Value`]s, moved out of the returned line (its
/// `values` is left empty).
pub fn parse_line(text: &str) -> Result<Option<(Line, Vec<Value>)>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut line: Line = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
    let values = std::mem::take(&mut line.values)
        .into_iter()
        .map(LineValue::into_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((line, values)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_rejects_garbage() {
        let (line, values) = parse_line(
            r#"{"identifier":"88.1/A","values":[{"index":1,"type":"URL","data":"u"},{"index":2,"type":"B","data_base64":"AAE=","permissions":12,"ttl":5}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(line.identifier, "88.1/A");
        assert_eq!(values[0].data.as_ref(), b"u");
        assert_eq!(values[1].data.as_ref(), &[0, 1]);
        assert_eq!(values[1].permissions, Permissions(12));
        assert_eq!(values[1].ttl, Ttl::Relative(5));
        assert!(parse_line("  ").unwrap().is_none());
        assert!(parse_line("{not json").is_err());
        assert!(parse_line(r#"{"identifier":"x","values":[],"extra":1}"#).is_err());
    }

    #[test]
    fn lines_round_trip_every_field() {
        let mut text = Value::new(1, "URL", b"https://x/\"y\"\n".to_vec());
        text.ttl = Ttl::Absolute(2_000_000_000);
        text.references = vec![Reference {
            identifier: "88.1/B".into(),
            index: 3,
        }];
        let mut private = Value::new(2, "costPrice", vec![0xff, 0, 1]);
        private.permissions = Permissions(0x0c);
        private.ttl = Ttl::Relative(5);
        let values = vec![text, private];
        let line = to_line("88.1/A", &values);
        let (parsed, back) = parse_line(&line).unwrap().unwrap();
        assert_eq!(parsed.identifier, "88.1/A");
        assert_eq!(back, values);
        assert_eq!(to_line("88.1/A", &back), line);
        assert!(
            parse_line(
                r#"{"identifier":"x","values":[{"index":1,"type":"A","ttl":1,"ttl_absolute":2}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn the_seeds_parse() {
        let seeds = include_str!("../../../seeds/identifiers.jsonl");
        let n = seeds
            .lines()
            .map(|l| parse_line(l).unwrap())
            .filter(Option::is_some)
            .count();
        assert!(n >= 1000, "{n}");
    }
}
