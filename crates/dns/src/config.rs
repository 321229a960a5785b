//! What the DNS side is configured with ([`DnsConfig`]) and its checked
//! form ([`Zones`]), which the service and the cache share.

use crate::DnsError;
use crate::name::{self, Apex, absolute_name};
use hickory_proto::rr::Name;
use idnode_core::Prefix;
use std::net::{IpAddr, Ipv4Addr};

/// The default apex of a local node (`.internal` is reserved for private
/// use; `.local` belongs to multicast DNS).
pub const DEFAULT_APEX: &str = "idnode.internal.";
/// The default largest UDP answer: the DNS flag day 2020 figure, which
/// avoids IP fragmentation on common paths.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// The DNS settings of a node. Plain data: the server maps its TOML onto
/// it; [`Zones::from_config`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The apex names served (default `idnode.internal.`). Every identifier
    /// has a name under each of them.
    pub apexes: Vec<String>,
    /// The name servers of every apex (NS records). Empty: `ns1.<apex>`
    /// with address 127.0.0.1, for each apex.
    pub name_servers: Vec<NameServerConfig>,
    /// The SOA RNAME (the zone contact as a name). `None`:
    /// `hostmaster.<apex>`.
    pub hostmaster: Option<String>,
    pub soa: SoaTimers,
    /// TTL of NS and glue records, and of the RFC 8482 HINFO answer.
    pub ns_ttl: u32,
    /// The largest UDP answer whatever the client offers (at least 512).
    pub max_udp_payload: u16,
    /// When set, GTINs registered as identifiers under this prefix (suffix =
    /// the 14 digits of the GTIN-14) answer under `gtin.gs1.id.<apex>`.
    pub gs1_prefix: Option<String>,
    /// When set, OIDs registered as identifiers under this prefix (suffix =
    /// the dotted OID, `1.2.156.100`) answer under `oid-res.<apex>`.
    pub oid_prefix: Option<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            apexes: vec![DEFAULT_APEX.to_owned()],
            name_servers: Vec::new(),
            hostmaster: None,
            soa: SoaTimers::default(),
            ns_ttl: 3600,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            gs1_prefix: None,
            oid_prefix: None,
        }
    }
}

/// One name server: its name, and the addresses served as glue when the
/// name is below an apex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServerConfig {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// The SOA timers, in seconds (RFC 1035 section 3.3.13, RFC 2308).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    /// TTL of the SOA record itself.
    pub ttl: u32,
    /// How often secondaries check the serial (NOTIFY makes it rarely
    /// matter).
    pub refresh: u32,
    pub retry: u32,
    /// How long a secondary keeps answering without reaching this node.
    pub expire: u32,
    /// How long negative answers may be cached (RFC 2308).
    pub minimum: u32,
}

impl Default for SoaTimers {
    fn default() -> Self {
        Self {
            ttl: 3600,
            refresh: 3600,
            retry: 600,
            expire: 1_209_600,
            minimum: 300,
        }
    }
}

/// A checked name server.
#[derive(Debug, Clone)]
pub(crate) struct NameServer {
    pub name: Name,
    /// Its lower-cased wire form, when it is below the apex (then its
    /// addresses are served and are glue).
    pub in_zone: Option<Box<[u8]>>,
    pub addresses: Vec<IpAddr>,
}

/// One apex and its own records' settings.
#[derive(Debug, Clone)]
pub(crate) struct ApexZone {
    pub apex: Apex,
    pub name_servers: Vec<NameServer>,
    pub hostmaster: Name,
}

/// The checked configuration: apexes, their SOA and NS, GS1 and OID.
#[derive(Debug, Clone)]
pub struct Zones {
    pub(crate) zones: Vec<ApexZone>,
    pub(crate) timers: SoaTimers,
    pub(crate) ns_ttl: u32,
    pub(crate) max_udp: u16,
    pub(crate) gs1: Option<Prefix>,
    pub(crate) oid: Option<Prefix>,
}

impl Zones {
    /// Checks a configuration.
    pub fn from_config(config: &DnsConfig) -> Result<Self, DnsError> {
        if config.apexes.is_empty() {
            return Err(DnsError::InvalidConfig("no apex name is configured".into()));
        }
        let mut zones = Vec::with_capacity(config.apexes.len());
        for text in &config.apexes {
            let apex = Apex::parse(text)?;
            if zones
                .iter()
                .any(|z: &ApexZone| z.apex.wire() == apex.wire())
            {
                return Err(DnsError::InvalidConfig(format!(
                    "apex {text} is listed twice"
                )));
            }
            let mut servers = Vec::new();
            if config.name_servers.is_empty() {
                let name = apex.child([&b"ns1"[..]])?;
                servers.push((name, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]));
            }
            for ns in &config.name_servers {
                servers.push((absolute_name(&ns.name)?, ns.addresses.clone()));
            }
            let name_servers = servers
                .into_iter()
                .map(|(name, addresses)| NameServer {
                    in_zone: in_zone(&name, &apex),
                    name,
                    addresses,
                })
                .collect();
            let hostmaster = match &config.hostmaster {
                Some(text) => absolute_name(text)?,
                None => apex.child([&b"hostmaster"[..]])?,
            };
            zones.push(ApexZone {
                apex,
                name_servers,
                hostmaster,
            });
        }
        let prefix = |text: &Option<String>, what: &str| {
            text.as_deref()
                .map(|t| {
                    Prefix::parse(t)
                        .map_err(|e| DnsError::InvalidConfig(format!("{what} prefix {t:?}: {e}")))
                })
                .transpose()
        };
        Ok(Self {
            zones,
            timers: config.soa,
            ns_ttl: config.ns_ttl,
            max_udp: config.max_udp_payload.max(512),
            gs1: prefix(&config.gs1_prefix, "GS1")?,
            oid: prefix(&config.oid_prefix, "OID")?,
        })
    }

    /// The apexes, in configuration order; their position is the `apex`
    /// argument of the zone methods of [`DnsService`](crate::DnsService).
    pub fn apexes(&self) -> impl ExactSizeIterator<Item = &Apex> {
        self.zones.iter().map(|z| &z.apex)
    }

    /// The apex at `index`.
    pub fn apex(&self, index: usize) -> Option<&Apex> {
        self.zones.get(index).map(|z| &z.apex)
    }

    /// The prefix GTINs are registered under, if GS1 is on.
    pub fn gs1_prefix(&self) -> Option<&Prefix> {
        self.gs1.as_ref()
    }

    /// The prefix OIDs are registered under, if ORS is on.
    pub fn oid_prefix(&self) -> Option<&Prefix> {
        self.oid.as_ref()
    }

    /// The largest UDP answer.
    pub fn max_udp_payload(&self) -> u16 {
        self.max_udp
    }

    /// The apex a lower-cased wire name is at or below (the longest, when
    /// apexes nest), and how many labels are below it.
    pub fn find_apex(&self, lower_qname: &[u8]) -> Option<(usize, usize)> {
        let mut starts = [0u8; name::MAX_LABELS + 1];
        let mut count = 0;
        let mut at = 0usize;
        while let Some(&len) = lower_qname.get(at) {
            if count == starts.len() {
                return None;
            }
            // `at` < 256: the parser bounds names to 255 octets.
            starts[count] = at as u8;
            count += 1;
            if len == 0 {
                break;
            }
            at += 1 + usize::from(len);
        }
        let starts = &starts[..count];
        let mut best: Option<(usize, usize, usize)> = None;
        for (index, zone) in self.zones.iter().enumerate() {
            let wire = zone.apex.wire();
            let Some(boundary) = lower_qname.len().checked_sub(wire.len()) else {
                continue;
            };
            if lower_qname[boundary..] != *wire {
                continue;
            }
            let Some(below) = starts.iter().position(|&s| usize::from(s) == boundary) else {
                continue;
            };
            if best.is_none_or(|(_, _, len)| wire.len() > len) {
                best = Some((index, below, wire.len()));
            }
        }
        best.map(|(index, below, _)| (index, below))
    }
}

/// The lower-cased wire form of `name` if it is below `apex`.
fn in_zone(name: &Name, apex: &Apex) -> Option<Box<[u8]>> {
    let mut wire = Vec::with_capacity(name.len());
    name::push_labels(&mut wire, name.iter());
    wire.push(0);
    wire.make_ascii_lowercase();
    (wire.len() > apex.wire().len() && wire.ends_with(apex.wire())).then(|| wire.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;

    #[test]
    fn defaults() {
        let zones = Zones::from_config(&DnsConfig::default()).unwrap();
        assert_eq!(zones.zones.len(), 1);
        let zone = &zones.zones[0];
        assert_eq!(zone.apex.name().to_ascii(), "idnode.internal.");
        assert_eq!(zone.name_servers[0].name.to_ascii(), "ns1.idnode.internal.");
        assert!(zone.name_servers[0].in_zone.is_some());
        assert_eq!(zone.hostmaster.to_ascii(), "hostmaster.idnode.internal.");
        assert_eq!(zones.max_udp_payload(), 1232);
    }

    #[test]
    fn finds_the_longest_apex_on_a_label_boundary() {
        let config = DnsConfig {
            apexes: vec!["example.".into(), "id.example.".into()],
            ..DnsConfig::default()
        };
        let zones = Zones::from_config(&config).unwrap();
        assert_eq!(zones.find_apex(b"\x01a\x02id\x07example\x00"), Some((1, 1)));
        assert_eq!(zones.find_apex(b"\x02id\x07example\x00"), Some((1, 0)));
        assert_eq!(zones.find_apex(b"\x03xid\x07example\x00"), Some((0, 1)));
        assert_eq!(zones.find_apex(b"\x07example\x00"), Some((0, 0)));
        assert_eq!(zones.find_apex(b"\x03org\x00"), None);
        // `\x07example` inside a label is no boundary.
        assert_eq!(zones.find_apex(b"\x09a\x07example\x00"), None);
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = |config: DnsConfig| Zones::from_config(&config).is_err();
        assert!(bad(DnsConfig {
            apexes: vec![],
            ..DnsConfig::default()
        }));
        assert!(bad(DnsConfig {
            apexes: vec![".".into()],
            ..DnsConfig::default()
        }));
        assert!(bad(DnsConfig {
            apexes: vec!["a.example".into(), "A.example.".into()],
            ..DnsConfig::default()
        }));
        assert!(bad(DnsConfig {
            gs1_prefix: Some("88..3".into()),
            ..DnsConfig::default()
        }));
    }
}
