//! A site of several servers: each identifier lives on the server the
//! site's hash picks (docs/hierarchy.md, "Sites of several servers"); a
//! registration that reaches another server of the site is forwarded to
//! the owner over its gRPC API.

use crate::client::{AdminChannel, connect};
use crate::proto::identifiers_client::IdentifiersClient;
use idnode_handle::site::{HashOption, server_index};
use std::path::PathBuf;
use tokio::sync::OnceCell;
use tonic::Status;

/// How to reach one other server of the site for management calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its gRPC endpoint, `http://10.0.0.8:50051`.
    pub grpc: String,
    /// A file holding its admin token (read at the first forwarded call, so
    /// the peer may write it when it first starts).
    pub token_file: Option<PathBuf>,
}

/// The servers of this node's site, in site order; `None` marks this node.
#[derive(Debug)]
pub struct SitePeers {
    hash: HashOption,
    peers: Vec<Option<Peer>>,
}

#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    client: OnceCell<IdentifiersClient<AdminChannel>>,
}

impl SitePeers {
    /// `servers` in the site's order, this node being `None` (exactly
    /// one).
    pub fn new(hash: HashOption, servers: Vec<Option<PeerConfig>>) -> Self {
        let peers = servers
            .into_iter()
            .map(|s| {
                s.map(|config| Peer {
                    config,
                    client: OnceCell::new(),
                })
            })
            .collect();
        Self { hash, peers }
    }

    /// The position of the server that owns `identifier` when it is not
    /// this node.
    pub(crate) fn owner_index(&self, identifier: &str) -> Option<usize> {
        let part = self.hash.hashed_part(identifier.as_bytes());
        let index = server_index(part, self.peers.len());
        matches!(self.peers.get(index), Some(Some(_))).then_some(index)
    }

    /// The client of the server that owns `identifier`, or `None` when it
    /// is this node.
    pub(crate) async fn owner(
        &self,
        identifier: &str,
    ) -> Result<Option<IdentifiersClient<AdminChannel>>, Status> {
        match self.owner_index(identifier) {
            Some(index) => self.client(index, identifier).await.map(Some),
            None => Ok(None),
        }
    }

    /// The client of server `index` (connected at first use), for a call
    /// about `identifier` (named in errors).
    pub(crate) async fn client(
        &self,
        index: usize,
        identifier: &str,
    ) -> Result<IdentifiersClient<AdminChannel>, Status> {
        let Some(Some(peer)) = self.peers.get(index) else {
            return Err(Status::internal("no such site server"));
        };
        let client =
            peer.client
                .get_or_try_init(|| async {
                    let token = match &peer.config.token_file {
                        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                            Status::unavailable(format!(
                                "{identifier} belongs to site server {}, whose token file {} \
                             cannot be read: {e}",
                                peer.config.grpc,
                                path.display()
                            ))
                        })?),
                        None => None,
                    };
                    connect(&peer.config.grpc, token).await.map(|(_, ids)| ids).map_err(|e| {
                    Status::unavailable(format!(
                        "{identifier} belongs to site server {}, which cannot be reached: {e}",
                        peer.config.grpc
                    ))
                })
                })
                .await?;
        Ok(client.clone())
    }
}
