//! The records of docs/dns-mapping.md ("Records"): what an identifier's
//! publicly readable values become, and the apex's SOA, NS and glue.
//!
//! - TXT, one per value: `idx=<index>`, `type=<type>`, then
//!   `data=<text>` when the data is UTF-8 without control characters, else
//!   `b64=<base64>`; data longer than one character-string goes on in
//!   further strings of at most 255 octets (UTF-8 is cut between
//!   characters). A value whose TXT record could not fit a 64 KiB message
//!   (base64 of more than about 48 KiB, text of more than about 63 KiB) is
//!   left out of DNS answers: the Handle protocol serves it.
//! - URI (RFC 7553, type 256), one per `URL` value with data: priority =
//!   index clamped to 65535, weight 1, target = the data. hickory-proto has
//!   no URI type, so the RDATA is written here and carried as an unknown
//!   type.
//! - NAPTR, one per `URL` value with data: order = index clamped to 65535,
//!   preference 0, flags `u`, service = the value type, regexp
//!   `!^.*$!<url>!` (`\` and `!` in the URL escaped with `\`, RFC 3402),
//!   replacement `.`. A URL too long for the 255-octet regexp gets no NAPTR.
//! - TTL = the value's TTL (an absolute one counts down to `now`), capped
//!   at 2^31 - 1 (RFC 2181 section 8); the records of one set all take the
//!   smallest TTL of the set (RFC 2181 section 5.2).
//! - Values without public read permission never become records.

use crate::config::{ApexZone, SoaTimers, Zones};
use crate::query::TYPE_URI;
use base64::Engine;
use hickory_proto::rr::rdata::{A, AAAA, HINFO, NAPTR, NS, NULL, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use idnode_core::Ttl;
use idnode_core::wire::{Reader, RecordView};
use std::net::IpAddr;

/// Largest TTL (RFC 2181 section 8).
pub const MAX_TTL: u32 = i32::MAX as u32;
/// Largest RDATA built here: what fits a 64 KiB message with its header,
/// question and owner name.
pub const MAX_RDATA: usize = 65_535 - 512;
/// Longest character-string.
const MAX_STRING: usize = 255;

/// A publicly readable value, borrowed from a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicValue<'a> {
    pub index: u32,
    pub kind: &'a [u8],
    pub data: &'a [u8],
    pub ttl: Ttl,
}

impl PublicValue<'_> {
    /// The TTL in seconds at `now`.
    pub fn ttl_at(&self, now: u32) -> u32 {
        match self.ttl {
            Ttl::Relative(s) => s.min(MAX_TTL),
            Ttl::Absolute(until) => until.saturating_sub(now).min(MAX_TTL),
        }
    }

    /// Whether the value's type is `URL`.
    pub fn is_url(&self) -> bool {
        self.kind.eq_ignore_ascii_case(b"URL")
    }
}

/// The identifier and publicly readable values of a stored record.
#[derive(Debug, Clone)]
pub struct PublicRecord<'a> {
    /// The identifier as registered.
    pub identifier: &'a str,
    pub values: Vec<PublicValue<'a>>,
}

/// Reads the publicly readable values of a stored record (the storage form
/// of `idnode-core`). Never panics.
pub fn public_record(stored: &[u8]) -> Result<PublicRecord<'_>, idnode_core::Error> {
    let view = RecordView::parse(stored)?;
    let mut values = Vec::new();
    for value in view.values() {
        let value = value?;
        if value.permissions.public_read() {
            values.push(public_value(value.raw)?);
        }
    }
    Ok(PublicRecord {
        identifier: view.identifier,
        values,
    })
}

/// The fields of one value in the storage form that a record needs.
pub(crate) fn public_value(raw: &[u8]) -> Result<PublicValue<'_>, idnode_core::Error> {
    let mut r = Reader::new(raw);
    let index = r.u32("value index")?;
    r.u32("value timestamp")?;
    let ttl_type = r.u8("value ttl type")?;
    let ttl = r.u32("value ttl")?;
    r.u8("value permissions")?;
    let kind = r.bytes("value type")?;
    let data = r.bytes("value data")?;
    Ok(PublicValue {
        index,
        kind,
        data,
        ttl: if ttl_type == 0 {
            Ttl::Relative(ttl)
        } else {
            Ttl::Absolute(ttl)
        },
    })
}

/// Gives every record of a set the set's smallest TTL.
fn same_ttl(mut records: Vec<Record>) -> Vec<Record> {
    if let Some(ttl) = records.iter().map(|r| r.ttl).min() {
        for r in &mut records {
            r.ttl = ttl;
        }
    }
    records
}

/// The TXT records of `values` at `owner`.
pub fn txt_records(owner: &Name, values: &[PublicValue<'_>], now: u32) -> Vec<Record> {
    same_ttl(
        values
            .iter()
            .filter_map(|v| {
                let strings = txt_strings(v)?;
                let txt = TXT::from_bytes(strings.iter().map(Vec::as_slice).collect());
                Some(Record::from_rdata(
                    owner.clone(),
                    v.ttl_at(now),
                    RData::TXT(txt),
                ))
            })
            .collect(),
    )
}

/// The character-strings of one value's TXT record, or `None` when they
/// would pass [`MAX_RDATA`].
pub fn txt_strings(v: &PublicValue<'_>) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(v.data)
        .ok()
        .filter(|t| !t.chars().any(char::is_control));
    let (tag, payload): (&[u8], std::borrow::Cow<'_, [u8]>) = match text {
        Some(t) => (b"data=", t.as_bytes().into()),
        None => {
            // Base64 is 4/3 of the data: check before encoding it.
            if v.data.len() / 3 * 4 > MAX_RDATA {
                return None;
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(v.data);
            (b"b64=", b64.into_bytes().into())
        }
    };
    let mut strings = vec![
        format!("idx={}", v.index).into_bytes(),
        [&b"type="[..], &v.kind[..v.kind.len().min(MAX_STRING - 5)]].concat(),
    ];
    let mut first = tag.to_vec();
    let mut rest = &payload[..];
    let cut = |rest: &[u8], room: usize| -> usize {
        if rest.len() <= room {
            return rest.len();
        }
        let mut at = room;
        if text.is_some() {
            // Between characters: back off continuation octets.
            while at > 0 && rest[at] & 0xc0 == 0x80 {
                at -= 1;
            }
        }
        at
    };
    let n = cut(rest, MAX_STRING - tag.len());
    first.extend_from_slice(&rest[..n]);
    rest = &rest[n..];
    strings.push(first);
    while !rest.is_empty() {
        let n = cut(rest, MAX_STRING);
        if n == 0 {
            return None;
        }
        strings.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let rdata: usize = strings.iter().map(|s| s.len() + 1).sum();
    (rdata <= MAX_RDATA).then_some(strings)
}

/// Appends the RDATA of one value's TXT record (the character-strings
/// of [`txt_strings`], each with its length octet) to `out`; false, with
/// `out` as it was, when it would pass [`MAX_RDATA`]. The answer path's
/// form of [`txt_strings`]: no allocation for text data.
pub fn write_txt_rdata(v: &PublicValue<'_>, out: &mut Vec<u8>) -> bool {
    let text = std::str::from_utf8(v.data)
        .ok()
        .filter(|t| !t.chars().any(char::is_control));
    if text.is_none() {
        // Binary data: base64, rare enough to take the allocating form.
        let Some(strings) = txt_strings(v) else {
            return false;
        };
        for s in strings {
            out.push(s.len() as u8);
            out.extend_from_slice(&s);
        }
        return true;
    }
    let start = out.len();
    let index = itoa_u32(v.index);
    let idx = index.as_str();
    out.push((4 + idx.len()) as u8);
    out.extend_from_slice(b"idx=");
    out.extend_from_slice(idx.as_bytes());
    let kind = &v.kind[..v.kind.len().min(MAX_STRING - 5)];
    out.push((5 + kind.len()) as u8);
    out.extend_from_slice(b"type=");
    out.extend_from_slice(kind);
    let tag: &[u8] = b"data=";
    let mut rest = v.data;
    let mut room = MAX_STRING - tag.len();
    let mut first = true;
    loop {
        let mut n = rest.len().min(room);
        if n < rest.len() {
            // Between characters: back off continuation octets.
            while n > 0 && rest[n] & 0xc0 == 0x80 {
                n -= 1;
            }
            if n == 0 && !first {
                out.truncate(start);
                return false;
            }
        }
        if first {
            out.push((tag.len() + n) as u8);
            out.extend_from_slice(tag);
        } else {
            out.push(n as u8);
        }
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        first = false;
        room = MAX_STRING;
        if rest.is_empty() {
            break;
        }
        if out.len() - start > MAX_RDATA {
            out.truncate(start);
            return false;
        }
    }
    if out.len() - start > MAX_RDATA {
        out.truncate(start);
        return false;
    }
    true
}

/// A number's decimal digits, without allocating.
struct Digits {
    buf: [u8; 10],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        // Only ASCII digits are written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn itoa_u32(mut n: u32) -> Digits {
    let mut buf = [0u8; 10];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start }
}

/// A record of type URI (RFC 7553): priority, weight, target.
pub fn uri_rdata(priority: u16, weight: u16, target: &[u8]) -> RData {
    let mut bytes = Vec::with_capacity(4 + target.len());
    bytes.extend_from_slice(&priority.to_be_bytes());
    bytes.extend_from_slice(&weight.to_be_bytes());
    bytes.extend_from_slice(target);
    RData::Unknown {
        code: RecordType::from(TYPE_URI),
        rdata: NULL::with(bytes),
    }
}

fn clamp_index(index: u32) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// The URI records of the `URL` values at `owner`.
pub fn uri_records(owner: &Name, values: &[PublicValue<'_>], now: u32) -> Vec<Record> {
    same_ttl(
        values
            .iter()
            .filter(|v| v.is_url() && !v.data.is_empty() && v.data.len() + 4 <= MAX_RDATA)
            .map(|v| {
                let rdata = uri_rdata(clamp_index(v.index), 1, v.data);
                Record::from_rdata(owner.clone(), v.ttl_at(now), rdata)
            })
            .collect(),
    )
}

/// The NAPTR records at `owner` of the values that `service` names a
/// service for (the value type for identifiers, [`ors_service`] for ORS).
///
/// [`ors_service`]: crate::special::ors_service
pub fn naptr_records<'v>(
    owner: &Name,
    values: &[PublicValue<'v>],
    now: u32,
    service: impl Fn(&PublicValue<'v>) -> Option<&'v [u8]>,
) -> Vec<Record> {
    same_ttl(
        values
            .iter()
            .filter(|v| !v.data.is_empty())
            .filter_map(|v| {
                let service = service(v)?;
                let regexp = naptr_regexp(v.data)?;
                let naptr = NAPTR::new(
                    clamp_index(v.index),
                    0,
                    b"u"[..].into(),
                    service[..service.len().min(MAX_STRING)].into(),
                    regexp.into(),
                    Name::root(),
                );
                Some(Record::from_rdata(
                    owner.clone(),
                    v.ttl_at(now),
                    RData::NAPTR(naptr),
                ))
            })
            .collect(),
    )
}

/// The NAPTR records of an identifier: one per `URL` value, service = the
/// value type.
pub fn identifier_naptr_records(owner: &Name, values: &[PublicValue<'_>], now: u32) -> Vec<Record> {
    naptr_records(owner, values, now, |v| v.is_url().then_some(v.kind))
}

/// `!^.*$!<url>!`, `\` and `!` escaped; `None` past 255 octets.
pub fn naptr_regexp(url: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(url.len() + 8);
    out.extend_from_slice(b"!^.*$!");
    for &b in url {
        if b == b'\\' || b == b'!' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'!');
    (out.len() <= MAX_STRING).then_some(out)
}

/// The RFC 8482 answer to ANY: one HINFO record, CPU `RFC8482`, OS empty.
pub fn hinfo_record(owner: &Name, ttl: u32) -> Record {
    let hinfo = HINFO::new("RFC8482".to_owned(), String::new());
    Record::from_rdata(owner.clone(), ttl, RData::HINFO(hinfo))
}

/// The SOA record of an apex with `serial`, and `ttl`.
pub(crate) fn soa_record(zone: &ApexZone, timers: &SoaTimers, serial: u32, ttl: u32) -> Record {
    let mname = zone
        .name_servers
        .first()
        .map_or_else(|| zone.apex.name().clone(), |ns| ns.name.clone());
    let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let soa = SOA::new(
        mname,
        zone.hostmaster.clone(),
        serial,
        as_i32(timers.refresh),
        as_i32(timers.retry),
        as_i32(timers.expire),
        timers.minimum,
    );
    Record::from_rdata(zone.apex.name().clone(), ttl, RData::SOA(soa))
}

/// The NS records of an apex.
pub(crate) fn ns_records(zone: &ApexZone, zones: &Zones) -> Vec<Record> {
    zone.name_servers
        .iter()
        .map(|ns| {
            let rdata = RData::NS(NS(ns.name.clone()));
            Record::from_rdata(zone.apex.name().clone(), zones.ns_ttl, rdata)
        })
        .collect()
}

/// The address records of the name servers below the apex (glue), all of
/// them or those at one name server (`only`).
pub(crate) fn glue_records(zone: &ApexZone, zones: &Zones, only: Option<usize>) -> Vec<Record> {
    zone.name_servers
        .iter()
        .enumerate()
        .filter(|(i, ns)| ns.in_zone.is_some() && only.is_none_or(|o| o == *i))
        .flat_map(|(_, ns)| {
            ns.addresses.iter().map(|addr| {
                let rdata = match addr {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                Record::from_rdata(ns.name.clone(), zones.ns_ttl, rdata)
            })
        })
        .collect()
}

/// The type of the values on a delegated prefix's record (`0.NA/<prefix>`)
/// that name the sites it is delegated to: HS_SITE data.
pub const SITE_PREFIX_TYPE: &[u8] = b"HS_SITE.PREFIX";

/// The records of a zone cut: the NS records at `cut` and the glue address
/// records of the name servers, which are all below the cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delegation {
    pub ns: Vec<Record>,
    pub glue: Vec<Record>,
}

/// The zone cut that a delegated prefix's record (`0.NA/<prefix>`) makes
/// at `cut` (the prefix's name): one name server `ns<server id>.<cut>`
/// per server of every publicly readable `HS_SITE.PREFIX` value (HS_SITE
/// data), with the server's address as glue (A or AAAA). Servers with an
/// unspecified address (`0.0.0.0`, `::`) and values that do not decode as
/// HS_SITE are left out; a server id on several sites is one name server
/// with each address. Every record takes the smallest TTL of the values
/// used (an NS RRset and its glue share one TTL, RFC 2181 section 5.2).
pub fn delegation_records(cut: &Name, values: &[PublicValue<'_>], now: u32) -> Delegation {
    let mut out = Delegation::default();
    let mut ttl = MAX_TTL;
    let mut names: Vec<(u32, Name)> = Vec::new();
    for value in values {
        if !value.kind.eq_ignore_ascii_case(SITE_PREFIX_TYPE) {
            continue;
        }
        let site = match idnode_handle::site::SiteInfo::decode(value.data) {
            Ok(site) => site,
            Err(e) => {
                tracing::debug!(error = %e, index = value.index, "HS_SITE.PREFIX value does not decode");
                continue;
            }
        };
        let mut used = false;
        for server in &site.servers {
            if server.address.is_unspecified() {
                continue;
            }
            let name = match names.iter().find(|(id, _)| *id == server.id) {
                Some((_, name)) => name.clone(),
                None => {
                    let label = format!("ns{}", server.id);
                    let Ok(name) = cut.prepend_label(label.as_bytes()) else {
                        continue;
                    };
                    names.push((server.id, name.clone()));
                    out.ns.push(Record::from_rdata(
                        cut.clone(),
                        0,
                        RData::NS(NS(name.clone())),
                    ));
                    name
                }
            };
            let rdata = match server.address {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            if !out.glue.iter().any(|r| r.name == name && r.data == rdata) {
                out.glue.push(Record::from_rdata(name, 0, rdata));
            }
            used = true;
        }
        if used {
            ttl = ttl.min(value.ttl_at(now));
        }
    }
    for r in out.ns.iter_mut().chain(out.glue.iter_mut()) {
        r.ttl = ttl;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;

    fn value(data: &[u8]) -> PublicValue<'_> {
        PublicValue {
            index: 3,
            kind: b"productName",
            data,
            ttl: Ttl::Relative(60),
        }
    }

    #[test]
    fn txt_text_and_base64() {
        let strings = txt_strings(&value(b"Pump")).unwrap();
        assert_eq!(strings, [&b"idx=3"[..], b"type=productName", b"data=Pump"]);
        let strings = txt_strings(&value(b"a\nb")).unwrap();
        assert_eq!(strings[2], b"b64=YQpi");
        let strings = txt_strings(&value(&[0xff, 0])).unwrap();
        assert_eq!(strings[2], b"b64=/wA=");
        let strings = txt_strings(&value(b"")).unwrap();
        assert_eq!(strings[2], b"data=");
    }

    #[test]
    fn long_data_goes_on_in_further_strings() {
        let data = "é".repeat(300); // 600 octets
        let strings = txt_strings(&value(data.as_bytes())).unwrap();
        assert!(strings.iter().all(|s| s.len() <= 255));
        let joined: Vec<u8> = strings[2..].concat();
        assert_eq!(&joined[5..], data.as_bytes());
        // Each string is whole characters.
        assert!(std::str::from_utf8(&strings[2][5..]).is_ok());
        for s in &strings[3..] {
            assert!(std::str::from_utf8(s).is_ok());
        }
        let binary = vec![0u8; 1000];
        let strings = txt_strings(&value(&binary)).unwrap();
        let b64: Vec<u8> = strings[2..].concat();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&b64[4..])
            .unwrap();
        assert_eq!(decoded, binary);
    }

    #[test]
    fn values_too_large_for_a_message_are_left_out() {
        let big = vec![0u8; 64 * 1024];
        assert!(txt_strings(&value(&big)).is_none());
        let text = vec![b'x'; 64 * 1024];
        assert!(txt_strings(&value(&text)).is_none());
        let fits = vec![b'x'; 60_000];
        assert!(txt_strings(&value(&fits)).is_some());
    }

    #[test]
    fn naptr_regexp_escapes() {
        assert_eq!(naptr_regexp(b"https://a/b").unwrap(), b"!^.*$!https://a/b!");
        assert_eq!(naptr_regexp(b"x!y\\z").unwrap(), b"!^.*$!x\\!y\\\\z!");
        assert!(naptr_regexp(&[b'x'; 248]).is_some());
        assert!(naptr_regexp(&[b'x'; 249]).is_none());
    }

    #[test]
    fn absolute_ttls_count_down_and_sets_share_the_smallest() {
        let mut v = value(b"https://x");
        v.ttl = Ttl::Absolute(1000);
        assert_eq!(v.ttl_at(400), 600);
        assert_eq!(v.ttl_at(2000), 0);
        let mut u = value(b"https://y");
        u.ttl = Ttl::Relative(u32::MAX);
        assert_eq!(u.ttl_at(0), MAX_TTL);
        v.kind = b"URL";
        u.kind = b"url";
        let owner = Name::from_ascii("a.example.").unwrap();
        let records = uri_records(&owner, &[v, u], 400);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.ttl == 600));
    }
}
