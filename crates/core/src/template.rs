//! Metadata templates: which value types the identifiers under a prefix
//! must or may carry, and what each type's data must look like
//! (docs/templates.md).
//!
//! A [`Template`] is a list of [`Field`]s, each naming a value type with
//! a [`Kind`] (text, URL, integer, decimal, date, enumeration, with
//! limits), whether it is required and how many values of it a record may
//! hold, plus whether types it does not name are refused (`strict`).
//! Values of the Handle system's own types (`HS_ADMIN`, `HS_SITE`,
//! `HS_VLIST`...: every type starting with `HS_`) are never constrained.
//!
//! This module parses and checks templates (their JSON form is what the
//! CLI reads and what the store keeps) and judges values against them;
//! which template applies to an identifier, and when, is the registry's
//! business.

use crate::Value;
use crate::limits::MAX_TYPE_BYTES;
use serde_json::{Map, Value as Json, json};
use std::cmp::Ordering;
use std::fmt;

/// Most fields of one template.
pub const MAX_FIELDS: usize = 256;
/// Most allowed values of one enumeration.
pub const MAX_ENUM_VALUES: usize = 1024;
/// Longest allowed value of an enumeration, a decimal or a URL scheme, in
/// bytes.
pub const MAX_WORD_BYTES: usize = 256;
/// Most URL schemes one field names.
pub const MAX_SCHEMES: usize = 16;
/// Largest template in its JSON form, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// The value types of the Handle system itself start with this (ASCII
/// case-insensitive); templates never constrain them.
pub const SYSTEM_TYPE_PREFIX: &str = "HS_";

/// Whether `value_type` is one of the Handle system's own types
/// (`HS_ADMIN`, `HS_SITE.PREFIX`, ...), which no template constrains.
pub fn is_system_type(value_type: &str) -> bool {
    value_type
        .get(..SYSTEM_TYPE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SYSTEM_TYPE_PREFIX))
}

/// The rules for the values of the identifiers under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// Refuse value types the template does not name (system types aside).
    pub strict: bool,
    pub fields: Vec<Field>,
}

/// The rule for one value type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The value type (`URL`, `productionDate`), matched ASCII
    /// case-insensitively.
    pub value_type: String,
    /// A record must hold at least one value of this type.
    pub required: bool,
    /// A record may hold at most this many values of this type.
    pub max_count: Option<u32>,
    pub kind: Kind,
}

/// What the data of a value must be. Every kind needs UTF-8 data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Any text, of at most `max_length` characters.
    Text { max_length: Option<u32> },
    /// An absolute URL `scheme://authority...` with no spaces or control
    /// characters, its scheme one of `schemes` (empty: `http`, `https`).
    Url { schemes: Vec<String> },
    /// A decimal integer (optional sign, digits) within the bounds.
    Integer { min: Option<i64>, max: Option<i64> },
    /// A decimal number (optional sign, digits, optionally a point and
    /// more digits) within the bounds, compared exactly.
    Decimal {
        min: Option<String>,
        max: Option<String>,
    },
    /// An ISO 8601 calendar date `YYYY-MM-DD` within the bounds.
    Date {
        min: Option<String>,
        max: Option<String>,
    },
    /// One of `values`, exactly (case-sensitive).
    Enumeration { values: Vec<String> },
}

impl Kind {
    /// The kind's name in the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Text { .. } => "text",
            Kind::Url { .. } => "url",
            Kind::Integer { .. } => "integer",
            Kind::Decimal { .. } => "decimal",
            Kind::Date { .. } => "date",
            Kind::Enumeration { .. } => "enum",
        }
    }
}

/// Why a template was refused: `field` names the part (`fields[2].min`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

impl TemplateError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for TemplateError {}

/// A value that breaks a template's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The Handle index of the offending value; `None` when the rule is
    /// about a value that is missing (a required type).
    pub index: Option<u32>,
    /// Which part of the value breaks the rule: `type` or `data`; empty
    /// for a missing value.
    pub part: &'static str,
    /// The value type the rule is about.
    pub value_type: String,
    /// The rule, and how the value breaks it.
    pub rule: String,
}

impl Template {
    /// The field that names `value_type`, if any.
    pub fn field(&self, value_type: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.value_type.eq_ignore_ascii_case(value_type))
    }

    /// Checks the template itself: types named once, none of them a system
    /// type, bounds that parse and are in order, limits kept.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.fields.len() > MAX_FIELDS {
            return Err(TemplateError::new(
                "fields",
                format!(
                    "{} fields; at most {MAX_FIELDS} are allowed",
                    self.fields.len()
                ),
            ));
        }
        for (at, field) in self.fields.iter().enumerate() {
            let name = |part: &str| format!("fields[{at}].{part}");
            let t = &field.value_type;
            if t.is_empty() {
                return Err(TemplateError::new(name("type"), "the value type is empty"));
            }
            if t.len() > MAX_TYPE_BYTES {
                return Err(TemplateError::new(
                    name("type"),
                    format!(
                        "the value type has {} bytes; at most {MAX_TYPE_BYTES} are allowed",
                        t.len()
                    ),
                ));
            }
            if t.chars().any(char::is_control) {
                return Err(TemplateError::new(
                    name("type"),
                    "the value type holds a control character",
                ));
            }
            if is_system_type(t) {
                return Err(TemplateError::new(
                    name("type"),
                    format!(
                        "{t} is a type of the Handle system itself; templates do not constrain HS_ types"
                    ),
                ));
            }
            if let Some(first) = self.fields[..at]
                .iter()
                .position(|f| f.value_type.eq_ignore_ascii_case(t))
            {
                return Err(TemplateError::new(
                    name("type"),
                    format!("{t} is named by fields[{first}] already"),
                ));
            }
            if field.max_count == Some(0) {
                return Err(TemplateError::new(
                    name("max_count"),
                    "must be 1 or more (leave it out for no limit)",
                ));
            }
            validate_kind(&field.kind, &name)?;
        }
        Ok(())
    }

    /// Judges one value alone: its data against the kind of its type's
    /// field, or its type against `strict`. System types always pass.
    pub fn check_value(&self, value: &Value) -> Result<(), Violation> {
        if is_system_type(&value.kind) {
            return Ok(());
        }
        let violation = |part, rule: String| Violation {
            index: Some(value.index),
            part,
            value_type: value.kind.clone(),
            rule,
        };
        let Some(field) = self.field(&value.kind) else {
            if self.strict {
                return Err(violation(
                    "type",
                    format!(
                        "type {} is not in the template, which allows no other types",
                        value.kind
                    ),
                ));
            }
            return Ok(());
        };
        check_data(&field.kind, &value.data)
            .map_err(|rule| violation("data", format!("{} {rule}", value.kind)))
    }

    /// Judges a whole record's values together: each required type
    /// present, no type beyond its `max_count` (the value past the limit
    /// is the one named, in the order given).
    pub fn check_counts(&self, values: &[Value]) -> Result<(), Violation> {
        for field in &self.fields {
            let mut of_type = values
                .iter()
                .filter(|v| v.kind.eq_ignore_ascii_case(&field.value_type));
            if let Some(max) = field.max_count
                && let Some(extra) = of_type.clone().nth(max as usize)
            {
                return Err(Violation {
                    index: Some(extra.index),
                    part: "type",
                    value_type: field.value_type.clone(),
                    rule: format!(
                        "at most {max} {} of type {} {} allowed",
                        if max == 1 { "value" } else { "values" },
                        field.value_type,
                        if max == 1 { "is" } else { "are" },
                    ),
                });
            }
            if field.required && of_type.next().is_none() {
                return Err(Violation {
                    index: None,
                    part: "",
                    value_type: field.value_type.clone(),
                    rule: format!("a value of type {} is required", field.value_type),
                });
            }
        }
        Ok(())
    }

    /// Judges every value of a record, then the record as a whole.
    pub fn check(&self, values: &[Value]) -> Result<(), Violation> {
        for value in values {
            self.check_value(value)?;
        }
        self.check_counts(values)
    }

    /// Parses and validates the JSON form (docs/templates.md). Unknown
    /// keys are refused, so a misspelt option does not pass unnoticed.
    pub fn from_json(text: &str) -> Result<Self, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::new(
                "",
                format!(
                    "the template has {} bytes; at most {MAX_TEMPLATE_BYTES} are allowed",
                    text.len()
                ),
            ));
        }
        let json: Json = serde_json::from_str(text)
            .map_err(|e| TemplateError::new("", format!("not JSON: {e}")))?;
        let template = from_json_value(&json)?;
        template.validate()?;
        Ok(template)
    }

    /// The JSON form, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let fields: Vec<Json> = self.fields.iter().map(field_json).collect();
        let out = json!({ "strict": self.strict, "fields": fields });
        serde_json::to_string_pretty(&out).unwrap_or_default()
    }
}

fn field_json(field: &Field) -> Json {
    let mut m = Map::new();
    m.insert("type".into(), json!(field.value_type));
    m.insert("kind".into(), json!(field.kind.name()));
    if field.required {
        m.insert("required".into(), json!(true));
    }
    if let Some(n) = field.max_count {
        m.insert("max_count".into(), json!(n));
    }
    let mut opt = |key: &str, v: Option<Json>| {
        if let Some(v) = v {
            m.insert(key.into(), v);
        }
    };
    match &field.kind {
        Kind::Text { max_length } => opt("max_length", max_length.map(|n| json!(n))),
        Kind::Url { schemes } => {
            opt("schemes", (!schemes.is_empty()).then(|| json!(schemes)));
        }
        Kind::Integer { min, max } => {
            opt("min", min.map(|n| json!(n)));
            opt("max", max.map(|n| json!(n)));
        }
        Kind::Decimal { min, max } | Kind::Date { min, max } => {
            opt("min", min.as_ref().map(|s| json!(s)));
            opt("max", max.as_ref().map(|s| json!(s)));
        }
        Kind::Enumeration { values } => opt("values", Some(json!(values))),
    }
    Json::Object(m)
}

fn from_json_value(json: &Json) -> Result<Template, TemplateError> {
    let top = json
        .as_object()
        .ok_or_else(|| TemplateError::new("", "the template must be a JSON object"))?;
    only_keys(top, &["strict", "fields"], "")?;
    let strict = match top.get("strict") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TemplateError::new("strict", "must be true or false"))?,
    };
    let list = match top.get("fields") {
        None => &Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| TemplateError::new("fields", "must be a list"))?,
    };
    if list.len() > MAX_FIELDS {
        return Err(TemplateError::new(
            "fields",
            format!("{} fields; at most {MAX_FIELDS} are allowed", list.len()),
        ));
    }
    let mut fields = Vec::with_capacity(list.len());
    for (at, item) in list.iter().enumerate() {
        fields.push(field_from_json(at, item)?);
    }
    Ok(Template { strict, fields })
}

fn only_keys(m: &Map<String, Json>, allowed: &[&str], at: &str) -> Result<(), TemplateError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(TemplateError::new(
            at,
            format!("unknown key `{k}`; expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn field_from_json(at: usize, item: &Json) -> Result<Field, TemplateError> {
    let name = |part: &str| format!("fields[{at}].{part}");
    let m = item
        .as_object()
        .ok_or_else(|| TemplateError::new(format!("fields[{at}]"), "must be a JSON object"))?;
    let string = |key: &str| -> Result<Option<String>, TemplateError> {
        match m.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TemplateError::new(name(key), "must be a string")),
        }
    };
    let unsigned = |key: &str| -> Result<Option<u32>, TemplateError> {
        match m.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    TemplateError::new(name(key), "must be a whole number from 0 to 4294967295")
                }),
        }
    };
    let strings = |key: &str| -> Result<Vec<String>, TemplateError> {
        match m.get(key) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        TemplateError::new(format!("{}[{i}]", name(key)), "must be a string")
                    })
                })
                .collect(),
            Some(_) => Err(TemplateError::new(name(key), "must be a list of strings")),
        }
    };
    let value_type =
        string("type")?.ok_or_else(|| TemplateError::new(name("type"), "is missing"))?;
    let required = match m.get("required") {
        None | Some(Json::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TemplateError::new(name("required"), "must be true or false"))?,
    };
    let max_count = unsigned("max_count")?;
    let kind_name = string("kind")?.ok_or_else(|| {
        TemplateError::new(
            name("kind"),
            "is missing: text, url, integer, decimal, date or enum",
        )
    })?;
    const COMMON: [&str; 4] = ["type", "kind", "required", "max_count"];
    let keys = |extra: &[&str]| {
        let all: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        only_keys(m, &all, &format!("fields[{at}]"))
    };
    let kind = match kind_name.as_str() {
        "text" => {
            keys(&["max_length"])?;
            Kind::Text {
                max_length: unsigned("max_length")?,
            }
        }
        "url" => {
            keys(&["schemes"])?;
            Kind::Url {
                schemes: strings("schemes")?,
            }
        }
        "integer" => {
            keys(&["min", "max"])?;
            let int = |key: &str| -> Result<Option<i64>, TemplateError> {
                match m.get(key) {
                    None | Some(Json::Null) => Ok(None),
                    Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                        TemplateError::new(name(key), "must be a whole number (a 64-bit integer)")
                    }),
                }
            };
            Kind::Integer {
                min: int("min")?,
                max: int("max")?,
            }
        }
        "decimal" | "date" => {
            keys(&["min", "max"])?;
            let (min, max) = (string("min")?, string("max")?);
            if kind_name == "decimal" {
                Kind::Decimal { min, max }
            } else {
                Kind::Date { min, max }
            }
        }
        "enum" => {
            keys(&["values"])?;
            Kind::Enumeration {
                values: strings("values")?,
            }
        }
        other => {
            return Err(TemplateError::new(
                name("kind"),
                format!(
                    "unknown kind `{other}`; expected text, url, integer, decimal, date or enum"
                ),
            ));
        }
    };
    Ok(Field {
        value_type,
        required,
        max_count,
        kind,
    })
}

fn validate_kind(kind: &Kind, name: &dyn Fn(&str) -> String) -> Result<(), TemplateError> {
    let word = |key: &str, s: &str| -> Result<(), TemplateError> {
        if s.len() > MAX_WORD_BYTES {
            return Err(TemplateError::new(
                name(key),
                format!(
                    "has {} bytes; at most {MAX_WORD_BYTES} are allowed",
                    s.len()
                ),
            ));
        }
        Ok(())
    };
    match kind {
        Kind::Text { max_length } => {
            if *max_length == Some(0) {
                return Err(TemplateError::new(
                    name("max_length"),
                    "must be 1 or more (leave it out for no limit)",
                ));
            }
        }
        Kind::Url { schemes } => {
            if schemes.len() > MAX_SCHEMES {
                return Err(TemplateError::new(
                    name("schemes"),
                    format!(
                        "{} schemes; at most {MAX_SCHEMES} are allowed",
                        schemes.len()
                    ),
                ));
            }
            for (i, s) in schemes.iter().enumerate() {
                word(&format!("schemes[{i}]"), s)?;
                if !is_scheme(s) {
                    return Err(TemplateError::new(
                        name(&format!("schemes[{i}]")),
                        format!(
                            "`{s}` is not a URL scheme (a letter, then letters, digits, +, - or .)"
                        ),
                    ));
                }
            }
        }
        Kind::Integer { min, max } => {
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(TemplateError::new(
                    name("max"),
                    format!("{hi} is below min {lo}"),
                ));
            }
        }
        Kind::Decimal { min, max } => {
            fn bound<'a>(
                key: &str,
                s: Option<&'a str>,
                name: &dyn Fn(&str) -> String,
            ) -> Result<Option<Decimal<'a>>, TemplateError> {
                let Some(s) = s else { return Ok(None) };
                if s.len() > MAX_WORD_BYTES {
                    return Err(TemplateError::new(
                        name(key),
                        format!(
                            "has {} bytes; at most {MAX_WORD_BYTES} are allowed",
                            s.len()
                        ),
                    ));
                }
                Decimal::parse(s).map(Some).ok_or_else(|| {
                    TemplateError::new(
                        name(key),
                        format!("`{s}` is not a decimal number such as -12.50"),
                    )
                })
            }
            let lo = bound("min", min.as_deref(), name)?;
            let hi = bound("max", max.as_deref(), name)?;
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo.cmp(&hi) == Ordering::Greater
            {
                return Err(TemplateError::new(
                    name("max"),
                    format!(
                        "{} is below min {}",
                        max.as_deref().unwrap_or(""),
                        min.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        Kind::Date { min, max } => {
            for (key, bound) in [("min", min), ("max", max)] {
                if let Some(s) = bound
                    && !is_date(s)
                {
                    return Err(TemplateError::new(
                        name(key),
                        format!("`{s}` is not a date YYYY-MM-DD"),
                    ));
                }
            }
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(TemplateError::new(
                    name("max"),
                    format!("{hi} is before min {lo}"),
                ));
            }
        }
        Kind::Enumeration { values } => {
            if values.is_empty() {
                return Err(TemplateError::new(
                    name("values"),
                    "an enumeration needs at least one value",
                ));
            }
            if values.len() > MAX_ENUM_VALUES {
                return Err(TemplateError::new(
                    name("values"),
                    format!(
                        "{} values; at most {MAX_ENUM_VALUES} are allowed",
                        values.len()
                    ),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                word(&format!("values[{i}]"), v)?;
                if values[..i].contains(v) {
                    return Err(TemplateError::new(
                        name(&format!("values[{i}]")),
                        format!("`{v}` is listed twice"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The data, shortened for an error message.
fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Judges `data` against `kind`; the error is the rule, and what broke it.
fn check_data(kind: &Kind, data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Err(format!("must be UTF-8 text ({})", kind.name()));
    };
    match kind {
        Kind::Text { max_length } => {
            if let Some(max) = max_length {
                let n = text.chars().count();
                if n > *max as usize {
                    return Err(format!(
                        "must be text of at most {max} characters; it has {n}"
                    ));
                }
            }
        }
        Kind::Url { schemes } => {
            if let Some(why) = url_problem(text, schemes) {
                return Err(format!("{why}; got {}", shown(text)));
            }
        }
        Kind::Integer { min, max } => {
            let rule = || {
                let mut rule = "must be an integer".to_owned();
                bounds(
                    &mut rule,
                    min.map(|n| n.to_string()),
                    max.map(|n| n.to_string()),
                );
                rule
            };
            let ok = is_integer_text(text)
                && text
                    .parse::<i64>()
                    .is_ok_and(|n| min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi));
            if !ok {
                return Err(format!("{}; got {}", rule(), shown(text)));
            }
        }
        Kind::Decimal { min, max } => {
            let within = |n: &Decimal<'_>| {
                let lo = min.as_deref().and_then(Decimal::parse);
                let hi = max.as_deref().and_then(Decimal::parse);
                lo.is_none_or(|lo| n.cmp(&lo) != Ordering::Less)
                    && hi.is_none_or(|hi| n.cmp(&hi) != Ordering::Greater)
            };
            if !Decimal::parse(text).is_some_and(|n| within(&n)) {
                let mut rule = "must be a decimal number such as 12.50".to_owned();
                bounds(&mut rule, min.clone(), max.clone());
                return Err(format!("{rule}; got {}", shown(text)));
            }
        }
        Kind::Date { min, max } => {
            let ok = is_date(text)
                && min.as_deref().is_none_or(|lo| text >= lo)
                && max.as_deref().is_none_or(|hi| text <= hi);
            if !ok {
                let mut rule = "must be a date YYYY-MM-DD".to_owned();
                bounds(&mut rule, min.clone(), max.clone());
                return Err(format!("{rule}; got {}", shown(text)));
            }
        }
        Kind::Enumeration { values } => {
            if !values.iter().any(|v| v == text) {
                const LISTED: usize = 10;
                let mut list: Vec<String> = values.iter().take(LISTED).map(|v| shown(v)).collect();
                if values.len() > LISTED {
                    list.push(format!("and {} more", values.len() - LISTED));
                }
                return Err(format!(
                    "must be one of {}; got {}",
                    list.join(", "),
                    shown(text)
                ));
            }
        }
    }
    Ok(())
}

fn bounds(rule: &mut String, min: Option<String>, max: Option<String>) {
    match (min, max) {
        (Some(lo), Some(hi)) => rule.push_str(&format!(" from {lo} to {hi}")),
        (Some(lo), None) => rule.push_str(&format!(" of at least {lo}")),
        (None, Some(hi)) => rule.push_str(&format!(" of at most {hi}")),
        (None, None) => {}
    }
}

/// `-12`, `+7`, `0042`: an optional sign and digits, nothing else.
fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Why `text` is not an absolute URL with one of `schemes`, if it is not.
fn url_problem(text: &str, schemes: &[String]) -> Option<String> {
    const DEFAULT: [&str; 2] = ["http", "https"];
    let allowed: Vec<&str> = match schemes.is_empty() {
        true => DEFAULT.to_vec(),
        false => schemes.iter().map(String::as_str).collect(),
    };
    let rule = || format!("must be an absolute {} URL", allowed.join(" or "));
    let Some((scheme, rest)) = text.split_once("://") else {
        return Some(rule());
    };
    if !is_scheme(scheme) || !allowed.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Some(rule());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Some(format!("{} with a host", rule()));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("{} without spaces or control characters", rule()));
    }
    None
}

/// `YYYY-MM-DD`, a day that exists in the proleptic Gregorian calendar.
pub fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A decimal number as text, for exact comparison: the sign, the integer
/// digits without leading zeros, the fraction digits without trailing
/// zeros.
#[derive(Debug, Clone, Copy)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// `[+-]digits[.digits]`; `None` otherwise.
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        let zero = int.is_empty() && frac.is_empty();
        Some(Self {
            negative: negative && !zero,
            int,
            frac,
        })
    }

    fn magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude(other),
            (true, true) => other.magnitude(self),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn field(value_type: &str, kind: Kind) -> Field {
        Field {
            value_type: value_type.into(),
            required: false,
            max_count: None,
            kind,
        }
    }

    fn broken(t: &Template, v: Value) -> String {
        t.check_value(&v).unwrap_err().rule
    }

    #[test]
    fn each_kind_judges_its_data() {
        let t = Template {
            strict: false,
            fields: vec![
                field(
                    "name",
                    Kind::Text {
                        max_length: Some(3),
                    },
                ),
                field("URL", Kind::Url { schemes: vec![] }),
                field(
                    "n",
                    Kind::Integer {
                        min: Some(-5),
                        max: Some(10),
                    },
                ),
                field(
                    "price",
                    Kind::Decimal {
                        min: Some("0".into()),
                        max: Some("99.5".into()),
                    },
                ),
                field(
                    "made",
                    Kind::Date {
                        min: Some("2000-01-01".into()),
                        max: None,
                    },
                ),
                field(
                    "state",
                    Kind::Enumeration {
                        values: vec!["on".into(), "off".into()],
                    },
                ),
            ],
        };
        t.validate().unwrap();
        let ok = [
            ("name", "abc"),
            ("name", "水水水"),
            ("URL", "HTTP://x"),
            ("n", "-5"),
            ("n", "+10"),
            ("n", "007"),
            ("price", "99.50"),
            ("price", "0"),
            ("price", "-0.00"),
            ("made", "2024-02-29"),
            ("state", "off"),
            ("other", "\u{0}anything"),
        ];
        for (ty, data) in ok {
            let r = t.check_value(&Value::new(1, ty, data.to_owned()));
            assert!(r.is_ok(), "{ty} {data}: {r:?}");
        }
        assert!(
            broken(&t, Value::new(1, "name", "abcd")).contains("at most 3 characters; it has 4")
        );
        assert!(broken(&t, Value::new(1, "url", "https://a/b c")).contains("without spaces"));
        assert!(broken(&t, Value::new(1, "url", "ftp://x")).contains("absolute http or https URL"));
        assert!(broken(&t, Value::new(1, "url", "https:///p")).contains("with a host"));
        assert!(broken(&t, Value::new(1, "n", "11")).contains("integer from -5 to 10; got \"11\""));
        assert!(broken(&t, Value::new(1, "n", "1.0")).contains("integer"));
        assert!(broken(&t, Value::new(1, "n", "99999999999999999999")).contains("integer"));
        assert!(broken(&t, Value::new(1, "price", "99.51")).contains("from 0 to 99.5"));
        assert!(broken(&t, Value::new(1, "price", "-0.01")).contains("decimal"));
        assert!(broken(&t, Value::new(1, "price", "1e3")).contains("decimal"));
        assert!(broken(&t, Value::new(1, "price", ".5")).contains("decimal"));
        assert!(broken(&t, Value::new(1, "made", "2023-02-29")).contains("YYYY-MM-DD"));
        assert!(broken(&t, Value::new(1, "made", "1999-12-31")).contains("of at least 2000-01-01"));
        assert!(broken(&t, Value::new(1, "state", "On")).contains("one of \"on\", \"off\""));
        assert!(broken(&t, Value::new(1, "name", vec![0xffu8])).contains("UTF-8"));
        let v = t.check_value(&Value::new(4, "price", "x")).unwrap_err();
        assert_eq!(
            (v.index, v.part, v.value_type.as_str()),
            (Some(4), "data", "price")
        );
    }

    #[test]
    fn strict_refuses_other_types_but_never_system_ones() {
        let t = Template {
            strict: true,
            fields: vec![field(
                "URL",
                Kind::Url {
                    schemes: vec!["urn".into()],
                },
            )],
        };
        let v = t.check_value(&Value::new(2, "note", "x")).unwrap_err();
        assert_eq!(v.part, "type");
        assert!(v.rule.contains("not in the template"), "{}", v.rule);
        assert!(
            t.check_value(&Value::new(100, "HS_ADMIN", vec![0u8, 1]))
                .is_ok()
        );
        assert!(
            t.check_value(&Value::new(1, "hs_site.prefix", vec![9u8]))
                .is_ok()
        );
        assert!(t.check_value(&Value::new(1, "URL", "urn://a")).is_ok());
        assert!(t.check_value(&Value::new(1, "URL", "https://a")).is_err());
    }

    #[test]
    fn counts_and_required_types() {
        let mut url = field("URL", Kind::Url { schemes: vec![] });
        url.required = true;
        url.max_count = Some(1);
        let t = Template {
            strict: false,
            fields: vec![url],
        };
        let v = t.check_counts(&[Value::new(3, "note", "x")]).unwrap_err();
        assert_eq!((v.index, v.part), (None, ""));
        assert!(v.rule.contains("a value of type URL is required"));
        let two = [
            Value::new(1, "URL", "http://a"),
            Value::new(2, "url", "http://b"),
        ];
        let v = t.check_counts(&two).unwrap_err();
        assert_eq!((v.index, v.part), (Some(2), "type"));
        assert!(
            v.rule.contains("at most 1 value of type URL is allowed"),
            "{}",
            v.rule
        );
        assert!(t.check(&two[..1]).is_ok());
    }

    #[test]
    fn json_round_trips_and_errors_name_the_part() {
        let text = r#"{"strict": true, "fields": [
            {"type": "URL", "kind": "url", "required": true, "max_count": 1},
            {"type": "name", "kind": "text", "max_length": 64},
            {"type": "n", "kind": "integer", "min": -1, "max": 9},
            {"type": "price", "kind": "decimal", "min": "0.00"},
            {"type": "made", "kind": "date", "max": "2099-12-31"},
            {"type": "state", "kind": "enum", "values": ["a", "b"]}
        ]}"#;
        let t = Template::from_json(text).unwrap();
        assert_eq!(t.fields.len(), 6);
        assert!(t.strict && t.fields[0].required);
        assert_eq!(Template::from_json(&t.to_json()).unwrap(), t);
        let bad = [
            (r#"[]"#, "must be a JSON object"),
            (r#"{"feilds": []}"#, "unknown key `feilds`"),
            (
                r#"{"fields": [{"type": "a"}]}"#,
                "fields[0].kind: is missing",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "blob"}]}"#,
                "unknown kind `blob`",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "text", "min": 1}]}"#,
                "fields[0]: unknown key `min`",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "integer", "min": 5, "max": 1}]}"#,
                "fields[0].max: 1 is below min 5",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "decimal", "min": "x"}]}"#,
                "fields[0].min: `x` is not a decimal",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "decimal", "min": "2", "max": "1.5"}]}"#,
                "fields[0].max",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "date", "min": "2024-13-01"}]}"#,
                "fields[0].min",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "enum", "values": []}]}"#,
                "fields[0].values",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "enum", "values": ["x", "x"]}]}"#,
                "fields[0].values[1]",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "url", "schemes": ["1x"]}]}"#,
                "fields[0].schemes[0]",
            ),
            (
                r#"{"fields": [{"type": "HS_ADMIN", "kind": "text"}]}"#,
                "fields[0].type",
            ),
            (
                r#"{"fields": [{"type": "", "kind": "text"}]}"#,
                "fields[0].type",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "text"}, {"type": "A", "kind": "url"}]}"#,
                "fields[1].type: A is named by fields[0]",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "text", "max_count": 0}]}"#,
                "fields[0].max_count",
            ),
            (
                r#"{"fields": [{"type": "a", "kind": "text", "max_length": -1}]}"#,
                "fields[0].max_length",
            ),
            (r#"{"strict": "yes"}"#, "strict: must be true or false"),
        ];
        for (text, want) in bad {
            let e = Template::from_json(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn decimals_compare_exactly() {
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(d("12.50").cmp(&d("12.5")), Ordering::Equal);
        assert_eq!(d("0.5").cmp(&d("0.45")), Ordering::Greater);
        assert_eq!(d("-0.5").cmp(&d("-0.45")), Ordering::Less);
        assert_eq!(d("100").cmp(&d("99.999")), Ordering::Greater);
        assert_eq!(d("-0").cmp(&d("0.0")), Ordering::Equal);
        assert_eq!(d("007.10").cmp(&d("7.1")), Ordering::Equal);
        for bad in ["", "-", "1.", ".1", "1.2.3", "1e5", " 1", "0x10"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        for good in ["2024-02-29", "2000-02-29", "0001-01-01", "2026-12-31"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "1900-02-29",
            "2026-04-31",
            "2026-00-10",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "２０２６-01-01",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }
}
