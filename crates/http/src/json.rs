//! Handle values as the Handle REST API writes them in JSON, and back.
//!
//! `{"index":1,"type":"URL","data":{"format":"string","value":"https://..."},
//! "ttl":86400,"timestamp":"2026-11-28T10:00:00Z"}`; `data.format` is
//! `string` (UTF-8 text), `base64`, `hex`, `admin` (`{"handle","index",
//! "permissions"}`, permissions as 12 `0`/`1` characters, list handles
//! first) or `vlist` (`[{"handle","index"}]`). Values read are written as
//! `admin` for HS_ADMIN, `vlist` for HS_VLIST, `string` when the data is
//! UTF-8 text and `base64` otherwise.

use base64::Engine as _;
use bytes::Bytes;
use idnode_core::{Permissions, Ttl, Value};
use idnode_handle::admin::{AdminRef, HsAdmin};
use serde_json::{Value as Json, json};

/// Most values a PUT may carry.
pub const MAX_VALUES: usize = 1000;

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// RFC 3339 UTC of unix seconds.
pub fn rfc3339(secs: u32) -> String {
    let buf = rfc3339_bytes(secs);
    // Digits, dashes, colons, `T` and `Z`: ASCII.
    String::from_utf8_lossy(&buf).into_owned()
}

/// [`rfc3339`] into a stack buffer, without the formatting machinery: a
/// record read writes one a value.
fn rfc3339_bytes(secs: u32) -> [u8; 20] {
    let days = i64::from(secs) / 86_400;
    let rem = i64::from(secs) % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    // A u32 of seconds ends in 2106: four digits of year always do.
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    out
}

fn permissions_text(bits: u16) -> String {
    format!("{:012b}", bits & 0x0fff)
}

/// The JSON of a value's data.
pub fn data(value: &Value) -> Json {
    match value.kind.as_str() {
        "HS_ADMIN" => {
            if let Ok(admin) = HsAdmin::decode(&value.data) {
                return json!({"format": "admin", "value": {
                    "handle": admin.admin.handle,
                    "index": admin.admin.index,
                    "permissions": permissions_text(admin.permissions.0),
                }});
            }
        }
        "HS_VLIST" => {
            if let Ok(members) = idnode_handle::admin::decode_vlist(&value.data) {
                let list: Vec<Json> = members
                    .iter()
                    .map(|m| json!({"handle": m.handle, "index": m.index}))
                    .collect();
                return json!({"format": "vlist", "value": list});
            }
        }
        _ => {}
    }
    match std::str::from_utf8(&value.data) {
        Ok(text) if printable(text) => json!({"format": "string", "value": text}),
        _ => json!({"format": "base64", "value": b64().encode(&value.data)}),
    }
}

/// The JSON of a value (what [`ValueOut`] writes, as a tree).
#[cfg(test)]
pub fn value(value: &Value) -> Json {
    // Serializing into a tree with string keys cannot fail.
    serde_json::to_value(ValueOut(value)).unwrap_or(Json::Null)
}

/// A value as the REST API writes it, serialized straight to the output
/// without building a [`Json`] tree first: the read path's shape (the
/// fields in Handle.Net's order), for the common data formats; admin and
/// vlist data go through [`data`].
pub struct ValueOut<'a>(pub &'a Value);

impl serde::Serialize for ValueOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let value = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("index", &value.index)?;
        map.serialize_entry("type", &value.kind)?;
        match value.kind.as_str() {
            "HS_ADMIN" | "HS_VLIST" => map.serialize_entry("data", &data(value))?,
            _ => map.serialize_entry("data", &DataOut(&value.data))?,
        }
        match value.ttl {
            Ttl::Relative(s) => map.serialize_entry("ttl", &s)?,
            Ttl::Absolute(t) => {
                map.serialize_entry("ttlType", &1)?;
                map.serialize_entry("ttl", &t)?;
            }
        }
        let stamp = rfc3339_bytes(value.timestamp);
        map.serialize_entry("timestamp", std::str::from_utf8(&stamp).unwrap_or_default())?;
        if value.permissions != Permissions::default() {
            let p = value.permissions.0;
            map.serialize_entry("permissions", &format!("{:04b}", p & 0x0f))?;
        }
        if !value.references.is_empty() {
            let refs: Vec<Json> = value
                .references
                .iter()
                .map(|r| json!({"handle": r.identifier, "index": r.index}))
                .collect();
            map.serialize_entry("references", &refs)?;
        }
        map.end()
    }
}

/// Data that is not HS_ADMIN or HS_VLIST, as [`data`] writes it.
struct DataOut<'a>(&'a [u8]);

impl serde::Serialize for DataOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        match std::str::from_utf8(self.0) {
            Ok(text) if printable(text) => {
                map.serialize_entry("format", "string")?;
                map.serialize_entry("value", text)?;
            }
            _ => {
                map.serialize_entry("format", "base64")?;
                map.serialize_entry("value", &b64().encode(self.0))?;
            }
        }
        map.end()
    }
}

/// Whether text goes out as the `string` format: no control characters
/// but newlines and tabs.
fn printable(text: &str) -> bool {
    if text.is_ascii() {
        return !text
            .bytes()
            .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f);
    }
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Why a JSON value was refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn u32_field(v: &Json, field: &str) -> Result<u32, FieldError> {
    match v {
        Json::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(field, "expected a whole number from 0 to 4294967295")),
        Json::String(s) => s
            .parse()
            .map_err(|_| bad(field, "expected a whole number from 0 to 4294967295")),
        _ => Err(bad(field, "expected a number")),
    }
}

fn admin_data(v: &Json, field: &str) -> Result<Vec<u8>, FieldError> {
    let handle = v
        .get("handle")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("{field}.handle"), "expected the admin's handle"))?;
    let index = u32_field(
        v.get("index").unwrap_or(&Json::Null),
        &format!("{field}.index"),
    )?;
    let permissions = match v.get("permissions") {
        None => 0x0fff,
        Some(Json::String(s))
            if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b == b'0' || b == b'1') =>
        {
            u16::from_str_radix(s, 2).unwrap_or(0)
        }
        Some(_) => {
            return Err(bad(
                format!("{field}.permissions"),
                "expected up to 12 characters 0 or 1 (list handles first)",
            ));
        }
    };
    let admin = HsAdmin {
        permissions: idnode_handle::admin::AdminPerms(permissions),
        admin: AdminRef::new(handle, index),
        legacy: false,
    };
    Ok(admin.encode())
}

/// The bytes of a `data` object (or of a bare string, as some clients
/// send for text).
fn data_bytes(v: &Json, field: &str) -> Result<Vec<u8>, FieldError> {
    if let Json::String(s) = v {
        return Ok(s.as_bytes().to_vec());
    }
    let format = v.get("format").and_then(Json::as_str).unwrap_or("string");
    let inner = v.get("value").unwrap_or(&Json::Null);
    let value_field = format!("{field}.value");
    match format {
        "string" => match inner {
            Json::String(s) => Ok(s.as_bytes().to_vec()),
            Json::Number(n) => Ok(n.to_string().into_bytes()),
            _ => Err(bad(value_field, "expected text")),
        },
        "base64" => inner
            .as_str()
            .and_then(|s| b64().decode(s).ok())
            .ok_or_else(|| bad(value_field, "expected base64")),
        "hex" => inner
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| bad(value_field, "expected hexadecimal digits")),
        "admin" => admin_data(inner, &value_field),
        "vlist" => {
            let list = inner
                .as_array()
                .ok_or_else(|| bad(&value_field, "expected a list of {handle, index}"))?;
            let mut members = Vec::with_capacity(list.len().min(MAX_VALUES));
            for (i, m) in list.iter().enumerate().take(MAX_VALUES) {
                let f = format!("{value_field}[{i}]");
                let handle = m
                    .get("handle")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad(format!("{f}.handle"), "expected a handle"))?;
                let index =
                    u32_field(m.get("index").unwrap_or(&Json::Null), &format!("{f}.index"))?;
                members.push(AdminRef::new(handle, index));
            }
            Ok(idnode_handle::admin::encode_vlist(&members))
        }
        other => Err(bad(
            format!("{field}.format"),
            format!("`{other}`: expected string, base64, hex, admin or vlist"),
        )),
    }
}

/// A value from its JSON (`field` names it in errors: `values[2]`).
pub fn parse_value(v: &Json, field: &str) -> Result<Value, FieldError> {
    let index = u32_field(
        v.get("index").unwrap_or(&Json::Null),
        &format!("{field}.index"),
    )?;
    let kind = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("{field}.type"), "expected the value's type"))?;
    let data = data_bytes(
        v.get("data").unwrap_or(&Json::Null),
        &format!("{field}.data"),
    )?;
    let mut value = Value::new(index, kind, Bytes::from(data));
    if let Some(ttl) = v.get("ttl") {
        let ttl = u32_field(ttl, &format!("{field}.ttl"))?;
        value.ttl = match v.get("ttlType").and_then(Json::as_u64) {
            Some(1) => Ttl::Absolute(ttl),
            _ => Ttl::Relative(ttl),
        };
    }
    match v.get("permissions") {
        None => {}
        Some(Json::String(s)) if s.len() == 4 && s.bytes().all(|b| b == b'0' || b == b'1') => {
            value.permissions = Permissions(u8::from_str_radix(s, 2).unwrap_or(0));
        }
        Some(_) => {
            return Err(bad(
                format!("{field}.permissions"),
                "expected 4 characters 0 or 1: admin read, admin write, public read, public write",
            ));
        }
    }
    Ok(value)
}

/// The values of a PUT body: `{"values":[...]}` (a `handle` field is
/// allowed and ignored; the path names the identifier).
pub fn parse_values(body: &Json) -> Result<Vec<Value>, FieldError> {
    let list = body
        .get("values")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("values", "expected a list of values"))?;
    if list.len() > MAX_VALUES {
        return Err(bad("values", format!("at most {MAX_VALUES} values")));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_value(v, &format!("values[{i}]")))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_324_000), "2025-11-28T10:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn values_round_trip_through_json() {
        let admin = HsAdmin {
            permissions: idnode_handle::admin::AdminPerms(0x07f3),
            admin: AdminRef::new("0.NA/88.100.1", 300),
            legacy: false,
        };
        let mut url = Value::new(1, "URL", b"https://example.com/1".to_vec());
        url.permissions = Permissions(0x0e);
        for v in [
            url,
            Value::new(2, "BIN", vec![0u8, 1, 2, 255]),
            Value::new(100, "HS_ADMIN", admin.encode()),
            Value::new(
                200,
                "HS_VLIST",
                idnode_handle::admin::encode_vlist(&[AdminRef::new("88.1/A", 300)]),
            ),
        ] {
            let j = value(&v);
            let back = parse_value(&j, "values[0]").unwrap();
            assert_eq!((back.index, back.kind.as_str()), (v.index, v.kind.as_str()));
            assert_eq!(back.data, v.data, "{j}");
            assert_eq!(back.permissions, v.permissions, "{j}");
        }
        let j = value(&Value::new(100, "HS_ADMIN", admin.encode()));
        assert_eq!(j["data"]["value"]["permissions"], "011111110011");
    }

    #[test]
    fn bad_values_name_their_field() {
        let body: Json = serde_json::json!({"values": [
            {"index": 1, "type": "URL", "data": "x"},
            {"index": -1, "type": "URL", "data": "x"},
        ]});
        assert_eq!(parse_values(&body).unwrap_err().field, "values[1].index");
        let body: Json = serde_json::json!({"values": [
            {"index": 1, "type": "URL", "data": {"format": "base64", "value": "%%"}}
        ]});
        assert_eq!(
            parse_values(&body).unwrap_err().field,
            "values[0].data.value"
        );
        let body: Json = serde_json::json!({"values": [
            {"index": 1, "type": "X", "data": {"format": "nope"}}
        ]});
        assert_eq!(
            parse_values(&body).unwrap_err().field,
            "values[0].data.format"
        );
        assert_eq!(
            parse_values(&serde_json::json!({})).unwrap_err().field,
            "values"
        );
    }
}
