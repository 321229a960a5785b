//! The JSONL form of identifiers, shared by `idnode import` and the seeds:
//! one identifier with its values a line.
//!
//! ```json
//! {"identifier": "88.100.1/ABC-123", "values": [
//!   {"index": 1, "type": "URL", "data": "https://example.com/abc-123"},
//!   {"index": 7, "type": "costPrice", "data": "12.00 CNY", "permissions": 12, "ttl": 3600},
//!   {"index": 8, "type": "blob", "data_base64": "AAEC"}]}
//! ```

use base64::Engine;
use idnode_core::{Permissions, Ttl, Value};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub identifier: String,
    pub values: Vec<LineValue>,
    #[serde(default)]
    pub overwrite: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineValue {
    pub index: u32,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub data_base64: Option<String>,
    /// Relative TTL in seconds.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Permission bits (admin read 8, admin write 4, public read 2, public write 1).
    #[serde(default)]
    pub permissions: Option<u8>,
}

impl LineValue {
    pub fn to_value(&self) -> Result<Value, String> {
        let data = match (&self.data, &self.data_base64) {
            (Some(text), None) => text.as_bytes().to_vec(),
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
        let mut value = Value::new(self.index, self.kind.clone(), data);
        if let Some(ttl) = self.ttl {
            value.ttl = Ttl::Relative(ttl);
        }
        if let Some(p) = self.permissions {
            value.permissions = Permissions(p);
        }
        Ok(value)
    }
}

/// Parses one line; blank lines and `#` comments give `Ok(None)`.
pub fn parse_line(text: &str) -> Result<Option<(Line, Vec<Value>)>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let line: Line = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
    let values = line
        .values
        .iter()
        .map(LineValue::to_value)
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
