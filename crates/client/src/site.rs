//! [`SiteClient`]: resolution against a Handle site of several servers,
//! each identifier sent to the server the site's hash picks.

use crate::{Client, ClientError, Query, Transport};
use idnode_handle::Response;
use idnode_handle::site::{InterfaceProtocol, SiteInfo};
use std::net::SocketAddr;

/// One [`Client`] per server of a site (over one transport), and the
/// site's hash rule to pick among them.
#[derive(Debug, Clone)]
pub struct SiteClient {
    site: SiteInfo,
    /// Per server, in site order; `None` when the server has no query
    /// interface for the transport.
    clients: Vec<Option<Client>>,
}

/// Why a [`SiteClient`] could not ask.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("the site lists no servers")]
    Empty,
    #[error("site server {server} has no {transport:?} query interface")]
    NoInterface { server: u32, transport: Transport },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl SiteClient {
    /// Clients for every server of `site` over `transport` (UDP or TCP;
    /// HS_SITE carries no QUIC interface), connecting on first use.
    pub fn new(site: SiteInfo, transport: Transport) -> Self {
        let protocol = match transport {
            Transport::Tcp => InterfaceProtocol::Tcp,
            _ => InterfaceProtocol::Udp,
        };
        let clients = site
            .servers
            .iter()
            .map(|s| {
                s.query_endpoint(protocol)
                    .map(|addr| Client::new(addr, transport))
            })
            .collect();
        Self { site, clients }
    }

    /// The address `identifier` is sent to.
    pub fn server_for(&self, identifier: &str) -> Option<SocketAddr> {
        let index = self.index_for(identifier)?;
        self.clients.get(index)?.as_ref().map(|c| c.server)
    }

    fn index_for(&self, identifier: &str) -> Option<usize> {
        let server = self.site.server_for(identifier)?;
        self.site
            .servers
            .iter()
            .position(|s| std::ptr::eq(s, server))
    }

    /// Resolves `query` at the server of the site that holds it.
    pub async fn resolve(&self, query: &Query) -> Result<Response, SiteError> {
        let index = self.index_for(&query.identifier).ok_or(SiteError::Empty)?;
        match self.clients.get(index) {
            Some(Some(client)) => Ok(client.resolve(query).await?),
            _ => Err(SiteError::NoInterface {
                server: self.site.servers[index].id,
                transport: self.transport(),
            }),
        }
    }

    fn transport(&self) -> Transport {
        self.clients
            .iter()
            .flatten()
            .next()
            .map_or(Transport::Udp, |c| c.transport)
    }
}
