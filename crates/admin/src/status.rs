//! The `idnode.v1.Node` service: what the running node is and how it is
//! doing (`idnode status`). The node assembles the answer (its
//! listeners, caches and counters are not this crate's): this service
//! checks the caller and asks a [`NodeStatus`] on a blocking thread (the
//! answer lists the prefixes and sizes the store's files).

use crate::auth::Auth;
use crate::proto;
use crate::proto::node_server::Node;
use idnode_registry::Registry;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// What the node reports about itself.
pub trait NodeStatus: Send + Sync + 'static {
    /// The status now. May read the store and the filesystem.
    fn status(&self) -> Result<proto::StatusResponse, String>;
}

/// The service over a [`NodeStatus`].
#[derive(Clone)]
pub struct NodeService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    status: Arc<dyn NodeStatus>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService").finish_non_exhaustive()
    }
}

impl NodeService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>, status: Arc<dyn NodeStatus>) -> Self {
        Self {
            registry,
            auth,
            status,
        }
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let caller = self
            .auth
            .caller(request.metadata(), &**self.registry.store())?;
        if !caller.grant("the node's status")?.is_operator() {
            return Err(Status::permission_denied(
                "the node's status needs the operator scope",
            ));
        }
        let status = self.status.clone();
        match tokio::task::spawn_blocking(move || status.status()).await {
            Ok(Ok(answer)) => Ok(Response::new(answer)),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot gather the node's status");
                Err(Status::internal(
                    "cannot gather the node's status; the node's log has the details",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "the status task panicked or was cancelled");
                Err(Status::internal("the request failed inside the node"))
            }
        }
    }
}
