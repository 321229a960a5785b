//! Conversions between the generated protobuf types and domain types, at
//! the edge: nothing generated goes further in than this module.

use crate::proto;
use idnode_core::template::{Field, Kind, Template};
use idnode_core::{Permissions, Record, Reference, Ttl, Value};
use idnode_handle::site::{
    HashOption, Interface, InterfaceKind, InterfaceProtocol, ServerInfo, SiteInfo,
};
use idnode_registry::{BatchItem, PrefixInfo};
use tonic::Status;

/// A request field that cannot become a domain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field as the request spells it: `values[2].permissions`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same error, for a field inside `parent` (`values[2]`).
    fn within(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

/// Permission bits a value may carry.
const PERMISSION_BITS: u32 = 0x0f;

impl TryFrom<proto::Value> for Value {
    type Error = FieldError;

    /// The timestamp is not taken: the node sets it.
    fn try_from(v: proto::Value) -> Result<Self, FieldError> {
        let permissions = match v.permissions {
            None => Permissions::default(),
            Some(bits) if bits & !PERMISSION_BITS == 0 => Permissions(bits as u8),
            Some(bits) => {
                return Err(FieldError::new(
                    "permissions",
                    format!(
                        "{bits:#x} has bits outside {PERMISSION_BITS:#x} (admin read 0x08, \
                         admin write 0x04, public read 0x02, public write 0x01)"
                    ),
                ));
            }
        };
        let ttl = match v.ttl.and_then(|t| t.kind) {
            None => Ttl::default(),
            Some(proto::ttl::Kind::Relative(s)) => Ttl::Relative(s),
            Some(proto::ttl::Kind::Absolute(t)) => Ttl::Absolute(t),
        };
        Ok(Value {
            index: v.index,
            kind: v.r#type,
            data: v.data,
            ttl,
            timestamp: 0,
            permissions,
            references: v
                .references
                .into_iter()
                .map(|r| Reference {
                    identifier: r.identifier,
                    index: r.index,
                })
                .collect(),
        })
    }
}

/// Converts a request's `values`, naming a bad one by its position.
pub(crate) fn values(values: Vec<proto::Value>) -> Result<Vec<Value>, FieldError> {
    values
        .into_iter()
        .enumerate()
        .map(|(at, v)| Value::try_from(v).map_err(|e| e.within(&format!("values[{at}]"))))
        .collect()
}

impl TryFrom<proto::CreateIdentifierRequest> for BatchItem {
    type Error = FieldError;

    fn try_from(r: proto::CreateIdentifierRequest) -> Result<Self, FieldError> {
        Ok(BatchItem {
            identifier: r.identifier,
            values: values(r.values)?,
            overwrite: r.overwrite,
        })
    }
}

impl From<Value> for proto::Value {
    fn from(v: Value) -> Self {
        let kind = match v.ttl {
            Ttl::Relative(s) => proto::ttl::Kind::Relative(s),
            Ttl::Absolute(t) => proto::ttl::Kind::Absolute(t),
        };
        proto::Value {
            index: v.index,
            r#type: v.kind,
            data: v.data,
            ttl: Some(proto::Ttl { kind: Some(kind) }),
            timestamp: v.timestamp,
            permissions: Some(u32::from(v.permissions.0)),
            references: v
                .references
                .into_iter()
                .map(|r| proto::Reference {
                    identifier: r.identifier,
                    index: r.index,
                })
                .collect(),
        }
    }
}

impl From<Record> for proto::Identifier {
    fn from(r: Record) -> Self {
        proto::Identifier {
            identifier: r.identifier,
            values: r.values.into_iter().map(Into::into).collect(),
            version: r.version,
        }
    }
}

/// The HS_SITE values a delegation request asks for, encoded; errors name
/// the field (`sites[0].servers[1].address`).
pub(crate) fn sites(sites: Vec<proto::Site>) -> Result<Vec<bytes::Bytes>, FieldError> {
    if sites.is_empty() {
        return Err(FieldError::new("sites", "at least one site is needed"));
    }
    sites
        .into_iter()
        .enumerate()
        .map(|(i, site)| {
            let given = bytes::Bytes::from(site.encoded.clone());
            site_info(site)
                // A record given whole is stored byte for byte.
                .map(|s| match given.is_empty() {
                    true => bytes::Bytes::from(s.encode()),
                    false => given,
                })
                .map_err(|e| e.within(&format!("sites[{i}]")))
        })
        .collect()
}

fn site_info(site: proto::Site) -> Result<SiteInfo, FieldError> {
    if !site.encoded.is_empty() {
        if !site.servers.is_empty() {
            return Err(FieldError::new(
                "encoded",
                "give either the encoded site record or its servers, not both",
            ));
        }
        let decoded = SiteInfo::decode(&site.encoded)
            .map_err(|e| FieldError::new("encoded", format!("not an HS_SITE record: {e}")))?;
        if decoded.servers.is_empty() {
            return Err(FieldError::new(
                "encoded",
                "the site record lists no server",
            ));
        }
        return Ok(decoded);
    }
    let hash = match proto::HashOption::try_from(site.hash) {
        Ok(proto::HashOption::HashPrefix) => HashOption::Prefix,
        Ok(proto::HashOption::HashSuffix) => HashOption::Suffix,
        Ok(proto::HashOption::HashWhole) => HashOption::Whole,
        Err(_) => {
            return Err(FieldError::new(
                "hash",
                format!("unknown value {}", site.hash),
            ));
        }
    };
    if site.servers.is_empty() {
        return Err(FieldError::new(
            "servers",
            "a site needs at least one server",
        ));
    }
    if site.servers.len() > idnode_handle::site::MAX_SITE_SERVERS {
        return Err(FieldError::new("servers", "too many servers"));
    }
    let servers = site
        .servers
        .into_iter()
        .enumerate()
        .map(|(i, server)| server_info(i, server).map_err(|e| e.within(&format!("servers[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SiteInfo::single(servers, hash))
}

fn server_info(position: usize, server: proto::Server) -> Result<ServerInfo, FieldError> {
    let address = server.address.parse().map_err(|_| {
        FieldError::new(
            "address",
            format!("`{}` is not an IP address", server.address),
        )
    })?;
    if server.interfaces.is_empty() {
        return Err(FieldError::new(
            "interfaces",
            "a server needs at least one interface",
        ));
    }
    if server.interfaces.len() > idnode_handle::site::MAX_SERVER_INTERFACES {
        return Err(FieldError::new("interfaces", "too many interfaces"));
    }
    let interfaces = server
        .interfaces
        .iter()
        .enumerate()
        .map(|(j, interface)| {
            let protocol = match proto::Protocol::try_from(interface.protocol) {
                Ok(proto::Protocol::Udp) => InterfaceProtocol::Udp,
                Ok(proto::Protocol::Tcp) => InterfaceProtocol::Tcp,
                Ok(proto::Protocol::Http) => InterfaceProtocol::Http,
                Ok(proto::Protocol::Https) => InterfaceProtocol::Https,
                Err(_) => {
                    return Err(FieldError::new(
                        &format!("interfaces[{j}].protocol"),
                        format!("unknown value {}", interface.protocol),
                    ));
                }
            };
            if interface.port == 0 || interface.port > 65535 {
                return Err(FieldError::new(
                    &format!("interfaces[{j}].port"),
                    format!("{} is not a port (1 to 65535)", interface.port),
                ));
            }
            // idnode answers queries on every interface; administration
            // goes through this API, not the Handle protocol.
            let kind = InterfaceKind::Query;
            Ok(Interface {
                kind,
                protocol,
                port: interface.port,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !server.public_key.is_empty() {
        idnode_handle::keys::PublicKey::decode(&server.public_key).map_err(|e| {
            FieldError::new("public_key", format!("not an HS_PUBKEY public key: {e}"))
        })?;
    }
    Ok(ServerInfo {
        id: if server.id == 0 {
            position as u32 + 1
        } else {
            server.id
        },
        address,
        public_key: server.public_key,
        interfaces,
    })
}

impl From<PrefixInfo> for proto::Prefix {
    fn from(p: PrefixInfo) -> Self {
        proto::Prefix {
            prefix: p.prefix,
            homed: p.homed,
            created: p.created,
            has_template: p.template.is_some(),
        }
    }
}

impl From<Template> for proto::Template {
    fn from(t: Template) -> Self {
        use proto::template_field::Kind as P;
        let bound = |b: Option<String>| b.unwrap_or_default();
        proto::Template {
            strict: t.strict,
            fields: t
                .fields
                .into_iter()
                .map(|f| proto::TemplateField {
                    r#type: f.value_type,
                    required: f.required,
                    max_count: f.max_count,
                    kind: Some(match f.kind {
                        Kind::Text { max_length } => P::Text(proto::TextKind { max_length }),
                        Kind::Url { schemes } => P::Url(proto::UrlKind { schemes }),
                        Kind::Integer { min, max } => P::Integer(proto::IntegerKind { min, max }),
                        Kind::Decimal { min, max } => P::Decimal(proto::DecimalKind {
                            min: bound(min),
                            max: bound(max),
                        }),
                        Kind::Date { min, max } => P::Date(proto::DateKind {
                            min: bound(min),
                            max: bound(max),
                        }),
                        Kind::Enumeration { values } => P::Enumeration(proto::EnumKind { values }),
                    }),
                })
                .collect(),
        }
    }
}

/// A template from a request; the error names the field
/// (`template.fields[1].kind`). The template's own rules are checked by
/// the registry.
pub fn template_from_proto(t: Option<proto::Template>) -> Result<Template, FieldError> {
    use proto::template_field::Kind as P;
    let t = t.ok_or_else(|| FieldError::new("template", "is missing"))?;
    if t.fields.len() > idnode_core::template::MAX_FIELDS {
        return Err(FieldError::new(
            "template.fields",
            format!(
                "{} fields; at most {} are allowed",
                t.fields.len(),
                idnode_core::template::MAX_FIELDS
            ),
        ));
    }
    let bound = |b: String| (!b.is_empty()).then_some(b);
    let mut fields = Vec::with_capacity(t.fields.len());
    for (at, f) in t.fields.into_iter().enumerate() {
        let kind = match f.kind {
            Some(P::Text(k)) => Kind::Text {
                max_length: k.max_length,
            },
            Some(P::Url(k)) => Kind::Url { schemes: k.schemes },
            Some(P::Integer(k)) => Kind::Integer {
                min: k.min,
                max: k.max,
            },
            Some(P::Decimal(k)) => Kind::Decimal {
                min: bound(k.min),
                max: bound(k.max),
            },
            Some(P::Date(k)) => Kind::Date {
                min: bound(k.min),
                max: bound(k.max),
            },
            Some(P::Enumeration(k)) => Kind::Enumeration { values: k.values },
            None => {
                return Err(FieldError::new(
                    &format!("template.fields[{at}].kind"),
                    "is missing: text, url, integer, decimal, date or enumeration",
                ));
            }
        };
        fields.push(Field {
            value_type: f.r#type,
            required: f.required,
            max_count: f.max_count,
            kind,
        });
    }
    Ok(Template {
        strict: t.strict,
        fields,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let v = Value::try_from(proto::Value {
            index: 1,
            r#type: "URL".into(),
            data: "x".into(),
            timestamp: 77,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v.permissions, Permissions::default());
        assert_eq!(v.ttl, Ttl::default());
        assert_eq!(v.timestamp, 0, "the node sets timestamps");
        let back = proto::Value::from(v.clone());
        assert_eq!(Value::try_from(back).unwrap(), v);
    }

    #[test]
    fn templates_round_trip() {
        let t = Template::from_json(
            r#"{"strict": true, "fields": [
                {"type": "URL", "kind": "url", "required": true, "max_count": 1},
                {"type": "name", "kind": "text", "max_length": 64},
                {"type": "n", "kind": "integer", "min": -1},
                {"type": "price", "kind": "decimal", "max": "9.5"},
                {"type": "made", "kind": "date", "min": "2000-01-01"},
                {"type": "state", "kind": "enum", "values": ["a"]}
            ]}"#,
        )
        .unwrap();
        let back = template_from_proto(Some(proto::Template::from(t.clone()))).unwrap();
        assert_eq!(back, t);
        let e = template_from_proto(Some(proto::Template {
            strict: false,
            fields: vec![proto::TemplateField::default()],
        }))
        .unwrap_err();
        assert_eq!(e.field, "template.fields[0].kind");
        assert_eq!(template_from_proto(None).unwrap_err().field, "template");
    }

    #[test]
    fn bad_permissions_name_the_field() {
        let bad = proto::Value {
            index: 1,
            permissions: Some(0x1f),
            ..Default::default()
        };
        let e = values(vec![proto::Value::default(), bad]).unwrap_err();
        assert_eq!(e.field, "values[1].permissions");
        let status = Status::from(e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("values[1].permissions: 0x1f"));
    }
}
