//! HS_SITE: the binary value that says where a prefix is served.
//!
//! This module owns the wire form of a site record (the data of an
//! `HS_SITE` or `HS_SITE.PREFIX` value), the rule that picks the server of
//! a site for a handle (MD5 of the hashed part, modulo the server count),
//! and a short URL form of one server for command lines and configuration
//! (`udp://127.0.0.1:2641,tcp://127.0.0.1:2641`). Sans-IO: nothing here
//! opens a socket.
//!
//! # Layout (CNRI `Encoder.encodeSiteInfoRecord` / `decodeSiteInfoRecord`)
//! format version (u16), protocol major (u8), protocol minor (u8), serial
//! (u16), primary mask (u8: 0x80 primary, 0x40 multi-primary), hash option
//! (u8), hash filter (string), attribute count (u32) then name and value
//! strings, server count (u32) then per server: id (u32), address (16
//! bytes), public key (string), interface count (u32) then per interface:
//! kind (u8), protocol (u8), port (u32). CNRI rejects bytes after the last
//! server; so does [`SiteInfo::decode`].

use crate::DecodeError;
use idnode_core::wire::{Reader, put_bytes, put_u32};
use md5::{Digest as _, Md5};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most servers one site may list (CNRI's own limit is far larger; real
/// sites list a handful).
pub const MAX_SITE_SERVERS: usize = 256;
/// Most interfaces one server may list.
pub const MAX_SERVER_INTERFACES: usize = 32;
/// Most attributes one site may carry.
pub const MAX_SITE_ATTRIBUTES: usize = 256;

/// Smallest encoded server: id, address, empty key, interface count.
const MIN_SERVER_LEN: usize = 4 + 16 + 4 + 4;
/// An encoded interface: kind, protocol, port.
const INTERFACE_LEN: usize = 1 + 1 + 4;
/// Smallest encoded attribute: two empty strings.
const MIN_ATTRIBUTE_LEN: usize = 4 + 4;
/// What the prefix part of a handle without `/` is, for hashing (CNRI
/// `Util.getPrefixPart` returns `Common.NA_HANDLE_PREFIX_NOSLASH`).
const NA_PREFIX: &[u8] = b"0.NA";

/// One site: a set of servers that together serve a prefix (a primary or
/// a mirror). Each handle is served by one of them, chosen by
/// [`SiteInfo::server_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// Format version of the record (1).
    pub version: u16,
    pub protocol_major: u8,
    pub protocol_minor: u8,
    /// Bumped on every change; clients compare it with the response
    /// header's site serial.
    pub serial: u16,
    /// Primary-mask bit 0x80.
    pub primary: bool,
    /// Primary-mask bit 0x40.
    pub multi_primary: bool,
    pub hash: HashOption,
    /// Carried, not used by CNRI's resolver. Decoded lossily as UTF-8.
    pub hash_filter: String,
    /// Name/value pairs (`desc`, `domain`, ...). Decoded lossily as UTF-8.
    pub attributes: Vec<(String, String)>,
    pub servers: Vec<ServerInfo>,
}

/// Which part of a handle chooses the server inside a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HashOption {
    /// The part before the first `/` (`0.NA` for a handle without one).
    Prefix = 0,
    /// The part after the first `/` (the whole handle without one).
    Suffix = 1,
    /// The whole handle.
    Whole = 2,
}

/// One server of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: u32,
    /// 16 bytes on the wire; IPv4 in the last 4, either zero-padded (what
    /// CNRI writes and what [`SiteInfo::encode`] writes) or v4-mapped
    /// (`::ffff:a.b.c.d`, which Java also reads as IPv4); both decode to
    /// [`IpAddr::V4`]. All zeros is `0.0.0.0` (CNRI then looks for a
    /// `domain` attribute; this crate does not).
    pub address: IpAddr,
    /// The server's public key in CNRI's key encoding (may be empty).
    pub public_key: Vec<u8>,
    pub interfaces: Vec<Interface>,
}

/// A port a server listens on, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interface {
    pub kind: InterfaceKind,
    pub protocol: InterfaceProtocol,
    /// An int on the wire; [`ServerInfo::query_endpoint`] ignores ports
    /// above 65535.
    pub port: u32,
}

/// What an interface serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InterfaceKind {
    /// CNRI's `ST_OUT_OF_SERVICE` (0): listed but not to be used. The spec
    /// page does not mention it; CNRI's `Interface` defines it, so real
    /// sites may carry it.
    OutOfService = 0,
    Admin = 1,
    Query = 2,
    /// Admin and query.
    Both = 3,
}

/// How to talk to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InterfaceProtocol {
    Udp = 0,
    Tcp = 1,
    Http = 2,
    Https = 3,
}

impl HashOption {
    /// The option for its wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Prefix),
            1 => Some(Self::Suffix),
            2 => Some(Self::Whole),
            _ => None,
        }
    }

    /// The part of `handle` this option hashes, as CNRI's
    /// `SiteInfo.getHandleHash` takes it (before upper-casing).
    ///
    /// Prefix records get no special treatment: CNRI's `Util.getPrefixPart`
    /// cuts at the first `/`, so for `0.NA/88.100` the prefix part is
    /// `0.NA` (every prefix record of a prefix-hashed site lands on the same
    /// server) and the suffix part is `88.100`. A handle without `/` hashes
    /// as prefix `0.NA` and as suffix the whole handle, as CNRI's
    /// `getPrefixPart`/`getSuffixPart` do.
    pub fn hashed_part(self, handle: &[u8]) -> &[u8] {
        let slash = handle.iter().position(|&b| b == b'/');
        match (self, slash) {
            (Self::Prefix, Some(at)) => &handle[..at],
            (Self::Prefix, None) => NA_PREFIX,
            (Self::Suffix, Some(at)) => &handle[at + 1..],
            (Self::Suffix, None) | (Self::Whole, _) => handle,
        }
    }
}

impl InterfaceKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::OutOfService),
            1 => Some(Self::Admin),
            2 => Some(Self::Query),
            3 => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether resolution requests may go to an interface of this kind.
    pub fn serves_queries(self) -> bool {
        matches!(self, Self::Query | Self::Both)
    }
}

impl InterfaceProtocol {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Udp),
            1 => Some(Self::Tcp),
            2 => Some(Self::Http),
            3 => Some(Self::Https),
            _ => None,
        }
    }

    /// The URL scheme of the URL form: `udp`, `tcp`, `http`, `https`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn from_scheme(scheme: &str) -> Option<Self> {
        [Self::Udp, Self::Tcp, Self::Http, Self::Https]
            .into_iter()
            .find(|p| p.scheme().eq_ignore_ascii_case(scheme))
    }
}

/// The index of the server, among `servers`, that serves a handle whose
/// hashed part (see [`HashOption::hashed_part`]) is `hashed_part`: the
/// ASCII upper-cased bytes are hashed with MD5, the last 4 bytes of the
/// digest read as a big-endian signed int, its absolute value taken modulo
/// `servers` (CNRI `SiteInfo.determineServerNum`). 0 when `servers` is 0.
///
/// For the one digest whose int is `i32::MIN`, Java's `Math.abs` stays
/// negative and CNRI would compute a negative index (and fail); here the
/// absolute value is taken as unsigned, which gives a valid index.
pub fn server_index(hashed_part: &[u8], servers: usize) -> usize {
    if servers == 0 {
        return 0;
    }
    let mut md5 = Md5::new();
    let mut chunk = [0u8; 64];
    for part in hashed_part.chunks(chunk.len()) {
        let upper = &mut chunk[..part.len()];
        upper.copy_from_slice(part);
        upper.make_ascii_uppercase();
        md5.update(&*upper);
    }
    let digest = md5.finalize();
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&digest[digest.len() - 4..]);
    let hash = i32::from_be_bytes(tail).unsigned_abs() as usize;
    hash % servers
}

impl SiteInfo {
    /// A one-site configuration as idnode writes it: format 1, protocol
    /// 2.11, serial 1, primary, no filter or attributes.
    pub fn single(servers: Vec<ServerInfo>, hash: HashOption) -> SiteInfo {
        SiteInfo {
            version: 1,
            protocol_major: crate::VERSION_MAJOR,
            protocol_minor: crate::VERSION_MINOR,
            serial: 1,
            primary: true,
            multi_primary: false,
            hash,
            hash_filter: String::new(),
            attributes: Vec::new(),
            servers,
        }
    }

    /// The server of this site that serves `handle` (see [`server_index`]);
    /// `None` when the site lists no server.
    pub fn server_for(&self, handle: &str) -> Option<&ServerInfo> {
        let part = self.hash.hashed_part(handle.as_bytes());
        self.servers.get(server_index(part, self.servers.len()))
    }

    /// The wire form (the data of an HS_SITE value).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 64 * self.servers.len());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.protocol_major);
        out.push(self.protocol_minor);
        out.extend_from_slice(&self.serial.to_be_bytes());
        let mut mask = 0u8;
        if self.primary {
            mask |= 0x80;
        }
        if self.multi_primary {
            mask |= 0x40;
        }
        out.push(mask);
        out.push(self.hash as u8);
        put_bytes(&mut out, self.hash_filter.as_bytes());
        put_u32(&mut out, self.attributes.len() as u32);
        for (name, value) in &self.attributes {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_u32(&mut out, self.servers.len() as u32);
        for server in &self.servers {
            put_u32(&mut out, server.id);
            out.extend_from_slice(&address_bytes(server.address));
            put_bytes(&mut out, &server.public_key);
            put_u32(&mut out, server.interfaces.len() as u32);
            for interface in &server.interfaces {
                out.push(interface.kind as u8);
                out.push(interface.protocol as u8);
                put_u32(&mut out, interface.port);
            }
        }
        out
    }

    /// Decodes the wire form. Every count is capped ([`MAX_SITE_SERVERS`],
    /// [`MAX_SERVER_INTERFACES`], [`MAX_SITE_ATTRIBUTES`]) and bounded by
    /// the bytes that remain before anything is allocated; an unknown hash
    /// option, interface kind or protocol byte is an error, as are bytes
    /// after the last server.
    pub fn decode(bytes: &[u8]) -> Result<SiteInfo, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u16("site format version")?;
        let protocol_major = r.u8("site protocol version")?;
        let protocol_minor = r.u8("site protocol version")?;
        let serial = r.u16("site serial")?;
        let mask = r.u8("site primary mask")?;
        let hash = HashOption::from_byte(r.u8("site hash option")?)
            .ok_or(DecodeError::Malformed("site hash option (not 0, 1 or 2)"))?;
        let hash_filter = lossy(r.bytes("site hash filter")?);
        let count = read_count(
            &mut r,
            "site attribute count",
            MAX_SITE_ATTRIBUTES,
            MIN_ATTRIBUTE_LEN,
        )?;
        let mut attributes = Vec::with_capacity(count);
        for _ in 0..count {
            let name = lossy(r.bytes("site attribute name")?);
            let value = lossy(r.bytes("site attribute value")?);
            attributes.push((name, value));
        }
        let count = read_count(
            &mut r,
            "site server count",
            MAX_SITE_SERVERS,
            MIN_SERVER_LEN,
        )?;
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(decode_server(&mut r)?);
        }
        if r.remaining() != 0 {
            return Err(DecodeError::LengthMismatch("site record (trailing bytes)"));
        }
        Ok(SiteInfo {
            version,
            protocol_major,
            protocol_minor,
            serial,
            primary: mask & 0x80 != 0,
            multi_primary: mask & 0x40 != 0,
            hash,
            hash_filter,
            attributes,
            servers,
        })
    }
}

fn decode_server(r: &mut Reader<'_>) -> Result<ServerInfo, DecodeError> {
    let id = r.u32("site server id")?;
    let raw = r.take(16, "site server address")?;
    let mut address = [0u8; 16];
    address.copy_from_slice(raw);
    let public_key = r.bytes("site server public key")?.to_vec();
    let count = read_count(
        r,
        "site interface count",
        MAX_SERVER_INTERFACES,
        INTERFACE_LEN,
    )?;
    let mut interfaces = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = InterfaceKind::from_byte(r.u8("site interface type")?)
            .ok_or(DecodeError::Malformed("site interface type (not 0 to 3)"))?;
        let protocol = InterfaceProtocol::from_byte(r.u8("site interface protocol")?).ok_or(
            DecodeError::Malformed("site interface protocol (not 0 to 3)"),
        )?;
        let port = r.u32("site interface port")?;
        interfaces.push(Interface {
            kind,
            protocol,
            port,
        });
    }
    Ok(ServerInfo {
        id,
        address: address_from_bytes(address),
        public_key,
        interfaces,
    })
}

/// Reads a count, capped at `max` and bounded by the bytes that remain
/// (each item takes at least `min_item` bytes).
fn read_count(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
    min_item: usize,
) -> Result<usize, DecodeError> {
    let n = r.u32(what)?;
    let count = n as usize;
    if count > max {
        return Err(DecodeError::TooLong(what, n));
    }
    if count.saturating_mul(min_item) > r.remaining() {
        return Err(DecodeError::Truncated(what));
    }
    Ok(count)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The 16-byte wire form: IPv4 zero-padded, as CNRI writes it.
fn address_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => {
            let mut out = [0u8; 16];
            out[12..].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Zero-padded (`::a.b.c.d`, all zeros included) and v4-mapped
/// (`::ffff:a.b.c.d`) addresses are IPv4; anything else is IPv6.
fn address_from_bytes(bytes: [u8; 16]) -> IpAddr {
    let v4 = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
    let head = &bytes[..10];
    let zero_head = head.iter().all(|&b| b == 0);
    match (zero_head, bytes[10], bytes[11]) {
        (true, 0, 0) | (true, 0xff, 0xff) => IpAddr::V4(v4),
        _ => IpAddr::V6(Ipv6Addr::from(bytes)),
    }
}

impl ServerInfo {
    /// Where to send a resolution over `protocol`: the first interface
    /// with that protocol that serves queries (kind query or both), at the
    /// server's address. `None` when there is none or its port is above
    /// 65535.
    pub fn query_endpoint(&self, protocol: InterfaceProtocol) -> Option<SocketAddr> {
        self.interfaces
            .iter()
            .find(|i| i.protocol == protocol && i.kind.serves_queries())
            .and_then(|i| u16::try_from(i.port).ok())
            .map(|port| SocketAddr::new(self.address, port))
    }

    /// Parses the URL form of one server:
    /// `udp://127.0.0.1:2641,tcp://127.0.0.1:2641` (schemes udp, tcp,
    /// http, https; IPv6 as `[::1]:2641`). Every URL must name the same IP
    /// address. UDP interfaces are query-only and the others admin and
    /// query, as CNRI's generated site records have them. No public key.
    pub fn from_urls(id: u32, text: &str) -> Result<ServerInfo, String> {
        let mut address: Option<IpAddr> = None;
        let mut interfaces = Vec::new();
        for url in text.split(',').map(str::trim) {
            if url.is_empty() {
                return Err(format!("`{text}`: an empty URL between commas"));
            }
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("`{url}` is not a URL (expected udp://IP:PORT)"))?;
            let protocol = InterfaceProtocol::from_scheme(scheme).ok_or_else(|| {
                format!("`{url}`: unknown scheme `{scheme}` (expected udp, tcp, http or https)")
            })?;
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let socket: SocketAddr = rest.parse().map_err(|_| {
                format!("`{url}`: `{rest}` is not IP:PORT (IPv6 as [::1]:2641; no host names)")
            })?;
            match address {
                Some(a) if a != socket.ip() => {
                    return Err(format!(
                        "`{url}`: every URL of one server must name the same IP address ({a})"
                    ));
                }
                _ => address = Some(socket.ip()),
            }
            if interfaces.len() >= MAX_SERVER_INTERFACES {
                return Err(format!(
                    "`{text}`: more than {MAX_SERVER_INTERFACES} URLs for one server"
                ));
            }
            let kind = match protocol {
                InterfaceProtocol::Udp => InterfaceKind::Query,
                _ => InterfaceKind::Both,
            };
            interfaces.push(Interface {
                kind,
                protocol,
                port: u32::from(socket.port()),
            });
        }
        let address = address.ok_or_else(|| format!("`{text}`: no URL"))?;
        Ok(ServerInfo {
            id,
            address,
            public_key: Vec::new(),
            interfaces,
        })
    }

    /// The URL form [`from_urls`](Self::from_urls) reads, one URL per
    /// interface that is not out of service, comma-separated.
    pub fn urls(&self) -> String {
        let mut out = String::new();
        for interface in &self.interfaces {
            if interface.kind == InterfaceKind::OutOfService {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            let host = match self.address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let _ = write!(
                out,
                "{}://{host}:{}",
                interface.protocol.scheme(),
                interface.port
            );
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A two-server site written byte by byte from the layout in the
    /// module documentation, not by the encoder.
    fn known_site_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&[0x00, 0x01]); // format version 1
        b.extend_from_slice(&[0x02, 0x0b]); // protocol 2.11
        b.extend_from_slice(&[0x00, 0x07]); // serial 7
        b.push(0xc0); // primary | multi-primary
        b.push(0x01); // hash by suffix
        b.extend_from_slice(&[0, 0, 0, 0]); // empty hash filter
        b.extend_from_slice(&[0, 0, 0, 1]); // one attribute
        b.extend_from_slice(&[0, 0, 0, 4]);
        b.extend_from_slice(b"desc");
        b.extend_from_slice(&[0, 0, 0, 2]);
        b.extend_from_slice(b"hi");
        b.extend_from_slice(&[0, 0, 0, 2]); // two servers
        // server 1: 10.0.0.1 zero-padded, key "K", UDP query 2641, TCP both 2641
        b.extend_from_slice(&[0, 0, 0, 1]);
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&[10, 0, 0, 1]);
        b.extend_from_slice(&[0, 0, 0, 1]);
        b.push(b'K');
        b.extend_from_slice(&[0, 0, 0, 2]);
        b.extend_from_slice(&[2, 0, 0, 0, 0x0a, 0x51]);
        b.extend_from_slice(&[3, 1, 0, 0, 0x0a, 0x51]);
        // server 2: 10.0.0.2 v4-mapped, no key, HTTP admin 8000
        b.extend_from_slice(&[0, 0, 0, 2]);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        b.extend_from_slice(&[10, 0, 0, 2]);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 1]);
        b.extend_from_slice(&[1, 2, 0, 0, 0x1f, 0x40]);
        b
    }

    #[test]
    fn decodes_a_hand_built_site() {
        let site = SiteInfo::decode(&known_site_bytes()).unwrap();
        assert_eq!(site.version, 1);
        assert_eq!((site.protocol_major, site.protocol_minor), (2, 11));
        assert_eq!(site.serial, 7);
        assert!(site.primary && site.multi_primary);
        assert_eq!(site.hash, HashOption::Suffix);
        assert_eq!(site.hash_filter, "");
        assert_eq!(site.attributes, vec![("desc".into(), "hi".into())]);
        assert_eq!(site.servers.len(), 2);
        let s1 = &site.servers[0];
        assert_eq!(s1.id, 1);
        assert_eq!(s1.address, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(s1.public_key, b"K");
        assert_eq!(
            s1.interfaces,
            vec![
                Interface {
                    kind: InterfaceKind::Query,
                    protocol: InterfaceProtocol::Udp,
                    port: 2641
                },
                Interface {
                    kind: InterfaceKind::Both,
                    protocol: InterfaceProtocol::Tcp,
                    port: 2641
                },
            ]
        );
        let s2 = &site.servers[1];
        assert_eq!(s2.address, IpAddr::from([10, 0, 0, 2]), "v4-mapped is IPv4");
        assert!(s2.public_key.is_empty());
        assert_eq!(s2.interfaces[0].kind, InterfaceKind::Admin);
        assert_eq!(s2.interfaces[0].port, 8000);
        // Re-encoding writes IPv4 zero-padded, so only server 2 differs.
        let again = site.encode();
        let original = known_site_bytes();
        assert_eq!(again.len(), original.len());
        let mapped_at = original.len() - 6 - 4 - 4 - 16;
        assert_eq!(again[..mapped_at], original[..mapped_at]);
        assert_eq!(again[mapped_at + 10..mapped_at + 12], [0, 0]);
    }

    #[test]
    fn query_endpoints_skip_admin_only_interfaces() {
        let site = SiteInfo::decode(&known_site_bytes()).unwrap();
        let s1 = &site.servers[0];
        assert_eq!(
            s1.query_endpoint(InterfaceProtocol::Udp),
            Some("10.0.0.1:2641".parse().unwrap())
        );
        assert_eq!(
            s1.query_endpoint(InterfaceProtocol::Tcp),
            Some("10.0.0.1:2641".parse().unwrap())
        );
        assert_eq!(s1.query_endpoint(InterfaceProtocol::Http), None);
        let s2 = &site.servers[1];
        assert_eq!(
            s2.query_endpoint(InterfaceProtocol::Http),
            None,
            "admin only"
        );
        let mut big = s2.clone();
        big.interfaces[0] = Interface {
            kind: InterfaceKind::Query,
            protocol: InterfaceProtocol::Udp,
            port: 70_000,
        };
        assert_eq!(big.query_endpoint(InterfaceProtocol::Udp), None);
    }

    #[test]
    fn ipv6_addresses_stay_ipv6() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_from_bytes(v6.octets()), IpAddr::V6(v6));
        // ::1 has a zero head but is not ::0.0.0.1 in spirit; CNRI reads
        // any 12 zero bytes as IPv4, and so do we.
        assert_eq!(
            address_from_bytes(Ipv6Addr::LOCALHOST.octets()),
            IpAddr::from([0, 0, 0, 1])
        );
        assert_eq!(address_from_bytes([0; 16]), IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let bytes = known_site_bytes();
        for cut in 0..bytes.len() {
            assert!(SiteInfo::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            SiteInfo::decode(&long),
            Err(DecodeError::LengthMismatch("site record (trailing bytes)"))
        );
    }

    #[test]
    fn oversized_counts_are_rejected_before_allocating() {
        let head = &known_site_bytes()[..12]; // up to the (empty) hash filter
        let mut b = head.to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes()); // attributes
        assert_eq!(
            SiteInfo::decode(&b),
            Err(DecodeError::TooLong("site attribute count", u32::MAX))
        );
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&((MAX_SITE_SERVERS + 1) as u32).to_be_bytes());
        assert!(matches!(
            SiteInfo::decode(&b),
            Err(DecodeError::TooLong("site server count", _))
        ));
        // Within the cap but more than the bytes can hold.
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 10]);
        b.extend_from_slice(&[0; 40]);
        assert_eq!(
            SiteInfo::decode(&b),
            Err(DecodeError::Truncated("site server count"))
        );
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&[0; 4 + 16 + 4]);
        b.extend_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            SiteInfo::decode(&b),
            Err(DecodeError::TooLong("site interface count", 1000))
        ));
    }

    #[test]
    fn unknown_enum_bytes_are_rejected() {
        let mut b = known_site_bytes();
        b[7] = 3; // hash option
        assert!(matches!(
            SiteInfo::decode(&b),
            Err(DecodeError::Malformed(m)) if m.contains("hash option")
        ));
        let mut b = known_site_bytes();
        let last_interface = b.len() - 6;
        b[last_interface] = 4;
        assert!(matches!(
            SiteInfo::decode(&b),
            Err(DecodeError::Malformed(m)) if m.contains("interface type")
        ));
        let mut b = known_site_bytes();
        b[last_interface + 1] = 9;
        assert!(matches!(
            SiteInfo::decode(&b),
            Err(DecodeError::Malformed(m)) if m.contains("interface protocol")
        ));
    }

    /// Expected values computed independently with Python:
    /// `d = hashlib.md5(part).digest(); v = struct.unpack('>i', d[-4:])[0];
    /// abs(v) % n`.
    #[test]
    fn hash_rule_matches_independent_md5() {
        // md5("88.100.1") ends 255958e3: 626612451 -> %2=1, %3=0, %4=3, %5=1
        for (n, want) in [(2, 1), (3, 0), (4, 3), (5, 1)] {
            assert_eq!(server_index(b"88.100.1", n), want, "n={n}");
        }
        // md5("ABC-123") ends e89c1b0f: -392422641 -> %2=1, %3=0, %4=1, %5=1
        for (n, want) in [(2, 1), (3, 0), (4, 1), (5, 1)] {
            assert_eq!(
                server_index(b"abc-123", n),
                want,
                "lower-cased input, n={n}"
            );
        }
        // md5("88.100.1/ABC-123") ends 900865d7: -1878497833 -> %5=3
        assert_eq!(server_index(b"88.100.1/Abc-123", 5), 3);
        // md5("0.NA") ends 0228b867: 36223079 -> %3=2, %5=4
        assert_eq!(server_index(b"0.na", 3), 2);
        assert_eq!(server_index(b"0.NA", 5), 4);
        assert_eq!(server_index(b"anything", 1), 0);
        assert_eq!(server_index(b"anything", 0), 0);
        // A part longer than one upper-casing chunk.
        let long = "a".repeat(200);
        assert_eq!(
            server_index(long.as_bytes(), 7),
            server_index(long.to_ascii_uppercase().as_bytes(), 7)
        );
    }

    #[test]
    fn hashed_parts_follow_cnri() {
        let h = b"88.100.1/ABC-123";
        assert_eq!(HashOption::Prefix.hashed_part(h), b"88.100.1");
        assert_eq!(HashOption::Suffix.hashed_part(h), b"ABC-123");
        assert_eq!(HashOption::Whole.hashed_part(h), h);
        assert_eq!(HashOption::Prefix.hashed_part(b"0.NA/88.100"), b"0.NA");
        assert_eq!(HashOption::Suffix.hashed_part(b"0.NA/88.100"), b"88.100");
        assert_eq!(HashOption::Suffix.hashed_part(b"a/b/c"), b"b/c");
        assert_eq!(HashOption::Prefix.hashed_part(b"noslash"), b"0.NA");
        assert_eq!(HashOption::Suffix.hashed_part(b"noslash"), b"noslash");
    }

    #[test]
    fn server_for_uses_the_sites_hash_option() {
        let servers: Vec<ServerInfo> = (1..=5)
            .map(|i| ServerInfo::from_urls(i, &format!("udp://10.0.0.{i}:2641")).unwrap())
            .collect();
        let by_suffix = SiteInfo::single(servers.clone(), HashOption::Suffix);
        // suffix ABC-123 -> index 1 of 5 (see hash_rule_matches_independent_md5)
        assert_eq!(by_suffix.server_for("88.100.1/abc-123").unwrap().id, 2);
        let by_prefix = SiteInfo::single(servers.clone(), HashOption::Prefix);
        // prefix 88.100.1 -> index 1 of 5
        assert_eq!(by_prefix.server_for("88.100.1/zzz").unwrap().id, 2);
        // prefix records hash on 0.NA -> index 4 of 5
        assert_eq!(by_prefix.server_for("0.NA/88.100.1").unwrap().id, 5);
        let whole = SiteInfo::single(servers, HashOption::Whole);
        // whole handle -> index 3 of 5
        assert_eq!(whole.server_for("88.100.1/ABC-123").unwrap().id, 4);
        assert!(
            SiteInfo::single(Vec::new(), HashOption::Whole)
                .server_for("88/x")
                .is_none()
        );
    }

    #[test]
    fn url_form_round_trips() {
        let s = ServerInfo::from_urls(3, "udp://127.0.0.1:26430, tcp://127.0.0.1:26430").unwrap();
        assert_eq!(s.id, 3);
        assert_eq!(s.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            s.query_endpoint(InterfaceProtocol::Udp),
            Some("127.0.0.1:26430".parse().unwrap())
        );
        assert_eq!(s.urls(), "udp://127.0.0.1:26430,tcp://127.0.0.1:26430");
        let v6 = ServerInfo::from_urls(1, "TCP://[::1]:2641,https://[::1]:8443").unwrap();
        assert_eq!(v6.address, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.urls(), "tcp://[::1]:2641,https://[::1]:8443");
        assert_eq!(ServerInfo::from_urls(1, &v6.urls()).unwrap(), v6);
        // Through the wire form, ::1 becomes IPv4 0.0.0.1 (see
        // ipv6_addresses_stay_ipv6), so round-trip a real IPv6 address.
        let site = SiteInfo::single(
            vec![ServerInfo::from_urls(9, "udp://[2001:db8::7]:2641").unwrap()],
            HashOption::Whole,
        );
        assert_eq!(SiteInfo::decode(&site.encode()).unwrap(), site);
    }

    #[test]
    fn url_form_errors() {
        let err = |t: &str| ServerInfo::from_urls(1, t).unwrap_err();
        assert!(err("").contains("empty URL"));
        assert!(err("udp://1.2.3.4:1,").contains("empty URL"));
        assert!(err("1.2.3.4:2641").contains("not a URL"));
        assert!(err("quic://1.2.3.4:2641").contains("unknown scheme"));
        assert!(err("udp://example.org:2641").contains("not IP:PORT"));
        assert!(err("udp://1.2.3.4").contains("not IP:PORT"));
        assert!(err("udp://::1:2641").contains("not IP:PORT"));
        assert!(err("udp://1.2.3.4:99999").contains("not IP:PORT"));
        assert!(err("udp://1.2.3.4:1,tcp://1.2.3.5:1").contains("same IP"));
        let many = vec!["udp://1.2.3.4:1"; MAX_SERVER_INTERFACES + 1].join(",");
        assert!(err(&many).contains("more than"));
    }

    fn arb_server() -> impl Strategy<Value = ServerInfo> {
        (
            any::<u32>(),
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                // Not zero-headed, so it stays IPv6 through the wire.
                (1u16.., any::<[u16; 7]>()).prop_map(|(a, r)| IpAddr::V6(Ipv6Addr::new(
                    a, r[0], r[1], r[2], r[3], r[4], r[5], r[6]
                ))),
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec((0u8..4, 0u8..4, any::<u32>()), 0..5),
        )
            .prop_map(|(id, address, public_key, interfaces)| ServerInfo {
                id,
                address,
                public_key,
                interfaces: interfaces
                    .into_iter()
                    .map(|(k, p, port)| Interface {
                        kind: InterfaceKind::from_byte(k).unwrap(),
                        protocol: InterfaceProtocol::from_byte(p).unwrap(),
                        port,
                    })
                    .collect(),
            })
    }

    fn arb_site() -> impl Strategy<Value = SiteInfo> {
        (
            any::<(u16, u8, u8, u16, bool, bool)>(),
            0u8..3,
            "[ -~]{0,10}",
            proptest::collection::vec(("[ -~]{0,10}", "\\PC{0,10}"), 0..4),
            proptest::collection::vec(arb_server(), 0..5),
        )
            .prop_map(
                |(
                    (version, protocol_major, protocol_minor, serial, primary, multi_primary),
                    hash,
                    hash_filter,
                    attributes,
                    servers,
                )| SiteInfo {
                    version,
                    protocol_major,
                    protocol_minor,
                    serial,
                    primary,
                    multi_primary,
                    hash: HashOption::from_byte(hash).unwrap(),
                    hash_filter,
                    attributes,
                    servers,
                },
            )
    }

    proptest! {
        #[test]
        fn sites_round_trip(site in arb_site()) {
            prop_assert_eq!(SiteInfo::decode(&site.encode()).unwrap(), site);
        }

        #[test]
        fn truncated_sites_fail_cleanly(site in arb_site(), cut in any::<prop::sample::Index>()) {
            let bytes = site.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(SiteInfo::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SiteInfo::decode(&bytes);
        }
    }
}
