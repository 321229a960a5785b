//! The node's place in the hierarchy: its own HS_SITE (the answer to
//! GET_SITE_INFO), the other servers of its site, and, for a recursive
//! node, the [`Upstream`] that resolves through [`idnode_recursor::Recursor`].

use crate::config::{RecursionConfig, SiteConfig};
use idnode_authority::{Upstream, UpstreamAnswer};
use idnode_handle::site::{HashOption, InterfaceKind, InterfaceProtocol, ServerInfo, SiteInfo};
use idnode_recursor::{Answer, Recursor, RecursorOptions};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// This node's site: the configured servers of a multi-server site, or
/// this node alone with its Handle UDP and TCP interfaces at the
/// configured address (or the listen address, or 127.0.0.1 for an
/// unspecified one). This node's server record carries `public_key` (its
/// HS_PUBKEY data); the other servers of a site, the key configured for
/// them. Errors name the field that does not parse.
pub fn own_site(
    config: &SiteConfig,
    udp: SocketAddr,
    tcp: SocketAddr,
    public_key: &[u8],
) -> Result<SiteInfo, String> {
    let hash = site_hash(config)?;
    if !config.servers.is_empty() {
        if config.server_id == 0 || config.server_id > config.servers.len() {
            return Err(format!(
                "site.server_id {} is not a position in site.servers (1 to {})",
                config.server_id,
                config.servers.len()
            ));
        }
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut server = ServerInfo::from_urls(i as u32 + 1, &s.handle)
                    .map(query_only)
                    .map_err(|e| format!("site.servers[{i}].handle `{}`: {e}", s.handle))?;
                server.public_key = if i + 1 == config.server_id {
                    public_key.to_vec()
                } else {
                    configured_key(i, s.public_key.as_deref())?
                };
                Ok(server)
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(SiteInfo::single(servers, hash));
    }
    let address = config.address.unwrap_or_else(|| match udp.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    });
    let urls = format!(
        "udp://{0}:{1},tcp://{0}:{2}",
        url_host(address),
        udp.port(),
        tcp.port()
    );
    let mut server = admin_over_tcp(query_only(ServerInfo::from_urls(1, &urls)?));
    server.public_key = public_key.to_vec();
    Ok(SiteInfo::single(vec![server], hash))
}

/// Whether this node serves Handle administration (admin requests and
/// their challenges over TCP and QUIC, docs/handle-admin.md): only as the
/// one server of its site. The servers of a multi-server site each hold a
/// share of the identifiers, chosen by hash; administration reaches them
/// through the gRPC API, which forwards within the site.
pub fn serves_handle_admin(config: &SiteConfig) -> bool {
    config.servers.is_empty()
}

/// The server with its TCP interfaces marked admin and query (kind 3):
/// CNRI clients send admin requests to the first interface that allows
/// them, so UDP stays query-only (an admin request there gets 4).
pub fn admin_over_tcp(mut server: ServerInfo) -> ServerInfo {
    for interface in &mut server.interfaces {
        if interface.kind == InterfaceKind::Query && interface.protocol == InterfaceProtocol::Tcp {
            interface.kind = InterfaceKind::Both;
        }
    }
    server
}

/// The HS_PUBKEY data of `site.servers[i].public_key` (base64), checked to
/// decode as a key; empty when none is configured.
fn configured_key(i: usize, text: Option<&str>) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("site.servers[{i}].public_key: not base64: {e}"))?;
    idnode_handle::keys::PublicKey::decode(&bytes)
        .map_err(|e| format!("site.servers[{i}].public_key: not an HS_PUBKEY: {e}"))?;
    Ok(bytes)
}

/// The server with every interface marked query-only: resolutions only
/// (the servers of a multi-server site, and the starting point of
/// [`admin_over_tcp`] for a node alone in its site).
pub fn query_only(mut server: ServerInfo) -> ServerInfo {
    for interface in &mut server.interfaces {
        if interface.kind != InterfaceKind::OutOfService {
            interface.kind = InterfaceKind::Query;
        }
    }
    server
}

/// The `site.hash` option (default: prefix).
pub fn site_hash(config: &SiteConfig) -> Result<HashOption, String> {
    match config
        .hash
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("prefix") => Ok(HashOption::Prefix),
        Some("suffix") => Ok(HashOption::Suffix),
        Some("whole") => Ok(HashOption::Whole),
        Some(other) => Err(format!(
            "site.hash `{other}`: expected prefix, suffix or whole"
        )),
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The recursor a `[recursion]` section asks for; `None` without roots.
/// Errors name the root entry that does not parse.
///
/// Each root is one server's interface URLs (`udp://h:p,tcp://h:p`),
/// optionally followed by `;key=<base64 HS_PUBKEY data>`: the key that
/// certified answers (requests with CT) from that root must verify with.
/// A root without a key gets the one its server sends to GET_SITE_INFO on
/// the first certified request (trust on first use).
pub fn upstream(config: &RecursionConfig) -> Result<Option<Arc<dyn Upstream>>, String> {
    if config.roots.is_empty() {
        return Ok(None);
    }
    let servers = config
        .roots
        .iter()
        .enumerate()
        .map(|(i, text)| root_server(i, text))
        .collect::<Result<Vec<_>, _>>()?;
    // Each root server is a mirror of the root node: a site of its own,
    // so that a silent one falls back to the next.
    let roots = servers
        .into_iter()
        .map(|server| SiteInfo::single(vec![server], HashOption::Prefix))
        .collect();
    let recursor = Recursor::new(RecursorOptions {
        roots,
        timeout: Duration::from_millis(config.timeout_ms.max(1)),
        negative_ttl: Duration::from_secs(config.negative_ttl_secs),
        max_entries: config.max_entries.max(1),
        ..RecursorOptions::default()
    });
    Ok(Some(Arc::new(Recursive(recursor))))
}

/// `recursion.roots[i]`: URLs, then optionally `;key=<base64>`.
fn root_server(i: usize, text: &str) -> Result<ServerInfo, String> {
    use base64::Engine;
    let (urls, key) = match text.split_once(';') {
        Some((urls, rest)) => {
            let key = rest.trim().strip_prefix("key=").ok_or_else(|| {
                format!("recursion.roots[{i}] `{text}`: expected `;key=<base64>` after the URLs")
            })?;
            (urls, Some(key))
        }
        None => (text, None),
    };
    let mut server = ServerInfo::from_urls(i as u32 + 1, urls.trim())
        .map_err(|e| format!("recursion.roots[{i}] `{text}`: {e}"))?;
    if let Some(key) = key {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| format!("recursion.roots[{i}] key: not base64: {e}"))?;
        idnode_handle::keys::PublicKey::decode(&bytes)
            .map_err(|e| format!("recursion.roots[{i}] key: not an HS_PUBKEY: {e}"))?;
        server.public_key = bytes;
    }
    Ok(server)
}

/// [`Recursor`] as the authority's [`Upstream`].
struct Recursive(Recursor);

impl Upstream for Recursive {
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
        certified: bool,
    ) -> Pin<Box<dyn Future<Output = UpstreamAnswer> + Send + 'a>> {
        Box::pin(async move {
            let answer = if certified {
                self.0.resolve_certified(handle).await
            } else {
                self.0.resolve(handle).await
            };
            match answer {
                Answer::Found { handle, values } => UpstreamAnswer::Found { handle, values },
                Answer::Failed { code, message } => UpstreamAnswer::Failed { code, message },
            }
        })
    }
}

/// The other servers of a multi-server `[site]`, for forwarding
/// registrations to the server that owns each identifier.
pub fn peers(config: &SiteConfig) -> Result<Option<Arc<idnode_admin::SitePeers>>, String> {
    if config.servers.is_empty() {
        return Ok(None);
    }
    let hash = site_hash(config)?;
    let peers = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (i + 1 != config.server_id).then(|| idnode_admin::PeerConfig {
                grpc: s.grpc.clone(),
                token_file: s.token_file.clone(),
            })
        })
        .collect();
    Ok(Some(Arc::new(idnode_admin::SitePeers::new(hash, peers))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn own_site_names_the_listeners() {
        let udp: SocketAddr = "0.0.0.0:26410".parse().unwrap();
        let tcp: SocketAddr = "0.0.0.0:26410".parse().unwrap();
        let site = own_site(&SiteConfig::default(), udp, tcp, b"KEY").unwrap();
        let decoded = SiteInfo::decode(&site.encode()).unwrap();
        let server = &decoded.servers[0];
        assert_eq!(
            server.query_endpoint(InterfaceProtocol::Udp),
            Some("127.0.0.1:26410".parse().unwrap())
        );
        assert_eq!(server.public_key, b"KEY");
        // Administration is served over TCP only: UDP stays query-only.
        for i in &server.interfaces {
            let expected = match i.protocol {
                InterfaceProtocol::Tcp => InterfaceKind::Both,
                _ => InterfaceKind::Query,
            };
            assert_eq!(i.kind, expected);
        }
        let configured = SiteConfig {
            address: Some("192.0.2.7".parse().unwrap()),
            ..SiteConfig::default()
        };
        let site = own_site(&configured, udp, "0.0.0.0:26411".parse().unwrap(), b"").unwrap();
        assert_eq!(
            site.servers[0].query_endpoint(InterfaceProtocol::Tcp),
            Some("192.0.2.7:26411".parse().unwrap())
        );
    }

    #[test]
    fn a_configured_site_lists_every_server() {
        use crate::config::SiteServerConfig;
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let server = |port: u16| SiteServerConfig {
            handle: format!("udp://127.0.0.1:{port},tcp://127.0.0.1:{port}"),
            grpc: format!("http://127.0.0.1:{}", port + 1),
            token_file: None,
            public_key: None,
        };
        let mut config = SiteConfig {
            servers: vec![server(3000), server(3010)],
            server_id: 2,
            hash: Some("suffix".into()),
            ..SiteConfig::default()
        };
        let site = own_site(&config, any, any, b"KEY").unwrap();
        assert_eq!(site.hash, HashOption::Suffix);
        // This node (server 2) publishes its own key; server 1 none.
        assert!(site.servers[0].public_key.is_empty());
        assert_eq!(site.servers[1].public_key, b"KEY");
        let ports: Vec<_> = site
            .servers
            .iter()
            .map(|s| s.query_endpoint(InterfaceProtocol::Udp).unwrap().port())
            .collect();
        assert_eq!(ports, [3000, 3010]);
        config.server_id = 3;
        assert!(
            own_site(&config, any, any, b"KEY")
                .unwrap_err()
                .contains("server_id")
        );
        config.server_id = 1;
        config.hash = Some("middle".into());
        assert!(
            own_site(&config, any, any, b"KEY")
                .unwrap_err()
                .contains("site.hash")
        );
    }

    #[test]
    fn roots_must_parse() {
        assert!(upstream(&RecursionConfig::default()).unwrap().is_none());
        let good = RecursionConfig {
            roots: vec!["udp://127.0.0.1:26410,tcp://127.0.0.1:26410".into()],
            ..RecursionConfig::default()
        };
        assert!(upstream(&good).unwrap().is_some());
        let bad = RecursionConfig {
            roots: vec!["127.0.0.1".into()],
            ..RecursionConfig::default()
        };
        let err = upstream(&bad).err().unwrap();
        assert!(err.contains("recursion.roots[0]"), "{err}");
    }

    #[test]
    fn roots_may_carry_a_key() {
        use base64::Engine;
        let key = idnode_handle::keys::ServerKey::from_pkcs8_pem(include_str!(
            "../../handle/tests/vectors/hierarchy/test-only-top-rsa.pem"
        ))
        .unwrap()
        .public_key()
        .encode();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let urls = "udp://127.0.0.1:26410,tcp://127.0.0.1:26410";
        let server = root_server(0, &format!("{urls};key={b64}")).unwrap();
        assert_eq!(server.public_key, key);
        assert!(root_server(0, urls).unwrap().public_key.is_empty());
        let err = root_server(1, &format!("{urls};key=AAAA")).unwrap_err();
        assert!(err.contains("recursion.roots[1] key"), "{err}");
        let err = root_server(1, &format!("{urls};key=!!")).unwrap_err();
        assert!(err.contains("not base64"), "{err}");
        let err = root_server(1, &format!("{urls};pin={b64}")).unwrap_err();
        assert!(err.contains(";key="), "{err}");
        let good = RecursionConfig {
            roots: vec![format!("{urls};key={b64}"), urls.into()],
            ..RecursionConfig::default()
        };
        assert!(upstream(&good).unwrap().is_some());
    }
}
