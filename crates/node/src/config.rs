//! The node's configuration: TOML with defaults for every field, unknown
//! fields rejected. Command-line flags override what the file says.
//! `deploy/idnode.toml` is the commented example; a test parses it.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where RocksDB, the admin token and other state live.
    pub data_dir: PathBuf,
    /// Load the demo data (`seeds/`) into a new, empty node (off by default;
    /// `idnode serve --demo` turns it on).
    pub demo: bool,
    /// What the node logs and how: `[log]`, or (the older form) a filter
    /// alone, `log = "info"`.
    #[serde(deserialize_with = "log_config")]
    pub log: LogConfig,
    pub storage: StorageConfig,
    pub handle: HandleConfig,
    pub quic: QuicConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub cache: CacheConfig,
    pub dns: DnsServerConfig,
    pub site: SiteConfig,
    pub recursion: RecursionConfig,
    pub metrics: MetricsConfig,
    pub mirror: MirrorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            demo: false,
            log: LogConfig::default(),
            storage: StorageConfig::default(),
            handle: HandleConfig::default(),
            quic: QuicConfig::default(),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cache: CacheConfig::default(),
            dns: DnsServerConfig::default(),
            site: SiteConfig::default(),
            recursion: RecursionConfig::default(),
            metrics: MetricsConfig::default(),
            mirror: MirrorConfig::default(),
        }
    }
}

/// What the Handle and DNS listeners count: requests, answers by code and
/// how long each took (`/metrics`, the UDP rates of `idnode status`, the
/// resolutions of the daily report).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Off: the UDP workers (and the TCP and QUIC listeners) count nothing
    /// and the kernel does not stamp the datagrams' arrival; the daily
    /// report then has only the web's resolutions and the registrations.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The log: lines on stderr, at `level`, as text or JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter (`info`, `debug`, `warn,idnode_server=debug`...), in
    /// tracing's `EnvFilter` syntax. The RUST_LOG environment variable,
    /// when set, wins.
    pub level: String,
    /// `plain`: a line of text per event; `json`: one JSON object a line
    /// (`timestamp`, `level`, `target`, `message` and the event's fields).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Plain,
    /// JSON lines, for a log collector.
    Json,
}

/// `log = "debug"` (a filter alone, as configurations written before
/// `[log]` had it) or a `[log]` table.
fn log_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LogConfig, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = LogConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a [log] table or a log filter string")
        }
        fn visit_str<E: serde::de::Error>(self, level: &str) -> Result<LogConfig, E> {
            Ok(LogConfig {
                level: level.to_owned(),
                ..LogConfig::default()
            })
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LogConfig, A::Error> {
            LogConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Visitor)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// RocksDB block cache, in MiB. It must hold the index and filter
    /// blocks (with 1M identifiers and 64 MiB, reads thrashed: 2k answers/s); past that, memory does
    /// more in the response cache, which answers without a store read.
    pub block_cache_mb: usize,
    /// Sync the WAL before acknowledging each write batch.
    pub sync: bool,
    /// RocksDB memtable of each column family, in MiB: writes gathered in
    /// memory before a flush to disk. After the disk filled up, RocksDB
    /// takes writes again once this much space is free.
    pub write_buffer_mb: usize,
    /// The change log (every version of every record, for IXFR, mirrors
    /// and the audit trail) keeps changes this many hours ...
    pub change_log_hours: u32,
    /// ... and always the newest this many (IXFR answers from them), and
    /// what a following mirror has not applied yet.
    pub change_log_min_entries: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let retention = idnode_registry::retention::Retention::default();
        Self {
            block_cache_mb: 192,
            sync: true,
            write_buffer_mb: 64,
            change_log_hours: retention.hours,
            change_log_min_entries: retention.min_entries,
        }
    }
}

impl StorageConfig {
    /// The change log's retention policy.
    pub fn retention(&self) -> idnode_registry::retention::Retention {
        idnode_registry::retention::Retention {
            hours: self.change_log_hours,
            min_entries: self.change_log_min_entries,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandleConfig {
    /// Address for the Handle protocol, on UDP and TCP.
    pub listen: SocketAddr,
    /// UDP worker sockets (SO_REUSEPORT); 0 means one per core.
    pub udp_workers: usize,
    /// Run each UDP worker only on the CPUs whose datagrams it receives
    /// (datagrams go to worker `cpu % workers`), so it is woken where its
    /// datagram arrived. Off (the default): the scheduler places the
    /// workers, and a worker whose CPU is busy receiving can run on
    /// another.
    pub pin_udp_workers: bool,
    /// Most TCP connections at once; further ones are closed at accept.
    pub tcp_max_connections: usize,
    /// Seconds a TCP connection may stay silent before it is closed.
    pub tcp_idle_timeout_secs: u64,
    /// Seconds a request may take to arrive once its first byte has.
    pub request_timeout_secs: u64,
}

impl Default for HandleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 2641)),
            udp_workers: 0,
            pin_udp_workers: false,
            tcp_max_connections: 1024,
            tcp_idle_timeout_secs: 30,
            request_timeout_secs: 10,
        }
    }
}

impl HandleConfig {
    pub fn listener_options(&self) -> idnode_server::HandleListenerOptions {
        idnode_server::HandleListenerOptions {
            listen: self.listen,
            udp_workers: self.udp_workers,
            pin_udp_workers: self.pin_udp_workers,
            tcp_max_connections: self.tcp_max_connections,
            tcp_idle_timeout: Duration::from_secs(self.tcp_idle_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            rate_limit: Default::default(),
            metrics: true,
        }
    }
}

/// How this node describes itself to GET_SITE_INFO: one server with its
/// Handle UDP and TCP interfaces.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// The address clients and other nodes reach this node at. Absent: the
    /// Handle listen address, or 127.0.0.1 when that is unspecified
    /// (0.0.0.0 or ::).
    pub address: Option<IpAddr>,
    /// A site of several servers, each holding the identifiers that hash
    /// to it: every server lists all of them, in the same order. Empty: a
    /// site of this one node.
    pub servers: Vec<SiteServerConfig>,
    /// This node's position in `servers`, from 1.
    pub server_id: usize,
    /// What picks the server: `prefix`, `suffix` or `whole`.
    pub hash: Option<String>,
    /// The node's signing key (PKCS#8 PEM, RSA or DSA). Absent: the key in
    /// the data directory, made at first start.
    pub key_file: Option<PathBuf>,
}

/// One server of a multi-server site.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteServerConfig {
    /// Its Handle interfaces: `udp://IP:PORT,tcp://IP:PORT`.
    pub handle: String,
    /// Its gRPC endpoint, where registrations it owns are forwarded.
    pub grpc: String,
    /// A file holding its admin token.
    pub token_file: Option<PathBuf>,
    /// Its public key, as HS_PUBKEY data in base64 (`public_key` in the
    /// file `idnode serve --ready-file` writes): published in the site
    /// record so that clients can check its certified answers. This node's
    /// own entry takes its own key.
    pub public_key: Option<String>,
}

/// The mirror role: follow a primary's change log, serve every read
/// surface from the copy, refuse writes naming the primary.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// The primary's gRPC address (`host:port`, `http://host:port` or
    /// `https://host:port`). Empty: the node is no mirror.
    pub of: String,
    /// A file holding the token the primary accepts for following its
    /// change log: its operator token (the stream carries every key
    /// space).
    pub token_file: Option<PathBuf>,
    /// The token itself (`token_file` is better: the config file may be
    /// readable by others).
    pub token: Option<String>,
    /// For an `https://` primary: a PEM file its certificate chains to...
    pub ca_file: Option<PathBuf>,
    /// ...or the SHA-256 fingerprint of its certificate (what `idnode
    /// serve` prints as `grpc sha256`).
    pub pin: Option<String>,
}

impl MirrorConfig {
    /// Whether the node is a mirror.
    pub fn enabled(&self) -> bool {
        !self.of.trim().is_empty()
    }

    /// What can be checked without reading files: the primary's scheme
    /// against the TLS settings, the pin, one token source.
    pub fn check(&self) -> Result<(), String> {
        if self.enabled() {
            self.settings(false).map(|_| ())
        } else {
            Ok(())
        }
    }

    /// The primary, its token (read from `token_file`) and TLS settings;
    /// errors name the field.
    pub fn source(&self) -> Result<idnode_admin::MirrorSource, String> {
        self.settings(true)
    }

    fn settings(&self, read_token: bool) -> Result<idnode_admin::MirrorSource, String> {
        let primary = self.of.trim().to_owned();
        let token = match (&self.token_file, &self.token) {
            (Some(_), Some(_)) => {
                return Err("[mirror] token and token_file: give one, not both".into());
            }
            (Some(_), None) if !read_token => String::from("unread"),
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("[mirror] token_file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            (None, Some(token)) => token.trim().to_owned(),
            (None, None) => {
                return Err(
                    "[mirror] needs token_file (or token): the primary's operator token".into(),
                );
            }
        };
        if token.is_empty() {
            return Err("[mirror] the token is empty".into());
        }
        let lower = primary.to_ascii_lowercase();
        if lower.contains("://") && !lower.starts_with("http://") && !lower.starts_with("https://")
        {
            return Err(format!(
                "[mirror] of = \"{primary}\": expected host:port, http://host:port or \
                 https://host:port"
            ));
        }
        let https = lower.starts_with("https://");
        let trust = match (&self.ca_file, &self.pin) {
            (Some(_), Some(_)) => return Err("[mirror] ca_file and pin: give one, not both".into()),
            (Some(path), None) => Some(idnode_admin::ServerTrust::CaFile(path.clone())),
            (None, Some(pin)) => Some(idnode_admin::ServerTrust::Pin(
                pin.parse::<idnode_admin::Fingerprint>()
                    .map_err(|e| format!("[mirror] pin: {e}"))?,
            )),
            (None, None) => None,
        };
        match (https, &trust) {
            (true, None) => {
                return Err(format!(
                    "[mirror] of = \"{primary}\" uses TLS: set ca_file or pin"
                ));
            }
            (false, Some(_)) => {
                return Err("[mirror] ca_file and pin need an https:// primary".into());
            }
            _ => {}
        }
        Ok(idnode_admin::MirrorSource {
            primary,
            token,
            tls: idnode_admin::ClientTls {
                trust,
                identity: None,
            },
        })
    }
}

/// The recursive role: resolve questions outside the prefixes homed here
/// by walking referrals from a root node, for requests that set REC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecursionConfig {
    /// Servers of the root (top-level) node's site, each as its interfaces:
    /// `udp://IP:PORT,tcp://IP:PORT`, optionally followed by
    /// `;key=<base64 HS_PUBKEY>`, the key its certified answers are checked
    /// with (without it, the key the root publishes in GET_SITE_INFO is
    /// taken on first use). Empty: no recursion; questions outside the
    /// prefixes homed here get a referral (303) or 301.
    pub roots: Vec<String>,
    /// Milliseconds to wait for one upstream server over one transport.
    pub timeout_ms: u64,
    /// Seconds to remember that an identifier does not exist.
    pub negative_ttl_secs: u64,
    /// Answers and referrals kept in the recursion cache.
    pub max_entries: usize,
    /// The clients resolved for, as CIDR; others get 301 (the node is not
    /// an open resolver). Default: loopback and the private ranges.
    pub clients: Vec<String>,
}

impl Default for RecursionConfig {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            timeout_ms: 2000,
            negative_ttl_secs: 60,
            max_entries: 100_000,
            clients: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Handle over QUIC (ALPN `hdl`). UDP port 2641 belongs to plain Handle
/// over UDP, so QUIC listens on 2642 by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Endpoints on SO_REUSEPORT sockets; 0 means one per core.
    pub workers: usize,
    /// Most QUIC connections at once; further ones are refused.
    pub max_connections: usize,
    /// Most requests (bidirectional streams) open at once on a connection.
    pub max_streams_per_connection: u32,
    /// Seconds a connection may stay silent before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a stream may take to deliver its request and take its answer.
    pub request_timeout_secs: u64,
    /// PEM certificate chain and key. Without them, a self-signed
    /// certificate is generated once into `<data_dir>/tls/`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra names (DNS names or IP addresses) of a generated certificate,
    /// besides localhost, 127.0.0.1 and ::1.
    pub names: Vec<String>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 2642)),
            workers: 0,
            max_connections: 1024,
            max_streams_per_connection: 256,
            idle_timeout_secs: 30,
            request_timeout_secs: 10,
            cert: None,
            key: None,
            names: Vec::new(),
        }
    }
}

impl QuicConfig {
    pub fn listener_options(&self) -> idnode_server::QuicOptions {
        idnode_server::QuicOptions {
            listen: self.listen,
            workers: self.workers,
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            certificate: idnode_server::CertificateSource {
                cert: self.cert.clone(),
                key: self.key.clone(),
                names: self.names.clone(),
            },
            metrics: true,
        }
    }
}

/// Response rate limiting of UDP answers, Handle and DNS alike
/// (`idnode_server::rrl`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Answers a second per source prefix and answer.
    pub responses_per_second: u32,
    /// Answers a second per source prefix over all its answers (a source
    /// asking for many names); 0: no such limit.
    pub all_per_second: u32,
    /// Over the limit, every `slip`-th answer is sent small, telling the
    /// client to ask over TCP; 0 drops them all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Sources never limited, as CIDR (`10.0.0.0/8`, `2001:db8::/32`).
    pub exempt: Vec<String>,
    /// Largest UDP answer to a source not shown to receive (not exempt, no
    /// TCP connection lately, no valid DNS cookie), in multiples of its
    /// question; larger answers go out as "ask over TCP" (DNS: TC set).
    /// 0: no cap. Applies even with `enabled = false`.
    pub amplification: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let d = idnode_server::rrl::RateLimitOptions::default();
        Self {
            enabled: d.enabled,
            responses_per_second: d.responses_per_second,
            all_per_second: d.all_per_second,
            slip: d.slip,
            ipv4_prefix: d.ipv4_prefix,
            ipv6_prefix: d.ipv6_prefix,
            exempt: vec!["127.0.0.0/8".into(), "::1/128".into()],
            amplification: d.amplification,
        }
    }
}

/// Parses the networks of a configuration list (`IP/LEN`, or a bare IP);
/// an error names the entry and the section.
pub fn parse_cidrs(
    section: &str,
    entries: &[String],
) -> Result<Vec<idnode_core::net::Network>, String> {
    entries
        .iter()
        .map(|e| idnode_core::net::parse_network(e).map_err(|why| format!("[{section}] {why}")))
        .collect()
}

impl RateLimitConfig {
    /// The limiter's options; an error names an `exempt` entry that is not
    /// a CIDR or a prefix length out of range.
    pub fn options(&self) -> Result<idnode_server::rrl::RateLimitOptions, String> {
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err("[rate_limit] ipv4_prefix is at most 32, ipv6_prefix at most 128".into());
        }
        if self.amplification == 1 {
            return Err(
                "[rate_limit] amplification is 0 (no cap) or at least 2: the short \"ask over TCP\" \
                 answer itself is a little longer than most questions"
                    .into(),
            );
        }
        let exempt = parse_cidrs("rate_limit", &self.exempt)?;
        Ok(idnode_server::rrl::RateLimitOptions {
            enabled: self.enabled,
            responses_per_second: self.responses_per_second,
            all_per_second: self.all_per_second,
            slip: self.slip,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            exempt,
            amplification: self.amplification,
        })
    }
}

/// The web listener (`idnode-http`): the JSON REST API and the browser
/// proxy, HTTP/1.1 and HTTP/2.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Address of the HTTP listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Seconds a request's headers may take to arrive.
    pub header_timeout_secs: u64,
    /// Seconds a request with a body (PUT, POST, DELETE) may take, body
    /// and answer included; reads are answered at once.
    pub request_timeout_secs: u64,
    /// Most connections at once.
    pub max_connections: usize,
    /// Worker threads, each with its own listening socket on `listen`
    /// (SO_REUSEPORT) and its connections; 0: one per core.
    pub workers: usize,
    /// The base of the proxy URLs that the record pages' QR codes carry,
    /// e.g. `https://id.example.com` for a node behind a TLS proxy; unset,
    /// `http://` and the host the request came to.
    pub base_url: Option<String>,
    /// Serve HTTPS instead of HTTP on `listen` (TLS 1.3; HTTP/2 and
    /// HTTP/1.1 offered by ALPN). Off by default.
    pub tls: bool,
    /// PEM certificate chain and key of the listener. Without them, the
    /// node's certificate (that of `[quic]`: its files, or the self-signed
    /// pair kept in `<data_dir>/tls/`, generated on first start).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 4096,
            workers: 0,
            base_url: None,
            tls: false,
            cert: None,
            key: None,
        }
    }
}

impl HttpConfig {
    /// Whether `base_url`, when set, is an http:// or https:// URL, and
    /// the TLS files come as a pair, with `tls = true`.
    pub fn check(&self) -> Result<(), String> {
        if !self.tls && (self.cert.is_some() || self.key.is_some()) {
            return Err("[http] cert and key take effect with `tls = true`".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(
                "[http] give both `cert` and `key` (or neither, to use the node's certificate)"
                    .into(),
            );
        }
        match &self.base_url {
            Some(base) => idnode_http::qr::base_url(base)
                .map(drop)
                .map_err(|e| format!("[http] {e}")),
            None => Ok(()),
        }
    }

    /// Where the HTTPS certificate comes from: `cert` and `key`, or the
    /// node's (`[quic]`).
    pub fn certificate(&self, quic: &QuicConfig) -> idnode_server::CertificateSource {
        own_or_node_certificate(&self.cert, &self.key, quic)
    }

    pub fn limits(&self) -> idnode_http::Limits {
        idnode_http::Limits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs.max(1)),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address of the gRPC management API. Loopback by default: expose it
    /// only behind TLS or on a management network.
    pub listen: SocketAddr,
    /// Serve the API over TLS (`https://`). Off by default.
    pub tls: bool,
    /// PEM certificate chain and key of the API. Without them, the
    /// certificate of `[quic]` (its files, or the self-signed pair kept in
    /// `<data_dir>/tls/`, generated on first start).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM file of the CA(s) that sign client certificates: with it,
    /// clients must present a certificate that chains to one of them (and
    /// still send a token).
    pub client_ca: Option<PathBuf>,
    /// Serve without TLS on an address other than loopback, where tokens
    /// would cross the network in clear (`idnode serve --insecure-grpc`).
    pub insecure: bool,
    /// Largest request message in bytes.
    pub max_message_bytes: usize,
    /// Most calls served at once; one more is answered RESOURCE_EXHAUSTED.
    pub max_concurrent_calls: usize,
    /// Writes a second each scoped token may make (gRPC calls and batch
    /// items; operator tokens are not limited); 0: unlimited.
    pub token_writes_per_second: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls: false,
            cert: None,
            key: None,
            client_ca: None,
            insecure: false,
            max_message_bytes: idnode_admin::Limits::default().max_message_bytes,
            max_concurrent_calls: idnode_admin::Limits::default().max_concurrent_calls,
            token_writes_per_second: 0,
        }
    }
}

impl GrpcConfig {
    /// Whether the node may start with this section: TLS settings need
    /// `tls = true` and come as a pair, and plain gRPC goes on loopback
    /// only unless `insecure` says otherwise.
    pub fn check(&self) -> Result<(), String> {
        if !self.tls && (self.cert.is_some() || self.key.is_some() || self.client_ca.is_some()) {
            return Err("[grpc] cert, key and client_ca take effect with `tls = true`".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(
                "[grpc] needs both `cert` and `key` (or neither, for the node's own certificate)"
                    .into(),
            );
        }
        if !self.tls && !self.insecure && !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve gRPC without TLS on {}, a non-loopback address: tokens \
                 would cross the network in clear. Set `[grpc] tls = true` (or listen on \
                 127.0.0.1), or pass --insecure-grpc (`[grpc] insecure = true`) if the \
                 network is trusted",
                self.listen
            ));
        }
        Ok(())
    }

    /// The certificate of the API: `cert` and `key`, or those of `[quic]`.
    /// The listener's limits.
    pub fn limits(&self) -> idnode_admin::Limits {
        idnode_admin::Limits {
            max_message_bytes: self.max_message_bytes.max(1024),
            max_concurrent_calls: self.max_concurrent_calls.max(1),
        }
    }

    pub fn certificate(&self, quic: &QuicConfig) -> idnode_server::CertificateSource {
        own_or_node_certificate(&self.cert, &self.key, quic)
    }
}

/// A listener's certificate: its own `cert` and `key` when both are set,
/// else the node's (that of `[quic]`).
fn own_or_node_certificate(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    quic: &QuicConfig,
) -> idnode_server::CertificateSource {
    match (cert, key) {
        (Some(cert), Some(key)) => idnode_server::CertificateSource {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            names: quic.names.clone(),
        },
        _ => quic.listener_options().certificate,
    }
}

/// The response cache in front of the store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory budget in MiB; 0 turns the cache off. An identifier with
    /// five short values takes about 400 bytes: the default holds 1.3M.
    pub budget_mb: usize,
    /// Shards (locks); rounded up to a power of two.
    pub shards: usize,
    /// Fill the cache from the stored records when the node starts (in the
    /// background, while it already answers), up to the budget.
    pub prewarm: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            budget_mb: 512,
            shards: 64,
            prewarm: true,
        }
    }
}

/// The DNS side (docs/dns-mapping.md): identifiers as DNS names under
/// the apexes, served over UDP and TCP on `listen` and over QUIC (RFC 9250,
/// ALPN `doq`) on `quic_listen`. The defaults are unprivileged ports; a
/// node that is a name server of record listens on port 53.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsServerConfig {
    pub enabled: bool,
    /// Address for DNS over UDP and TCP.
    pub listen: SocketAddr,
    /// Serve DNS over QUIC too.
    pub quic: bool,
    /// Address for DNS over QUIC. Its connection and stream limits are
    /// those of `[quic]`, and so is the TLS certificate.
    pub quic_listen: SocketAddr,
    /// The apex names served; every identifier has a name under each.
    pub apexes: Vec<String>,
    /// The largest UDP answer, whatever the client offers (at least 512).
    pub udp_max_payload: u16,
    /// UDP worker sockets and QUIC endpoints (SO_REUSEPORT); 0 means one
    /// per core.
    pub workers: usize,
    /// Run each UDP worker only on the CPUs whose datagrams it receives,
    /// as `[handle] pin_udp_workers`.
    pub pin_udp_workers: bool,
    /// Most TCP connections at once; further ones are closed at accept.
    pub tcp_max_connections: usize,
    /// Seconds a TCP connection may stay silent, or take to deliver a
    /// query or take an answer, before it is closed.
    pub tcp_idle_timeout_secs: u64,
    /// No longer used, and accepted so that older files still load (with a
    /// warning): the DNS answers from the response cache (`[cache]`).
    pub cache_mb: Option<usize>,
    /// The name servers of every apex (NS records, and A/AAAA glue for
    /// those below an apex). Empty: `ns1.<apex>` at 127.0.0.1.
    pub name_servers: Vec<NameServerEntry>,
    /// The SOA contact as a name. Default: `hostmaster.<apex>`.
    pub hostmaster: Option<String>,
    /// TTL of NS and glue records.
    pub ns_ttl: u32,
    pub soa: SoaConfig,
    /// GTINs registered under this prefix (suffix: the 14 digits) answer
    /// under `gtin.gs1.id.<apex>` (GS1 ONS 2.0).
    pub gs1_prefix: Option<String>,
    /// OIDs registered under this prefix (suffix: the dotted OID) answer
    /// under `oid-res.<apex>` (ITU-T X.672 ORS).
    pub oid_prefix: Option<String>,
    /// Peers allowed to transfer the zones (AXFR, IXFR) over TCP; others
    /// get REFUSED.
    pub allow_transfer: Vec<IpAddr>,
    /// Secondaries (address and port) sent a NOTIFY over UDP after writes.
    pub notify: Vec<SocketAddr>,
    /// TSIG keys (RFC 8945). When any is given, zone transfers must be
    /// signed with one of them, and their answers are signed.
    pub tsig_keys: Vec<TsigKeyEntry>,
}

/// A TSIG key as BIND and NSD configure it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsigKeyEntry {
    /// The key's name, for example `xfr-key.`.
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha384`, `hmac-sha512` or `hmac-sha1`.
    pub algorithm: Option<String>,
    /// The shared secret, base64.
    pub secret: String,
}

impl Default for DnsServerConfig {
    fn default() -> Self {
        let dns = idnode_dns::DnsConfig::default();
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 8053)),
            quic: true,
            quic_listen: SocketAddr::from(([0, 0, 0, 0], 8853)),
            apexes: dns.apexes,
            udp_max_payload: dns.max_udp_payload,
            workers: 0,
            pin_udp_workers: false,
            tcp_max_connections: 1024,
            tcp_idle_timeout_secs: 10,
            cache_mb: None,
            name_servers: Vec::new(),
            hostmaster: dns.hostmaster,
            ns_ttl: dns.ns_ttl,
            soa: SoaConfig::default(),
            gs1_prefix: dns.gs1_prefix,
            oid_prefix: dns.oid_prefix,
            allow_transfer: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            notify: Vec::new(),
            tsig_keys: Vec::new(),
        }
    }
}

/// A name server of the apexes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameServerEntry {
    pub name: String,
    /// Its addresses, served as glue when the name is below an apex.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// The SOA timers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoaConfig {
    /// TTL of the SOA record itself.
    pub ttl: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// How long negative answers may be cached (RFC 2308).
    pub minimum: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        let t = idnode_dns::SoaTimers::default();
        Self {
            ttl: t.ttl,
            refresh: t.refresh,
            retry: t.retry,
            expire: t.expire,
            minimum: t.minimum,
        }
    }
}

impl DnsServerConfig {
    /// What the DNS service is configured with (checked by
    /// [`idnode_dns::Zones::from_config`]).
    pub fn dns_config(&self) -> idnode_dns::DnsConfig {
        idnode_dns::DnsConfig {
            apexes: self.apexes.clone(),
            name_servers: self
                .name_servers
                .iter()
                .map(|ns| idnode_dns::NameServerConfig {
                    name: ns.name.clone(),
                    addresses: ns.addresses.clone(),
                })
                .collect(),
            hostmaster: self.hostmaster.clone(),
            soa: idnode_dns::SoaTimers {
                ttl: self.soa.ttl,
                refresh: self.soa.refresh,
                retry: self.soa.retry,
                expire: self.soa.expire,
                minimum: self.soa.minimum,
            },
            ns_ttl: self.ns_ttl,
            max_udp_payload: self.udp_max_payload,
            gs1_prefix: self.gs1_prefix.clone(),
            oid_prefix: self.oid_prefix.clone(),
        }
    }

    /// The listeners' settings; an error names a TSIG key that does not
    /// parse.
    pub fn listener_options(&self) -> Result<idnode_server::DnsListenerOptions, String> {
        Ok(idnode_server::DnsListenerOptions {
            listen: self.listen,
            udp_workers: self.workers,
            pin_udp_workers: self.pin_udp_workers,
            tcp_max_connections: self.tcp_max_connections,
            tcp_idle_timeout: Duration::from_secs(self.tcp_idle_timeout_secs.max(1)),
            allow_transfer: self.allow_transfer.clone(),
            tsig_keys: self.tsig_keys()?,
            notify: self.notify.clone(),
            rate_limit: Default::default(),
            metrics: true,
        })
    }

    /// The configured TSIG keys, parsed.
    pub fn tsig_keys(&self) -> Result<Vec<idnode_dns::tsig::TsigKey>, String> {
        self.tsig_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let algorithm = k.algorithm.as_deref().unwrap_or("hmac-sha256");
                idnode_dns::tsig::TsigKey::new(&k.name, algorithm, &k.secret)
                    .map_err(|e| format!("dns.tsig_keys[{i}]: {e}"))
            })
            .collect()
    }

    /// The DNS-over-QUIC listener's settings: this section's address and
    /// workers, the limits and certificate of `quic`.
    pub fn quic_options(&self, quic: &QuicConfig) -> idnode_server::QuicOptions {
        idnode_server::QuicOptions {
            listen: self.quic_listen,
            workers: self.workers,
            ..quic.listener_options()
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(
            Config::from_toml("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn example_config_parses_and_says_something() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/idnode.toml");
        let config = Config::load(&path).unwrap();
        // The example sets values that differ from the defaults, so this
        // test notices when the file stops being read.
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/idnode"));
        assert_eq!(config.handle.listen.port(), 2641);
        assert_eq!(config.storage.block_cache_mb, 512);
        assert_eq!(config.quic.listen.port(), 2642);
        assert_eq!(config.quic.names, ["resolver.example.com"]);
        assert!(config.dns.enabled && config.dns.quic);
        assert_eq!(config.dns.listen.port(), 8053);
        assert_eq!(config.dns.apexes, ["id.example.com."]);
        assert_eq!(config.dns.name_servers[0].name, "ns1.id.example.com.");
        let zones = idnode_dns::Zones::from_config(&config.dns.dns_config()).unwrap();
        assert_eq!(zones.apexes().len(), 1);
        assert_eq!(config.dns.allow_transfer.len(), 3);
        assert_eq!(config.dns.notify, ["192.0.2.53:53".parse().unwrap()]);
        assert_eq!(config.site.address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(config.recursion, RecursionConfig::default());
        assert_eq!(config.log.level, "info");
    }

    #[test]
    fn log_is_a_table_or_a_filter() {
        let log = |text: &str| Config::from_toml(text, Path::new("x")).unwrap().log;
        assert_eq!(log(""), LogConfig::default());
        assert_eq!(log("").format, LogFormat::Plain);
        let table = log("[log]\nlevel = \"warn\"\nformat = \"json\"\n");
        assert_eq!(table.level, "warn");
        assert_eq!(table.format, LogFormat::Json);
        assert_eq!(log("[log]\nformat = \"json\"\n").level, "info");
        // The form written before [log]: a filter alone.
        let old = log("log = \"debug\"\n");
        assert_eq!(old.level, "debug");
        assert_eq!(old.format, LogFormat::Plain);
        for bad in [
            "[log]\nformat = \"xml\"\n",
            "[log]\nlevl = \"info\"\n",
            "log = 3\n",
        ] {
            assert!(Config::from_toml(bad, Path::new("x")).is_err(), "{bad}");
        }
        let err = Config::from_toml("[log]\nlevl = \"info\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("levl"), "{err}");
    }

    #[test]
    fn http_base_url_is_checked() {
        let config = |text: &str| Config::from_toml(text, Path::new("x")).unwrap().http;
        assert_eq!(config("").check(), Ok(()));
        let set = config("[http]\nbase_url = \"https://id.example.com/\"\n");
        assert_eq!(set.check(), Ok(()));
        let bad = config("[http]\nbase_url = \"id.example.com\"\n");
        assert!(bad.check().unwrap_err().starts_with("[http] base URL"));
    }

    #[test]
    fn http_tls_files_come_as_a_pair_with_tls_on() {
        let config = |text: &str| Config::from_toml(text, Path::new("x")).unwrap().http;
        assert_eq!(config("[http]\ntls = true\n").check(), Ok(()));
        let both = "cert = \"c.pem\"\nkey = \"k.pem\"\n";
        assert_eq!(
            config(&format!("[http]\ntls = true\n{both}")).check(),
            Ok(())
        );
        let off = config(&format!("[http]\n{both}")).check().unwrap_err();
        assert!(off.contains("tls = true"), "{off}");
        let half = config("[http]\ntls = true\ncert = \"c.pem\"\n")
            .check()
            .unwrap_err();
        assert!(half.contains("both"), "{half}");
        // Without files, the node's certificate: that of [quic].
        let own = config("[http]\ntls = true\n").certificate(&QuicConfig::default());
        assert_eq!((own.cert, own.key), (None, None));
    }

    #[test]
    fn grpc_without_tls_is_refused_off_loopback() {
        let config = |text: &str| Config::from_toml(text, Path::new("x")).unwrap().grpc;
        assert_eq!(config("").check(), Ok(()));
        assert_eq!(config("[grpc]\nlisten = \"[::1]:1\"\n").check(), Ok(()));
        let open = config("[grpc]\nlisten = \"0.0.0.0:50051\"\n");
        let err = open.check().unwrap_err();
        assert!(
            err.contains("0.0.0.0:50051") && err.contains("--insecure-grpc"),
            "{err}"
        );
        let insecure = config("[grpc]\nlisten = \"0.0.0.0:1\"\ninsecure = true\n");
        assert_eq!(insecure.check(), Ok(()));
        let tls = config("[grpc]\nlisten = \"0.0.0.0:1\"\ntls = true\n");
        assert_eq!(tls.check(), Ok(()));
        let half = config("[grpc]\ntls = true\ncert = \"c.pem\"\n");
        assert!(half.check().unwrap_err().contains("both"));
        let unused = config("[grpc]\nclient_ca = \"ca.pem\"\n");
        assert!(unused.check().unwrap_err().contains("tls = true"));
        // Without files of its own, the API takes the QUIC certificate.
        let quic = QuicConfig {
            cert: Some("q.pem".into()),
            key: Some("q.key".into()),
            ..QuicConfig::default()
        };
        assert_eq!(tls.certificate(&quic).cert, quic.cert);
        let own = config("[grpc]\ntls = true\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        assert_eq!(own.certificate(&quic).cert, Some(PathBuf::from("c.pem")));
    }

    #[test]
    fn dns_defaults_match_the_dns_crate() {
        let config = DnsServerConfig::default();
        assert_eq!(config.dns_config(), idnode_dns::DnsConfig::default());
        assert_eq!(config.listen.port(), 8053);
        assert_eq!(config.quic_listen.port(), 8853);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Config::from_toml("[handle]\nlisten_port = 1\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("x.toml"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let err = Config::from_toml("[handle]\nlisten = \"nowhere\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
